"""``python -m affectmodel score``: the equivalent of the ABAW challenge evaluation.

Reads predictions and ground truth, drops invalid labels and prints one JSON object with the
task's metric (computed by :mod:`affectmodel.metrics`). A prediction file must cover every frame
that has a valid label; predictions for other frames are ignored, as in the challenge, and counted
(``ignored_predictions`` in the answer, and a note on stderr) instead of silently dropped.

Formats (docs/REFERENCE.md, "Scoring and prediction files"):

* Challenge prediction files: header ``image_location,<labels...>`` (the task's label names), rows
  ``<video>/<frame>.jpg,<values>``: EXPR one class index, AU 12 values 0/1, VA two floats in [-1, 1].
* The multi-task set's CSV (s-Aff-Wild2): header ``image,valence,arousal,expression,AU1,...,AU26``,
  rows ``<video>/<frame>.jpg,...`` with -5 / -1 / -1 for a missing VA / expression / AU value. It is
  accepted as ground truth (``--annotations FILE`` instead of a folder of per-video files) and as
  predictions (a missing value = no prediction of that task for that frame).

AU predictions are decisions (0/1) in both formats: ``score`` never tunes thresholds, so P_AU is the
F1 of the decisions given (a model's probabilities are thresholded at 0.5, or at thresholds chosen on
other data and stored with the model, before they are written).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from . import metrics
from .data.annotations import (
    MTL_HEADER,
    AnnotationError,
    parse_number_rows,
    read_mtl_csv,
    read_task_folder,
    read_text_lines,
    split_first_column,
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
    return ",".join((IMAGE_COLUMN, *get_task(task, expression_space).labels))


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
    expected = (IMAGE_COLUMN, *spec.labels)
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
        return {img: np.array(int(v), dtype=np.int64) for img, v in zip(images, arr[:, 0], strict=True)}
    if spec.key == "au":
        values = arr.astype(np.int64)
        return {img: values[i] for i, img in enumerate(images)}
    return {img: arr[i] for i, img in enumerate(images)}


def _prediction_problems(spec: TaskSpec):
    """Value checks for predictions: EXPR a class index, AU 0/1, VA within [-1, 1] (the range of
    the labels; no "not annotated" codes: a prediction file predicts every row)."""
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
            ok = metrics.valid_va(arr)  # NaN and inf fail it too
            what = "a number in -1..1"
        rows, cols = np.nonzero(~ok)
        for i, j in zip(rows.tolist(), cols.tolist(), strict=True):
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

Frame = tuple[str, int]


def _frame_of(image: str) -> Frame | None:
    m = _IMAGE_RE.match(image)
    return (m.group(1), int(m.group(2))) if m else None


def _valid(task: str, values: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows of ``values`` with at least one valid label (or prediction) for ``task``."""
    return metrics.valid_rows(task, values, num_classes)


def _mtl_rows(path: str | os.PathLike, task: str, expression_space: str) -> dict[Frame, np.ndarray]:
    """One task's rows of a multi-task CSV, frames with a valid value only."""
    mtl = read_mtl_csv(path, expression_space=expression_space)
    values = {"expr": mtl.expr, "au": mtl.au, "va": mtl.va}[task]
    keep = _valid(task, values, len(get_label_space(expression_space)))
    out = {}
    for i in np.nonzero(keep)[0].tolist():
        frame = _frame_of(mtl.images[i])
        if frame is None:
            raise AnnotationError(Path(path), i + 2, f"image {mtl.images[i]!r} is not <video>/<frame>.jpg")
        out[frame] = values[i]
    return out


def is_mtl_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a file whose header is the multi-task set's."""
    path = Path(path)
    if not path.is_file():
        return False
    lines = read_text_lines(path)
    return bool(lines) and split_header(lines[0]) == tuple(c.lower() for c in MTL_HEADER)


def read_ground_truth(annotations: str | os.PathLike, task: str, expression_space: str = "abaw8"
                      ) -> dict[Frame, np.ndarray]:
    """Valid labels of ``task`` by (video, frame): from a folder of per-video files or a multi-task CSV."""
    annotations = Path(annotations)
    if annotations.is_file():
        if not is_mtl_file(annotations):
            raise AnnotationError(annotations, 1, "an annotation file must be the multi-task set's CSV (header "
                                                  f"{','.join(MTL_HEADER)!r}); per-task annotations are a folder "
                                                  "of <video>.txt files")
        return _mtl_rows(annotations, task, expression_space)
    out = {}
    for video, ann in read_task_folder(annotations, task, expression_space).items():
        for i in np.nonzero(ann.valid_frames())[0].tolist():
            out[(video, i + 1)] = ann.values[i]
    return out


def read_any_predictions(path: str | os.PathLike, task: str, expression_space: str = "abaw8"
                         ) -> dict[Frame, np.ndarray]:
    """Predictions of ``task`` by (video, frame), from a challenge prediction file or a multi-task CSV."""
    if is_mtl_file(path):
        return _mtl_rows(path, task, expression_space)
    # read_predictions has refused any image name that is not <video>/<frame>.jpg
    return {frame: value for img, value in read_predictions(path, task, expression_space).items()
            if (frame := _frame_of(img)) is not None}


def score_files(task: str, predictions_path: str | os.PathLike, annotations: str | os.PathLike,
                expression_space: str = "abaw8") -> dict:
    """Score predictions against ground truth (a folder of ``<video>.txt`` files or a multi-task CSV).

    Returns EXPR ``{"P_EXPR", "per_class_f1", ...}``, AU ``{"P_AU", "per_au_f1", ...}`` or
    VA ``{"P_VA", "ccc_valence", "ccc_arousal", ...}`` plus ``n`` (frames with a valid label) and
    ``ignored_predictions`` (prediction rows whose frame has no valid label for the task).
    Raises :class:`MissingPredictionsError` when annotated frames have no prediction.
    """
    spec = get_task(task, expression_space)
    space = get_label_space(expression_space)
    truth = read_ground_truth(annotations, spec.key, space.name)
    by_frame = read_any_predictions(predictions_path, spec.key, space.name)

    preds, targets = [], []
    missing: dict[str, int] = {}
    for frame, target in truth.items():
        value = by_frame.get(frame)
        if value is None:
            missing[frame[0]] = missing.get(frame[0], 0) + 1
            continue
        preds.append(value)
        targets.append(target)
    if missing:
        raise MissingPredictionsError(predictions_path, missing)
    ignored = sum(1 for frame in by_frame if frame not in truth)
    n = len(targets)
    if spec.key == "expr":
        pred: np.ndarray = np.array(preds, dtype=np.int64).reshape(n)
        target = np.array(targets, dtype=np.int64).reshape(n)
        p, per = metrics.expression_f1(pred, target, len(space))
        result = {"P_EXPR": p, "per_class_f1": dict(zip(space.labels, per.tolist(), strict=True))}
    else:
        pred = np.array(preds, dtype=np.float64).reshape(n, spec.head_size)
        target = np.array(targets, dtype=np.float64).reshape(n, spec.head_size)
        if spec.key == "au":
            p, per = metrics.au_f1(pred, target, 0.5)
            result = {"P_AU": p, "per_au_f1": dict(zip(spec.labels, per.tolist(), strict=True))}
        else:
            p, v, a = metrics.va_ccc(pred, target)
            result = {"P_VA": p, "ccc_valence": v, "ccc_arousal": a}
    return {**result, "n": n, "ignored_predictions": ignored}


# ------------------------------------------------------------------ command

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, type=str.upper, choices=("EXPR", "AU", "VA"),
                        help="challenge task of the prediction file")
    parser.add_argument("--predictions", required=True, type=Path,
                        help="prediction CSV: header image_location,<labels>; rows <video>/<frame>.jpg,<values> "
                             "(or the multi-task set's CSV format)")
    parser.add_argument("--annotations", required=True, type=Path,
                        help="folder of per-video annotation files <video>.txt (Aff-Wild2 format), or the "
                             "multi-task set's CSV (image,valence,arousal,expression,AU1,...,AU26)")
    parser.add_argument("--expression-space", default="abaw8", choices=("abaw8", "abaw7"),
                        help="expression label space to score in (abaw7 for ABAW 1-2 files; default abaw8)")


def run(args: argparse.Namespace) -> int:
    if not args.predictions.is_file():
        raise FileNotFoundError(f"prediction file not found: {args.predictions}")
    result = score_files(args.task, args.predictions, args.annotations, args.expression_space)
    if result["ignored_predictions"]:
        print(f"note: {result['ignored_predictions']} prediction row(s) ignored: their frames have no valid "
              f"{args.task} label in {args.annotations}", file=sys.stderr)
    print(json.dumps(result))
    return 0


__all__ = [
    "MissingPredictionsError",
    "add_arguments",
    "format_predictions",
    "image_name",
    "is_mtl_file",
    "prediction_header",
    "read_any_predictions",
    "read_ground_truth",
    "read_predictions",
    "run",
    "score_files",
    "write_predictions",
]
