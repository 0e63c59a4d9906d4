"""Pre-decoded frame cache: every frame of an Aff-Wild2 installation decoded once into uint8 shards.

Decoding and resizing JPEGs costs far more per image than a training step can afford on a GPU, so
``build_frame_cache`` (command ``python -m affectmodel cache ROOT``) reads each split with the same
reader as training (:func:`affectmodel.data.affwild2.load_affwild2`) and the same safe image loader
and resize (:func:`affectmodel.data.dataset.load_image`, then a bilinear resize to ``size`` when the
frame is not already that size, as :func:`affectmodel.data.transforms.preprocess` does), and writes:

    DIR/manifest.json                 written last: its presence means the cache is complete
    DIR/<split>/plan.json             frame count, shard size, image size, digest of the frame list
    DIR/<split>/frames.npz            "names": image path of every stored frame, relative to ROOT
    DIR/<split>/shard-00000.npy       uint8 (n, 3, size, size), memory-mappable
    DIR/<split>/shard-00000.json      {"frames": n, "crc32": ...} (checked by ``verify_frame_cache``)
    DIR/<split>/index-<tasks>.npz     per non-empty subset of the cached tasks ("expr+au+va",
                                      "expr", ...): rows into the shards, labels, video ids, frame
                                      numbers, exactly as ``load_affwild2(tasks=<subset>)`` returns them

Each file is written to a temporary name and renamed (``affectmodel.io.atomic_write``), so an
interrupted build leaves only whole shards; running the command again skips them.

The manifest holds a fingerprint of the data it was built from: the SHA-256 of every annotation
file of the installation and of each cached video folder's file listing. :func:`open_frame_cache`
with ``root`` recomputes it and refuses a cache that no longer matches, naming what changed.
Replacing an image by another with the same file name is not detected (the pixels are not hashed).

Where it lives: ``--out DIR``, or by default next to the data, ``ROOT/.affectmodel-cache/<size>px``
(:func:`default_cache_dir`; a hidden folder, which the Aff-Wild2 reader never looks into).
"""
from __future__ import annotations

import copy
import hashlib
import itertools
import json
import mmap
import os
import shutil
import zlib
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..io import atomic_write, write_json_atomic
from ..progress import Progress, progress_iter
from ..tasks import TASK_KEYS, get_label_space, parse_tasks
from .affwild2 import AffWild2Dataset, detect_layout, load_affwild2
from .affwild2 import (
    _normalise_split as normalise_split,  # the reader's own split names ("val" -> "validation")
)
from .dataset import Transform, load_image
from .fingerprint import annotation_files, sha256_file

FORMAT = "affectmodel-frame-cache"
VERSION = 1
MANIFEST = "manifest.json"
CACHE_FOLDER = ".affectmodel-cache"
DEFAULT_SHARD_FRAMES = 8192          # 308 MB per shard at 112 px
# load_affwild2 options a cache is built with; opening it with other values is refused.
LOAD_OPTION_DEFAULTS: dict[str, Any] = {"source": "auto", "layout": "auto", "expression_space": "abaw8"}


class FrameCacheError(ValueError):
    """A frame cache is missing, incomplete, corrupt or does not match the data (one-line message)."""


# ------------------------------------------------------------------ locations and small helpers

def default_cache_dir(root: str | os.PathLike, size: int = 112) -> Path:
    """Where ``python -m affectmodel cache ROOT`` writes by default: ``ROOT/.affectmodel-cache/<size>px``."""
    return Path(root) / CACHE_FOLDER / f"{int(size)}px"


def find_frame_cache(root: str | os.PathLike, size: int = 112) -> Path | None:
    """The complete cache next to the data (:func:`default_cache_dir`), or None."""
    folder = default_cache_dir(root, size)
    return folder if (folder / MANIFEST).is_file() else None


def subset_key(tasks: Sequence[str]) -> str:
    return "+".join(parse_tasks(tasks))


def _task_subsets(tasks: tuple[str, ...]) -> list[tuple[str, ...]]:
    return [c for r in range(len(tasks), 0, -1) for c in itertools.combinations(tasks, r)]


def _normalise_options(options: dict[str, Any]) -> dict[str, Any]:
    out = {**LOAD_OPTION_DEFAULTS, **{k: v for k, v in options.items() if v is not None}}
    out["expression_space"] = get_label_space(out["expression_space"]).name
    return out


def _listing_digest(folder: Path) -> str:
    try:
        names = sorted(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return "missing"
    return hashlib.sha256("\n".join(names).encode("utf-8", "surrogateescape")).hexdigest()


def _rel(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` in POSIX form (string work: called once per frame per task subset)."""
    text, prefix = str(path), str(root).rstrip(os.sep) + os.sep
    text = text.removeprefix(prefix)
    return text.replace(os.sep, "/") if os.sep != "/" else text


def _npy_atomic(path: Path, array: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.save would append ".npy" to a path
            np.save(f, array, allow_pickle=False)
    atomic_write(path, write)


def _npz_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy's stub fears a key named allow_pickle
    atomic_write(path, write)


# ------------------------------------------------------------------ fingerprint of the data

def data_fingerprint(root: str | os.PathLike, layout: str, videos_by_split: Mapping[str, Iterable[str]],
                     images_dir: Path | None = None) -> dict[str, Any]:
    """{"annotations": {path: sha256}, "images": {split: {video folder: sha256 of its listing}}}."""
    root = Path(root)
    images_dir = images_dir or detect_layout(root, layout).images_dir
    return {
        "annotations": {_rel(p, root): sha256_file(p) for p in annotation_files(root, layout)},
        "images": {split: {_rel(images_dir / v, root): _listing_digest(images_dir / v) for v in sorted(set(videos))}
                   for split, videos in videos_by_split.items()},
    }


def _fingerprint_change(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """What differs between two fingerprints, in words (None: nothing)."""
    changes: list[str] = []
    a_old, a_new = old["annotations"], new["annotations"]
    changes += [f"annotation file {p} changed" for p in sorted(a_old) if p in a_new and a_old[p] != a_new[p]]
    changes += [f"annotation file {p} was removed" for p in sorted(set(a_old) - set(a_new))]
    changes += [f"annotation file {p} was added" for p in sorted(set(a_new) - set(a_old))]
    for split, folders in new["images"].items():
        was = old["images"].get(split, {})
        changes += [f"the images in {p} changed (files added, removed or renamed)"
                    for p in sorted(folders) if was.get(p) != folders[p]]
    if not changes:
        return None
    more = f" (and {len(changes) - 1} more change{'s' if len(changes) > 2 else ''})" if len(changes) > 1 else ""
    return changes[0] + more


# ------------------------------------------------------------------ decoding

def decode_frame(path: str | os.PathLike, size: int) -> np.ndarray:
    """One frame as uint8 (3, size, size): the pixels :func:`affectmodel.data.transforms.preprocess`
    normalises on the JPEG path (safe loader, RGB, bilinear resize only when the size differs)."""
    image = load_image(Path(path)).convert("RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)


# ------------------------------------------------------------------ building

@dataclass
class BuildSummary:
    out: Path
    frames: dict[str, int]
    shards_written: int
    shards_skipped: int
    bytes_on_disk: int
    unavailable: dict[str, dict[str, str]] = field(default_factory=dict)  # split -> subset -> reason


def _split_datasets(root: Path, split: str, tasks: tuple[str, ...], options: dict[str, Any]
                    ) -> tuple[dict[str, AffWild2Dataset], dict[str, str]]:
    """The data set of every non-empty subset of ``tasks`` (same reader, same options as training)."""
    found, errors = {}, {}
    for subset in _task_subsets(tasks):
        key = subset_key(subset)
        try:
            found[key] = load_affwild2(root, split=split, tasks=subset, **options)
        except FileNotFoundError as e:  # e.g. no annotations of that task in this split
            errors[key] = str(e)
    return found, errors


def _frame_list(datasets: dict[str, AffWild2Dataset], root: Path) -> list[str]:
    """Every image any subset uses, once, in the order of the largest subset (then the others)."""
    seen: dict[str, None] = {}
    for ds in datasets.values():
        for p in ds.image_paths:
            seen.setdefault(_rel(p, root), None)
    return list(seen)


def _plan_digest(names: list[str], size: int, shard_frames: int) -> str:
    h = hashlib.sha256(f"{VERSION}|{size}|{shard_frames}|".encode())
    h.update("\n".join(names).encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def _shard_path(folder: Path, k: int) -> Path:
    return folder / f"shard-{k:05d}.npy"


def _read_npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, data offset) of an .npy file; FrameCacheError when it is not one."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(f)
            offset = f.tell()
    except FileNotFoundError:
        raise FrameCacheError(f"frame cache shard {path} is missing; rebuild the cache "
                              "(python -m affectmodel cache ROOT --out DIR finishes or repairs it)") from None
    except (ValueError, OSError, SyntaxError) as e:
        raise FrameCacheError(f"frame cache shard {path} is corrupt (not a valid .npy file: {e}); delete it and "
                              "rerun python -m affectmodel cache ROOT --out DIR to rewrite it") from None
    if fortran:
        raise FrameCacheError(f"frame cache shard {path} is corrupt (Fortran order)")
    return tuple(shape), dtype, offset


def check_shard(path: Path, frames: int, size: int) -> None:
    """Header says uint8 (frames, 3, size, size) and the file holds all of its bytes."""
    shape, dtype, offset = _read_npy_header(path)
    expected = (frames, 3, size, size)
    if shape != expected or dtype != np.uint8:
        raise FrameCacheError(f"frame cache shard {path} is corrupt: holds {dtype} {shape}, expected uint8 {expected}; "
                              "delete it and rerun python -m affectmodel cache to rewrite it")
    need = offset + int(np.prod(expected))
    have = path.stat().st_size
    if have != need:
        raise FrameCacheError(f"frame cache shard {path} is corrupt: {have} bytes, expected {need} (truncated?); "
                              "delete it and rerun python -m affectmodel cache to rewrite it")


def _shard_crc(path: Path) -> int:
    _, _, offset = _read_npy_header(path)
    crc = 0
    with open(path, "rb") as f:
        f.seek(offset)
        for block in iter(lambda: f.read(1 << 22), b""):
            crc = zlib.crc32(block, crc)
    return crc


def _write_shard(path: Path, paths: list[Path], size: int, workers: int, bar: Progress) -> int:
    """Decode ``paths`` into a new shard (written in place through a memmap of the temporary file)."""
    def write(tmp: Path) -> None:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(paths), 3, size, size))
        def decode(p: Path) -> np.ndarray:
            return decode_frame(p, size)

        if workers > 1:
            with ThreadPoolExecutor(workers) as pool:  # PIL releases the GIL while decoding
                for i, frame in enumerate(pool.map(decode, paths)):
                    out[i] = frame
                    bar.update(1)
        else:
            for i, p in enumerate(paths):
                out[i] = decode(p)
                bar.update(1)
        out.flush()
        del out
    atomic_write(path, write)
    crc = _shard_crc(path)
    write_json_atomic(path.with_suffix(".json"), {"frames": len(paths), "crc32": crc})
    return crc


def _prepare_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise FrameCacheError(f"{out} is a file, not a folder for the frame cache")
    if out.is_dir() and any(out.iterdir()):
        is_cache = (out / MANIFEST).is_file() or any((d / "plan.json").is_file() for d in out.iterdir() if d.is_dir())
        if not is_cache:
            raise FrameCacheError(f"{out} is not empty and holds no frame cache; choose an empty or new folder")
    out.mkdir(parents=True, exist_ok=True)


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def build_frame_cache(root: str | os.PathLike, out: str | os.PathLike | None = None, size: int = 112,
                      splits: Sequence[str] = ("train", "validation"), tasks: Sequence[str] | str = TASK_KEYS,
                      shard_frames: int = DEFAULT_SHARD_FRAMES, workers: int = 1, progress: bool = True,
                      **load_options: Any) -> BuildSummary:
    """Decode every frame of ``splits`` under ``root`` into a cache at ``out`` (default: next to
    the data). Resumable: shards already written for the same frame list are kept.

    ``tasks``: the tasks the cache serves; an index is stored for every non-empty subset, so a
    uni-task and a multi-task run read the same shards. ``load_options`` (``source``, ``layout``,
    ``expression_space``) are passed to ``load_affwild2`` and recorded: the cache serves only them.
    """
    root = Path(root)
    size, shard_frames = int(size), int(shard_frames)
    if size < 1 or shard_frames < 1:
        raise ValueError("size and shard_frames must be positive")
    tasks = parse_tasks(tasks)
    options = _normalise_options(load_options)
    splits = list(dict.fromkeys(normalise_split(s) for s in splits))
    out = Path(out) if out is not None else default_cache_dir(root, size)
    lay = detect_layout(root, options["layout"])

    # 1. Read the annotations (every task subset of every split) and plan the frames of each split.
    plans: dict[str, dict[str, Any]] = {}
    unavailable: dict[str, dict[str, str]] = {}
    for split in splits:
        datasets, errors = _split_datasets(root, split, tasks, options)
        if not datasets:
            raise FrameCacheError(f"no {split} data to cache under {root}: {next(iter(errors.values()))}")
        names = _frame_list(datasets, root)
        plans[split] = {"datasets": datasets, "names": names, "digest": _plan_digest(names, size, shard_frames)}
        if errors:
            unavailable[split] = errors

    _prepare_out(out)
    (out / MANIFEST).unlink(missing_ok=True)  # incomplete until the manifest is written again

    # 2. Shards: keep those of an unchanged plan, decode the rest.
    todo: list[tuple[str, int, list[str]]] = []
    skipped = 0
    for split, plan in plans.items():
        folder = out / split
        plan_file = folder / "plan.json"
        meta = {"digest": plan["digest"], "frames": len(plan["names"]), "shard_frames": shard_frames, "size": size}
        old = json.loads(plan_file.read_text()) if plan_file.is_file() else None
        if old != meta:
            if folder.exists():
                shutil.rmtree(folder)  # a different frame list: its shards hold other frames
            folder.mkdir(parents=True)
            _npz_atomic(folder / "frames.npz", {"names": np.array([n.encode("utf-8", "surrogateescape")
                                                                    for n in plan["names"]], dtype=np.bytes_)})
            write_json_atomic(plan_file, meta)
        names = plan["names"]
        for k, start in enumerate(range(0, len(names), shard_frames)):
            chunk = names[start:start + shard_frames]
            path = _shard_path(folder, k)
            try:
                check_shard(path, len(chunk), size)
                if not path.with_suffix(".json").is_file():
                    write_json_atomic(path.with_suffix(".json"), {"frames": len(chunk), "crc32": _shard_crc(path)})
                skipped += 1
            except FrameCacheError:
                todo.append((split, k, chunk))
    total = sum(len(c) for _, _, c in todo)
    with Progress(total, f"caching {root.name or root}", "frame", enabled=progress and total > 0) as bar:
        for split, k, chunk in todo:
            _write_shard(_shard_path(out / split, k), [root / n for n in chunk], size, workers, bar)

    # 3. Label indexes of every task subset, the fingerprint, and last the manifest.
    manifest_splits: dict[str, Any] = {}
    videos_by_split: dict[str, set[str]] = {}
    for split, plan in plans.items():
        row_of = {n: i for i, n in enumerate(plan["names"])}
        subsets: dict[str, Any] = {}
        videos_by_split[split] = set()
        for key, ds in plan["datasets"].items():
            rows = np.fromiter((row_of[_rel(p, root)] for p in ds.image_paths), dtype=np.int64, count=len(ds))
            _npz_atomic(out / split / f"index-{key}.npz", {
                "rows": rows, "expr": ds.labels["expr"], "au": ds.labels["au"], "va": ds.labels["va"],
                "video_ids": np.asarray(ds.video_ids, dtype=np.int64),
                "frame_numbers": np.asarray(ds.frame_numbers, dtype=np.int64)})
            subsets[key] = {"frames": len(ds), "videos": list(ds.videos), "stats": ds.stats,
                            "dataset_name": ds.dataset_name, "synthetic": bool(ds.synthetic),
                            "source": ds.source, "layout": ds.layout,
                            "split_videos": list(getattr(ds, "split_videos", []) or [])}
            videos_by_split[split].update(ds.videos)  # every folder the reader lists, with frames kept or not
        for key, reason in unavailable.get(split, {}).items():
            subsets[key] = {"error": reason}
        shards = []
        for k in range(-(-len(plan["names"]) // shard_frames)):
            side = json.loads(_shard_path(out / split, k).with_suffix(".json").read_text())
            shards.append({"file": _shard_path(out / split, k).name, **side})
        manifest_splits[split] = {"frames": len(plan["names"]), "shard_frames": shard_frames, "shards": shards,
                                  "plan_digest": plan["digest"], "subsets": subsets}
    manifest = {
        "format": FORMAT, "version": VERSION, "size": size, "layout": "NCHW uint8", "tasks": list(tasks),
        "load_options": options, "built_from": str(root.resolve()),
        "images_dir": _rel(lay.images_dir, root),
        "fingerprint": data_fingerprint(root, options["layout"], videos_by_split, lay.images_dir),
        "splits": manifest_splits,
    }
    write_json_atomic(out / MANIFEST, manifest)
    return BuildSummary(out, {s: len(p["names"]) for s, p in plans.items()}, len(todo), skipped,
                        folder_bytes(out), unavailable)


# ------------------------------------------------------------------ reading

def read_manifest(cache_dir: str | os.PathLike) -> dict[str, Any]:
    cache_dir = Path(cache_dir)
    path = cache_dir / MANIFEST
    if not path.is_file():
        if cache_dir.is_dir() and any((d / "plan.json").is_file() for d in cache_dir.iterdir() if d.is_dir()):
            raise FrameCacheError(f"frame cache {cache_dir} is incomplete (its build was interrupted); rerun "
                                  "python -m affectmodel cache ROOT --out DIR to finish it")
        raise FrameCacheError(f"no frame cache at {cache_dir} ({MANIFEST} not found); build one with "
                              "python -m affectmodel cache ROOT --out DIR")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise FrameCacheError(f"{path}: not valid JSON ({e}); rebuild the cache") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise FrameCacheError(f"{path}: not a frame cache manifest")
    if manifest.get("version") != VERSION:
        raise FrameCacheError(f"{path}: frame cache format version {manifest.get('version')}, this version of "
                              f"affectmodel reads {VERSION}; rebuild the cache")
    return manifest


def check_fingerprint(cache_dir: str | os.PathLike, root: str | os.PathLike,
                      manifest: dict[str, Any] | None = None, splits: Sequence[str] | None = None) -> None:
    """Raise :class:`FrameCacheError` (one line, naming the change) when the data at ``root`` is
    not what the cache was built from."""
    manifest = manifest or read_manifest(cache_dir)
    old = manifest["fingerprint"]
    splits = list(old["images"]) if splits is None else list(splits)
    videos = {s: [Path(p).name for p in old["images"].get(s, {})] for s in splits}
    try:
        new = data_fingerprint(root, manifest["load_options"]["layout"], videos)
    except FileNotFoundError as e:
        raise FrameCacheError(f"frame cache {cache_dir} cannot be checked against {root}: {e}") from None
    old = {"annotations": old["annotations"], "images": {s: old["images"].get(s, {}) for s in splits}}
    change = _fingerprint_change(old, new)
    if change:
        raise FrameCacheError(f"frame cache {cache_dir} does not match the data at {root}: {change}; rebuild it with "
                              f"python -m affectmodel cache {root} --out {cache_dir}")


def cache_bytes(manifest: Mapping[str, Any], splits: Sequence[str] | None = None) -> int:
    """Bytes of frames the cache holds in ``splits`` (all of them by default)."""
    size = int(manifest["size"])
    chosen = manifest["splits"] if splits is None else [normalise_split(s) for s in splits]
    return sum(int(manifest["splits"][s]["frames"]) for s in chosen if s in manifest["splits"]) * 3 * size * size


def larger_than_memory(cache_dir: str | os.PathLike, splits: Sequence[str] | None = None,
                       available: int | None = None) -> str | None:
    """A warning when the frames of ``splits`` exceed the memory available (Linux ``MemAvailable``):
    training then reads them from the disk at random, at the disk's speed. None when they fit or
    when the available memory is unknown."""
    from ..runtime import available_memory_bytes

    available = available_memory_bytes() if available is None else available
    need = cache_bytes(read_manifest(cache_dir), splits)
    if available is None or need <= available:
        return None
    return (f"frame cache {cache_dir} holds {need / 1e9:.1f} GB of frames, more than the {available / 1e9:.1f} GB of "
            "memory available: training will read frames from the disk at random, at its speed; keep the cache on a "
            "local NVMe drive, not network storage (python -m affectmodel cache ROOT --out /local/nvme/DIR, then "
            "--cache DIR; docs/TRAINING.md)")


# Random-access hints: frames are read in shuffled order, so the kernel's readahead around each
# fault would read (and cache) neighbours that are not needed; instead each batch asks for exactly
# its frames' bytes at once (MADV_WILLNEED), which a local NVMe drive serves in parallel.
_MADV_RANDOM = getattr(mmap, "MADV_RANDOM", None)
_MADV_WILLNEED = getattr(mmap, "MADV_WILLNEED", None)


class _Shards:
    """The memory-mapped shards of one split, opened lazily in each process (DataLoader workers)."""

    def __init__(self, folder: Path, shards: list[dict[str, Any]], shard_frames: int, size: int):
        self.folder, self.shard_info, self.shard_frames, self.size = folder, shards, shard_frames, size
        self._maps: list[np.ndarray] | None = None
        self._mmaps: list[tuple[mmap.mmap, int]] = []  # (map, byte offset of the frames) per shard

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_maps": None, "_mmaps": []}  # memory maps are reopened, not pickled

    def check(self) -> None:
        for info in self.shard_info:
            check_shard(self.folder / info["file"], int(info["frames"]), self.size)

    def _open(self, path: Path, frames: int) -> np.ndarray:
        """A read-only (frames, 3, S, S) view of a shard's memory map, advised for random access."""
        _, _, offset = _read_npy_header(path)
        with open(path, "rb") as f:
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        if _MADV_RANDOM is not None:
            mapped.madvise(_MADV_RANDOM)
        self._mmaps.append((mapped, offset))
        return np.frombuffer(mapped, dtype=np.uint8, count=frames * 3 * self.size * self.size,
                             offset=offset).reshape(frames, 3, self.size, self.size)

    @property
    def maps(self) -> list[np.ndarray]:
        if self._maps is None:
            self._mmaps = []
            self._maps = [self._open(self.folder / info["file"], int(info["frames"])) for info in self.shard_info]
        return self._maps

    def _prefetch(self, k: int, offsets: np.ndarray) -> None:
        """Ask the kernel for the bytes of these frames (sorted) of shard ``k`` at once, one range
        per run of consecutive frames: the reads overlap instead of one page fault at a time."""
        if _MADV_WILLNEED is None or not len(offsets):
            return
        mapped, start = self._mmaps[k]
        frame = 3 * self.size * self.size
        cuts = np.flatnonzero(np.diff(offsets) != 1) + 1
        for run in np.split(offsets, cuts):
            begin = start + int(run[0]) * frame
            aligned = begin - begin % mmap.PAGESIZE
            mapped.madvise(_MADV_WILLNEED, aligned, begin - aligned + len(run) * frame)

    def read(self, rows: np.ndarray) -> np.ndarray:
        """uint8 (len(rows), 3, S, S): one fancy-indexed copy per shard touched, not one call per frame."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), 3, self.size, self.size), dtype=np.uint8)
        if not len(rows):
            return out
        shard = rows // self.shard_frames
        order = np.argsort(rows, kind="stable")
        cuts = np.flatnonzero(np.diff(shard[order])) + 1
        maps = self.maps
        groups = [(int(shard[group[0]]), group) for group in np.split(order, cuts)]
        for k, group in groups:
            self._prefetch(k, rows[group] - k * self.shard_frames)
        for k, group in groups:
            offsets = rows[group] - k * self.shard_frames
            if len(offsets) > 1 and offsets[-1] - offsets[0] == len(offsets) - 1:
                out[group] = maps[k][offsets[0]:offsets[-1] + 1]  # a sorted contiguous run: one slice
            else:
                out[group] = maps[k][offsets]
        return out


class FrameCacheDataset(AffWild2Dataset):
    """One split of a frame cache, with the interface of :class:`AffWild2Dataset` (labels, videos,
    video_ids, frame_numbers, stats, subset(), class statistics...).

    ``dataset[i]`` gives what the JPEG path gives: ``(transform(frame as PIL image), targets)``;
    the transform defaults to plain preprocessing. The fast path reads whole batches:
    :meth:`read_batch` (uint8 (B, 3, S, S)) and :meth:`batch_targets`, or :class:`CachedBatches`
    for a ``DataLoader``; augment the uint8 batch with
    :class:`affectmodel.data.batch_augment.BatchAugment` on the training device.
    """

    _rows: np.ndarray  # shard row of each sample; set by open_frame_cache
    _shards: _Shards

    def __getitem__(self, index: int):
        frame = self._shards.read(self._rows[[index]])[0]
        image = Image.fromarray(np.ascontiguousarray(frame.transpose(1, 2, 0)))
        return self.transform(image), self.targets(index)  # type: ignore[misc]

    def read_batch(self, indices: Sequence[int] | np.ndarray) -> torch.Tensor:
        """uint8 images (B, 3, S, S) of many samples in one read."""
        return torch.from_numpy(self._shards.read(self._rows[np.asarray(indices, dtype=np.int64)]))

    def batch_targets(self, indices: Sequence[int] | np.ndarray) -> dict[str, torch.Tensor]:
        """{"expr": int64 (B,), "au": float32 (B, 12), "va": float32 (B, 2)} of many samples."""
        idx = np.asarray(indices, dtype=np.int64)
        return {"expr": torch.from_numpy(self.labels["expr"][idx].astype(np.int64)),
                "au": torch.from_numpy(self.labels["au"][idx].astype(np.float32)),
                "va": torch.from_numpy(self.labels["va"][idx].astype(np.float32))}

    @property
    def image_size(self) -> int:
        return self._shards.size

    def _copy_with(self, idx: np.ndarray) -> FrameCacheDataset:
        new = copy.copy(self)
        new.labels = {k: v[idx] for k, v in self.labels.items()}
        new.video_ids = self.video_ids[idx]
        new.frame_numbers = self.frame_numbers[idx]
        new._rows = self._rows[idx]
        paths = self.image_paths
        assert isinstance(paths, _ImagePaths)  # open_frame_cache gives every FrameCacheDataset lazy paths
        new.image_paths = _ImagePaths(paths.names, paths.base, new._rows)
        return new


class _ImagePaths(Sequence):
    """``dataset.image_paths`` without building a Path per frame up front: the original image of
    each sample (where the data was when the cache was built, or ``root`` when given)."""

    def __init__(self, names: _LazyNames, base: Path, rows: np.ndarray):
        self.names, self.base, self.rows = names, base, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self.base / self.names[int(self.rows[i])]


class _LazyNames:
    """frames.npz "names", read on first use."""

    def __init__(self, path: Path):
        self.path = path
        self._names: np.ndarray | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "_names": None}  # DataLoader workers read the file again if they need it

    def __getitem__(self, row: int) -> str:
        names = self._names
        if names is None:
            with np.load(self.path, allow_pickle=False) as z:
                names = self._names = z["names"]
        return bytes(names[row]).decode("utf-8", "surrogateescape")


class CachedBatches(torch.utils.data.Dataset):
    """A :class:`FrameCacheDataset` read a whole batch at a time by a ``DataLoader``::

        DataLoader(CachedBatches(dataset), batch_size=B, sampler=..., num_workers=N,
                   collate_fn=passthrough_collate, pin_memory=True)

    yields ``(uint8 images (B, 3, S, S), {"expr", "au", "va"} batched, positions (B,))``: the
    DataLoader hands each batch's positions to ``__getitems__`` at once, so a worker does one
    fancy-indexed copy per shard touched, not one Python call per frame. ``indices`` (optional)
    maps positions to dataset rows (a training subset).
    """

    def __init__(self, dataset: FrameCacheDataset, indices: Sequence[int] | np.ndarray | None = None):
        self.dataset = dataset
        self.indices = None if indices is None else np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.dataset) if self.indices is None else len(self.indices)

    def __getitem__(self, position: int):
        return self.__getitems__([position])

    def __getitems__(self, positions: Sequence[int] | np.ndarray
                     ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        pos = np.asarray(positions, dtype=np.int64)
        rows = pos if self.indices is None else self.indices[pos]
        return self.dataset.read_batch(rows), self.dataset.batch_targets(rows), torch.from_numpy(pos)


def passthrough_collate(batch):
    """``collate_fn`` for a DataLoader over :class:`CachedBatches`: each item is already a batch."""
    return batch


def open_frame_cache(cache_dir: str | os.PathLike, split: str = "train", tasks: Sequence[str] | str = TASK_KEYS,
                     root: str | os.PathLike | None = None, transform: Transform | None = None,
                     check_shards: bool = True, **load_options: Any) -> FrameCacheDataset:
    """One split of the cache at ``cache_dir`` as a data set with the same frames, labels, videos
    and order as ``load_affwild2(root, split, tasks, **load_options)``.

    ``transform`` (per item, ``dataset[i]``) defaults to plain preprocessing at the cache's size.
    ``root``: the data folder; when given, the cache is checked against its annotations and image
    listings and refused (:class:`FrameCacheError`) if they changed. ``load_options`` (``source``,
    ``layout``, ``expression_space``) must be those the cache was built with. ``check_shards``
    checks each shard's header and size (cheap); :func:`verify_frame_cache` checks their contents.
    """
    cache_dir = Path(cache_dir)
    manifest = read_manifest(cache_dir)
    split = normalise_split(split)
    if split not in manifest["splits"]:
        raise FrameCacheError(f"frame cache {cache_dir} holds no {split} split (it has "
                              f"{', '.join(manifest['splits'])}); rebuild with --splits including {split}")
    tasks = parse_tasks(tasks)
    missing = [t for t in tasks if t not in manifest["tasks"]]
    if missing:
        rebuild_tasks = ",".join(parse_tasks([*manifest["tasks"], *missing]))
        raise FrameCacheError(f"frame cache {cache_dir} was built for tasks {','.join(manifest['tasks'])}, not "
                              f"{','.join(missing)}; rebuild with --tasks {rebuild_tasks}")
    built = manifest["load_options"]
    for key, value in load_options.items():
        if key not in LOAD_OPTION_DEFAULTS:
            raise TypeError(f"open_frame_cache() got an unexpected option {key!r}")
        if value is None:
            continue
        if key == "expression_space":
            value = get_label_space(value).name
        if value != built[key]:
            raise FrameCacheError(f"frame cache {cache_dir} was built with {key}={built[key]!r}, not {value!r}; "
                                  f"rebuild it with --{key.replace('_', '-')} {value}")
    if root is not None:
        check_fingerprint(cache_dir, root, manifest, [split])
    info = manifest["splits"][split]
    key = subset_key(tasks)
    meta = info["subsets"].get(key)
    if meta is None or "error" in meta:
        raise FileNotFoundError(meta["error"] if meta else f"frame cache {cache_dir} has no index for tasks {key}")
    shards = _Shards(cache_dir / split, info["shards"], int(info["shard_frames"]), int(manifest["size"]))
    if check_shards:
        shards.check()
    try:
        with np.load(cache_dir / split / f"index-{key}.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in ("rows", "expr", "au", "va", "video_ids", "frame_numbers")}
    except (OSError, ValueError, KeyError) as e:
        raise FrameCacheError(f"frame cache index {cache_dir / split / f'index-{key}.npz'} is unreadable ({e}); "
                              "rebuild the cache") from None
    if len(arrays["rows"]) != meta["frames"] or (len(arrays["rows"]) and arrays["rows"].max() >= info["frames"]):
        raise FrameCacheError(f"frame cache index {cache_dir / split / f'index-{key}.npz'} does not fit its shards; "
                              "rebuild the cache")
    data_root = Path(root) if root is not None else Path(manifest["built_from"])
    if transform is None:
        from ..model import ModelConfig
        from .transforms import build_transform
        # plain preprocessing at the cache's own size (the JPEG path's default resizes to 112 px)
        config = ModelConfig(expression_space=built["expression_space"], input_size=int(manifest["size"]))
        transform = build_transform("none", config, False)
    ds = FrameCacheDataset(
        # a lazy Sequence[Path] where ImageLabelDataset declares list[Path] (only indexed and iterated)
        image_paths=_ImagePaths(
            _LazyNames(cache_dir / split / "frames.npz"), data_root, arrays["rows"]),
        labels={"expr": arrays["expr"], "au": arrays["au"], "va": arrays["va"]}, tasks=tasks, transform=transform,
        expression_space=built["expression_space"], dataset_name=meta["dataset_name"], synthetic=meta["synthetic"],
        root=data_root, stats=meta["stats"], split=split, source=meta["source"], layout=meta["layout"],
        videos=list(meta["videos"]), video_ids=arrays["video_ids"], frame_numbers=arrays["frame_numbers"])
    if hasattr(ds, "split_videos"):
        ds.split_videos = list(meta.get("split_videos", []))
    ds._rows = arrays["rows"]
    ds._shards = shards
    return ds


def verify_frame_cache(cache_dir: str | os.PathLike, progress: bool = False) -> int:
    """Check every shard's size and CRC-32 against the manifest; returns the frames checked."""
    cache_dir = Path(cache_dir)
    manifest = read_manifest(cache_dir)
    frames = 0
    items = [(split, s) for split, info in manifest["splits"].items() for s in info["shards"]]
    for split, s in progress_iter(items, "verifying", "shard", enabled=progress):
        path = cache_dir / split / s["file"]
        check_shard(path, int(s["frames"]), int(manifest["size"]))
        if _shard_crc(path) != s["crc32"]:
            raise FrameCacheError(f"frame cache shard {path} is corrupt (its CRC-32 differs from the manifest); "
                                  "delete it and rerun python -m affectmodel cache ROOT --out DIR to rewrite it")
        frames += int(s["frames"])
    return frames


__all__ = ["BuildSummary", "CachedBatches", "FrameCacheDataset", "FrameCacheError", "build_frame_cache",
           "cache_bytes", "check_fingerprint", "decode_frame", "default_cache_dir", "find_frame_cache",
           "larger_than_memory", "open_frame_cache", "passthrough_collate", "verify_frame_cache"]
