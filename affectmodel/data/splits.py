"""Development splits and label budgets that are the same for every run of a study.

Both choices depend only on names (video names, ``<video>/<frame>`` keys) and a seed, hashed with
a stable hash (BLAKE2b, not Python's per-process ``hash``), never on the order or the index of a
sample. So a uni-task and a multi-task run read from the same installation — whose training sets
hold different frames — still hold out the same development videos and see the same labels of a
task (docs/REFERENCE.md, "Study protocol").

* :func:`development_split`: whole training videos held out to tune AU thresholds and pick the
  best epoch, so the validation frames that are reported are never used for either.
* :func:`limit_labels`: a budget of ``limit`` labelled frames per task, chosen per task exactly as
  a uni-task run of that task would choose them, so "labels seen" is matched between runs.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..tasks import TASK_KEYS, parse_tasks
from .dataset import ImageLabelDataset, empty_labels

DEVELOPMENT_FRACTION = 0.1
_DEV_SALT = "affectmodel-development-split-v1"


def stable_unit(key: str, salt: str) -> float:
    """A number in [0, 1) that depends only on ``salt`` and ``key`` (the same on every machine)."""
    digest = hashlib.blake2b(f"{salt}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0 ** 64


# ------------------------------------------------------------------ development split

@dataclass
class DevelopmentSplit:
    """``train`` / ``development`` subsets of a training set (indices into it) and their counts."""

    train: ImageLabelDataset
    development: ImageLabelDataset
    train_indices: np.ndarray
    development_indices: np.ndarray
    development_videos: list[str]
    stats: dict[str, Any] = field(default_factory=dict)


def development_videos(videos: Sequence[str], fraction: float = DEVELOPMENT_FRACTION) -> set[str]:
    """The videos of ``videos`` that form the development split: the ``round(fraction * n)``
    (at least one when ``fraction > 0`` and there are two or more) with the smallest stable hash."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"development fraction must be in [0, 1), got {fraction}")
    names = sorted(set(videos))
    if fraction == 0.0 or len(names) < 2:
        return set()
    k = min(len(names) - 1, max(1, round(fraction * len(names))))
    ranked = sorted(names, key=lambda v: (stable_unit(v, _DEV_SALT), v))
    return set(ranked[:k])


def development_split(dataset: ImageLabelDataset, fraction: float = DEVELOPMENT_FRACTION,
                      validation: ImageLabelDataset | None = None,
                      universe: Sequence[str] | None = None) -> DevelopmentSplit:
    """Split a training set into (train, development) by whole videos.

    The development videos are drawn from ``universe`` (default: the data set's ``split_videos``,
    every video annotated for any task in the training split, when the reader provides it; else its
    own videos) by :func:`development_videos`, so runs on different tasks of one installation hold
    out the same videos; per-image sets (one "video" per image) are split by image. ``validation``,
    when given, is checked: ``stats["overlap_with_validation"]`` counts development videos and
    frames (``<video>/<frame>``) that are also in it — both should be 0.
    """
    names = list(universe) if universe is not None else list(getattr(dataset, "split_videos", None) or dataset.videos)
    dev_names = development_videos(names, fraction)
    in_dev = np.array([v in dev_names for v in dataset.videos], dtype=bool)
    is_dev = in_dev[dataset.video_ids] if len(dataset) else np.zeros(0, dtype=bool)
    dev_idx, train_idx = np.flatnonzero(is_dev), np.flatnonzero(~is_dev)
    used = sorted({dataset.videos[i] for i in np.unique(dataset.video_ids[dev_idx])})
    stats: dict[str, Any] = {
        "fraction": fraction,
        "development": {"videos": len(used), "frames": len(dev_idx)},
        "train": {"videos": len(np.unique(dataset.video_ids[train_idx])), "frames": len(train_idx)},
    }
    if validation is not None:
        val_videos = {validation.videos[i] for i in np.unique(validation.video_ids)}
        val_frames = set(validation.frame_keys())
        dev_keys = [dataset.frame_keys()[i] for i in dev_idx] if len(dev_idx) else []
        stats["overlap_with_validation"] = {
            "videos": sum(v in val_videos for v in used),
            "frames": sum(k in val_frames for k in dev_keys),
        }
    return DevelopmentSplit(dataset.subset(train_idx), dataset.subset(dev_idx), train_idx, dev_idx, used, stats)


# ------------------------------------------------------------------ label budgets

@dataclass
class LabelSelection:
    """The frames a run trains on and, per task, which of their labels it may use.

    ``indices``: sorted indices into the original data set (the union over tasks); ``masks``:
    task -> bool (len(indices),), True where that task's label is part of the budget;
    ``dataset``: the subset with every label outside the budget set to "not annotated".
    """

    indices: np.ndarray
    masks: dict[str, np.ndarray]
    dataset: ImageLabelDataset
    stats: dict[str, Any] = field(default_factory=dict)


def _chosen_keys(keys: list[str], task: str, limit: int | None, seed: int) -> set[str]:
    if limit is None or limit >= len(keys):
        return set(keys)
    salt = f"affectmodel-label-limit-v1/{task}/{seed}"
    ranked = sorted(keys, key=lambda k: (stable_unit(k, salt), k))
    return set(ranked[:limit])


def limit_labels(dataset: ImageLabelDataset, tasks: Sequence[str] | str, limit: int | None,
                 seed: int) -> LabelSelection:
    """Keep, per task, a seeded choice of ``limit`` frames among those labelled for it.

    The choice for a task depends only on the seed, the task and the names (``<video>/<frame>``)
    of the frames labelled for it — so a multi-task run sees, for each task, exactly the labels a
    uni-task run of that task sees with the same seed. Labels of a frame outside a task's choice
    (and of tasks not in ``tasks``) are masked as not annotated. ``limit=None`` keeps every label.
    """
    tasks = parse_tasks(tasks)
    if limit is not None and limit < 1:
        raise ValueError(f"label limit must be at least 1 (or None for no limit), got {limit}")
    valid = dataset.valid_masks()
    keys = dataset.frame_keys()
    chosen_rows: dict[str, np.ndarray] = {}
    for task in tasks:
        rows = np.flatnonzero(valid[task])
        chosen = _chosen_keys([keys[i] for i in rows], task, limit, seed)
        chosen_rows[task] = np.array([i for i in rows if keys[i] in chosen], dtype=np.int64)
    union = np.unique(np.concatenate(list(chosen_rows.values()))) if chosen_rows else np.zeros(0, np.int64)
    masks = {t: np.isin(union, chosen_rows[t]) for t in tasks}
    subset = dataset.subset(union)
    blank = empty_labels(len(union))
    subset.labels = {k: v.copy() for k, v in subset.labels.items()}
    for key in TASK_KEYS:
        drop = ~masks[key] if key in masks else np.ones(len(union), dtype=bool)
        subset.labels[key][drop] = blank[key][drop]
    stats = {"limit": limit, "seed": seed, "frames": len(union),
             "labels": {t: int(masks[t].sum()) for t in tasks},
             "available": {t: int(valid[t].sum()) for t in tasks}}
    return LabelSelection(union, masks, subset, stats)


__all__ = ["DEVELOPMENT_FRACTION", "DevelopmentSplit", "LabelSelection", "development_split", "development_videos",
           "limit_labels", "stable_unit"]
