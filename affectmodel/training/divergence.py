"""A diverged run stops at once: a non-finite loss, weights or outputs end it with one line.

Every step's loss is checked on the device (:meth:`DivergenceWatch.observe`: a few tensor ops, no
host-device synchronisation): the first step whose loss is NaN or inf is kept in a device tensor.
It is read back only where the trainer reads the loss anyway (every ``LOG_EVERY`` steps, at the
end of each evaluation period and before each checkpoint, where the weights are checked too), so
the GPU queue is never stalled for it. Under DDP the ranks agree through one all_reduce at those
same points (every rank reaches them at the same step). Weights can also be finite but so large
that the model's outputs overflow (a learning rate of 1e30 does that after one step): the
evaluations refuse non-finite outputs too (:func:`check_outputs`).

A diverged run raises :class:`TrainingDiverged`, e.g. ``diverged at step 12: loss is NaN (try a
lower --lr)``; the trainer writes ``diverged.json`` into the run folder
(:data:`affectmodel.records.DIVERGED_FILE`) and no ``metrics.json``, and ``--resume`` refuses the
folder. Nothing from the diverged steps is checkpointed.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import torch

from .config import TrainingError

HINT = "try a lower --lr"
_NO_STEP = 2 ** 52  # above any step count, exact in float64 (the ranks' earliest step is a max of BIG - step)


class TrainingDiverged(TrainingError):
    """The loss or the weights became NaN or inf: the run cannot continue (nor be resumed)."""

    def __init__(self, step: int, reason: str):
        super().__init__(f"diverged at step {step}: {reason} ({HINT})")
        self.step, self.reason = step, reason

    def __reduce__(self):  # picklable as itself (DDP ranks share errors by pickling them)
        return type(self), (self.step, self.reason)


def nonfinite_tensors(tensors: Iterable[tuple[str, torch.Tensor]]) -> list[str]:
    """Names of the floating-point tensors holding a NaN or inf (one host read for all of them)."""
    named = [(name, t) for name, t in tensors if torch.is_floating_point(t) and t.numel()]
    if not named:
        return []
    finite = torch.stack([torch.isfinite(t).all() for _, t in named]).cpu().tolist()
    return [name for (name, _), ok in zip(named, finite, strict=True) if not ok]


def check_outputs(outputs: Mapping[str, np.ndarray], step: int, split: str) -> None:
    """Raise :class:`TrainingDiverged` when an evaluation's outputs hold a NaN or inf."""
    bad = [task for task, values in outputs.items() if not np.isfinite(values).all()]
    if bad:
        raise TrainingDiverged(step, f"{', '.join(bad)} outputs are not finite on the {split} split")


class DivergenceWatch:
    """First step with a non-finite loss, tracked on the device; :meth:`check` reads it back."""

    def __init__(self, device: torch.device):
        self.first_bad = torch.zeros((), dtype=torch.int64, device=device)   # 1-based step; 0: none yet
        self.was_nan = torch.zeros((), dtype=torch.bool, device=device)      # that loss was NaN (else inf)

    def observe(self, loss: torch.Tensor, step: int) -> None:
        """Remember ``step`` (1-based) if ``loss`` is its first non-finite loss. No host sync: the
        Python ``step`` enters as a scalar argument, the comparison stays on the device."""
        loss = loss.detach()
        first = ~torch.isfinite(loss) & (self.first_bad == 0)
        self.first_bad = torch.where(first, step, self.first_bad)
        self.was_nan = torch.where(first, torch.isnan(loss), self.was_nan)

    def check(self, step: int, module: torch.nn.Module | None = None, distributed: bool = False) -> None:
        """Raise :class:`TrainingDiverged` if a loss so far was not finite or (``module`` given) a
        weight or buffer of ``module`` is not finite now; ``step``: steps done. One host read (and
        under DDP one all_reduce, on every rank at the same point)."""
        bad_weights = torch.zeros((), dtype=torch.float64, device=self.first_bad.device)
        if module is not None:
            named = [(n, t) for n, t in module.state_dict().items() if torch.is_floating_point(t) and t.numel()]
            if named:
                finite = torch.stack([torch.isfinite(t).all() for _, t in named]).all()
                bad_weights = (~finite).double()
        flags = torch.stack([torch.where(self.first_bad > 0, _NO_STEP - self.first_bad, 0).double(),
                             (self.was_nan & (self.first_bad > 0)).double(), bad_weights])
        if distributed:
            torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
        earliest, nan, weights = flags.cpu().tolist()
        if earliest:
            raise TrainingDiverged(int(_NO_STEP - earliest), "loss is NaN" if nan else "loss is inf")
        if weights:
            raise TrainingDiverged(step, "weights are not finite")


__all__ = ["HINT", "DivergenceWatch", "TrainingDiverged", "check_outputs", "nonfinite_tensors"]
