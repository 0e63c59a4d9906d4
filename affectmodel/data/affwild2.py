"""Aff-Wild2 (ABAW) reader: per-task annotation sets in both layouts, and the multi-task CSV.

Layouts (docs/DATA.md), found anywhere up to a few levels under the data root:

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
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..images import IMAGE_SUFFIXES
from ..tasks import TASK_KEYS, LabelSpace, get_label_space, get_task, parse_tasks
from .annotations import MTLAnnotations, TaskAnnotations, read_mtl_csv, read_task_file
from .dataset import ImageLabelDataset, Transform, empty_labels, valid_label_masks
from .layout import IMAGE_DIRS, MTL_FILES, SPLIT_DIRS, base_video_name
from .marker import SYNTHETIC_DATASET, read_marker

DATASET_NAME = "aff-wild2"
LAYOUTS = ("newer", "older")
SOURCES = ("auto", "per-task", "mtl")
SPLITS = ("train", "validation")
_SPLIT_ALIASES = {"train": "train", "training": "train", "validation": "validation", "val": "validation",
                  "valid": "validation"}
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

    Beyond :class:`ImageLabelDataset`: ``split``, ``source`` ("per-task" / "mtl"), ``layout``
    and ``split_videos``: every video annotated for any task in this split of the installation
    (whatever ``tasks`` were asked for), so that a development split drawn from it is the same
    for uni- and multi-task runs.
    """

    split: str = "train"
    source: str = "per-task"
    layout: str | None = None
    split_videos: list[str] = field(default_factory=list)


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


def _join_per_task(lay: AffWild2Layout, split: str, tasks: tuple[str, ...], space: LabelSpace,
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
            ann = read_task_file(path, task, space, skip_bad_lines)
            bad.extend(ann.bad_lines)
            per_video.setdefault(path.stem, {})[task] = ann
    num_classes = len(space)
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


def _join_mtl(lay: AffWild2Layout, split: str, tasks: tuple[str, ...], space: LabelSpace,
              skip_bad_lines: bool):
    path = lay.mtl_files[split]
    m: MTLAnnotations = read_mtl_csv(path, skip_bad_lines=skip_bad_lines, expression_space=space)
    n = len(m)
    labels: dict[str, np.ndarray] = {"expr": m.expr.astype(np.int64), "au": m.au.astype(np.float32),
                                     "va": m.va.astype(np.float32)}
    valid = valid_label_masks(labels, len(space))
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
    exists = np.fromiter((nm in listings[p] for p, nm in zip(parents, names, strict=True)), dtype=bool, count=n)
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


# ------------------------------------------------------------------ leakage between splits

def annotated_videos(lay: AffWild2Layout, split: str, source: str = "per-task",
                     skip_bad_lines: bool = False) -> dict[str, set[str]]:
    """{annotation set: video names} of one split: per task (``"EXPR"``, ...) for the per-task
    folders, ``{"MTL": ...}`` for the multi-task CSV. Only file names are read for the per-task sets."""
    if source == "mtl":
        if split not in lay.mtl_files:
            return {}
        m = read_mtl_csv(lay.mtl_files[split], skip_bad_lines=skip_bad_lines)
        return {"MTL": {img.replace("\\", "/").rpartition("/")[0] for img in m.images}}
    out: dict[str, set[str]] = {}
    for task in TASK_KEYS:
        folder = lay.task_dirs.get(task, {}).get(split)
        if folder is not None:
            out[get_task(task).challenge_name] = {p.stem for p in folder.glob("*.txt") if p.is_file()}
    return out


def find_leakage(train_videos: Mapping[str, set[str]], validation_videos: Mapping[str, set[str]]
                 ) -> dict[str, Any]:
    """Videos that sit in one annotation set's training split and any set's validation split.

    Returns ``{"pairs": {"EXPR_train/AU_validation": [videos]}, "videos": [every such video],
    "base_name_crossings": [training tracks whose video has another track in validation]}``.
    ``_left`` / ``_right`` tracks are separate videos (they show different people), so a base-name
    crossing is reported, not removed.
    """
    pairs: dict[str, list[str]] = {}
    for a, train in sorted(train_videos.items()):
        for b, validation in sorted(validation_videos.items()):
            common = sorted(train & validation)
            if common:
                pairs[f"{a}_train/{b}_validation"] = common
    leaking = sorted({v for vs in pairs.values() for v in vs})
    all_train: set[str] = set().union(*train_videos.values())
    all_validation: set[str] = set().union(*validation_videos.values())
    validation_bases = {base_video_name(v) for v in all_validation}
    crossings = sorted(v for v in all_train - all_validation if base_video_name(v) in validation_bases)
    return {"pairs": pairs, "videos": leaking, "base_name_crossings": crossings}


def _leakage_stats(found: dict[str, Any], videos: list[str], video_ids: np.ndarray, excluded: bool
                   ) -> dict[str, Any]:
    """The JSON-ready ``.stats["leakage"]`` entry: counts per pair, over this training set's frames."""
    per_video = dict(zip(videos, np.bincount(video_ids, minlength=len(videos)).tolist(), strict=True))
    frames = {v: per_video.get(v, 0) for v in found["videos"]}
    return {
        "excluded": excluded,
        "pairs": {pair: {"videos": len(vs), "frames": sum(frames[v] for v in vs)}
                  for pair, vs in found["pairs"].items()},
        "videos": len(found["videos"]),
        "frames": sum(frames.values()),
        "video_names": found["videos"],
        "base_name_crossings": {"videos": len(found["base_name_crossings"]),
                                "video_names": found["base_name_crossings"]},
    }


# ------------------------------------------------------------------ entry point

def load_affwild2(root: str | os.PathLike, split: str = "train", tasks: Sequence[str] | str = ("expr", "au", "va"),
                  source: str = "auto", layout: str = "auto", transform: Transform | None = None,
                  expression_space: str | LabelSpace = "abaw8", skip_bad_lines: bool = False,
                  exclude_leaking_videos: bool = True) -> AffWild2Dataset:
    """Read one split of Aff-Wild2 (or the synthetic benchmark) as a data set.

    ``source``: "per-task" (the challenge's per-task sets, joined per frame), "mtl" (the
    multi-task CSV) or "auto" (per-task when its folders exist, else the CSV). Labels of tasks not
    in ``tasks`` are set to "not annotated". ``.stats`` holds, per task, the counts of labelled
    frames, frames with the not-annotated code, and annotation lines whose image is absent.

    Leakage guard (training split only): the per-task sets are separate lists, so a video can be
    in one task's training set and another task's validation set; a multi-task model would then
    train on faces it is scored on. Such videos (over all three tasks, whichever were asked for,
    so uni- and multi-task runs train on the same videos) are left out of training unless
    ``exclude_leaking_videos=False`` (kept, with a warning). ``.stats["leakage"]`` reports them
    per pair of annotation sets (see :func:`find_leakage`); copy it into the run record.
    """
    split = _normalise_split(split)
    tasks = parse_tasks(tasks)
    if source not in SOURCES:
        raise ValueError(f"unknown annotation source {source!r}; choose {', '.join(SOURCES)}")
    space = get_label_space(expression_space)  # resolved once, passed down as the object
    lay = detect_layout(root, layout)
    has_task_dirs = any(split in lay.task_dirs.get(t, {}) for t in tasks)
    if source == "auto":
        source = "per-task" if has_task_dirs else "mtl"
    if source == "per-task":
        if not has_task_dirs:
            raise FileNotFoundError(f"no per-task annotation folders for the {split} split of "
                                    f"{', '.join(get_task(t).challenge_name for t in tasks)} under {lay.root}")
        parts = _join_per_task(lay, split, tasks, space, skip_bad_lines)
    else:
        if split not in lay.mtl_files:
            raise FileNotFoundError(f"no multi-task annotation file {MTL_FILES[split]} under {lay.root}")
        parts = _join_mtl(lay, split, tasks, space, skip_bad_lines)
    paths, labels, videos, video_ids, frames, task_stats, bad = parts
    # labels of tasks that were not asked for are dropped, so a loss cannot use them by accident
    for k in TASK_KEYS:
        if k not in tasks:
            labels[k] = empty_labels(len(paths))[k]
    # the multi-task CSV's videos are those just read; per-task folders are listed for all three tasks
    split_sets = {"MTL": set(videos)} if source == "mtl" else annotated_videos(lay, split, source, skip_bad_lines)
    split_videos = sorted(set().union(*split_sets.values())) if split_sets else list(videos)
    stats: dict[str, Any] = {"split": split, "source": source, "layout": lay.layout}
    if split == "train":
        found = find_leakage(split_sets, annotated_videos(lay, "validation", source, skip_bad_lines))
        stats["leakage"] = _leakage_stats(found, videos, video_ids, exclude_leaking_videos)
        if found["videos"] and exclude_leaking_videos:
            paths, labels, videos, video_ids, frames = _drop_videos(paths, labels, videos, video_ids, frames,
                                                                    set(found["videos"]))
        elif found["videos"]:
            warnings.warn(f"{lay.root}: {len(found['videos'])} training video(s) are also in a validation set "
                          f"({', '.join(found['pairs'])}); they stay in training because "
                          "exclude_leaking_videos=False, so validation scores are optimistic", stacklevel=2)
    stats.update({"videos": len(np.unique(video_ids)), "frames": len(paths), "bad_lines": len(bad),
                  "tasks": task_stats})
    marker = read_marker(lay.root)
    return AffWild2Dataset(
        image_paths=paths, labels=labels, tasks=tasks, transform=transform, expression_space=space.name,
        dataset_name=SYNTHETIC_DATASET if marker is not None else DATASET_NAME, synthetic=marker is not None,
        root=lay.root, stats=stats, split=split, source=source, layout=lay.layout, videos=videos,
        video_ids=video_ids, frame_numbers=frames, bad_lines=bad, split_videos=split_videos,
    )


def _drop_videos(paths: list[Path], labels: dict[str, np.ndarray], videos: list[str], video_ids: np.ndarray,
                 frames: np.ndarray, drop: set[str]):
    kept_videos = [v for v in videos if v not in drop]
    position = {v: i for i, v in enumerate(kept_videos)}
    new_id = np.array([position.get(v, -1) for v in videos], dtype=np.int64)
    keep = np.flatnonzero(new_id[video_ids] >= 0)
    return ([paths[i] for i in keep], {k: v[keep] for k, v in labels.items()}, kept_videos,
            new_id[video_ids[keep]], frames[keep])


__all__ = [
    "DATASET_NAME",
    "SPLITS",
    "AffWild2Dataset",
    "AffWild2Layout",
    "annotated_videos",
    "detect_layout",
    "find_leakage",
    "load_affwild2",
]
