"""Aff-Wild2 (ABAW) reader: per-task annotation sets in both layouts, and the multi-task CSV.

Layouts (``shared/DESIGN.md`` §2), found anywhere up to a few levels under the data root:

* newer: ``<ann>/{EXPR_Recognition,AU_Detection,VA_Estimation}_Challenge/{Train_Set,Validation_Set}/<video>.txt``
* older: ``<ann>/{EXPR,AU,VA}_Set/{Training_Set,Validation_Set}/<video>.txt``
* multi-task (s-Aff-Wild2): ``training_set_annotations.txt`` / ``validation_set_annotations.txt``

Images are ``cropped_aligned/<video>/<frame>.jpg`` (5-digit, 1-based). The per-task reader joins,
per frame, whichever tasks are annotated (a task without a file for that video, or with the
not-annotated code, carries -1 / -5), skips annotation lines whose image is absent (no face was
found) and keeps the frames with at least one valid label for the requested tasks. The synthetic
benchmark (``affectmodel.data.synthetic``) writes the same layout and is read by the same code.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..tasks import TASK_KEYS, get_label_space, get_task, parse_tasks
from .annotations import MTLAnnotations, TaskAnnotations, read_mtl_csv, read_task_file
from .dataset import ImageLabelDataset, Transform, empty_labels, valid_label_masks
from .synthetic import DATASET_NAME as SYNTHETIC_NAME
from .synthetic import read_marker

DATASET_NAME = "aff-wild2"
LAYOUTS = ("newer", "older")
SOURCES = ("auto", "per-task", "mtl")
SPLITS = ("train", "validation")
_SPLIT_ALIASES = {"train": "train", "training": "train", "validation": "validation", "val": "validation",
                  "valid": "validation"}
SPLIT_DIRS = {"train": ("Train_Set", "Training_Set"), "validation": ("Validation_Set", "Valid_Set")}
MTL_FILES = {"train": "training_set_annotations.txt", "validation": "validation_set_annotations.txt"}
IMAGE_DIRS = ("cropped_aligned", "cropped")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_NEWER = re.compile(r"^(EXPR|AU|VA)_\w*Challenge$", re.IGNORECASE)
_OLDER = re.compile(r"^(EXPR|AU|VA)_Set$", re.IGNORECASE)
_SEARCH_DEPTH = 4


# ------------------------------------------------------------------ layout detection

@dataclass
class AffWild2Layout:
    """Where the parts of an Aff-Wild2 installation are."""

    root: Path
    layout: str | None                       # "newer" / "older" (per-task sets), None: MTL only
    images_dir: Path
    task_dirs: dict[str, dict[str, Path]] = field(default_factory=dict)  # task -> split -> folder
    mtl_files: dict[str, Path] = field(default_factory=dict)            # split -> CSV

    def to_json(self) -> dict[str, Any]:
        return {
            "root": str(self.root), "layout": self.layout, "images_dir": str(self.images_dir),
            "task_dirs": {get_task(t).challenge_name: {s: str(p) for s, p in d.items()}
                          for t, d in self.task_dirs.items()},
            "mtl_files": {s: str(p) for s, p in self.mtl_files.items()},
        }


def _scan(root: Path) -> tuple[dict[str, list[tuple[int, Path]]], dict[str, list[tuple[int, Path]]],
                               dict[str, list[tuple[int, Path]]]]:
    """Breadth-first search (bounded depth, never inside image folders) for task folders and
    multi-task CSVs: (newer task dirs, older task dirs, MTL files), each as (depth, path) lists."""
    newer: dict[str, list] = {}
    older: dict[str, list] = {}
    mtl: dict[str, list] = {}
    queue = [(root, 0)]
    while queue:
        folder, depth = queue.pop(0)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            name = entry.name
            if entry.is_file():
                for split, fname in MTL_FILES.items():
                    if name.lower() == fname:
                        mtl.setdefault(split, []).append((depth, Path(entry.path)))
                continue
            if not entry.is_dir() or name.lower() in IMAGE_DIRS or name.startswith("."):
                continue
            for pattern, found in ((_NEWER, newer), (_OLDER, older)):
                m = pattern.match(name)
                if m:
                    found.setdefault(m.group(1).lower(), []).append((depth, Path(entry.path)))
                    break
            else:
                if depth + 1 < _SEARCH_DEPTH:
                    queue.append((Path(entry.path), depth + 1))
    return newer, older, mtl


def _split_dirs(task_dir: Path) -> dict[str, Path]:
    out = {}
    for split, names in SPLIT_DIRS.items():
        for name in names:
            for cand in (task_dir / name, task_dir / name.lower()):
                if cand.is_dir():
                    out[split] = cand
                    break
            if split in out:
                break
    return out


def _find_images_dir(root: Path) -> Path:
    for name in IMAGE_DIRS:
        for depth_dir in [root, *sorted(p for p in root.iterdir() if p.is_dir() and p.name.lower() not in IMAGE_DIRS)]:
            cand = depth_dir / name
            if cand.is_dir():
                inner = cand / name  # archives sometimes unpack into cropped_aligned/cropped_aligned/
                return inner if inner.is_dir() else cand
    raise FileNotFoundError(f"no cropped_aligned/ image folder found in {root} (Aff-Wild2 images: "
                            "cropped_aligned/<video>/<frame>.jpg)")


def detect_layout(root: str | os.PathLike, layout: str = "auto") -> AffWild2Layout:
    """Find the image folder, the per-task annotation folders (newer or older layout) and the
    multi-task CSVs under ``root``. ``layout`` forces "newer" or "older" when both are present."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder not found: {root}")
    if layout not in ("auto", *LAYOUTS):
        raise ValueError(f"unknown layout {layout!r}; choose auto, newer or older")
    images_dir = _find_images_dir(root)
    newer, older, mtl = _scan(root)
    if layout == "auto":
        chosen = "newer" if newer else ("older" if older else None)
    else:
        chosen = layout
        if not (newer if layout == "newer" else older) and not mtl:
            raise FileNotFoundError(f"no {layout}-layout annotation folders under {root}")
    found = newer if chosen == "newer" else older if chosen == "older" else {}
    task_dirs: dict[str, dict[str, Path]] = {}
    for challenge, candidates in found.items():
        # the shallowest folder wins (e.g. the real set over a copy deeper inside a backup)
        _, path = min(candidates, key=lambda c: (c[0], str(c[1])))
        splits = _split_dirs(path)
        if splits:
            task_dirs[get_task(challenge).key] = splits
    mtl_files = {split: min(c, key=lambda x: (x[0], str(x[1])))[1] for split, c in mtl.items()}
    if not task_dirs and not mtl_files:
        raise FileNotFoundError(
            f"no Aff-Wild2 annotations found under {root}: expected *_Challenge/{{Train_Set,Validation_Set}} "
            "(newer layout), {EXPR,AU,VA}_Set/{Training_Set,Validation_Set} (older layout) or "
            "training_set_annotations.txt / validation_set_annotations.txt (multi-task)")
    if not task_dirs:
        chosen = None
    return AffWild2Layout(root, chosen, images_dir, task_dirs, mtl_files)


# ------------------------------------------------------------------ image listing

def _list_frames(video_dir: Path) -> dict[int, str]:
    """{frame number: file name} of the images in one video folder (one directory listing,
    instead of one stat per annotation line)."""
    try:
        names = os.listdir(video_dir)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    out: dict[int, str] = {}
    for name in names:
        stem, dot, suffix = name.rpartition(".")
        if dot and stem.isdigit() and f".{suffix.lower()}" in IMAGE_SUFFIXES:
            out.setdefault(int(stem), name)
    return out


def _check_video_name(name: str, where: Path) -> None:
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise ValueError(f"{where}: video name {name!r} is not a plain folder name")


# ------------------------------------------------------------------ the data set

@dataclass(eq=False)
class AffWild2Dataset(ImageLabelDataset):
    """Aff-Wild2 frames (or the synthetic benchmark) with joined labels for one split.

    Beyond :class:`ImageLabelDataset`: ``split``, ``source`` ("per-task" / "mtl"), ``layout``,
    ``videos`` (names), ``video_ids`` (n,) index into ``videos``, ``frame_numbers`` (n,) 1-based
    frame numbers (for temporal smoothing).
    """

    split: str = "train"
    source: str = "per-task"
    layout: str | None = None
    videos: list[str] = field(default_factory=list)
    video_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    frame_numbers: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def _copy_with(self, idx: np.ndarray) -> "AffWild2Dataset":
        new = super()._copy_with(idx)
        new.video_ids = self.video_ids[idx]
        new.frame_numbers = self.frame_numbers[idx]
        return new  # type: ignore[return-value]


def _normalise_split(split: str) -> str:
    try:
        return _SPLIT_ALIASES[split.lower()]
    except KeyError:
        raise ValueError(f"unknown split {split!r}; choose train or validation") from None


def _task_stats() -> dict[str, int]:
    return {"labelled": 0, "invalid": 0, "missing_images": 0}


def _count(stats: dict[str, int], valid: np.ndarray, exists: np.ndarray) -> None:
    stats["labelled"] += int((valid & exists).sum())
    stats["invalid"] += int((~valid & exists).sum())
    stats["missing_images"] += int((~exists).sum())


def _join_per_task(lay: AffWild2Layout, split: str, tasks: tuple[str, ...], expression_space: str,
                   skip_bad_lines: bool) -> tuple[list[Path], dict[str, np.ndarray], list[str], np.ndarray,
                                                  np.ndarray, dict[str, dict[str, int]], list[str]]:
    per_video: dict[str, dict[str, TaskAnnotations]] = {}
    bad: list[str] = []
    for task in tasks:
        folder = lay.task_dirs.get(task, {}).get(split)
        if folder is None:
            continue
        for path in sorted(p for p in folder.glob("*.txt") if p.is_file()):
            _check_video_name(path.stem, path)
            ann = read_task_file(path, task, expression_space, skip_bad_lines)
            bad.extend(ann.bad_lines)
            per_video.setdefault(path.stem, {})[task] = ann
    num_classes = len(get_label_space(expression_space))
    stats = {get_task(t).challenge_name: _task_stats() for t in tasks}
    paths: list[Path] = []
    label_parts: dict[str, list[np.ndarray]] = {k: [] for k in TASK_KEYS}
    video_parts, frame_parts = [], []
    videos = sorted(per_video)
    for vid, video in enumerate(videos):
        anns = per_video[video]
        n = max(len(a) for a in anns.values())
        listing = _list_frames(lay.images_dir / video)
        frame_no = np.arange(1, n + 1)
        exists = np.fromiter((f in listing for f in range(1, n + 1)), dtype=bool, count=n)
        labels = empty_labels(n)
        for task, ann in anns.items():
            m = len(ann)
            labels[task][:m] = ann.values
            _count(stats[get_task(task).challenge_name], ann.valid_frames(), exists[:m])
        valid = valid_label_masks(labels, num_classes)
        keep = exists & np.logical_or.reduce([valid[t] for t in tasks])
        idx = np.flatnonzero(keep)
        base = lay.images_dir / video
        paths.extend(base / listing[int(f)] for f in frame_no[idx])
        for k in TASK_KEYS:
            label_parts[k].append(labels[k][idx])
        video_parts.append(np.full(len(idx), vid, dtype=np.int64))
        frame_parts.append(frame_no[idx].astype(np.int64))
    labels = _concat(label_parts)
    return (paths, labels, videos, _cat(video_parts), _cat(frame_parts), stats, bad)


def _join_mtl(lay: AffWild2Layout, split: str, tasks: tuple[str, ...], expression_space: str,
              skip_bad_lines: bool):
    path = lay.mtl_files[split]
    m: MTLAnnotations = read_mtl_csv(path, skip_bad_lines=skip_bad_lines, expression_space=expression_space)
    n = len(m)
    labels = {"expr": m.expr.astype(np.int64), "au": m.au.astype(np.float32), "va": m.va.astype(np.float32)}
    num_classes = len(get_label_space(expression_space))
    valid = valid_label_masks(labels, num_classes)
    # one directory listing per video folder
    parents, names = [], []
    for img in m.images:
        parent, _, name = img.replace("\\", "/").rpartition("/")
        parents.append(parent)
        names.append(name)
    listings: dict[str, set[str]] = {}
    for parent in dict.fromkeys(parents):
        folder = lay.images_dir / parent
        try:
            listings[parent] = set(os.listdir(folder))
        except (FileNotFoundError, NotADirectoryError):
            listings[parent] = set()
    exists = np.fromiter((nm in listings[p] for p, nm in zip(parents, names)), dtype=bool, count=n)
    stats = {get_task(t).challenge_name: _task_stats() for t in tasks}
    for t in tasks:
        _count(stats[get_task(t).challenge_name], valid[t], exists)
    keep = exists & np.logical_or.reduce([valid[t] for t in tasks])
    idx = np.flatnonzero(keep)
    videos = sorted(set(parents))
    vid_of = {v: i for i, v in enumerate(videos)}
    paths = [lay.images_dir / m.images[i] for i in idx]
    video_ids = np.array([vid_of[parents[i]] for i in idx], dtype=np.int64)
    frames = np.array([int(s) if (s := names[i].rpartition(".")[0]).isdigit() else -1 for i in idx], dtype=np.int64)
    return paths, {k: v[idx] for k, v in labels.items()}, videos, video_ids, frames, stats, list(m.bad_lines)


def _concat(parts: dict[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
    if not parts["expr"]:
        return empty_labels(0)
    return {k: np.concatenate(v) for k, v in parts.items()}


def _cat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def load_affwild2(root: str | os.PathLike, split: str = "train", tasks: Sequence[str] | str = ("expr", "au", "va"),
                  source: str = "auto", layout: str = "auto", transform: Transform | None = None,
                  expression_space: str = "abaw8", skip_bad_lines: bool = False) -> AffWild2Dataset:
    """Read one split of Aff-Wild2 (or the synthetic benchmark) as a data set.

    ``source``: "per-task" (the challenge's per-task sets, joined per frame), "mtl" (the
    multi-task CSV) or "auto" (per-task when its folders exist, else the CSV). Labels of tasks not
    in ``tasks`` are set to "not annotated". ``.stats`` holds, per task, the counts of labelled
    frames, frames with the not-annotated code, and annotation lines whose image is absent.
    """
    split = _normalise_split(split)
    tasks = parse_tasks(tasks)
    if source not in SOURCES:
        raise ValueError(f"unknown annotation source {source!r}; choose {', '.join(SOURCES)}")
    expression_space = get_label_space(expression_space).name
    lay = detect_layout(root, layout)
    has_task_dirs = any(split in lay.task_dirs.get(t, {}) for t in tasks)
    if source == "auto":
        source = "per-task" if has_task_dirs else "mtl"
    if source == "per-task":
        if not has_task_dirs:
            raise FileNotFoundError(f"no per-task annotation folders for the {split} split of "
                                    f"{', '.join(get_task(t).challenge_name for t in tasks)} under {lay.root}")
        parts = _join_per_task(lay, split, tasks, expression_space, skip_bad_lines)
    else:
        if split not in lay.mtl_files:
            raise FileNotFoundError(f"no multi-task annotation file {MTL_FILES[split]} under {lay.root}")
        parts = _join_mtl(lay, split, tasks, expression_space, skip_bad_lines)
    paths, labels, videos, video_ids, frames, task_stats, bad = parts
    # labels of tasks that were not asked for are dropped, so a loss cannot use them by accident
    for k in TASK_KEYS:
        if k not in tasks:
            labels[k] = empty_labels(len(paths))[k]
    marker = read_marker(lay.root)
    stats = {
        "split": split, "source": source, "layout": lay.layout,
        "videos": len(videos),
        "frames": len(paths), "bad_lines": len(bad), "tasks": task_stats,
    }
    return AffWild2Dataset(
        image_paths=paths, labels=labels, tasks=tasks, transform=transform, expression_space=expression_space,
        dataset_name=SYNTHETIC_NAME if marker is not None else DATASET_NAME, synthetic=marker is not None,
        root=lay.root, stats=stats, split=split, source=source, layout=lay.layout, videos=videos,
        video_ids=video_ids, frame_numbers=frames, bad_lines=bad,
    )


__all__ = ["AffWild2Dataset", "AffWild2Layout", "DATASET_NAME", "SPLITS", "detect_layout", "load_affwild2"]
