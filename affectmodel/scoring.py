"""``python -m affectmodel score``: the equivalent of the ABAW challenge evaluation.

Reads a prediction file in the challenge submission format (DESIGN.md §2) and a folder of
per-video Aff-Wild2 annotation files, drops invalid labels and prints one JSON object with the
task's metric (computed by :mod:`affectmodel.metrics`). A prediction file must cover every frame
that has a valid label; predictions for other frames are ignored, as in the challenge.

Prediction files: header ``image_location,<labels...>`` (the task's label names), rows
``<video>/<frame>.jpg,<values>``: EXPR one class index, AU 12 values 0/1, VA two floats.
"""
from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path
from typing import Mapping

import numpy as np

from . import metrics
from .data.annotations import (
    AnnotationError, parse_number_rows, read_task_folder, read_text_lines, split_first_column,
    split_header,
)
from .io import write_text_atomic
from .tasks import TaskSpec, get_label_space, get_task

IMAGE_COLUMN = "image_location"
# "<video>/<frame>.jpg": the video name may itself contain no slash; frames are 1-based numbers.
_IMAGE_RE = re.compile(r"^([^/\\]+)/(\d+)\.jpg$", re.IGNORECASE)


class MissingPredictionsError(ValueError):
    """The prediction file lacks frames that have valid labels; ``missing`` = {video: count}."""

    def __init__(self, path: str | os.PathLike, missing: Mapping[str, int]):
        self.missing = dict(missing)
        total = sum(self.missing.values())
        shown = ", ".join(f"{v} ({n})" for v, n in list(self.missing.items())[:10])
        more = f" and {len(self.missing) - 10} more" if len(self.missing) > 10 else ""
        super().__init__(f"{path}: predictions missing for {total} annotated frame(s) in "
                         f"{len(self.missing)} video(s): {shown}{more}")


# ------------------------------------------------------------------ prediction files

def prediction_header(task: str, expression_space: str = "abaw8") -> str:
    """Line 1 of a prediction file for ``task``: ``image_location,<labels...>``."""
    return ",".join((IMAGE_COLUMN,) + get_task(task, expression_space).labels)


def image_name(video: str, frame: int) -> str:
    """``<video>/<frame>.jpg`` with the 5-digit, 1-based frame number of Aff-Wild2."""
    return f"{video}/{frame:05d}.jpg"


def read_predictions(path: str | os.PathLike, task: str, expression_space: str = "abaw8"
                     ) -> dict[str, np.ndarray]:
    """Read a challenge prediction file: image (``<video>/<frame>.jpg``) -> values.

    Values: EXPR int64 array of shape () (class index), AU int64 (12,) of 0/1, VA float64 (2,).
    Every problem raises :class:`AnnotationError` naming the file and line.
    """
    path = Path(path)
    spec = get_task(task, expression_space)
    expected = (IMAGE_COLUMN,) + spec.labels
    lines = read_text_lines(path)
    if not lines:
        raise AnnotationError(path, 1, f"empty file; expected the header {','.join(expected)!r}")
    if split_header(lines[0]) != tuple(s.lower() for s in expected):
        raise AnnotationError(path, 1, f"wrong header for {spec.challenge_name} predictions: found "
                                       f"{lines[0].strip()!r}, expected {','.join(expected)!r}")
    body = lines[1:]
    ncols = 1 if spec.key == "expr" else spec.head_size
    images, numeric_lines, tokens, reasons = split_first_column(body, ncols + 1)
    seen: dict[tuple[str, int], int] = {}
    for i, img in enumerate(images):
        m = _IMAGE_RE.match(img)
        if m is None:
            reasons.setdefault(i, f"image_location {img!r} is not <video>/<frame>.jpg")
            continue
        key = (m.group(1), int(m.group(2)))
        first = seen.setdefault(key, i)
        if first != i:
            reasons.setdefault(i, f"image {img!r} already predicted on line {first + 2}")
    arr = parse_number_rows(path, tokens, numeric_lines, ncols, False, [], _prediction_problems(spec),
                            np.zeros(ncols), column_offset=1, extra_reasons=reasons)
    if spec.key == "expr":
        return {img: np.array(int(v), dtype=np.int64) for img, v in zip(images, arr[:, 0])}
    if spec.key == "au":
        values = arr.astype(np.int64)
        return {img: values[i] for i, img in enumerate(images)}
    return {img: arr[i] for i, img in enumerate(images)}


def _prediction_problems(spec: TaskSpec):
    """Value checks for predictions: EXPR a class index, AU 0/1, VA finite (no invalid codes)."""
    names = spec.labels

    def check(arr: np.ndarray) -> dict[int, str]:
        out: dict[int, str] = {}
        finite = np.isfinite(arr)
        if spec.key == "expr":
            ok = finite & (arr == np.round(np.where(finite, arr, 0))) & (arr >= 0) & (arr < len(names))
            what = f"a class index 0..{len(names) - 1}"
        elif spec.key == "au":
            ok = (arr == 0) | (arr == 1)
            what = "0 or 1"
        else:
            ok = finite
            what = "a finite number"
        rows, cols = np.nonzero(~ok)
        for i, j in zip(rows.tolist(), cols.tolist()):
            label = "expression" if spec.key == "expr" else names[j]
            out.setdefault(i, f"predicted {label} value {_fmt(arr[i, j])} is not {what}")
        return out

    return check


def _fmt(value: float) -> str:
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def format_predictions(task: str, predictions: Mapping[str, np.ndarray | int | float],
                       expression_space: str = "abaw8") -> str:
    """The text of a prediction file (rows in the given order); inverse of :func:`read_predictions`.

    EXPR values are class indices (or score vectors, reduced with argmax); AU values must be 0/1
    (threshold probabilities first); VA values are written with 6 decimals.
    """
    spec = get_task(task, expression_space)
    rows = [prediction_header(task, expression_space)]
    for img, value in predictions.items():
        v = np.asarray(value)
        if spec.key == "expr":
            rows.append(f"{img},{int(v.argmax()) if v.ndim else int(v)}")
        elif spec.key == "au":
            rows.append(img + "," + ",".join(str(int(x)) for x in v.reshape(-1)))
        else:
            rows.append(img + "," + ",".join(f"{float(x):.6f}" for x in v.reshape(-1)))
    return "\n".join(rows) + "\n"


def write_predictions(path: str | os.PathLike, task: str, predictions: Mapping[str, np.ndarray | int | float],
                      expression_space: str = "abaw8") -> Path:
    """Write a challenge prediction file atomically (see :func:`format_predictions`)."""
    return write_text_atomic(path, format_predictions(task, predictions, expression_space))


# ------------------------------------------------------------------ scoring

def score_files(task: str, predictions_path: str | os.PathLike, annotations_dir: str | os.PathLike,
                expression_space: str = "abaw8") -> dict:
    """Score a prediction file against a folder of ``<video>.txt`` annotation files.

    Returns EXPR ``{"P_EXPR", "per_class_f1", "n"}``, AU ``{"P_AU", "per_au_f1", "n"}`` or
    VA ``{"P_VA", "ccc_valence", "ccc_arousal", "n"}``; ``n`` = frames with a valid label.
    Raises :class:`MissingPredictionsError` when annotated frames have no prediction.
    """
    spec = get_task(task, expression_space)
    space = get_label_space(expression_space)
    annotations = read_task_folder(annotations_dir, spec.key, space)
    predictions = read_predictions(predictions_path, spec.key, space.name)
    by_frame = {}
    for img, value in predictions.items():
        m = _IMAGE_RE.match(img)
        by_frame[(m.group(1), int(m.group(2)))] = value

    preds, targets, missing = [], [], {}
    for video, ann in annotations.items():
        for i in np.nonzero(ann.valid_frames())[0].tolist():
            value = by_frame.get((video, i + 1))
            if value is None:
                missing[video] = missing.get(video, 0) + 1
                continue
            preds.append(value)
            targets.append(ann.values[i])
    if missing:
        raise MissingPredictionsError(predictions_path, missing)
    n = len(targets)
    if spec.key == "expr":
        pred = np.array(preds, dtype=np.int64).reshape(n)
        target = np.array(targets, dtype=np.int64).reshape(n)
        p, per = metrics.expression_f1(pred, target, len(space))
        return {"P_EXPR": p, "per_class_f1": dict(zip(space.labels, per.tolist())), "n": n}
    pred = np.array(preds, dtype=np.float64).reshape(n, spec.head_size)
    target = np.array(targets, dtype=np.float64).reshape(n, spec.head_size)
    if spec.key == "au":
        p, per = metrics.au_f1(pred, target)
        return {"P_AU": p, "per_au_f1": dict(zip(spec.labels, per.tolist())), "n": n}
    p, v, a = metrics.va_ccc(pred, target)
    return {"P_VA": p, "ccc_valence": v, "ccc_arousal": a, "n": n}


# ------------------------------------------------------------------ command

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, type=str.upper, choices=("EXPR", "AU", "VA"),
                        help="challenge task of the prediction file")
    parser.add_argument("--predictions", required=True, type=Path,
                        help="prediction CSV: header image_location,<labels>; rows <video>/<frame>.jpg,<values>")
    parser.add_argument("--annotations", required=True, type=Path,
                        help="folder of per-video annotation files <video>.txt (Aff-Wild2 format)")
    parser.add_argument("--expression-space", default="abaw8", choices=("abaw8", "abaw7"),
                        help="expression label space to score in (abaw7 for ABAW 1-2 files; default abaw8)")


def run(args: argparse.Namespace) -> int:
    if not args.predictions.is_file():
        raise FileNotFoundError(f"prediction file not found: {args.predictions}")
    result = score_files(args.task, args.predictions, args.annotations, args.expression_space)
    print(json.dumps(result))
    return 0


__all__ = [
    "MissingPredictionsError", "read_predictions", "format_predictions", "write_predictions",
    "prediction_header", "image_name", "score_files", "add_arguments", "run",
]
