"""Per-video summaries of a run's validation predictions: what a published run carries instead of frame labels.

A run folder keeps ``val_predictions.npz`` (every validation frame's outputs and labels). A run
published to the Hub must not carry frame labels (Aff-Wild2's annotations are licensed, not ours to
redistribute), yet the study's intervals resample whole validation videos. Every metric of the
study is a function of sums over frames, so the sums per video are all the bootstrap needs:

* expression: per video and class, true positives, predicted count, true count (macro F1);
* action units: per video and AU, true positives, predicted positives (at the run's thresholds),
  true positives + false negatives, and the number of valid labels (the all-positive no-skill level);
* valence/arousal: per video and dimension, the CCC moments n, sum x, sum y, sum x^2, sum y^2,
  sum xy (x = prediction, y = label).

A resample of videos is a weighted sum of these rows, so intervals computed from a summary equal
those computed from the predictions file they were made from, for the same resampling seed
(:func:`affectmodel.statistics.summarise` makes a summary; :mod:`affectmodel.statistics` reads
either). No frame appears in it: a video contributes only its totals. (A video of a single frame
would reveal that frame's labels through its totals; Aff-Wild2's validation videos hold hundreds to
thousands of frames.)

Two runs are paired only when they were scored on the same frames with the same labels:
each task carries a fingerprint (SHA-256 of the scored rows' video names, frame numbers and labels)
that the statistics compare, since a summary cannot be cut down to the frames two runs share.

The file, :data:`SUMMARY_FILE`, is JSON: readable by anyone, never unpickled.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .io import write_json_atomic
from .predictions import PredictionsError
from .tasks import AU_NAMES, TASK_KEYS, VA_NAMES, get_label_space

SUMMARY_FILE = "val_summary.json"
FORMAT = "affectmodel per-video validation summary"
VERSION = 1
# The statistics per label (class, AU or VA dimension), in the order of the arrays' last axis.
STATISTICS: dict[str, tuple[str, ...]] = {
    "expr": ("true_positives", "predicted", "true"),
    "au": ("true_positives", "predicted", "true"),
    "va": ("n", "sum_prediction", "sum_label", "sum_prediction_squared", "sum_label_squared", "sum_product"),
}
COUNT_TASKS = ("expr", "au")  # integer statistics


class SummaryError(PredictionsError):
    """A summary file is missing, unreadable or inconsistent (the message names the file)."""


@dataclass(frozen=True)
class TaskSummary:
    """One task's per-video sums: ``statistics`` (V, K, S) as :data:`STATISTICS` orders them,
    ``frames`` (V,) the frames with a valid label of the task, ``label_counts`` (V, 12) the valid
    labels per AU (AU only) and ``fingerprint`` of the scored rows."""

    statistics: np.ndarray
    frames: np.ndarray
    fingerprint: str
    label_counts: np.ndarray | None = None


@dataclass(frozen=True)
class ValidationSummary:
    """Per-video sums of one run's validation predictions. ``videos`` is sorted; every task's arrays
    have one row per video (zeros for a video without labels of that task). ``frames_any`` maps
    ``"expr+au"``-style task sets to the number of frames with a label of any of them.
    ``au_thresholds``: the thresholds the AU counts were made with."""

    videos: tuple[str, ...]
    expression_space: str
    tasks: Mapping[str, TaskSummary]
    frames_any: Mapping[str, int] = field(default_factory=dict)
    au_thresholds: tuple[float, ...] | None = None

    @property
    def task_keys(self) -> tuple[str, ...]:
        return tuple(t for t in TASK_KEYS if t in self.tasks)


def task_set_key(tasks) -> str:
    """``"expr+au"``: the key of :attr:`ValidationSummary.frames_any` for a set of tasks."""
    return "+".join(t for t in TASK_KEYS if t in set(tasks))


def _widths(space: str) -> dict[str, int]:
    return {"expr": len(get_label_space(space)), "au": len(AU_NAMES), "va": len(VA_NAMES)}


def _plain(array: np.ndarray, integer: bool) -> list:
    return np.asarray(array, dtype=np.int64 if integer else np.float64).tolist()


def summary_dict(summary: ValidationSummary) -> dict[str, Any]:
    """The JSON document of a summary (floats are written in full: they read back bit for bit)."""
    space = get_label_space(summary.expression_space)
    labels = {"expr": list(space.labels), "au": list(AU_NAMES), "va": list(VA_NAMES)}
    tasks: dict[str, Any] = {}
    for task in summary.task_keys:
        ts = summary.tasks[task]
        entry: dict[str, Any] = {"labels": labels[task], "statistics": list(STATISTICS[task]),
                                 "fingerprint": ts.fingerprint, "frames": _plain(ts.frames, True),
                                 "values": _plain(ts.statistics, task in COUNT_TASKS)}
        if ts.label_counts is not None:
            entry["label_counts"] = _plain(ts.label_counts, True)
        tasks[task] = entry
    return {"format": FORMAT, "version": VERSION,
            "about": "Per-video sums of the validation predictions (counts per class and per AU, CCC moments "
                     "per video): what the study's bootstrap over videos needs, without any frame's labels.",
            "expression_space": summary.expression_space, "videos": list(summary.videos),
            "au_thresholds": None if summary.au_thresholds is None else list(summary.au_thresholds),
            "frames_any": dict(summary.frames_any), "tasks": tasks}


def save_summary(path: str | Path, summary: ValidationSummary) -> Path:
    """Write ``summary`` atomically as JSON."""
    return write_json_atomic(path, summary_dict(summary))


def load_summary(path: str | Path) -> ValidationSummary:
    """Read and check a summary file (shapes, finite values, counts that are whole and not negative);
    errors name the file."""
    path = Path(path)
    if path.is_dir():
        path = path / SUMMARY_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SummaryError(f"no summary file: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SummaryError(f"{path}: not a readable summary file ({e})") from None
    try:
        return _from_dict(data)
    except (KeyError, TypeError, ValueError) as e:
        what = f"missing {e}" if isinstance(e, KeyError) else str(e)
        raise SummaryError(f"{path}: not a valid summary file ({what})") from None


def _array(value: Any, shape: tuple[int, ...], name: str, counts: bool) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.shape != shape:
        raise ValueError(f"{name} has shape {array.shape}, expected {shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds a non-finite value")
    if counts and ((array < 0).any() or (array != np.round(array)).any()):
        raise ValueError(f"{name} holds a count that is negative or not whole")
    return array


def _from_dict(data: Any) -> ValidationSummary:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT!r} document")
    if data.get("version") != VERSION:
        raise ValueError(f"version {data.get('version')!r}; this reader knows version {VERSION}")
    space = get_label_space(str(data["expression_space"])).name
    videos = data["videos"]
    if not isinstance(videos, list) or not all(isinstance(v, str) for v in videos) or videos != sorted(set(videos)):
        raise ValueError("videos must be a sorted list of distinct names")
    n, widths = len(videos), _widths(space)
    tasks: dict[str, TaskSummary] = {}
    for task, entry in dict(data["tasks"]).items():
        if task not in STATISTICS:
            raise ValueError(f"unknown task {task!r}")
        if list(entry["statistics"]) != list(STATISTICS[task]):
            raise ValueError(f"{task}: statistics {entry['statistics']}, expected {list(STATISTICS[task])}")
        stats = _array(entry["values"], (n, widths[task], len(STATISTICS[task])), f"{task} values",
                       task in COUNT_TASKS)
        if task == "va" and (stats[..., 0] < 0).any():
            raise ValueError("va values: a negative frame count")
        frames = _array(entry["frames"], (n,), f"{task} frames", True).astype(np.int64)
        counts = None
        if task == "au":
            counts = _array(entry["label_counts"], (n, widths["au"]), "au label_counts", True)
        fingerprint = entry["fingerprint"]
        if not isinstance(fingerprint, str) or not fingerprint:
            raise ValueError(f"{task}: no fingerprint")
        tasks[task] = TaskSummary(stats, frames, fingerprint, counts)
    if not tasks:
        raise ValueError("no task")
    frames_any = {str(k): int(v) for k, v in dict(data.get("frames_any") or {}).items()}
    thresholds = data.get("au_thresholds")
    if thresholds is not None:
        thresholds = tuple(float(x) for x in thresholds)
        if len(thresholds) != len(AU_NAMES) or not all(math.isfinite(x) for x in thresholds):
            raise ValueError("au_thresholds must be 12 finite numbers")
    return ValidationSummary(tuple(videos), space, tasks, frames_any, thresholds)


__all__ = ["FORMAT", "STATISTICS", "SUMMARY_FILE", "VERSION", "SummaryError", "TaskSummary", "ValidationSummary",
           "load_summary", "save_summary", "summary_dict", "task_set_key"]
