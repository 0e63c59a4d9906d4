"""One entry for every reader: :func:`load_dataset` detects the format of a data folder.

Formats, tried in this order (docs: docs/DATA.md):

* **Aff-Wild2** (or the synthetic benchmark): ``cropped_aligned/`` plus per-task annotation folders
  or the multi-task CSVs (``load_affwild2``).
* **AffectNet-style CSV**: ``ROOT`` is the CSV, or ``ROOT/{training,validation}.csv`` (also
  ``train.csv``; ``val.csv`` / ``valid.csv`` / ``test.csv`` for validation).
* **Folder per class** (FER2013 / RAF-DB image folders): ``ROOT/{train,validation}/<class>/``
  (also ``training``; ``val`` / ``valid`` / ``test`` for validation), possibly inside one wrapper
  folder (RAF-DB's ``DATASET/train/1..7``), or ``ROOT/<class>/`` for the training split. The
  folders' label space is recognised from their names (RAF-DB numbers, FER-7, AffectNet-8, ABAW-8).

Every format returns the same interface (:class:`~affectmodel.data.dataset.ImageLabelDataset`:
label arrays, ``videos`` / ``video_ids`` / ``frame_numbers``, one one-frame "video" per image for
per-image sets) with expression classes mapped by concept into ``expression_space``.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..tasks import LabelSpace, get_label_space, parse_tasks
from .affwild2 import detect_layout, load_affwild2
from .dataset import ImageLabelDataset, Transform, empty_labels
from .formats import detect_folder_labels, load_affectnet_csv, load_image_folder
from .marker import SYNTHETIC_DATASET, read_marker

FORMATS = ("aff-wild2", "affectnet-csv", "image-folder")
CSV_NAMES = {"train": ("training.csv", "train.csv"),
             "validation": ("validation.csv", "val.csv", "valid.csv", "test.csv")}
FOLDER_NAMES = {"train": ("train", "training"), "validation": ("validation", "val", "valid", "test")}
_SPLIT_ALIASES = {"train": "train", "training": "train", "validation": "validation", "val": "validation",
                  "valid": "validation"}


class UnrecognisedDataError(FileNotFoundError):
    """A data folder matches none of the known formats; the message lists what was looked for."""


def _child(folder: Path, names: Sequence[str], want_dir: bool) -> Path | None:
    """The first entry of ``folder`` whose lower-cased name is in ``names`` (in their order)."""
    try:
        entries = {p.name.lower(): p for p in folder.iterdir() if (p.is_dir() if want_dir else p.is_file())}
    except OSError:
        return None
    return next((entries[n] for n in names if n in entries), None)


def _class_folder_names(folder: Path) -> list[str]:
    try:
        return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []


def _is_class_root(folder: Path) -> bool:
    return detect_folder_labels(_class_folder_names(folder)) is not None


def detect_format(root: str | os.PathLike, split: str | None = "train") -> tuple[str, Path]:
    """(format, path to read) for ``split`` of the data at ``root``; ``split=None``: ``root`` is
    one split already (a CSV file or a folder of class folders). Raises
    :class:`UnrecognisedDataError` listing every layout that was looked for."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"data not found: {root}")
    if root.is_file():
        if root.suffix.lower() == ".csv":
            return "affectnet-csv", root
        raise UnrecognisedDataError(f"{root}: not a data folder or a .csv annotation file")
    if split is not None:
        try:
            detect_layout(root)
            return "aff-wild2", root
        except FileNotFoundError:
            pass
        csv_file = _child(root, CSV_NAMES[split], want_dir=False)
        if csv_file is not None:
            return "affectnet-csv", csv_file
        for base in [root, *(p for p in sorted(root.iterdir()) if p.is_dir())]:
            folder = _child(base, FOLDER_NAMES[split], want_dir=True)
            if folder is not None and _is_class_root(folder):
                return "image-folder", folder
    if (split in (None, "train")) and _is_class_root(root):
        return "image-folder", root
    wanted = split or "train"
    raise UnrecognisedDataError(
        f"{root}: no {wanted} data found; looked for an Aff-Wild2 installation (cropped_aligned/ with "
        f"*_Challenge/, *_Set/ or the multi-task CSVs), an AffectNet-style CSV "
        f"({' / '.join(CSV_NAMES[wanted])}), and class folders (FER2013 / RAF-DB names) in "
        f"{' / '.join(FOLDER_NAMES[wanted])}/ (here or one folder down)"
        + (" or directly in the folder" if wanted == "train" else ""))


def _find_marker(path: Path, levels: int = 2) -> dict | None:
    for folder in [path if path.is_dir() else path.parent, *list(path.parents)[:levels]]:
        marker = read_marker(folder)
        if marker is not None:
            return marker
    return None


def load_dataset(root: str | os.PathLike, split: str | None = "train",
                 tasks: Sequence[str] | str = ("expr", "au", "va"),
                 expression_space: str | LabelSpace = "abaw8", transform: Transform | None = None,
                 source_space: str | None = None, skip_bad_lines: bool = False,
                 **affwild2_options: Any) -> ImageLabelDataset:
    """Read ``split`` ("train" / "validation"; ``None``: ``root`` is one split) of any supported
    data set (see the module docstring) for ``tasks``, with expression classes in ``expression_space``.

    ``source_space`` declares the expression label space of a per-image set when its names do not
    say it (AffectNet CSV codes default to ``affectnet8``; class folders are recognised by name).
    ``affwild2_options`` go to :func:`~affectmodel.data.affwild2.load_affwild2` (``source``,
    ``layout``, ``exclude_leaking_videos``). Labels of tasks not asked for are "not annotated";
    a set that has none of the requested tasks is an error. ``.stats["format"]`` names the format.
    """
    if split is not None:
        try:
            split = _SPLIT_ALIASES[split.lower()]
        except KeyError:
            raise ValueError(f"unknown split {split!r}; choose train or validation") from None
    tasks = parse_tasks(tasks)
    space = get_label_space(expression_space)
    kind, path = detect_format(root, split)
    if kind == "aff-wild2":
        ds: ImageLabelDataset = load_affwild2(path, split or "train", tasks=tasks, transform=transform,
                                              expression_space=space, skip_bad_lines=skip_bad_lines,
                                              **affwild2_options)
    else:
        if affwild2_options:
            raise ValueError(f"{path}: options {', '.join(sorted(affwild2_options))} apply to Aff-Wild2 only "
                             f"(found a {kind} set)")
        if kind == "affectnet-csv":
            ds = load_affectnet_csv(path, transform=transform, expression_space=space,
                                    source_space=source_space or "affectnet8", skip_bad_lines=skip_bad_lines)
        else:
            detected = detect_folder_labels(_class_folder_names(path))
            label_space, folder_labels = (source_space, None) if source_space else detected  # type: ignore[misc]
            ds = load_image_folder(path, label_space, transform=transform, expression_space=space,
                                   folder_labels=folder_labels)
        _restrict_tasks(ds, tasks, path, kind)
        marker = _find_marker(path)
        if marker is not None:
            ds.synthetic = True
            ds.dataset_name = str(marker.get("dataset") or SYNTHETIC_DATASET)
    ds.stats = {**ds.stats, "format": kind, "split": split}
    return ds


def _restrict_tasks(ds: ImageLabelDataset, tasks: tuple[str, ...], path: Path, kind: str) -> None:
    have = tuple(t for t in tasks if t in ds.tasks)
    if not have:
        raise ValueError(f"{path}: this {kind} set has labels for {', '.join(ds.tasks)} only, "
                         f"none of the requested tasks ({', '.join(tasks)})")
    blank = empty_labels(len(ds))
    for key in ds.labels:
        if key not in have:
            ds.labels[key] = blank[key]
    ds.tasks = have


__all__ = ["FORMATS", "UnrecognisedDataError", "detect_format", "load_dataset"]
