"""Masked task losses and task weighting (DESIGN.md §4).

Every loss ignores rows (or AU/VA elements) without a valid label, and a batch with no valid
label for a task gives a zero loss that still carries gradient structure (never NaN).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .tasks import TASK_WEIGHTINGS, get_task, parse_tasks


def _zero(like: torch.Tensor) -> torch.Tensor:
    # Connected to the graph so backward() works and leaves gradients at exactly zero.
    return like.sum() * 0.0


# ------------------------------------------------------------------ expression

def expression_loss(logits: torch.Tensor, target: torch.Tensor, kind: str = "ce",
                    class_weights: torch.Tensor | None = None, label_smoothing: float = 0.0,
                    focal_gamma: float = 2.0) -> torch.Tensor:
    """Cross-entropy (``ce``), class-weighted CE (``weighted_ce``) or focal loss (``focal``).

    Rows with target outside ``[0, C)`` (e.g. -1) are ignored. ``weighted_ce`` needs
    ``class_weights`` (see :func:`inverse_frequency_weights`); ``focal`` uses them as alpha when
    given. The weighted mean is normalised by the weights of the valid rows, as in PyTorch.
    """
    # Configuration errors must surface even on a batch without valid labels.
    if kind not in ("ce", "weighted_ce", "focal"):
        raise ValueError(f"unknown expression loss {kind!r}; choose from {get_task('expr').losses}")
    if kind == "weighted_ce" and class_weights is None:
        raise ValueError("weighted_ce needs class_weights")
    target = target.long()
    valid = (target >= 0) & (target < logits.shape[1])
    if not valid.any():
        return _zero(logits)
    logits, target = logits[valid].float(), target[valid]
    if kind in ("ce", "weighted_ce"):
        weight = class_weights.to(logits) if kind == "weighted_ce" else None
        return F.cross_entropy(logits, target, weight=weight, label_smoothing=label_smoothing)
    if kind == "focal":
        log_p = F.log_softmax(logits, dim=1)
        n_classes = logits.shape[1]
        # Label smoothing applies to the focal target distribution too.
        soft = F.one_hot(target, n_classes).float() * (1 - label_smoothing) + label_smoothing / n_classes
        p = log_p.exp()
        per_class = -soft * (1 - p) ** focal_gamma * log_p
        if class_weights is not None:
            per_class = per_class * class_weights.to(per_class)
            return per_class.sum() / class_weights.to(per_class)[target].sum()
        return per_class.sum(dim=1).mean()
    raise ValueError(f"unknown expression loss {kind!r}; choose from {get_task('expr').losses}")


# ------------------------------------------------------------------ action units

def au_loss(logits: torch.Tensor, target: torch.Tensor, kind: str = "bce",
            pos_weight: torch.Tensor | None = None, focal_gamma: float = 2.0) -> torch.Tensor:
    """Binary cross-entropy (``bce``), BCE with per-AU ``pos_weight`` (``weighted_bce``) or focal.

    Each AU element whose target is not 0/1 (e.g. -1) is ignored; the mean is over valid
    elements.
    """
    if kind not in ("bce", "weighted_bce", "focal"):
        raise ValueError(f"unknown AU loss {kind!r}; choose from {get_task('au').losses}")
    if kind == "weighted_bce" and pos_weight is None:
        raise ValueError("weighted_bce needs pos_weight")
    valid = (target == 0) | (target == 1)
    if not valid.any():
        return _zero(logits)
    # NaN targets must not leak into the sum through 0 * NaN: zero the invalid ones.
    logits, target = logits.float(), torch.where(valid, target.float(), 0.0)
    pw = pos_weight.to(logits) if (pos_weight is not None and kind != "bce") else None
    if kind in ("bce", "weighted_bce"):
        per = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pw, reduction="none")
    elif kind == "focal":
        bce = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pw, reduction="none")
        p = torch.sigmoid(logits)
        p_t = p * target + (1 - p) * (1 - target)
        per = (1 - p_t) ** focal_gamma * bce
    else:
        raise ValueError(f"unknown AU loss {kind!r}; choose from {get_task('au').losses}")
    return torch.where(valid, per, 0.0).sum() / valid.sum()


# ------------------------------------------------------------------ valence / arousal

def ccc_torch(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Differentiable CCC with population moments (matches :func:`affectmodel.metrics.ccc`)."""
    mx, my = x.mean(), y.mean()
    cov = ((x - mx) * (y - my)).mean()
    return 2 * cov / (x.var(unbiased=False) + y.var(unbiased=False) + (mx - my) ** 2 + eps)


def va_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "ccc",
            mse_weight: float = 0.5) -> torch.Tensor:
    """``ccc``: mean over valence and arousal of 1 - CCC on the batch's valid rows;
    ``mse``: mean squared error; ``ccc+mse``: (1 - mse_weight) * ccc + mse_weight * mse.

    A dimension with fewer than 2 valid values in the batch gives no CCC term (CCC is
    undefined there); it still contributes its MSE.
    """
    if kind not in ("ccc", "mse", "ccc+mse"):
        raise ValueError(f"unknown VA loss {kind!r}; choose from {get_task('va').losses}")
    pred, target = pred.float(), target.float()
    valid = torch.isfinite(target) & (target >= -1) & (target <= 1)
    if not valid.any():
        return _zero(pred)
    terms_ccc, terms_mse = [], []
    for d in range(pred.shape[1]):
        m = valid[:, d]
        if m.sum() >= 1:
            terms_mse.append(F.mse_loss(pred[m, d], target[m, d]))
        if m.sum() >= 2:
            terms_ccc.append(1 - ccc_torch(pred[m, d], target[m, d]))
    mse = torch.stack(terms_mse).mean()
    if kind == "mse":
        return mse
    c = torch.stack(terms_ccc).mean() if terms_ccc else _zero(pred)
    return c if kind == "ccc" else (1 - mse_weight) * c + mse_weight * mse


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

    expr: str = "ce"
    au: str = "bce"
    va: str = "ccc"
    weighting: str = "fixed"                      # fixed | uncertainty
    task_weights: dict[str, float] = field(default_factory=lambda: {"expr": 1.0, "au": 1.0, "va": 1.0})
    label_smoothing: float = 0.0
    focal_gamma: float = 2.0

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
    ``total = sum_t exp(-s_t) * L_t + s_t``. Its parameters must be given to the optimizer.
    """

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
        c = self.config
        losses = {}
        if "expr" in self.tasks:
            losses["expr"] = expression_loss(outputs["expr"], targets["expr"], c.expr,
                                             self.class_weights, c.label_smoothing, c.focal_gamma)
        if "au" in self.tasks:
            losses["au"] = au_loss(outputs["au"], targets["au"], c.au, self.pos_weight, c.focal_gamma)
        if "va" in self.tasks:
            losses["va"] = va_loss(outputs["va"], targets["va"], c.va)
        return losses

    def forward(self, outputs: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        losses = self.task_losses(outputs, targets)
        total = 0.0
        for task, loss in losses.items():
            if self.config.weighting == "uncertainty":
                s = self.log_vars[task]
                total = total + torch.exp(-s) * loss + s
            else:
                total = total + self.config.task_weights.get(task, 1.0) * loss
        return total, losses
