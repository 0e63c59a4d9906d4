"""Held-out tuning and selection: the figures a run reports never tuned anything.

Protocol (docs/STUDY.md): AU thresholds are tuned, and the best evaluation of a run is
chosen, on the *development* split (whole training videos held out, see
:func:`affectmodel.data.splits.development_split`). The validation frames are scored once, with the
selected weights and the development-tuned thresholds: that ``P_AU`` (and the ``P_MTL`` built from
it) is the headline. Two more AU figures are kept, named for what they are: ``P_AU_at_0.5`` (no
tuning) and ``P_AU_tuned_on_validation`` (thresholds tuned on the reported frames themselves, as
challenge entries usually report it; optimistic). Without a development split
(``dev_fraction = 0``) the thresholds are 0.5 and the last weights are used.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..metrics import confusion_matrix, evaluate, tune_au_thresholds
from ..tasks import AU_NAMES, get_label_space
from .evaluation import plain

HEADLINE_KEYS = ("P_EXPR", "P_AU", "P_VA", "P_MTL", "ccc_valence", "ccc_arousal", "P_AU_at_0.5")


def threshold_list(thresholds: Mapping[str, float] | Sequence[float] | None) -> np.ndarray:
    """Per-AU thresholds in ``AU_NAMES`` order (0.5 each when None)."""
    if thresholds is None:
        return np.full(len(AU_NAMES), 0.5)
    if isinstance(thresholds, Mapping):
        return np.array([float(thresholds[a]) for a in AU_NAMES])
    return np.asarray(thresholds, dtype=float)


def validation_metrics(outputs: Mapping[str, np.ndarray], targets: Mapping[str, np.ndarray], tasks: Sequence[str],
                       expression_space: str, au_thresholds: Mapping[str, float] | Sequence[float] | None
                       ) -> dict[str, Any]:
    """Scores of the reported frames with thresholds chosen elsewhere (``None``: 0.5).

    ``P_AU`` / ``P_MTL`` use ``au_thresholds``; ``P_AU_at_0.5`` and ``P_AU_tuned_on_validation``
    (in-sample, optimistic) are extra, named figures; ``au_thresholds`` echoes the ones used.
    """
    thresholds = threshold_list(au_thresholds) if "au" in tasks else None
    metrics = evaluate({k: outputs[k] for k in tasks}, targets, expression_space, au_thresholds=thresholds)
    if thresholds is not None:
        metrics["P_AU_at_0.5"] = evaluate({"au": outputs["au"]}, {"au": targets["au"]})["P_AU"]
        in_sample = tune_au_thresholds(outputs["au"], targets["au"])
        metrics["P_AU_tuned_on_validation"] = evaluate({"au": outputs["au"]}, {"au": targets["au"]},
                                                       au_thresholds=in_sample)["P_AU"]
        metrics["au_thresholds"] = dict(zip(AU_NAMES, [float(t) for t in thresholds], strict=True))
    if "expr" in tasks:
        n_classes = len(get_label_space(expression_space))
        metrics["confusion_matrix"] = confusion_matrix(outputs["expr"], targets["expr"], n_classes).tolist()
    return plain(metrics)


__all__ = ["HEADLINE_KEYS", "threshold_list", "validation_metrics"]
