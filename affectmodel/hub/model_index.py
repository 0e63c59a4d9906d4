"""The model card's ``model-index``: which ``metrics.json`` figures a published card carries, under
which names, and how they read back.

Written by :mod:`affectmodel.hub.card` when a run is published; read by the model loader
(:func:`affectmodel.hub.loading.model_info`) for a Hub model that has no ``metrics.json``. Kept
apart from the card's text so that the loader, which sits below publishing, reads cards without
importing the study report the card text is built from.
"""
from __future__ import annotations

from typing import Any

from huggingface_hub import ModelCard

from ..records import SYNTHETIC_DATASET

# metrics.json key -> (model-index metric name, metric type, task, what it measures). Only the
# honest figures: P_AU with thresholds chosen on held-out training videos, never an in-sample one.
CARD_METRICS: dict[str, tuple[str, str, str, str]] = {
    "P_EXPR": ("P_EXPR", "f1", "expr", "macro F1 over all expression classes"),
    "P_AU": ("P_AU", "f1", "au", "mean binary F1 over the 12 action units"),
    "P_VA": ("P_VA", "ccc", "va", "mean of CCC_valence and CCC_arousal"),
    "ccc_valence": ("CCC_valence", "ccc", "va", "concordance correlation of valence"),
    "ccc_arousal": ("CCC_arousal", "ccc", "va", "concordance correlation of arousal"),
    "P_MTL": ("P_MTL", "sum", "mtl", "P_EXPR + P_AU + P_VA (0 to 3)"),
}


def dataset_type(name: str) -> str:
    """A data set name as the Hub's ``dataset.type`` slug."""
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-") or "unknown"


def metrics_from_card(card: ModelCard) -> tuple[dict[str, float], dict[str, Any]]:
    """The card's model-index as ``({metrics.json key: value}, dataset dict)`` (the inverse of
    :func:`affectmodel.hub.card.eval_results`)."""
    by_name = {name: key for key, (name, *_) in CARD_METRICS.items()}
    values, dataset = {}, {}
    for result in getattr(card.data, "eval_results", None) or []:
        key = by_name.get(result.metric_name or "")
        if key is None:
            continue
        values[key] = float(result.metric_value)
        dataset = {"name": result.dataset_type, "split": result.dataset_split,
                   "synthetic": result.dataset_type == dataset_type(SYNTHETIC_DATASET)}
    return values, dataset


__all__ = ["CARD_METRICS", "dataset_type", "metrics_from_card"]
