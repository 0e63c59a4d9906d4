"""Masked task losses and task weighting (docs/REFERENCE.md, "Losses and training recipes").

Every loss ignores rows (or AU/VA elements) without a valid label, and a batch with no valid
label for a task gives a zero loss that still carries gradient structure (never NaN).

The forward path has no host-device synchronisation: masks are multiplied in, never used to
index (data-dependent shapes) or tested with ``.any()``/``float()`` on the host, so a CUDA step
is not stalled by its losses. Logits are cast to float32 before any reduction (fp16 sums
overflow, and inf * 0 is NaN).

Under DDP (a process group, ``LossConfig.global_batch`` / ``va_global_batch``) each loss is that of
the global batch: every masked mean is a ratio of sums, and the sums of every task travel to every
rank in one all_reduce per step (:func:`global_sums`), so ranks with more labels weigh more, as
they would in one process; a task counts as present (uncertainty weighting) when any rank holds
one of its labels.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .metrics import valid_au, valid_expression, valid_rows, valid_va  # the one statement of valid labels
from .tasks import TASK_WEIGHTINGS, get_task, parse_tasks


def distributed() -> bool:
    """A process group is initialised (torchrun): losses may be computed over the global batch."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def global_sums(local: torch.Tensor) -> torch.Tensor:
    """``local`` (sums over this process's batch) summed over every process: one all_reduce of a
    detached copy, no collective in the backward pass, no host sync. The value is the global sum on
    every rank; the gradient flows to this rank's part only, ``world_size`` times over, which
    DistributedDataParallel's averaging divides back: a loss computed from these sums trains as
    one process on the whole batch would."""
    total = local.detach().clone()
    torch.distributed.all_reduce(total)
    return total + torch.distributed.get_world_size() * (local - local.detach())


def _masked_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum(values) / sum(weights), 0 when the weights are all zero: masked rows are already zero
    in ``values``. No host-device synchronisation (no data-dependent shapes or branches)."""
    return values.sum() / weights.sum().clamp(min=torch.finfo(values.dtype).tiny)


def has_labels(task: str, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """1.0 when the batch holds at least one valid label of ``task``, else 0.0 (a tensor: no sync)."""
    return valid_rows(task, target, num_classes).any().float()


# ------------------------------------------------------------------ expression

def expression_loss(logits: torch.Tensor, target: torch.Tensor, kind: str = "ce",
                    class_weights: torch.Tensor | None = None, label_smoothing: float = 0.0,
                    focal_gamma: float = 2.0) -> torch.Tensor:
    """Cross-entropy (``ce``), class-weighted CE (``weighted_ce``) or focal loss (``focal``).

    Rows with target outside ``[0, C)`` (e.g. -1) are ignored. ``weighted_ce`` needs
    ``class_weights`` (see :func:`inverse_frequency_weights`); ``focal`` uses them as alpha when
    given. The weighted mean is normalised by the weights of the valid rows, as in PyTorch.
    """
    return _masked_mean(*_expression_terms(logits, target, kind, class_weights, label_smoothing, focal_gamma))


def _expression_terms(logits: torch.Tensor, target: torch.Tensor, kind: str, class_weights: torch.Tensor | None,
                      label_smoothing: float, focal_gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-row losses, zero on rows without a valid label; per-row weights): the loss is their ratio of sums."""
    # Configuration errors must surface even on a batch without valid labels.
    if kind not in ("ce", "weighted_ce", "focal"):
        raise ValueError(f"unknown expression loss {kind!r}; choose from {get_task('expr').losses}")
    if kind == "weighted_ce" and class_weights is None:
        raise ValueError("weighted_ce needs class_weights")
    n_classes = logits.shape[1]
    target = target.long()
    valid = valid_expression(target, n_classes)
    safe_target = torch.where(valid, target, 0)  # any class: the row is masked out below
    logits = logits.float()
    row_weight = valid.float()
    if kind in ("ce", "weighted_ce"):
        weight = class_weights.to(logits) if kind == "weighted_ce" and class_weights is not None else None
        per_row = F.cross_entropy(logits, safe_target, weight=weight, label_smoothing=label_smoothing,
                                  reduction="none")
        if weight is not None:
            row_weight = row_weight * weight[safe_target]
        return torch.where(valid, per_row, 0.0), row_weight
    log_p = F.log_softmax(logits, dim=1)
    # Label smoothing applies to the focal target distribution too.
    soft = F.one_hot(safe_target, n_classes).float() * (1 - label_smoothing) + label_smoothing / n_classes
    per_class = -soft * (1 - log_p.exp()) ** focal_gamma * log_p
    if class_weights is not None:
        weight = class_weights.to(per_class)
        per_class = per_class * weight
        row_weight = row_weight * weight[safe_target]
    return torch.where(valid, per_class.sum(dim=1), 0.0), row_weight


# ------------------------------------------------------------------ action units

def au_loss(logits: torch.Tensor, target: torch.Tensor, kind: str = "bce",
            pos_weight: torch.Tensor | None = None, focal_gamma: float = 2.0) -> torch.Tensor:
    """Binary cross-entropy (``bce``), BCE with per-AU ``pos_weight`` (``weighted_bce``) or focal.

    Each AU element whose target is not 0/1 (e.g. -1) is ignored; the mean is over valid
    elements.
    """
    return _masked_mean(*_au_terms(logits, target, kind, pos_weight, focal_gamma))


def _au_terms(logits: torch.Tensor, target: torch.Tensor, kind: str, pos_weight: torch.Tensor | None,
              focal_gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-element losses, zero where not annotated; validity as weights)."""
    if kind not in ("bce", "weighted_bce", "focal"):
        raise ValueError(f"unknown AU loss {kind!r}; choose from {get_task('au').losses}")
    if kind == "weighted_bce" and pos_weight is None:
        raise ValueError("weighted_bce needs pos_weight")
    valid = valid_au(target)
    # NaN targets must not leak into the sum through 0 * NaN: zero the invalid ones.
    logits, target = logits.float(), torch.where(valid, target.float(), 0.0)
    pw = pos_weight.to(logits) if (pos_weight is not None and kind != "bce") else None
    per = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pw, reduction="none")
    if kind == "focal":
        p = torch.sigmoid(logits)
        p_t = p * target + (1 - p) * (1 - target)
        per = (1 - p_t) ** focal_gamma * per
    return torch.where(valid, per, 0.0), valid.float()


# ------------------------------------------------------------------ valence / arousal

def ccc_torch(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Differentiable CCC with population moments (matches :func:`affectmodel.metrics.ccc`)."""
    mx, my = x.mean(), y.mean()
    cov = ((x - mx) * (y - my)).mean()
    return 2 * cov / (x.var(unbiased=False) + y.var(unbiased=False) + (mx - my) ** 2 + eps)


def _va_moments(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per dimension, the sums a CCC and an MSE need: (7, D) = n, Σx, Σy, Σx², Σy², Σxy, Σ(x-y)².
    In float64: sums of squares lose little there and stay exact when added over ranks."""
    m = valid.double()
    x, y = pred.double() * m, target.double() * m
    return torch.stack([m.sum(0), x.sum(0), y.sum(0), (x * x).sum(0), (y * y).sum(0), (x * y).sum(0),
                        ((x - y) ** 2).sum(0)])


def _va_terms_from_moments(s: torch.Tensor, eps: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor]:
    n, sx, sy, sxx, syy, sxy, sse = s
    nc = n.clamp(min=1)
    mx, my = sx / nc, sy / nc
    var_x, var_y = sxx / nc - mx * mx, syy / nc - my * my
    cov = sxy / nc - mx * my
    ccc = 2 * cov / (var_x + var_y + (mx - my) ** 2 + eps)
    return _va_combine(sse / nc, 1 - ccc, n)


def _va_combine(mse_d: torch.Tensor, ccc_term_d: torch.Tensor, n: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Means over the dimensions with >= 1 valid value (MSE) and >= 2 (CCC; undefined below)."""
    has_mse, has_ccc = (n >= 1).to(mse_d.dtype), (n >= 2).to(mse_d.dtype)
    mse = _masked_mean(torch.where(n >= 1, mse_d, 0.0), has_mse)
    ccc = _masked_mean(torch.where(n >= 2, ccc_term_d, 0.0), has_ccc)
    return mse.float(), ccc.float()


def va_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = get_task("va").default_loss,
            mse_weight: float = 0.5, global_batch: bool = False) -> torch.Tensor:
    """``ccc``: mean over valence and arousal of 1 - CCC on the batch's valid rows;
    ``mse``: mean squared error; ``ccc+mse``: (1 - mse_weight) * ccc + mse_weight * mse.

    A dimension with fewer than 2 valid values in the batch gives no CCC term (CCC is
    undefined there); it still contributes its MSE.

    ``global_batch`` (under ``torch.distributed``): CCC and MSE of the whole global batch, from
    moments summed over every rank (:func:`global_sums`; shards may be uneven). Every rank gets
    the same value; each rank's gradient is ``world_size`` times its share, which
    DistributedDataParallel's gradient averaging divides back, so DDP training matches one
    process on the concatenated batch. Without an initialised process group it is the local loss.
    """
    if kind not in ("ccc", "mse", "ccc+mse"):
        raise ValueError(f"unknown VA loss {kind!r}; choose from {get_task('va').losses}")
    pred, target = pred.float(), target.float()
    valid = valid_va(target)
    target = torch.where(valid, target, 0.0)  # NaN must not leak through 0 * NaN
    if global_batch and distributed():
        mse, c = _va_terms_from_moments(global_sums(_va_moments(pred, target, valid)))
    else:
        m = valid.float()
        n = m.sum(0)
        nc = n.clamp(min=1)
        mx, my = (pred * m).sum(0) / nc, (target * m).sum(0) / nc
        dx, dy = (pred - mx) * m, (target - my) * m
        cov, var_x, var_y = (dx * dy).sum(0) / nc, (dx * dx).sum(0) / nc, (dy * dy).sum(0) / nc
        ccc = 2 * cov / (var_x + var_y + (mx - my) ** 2 + 1e-8)
        mse_d = (((pred - target) * m) ** 2).sum(0) / nc
        mse, c = _va_combine(mse_d, 1 - ccc, n)
    return _va_of_kind(kind, mse, c, mse_weight)


def _va_of_kind(kind: str, mse: torch.Tensor, ccc_term: torch.Tensor, mse_weight: float = 0.5) -> torch.Tensor:
    if kind == "mse":
        return mse
    return ccc_term if kind == "ccc" else (1 - mse_weight) * ccc_term + mse_weight * mse


# ------------------------------------------------------------------ class statistics

def inverse_frequency_weights(counts: Sequence[float]) -> torch.Tensor:
    """Class weights proportional to 1/frequency, normalised to mean 1 (absent classes: 0)."""
    c = torch.as_tensor(counts, dtype=torch.float32)
    w = torch.where(c > 0, c.sum() / (len(c) * c.clamp(min=1)), torch.zeros_like(c))
    return w * (len(c) / w.sum().clamp(min=1e-8))


def au_pos_weight(positives: Sequence[float], negatives: Sequence[float],
                  max_weight: float = 50.0) -> torch.Tensor:
    """Per-AU ``pos_weight`` = negatives / positives, capped (rare AUs would explode)."""
    p = torch.as_tensor(positives, dtype=torch.float32)
    n = torch.as_tensor(negatives, dtype=torch.float32)
    return (n / p.clamp(min=1)).clamp(min=1e-3, max=max_weight)


# ------------------------------------------------------------------ multi-task

@dataclass
class LossConfig:
    """Which loss each task uses and how the task losses are combined."""

    expr: str = get_task("expr").default_loss   # each task's default, declared in affectmodel.tasks
    au: str = get_task("au").default_loss
    va: str = get_task("va").default_loss
    weighting: str = "fixed"                      # fixed | uncertainty
    task_weights: dict[str, float] = field(default_factory=lambda: {"expr": 1.0, "au": 1.0, "va": 1.0})
    label_smoothing: float = 0.0
    focal_gamma: float = 2.0
    # Under DDP: VA's CCC over the whole global batch (moments gathered from every rank) instead
    # of each rank's B/N samples; without a process group it changes nothing.
    va_global_batch: bool = False
    # Under DDP: expression and AU losses as masked means over the global batch (sums of losses and
    # label weights over every rank), not a mean of the ranks' means whatever their label counts.
    global_batch: bool = False

    def __post_init__(self) -> None:
        for key in ("expr", "au", "va"):
            if getattr(self, key) not in get_task(key).losses:
                raise ValueError(f"unknown {key} loss {getattr(self, key)!r}; "
                                 f"choose from {', '.join(get_task(key).losses)}")
        if self.weighting not in TASK_WEIGHTINGS:
            raise ValueError(f"unknown task weighting {self.weighting!r}; choose from {TASK_WEIGHTINGS}")


class MultiTaskLoss(nn.Module):
    """Sum of masked task losses with fixed weights or learned uncertainty weighting.

    Uncertainty weighting (Kendall et al., 2018) learns one log-variance ``s_t`` per task:
    ``total = sum_t exp(-s_t) * L_t + s_t``, over the tasks with a label in the batch (a task
    without labels has ``L_t = 0`` and its ``+ s_t`` alone would push its weight down for
    nothing). Its parameters must be given to the optimizer.
    """

    class_weights: torch.Tensor | None  # buffers (follow .to(device)), declared for the type checker
    pos_weight: torch.Tensor | None

    def __init__(self, tasks: Sequence[str], config: LossConfig | None = None,
                 class_weights: torch.Tensor | None = None, pos_weight: torch.Tensor | None = None):
        super().__init__()
        self.tasks = parse_tasks(tasks)
        self.config = config or LossConfig()
        self.register_buffer("class_weights", class_weights, persistent=False)
        self.register_buffer("pos_weight", pos_weight, persistent=False)
        if self.config.weighting == "uncertainty":
            self.log_vars = nn.ParameterDict({t: nn.Parameter(torch.zeros(())) for t in self.tasks})

    def task_losses(self, outputs: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]
                    ) -> dict[str, torch.Tensor]:
        return self.losses_and_presence(outputs, targets)[0]

    def losses_and_presence(self, outputs: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]
                            ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Each task's loss and whether its batch held a label (1.0 / 0.0), both as tensors.

        Under DDP (``global_batch`` / ``va_global_batch`` with a process group) those tasks' losses
        and presence are the global batch's: their sums from every rank travel in one all_reduce
        (:func:`global_sums`)."""
        c = self.config
        on_all = distributed()
        pooled = {t for t in self.tasks if on_all and (c.va_global_batch if t == "va" else c.global_batch)}
        sums: dict[str, torch.Tensor] = {}
        losses, present = {}, {}
        for task in self.tasks:
            out, target = outputs[task], targets[task]
            if task not in pooled:
                if task == "expr":
                    losses[task] = expression_loss(out, target, c.expr, self.class_weights, c.label_smoothing,
                                                   c.focal_gamma)
                elif task == "au":
                    losses[task] = au_loss(out, target, c.au, self.pos_weight, c.focal_gamma)
                else:
                    losses[task] = va_loss(out, target, c.va)
                present[task] = has_labels(task, target, out.shape[-1])
            elif task == "va":
                pred, value = out.float(), target.float()
                valid = valid_va(value)
                sums[task] = _va_moments(pred, torch.where(valid, value, 0.0), valid)
            else:
                values, weights = (_expression_terms(out, target, c.expr, self.class_weights, c.label_smoothing,
                                                     c.focal_gamma) if task == "expr"
                                   else _au_terms(out, target, c.au, self.pos_weight, c.focal_gamma))
                # row/element counts of valid labels ride along: class weights may be zero on a labelled row
                count = valid_rows(task, target, out.shape[-1]).double().sum()
                sums[task] = torch.stack([values.double().sum(), weights.double().sum(), count])
        if sums:
            flat = global_sums(torch.cat([v.reshape(-1) for v in sums.values()]))
            for (task, local), part in zip(sums.items(), flat.split([v.numel() for v in sums.values()]),
                                           strict=True):
                total = part.reshape(local.shape)
                if task == "va":
                    losses[task] = _va_of_kind(c.va, *_va_terms_from_moments(total))
                    present[task] = (total[0].sum() > 0).float()  # n, per dimension
                else:
                    losses[task] = (total[0] / total[1].clamp(min=torch.finfo(torch.float64).tiny)).float()
                    present[task] = (total[2] > 0).float()
        return {t: losses[t] for t in self.tasks}, {t: present[t] for t in self.tasks}

    def forward(self, outputs: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        losses, present = self.losses_and_presence(outputs, targets)
        total: torch.Tensor | float = 0.0
        for task, loss in losses.items():
            if self.config.weighting == "uncertainty":
                s = self.log_vars[task]
                total = total + present[task] * (torch.exp(-s) * loss + s)
            else:
                total = total + self.config.task_weights.get(task, 1.0) * loss
        return torch.as_tensor(total), losses
