"""Validation predictions of one run: the file that lets a run be rescored without its model.

A complete run folder holds ``val_predictions.npz`` (:data:`PREDICTIONS_FILE`): one row per
validation frame that was scored, written once with the weights the run selected. The study's
intervals (a bootstrap over validation *videos*) and its paired comparisons (the same frames for a
uni-task and a multi-task run) are computed from these files alone.

Arrays (``np.load(..., allow_pickle=False)`` reads them; nothing is pickled):

* ``video`` (N,) unicode: the video (or ``<name>_left``/``_right`` track) each frame belongs to.
* ``frame`` (N,) int64: 1-based frame number inside that video (-1 when unknown).
* per trained task, its model outputs and its targets:
  ``expr_prob`` (N, C) float32 class probabilities and ``expr_true`` (N,) int64 (-1 = not annotated);
  ``au_prob`` (N, 12) float32 per-AU probabilities and ``au_true`` (N, 12) float32 (-1 = not annotated);
  ``va_pred`` (N, 2) float32 valence/arousal and ``va_true`` (N, 2) float32 (-5 = not annotated).
* ``expression_space`` () unicode: the name of the label space of ``expr_prob`` columns.

The AU thresholds that turn ``au_prob`` into decisions are not in this file: they are the run's
``au_thresholds`` (in ``metrics.json`` and the model's ``config.json``), tuned on held-out training
videos, never on these frames.
"""
from __future__ import annotations

import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .io import atomic_write
from .tasks import AU_NAMES, TASK_KEYS, VA_NAMES, get_label_space

PREDICTIONS_FILE = "val_predictions.npz"
# Array names per task: (model output, target).
TASK_ARRAYS: dict[str, tuple[str, str]] = {"expr": ("expr_prob", "expr_true"), "au": ("au_prob", "au_true"),
                                           "va": ("va_pred", "va_true")}


class PredictionsError(ValueError):
    """A predictions file is missing, unreadable or inconsistent (the message names the file)."""


@dataclass
class Predictions:
    """Per-frame outputs and targets of the tasks a run was trained on."""

    video: np.ndarray                                   # (N,) str
    frame: np.ndarray                                   # (N,) int64
    outputs: dict[str, np.ndarray] = field(default_factory=dict)   # task -> (N, ...) model outputs
    targets: dict[str, np.ndarray] = field(default_factory=dict)   # task -> (N, ...) labels
    expression_space: str = "abaw8"

    def __post_init__(self) -> None:
        self.video = np.asarray(self.video).astype(str)
        self.frame = np.asarray(self.frame, dtype=np.int64)
        n = len(self.video)
        if self.video.ndim != 1 or self.frame.shape != (n,):
            raise PredictionsError(f"video and frame must be 1-d of one length, got {self.video.shape} "
                                   f"and {self.frame.shape}")
        if set(self.outputs) != set(self.targets) or not set(self.outputs) <= set(TASK_KEYS):
            raise PredictionsError(f"outputs {sorted(self.outputs)} and targets {sorted(self.targets)} must name "
                                   f"the same tasks among {', '.join(TASK_KEYS)}")
        self.expression_space = get_label_space(self.expression_space).name
        widths = {"expr": len(get_label_space(self.expression_space)), "au": len(AU_NAMES), "va": len(VA_NAMES)}
        for task in self.outputs:
            out = np.asarray(self.outputs[task], dtype=np.float32)
            tgt = np.asarray(self.targets[task], dtype=np.int64 if task == "expr" else np.float32)
            want_out = (n, widths[task])
            want_tgt = (n,) if task == "expr" else (n, widths[task])
            if out.shape != want_out or tgt.shape != want_tgt:
                raise PredictionsError(f"{task}: outputs {out.shape} / targets {tgt.shape}, expected "
                                       f"{want_out} / {want_tgt}")
            self.outputs[task], self.targets[task] = out, tgt

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(t for t in TASK_KEYS if t in self.outputs)

    def __len__(self) -> int:
        return len(self.video)

    def select(self, rows: np.ndarray | Sequence[int]) -> Predictions:
        """The rows ``rows`` (indices or a boolean mask), in that order."""
        rows = np.asarray(rows)
        return Predictions(self.video[rows], self.frame[rows], {k: v[rows] for k, v in self.outputs.items()},
                           {k: v[rows] for k, v in self.targets.items()}, self.expression_space)

    def keys(self) -> np.ndarray:
        """``video/frame`` strings: the identity of each row, to pair two runs' predictions."""
        return np.char.add(np.char.add(self.video, "/"), self.frame.astype(str))


def save_predictions(path: str | Path, predictions: Predictions) -> Path:
    """Write ``predictions`` atomically (a reader never sees half a file)."""
    arrays: dict[str, np.ndarray] = {"video": predictions.video.astype(str), "frame": predictions.frame,
                                     "expression_space": np.asarray(predictions.expression_space)}
    for task in predictions.tasks:
        out_name, tgt_name = TASK_ARRAYS[task]
        arrays[out_name], arrays[tgt_name] = predictions.outputs[task], predictions.targets[task]

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, allow_pickle=False, **arrays)

    return atomic_write(path, write)


def load_predictions(path: str | Path) -> Predictions:
    """Read a predictions file; never unpickles. Errors name the file."""
    path = Path(path)
    if path.is_dir():
        path = path / PREDICTIONS_FILE
    if not path.is_file():
        raise PredictionsError(f"no predictions file: {path}")
    if path.stat().st_size == 0:
        raise PredictionsError(f"{path}: empty file")
    if not zipfile.is_zipfile(path):  # numpy would call other bytes "pickled data" and suggest unpickling them
        raise PredictionsError(f"{path}: not a readable predictions file (not an .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays: Mapping[str, np.ndarray] = {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise PredictionsError(f"{path}: not a readable predictions file ({e})") from None
    missing = [k for k in ("video", "frame") if k not in arrays]
    if missing:
        raise PredictionsError(f"{path}: missing array(s) {', '.join(missing)}")
    outputs, targets = {}, {}
    for task, (out_name, tgt_name) in TASK_ARRAYS.items():
        if (out_name in arrays) != (tgt_name in arrays):
            raise PredictionsError(f"{path}: {task} has only one of {out_name} and {tgt_name}")
        if out_name in arrays:
            outputs[task], targets[task] = arrays[out_name], arrays[tgt_name]
    space = str(arrays["expression_space"]) if "expression_space" in arrays else "abaw8"
    try:
        return Predictions(arrays["video"], arrays["frame"], outputs, targets, space)
    except (PredictionsError, ValueError) as e:
        raise PredictionsError(f"{path}: {e}") from None


__all__ = ["PREDICTIONS_FILE", "TASK_ARRAYS", "Predictions", "PredictionsError", "load_predictions",
           "save_predictions"]
