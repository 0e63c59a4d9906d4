"""The data fingerprint: one short digest that says whether two runs saw the same data.

Three parts, each a SHA-256:

* ``annotations``: the content of every annotation file (Aff-Wild2: every per-task file and the
  multi-task CSVs, as :func:`annotation_files` finds them; other formats: every ``.csv``, ``.txt``,
  ``.tsv`` and ``.json`` file under the data folder, except the synthetic benchmark's marker);
* ``images``: the listing of every image file (relative paths, sorted);
* ``pixels``: the bytes of up to :data:`PIXEL_SAMPLE_FILES` image files, evenly spaced over that
  listing (every file of a small set): a re-rendered or re-encoded benchmark under the same file
  names changes it.

``digest`` (16 hex digits) covers the three and the fingerprint's version. Run records carry it
(``config.json`` and ``metrics.json`` ``dataset.fingerprint``, the model folder's ``config.json``,
the model card); ``python -m affectmodel data-info ROOT`` prints it; the study never pools seeds or
matches configurations whose digests differ (:mod:`affectmodel.study`). The synthetic benchmark's
marker (``SYNTHETIC.json``) is left out on purpose: it records the libraries of the machine that
generated the set, which do not change the data when the pixels agree.

Hidden entries (names starting with ".", e.g. the frame cache ``.affectmodel-cache``) are skipped.
The frame cache's own check (:mod:`affectmodel.data.cache`) uses the same annotation files.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..images import IMAGE_SUFFIXES
from .affwild2 import detect_layout
from .marker import MARKER_FILE, read_marker

FINGERPRINT_VERSION = 1
PIXEL_SAMPLE_FILES = 4096
TEXT_SUFFIXES = (".csv", ".txt", ".tsv", ".json")
MAX_DEPTH = 6  # folder levels walked below the data folder (a symlink loop ends here)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def annotation_files(root: str | os.PathLike, layout: str = "auto") -> list[Path]:
    """Every annotation file of an Aff-Wild2 installation (all tasks and splits, and the multi-task CSVs)."""
    lay = detect_layout(root, layout)
    files: set[Path] = set(lay.mtl_files.values())
    for splits in lay.task_dirs.values():
        for folder in splits.values():
            files.update(p for p in folder.glob("*.txt") if p.is_file())
    return sorted(files)


def _walk(folder: Path, depth: int = 0) -> Iterable[Path]:
    """Files below ``folder`` (hidden entries skipped), in no particular order."""
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            if depth < MAX_DEPTH:
                yield from _walk(Path(entry.path), depth + 1)
        elif entry.is_file():
            yield Path(entry.path)


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _digest_lines(lines: Iterable[str]) -> str:
    h = hashlib.sha256()
    for line in lines:
        h.update(line.encode("utf-8", "surrogateescape"))
        h.update(b"\n")
    return h.hexdigest()


def _files_of(root: Path) -> tuple[str, list[Path], list[Path]]:
    """(format, annotation files, image files) of the data at ``root``."""
    try:
        lay = detect_layout(root)
    except FileNotFoundError:
        lay = None
    if lay is not None:
        images = [p for p in _walk(lay.images_dir) if p.suffix.lower() in IMAGE_SUFFIXES]
        return "aff-wild2", annotation_files(root), images
    files = list(_walk(root))
    texts = [p for p in files if p.suffix.lower() in TEXT_SUFFIXES and p.name != MARKER_FILE]
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    return "files", texts, images


def data_fingerprint(root: str | os.PathLike, pixel_files: int = PIXEL_SAMPLE_FILES) -> dict[str, Any]:
    """The fingerprint of the data at ``root`` (a data folder, or an AffectNet-style CSV file: then
    its folder): ``{"digest", "version", "format", "annotations", "images", "pixels"}``, each part
    ``{"files": n, "sha256": ...}``. Raises ``FileNotFoundError`` when ``root`` does not exist."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"data not found: {root}")
    base = root.parent if root.is_file() else root
    if root.is_file():
        kind, texts, images = "files", [root], [p for p in _walk(base) if p.suffix.lower() in IMAGE_SUFFIXES]
    else:
        kind, texts, images = _files_of(root)
    text_names = sorted((_rel(p, base), p) for p in texts)
    image_names = sorted(_rel(p, base) for p in images)
    annotations = _digest_lines(f"{name} {sha256_file(path)}" for name, path in text_names)
    listing = _digest_lines(image_names)
    k = min(len(image_names), max(0, int(pixel_files)))
    sample = [image_names[i * len(image_names) // k] for i in range(k)] if k else []
    pixels = _digest_lines(f"{name} {sha256_file(base / name)}" for name in sample)
    parts = {"annotations": {"files": len(text_names), "sha256": annotations},
             "images": {"files": len(image_names), "sha256": listing},
             "pixels": {"files": len(sample), "sha256": pixels}}
    text = json.dumps({"version": FINGERPRINT_VERSION, **{k: v["sha256"] for k, v in parts.items()}}, sort_keys=True)
    return {"digest": hashlib.sha256(text.encode()).hexdigest()[:16], "version": FINGERPRINT_VERSION,
            "format": kind, **parts}


def generator_facts(root: str | os.PathLike) -> dict[str, Any] | None:
    """What generated a synthetic set (from its marker): generator, version, parameters and the
    libraries that drew and encoded its images; None for other data."""
    path = Path(root)
    try:
        marker = read_marker(path if path.is_dir() else path.parent)
    except ValueError:
        return None
    if marker is None:
        return None
    keys = ("generator", "generator_version", "config", "every", "libraries")
    return {k: marker[k] for k in keys if k in marker}


def fingerprint_change(old: dict[str, Any], new: dict[str, Any]) -> str:
    """Which parts of two fingerprints differ, in words ("" when the digests agree)."""
    if old.get("digest") == new.get("digest"):
        return ""
    words = {"annotations": "annotation files", "images": "image listing", "pixels": "image bytes"}
    changed = [words[k] for k in words
               if isinstance(old.get(k), dict) and isinstance(new.get(k), dict) and old[k] != new[k]]
    return ", ".join(changed) or "fingerprint version"


__all__ = ["FINGERPRINT_VERSION", "PIXEL_SAMPLE_FILES", "annotation_files", "data_fingerprint", "fingerprint_change",
           "generator_facts", "sha256_file"]
