"""Readers for other common facial-affect formats, mapped explicitly into the project's label space.

* **AffectNet-style CSV**: one row per image with an image path, the expression in AffectNet-8
  order (Neutral, Happy, Sad, Surprise, Fear, Disgust, Anger, Contempt), valence and arousal.
  Columns are found by name (``subDirectory_filePath``/``image``/``path``, ``expression``,
  ``valence``, ``arousal``; others are ignored). AffectNet's codes 8-10 (None, Uncertain, No-Face)
  and its valence/arousal code -2 mean "not annotated".
* **Folder per class** (RAF-DB, FER2013 images): ``ROOT/<class>/<image>``, expression only. The
  folders' label space is declared by the caller; folder names are matched to its labels (or an
  explicit folder -> label mapping, e.g. RAF-DB's numbered folders, ``RAFDB_BASIC_FOLDERS``).

Classes are mapped by emotion concept (``affectmodel.tasks.label_mapping``); a class that does not
exist in the target space (AffectNet's Contempt in ABAW-8) becomes "not annotated", never "Other".
"""
from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

import numpy as np

from ..images import IMAGE_SUFFIXES
from ..tasks import LABEL_SPACES, VA_TASK, LabelSpace, get_label_space, label_mapping
from .annotations import AnnotationError
from .dataset import ImageLabelDataset, Transform, empty_labels

IMAGE_COLUMNS = ("subdirectory_filepath", "image", "image_path", "path", "file", "filename", "image_location")
EXPRESSION_COLUMNS = ("expression", "expr", "label", "emotion")
# AffectNet: 8 = None, 9 = Uncertain, 10 = No-Face; valence/arousal -2 = not annotated.
AFFECTNET_UNANNOTATED_EXPR = (8, 9, 10)
AFFECTNET_UNANNOTATED_VA = -2.0
# RAF-DB basic set: folders/labels 1..7.
RAFDB_BASIC_FOLDERS: dict[str, str] = {
    "1": "surprise", "2": "fear", "3": "disgust", "4": "happiness", "5": "sadness", "6": "anger", "7": "neutral",
}
# Common spellings of folder names -> emotion concept (FER2013 image folders use "angry", "happy"...).
_SYNONYMS = {"angry": "anger", "happy": "happiness", "sad": "sadness", "surprised": "surprise",
             "fearful": "fear", "scared": "fear", "disgusted": "disgust", "contemptuous": "contempt",
             "calm": "neutral"}


def _inside(rel: str) -> bool:
    norm = rel.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":"):
        return False
    return ".." not in PurePosixPath(norm).parts


def _find_column(header: list[str], names: tuple[str, ...]) -> int | None:
    lowered = [h.strip().lower() for h in header]
    for name in names:
        if name in lowered:
            return lowered.index(name)
    return None


def load_affectnet_csv(csv_path: str | os.PathLike, image_root: str | os.PathLike | None = None,
                       transform: Transform | None = None, expression_space: str | LabelSpace = "abaw8",
                       source_space: str | LabelSpace = "affectnet8", skip_bad_lines: bool = False
                       ) -> ImageLabelDataset:
    """Read an AffectNet-style CSV. Image paths are relative to ``image_root`` (default: the CSV's
    folder) and may not leave it. Rows whose image is absent are skipped and counted in
    ``.stats["missing_images"]``; malformed rows raise ``AnnotationError`` ("file:line: reason")
    unless ``skip_bad_lines``."""
    csv_path = Path(csv_path)
    root = Path(image_root) if image_root is not None else csv_path.parent
    source, target = get_label_space(source_space), get_label_space(expression_space)
    lut = label_mapping(source, target)
    try:
        text = csv_path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise FileNotFoundError(f"annotation file not found: {csv_path}") from None
    except UnicodeDecodeError:
        raise AnnotationError(csv_path, 1, "not UTF-8 text") from None
    rows = list(csv.reader(io.StringIO(text.replace("\r\n", "\n").replace("\r", "\n"))))
    while rows and not any(c.strip() for c in rows[-1]):
        rows.pop()
    if not rows:
        raise AnnotationError(csv_path, 1, "empty file; expected a header with image and expression columns")
    header = rows[0]
    ci = _find_column(header, IMAGE_COLUMNS)
    ce = _find_column(header, EXPRESSION_COLUMNS)
    cv, ca = _find_column(header, ("valence",)), _find_column(header, ("arousal",))
    if ci is None or ce is None:
        raise AnnotationError(csv_path, 1, f"header {','.join(header)!r} needs an image column "
                              f"({'/'.join(IMAGE_COLUMNS)}) and an expression column ({'/'.join(EXPRESSION_COLUMNS)})")
    if (cv is None) != (ca is None):
        raise AnnotationError(csv_path, 1, "valence and arousal columns must come together")
    ncols = len(header)
    paths: list[Path] = []
    expr_values: list[int] = []
    va_values: list[tuple[float, float]] = []
    bad: list[str] = []
    missing = 0
    unmapped = 0

    def problem(line: int, reason: str) -> None:
        if not skip_bad_lines:
            raise AnnotationError(csv_path, line, reason)
        bad.append(f"{csv_path}:{line}: {reason}")

    for i, row in enumerate(rows[1:], start=2):
        if len(row) != ncols:
            problem(i, f"expected {ncols} columns, found {len(row)}")
            continue
        rel = row[ci].strip()
        if not rel:
            problem(i, "empty image path")
            continue
        if not _inside(rel):
            # never skippable: a path leaving the image folder signals a broken or hostile file
            raise AnnotationError(csv_path, i,
                                  f"image path {rel!r} escapes the image folder (absolute or contains '..')")
        try:
            code = float(row[ce])
        except ValueError:
            problem(i, f"expression {row[ce].strip()!r} is not a number")
            continue
        if not code.is_integer() or not (0 <= code < len(source) or int(code) in AFFECTNET_UNANNOTATED_EXPR
                                          or code == -1):
            problem(i, f"expression {row[ce].strip()} out of range (0..{len(source) - 1}, "
                       f"or {'/'.join(map(str, AFFECTNET_UNANNOTATED_EXPR))}/-1 for not annotated)")
            continue
        code = int(code)
        expr = lut[code] if 0 <= code < len(source) else -1
        if 0 <= code < len(source) and expr == -1:
            unmapped += 1
        va = (VA_TASK.invalid_code, VA_TASK.invalid_code)
        if cv is not None:
            try:
                v, a = float(row[cv]), float(row[ca])  # type: ignore[index]
            except ValueError:
                problem(i, f"valence/arousal {row[cv].strip()!r},{row[ca].strip()!r} are not numbers")  # type: ignore[index]
                continue
            pair = []
            ok = True
            for value, name in ((v, "valence"), (a, "arousal")):
                if value in (AFFECTNET_UNANNOTATED_VA, VA_TASK.invalid_code):
                    pair.append(VA_TASK.invalid_code)
                elif np.isfinite(value) and -1 <= value <= 1:
                    pair.append(value)
                else:
                    problem(i, f"{name} {value} out of range [-1, 1] (-2 or -5 = not annotated)")
                    ok = False
                    break
            if not ok:
                continue
            va = (pair[0], pair[1])
        path = root / rel.replace("\\", "/")
        if not path.is_file():
            missing += 1
            continue
        if expr < 0 and va[0] == VA_TASK.invalid_code and va[1] == VA_TASK.invalid_code:
            continue  # nothing usable on this row
        paths.append(path)
        expr_values.append(expr)
        va_values.append(va)
    labels = empty_labels(len(paths))
    labels["expr"][:] = np.asarray(expr_values, dtype=np.int64)
    if va_values:
        labels["va"][:] = np.asarray(va_values, dtype=np.float32)
    tasks = ("expr", "va") if cv is not None else ("expr",)
    stats = {"rows": len(rows) - 1, "images": len(paths), "missing_images": missing,
             "unmapped_expression": unmapped, "bad_lines": len(bad), "source_space": source.name}
    return ImageLabelDataset(paths, labels, tasks=tasks, transform=transform, expression_space=target.name,
                             dataset_name="affectnet-csv", root=root, stats=stats, bad_lines=bad)


def _folder_concept(name: str, space, folder_labels: Mapping[str, str] | None) -> str | None:
    if folder_labels is not None:
        value = folder_labels.get(name)
        if value is None:
            return None
        name = value
    low = name.strip().lower()
    for label, concept in zip(space.labels, space.concepts, strict=True):
        if low in (label.lower(), concept):
            return concept
    synonym = _SYNONYMS.get(low)
    return synonym if synonym in space.concepts else None


# Label spaces tried, in order, when a folder-per-class set does not declare its own.
_FOLDER_SPACE_ORDER = ("fer7", "affectnet8", "abaw8", "abaw7")


def detect_folder_labels(names: list[str]) -> tuple[str, Mapping[str, str] | None] | None:
    """(label space, folder -> label mapping or None) that names every class folder in ``names``:
    RAF-DB's numbered folders ``1``..``7``, else the first of FER-7, AffectNet-8, ABAW-8, ABAW-7
    whose labels, concepts or common spellings cover all names; ``None`` when none does."""
    if names and set(names) <= set(RAFDB_BASIC_FOLDERS):
        return "fer7", RAFDB_BASIC_FOLDERS
    for name in _FOLDER_SPACE_ORDER:
        space = LABEL_SPACES[name]
        if names and all(_folder_concept(n, space, None) is not None for n in names):
            return name, None
    return None


def load_image_folder(root: str | os.PathLike, label_space: str | LabelSpace,
                      transform: Transform | None = None, expression_space: str | LabelSpace = "abaw8",
                      folder_labels: Mapping[str, str] | None = None) -> ImageLabelDataset:
    """Expression-only images in ``root/<class>/``; the folders' ``label_space`` must be declared
    (e.g. ``fer7`` for FER2013 image folders). ``folder_labels`` maps folder names to labels or
    concepts of that space (``RAFDB_BASIC_FOLDERS`` for RAF-DB's ``1``..``7``)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    space, target = get_label_space(label_space), get_label_space(expression_space)
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise FileNotFoundError(f"no class folders in {root} (expected {root}/<class>/<image>)")
    paths: list[Path] = []
    expr: list[int] = []
    skipped: dict[str, int] = {}
    per_class: dict[str, int] = {}
    for folder in folders:
        concept = _folder_concept(folder.name, space, folder_labels)
        if concept is None:
            known = ", ".join(folder_labels) if folder_labels is not None else ", ".join(space.labels)
            raise ValueError(f"{folder}: folder name {folder.name!r} is not a class of the {space.name} "
                             f"label space (expected one of: {known})")
        files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if concept not in target.concepts:
            skipped[folder.name] = len(files)  # e.g. contempt has no ABAW-8 class
            continue
        index = target.concepts.index(concept)
        paths.extend(files)
        expr.extend([index] * len(files))
        per_class[target.labels[index]] = per_class.get(target.labels[index], 0) + len(files)
    labels = empty_labels(len(paths))
    labels["expr"][:] = np.asarray(expr, dtype=np.int64)
    stats = {"images": len(paths), "per_class": per_class, "skipped_folders": skipped, "source_space": space.name}
    return ImageLabelDataset(paths, labels, tasks=("expr",), transform=transform, expression_space=target.name,
                             dataset_name=f"folder-{space.name}", root=root, stats=stats)


__all__ = ["RAFDB_BASIC_FOLDERS", "detect_folder_labels", "load_affectnet_csv", "load_image_folder"]
