"""``python -m affectmodel predict``: predict on images, folders of images and videos.

Output formats:

* ``table`` (default): one row per face (and video frame). ``--out x.csv`` writes flat columns
  (``source, frame, time_s, track_id, face, x1, y1, x2, y2, score, expression, expr_<label>...,
  <AU>..., <AU>_active..., valence, arousal``); ``--out x.json`` writes nested records; without
  ``--out``, JSON lines go to stdout (one per image or video frame). Faces are numbered from 1, left
  to right (``face``), as in the demo and its API.
* ``abaw``: the challenge submission file for one ``--task`` (header ``image_location,<labels>``,
  rows ``<video>/<frame>.jpg,<values>``), readable by ``python -m affectmodel score``. Images
  must be named by frame number (``<video>/00001.jpg``, as in Aff-Wild2); videos give one row
  per frame (1-based). One face per frame: the largest. Frames without a prediction (no face,
  or skipped by ``--every``) repeat the nearest earlier prediction (the first one for leading
  frames), since the challenge expects every frame. With ``--annotations`` (the task's Aff-Wild2
  annotation folder or the multi-task CSV) image inputs give a row for every annotated frame;
  annotated frames without an image take the nearest prediction in time, and the summary line
  says how many were filled that way.

Files given explicitly must be readable; unreadable images and videos found inside folders are
skipped with a warning, and none of their rows are written (in the ``abaw`` format a broken video
is an error: the submission would miss its frames). A truncated video is unreadable: see
:func:`affectmodel.inference.video.iter_frames`.
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TextIO

import numpy as np
from tqdm import tqdm

from ..cli import UserError
from ..images import ImageLoadError, is_image_file, load_image
from ..io import atomic_write, files_under
from ..progress import Progress, progress_iter
from ..tasks import CHALLENGE_TO_KEY
from .engines import ENGINES
from .faces import DEFAULT_DETECT_MAX_SIDE, DEFAULT_MIN_FACE_SIZE, DETECTORS, create_detector
from .predictor import Predictor, flatten_record, largest_face, numbered
from .video import (
    VideoLoadError,
    VideoOptions,
    is_animated_image,
    is_video_file,
    iter_video_predictions,
    probe_video,
)

FORMATS = ("table", "abaw")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT",
                        help="image files, folders (searched recursively for images and videos) or video files")
    parser.add_argument("--model", required=True,
                        help="model folder, run folder, Hugging Face Hub repository id, or 'default': the demo's "
                             "default model (built by the demo's first launch or `python -m demo.default_model`)")
    parser.add_argument("--out", type=Path, help="output file: .csv or .json (default: JSON lines on stdout); "
                                                 "with --format abaw a .csv prediction file (required)")
    parser.add_argument("--format", default="table", choices=FORMATS,
                        help="table: all outputs per face; abaw: challenge submission file for --task")
    parser.add_argument("--task", type=str.upper, choices=tuple(CHALLENGE_TO_KEY),
                        help="task for --format abaw (default: the model's task if it has one)")
    parser.add_argument("--annotations", type=Path, metavar="PATH",
                        help="--format abaw on images: the Aff-Wild2 annotation folder of the task (<video>.txt "
                             "files) or the multi-task CSV; a row is written for every annotated frame, frames "
                             "without an image taking the nearest prediction in time")
    parser.add_argument("--every", type=int, default=1, metavar="K", help="videos: process every K-th frame")
    parser.add_argument("--detect-every", type=int, default=VideoOptions.detect_every, metavar="N",
                        help="videos: detect faces on the whole frame at least every N processed frames "
                             "(default: %(default)s); in between, tracked faces are followed by optical flow "
                             "and the whole frame is detected again when one is lost or something else "
                             "moves. 1 = detect every frame")
    parser.add_argument("--hold-boxes", action="store_true",
                        help="videos: between detections keep each face's last box instead of following it "
                             "(fastest; misses faces that enter or leave until the next detection)")
    parser.add_argument("--smooth", type=int, default=0, metavar="W",
                        help="videos: smooth outputs per face track over W processed frames (0 = off)")
    parser.add_argument("--smooth-method", default="mean", choices=("mean", "ema"),
                        help="moving average or exponential smoothing (alpha = 2/(W+1))")
    parser.add_argument("--annotate", type=Path, metavar="OUT.mp4",
                        help="write an annotated H.264 MP4 (one video input) or a folder of them (several)")
    parser.add_argument("--aligned", action="store_true",
                        help="inputs are already aligned face crops (e.g. Aff-Wild2 cropped_aligned): no detection")
    parser.add_argument("--detector", default="retinaface", choices=DETECTORS, help="face detector")
    parser.add_argument("--min-face", type=int, default=DEFAULT_MIN_FACE_SIZE, metavar="PX",
                        help="smallest face side in pixels (default: %(default)s; 0 = any size)")
    parser.add_argument("--detect-max-side", type=int, default=DEFAULT_DETECT_MAX_SIDE, metavar="PX",
                        help="detect on a copy downscaled to this longer side; boxes map back and crops come "
                             "from the full image (default: %(default)s, twice the detector's training size, "
                             "right at any photo size; 0 = full resolution)")
    parser.add_argument("--batch-size", type=int, default=64, help="faces per forward pass")
    parser.add_argument("--engine", default="auto", choices=ENGINES,
                        help="what runs the network: auto (default) uses the model folder's verified model.onnx "
                             "on ONNX Runtime when it has one (made by `python -m affectmodel export`), else "
                             "PyTorch; torch, onnx (fp32) and onnx-int8 ask for one")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (ONNX runs on the CPU)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="CPU threads for the model and the face detector (default: the libraries' own "
                             "choice; 1 is often faster on a busy, shared CPU)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


# ------------------------------------------------------------------ inputs

def _kind(path: Path) -> str:
    """An animated GIF, WebP or PNG is a short video: every frame gets its row, with its time (its
    first frame alone would look like the whole file's answer)."""
    return "video" if is_video_file(path) or is_animated_image(path) else "image"


def collect_inputs(paths: list[Path]) -> list[tuple[Path, str, bool]]:
    """(path, "image"|"video", explicit) for every input; folders are searched recursively."""
    found = []
    for path in paths:
        if path.is_dir():
            files = files_under(path)  # symlinked folders followed, each real folder once
            media = [(p, _kind(p), False) for p in files if is_image_file(p) or is_video_file(p)]
            if not media:
                raise UserError(f"{path}: no images or videos found in this folder")
            found.extend(media)
        elif path.is_file():
            found.append((path, _kind(path), True))
        else:
            raise FileNotFoundError(f"input not found: {path}")
    return found


# ------------------------------------------------------------------ outputs

class TableWriter:
    """Streams results as CSV rows, a JSON document, or JSON lines (stdout)."""

    def __init__(self, stream: TextIO | IO[str], kind: str, columns: list[str]):
        self.stream: TextIO | IO[str] = stream
        self.kind, self.columns = kind, columns
        self._first = True
        if kind == "csv":
            self._csv = csv.DictWriter(stream, fieldnames=columns, extrasaction="ignore")
            self._csv.writeheader()
        elif kind == "json":
            stream.write("[\n")

    def image(self, source: str, faces: list[dict]) -> None:
        if self.kind == "csv":
            for face in numbered(faces):
                self._csv.writerow({"source": source, **flatten_record(face)})
        else:
            self._object({"source": source, "faces": numbered(faces)})

    def frame(self, source: str, frame: int, time_s: float, faces: list[dict]) -> None:
        if self.kind == "csv":
            for face in numbered(faces):
                self._csv.writerow({"source": source, "frame": frame, "time_s": time_s, **flatten_record(face)})
        else:
            self._object({"source": source, "frame": frame, "time_s": time_s, "faces": numbered(faces)})

    @contextmanager
    def all_or_nothing(self) -> Iterator[None]:
        """Rows written inside the block reach the output only when the block finishes: a video
        skipped part way (truncated, broken data) leaves none of its rows behind. They wait in a
        spooled temporary file (memory up to 16 MB, then disk)."""
        stream, first, rows = self.stream, self._first, getattr(self, "_csv", None)
        with tempfile.SpooledTemporaryFile(max_size=16 * 2**20, mode="w+", newline="", encoding="utf-8") as spool:
            self.stream = spool
            if rows is not None:
                self._csv = csv.DictWriter(spool, fieldnames=self.columns, extrasaction="ignore")
            try:
                yield
            except BaseException:
                self._first = first
                raise
            finally:
                self.stream = stream
                if rows is not None:
                    self._csv = rows
            spool.seek(0)
            shutil.copyfileobj(spool, stream)

    def _object(self, obj: dict) -> None:
        if self.kind == "json":
            self.stream.write(("" if self._first else ",\n") + json.dumps(obj))
        else:  # JSON lines
            self.stream.write(json.dumps(obj) + "\n")
        self._first = False

    def close(self) -> None:
        if self.kind == "json":
            self.stream.write("\n]\n")


def table_columns(predictor: Predictor) -> list[str]:
    cols = ["source", "frame", "time_s", "track_id", "face", "x1", "y1", "x2", "y2", "score"]
    if "expr" in predictor.tasks:
        cols += ["expression"] + [f"expr_{label}" for label in predictor.labels["expr"]]
    if "au" in predictor.tasks:
        cols += list(predictor.labels["au"]) + [f"{au}_active" for au in predictor.labels["au"]]
    if "va" in predictor.tasks:
        cols += ["valence", "arousal"]
    return cols


def abaw_value(record: dict, task: str) -> np.ndarray:
    """The challenge value of one face record: class index, 0/1 per AU, or (valence, arousal)."""
    if task == "expr":
        # a 0-d array, like the neutral default in _fill
        return np.asarray(np.asarray(list(record["expression"].values())).argmax())
    if task == "au":
        return np.asarray([int(v) for v in record["aus_active"].values()])
    return np.asarray([record["valence"], record["arousal"]])


def _frame_number(path: Path) -> int:
    if not path.stem.isdigit():
        raise UserError(f"{path}: --format abaw needs images named by frame number like <video>/00001.jpg")
    return int(path.stem)


# ------------------------------------------------------------------ command

def run(args: argparse.Namespace) -> int:
    if args.every < 1 or args.detect_every < 1 or args.smooth < 0 or args.batch_size < 1:
        raise UserError("--every, --detect-every and --batch-size must be at least 1, --smooth at least 0")
    for flag, value in (("--min-face", args.min_face), ("--detect-max-side", args.detect_max_side)):
        if value < 0:
            raise UserError(f"{flag} must be at least 0 pixels, got {value}")
    inputs = collect_inputs(args.inputs)
    videos = [p for p, kind, _ in inputs if kind == "video"]
    if args.annotate is not None and not videos:
        raise UserError("--annotate needs at least one video input")
    if args.format == "abaw" and (args.out is None or args.out.suffix.lower() != ".csv"):
        raise UserError("--format abaw needs --out FILE.csv")
    if args.format == "table" and args.out is not None and args.out.suffix.lower() not in (".csv", ".json"):
        raise UserError(f"--out must end in .csv or .json, got {args.out.name}")
    if args.aligned and videos:
        raise UserError("--aligned applies to cropped face images, not videos")
    if args.annotations is not None and (args.format != "abaw" or videos):
        raise UserError("--annotations applies to --format abaw on images (videos already give every frame)")

    if args.threads is not None and args.threads < 1:
        raise UserError("--threads must be at least 1")
    predictor = Predictor(args.model, detector=None if args.aligned else _detector(args), device=args.device,
                          batch_size=args.batch_size, engine=args.engine, threads=args.threads)
    if args.threads is not None and predictor.engine_name == "torch":  # ONNX sessions take threads themselves
        import torch
        torch.set_num_threads(args.threads)
    task = _abaw_task(args, predictor) if args.format == "abaw" else None
    options = VideoOptions(every=args.every, detect_every=args.detect_every, follow=not args.hold_boxes,
                           smoothing=args.smooth_method if args.smooth > 0 else None,
                           smooth_window=max(1, args.smooth))
    annotate = _annotation_paths(args.annotate, videos)
    show = not args.no_progress

    if task is not None:
        from ..scoring import format_predictions

        space = predictor.config.expression_space
        annotated = _annotated_frames(args.annotations, task, space) if args.annotations else None
        stats: dict[str, int] = {}
        predictions = dict(_abaw_predictions(predictor, inputs, task, options, annotate, show, annotated, stats))
        text = format_predictions(task, predictions, space)
        atomic_write(args.out, lambda p: p.write_text(text, encoding="utf-8"))
        summary = f"wrote {len(predictions)} {task.upper()} predictions to {args.out} (engine {predictor.engine_name})"
        if annotated is not None:
            total = sum(len(v) for v in annotated.values())
            summary += (f"; {total} annotated frame(s) in {len(annotated)} video(s), "
                        f"{stats.get('filled', 0)} without an image filled with the nearest prediction in time")
        print(summary, file=sys.stderr)
        return 0

    kind = "jsonl" if args.out is None else args.out.suffix.lower().lstrip(".")
    columns = table_columns(predictor)
    if args.out is None:
        counts = _write_table(TableWriter(sys.stdout, kind, columns), predictor, inputs, options, annotate, show)
    else:
        counts = {}

        def write(tmp: Path) -> None:
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                counts.update(_write_table(TableWriter(f, kind, columns), predictor, inputs, options, annotate, show))

        atomic_write(args.out, write)
    summary = (f"{counts['faces']} face(s) in {counts['images']} image(s) and {counts['frames']} video frame(s) "
               f"(engine {predictor.engine_name})")
    if counts["skipped"]:
        summary += f"; skipped {counts['skipped']} unreadable file(s)"
    print(summary + (f"; wrote {args.out}" if args.out else ""), file=sys.stderr)
    return 0


def _detector(args: argparse.Namespace):
    options = {"min_face_size": args.min_face, "max_side": args.detect_max_side}
    if args.detector == "retinaface" and args.threads is not None:
        options["threads"] = args.threads
    return create_detector(args.detector, **options)


def _abaw_task(args: argparse.Namespace, predictor: Predictor) -> str:
    if args.task is None:
        if len(predictor.tasks) != 1:
            raise UserError("--format abaw with a multi-task model needs --task EXPR, AU or VA")
        task = predictor.tasks[0]
    else:
        task = CHALLENGE_TO_KEY[args.task]
    if task not in predictor.tasks:
        raise UserError(f"the model does not predict {task.upper()} (its tasks: {', '.join(predictor.tasks)})")
    if task == "expr" and predictor.config.expression_space not in ("abaw8", "abaw7"):
        raise UserError(f"the model's expression labels ({predictor.config.expression_space}) "
                        "are not an ABAW label space")
    return task


def _annotation_paths(annotate: Path | None, videos: list[Path]) -> dict[Path, Path]:
    if annotate is None:
        return {}
    if len(videos) == 1 and annotate.suffix.lower() == ".mp4":
        return {videos[0]: annotate}
    if annotate.suffix:
        raise UserError("with several videos, --annotate must be a folder (annotated videos are named after "
                        "their inputs)")
    stems = [v.stem for v in videos]
    if len(set(stems)) != len(stems):
        raise UserError("several input videos share a file name; annotate them one at a time")
    return {v: annotate / f"{v.stem}.mp4" for v in videos}


def _read_image(path: Path, explicit: bool) -> np.ndarray | None:
    try:
        return load_image(path)
    except ImageLoadError as e:
        if explicit:
            raise
        tqdm.write(f"warning: skipped {e}", file=sys.stderr)
        return None


def _predict_image(predictor: Predictor, image: np.ndarray) -> list[dict]:
    if predictor.detector is None:  # --aligned: the whole image is one face
        return [{"box": [0.0, 0.0, float(image.shape[1]), float(image.shape[0])], "score": 1.0,
                 **predictor.predict_crops([image])[0]}]
    return predictor.predict_image(image)


def _video_frames(predictor: Predictor, path: Path, options: VideoOptions, annotate: dict[Path, Path],
                  show: bool) -> Iterator:
    info = probe_video(path)
    total = info.frame_count
    with Progress(total, path.name, "frame", enabled=show, leave=False) as bar:
        done = 0
        for fp in iter_video_predictions(predictor, path, options, annotate.get(path)):
            bar.update(fp.frame + 1 - done)
            done = fp.frame + 1
            yield fp


def _write_table(writer: TableWriter, predictor: Predictor, inputs, options: VideoOptions,
                 annotate: dict[Path, Path], show: bool) -> dict[str, int]:
    counts = {"faces": 0, "images": 0, "frames": 0, "skipped": 0}
    images = [(p, e) for p, k, e in inputs if k == "image"]
    for path, explicit in progress_iter(images, "images", "image", enabled=show and bool(images)):
        image = _read_image(path, explicit)
        if image is None:
            counts["skipped"] += 1
            continue
        faces = _predict_image(predictor, image)
        writer.image(str(path), faces)
        counts["images"] += 1
        counts["faces"] += len(faces)
    for path, kind, explicit in inputs:
        if kind != "video":
            continue
        video_frames = video_faces = 0
        try:
            with writer.all_or_nothing():
                for fp in _video_frames(predictor, path, options, annotate, show):
                    writer.frame(str(path), fp.frame, fp.time_s, fp.faces)
                    video_frames, video_faces = video_frames + 1, video_faces + len(fp.faces)
            counts["frames"] += video_frames
            counts["faces"] += video_faces
        except VideoLoadError as e:
            if explicit:
                raise
            tqdm.write(f"warning: skipped {e}", file=sys.stderr)
            counts["skipped"] += 1
    writer.close()
    return counts


def _abaw_predictions(predictor: Predictor, inputs, task: str, options: VideoOptions,
                      annotate: dict[Path, Path], show: bool, annotated: dict[str, list[int]] | None = None,
                      stats: dict[str, int] | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """``(image name, value)`` for every frame. Images: every frame with an image and, with
    ``annotated`` (video -> annotated frame numbers), every annotated frame; a frame without an
    image takes the nearest prediction in time, counted in ``stats["filled"]``."""
    from ..scoring import image_name

    stats = {} if stats is None else stats

    images = [(p, e) for p, k, e in inputs if k == "image"]
    # Images: group by video folder, so frames without a face can borrow a neighbour's prediction.
    by_video: dict[str, list[tuple[int, np.ndarray | None]]] = {}
    for path, explicit in progress_iter(images, "images", "image", enabled=show and bool(images)):
        frame = _frame_number(path)
        image = _read_image(path, explicit)
        face = None if image is None else largest_face(_predict_image(predictor, image))
        by_video.setdefault(path.parent.name, []).append((frame, None if face is None else abaw_value(face, task)))
    wanted = annotated or {}
    for video in [*by_video, *(v for v in wanted if v not in by_video)]:
        frames = sorted(by_video.get(video, []), key=lambda x: x[0])
        values = _fill([v for _, v in frames] or [None], task, predictor, video)
        known = np.array([f for f, _ in frames], dtype=np.int64)
        rows = sorted(set(known.tolist()) | set(wanted.get(video, ())))
        for frame in rows:
            if known.size == 0:
                value = values[0]  # no image of this video at all: the default, counted as filled
            else:
                # the nearest frame in time that has an image (the earlier one on a tie)
                i = int(np.searchsorted(known, frame))
                i = i if i < known.size and (i == 0 or known[i] - frame < frame - known[i - 1]) else i - 1
                value = values[i]
            if known.size == 0 or known[i] != frame:
                stats["filled"] = stats.get("filled", 0) + 1
            yield image_name(video, frame), value
    for path, kind, _ in inputs:
        if kind != "video":
            continue
        info = probe_video(path)
        by_frame: list[np.ndarray | None] = []
        for fp in _video_frames(predictor, path, options, annotate, show):
            by_frame.extend([None] * (fp.frame - len(by_frame)))  # frames skipped by --every
            face = largest_face(fp.faces)
            by_frame.append(None if face is None else abaw_value(face, task))
        by_frame.extend([None] * max(0, (info.frame_count or 0) - len(by_frame)))
        for i, value in enumerate(_fill(by_frame, task, predictor, path.stem)):
            yield image_name(path.stem, i + 1), value


def _annotated_frames(path: Path, task: str, expression_space: str) -> dict[str, list[int]]:
    """Video -> 1-based numbers of the frames annotated for ``task``, from a per-task annotation
    folder or the multi-task CSV (``<video>/<frame>.jpg`` rows)."""
    from ..data.annotations import TaskAnnotations, read_mtl_csv, read_task_folder

    if path.is_dir():
        return {video: (np.flatnonzero(ann.valid_frames()) + 1).tolist()
                for video, ann in read_task_folder(path, task, expression_space).items()}
    if not path.is_file():
        raise FileNotFoundError(f"annotations not found: {path}")
    mtl = read_mtl_csv(path, expression_space=expression_space)
    values = getattr(mtl, task)
    valid = TaskAnnotations(path, task, values, expression_space=mtl.expression_space).valid_frames()
    frames: dict[str, list[int]] = {}
    for image, ok in zip(mtl.images, valid, strict=True):
        if ok:
            video, _, name = image.rpartition("/")
            stem = name.rsplit(".", 1)[0]
            if not stem.isdigit():
                raise UserError(f"{path}: image {image!r} is not named by frame number (<video>/00001.jpg)")
            frames.setdefault(video, []).append(int(stem))
    return {video: sorted(f) for video, f in frames.items()}


def _fill(values: list[np.ndarray | None], task: str, predictor: Predictor, video: str) -> list[np.ndarray]:
    """Carry the last prediction forward over gaps (the first one backward over leading gaps)."""
    first = next((v for v in values if v is not None), None)
    if first is None:
        tqdm.write(f"warning: no face found in {video}; writing neutral default predictions", file=sys.stderr)
        first = {"expr": np.asarray(0), "au": np.zeros(len(predictor.labels.get("au", ())), dtype=int),
                 "va": np.zeros(2)}[task]
    out, last = [], first
    for v in values:
        last = v if v is not None else last
        out.append(last)
    return out
