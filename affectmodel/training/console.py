"""What a training run prints: progress bars on a terminal, one plain line per epoch in a log.

Bars are drawn only when stderr is a terminal (and ``TQDM_DISABLE`` does not silence them); in a
log, bars would leave carriage returns, escape codes and blank lines, so only the lines are
printed: the epoch summaries and, once, any note on an epoch's step count.
"""
from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from tqdm.auto import tqdm

from ..progress import interactive as is_terminal


class RunConsole:
    """Console output of one run; a silent one (``enabled=False``) on every rank but the main one."""

    def __init__(self, name: str, n_epochs: int, enabled: bool = True, out: TextIO | None = None,
                 interactive: bool | None = None):
        self.name, self.n_epochs, self.enabled = name or "train", n_epochs, enabled
        self.out = out
        self.interactive = enabled and (is_terminal() if interactive is None else interactive)
        self.epoch_bar: Any = None
        self.step_bar: Any = None

    def start(self, epochs_done: int) -> None:
        if self.interactive:
            self.epoch_bar = tqdm(total=self.n_epochs, initial=epochs_done, desc=self.name, unit="epoch",
                                  dynamic_ncols=True)

    def start_epoch(self, epoch: int, steps: int, steps_done: int) -> None:
        """``epoch`` counts from 1; ``steps`` this epoch will take, ``steps_done`` of them already."""
        if self.interactive:
            self.step_bar = tqdm(total=steps, initial=steps_done, desc=f"epoch {epoch}/{self.n_epochs}", unit="step",
                                 leave=False, dynamic_ncols=True)

    def step(self, loss: float | None) -> None:
        """One step done; ``loss``: the latest loss read back from the device, if any (not every step)."""
        if self.step_bar is not None:
            if loss is not None:
                self.step_bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
            self.step_bar.update(1)

    def end_epoch(self, summary: str) -> None:
        if self.step_bar is not None:
            self.step_bar.close()
            self.step_bar = None
        if self.epoch_bar is not None:
            self.epoch_bar.update(1)
        self.line(summary)

    def line(self, text: str) -> None:
        """A line of its own (above the bars on a terminal)."""
        if not self.enabled:
            return
        if self.interactive:
            tqdm.write(text, file=self.out)
        else:
            print(text, file=self.out or sys.stdout, flush=True)

    def close(self) -> None:
        for bar in (self.step_bar, self.epoch_bar):
            if bar is not None:
                bar.close()  # a closed bar is drawn once, at most
        self.step_bar = self.epoch_bar = None


def step_count_note(epoch: int, steps: int, steps_per_epoch: int, per_rank: int, batch: int,
                    drop_last: bool) -> tuple[str, str] | None:
    """``(reason, line)`` saying why epoch ``epoch`` (from 1) takes ``steps`` steps rather than
    ``per_rank / batch``, or None. Callers print each reason once."""
    if steps < steps_per_epoch:
        return "limit", f"epoch {epoch}: {steps} steps (max_steps reached)"
    if drop_last and per_rank % batch:
        return "partial", (f"epoch {epoch}: {steps} steps of {batch} images; the last {per_rank % batch} images "
                           "of each epoch's order are left out (partial last batch)")
    if not drop_last:
        return "small", (f"epoch {epoch}: {steps} step of {per_rank} images (training set smaller than "
                         f"the batch size {batch})")
    return None


def summary_line(epoch: int, n_epochs: int, row: Mapping[str, Any], tasks: Sequence[str], metrics: Mapping[str, Any],
                 is_best: bool, seconds: float, split: str = "val") -> str:
    """One epoch's figures: training loss (per task when several), the scores on ``split`` (the
    development split during training), LR, time."""
    losses = " ".join(f"{t} {row[f'train_loss_{t}']:.3f}" for t in tasks if row.get(f"train_loss_{t}") is not None)
    shown = [m for m in ("P_EXPR", "P_AU", "P_VA", "P_MTL") if m in metrics]
    scores = " ".join(f"{m} {metrics[m]:.3f}" for m in shown)
    return (f"epoch {epoch}/{n_epochs}: loss {row['train_loss']:.3f}"
            + (f" ({losses})" if len(tasks) > 1 and losses else "")
            + (f" | {split} {scores}{' *best' if is_best else ''}" if scores else "")
            + f" | lr {row['lr']:.2e} | {seconds:.1f}s")
