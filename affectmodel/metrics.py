"""ABAW metrics exactly as defined in docs/REFERENCE.md ("Metrics"), on numpy arrays.

Invalid labels (-1 for EXPR/AU, -5 for VA; in general anything outside the valid range) are
dropped per task (per AU / per VA dimension) before scoring.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .tasks import AU_NAMES, DEFAULT_EXPRESSION_SPACE, MTL_METRIC, VA_NAMES, get_label_space

# ------------------------------------------------------------------ validity masks
# The one statement of which labels count. The rules use only comparisons, so they take numpy
# arrays and torch tensors alike (the training losses call them on device tensors: no copies, no
# host-device synchronisation); anything else is converted to a numpy array.

def _array(target: Any) -> Any:
    return target if hasattr(target, "dtype") and hasattr(target, "shape") else np.asarray(target)


def valid_expression(target: Any, num_classes: int) -> Any:
    """Per-element mask: an expression label is valid when it is a class index (``-1``: not annotated)."""
    target = _array(target)
    return (target >= 0) & (target < num_classes)


def valid_au(target: Any) -> Any:
    """Per-element mask: an AU label is valid when it is 0 or 1."""
    target = _array(target)
    return (target == 0) | (target == 1)


def valid_va(target: Any) -> Any:
    """Per-element mask: a valence/arousal value is valid when within [-1, 1] (NaN and ±inf fail
    the comparisons, so they are invalid too)."""
    target = _array(target)
    return (target >= -1.0) & (target <= 1.0)


def valid_rows(task: str, target: Any, num_classes: int) -> Any:
    """Per-row mask: the row carries a usable label of ``task`` (AU and VA: at least one column)."""
    if task == "expr":
        return valid_expression(target, num_classes)
    if task == "au":
        return valid_au(target).any(-1)
    if task == "va":
        return valid_va(target).any(-1)
    raise ValueError(f"unknown task {task!r}")


# ------------------------------------------------------------------ F1

def f1_binary(pred: np.ndarray, target: np.ndarray) -> float:
    """Binary F1 of the positive class; 0 when there are no true or predicted positives."""
    pred = np.asarray(pred).astype(bool)
    target = np.asarray(target).astype(bool)
    tp = np.sum(pred & target)
    denom = 2 * tp + np.sum(pred & ~target) + np.sum(~pred & target)
    return float(2 * tp / denom) if denom else 0.0


def expression_f1(pred: np.ndarray, target: np.ndarray, num_classes: int) -> tuple[float, np.ndarray]:
    """Macro F1 over all ``num_classes`` classes and the per-class F1.

    ``pred`` is class indices (n,) or scores (n, C). Rows with invalid target are dropped.
    Equal to sklearn ``f1_score(average="macro", labels=range(C), zero_division=0)``.
    """
    pred = np.asarray(pred)
    if pred.ndim == 2:
        pred = pred.argmax(axis=1)
    target = np.asarray(target).astype(int)
    keep = valid_expression(target, num_classes)
    pred, target = pred[keep], target[keep]
    per_class = np.array([f1_binary(pred == c, target == c) for c in range(num_classes)])
    return float(per_class.mean()), per_class


def au_f1(scores: np.ndarray, target: np.ndarray, thresholds: float | Sequence[float] | np.ndarray = 0.5
          ) -> tuple[float, np.ndarray]:
    """Mean over AUs of the binary F1 of each AU, and the per-AU F1.

    ``scores`` are probabilities (n, 12); an AU is on when ``score >= threshold``.
    Invalid targets (-1) are dropped per AU.
    """
    scores = np.asarray(scores, dtype=float)
    target = np.asarray(target, dtype=float)
    thr = np.broadcast_to(np.asarray(thresholds, dtype=float), (scores.shape[1],))
    mask = valid_au(target)
    per_au = np.array([
        f1_binary(scores[mask[:, j], j] >= thr[j], target[mask[:, j], j] == 1)
        for j in range(scores.shape[1])
    ])
    return float(per_au.mean()), per_au


def tune_au_thresholds(scores: np.ndarray, target: np.ndarray,
                       grid: Sequence[float] = tuple(np.round(np.arange(0.05, 0.96, 0.05), 2))
                       ) -> np.ndarray:
    """Per-AU threshold maximising that AU's F1 on (validation) predictions.

    Ties keep the threshold closest to 0.5; an AU without valid labels keeps 0.5.
    """
    scores = np.asarray(scores, dtype=float)
    target = np.asarray(target, dtype=float)
    mask = valid_au(target)
    candidates = np.asarray(sorted(grid, key=lambda t: abs(t - 0.5)))
    best = np.full(scores.shape[1], 0.5)
    for j in range(scores.shape[1]):
        s, t = scores[mask[:, j], j], target[mask[:, j], j] == 1
        if len(t) == 0:
            continue
        f1s = [f1_binary(s >= g, t) for g in candidates]
        best[j] = candidates[int(np.argmax(f1s))]
    return best


# ------------------------------------------------------------------ CCC

def ccc(x: np.ndarray, y: np.ndarray) -> float:
    """Concordance correlation coefficient with population moments.

    Degenerate input (empty, or both constant and equal) scores 0, not NaN.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.size == 0:
        return 0.0
    mx, my = x.mean(), y.mean()
    cov = np.mean((x - mx) * (y - my))
    denom = x.var() + y.var() + (mx - my) ** 2
    return float(2 * cov / denom) if denom > 0 else 0.0


def va_ccc(pred: np.ndarray, target: np.ndarray) -> tuple[float, float, float]:
    """(P_VA, CCC_valence, CCC_arousal); invalid targets are dropped per dimension."""
    pred = np.asarray(pred, dtype=float)
    target = np.asarray(target, dtype=float)
    mask = valid_va(target)
    v = ccc(pred[mask[:, 0], 0], target[mask[:, 0], 0])
    a = ccc(pred[mask[:, 1], 1], target[mask[:, 1], 1])
    return (v + a) / 2, v, a


# ------------------------------------------------------------------ no-skill levels
# What a model without skill scores on given labels (docs/REFERENCE.md, "No-skill levels"). A figure
# is a result only when its interval excludes this level: the study draws no verdict otherwise.

def no_skill_expression(target: np.ndarray, num_classes: int) -> float:
    """Macro F1 of the best constant predictor: class ``c`` everywhere scores ``2 p_c / (1 + p_c)`` on
    ``c`` (``p_c`` its share of the valid labels) and 0 on every other class, so the level is
    ``max_c 2 p_c / (1 + p_c) / C``; 0 without valid labels."""
    target = np.asarray(target)
    labels = target[valid_expression(target, num_classes)].astype(int)
    return no_skill_expression_from_counts(np.bincount(labels, minlength=num_classes))


def no_skill_expression_from_counts(class_counts: np.ndarray) -> float:
    """:func:`no_skill_expression` from the number of valid labels of each class (the same figure,
    bit for bit: a published per-video summary has the counts, not the labels)."""
    class_counts = np.asarray(class_counts)
    total = class_counts.sum()
    if total == 0:
        return 0.0
    p = class_counts / total
    return float(np.max(2 * p / (1 + p)) / len(class_counts))


def no_skill_au(target: np.ndarray) -> float:
    """Mean over AUs of the F1 of the all-positive predictor, ``2 p / (1 + p)`` per AU (``p`` its share of
    positives among its valid labels; 0 for an AU without valid labels, as :func:`au_f1` scores it).
    Thresholds tuned on no skill reach this level."""
    target = np.asarray(target, dtype=float)
    valid = valid_au(target)
    return no_skill_au_from_counts(((target == 1) & valid).sum(axis=0), valid.sum(axis=0))


def no_skill_au_from_counts(positives: np.ndarray, valid_counts: np.ndarray) -> float:
    """:func:`no_skill_au` from each AU's positive and valid label counts (the same figure, bit for bit)."""
    positives, valid_counts = np.asarray(positives), np.asarray(valid_counts)
    p = np.divide(positives, valid_counts, out=np.zeros(len(valid_counts)), where=valid_counts > 0)
    return float(np.mean(2 * p / (1 + p)))


NO_SKILL_VA = 0.0  # CCC of a constant output, and in expectation of outputs independent of the labels


def no_skill_levels(targets: Mapping[str, np.ndarray], expression_space=DEFAULT_EXPRESSION_SPACE) -> dict[str, float]:
    """The no-skill level of every headline metric (``P_EXPR``, ``P_AU``, ``P_VA``, ``ccc_valence``,
    ``ccc_arousal``, and ``P_MTL`` = the sum over the tasks present, when more than one) on these labels."""
    levels: dict[str, float] = {}
    if "expr" in targets:
        levels["P_EXPR"] = no_skill_expression(targets["expr"], len(get_label_space(expression_space)))
    if "au" in targets:
        levels["P_AU"] = no_skill_au(targets["au"])
    if "va" in targets:
        levels.update({"P_VA": NO_SKILL_VA, "ccc_valence": NO_SKILL_VA, "ccc_arousal": NO_SKILL_VA})
    headline = [levels[m] for m in ("P_EXPR", "P_AU", "P_VA") if m in levels]
    if len(headline) > 1:
        levels[MTL_METRIC] = float(sum(headline))
    return levels


# ------------------------------------------------------------------ all tasks

def evaluate(outputs: Mapping[str, np.ndarray], targets: Mapping[str, np.ndarray],
             expression_space=DEFAULT_EXPRESSION_SPACE,
             au_thresholds: float | Sequence[float] | np.ndarray | None = None) -> dict:
    """Score whichever tasks are present in ``outputs``.

    ``outputs``: ``expr`` class probabilities or logits (n, C); ``au`` probabilities (n, 12);
    ``va`` values (n, 2). Returns a flat dict with the headline metrics (P_EXPR, P_AU, P_VA,
    P_MTL when more than one task), breakdowns and the number of valid samples per task.
    """
    space = get_label_space(expression_space)
    result: dict = {}
    headline = []
    if "expr" in outputs:
        p, per = expression_f1(outputs["expr"], targets["expr"], len(space))
        result["P_EXPR"] = p
        result["per_class_f1"] = dict(zip(space.labels, per.tolist(), strict=True))
        result["n_expr"] = int(valid_expression(targets["expr"], len(space)).sum())
        headline.append(p)
    if "au" in outputs:
        thr = 0.5 if au_thresholds is None else au_thresholds
        p, per = au_f1(outputs["au"], targets["au"], thr)
        result["P_AU"] = p
        result["per_au_f1"] = dict(zip(AU_NAMES, per.tolist(), strict=True))
        result["n_au"] = int(valid_au(targets["au"]).all(axis=1).sum())
        headline.append(p)
    if "va" in outputs:
        p, v, a = va_ccc(outputs["va"], targets["va"])
        result.update({"P_VA": p, "ccc_valence": v, "ccc_arousal": a})
        result["n_va"] = int(valid_va(targets["va"]).all(axis=1).sum())
        headline.append(p)
    if len(headline) > 1:
        result[MTL_METRIC] = float(sum(headline))
    return result


def confusion_matrix(pred: np.ndarray, target: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows = true class, columns = predicted class; invalid targets dropped."""
    pred = np.asarray(pred)
    if pred.ndim == 2:
        pred = pred.argmax(axis=1)
    target = np.asarray(target).astype(int)
    keep = valid_expression(target, num_classes)
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (target[keep], pred[keep].astype(int)), 1)
    return cm


__all__ = [
    "NO_SKILL_VA",
    "VA_NAMES",
    "au_f1",
    "ccc",
    "confusion_matrix",
    "evaluate",
    "expression_f1",
    "f1_binary",
    "no_skill_au",
    "no_skill_au_from_counts",
    "no_skill_expression",
    "no_skill_expression_from_counts",
    "no_skill_levels",
    "tune_au_thresholds",
    "va_ccc",
    "valid_au",
    "valid_expression",
    "valid_rows",
    "valid_va",
]
