"""Training throughput: images per second of the REAL training loop (``affectmodel.training.train_run``
on the synthetic benchmark: JPEG decoding, augmentation, seeded samples, masked losses, AdamW,
scheduler, bookkeeping) against a bare torchvision ResNet-18 training step on random tensors of the
same size and batch, for a uni-task (expression) and the multi-task run, each read from the JPEGs
(``cache="none"``) and from the frame cache (``python -m affectmodel cache``: uint8 batches read
at once, augmented on the training device).

Steps are timed from the end of the first step to the end of the last (the loop reports each step
through its ``progress`` callback), so both sides exclude the one-off first step. Target: the loop
within 1.15x of the bare step, i.e. data loading and bookkeeping are not the bottleneck.
"""
from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision

from .common import CACHE_DIR, FamilyResult, Row, check_mode, profile_top, ratios

PARAMS = {
    "full": {"size": 112, "batch": 32, "steps": 6, "repeats": 3, "videos": 20, "frames": 40},
    "quick": {"size": 112, "batch": 16, "steps": 3, "repeats": 2, "videos": 12, "frames": 20},
    "tiny": {"size": 32, "batch": 4, "steps": 2, "repeats": 1, "videos": 8, "frames": 6},
}
TARGET_SLOWDOWN = 1.15


def synthetic_data(videos: int, frames: int, size: int) -> Path:
    """The synthetic benchmark at ``size`` px with its frame cache next to it (both kept between
    runs; generation is deterministic)."""
    from affectmodel.data.cache import build_frame_cache, find_frame_cache
    from affectmodel.data.synthetic import generate_benchmark, read_marker

    root = CACHE_DIR / f"synth_{videos}x{frames}_{size}px"
    if read_marker(root) is None:
        generate_benchmark(root, videos=videos, frames=frames, size=size, overwrite=True, progress=False)
    if find_frame_cache(root, size) is None:
        build_frame_cache(root, size=size, progress=False)
    return root


@contextlib.contextmanager
def _quiet():
    """Hide the loop's progress bars and epoch lines (tqdm resolves its file when a bar starts)."""
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        yield


def loop_images_per_second(data: Path, tasks: list[str], size: int, batch: int, steps: int,
                           cache: str = "none") -> float:
    """One short training run (``steps`` + 1 steps); images/s over all steps but the first.
    ``cache``: "none" reads the JPEGs, "" the frame cache next to the data."""
    from affectmodel.training import TrainConfig, train_run

    stamps: list[float] = []

    def progress(_fraction: float, message: str) -> None:
        if " step " in message:  # one call per optimizer step (others: epoch summaries)
            stamps.append(time.perf_counter())

    out = Path(tempfile.mkdtemp(prefix="bench-train-"))
    config = TrainConfig(data=str(data), out=str(out / "run"), tasks=tasks, image_size=size, batch_size=batch,
                         epochs=1, max_steps=steps + 1, limit_val=batch, augment="light", seed=0, cache=cache,
                         dev_fraction=0)
    try:
        with _quiet():
            train_run(config, progress=progress)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    if len(stamps) < steps + 1:
        raise RuntimeError(f"the training set is too small for {steps + 1} steps of {batch} images")
    return batch * steps / (stamps[steps] - stamps[0])


def bare_images_per_second(size: int, batch: int, steps: int) -> float:
    """torchvision ResNet-18 + cross-entropy + AdamW on random tensors; same timing as the loop."""
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None, num_classes=8).train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    images = torch.randn(batch, 3, size, size)
    labels = torch.randint(0, 8, (batch,))
    stamps = []
    for _ in range(steps + 1):
        loss = F.cross_entropy(net(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        stamps.append(time.perf_counter())
    return batch * steps / (stamps[steps] - stamps[0])


def run(mode: str = "full") -> FamilyResult:
    p = PARAMS[check_mode(mode)]
    started = time.perf_counter()
    size, batch, steps = p["size"], p["batch"], p["steps"]
    data = synthetic_data(p["videos"], p["frames"], size)
    variants = {
        "bare": lambda: bare_images_per_second(size, batch, steps),
        "uni": lambda: loop_images_per_second(data, ["expr"], size, batch, steps),
        "multi": lambda: loop_images_per_second(data, ["expr", "au", "va"], size, batch, steps),
        "uni_cache": lambda: loop_images_per_second(data, ["expr"], size, batch, steps, cache=""),
        "multi_cache": lambda: loop_images_per_second(data, ["expr", "au", "va"], size, batch, steps, cache=""),
    }
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(p["repeats"]):  # interleaved rounds: a busy neighbour slows all three alike
        for name, fn in variants.items():
            rates[name].append(fn())
    rows = [
        Row(f"bare ResNet-18 step, random tensors, {size} px, batch {batch}", rates["bare"], "img/s"),
        Row("training loop, uni-task (expression)", rates["uni"], "img/s"),
        Row("training loop, multi-task", rates["multi"], "img/s"),
        Row("bare / loop, uni-task", ratios(rates["bare"], rates["uni"]), "x", ("<=", TARGET_SLOWDOWN)),
        Row("bare / loop, multi-task", ratios(rates["bare"], rates["multi"]), "x", ("<=", TARGET_SLOWDOWN)),
        Row("training loop from the frame cache, uni-task", rates["uni_cache"], "img/s"),
        Row("training loop from the frame cache, multi-task", rates["multi_cache"], "img/s"),
        Row("bare / loop, uni-task, frame cache", ratios(rates["bare"], rates["uni_cache"]), "x",
            ("<=", TARGET_SLOWDOWN)),
        Row("bare / loop, multi-task, frame cache", ratios(rates["bare"], rates["multi_cache"]), "x",
            ("<=", TARGET_SLOWDOWN)),
    ]
    notes = [f"Synthetic benchmark ({p['videos']} videos x {p['frames']} frames at {size} px), light augmentation, "
             f"{steps} timed steps after one untimed step per run; loader workers 0 (the CPU default). "
             "Frame-cache rows: uint8 batches from the cache, light augmentation on whole batches."]
    if mode != "tiny" and any(r.met is False for r in rows):
        notes.append("Profile of one multi-task training run, top entries by own time:\n\n```\n"
                     f"{profile_top(variants['multi'])}\n```")
    return FamilyResult("training_throughput", "Training: the real loop vs a bare ResNet-18 step", rows,
                        params={**p, "torch_threads": torch.get_num_threads()}, notes=notes,
                        seconds=time.perf_counter() - started)
