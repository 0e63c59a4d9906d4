"""Console progress, one rule for the whole package: a bar only when stderr is a terminal.

In a log (stderr redirected to a file or a pipe) a bar would leave carriage returns and bar text
behind; there each stage writes one closing line with the same figures instead, e.g.
``synth: 2400 frames in 18.2 s``. Training's console (:mod:`affectmodel.training.console`) follows
the same rule through :func:`interactive`.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator, Sized
from types import TracebackType
from typing import Any, TextIO, TypeVar

T = TypeVar("T")


def interactive(stream: TextIO | None = None) -> bool:
    """True when ``stream`` (default: stderr) is a terminal, where progress bars may be drawn."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a file-like object without isatty, or a closed one
        return False


class Progress:
    """One stage's progress: ``update(n)`` then ``close()`` (or use it as a context manager).

    On a terminal: a tqdm bar (``leave``: keep it once done). Elsewhere: nothing until ``close``,
    which writes ``"<desc>: <count> <unit>s in <seconds> s"`` (not when the stage fails: the error
    says what happened). ``enabled=False``: silent."""

    def __init__(self, total: int | None, desc: str, unit: str, enabled: bool = True, leave: bool = True,
                 file: TextIO | None = None):
        self.desc, self.unit, self.count, self.enabled = desc, unit, 0, enabled
        self.file = file
        self.started = time.perf_counter()
        self.closed = False
        self.bar: Any = None
        if enabled and interactive(file):
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, leave=leave, file=file, dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        self.count += n
        if self.bar is not None:
            self.bar.update(n)

    def close(self, completed: bool = True) -> None:
        """``completed=False`` (the stage failed or was abandoned): no closing line."""
        if self.closed:
            return
        self.closed = True
        if self.bar is not None:
            self.bar.close()
        elif self.enabled and completed:
            seconds = time.perf_counter() - self.started
            unit = self.unit if self.count == 1 else f"{self.unit}s"
            print(f"{self.desc}: {self.count} {unit} in {seconds:.1f} s", file=self.file or sys.stderr, flush=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close(completed=kind is None)


def progress_iter(items: Iterable[T], desc: str, unit: str, enabled: bool = True, total: int | None = None,
                  file: TextIO | None = None) -> Iterator[T]:
    """``items``, counted by a :class:`Progress` (``total``: ``len(items)`` when it has one)."""
    if total is None and isinstance(items, Sized):
        total = len(items)
    with Progress(total, desc, unit, enabled=enabled, file=file) as progress:
        for item in items:
            yield item
            progress.update(1)
