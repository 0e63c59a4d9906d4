"""Loader throughput on one core: today's JPEG path against the frame cache, for each augmentation preset.

* JPEG path: ``load_affwild2(..., transform=build_transform(preset, config, True))``, one image at a
  time (decode, augment, normalise) and collated into batches, as a DataLoader worker does it.
* Frame cache, loader work: ``CachedBatches.__getitems__`` (what a DataLoader worker calls) on shuffled batches — one fancy-indexed
  copy of uint8 frames out of the memory-mapped shards plus the labels. This is all the loader does
  per batch with any preset: augmentation runs on the training device
  (:class:`affectmodel.data.batch_augment.BatchAugment`).
* Frame cache + batch augmentation on the same core: the above plus ``BatchAugment(preset)`` on the
  CPU, i.e. what a CPU-only run pays per image.

Everything runs single-threaded (``torch.set_num_threads(1)``), the variants interleaved round-robin.
Images are the synthetic benchmark's 112 px JPEGs (as Aff-Wild2's cropped_aligned); target: the
loader from the cache >= 5,000 images/s per core for every preset.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import default_collate

from .common import CACHE_DIR, FamilyResult, Row, check_mode, interleaved, ratios
from .training_throughput import synthetic_data

PARAMS = {
    "full": {"size": 112, "videos": 20, "frames": 100, "batch": 256, "jpeg_images": 512, "cache_images": 4096,
             "repeats": 5},
    "quick": {"size": 112, "videos": 8, "frames": 40, "batch": 64, "jpeg_images": 128, "cache_images": 512,
              "repeats": 2},
    "tiny": {"size": 32, "videos": 4, "frames": 10, "batch": 8, "jpeg_images": 16, "cache_images": 16, "repeats": 1},
}
PRESETS = ("none", "light", "strong")
TARGET_IMAGES_PER_S = 5000.0


def frame_cache(data: Path, size: int) -> Path:
    """The frame cache of ``data`` (built once; a finished cache is reused as is)."""
    from affectmodel.data.cache import build_frame_cache, find_frame_cache

    found = find_frame_cache(data, size)
    if found is not None:
        return found
    out = CACHE_DIR / f"{data.name}_cache_{size}px"
    if not (out / "manifest.json").is_file():
        build_frame_cache(data, out, size=size, splits=["train"], progress=False, workers=1)
    return out


class _Batches:
    """Shuffled batches of indices, drawn on and on (a new permutation when one runs out)."""

    def __init__(self, n: int, batch: int, seed: int):
        self.n, self.batch, self.rng, self.pool = n, batch, np.random.default_rng(seed), np.zeros(0, dtype=np.int64)

    def next(self) -> np.ndarray:
        while len(self.pool) < self.batch:
            self.pool = np.concatenate([self.pool, self.rng.permutation(self.n)])
        out, self.pool = self.pool[: self.batch], self.pool[self.batch:]
        return out


def run(mode: str = "full") -> FamilyResult:
    from affectmodel.data.affwild2 import load_affwild2
    from affectmodel.data.batch_augment import BatchAugment, batch_generator
    from affectmodel.data.cache import CachedBatches, open_frame_cache
    from affectmodel.data.transforms import build_transform
    from affectmodel.model import ModelConfig

    p = PARAMS[check_mode(mode)]
    started = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        size, batch = p["size"], p["batch"]
        data = synthetic_data(p["videos"], p["frames"], size)
        cache = frame_cache(data, size)
        config = ModelConfig(input_size=size)
        cached = open_frame_cache(cache, "train", root=data)
        batches = CachedBatches(cached)
        jpeg = {preset: load_affwild2(data, "train", transform=build_transform(preset, config, True))
                for preset in PRESETS}
        augment = {preset: BatchAugment(preset, config) for preset in PRESETS}
        n = len(cached)
        jpeg_batches, cache_batches = _Batches(n, batch, 0), _Batches(n, batch, 1)
        step = {"n": 0}

        def jpeg_path(preset: str):
            def fn():
                left = p["jpeg_images"]
                while left > 0:
                    idx = jpeg_batches.next()[:left]
                    default_collate([jpeg[preset][int(i)] for i in idx])
                    left -= len(idx)
            return fn

        def cache_read():
            for _ in range(p["cache_images"] // batch):
                batches.__getitems__(cache_batches.next())

        def cache_augmented(preset: str):
            def fn():
                for _ in range(p["cache_images"] // batch):
                    images, _targets, _idx = batches.__getitems__(cache_batches.next())
                    step["n"] += 1
                    augment[preset](images, batch_generator(0, 0, step["n"]))
            return fn

        variants = {"cache_read": cache_read}
        for preset in PRESETS:
            variants[f"jpeg_{preset}"] = jpeg_path(preset)
            variants[f"cache_aug_{preset}"] = cache_augmented(preset)
        seconds = interleaved(variants, repeats=p["repeats"], warmup=1)
    finally:
        torch.set_num_threads(threads)

    per_s = {name: [(p["jpeg_images"] if name.startswith("jpeg") else (p["cache_images"] // batch) * batch) / t
                    for t in ts] for name, ts in seconds.items()}
    rows = [Row(f"frame cache: loader work per batch (read + labels), any preset, {size} px",
                per_s["cache_read"], "img/s", (">=", TARGET_IMAGES_PER_S),
                note="augmentation on the training device")]
    for preset in PRESETS:
        rows.append(Row(f"{preset}: JPEG path (decode + per-image preset)", per_s[f"jpeg_{preset}"], "img/s"))
        rows.append(Row(f"{preset}: frame cache + batch augmentation on this core", per_s[f"cache_aug_{preset}"],
                        "img/s", note="a CPU-only run"))
        rows.append(Row(f"{preset}: loader speed-up, cache / JPEG path",
                        ratios(per_s["cache_read"], per_s[f"jpeg_{preset}"]), "x"))
    notes = [(f"One core (torch.set_num_threads(1)); synthetic benchmark, {n} training frames at {size} px "
             f"(the frame cache built once with `python -m affectmodel cache`); shuffled batches of {batch}; "
             f"JPEG path {p['jpeg_images']} and cache {p['cache_images'] // batch * batch} images per run. The loader "
             "from the cache does the same work for every preset: it copies uint8 frames and labels, and the "
             "preset runs on the training device (`BatchAugment`).")]
    return FamilyResult("loader_throughput", "Loader: JPEG path vs frame cache, per preset, one core", rows,
                        params={**p, "frames_cached": n, "torch_threads": 1}, notes=notes,
                        seconds=time.perf_counter() - started)


if __name__ == "__main__":  # python -m benchmarks.loader_throughput [full|quick|tiny]: print, write nothing
    import sys

    from .common import fmt

    result = run(sys.argv[1] if len(sys.argv) > 1 else "quick")
    for row in result.rows:
        print(f"{row.name:<75} {fmt(row.median):>10} {row.unit:<6} {row.target_text():>12} "
              f"{'' if row.met is None else ('met' if row.met else 'NOT met')}")
