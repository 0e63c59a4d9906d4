"""A compact list of image paths: a few numpy arrays instead of one ``Path`` object per frame.

Aff-Wild2 has 2.6 M frames. As ``Path`` objects they take about 0.3 GB per million in every
process that holds the data set, and a forked DataLoader worker ends up with its own copy:
reading an object touches its reference count, so copy-on-write copies the pages. :class:`PathList`
keeps the folders once (a list of strings, a few thousand at most), and per frame a folder number
and the file name's bytes in one buffer: about 25 bytes a frame, in arrays that workers share
with the parent untouched. Items come back as ``Path`` objects, built when asked for.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np


class PathList(Sequence[Path]):
    """An immutable sequence of paths. ``take(indices)`` gives a subset that shares the storage."""

    def __init__(self, paths: Iterable[str | os.PathLike[str]] = ()):
        folders: dict[str, int] = {}
        folder_ids: list[int] = []
        names: list[bytes] = []
        for path in paths:
            folder, name = os.path.split(os.fspath(path))
            folder_ids.append(folders.setdefault(folder, len(folders)))
            names.append(os.fsencode(name))
        self._folders = list(folders)
        self._folder_ids = np.asarray(folder_ids, dtype=np.int32 if len(folders) < 2**31 else np.int64)
        self._ends = np.cumsum([len(n) for n in names], dtype=np.int64)
        self._names = np.frombuffer(b"".join(names), dtype=np.uint8)
        self._rows: np.ndarray | None = None  # positions into the storage; None: all, in order

    def take(self, indices: Sequence[int] | np.ndarray) -> PathList:
        """The paths at ``indices`` (int array or sequence), sharing this list's storage."""
        idx = np.asarray(indices, dtype=np.int64)
        new = object.__new__(PathList)
        new._folders, new._folder_ids, new._ends, new._names = self._folders, self._folder_ids, self._ends, self._names
        new._rows = idx if self._rows is None else self._rows[idx]
        return new

    def __len__(self) -> int:
        return len(self._folder_ids) if self._rows is None else len(self._rows)

    def _path(self, row: int) -> Path:
        start = int(self._ends[row - 1]) if row else 0
        name = os.fsdecode(self._names[start:int(self._ends[row])].tobytes())
        return Path(self._folders[int(self._folder_ids[row])], name)

    @overload
    def __getitem__(self, i: int) -> Path: ...

    @overload
    def __getitem__(self, i: slice) -> list[Path]: ...

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self)
        i = int(i)
        if not -n <= i < n:
            raise IndexError(f"path index {i} out of range for {n} paths")
        i %= n
        return self._path(i if self._rows is None else int(self._rows[i]))

    def __iter__(self) -> Iterator[Path]:
        for i in range(len(self)):
            yield self[i]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, (str, bytes)):
            return NotImplemented
        return len(self) == len(other) and all(Path(a) == Path(b) for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]  # mutable-looking sequence semantics, like list

    def __repr__(self) -> str:
        shown = ", ".join(repr(str(p)) for p in self[:3])
        return f"PathList([{shown}{', ...' if len(self) > 3 else ''}], {len(self)} paths)"

    def nbytes(self) -> int:
        """Bytes held in arrays (the folder strings aside)."""
        rows = 0 if self._rows is None else self._rows.nbytes
        return int(self._folder_ids.nbytes + self._ends.nbytes + self._names.nbytes + rows)
