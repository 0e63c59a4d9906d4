"""Health of a model's heads: are the outputs spread over the frames, or saturated or constant?

A run that finished is not a run that learned. A valence/arousal head can end with every output
at +1 (its bound), an expression head can name the same class for every face; their scores then
look merely poor, not broken. This module looks at what each head outputs over a set of frames
(the development split at each evaluation, the validation split for the reported weights) and
says whether it collapsed. The training loop records it (``history.csv``, ``metrics.json``
``health``) and warns on the console; the study reads it
(:func:`affectmodel.records.run_health`).

Outputs are taken as a run reports them: EXPR class probabilities ``(n, C)``, AU probabilities
``(n, 12)``, VA values ``(n, 2)`` in [-1, 1]. Per task:

* ``output_spread``: the smallest standard deviation over the frames among the head's output
  units (valence, arousal; each AU; each class): the weakest unit decides.
* ``saturated_share``: share of output values at a bound: ``|VA| >= 0.95`` (where tanh's slope
  has fallen to a tenth), a probability within 0.001 of 0 or 1.
* ``constant_share``: share of output units whose spread is below :data:`CONSTANT_SPREAD`.
* ``collapsed``: a unit is constant; for VA also a unit with at least
  :data:`SATURATED_COLLAPSE` of its values at the bound; for EXPR also one class on top for every
  frame. A confident classifier saturates its probabilities legitimately, so saturation alone
  is no collapse for EXPR and AU.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import NamedTuple

import numpy as np

from .records import HEALTH_KEY, HeadHealth
from .tasks import parse_tasks

# Standard deviation over frames under which an output unit says the same thing for every face.
# VA labels spread about 0.3-0.4 over [-1, 1] (Aff-Wild2 and the synthetic benchmark alike), so
# 0.05 is an eighth of that. Probabilities: the least spread AU probability of healthy 60-step
# quick-suite runs was 0.0085-0.017 and the least spread class probability 0.019-0.034; a dead unit
# is far below 0.002.
CONSTANT_SPREAD = {"va": 0.05, "au": 0.002, "expr": 0.002}
VA_SATURATION = 0.95              # |v| from here on: tanh's slope 1 - v^2 below 0.1
PROBABILITY_SATURATION = 1e-3     # a probability this close to 0 or 1 (|logit| > 6.9)
SATURATED_COLLAPSE = 0.5          # a VA unit with half of its values at the bound is stuck there
# Frames per class from which one class on top of every frame counts as a constant output.
FRAMES_PER_CLASS = 2
FIELDS = tuple(HeadHealth.__dataclass_fields__)  # output_spread, saturated_share, constant_share, collapsed


class HeadCheck(NamedTuple):
    """One head's health (the record's fields, :class:`affectmodel.records.HeadHealth`) and, when
    it collapsed, why (for the console)."""

    health: HeadHealth
    reason: str = ""


def head_health(task: str, outputs: np.ndarray, unit_names: Sequence[str] | None = None) -> HeadCheck:
    """Health of one head from its outputs ``(n, units)`` over ``n`` frames. Fewer than two frames
    say nothing: a healthy record with NaN figures. Non-finite outputs count as a collapse."""
    (task,) = parse_tasks([task])
    values = np.asarray(outputs, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    n, units = values.shape
    names = list(unit_names) if unit_names is not None else [f"unit {i}" for i in range(units)]
    if n < 2 or units == 0:
        return HeadCheck(HeadHealth(math.nan, math.nan, math.nan, False))
    if not np.isfinite(values).all():
        return HeadCheck(HeadHealth(math.nan, math.nan, math.nan, True), "non-finite outputs")
    spread = values.std(axis=0)
    if task == "va":
        saturated = np.abs(values) >= VA_SATURATION
    else:
        saturated = (values <= PROBABILITY_SATURATION) | (values >= 1 - PROBABILITY_SATURATION)
    constant = spread < CONSTANT_SPREAD[task]
    reasons = [f"{names[i]} constant (spread {spread[i]:.3f})" for i in np.flatnonzero(constant)]
    if task == "va":
        stuck = saturated.mean(axis=0) >= SATURATED_COLLAPSE
        reasons += [f"{names[i]} at its bound for {saturated[:, i].mean():.0%} of frames "
                    f"(mean {values[:, i].mean():+.2f})" for i in np.flatnonzero(stuck & ~constant)]
    if task == "expr" and n >= FRAMES_PER_CLASS * units:
        top = values.argmax(axis=1)
        if (top == top[0]).all():
            reasons.append(f"{names[int(top[0])]} on top for all {n} frames")
    return HeadCheck(HeadHealth(float(spread.min()), float(saturated.mean()), float(constant.mean()), bool(reasons)),
                     "; ".join(reasons))


def health_report(outputs: Mapping[str, np.ndarray], tasks: Sequence[str],
                  labels: Mapping[str, Sequence[str]] | None = None) -> dict[str, HeadCheck]:
    """:func:`head_health` of each of ``tasks`` (``labels``: unit names per task, for the reasons)."""
    return {t: head_health(t, outputs[t], (labels or {}).get(t)) for t in parse_tasks(tasks)}


def _fields(health: HeadHealth) -> dict[str, float | bool | None]:
    """The record's fields; NaN (fewer than two frames) as null, JSON has no NaN."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(health).items()}


def health_record(report: Mapping[str, HeadCheck]) -> dict[str, dict[str, float | bool | None]]:
    """``metrics.json``'s ``health`` (:data:`affectmodel.records.HEALTH_KEY`):
    ``{task: {output_spread, saturated_share, constant_share, collapsed}}``."""
    return {t: _fields(check.health) for t, check in report.items()}


def health_columns(tasks: Sequence[str], prefix: str = "dev_") -> list[str]:
    """``history.csv`` columns: ``<prefix><task>_<field>`` per task and field."""
    return [f"{prefix}{t}_{f}" for t in parse_tasks(tasks) for f in FIELDS]


def health_row(report: Mapping[str, HeadCheck], prefix: str = "dev_") -> dict[str, float | int | None]:
    """One ``history.csv`` row's health cells (``collapsed`` as 0/1)."""
    return {f"{prefix}{t}_{f}": (int(v) if isinstance(v, bool) else v)
            for t, check in report.items() for f, v in _fields(check.health).items()}


def collapse_warning(report: Mapping[str, HeadCheck], where: str) -> str | None:
    """One console line naming each collapsed head and why, or None when every head is healthy."""
    bad = [f"{t} ({check.reason})" for t, check in report.items() if check.health.collapsed]
    if not bad:
        return None
    return f"warning: {where}: collapsed head{'s' if len(bad) > 1 else ''}: " + "; ".join(bad)


__all__ = ["CONSTANT_SPREAD", "FIELDS", "HEALTH_KEY", "HeadCheck", "HeadHealth", "collapse_warning", "head_health",
           "health_columns", "health_record", "health_report", "health_row"]
