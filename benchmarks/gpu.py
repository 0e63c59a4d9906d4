#!/usr/bin/env python
"""The GPU check: one command that measures the CUDA training path in steady state and says whether it works.

    python benchmarks/gpu.py --out benchmarks/gpu_results          # on a CUDA machine (about 5 minutes on one GPU)
    python benchmarks/gpu.py --smoke --out /tmp/gpu-smoke           # CPU check of this script (gloo)

It builds its own synthetic data (112 px) and the frame cache next to it, then measures:

1. the bare training step (model + losses + AdamW on random tensors already on the GPU, bf16 autocast
   where the GPU computes bf16 natively, else fp16; channels_last), uni- and multi-task, and the bare
   forward pass in evaluation (for the study estimate): images/s, peak memory, host syncs per step;
2. the training loop (``affectmodel.training.run_training``, what ``train.py`` runs) in steady state:
   the training set is repeated so that the warm-up and timed steps stay inside one pass (no epoch
   end, no evaluation, no checkpoint among them), from the frame cache and from the JPEGs, uni- and
   multi-task: images/s over the timed steps, the share of them spent waiting for data, peak memory;
3. an fp16 + GradScaler leg (the loop, multi-task, with fp16 forced even where bf16 is native) and
   the fp16 bare step's host syncs (the scaler's own read only);
4. a SyncBatchNorm leg: the bare step in a one-process group with plain BatchNorm, affectmodel's
   SyncBatchNorm and (on CUDA) torch's, with host syncs per step; with 2+ GPUs also a DDP run with
   ``--sync-bn``;
5. DDP on all visible GPUs (NCCL, ``torchrun``) at the same per-GPU batch: images/s and scaling
   efficiency against the one-GPU loop of step 2 (with one GPU: skipped, said so);
6. a DDP resume: a run on all GPUs (one process with one GPU) interrupted after a checkpoint, then
   resumed to the end;
7. ``torch.compile`` of the multi-task step against eager (GPU only; informational: train.py does
   not offer it until this says it is worth it);
8. a short fit (several epochs, multi-task): the training loss must fall;

and, from these figures, the expected wall time of ``suites/study.toml`` on one node of 8 such GPUs
(``train.py suite ... --devices cuda:0,...,cuda:7``), with its assumptions.

Writes ``gpu.json`` and ``gpu.md`` into ``--out``. Exit status: 0 when every check passed (the
runs ran, the loss fell, and on a GPU the throughput checks: the loop from the cache keeps up with
the bare step, the data wait is small, DDP scales, no step syncs more than it must), 1 when a check
failed, 2 without CUDA. ``--smoke`` runs the same legs on CPU at tiny sizes with a 2-process gloo
group (throughput checks not applied), so that tests can check the script.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PARAMS: dict[str, dict[str, Any]] = {
    "full": {"size": 112, "batch": 256, "warmup": 15, "steps": 60, "bare_warmup": 10, "bare_steps": 50,
             "sync_steps": 5, "videos": 24, "frames": 60, "fit_epochs": 6, "fit_batch": 128,
             "resume_steps": 40, "resume_at": 25},
    "smoke": {"size": 32, "batch": 8, "warmup": 1, "steps": 2, "bare_warmup": 1, "bare_steps": 1,
              "sync_steps": 1, "videos": 6, "frames": 8, "fit_epochs": 4, "fit_batch": 16,
              "resume_steps": 6, "resume_at": 3},
}
UNI, MULTI = ["expr"], ["expr", "au", "va"]
NO_CUDA = ("error: benchmarks/gpu.py measures the CUDA training path, and no CUDA GPU is visible "
           "(torch.cuda.is_available() is False); run it on a GPU machine, or with --smoke for a CPU check "
           "of the script itself")
# Throughput checks (a GPU run only): what the code is meant to achieve, not a figure of any GPU.
LOOP_OF_BARE_MIN = 0.8          # the loop from the frame cache keeps up with the bare step
CACHE_DATA_WAIT_MAX = 0.1       # ... and waits for data at most this share of the timed steps
SCALING_EFFICIENCY_MIN = 0.8    # DDP on N GPUs: at least 80 % of N x one GPU at the same per-GPU batch

# Assumptions of the study estimate (printed with it; benchmarks/RESULTS.md states them).
STUDY_SUITE = ROOT / "suites" / "study.toml"
STUDY_GPUS = 8
# Aff-Wild2 training frames per task (docs: shared DESIGN.md §9); a multi-task run trains on the
# union of the labelled frames. Development split: 10 % of the training videos (dev_fraction).
TRAIN_FRAMES = {"expr": 0.6e6, "au": 1.3e6, "va": 1.6e6, "multi": 2.2e6}
VALIDATION_FRAMES = {"expr": 0.28e6, "au": 0.44e6, "va": 0.38e6, "multi": 0.6e6}
CHECKPOINT_S = 2.0              # one checkpoint (~134 MB, written and fsynced)
STARTUP_S = 90.0                # per run: reading the annotations, checking the cache, starting workers


def _device_type(device: str) -> str:
    return device.split(":")[0]


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def reset_peak_memory(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def peak_memory_mb(device: str) -> dict[str, Any]:
    """Peak memory since the last reset: ``torch.cuda.max_memory_allocated`` on a GPU; on CPU the
    process's peak resident set (it never resets: an upper bound for the leg)."""
    import torch

    if device.startswith("cuda"):
        return {"peak_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1),
                "memory": "torch.cuda.max_memory_allocated"}
    import resource

    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    return {"peak_memory_mb": round(rss_kb / 1024, 1), "memory": "peak RSS of the process (CPU)"}


def build_data(work: Path, p: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """Synthetic benchmark + frame cache next to it; how long each took and the cache's size."""
    from affectmodel.data.cache import build_frame_cache, find_frame_cache, folder_bytes
    from affectmodel.data.synthetic import generate_benchmark, read_marker

    data = work / f"synthetic_{p['videos']}x{p['frames']}_{p['size']}px"
    facts: dict[str, Any] = {}
    start = time.perf_counter()
    if read_marker(data) is None:
        generate_benchmark(data, videos=p["videos"], frames=p["frames"], size=p["size"], overwrite=True,
                           progress=False)
    facts["generate_s"] = round(time.perf_counter() - start, 2)
    start = time.perf_counter()
    if find_frame_cache(data, p["size"]) is None:
        build_frame_cache(data, size=p["size"], workers=min(8, os.cpu_count() or 1), progress=False)
    cache = find_frame_cache(data, p["size"])
    facts["cache_build_s"] = round(time.perf_counter() - start, 2)
    facts["cache_bytes"] = folder_bytes(cache) if cache else None
    return data, facts


# ------------------------------------------------------------------ host syncs

@contextlib.contextmanager
def counting_host_syncs(device: str, optimizer: Any = None) -> Iterator[dict[str, int]]:
    """Counts the host syncs in the block into ``counts["syncs"]``: on CUDA what
    ``torch.cuda.set_sync_debug_mode("warn")`` reports (every real sync); on CPU the operations that
    would sync on CUDA (:class:`affectmodel.training.host_syncs.HostSyncCounter`), leaving out
    ``optimizer.step()``, whose step counter lives on the CPU even in a CUDA run."""
    import torch

    counts = {"syncs": 0}
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                yield counts
            finally:
                torch.cuda.set_sync_debug_mode("default")
        counts["syncs"] = sum("synchroniz" in str(w.message).lower() for w in caught)
        return
    from affectmodel.training.host_syncs import HostSyncCounter

    counter = HostSyncCounter()
    real_step = optimizer.step if optimizer is not None else None
    if optimizer is not None:
        def step(*args: Any, **kwargs: Any) -> Any:
            with counter.paused():
                return real_step(*args, **kwargs)  # type: ignore[misc]
        optimizer.step = step
    try:
        with counter:
            yield counts
    finally:
        if optimizer is not None:
            del optimizer.step  # the bound method again
    counts["syncs"] = counter.total


# ------------------------------------------------------------------ bare step

def _force_torch_sync_bn(model: Any) -> Any:
    """``model`` with torch's own SyncBatchNorm path, forced with one process (its forward falls back
    to plain BatchNorm when the world has one process; the benchmark wants its per-layer host syncs)."""
    import torch
    import torch.distributed as dist
    from torch import nn
    from torch.nn.modules._functions import SyncBatchNorm as torch_sync_batch_norm  # torch's own kernel path

    class Forced(nn.SyncBatchNorm):
        def forward(self, input: torch.Tensor) -> torch.Tensor:
            if not self.training:
                return super().forward(input)
            assert self.num_batches_tracked is not None
            self.num_batches_tracked.add_(1)
            return torch_sync_batch_norm.apply(input, self.weight, self.bias, self.running_mean, self.running_var,
                                               self.eps, self.momentum, dist.group.WORLD, dist.get_world_size())

    model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for layer in model.modules():
        if type(layer) is nn.SyncBatchNorm:
            layer.__class__ = Forced
    return model


def bare_step(tasks: list[str], device: str, p: dict[str, Any], amp: str = "auto", batchnorm: str = "plain",
              forward_only: bool = False) -> dict[str, Any]:
    """Images/s of the training step alone (random inputs already on the device), its peak memory
    and host syncs per step. ``amp``: auto (the trainer's choice) or fp16 (forced, with a GradScaler;
    on CPU: float32 with an enabled scaler, to count its reads). ``batchnorm``: plain, ours
    (affectmodel's SyncBatchNorm) or torch (torch's, forced) — the last two need a process group.
    ``forward_only``: the forward pass in evaluation mode (no gradients), as validation runs it."""
    import torch

    from affectmodel.losses import MultiTaskLoss
    from affectmodel.model import AffectModel, ModelConfig
    from affectmodel.tasks import AU_NAMES
    from affectmodel.training.precision import amp_dtype_for, make_grad_scaler
    from affectmodel.training.step import TrainModule, step_on_device
    from affectmodel.training.sync_batchnorm import convert_sync_batchnorm

    dev = torch.device(device)
    amp_dtype = amp_dtype_for(dev, True)
    if amp == "fp16":
        amp_dtype = torch.float16 if dev.type == "cuda" else None
    torch.manual_seed(0)
    model: Any = AffectModel(ModelConfig(tasks=tasks, input_size=p["size"]))
    if batchnorm == "ours":
        model = convert_sync_batchnorm(model)
    elif batchnorm == "torch":
        model = _force_torch_sync_bn(model)
    module = TrainModule(model, MultiTaskLoss(tasks), amp_dtype).to(dev)
    if dev.type == "cuda":
        module.model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3)
    scaler = make_grad_scaler(dev, amp_dtype)
    if amp == "fp16" and dev.type != "cuda":
        scaler = torch.amp.GradScaler("cpu")  # CPU: fp32 compute, but the scaler's logic and reads
    b, s = p["batch"], p["size"]
    images = torch.randn(b, 3, s, s, device=dev)
    if dev.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)
    targets = {"expr": torch.randint(0, 8, (b,), device=dev),
               "au": torch.randint(0, 2, (b, len(AU_NAMES)), device=dev).float(),
               "va": torch.rand(b, 2, device=dev) * 2 - 1}

    def one() -> None:
        if forward_only:
            with torch.no_grad(), torch.autocast(device_type=dev.type, dtype=amp_dtype or torch.float32,
                                                 enabled=amp_dtype is not None):
                module.model(images)
        else:
            step_on_device(module, images, targets, optimizer, scaler)

    module.train(not forward_only)
    reset_peak_memory(device)
    for _ in range(p["bare_warmup"]):
        one()
    _sync(device)
    start = time.perf_counter()
    for _ in range(p["bare_steps"]):
        one()
    _sync(device)
    seconds = time.perf_counter() - start
    with counting_host_syncs(device, optimizer) as counts:
        for _ in range(p["sync_steps"]):
            one()
    row = {"images_per_s": round(b * p["bare_steps"] / seconds, 1),
           "amp": str(amp_dtype).replace("torch.", "") if amp_dtype else "float32",
           "grad_scaler": bool(scaler.is_enabled()) and not forward_only,
           "host_syncs_per_step": round(counts["syncs"] / p["sync_steps"], 2), **peak_memory_mb(device)}
    return row


def compile_leg(device: str, p: dict[str, Any]) -> dict[str, Any]:
    """``torch.compile`` of the multi-task training module (model + losses), measured before it is
    offered: compile time, img/s of the compiled bare step against eager, graphs compiled, and
    whether one forward and backward give the same loss and gradients as eager from the same
    weights. Informational (not one of the checks); a failure is recorded, not raised."""
    import torch

    from affectmodel.losses import MultiTaskLoss
    from affectmodel.model import AffectModel, ModelConfig
    from affectmodel.tasks import AU_NAMES
    from affectmodel.training.precision import amp_dtype_for, make_grad_scaler
    from affectmodel.training.step import TrainModule, step_on_device

    dev = torch.device(device)
    amp_dtype = amp_dtype_for(dev, True)
    b, s = p["batch"], p["size"]
    torch.manual_seed(0)
    images = torch.randn(b, 3, s, s, device=dev)
    targets = {"expr": torch.randint(0, 8, (b,), device=dev),
               "au": torch.randint(0, 2, (b, len(AU_NAMES)), device=dev).float(),
               "va": torch.rand(b, 2, device=dev) * 2 - 1}
    if dev.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)

    def build() -> Any:
        torch.manual_seed(0)
        module = TrainModule(AffectModel(ModelConfig(tasks=MULTI, input_size=s)), MultiTaskLoss(MULTI), amp_dtype)
        module = module.to(dev)
        if dev.type == "cuda":
            module.model.to(memory_format=torch.channels_last)
        return module

    def gradients(runner: Any, module: Any) -> tuple[float, list[Any]]:
        total, _ = runner(images, targets)
        total.backward()
        grads = [q.grad.detach().clone() for q in module.parameters() if q.grad is not None]
        module.zero_grad(set_to_none=True)
        return float(total), grads

    def speed(runner: Any, module: Any) -> tuple[float, float]:
        optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3)
        scaler = make_grad_scaler(dev, amp_dtype)
        began = time.perf_counter()
        step_on_device(runner, images, targets, optimizer, scaler)  # compiles, for a compiled runner
        _sync(device)
        first_s = time.perf_counter() - began
        for _ in range(p["bare_warmup"]):
            step_on_device(runner, images, targets, optimizer, scaler)
        _sync(device)
        began = time.perf_counter()
        for _ in range(p["bare_steps"]):
            step_on_device(runner, images, targets, optimizer, scaler)
        _sync(device)
        return b * p["bare_steps"] / (time.perf_counter() - began), first_s

    try:
        import torch._dynamo
        from torch._dynamo.utils import counters  # private, but the one count of compiled graphs

        torch._dynamo.reset()
        counters.clear()
        eager, compiled = build(), build()
        runner = torch.compile(compiled)
        began = time.perf_counter()
        compiled_loss, compiled_grads = gradients(runner, compiled)
        compile_s = time.perf_counter() - began
        eager_loss, eager_grads = gradients(eager, eager)
        scale = max(float(g.abs().max()) for g in eager_grads) or 1.0
        grad_difference = max(float((a - c).abs().max()) for a, c in zip(eager_grads, compiled_grads, strict=True))
        eager_ips, _ = speed(eager, eager)
        compiled_ips, _ = speed(runner, compiled)

        return {"eager_images_per_s": round(eager_ips, 1), "compiled_images_per_s": round(compiled_ips, 1),
                "speedup": round(compiled_ips / eager_ips, 3), "compile_s": round(compile_s, 1),
                "loss_difference": abs(eager_loss - compiled_loss),
                "gradient_difference_of_largest": grad_difference / scale,
                "graphs_compiled": int(counters["stats"]["unique_graphs"])}
    except Exception as e:  # noqa: BLE001 - informational leg: the error is the result
        return {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}


@contextlib.contextmanager
def one_process_group(device: str) -> Iterator[None]:
    """A process group of this process alone (NCCL on a GPU, gloo on CPU), for the SyncBatchNorm leg."""
    import torch.distributed as dist

    store = dist.HashStore()
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo", store=store, rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def sync_bn_leg(device: str, p: dict[str, Any]) -> dict[str, Any]:
    """The multi-task bare step with plain BatchNorm, affectmodel's SyncBatchNorm and (CUDA) torch's,
    in a one-process group: what the synchronised statistics cost, and their host syncs per step."""
    variants = ["plain", "ours"] + (["torch"] if device.startswith("cuda") else [])
    with one_process_group(device):
        return {name: bare_step(MULTI, device, p, batchnorm=name) for name in variants}


# ------------------------------------------------------------------ the training loop in steady state

def steady_state_run(values: dict[str, Any], p: dict[str, Any], device: str) -> dict[str, Any]:
    """``run_training`` on the training set repeated so that ``warmup + steps`` steps fit in one
    pass (a one-period ``steps`` budget: no epoch end, evaluation or checkpoint before the last
    step); images/s, data-wait share and peak memory over the timed steps. Under torchrun every
    process calls this; rank 0's figures are returned (others get {})."""
    import numpy as np

    from affectmodel.records import read_run
    from affectmodel.training import distributed as dist_utils
    from affectmodel.training import trainer as trainer_mod
    from affectmodel.training.batches import load_datasets
    from affectmodel.training.config import TrainConfig

    total = p["warmup"] + p["steps"]
    config = TrainConfig(**{"epochs": 1, "steps": total, "eval_every": total, "max_steps": total,
                            "checkpoint_every": 0, "dev_fraction": 0, "augment": "light", "seed": 0,
                            "device": _device_type(device), **values})
    info = dist_utils.setup(config.device)
    train, val, dataset = load_datasets(config, trainer_mod.model_config_for(config))
    need = total * config.batch_size
    repeats = max(1, math.ceil(need / len(train)))
    train = train.subset(np.tile(np.arange(len(train)), repeats))
    waits: list[float] = []
    passes: list[int] = []
    stamps: dict[str, float] = {}
    count = 0
    real_batches, real_pass_loader = trainer_mod.Trainer.batches, trainer_mod.Trainer.pass_loader

    def batches(self: Any, start: int, end: int) -> Iterator[Any]:
        source = real_batches(self, start, end)
        while True:
            began = time.perf_counter()
            try:
                item = next(source)
            except StopIteration:
                return
            waits.append(time.perf_counter() - began)
            yield item

    def pass_loader(self: Any, data_pass: int, skip: int) -> Any:
        passes.append(data_pass)
        return real_pass_loader(self, data_pass, skip)

    def progress(_fraction: float, message: str) -> None:
        nonlocal count
        if " step " not in message:
            return
        count += 1
        if count in (p["warmup"], total):
            _sync(device)  # only at the ends of the timed stretch: the loop itself never waits
            stamps["start" if count == p["warmup"] else "end"] = time.perf_counter()

    trainer_mod.Trainer.batches, trainer_mod.Trainer.pass_loader = batches, pass_loader  # type: ignore[method-assign]
    reset_peak_memory(device)
    try:
        trainer_mod.run_training(config, train, val, dataset, progress=progress, dist_info=info)
    finally:
        trainer_mod.Trainer.batches, trainer_mod.Trainer.pass_loader = real_batches, real_pass_loader  # type: ignore[method-assign]
    if not info.is_main:
        return {}
    if "end" not in stamps:
        raise RuntimeError(f"the run ended before {total} steps")
    seconds = stamps["end"] - stamps["start"]
    timed_waits = waits[p["warmup"]:total]
    record = read_run(config.out)
    return {"images_per_s": round(config.batch_size * p["steps"] / seconds, 1),
            "data_wait_share": round(sum(timed_waits) / seconds, 4), "passes": len(set(passes)),
            "timed_steps": p["steps"], "world_size": info.world_size, "train_frames": len(train),
            "config_id": record.config_id, **peak_memory_mb(device)}


@contextlib.contextmanager
def forced_fp16() -> Iterator[None]:
    """The trainer's precision choice replaced by fp16 + GradScaler (a CPU run: float32 with an
    enabled scaler), for the fp16 leg on a GPU that would pick bf16."""
    import torch

    from affectmodel.training import precision

    real_dtype, real_scaler = precision.amp_dtype_for, precision.make_grad_scaler

    def dtype(device: Any, enabled: bool) -> Any:
        return torch.float16 if device.type == "cuda" and enabled else None

    def scaler(device: Any, amp_dtype: Any) -> Any:
        return torch.amp.GradScaler(device.type, enabled=True)

    precision.amp_dtype_for, precision.make_grad_scaler = dtype, scaler
    try:
        yield
    finally:
        precision.amp_dtype_for, precision.make_grad_scaler = real_dtype, real_scaler


def loop(data: Path, tasks: list[str], cache: str, device: str, p: dict[str, Any], work: Path,
         fp16: bool = False) -> dict[str, Any]:
    out = Path(tempfile.mkdtemp(prefix="run-", dir=work)) / "run"
    values = {"data": str(data), "out": str(out), "tasks": tasks, "image_size": p["size"],
              "batch_size": p["batch"], "limit_val": p["batch"], "cache": cache}
    try:
        with forced_fp16() if fp16 else contextlib.nullcontext():
            return steady_state_run(values, p, device)
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)


# ------------------------------------------------------------------ DDP under torchrun

def gpus_for_ddp(device: str) -> int:
    import torch

    return torch.cuda.device_count() if device.startswith("cuda") else 2


def torchrun(jobs: list[dict[str, Any]], n: int, work: Path, device: str) -> tuple[int, list[dict[str, Any]], str]:
    """Run this script's DDP worker under torchrun with ``n`` processes, doing ``jobs`` one after the
    other in the same processes (one start-up of torchrun and its processes, which costs more than a
    small job itself); (exit status, rank 0's result of each job, {} for a job that did not report,
    last error line)."""
    handle, name = tempfile.mkstemp(prefix="ddp-", suffix=".json", dir=work)
    os.close(handle)
    spec_path = Path(name)
    results = [spec_path.with_suffix(f".out{i}.json") for i in range(len(jobs))]
    spec_path.write_text(json.dumps({"device": device, "jobs": [{**job, "result": str(path)}
                                                                 for job, path in zip(jobs, results, strict=True)]}),
                         encoding="utf-8")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n),
           str(Path(__file__).resolve()), "--ddp-worker", str(spec_path)]
    env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONPATH": str(ROOT)}
    if not device.startswith("cuda"):
        env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    reported = [json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {} for path in results]
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line or line.startswith("error")]
    return proc.returncode, reported, (errors or lines or [f"exit status {proc.returncode}"])[-1]


def _stopping(train_batch: Callable[..., Any], at: int, report: Path | None) -> Callable[..., Any]:
    """``Trainer.train_batch`` that ends the process (exit status 3) when the run reaches step ``at``,
    first writing ``{"stopped_at": step}`` to ``report`` (rank 0): the resume leg checks where it stopped."""
    def stop(self: Any, *args: Any) -> Any:
        if self.state.step == at:
            if report is not None:
                report.write_text(json.dumps({"stopped_at": self.state.step}), encoding="utf-8")
            raise SystemExit(3)
        return train_batch(self, *args)

    return stop


def ddp_worker(spec_path: str) -> int:
    """One torchrun process: its jobs in order, each a steady-state run or the interrupted / resumed
    half of the resume leg (an interrupted half ends the process, so it comes last)."""
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    device = spec["device"]
    from affectmodel.training import distributed as dist_utils
    from affectmodel.training import trainer as trainer_mod
    from affectmodel.training.config import TrainConfig

    rank0 = int(os.environ.get("RANK", "0")) == 0
    for job in spec["jobs"]:
        p, mode = job["params"], job["mode"]
        began = time.perf_counter()
        if mode == "time":
            result = steady_state_run(job["values"], p, device)
        else:
            config = TrainConfig(**job["values"], device=_device_type(device), resume=mode == "resume")
            real_batch = trainer_mod.Trainer.train_batch
            if mode == "interrupt":  # every rank stops after a checkpoint, as a killed job would
                trainer_mod.Trainer.train_batch = _stopping(real_batch, p["resume_at"],  # type: ignore[method-assign]
                                                            Path(job["result"]) if rank0 else None)
            run_dir = trainer_mod.train_run(config)
            trainer_mod.Trainer.train_batch = real_batch  # type: ignore[method-assign]
            result = {}
            if dist_utils.env_world_size() <= 1 or rank0:
                from affectmodel.records import read_run

                record = read_run(run_dir)
                losses = [row.get("train_loss") for row in record.history]
                result = {"steps": record.metrics.get("steps"), "world_size": record.metrics.get("world_size"),
                          "config_id": record.config_id, "train_loss": losses,
                          "finite": all(isinstance(v, (int, float)) and math.isfinite(v) for v in losses)}
        if result and rank0:
            result["wall_s"] = round(time.perf_counter() - began, 1)  # this job's own, without the start-up
            Path(job["result"]).write_text(json.dumps(result), encoding="utf-8")
    dist_utils.cleanup()
    return 0


def ddp_legs(data: Path, device: str, p: dict[str, Any], work: Path, one_gpu: dict[str, Any]) -> dict[str, Any]:
    """Scaling (and SyncBN on GPUs) on every GPU, against the one-GPU loop ``one_gpu`` at the same
    per-GPU batch; the resume leg on every GPU (one process with one GPU). The timed runs and the
    interrupted half of the resume leg share one torchrun launch; the resumed half has its own."""
    n = gpus_for_ddp(device)
    legs: dict[str, Any] = {"processes": n, "backend": "nccl" if device.startswith("cuda") else "gloo"}
    base = {"data": str(data), "tasks": MULTI, "image_size": p["size"], "batch_size": p["batch"] * n,
            "limit_val": p["batch"] * n, "cache": ""}
    timed: list[tuple[str, dict[str, Any]]] = []
    if n < 2:
        legs["scaling"] = {"skipped": f"{n} GPU visible: DDP scaling needs at least 2"}
    else:
        variants = [("scaling", False)] + ([("sync_bn", True)] if device.startswith("cuda") else [])
        for name, sync_bn in variants:
            out = work / f"ddp-{name}"
            shutil.rmtree(out, ignore_errors=True)
            timed.append((name, {"mode": "time", "params": p, "values": {**base, "out": str(out), "sync_bn": sync_bn}}))
    # resume: a run interrupted after a checkpoint, then resumed to its end (SyncBN on CPU gloo too)
    out = work / "ddp-resume"
    shutil.rmtree(out, ignore_errors=True)
    procs = max(1, n)
    values = {"data": str(data), "out": str(out), "tasks": MULTI, "image_size": p["size"],
              "batch_size": p["batch"] * procs, "steps": p["resume_steps"], "eval_every": p["resume_steps"] // 2,
              "checkpoint_every": max(1, p["resume_at"] - 2), "dev_fraction": 0, "limit_val": p["batch"] * procs,
              "sync_bn": procs > 1}
    interrupt = {"mode": "interrupt", "params": p, "values": values}
    first, reported, first_error = torchrun([job for _, job in timed] + [interrupt], procs, work, device)
    for (name, job), result in zip(timed, reported, strict=False):
        shutil.rmtree(job["values"]["out"], ignore_errors=True)
        if not result:
            legs[name] = {"error": first_error}
            continue
        result["scaling_efficiency"] = round(result["images_per_s"] / (n * one_gpu["images_per_s"]), 3)
        legs[name] = result
    stopped = reported[-1]
    if not stopped and not all(reported[:-1]):  # a timed run failed and ended the launch: the interrupted half alone
        shutil.rmtree(out, ignore_errors=True)
        first, (stopped,), first_error = torchrun([interrupt], procs, work, device)
    started = time.perf_counter()
    code, (result,), error = torchrun([{"mode": "resume", "params": p, "values": values}], procs, work, device)
    shutil.rmtree(out, ignore_errors=True)
    # the first half must stop early, where it was meant to (exit status 3 on every rank)
    interrupted = first != 0 and stopped.get("stopped_at") == p["resume_at"]
    legs["resume"] = ({"error": error if code != 0 else f"the first half did not stop ({first_error})"}
                      if code != 0 or not interrupted or not result else
                      {**result, "processes": procs, "interrupted_at": p["resume_at"],
                       "completed": result.get("steps") == p["resume_steps"] and result.get("world_size") == procs,
                       "wall_s": round(time.perf_counter() - started, 1)})
    return legs


# ------------------------------------------------------------------ short fit

def short_fit(data: Path, device: str, p: dict[str, Any], work: Path) -> dict[str, Any]:
    """A few epochs of multi-task training from the cache: the training loss must fall."""
    from affectmodel.records import read_run
    from affectmodel.training import TrainConfig, train_run

    out = work / "fit-run"
    shutil.rmtree(out, ignore_errors=True)
    config = TrainConfig(data=str(data), out=str(out), tasks=MULTI, image_size=p["size"], batch_size=p["fit_batch"],
                         epochs=p["fit_epochs"], lr=1e-3, augment="light", seed=0, dev_fraction=0,
                         device=_device_type(device))
    train_run(config)
    record = read_run(out)
    losses = [float(row["train_loss"]) for row in record.history]
    shutil.rmtree(out, ignore_errors=True)
    return {"epochs": len(losses), "train_loss": [round(v, 4) for v in losses],
            "loss_fell": bool(len(losses) >= 2 and losses[-1] < losses[0]),
            "P_MTL": record.metrics.get("P_MTL")}


# ------------------------------------------------------------------ the study estimate

def study_estimate(uni_ips: float, multi_ips: float, eval_ips: float, gpus: int = STUDY_GPUS,
                   suite: Path = STUDY_SUITE) -> dict[str, Any]:
    """Expected wall time of ``suite`` with one job per GPU (``--devices``), from per-GPU images/s
    of the training loop (uni-task, multi-task) and of evaluation. A per-frame run: its steps at
    that speed, its evaluations (development split, then validation once), its checkpoints and a
    start-up cost. A temporal run (``temporal``, docs/TEMPORAL.md): one forward pass of its frozen
    trunk over its training, development and validation frames (its own training takes seconds).
    Runs are given to free GPUs in suite order, a run initialised from another waiting for it (as
    ``training/jobs.py`` schedules them)."""
    from affectmodel.training.suite import load_suite

    runs = load_suite(suite, "/data/affwild2", "/tmp/study-estimate")
    durations: dict[str, float] = {}
    kinds: dict[str, str] = {}
    for run in runs:
        c = run.config
        kind = "multi" if len(c.tasks) > 1 else c.tasks[0]
        if getattr(c, "temporal", "none") != "none":
            kinds[run.folder] = "temporal"
            durations[run.folder] = (TRAIN_FRAMES[kind] + VALIDATION_FRAMES[kind]) / eval_ips + STARTUP_S
            continue
        kinds[run.folder] = "multi-task" if len(c.tasks) > 1 else "uni-task"
        ips = multi_ips if len(c.tasks) > 1 else uni_ips
        steps = c.steps or 0
        evaluations = math.ceil(steps / (c.eval_every or steps)) if steps else 0
        dev_frames = TRAIN_FRAMES[kind] * c.dev_fraction
        checkpoints = (steps // c.checkpoint_every if c.checkpoint_every else 0) + evaluations
        durations[run.folder] = (steps * c.batch_size / ips + evaluations * dev_frames / eval_ips
                                 + VALIDATION_FRAMES[kind] / eval_ips + checkpoints * CHECKPOINT_S + STARTUP_S)
    free = [0.0] * gpus
    done: dict[str, float] = {}
    pending = list(runs)
    while pending:
        slot = min(range(gpus), key=free.__getitem__)
        run = next(r for r in pending if not r.init_from_run or f"{r.init_from_run}/seed-{r.seed}" in done)
        start = max(free[slot], done.get(f"{run.init_from_run}/seed-{run.seed}", 0.0))
        done[run.folder] = free[slot] = start + durations[run.folder]
        pending.remove(run)
    longest = {kind: round(max(d for f, d in durations.items() if kinds[f] == kind) / 3600, 2)
               for kind in sorted(set(kinds.values()))}
    return {"gpus": gpus, "runs": len(runs), "hours": round(max(done.values()) / 3600, 1),
            "gpu_hours": round(sum(durations.values()) / 3600, 1), "longest_run_hours": longest,
            "assumptions": {"train_images_per_s_per_gpu": {"uni": uni_ips, "multi": multi_ips},
                            "eval_images_per_s_per_gpu": eval_ips, "train_frames": TRAIN_FRAMES,
                            "validation_frames": VALIDATION_FRAMES, "checkpoint_s": CHECKPOINT_S,
                            "startup_s": STARTUP_S,
                            "jobs": f"one run per GPU (--devices cuda:0..cuda:{gpus - 1}), each as fast as one job "
                                    "alone (CPU share per job, cache in the page cache or on local NVMe)"}}


# ------------------------------------------------------------------ checks and report

def machine(device: str) -> dict[str, Any]:
    import torch

    facts: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
                             "device": device}
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(0)
        facts.update(gpu=torch.cuda.get_device_name(0), gpus=torch.cuda.device_count(),
                     compute_capability=f"{props.major}.{props.minor}",
                     gpu_memory_gb=round(props.total_memory / 1e9, 1),
                     cuda=torch.version.cuda)
    return facts


def checks(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Named checks, each passed (True), failed (False) or not applied (None, with why)."""
    smoke = results["mode"] == "smoke"
    out: list[dict[str, Any]] = []

    def check(name: str, passed: bool | None, detail: str) -> None:
        out.append({"check": name, "passed": passed, "detail": detail})

    fit = results["fit"]
    check("the training loss falls", fit["loss_fell"], " -> ".join(f"{v:.3f}" for v in fit["train_loss"]))
    for source in ("cache", "jpeg"):
        for name in ("uni", "multi"):
            row = results["loop"][source][name]
            check(f"no epoch end among the timed steps ({source}, {name})", row["passes"] == 1,
                  f"{row['passes']} pass(es) over {row['train_frames']} frames")
    ddp = results["ddp"]
    for leg in ("scaling", "sync_bn", "resume"):
        if leg in ddp:
            check(f"DDP {leg} ran", "error" not in ddp[leg] if "skipped" not in ddp[leg] else None,
                  ddp[leg].get("error") or ddp[leg].get("skipped") or "ok")
    if "completed" in ddp.get("resume", {}):
        check("the resumed run reached its last step with its process count", ddp["resume"]["completed"]
              and ddp["resume"]["finite"], f"steps {ddp['resume']['steps']}, world size {ddp['resume']['world_size']}")
    bare = results["bare_step"]
    why = "not applied in --smoke (CPU)"
    loop_multi = results["loop"]["cache"]["multi"]
    check(f"loop from the cache >= {LOOP_OF_BARE_MIN:.0%} of the bare step (multi-task)",
          None if smoke else loop_multi["of_bare"] >= LOOP_OF_BARE_MIN,
          why if smoke else f"{loop_multi['of_bare']:.2f}")
    check(f"data wait from the cache <= {CACHE_DATA_WAIT_MAX:.0%} of the timed steps",
          None if smoke else all(results["loop"]["cache"][k]["data_wait_share"] <= CACHE_DATA_WAIT_MAX
                                 for k in ("uni", "multi")),
          why if smoke else ", ".join(str(results["loop"]["cache"][k]["data_wait_share"]) for k in ("uni", "multi")))
    scaling = ddp.get("scaling", {})
    if "scaling_efficiency" in scaling:
        check(f"DDP scaling efficiency >= {SCALING_EFFICIENCY_MIN:.0%}",
              None if smoke else scaling["scaling_efficiency"] >= SCALING_EFFICIENCY_MIN,
              why if smoke else f"{scaling['scaling_efficiency']:.2f} on {ddp['processes']} GPUs")
    check("no host sync in a bf16/fp32 step", None if smoke else bare["multi"]["host_syncs_per_step"] == 0,
          why if smoke else f"{bare['multi']['host_syncs_per_step']} per step")
    check("an fp16 step syncs once (the GradScaler's own read)",
          None if smoke else results["fp16"]["bare"]["host_syncs_per_step"] <= 1,
          why if smoke else f"{results['fp16']['bare']['host_syncs_per_step']} per step")
    sync_bn = results["sync_bn"]
    check("affectmodel's SyncBatchNorm adds no host sync", sync_bn["ours"]["host_syncs_per_step"]
          <= sync_bn["plain"]["host_syncs_per_step"],
          f"{sync_bn['ours']['host_syncs_per_step']} vs {sync_bn['plain']['host_syncs_per_step']} per step")
    return out


def _mb(row: dict[str, Any]) -> str:
    return f"{row['peak_memory_mb']:,.0f}"


def markdown(results: dict[str, Any]) -> str:
    p, m = results["params"], results["machine"]
    smoke = results["mode"] == "smoke"
    mem = "peak RSS of the process, MB (CPU: never reset, an upper bound)" if smoke else \
        "peak GPU memory (max_memory_allocated), MB"
    lines = [f"# GPU check ({results['mode']})", "",
             (f"{m['gpu']} ({m['gpus']} visible)" if "gpu" in m else "CPU only (no GPU)")
             + f", torch {m['torch']}, {m['cpus']} CPUs; {p['size']} px, batch {p['batch']} per process; loop legs "
             f"time {p['steps']} steps after {p['warmup']} warm-up steps inside one pass over the data (no epoch "
             f"end, evaluation or checkpoint among them); "
             f"synthetic data ({p['videos']} videos x {p['frames']} frames, repeated). "
             f"Total wall time {results['wall_s']:.0f} s.", "",
             "| measurement | uni-task | multi-task |", "|---|---:|---:|"]
    bare = results["bare_step"]
    layout = ", channels_last" if m["device"].startswith("cuda") else ""
    lines.append(f"| bare step ({bare['multi']['amp']}{layout}), img/s | {bare['uni']['images_per_s']:,.0f} | "
                 f"{bare['multi']['images_per_s']:,.0f} |")
    lines.append(f"| bare step, {mem} | {_mb(bare['uni'])} | {_mb(bare['multi'])} |")
    lines.append(f"| bare step, host syncs per step | {bare['uni']['host_syncs_per_step']} | "
                 f"{bare['multi']['host_syncs_per_step']} |")
    lines.append(f"| forward pass in evaluation, img/s | {bare['forward_uni']['images_per_s']:,.0f} | "
                 f"{bare['forward_multi']['images_per_s']:,.0f} |")
    for source in ("cache", "jpeg"):
        row = results["loop"][source]
        label = "frame cache" if source == "cache" else "JPEGs"
        lines.append(f"| training loop from {label}, img/s | {row['uni']['images_per_s']:,.0f} | "
                     f"{row['multi']['images_per_s']:,.0f} |")
        lines.append(f"| loop / bare step, {label} | {row['uni']['of_bare']:.2f} | {row['multi']['of_bare']:.2f} |")
        lines.append(f"| share of the timed steps waiting for data, {label} | {row['uni']['data_wait_share']} | "
                     f"{row['multi']['data_wait_share']} |")
        lines.append(f"| loop from {label}, {mem} | {_mb(row['uni'])} | {_mb(row['multi'])} |")
    fp16 = results["fp16"]
    lines += ["", f"fp16 + GradScaler (forced{'; CPU: float32 compute, the scaler enabled' if smoke else ''}): bare "
                  f"step {fp16['bare']['images_per_s']:,.0f} img/s, {fp16['bare']['host_syncs_per_step']} host syncs "
                  f"per step; loop from the cache (multi-task) {fp16['loop']['images_per_s']:,.0f} img/s, "
                  f"{_mb(fp16['loop'])} MB peak."]
    sb = results["sync_bn"]
    parts = [f"{name} {row['images_per_s']:,.0f} img/s, {row['host_syncs_per_step']} syncs/step"
             for name, row in (("plain BatchNorm", sb["plain"]), ("affectmodel's SyncBatchNorm", sb["ours"]),
                               ("torch's SyncBatchNorm", sb.get("torch"))) if row]
    lines.append("SyncBatchNorm (bare multi-task step, one-process group): " + "; ".join(parts) + ".")
    ddp = results["ddp"]
    for leg, title in (("scaling", "DDP"), ("sync_bn", "DDP with --sync-bn")):
        row = ddp.get(leg)
        if row is None:
            continue
        if "images_per_s" in row:
            lines.append(f"{title} ({ddp['backend']}, {ddp['processes']} processes, multi-task, frame cache, batch "
                         f"{p['batch']} per process): {row['images_per_s']:,.0f} img/s, scaling efficiency "
                         f"{row['scaling_efficiency']:.2f} against {ddp['processes']} x one process, data wait "
                         f"{row['data_wait_share']}, {_mb(row)} MB peak (rank 0).")
        else:
            lines.append(f"{title}: {row.get('skipped') or 'failed: ' + str(row.get('error'))}.")
    resume = ddp["resume"]
    if "completed" in resume:
        lines.append(f"Resume ({resume['processes']} process(es)): interrupted after step {resume['interrupted_at']}, "
                     f"resumed to step {resume['steps']} ({'complete' if resume['completed'] else 'INCOMPLETE'}).")
    else:
        lines.append(f"Resume: failed: {resume.get('error')}.")
    comp = results["compile"]
    if "speedup" in comp:
        lines.append(f"torch.compile (bare multi-task step; not offered by train.py): "
                     f"{comp['compiled_images_per_s']:,.0f} img/s against {comp['eager_images_per_s']:,.0f} eager "
                     f"({comp['speedup']:.2f}x), compiled in {comp['compile_s']:.0f} s ({comp['graphs_compiled']} "
                     f"graphs in all); the loss differs from eager by {comp['loss_difference']:.2g}, the gradients "
                     f"by {comp['gradient_difference_of_largest']:.2g} of the largest.")
    else:
        lines.append(f"torch.compile: {comp.get('skipped') or 'failed: ' + str(comp.get('error'))}.")
    fit = results["fit"]
    verdict = "falls" if fit["loss_fell"] else "DOES NOT FALL"
    lines += [f"Short fit ({fit['epochs']} epochs, multi-task): training loss "
              f"{' -> '.join(f'{v:.3f}' for v in fit['train_loss'])} ({verdict}).",
              f"Frame cache: built in {results['data']['cache_build_s']} s, "
              f"{(results['data']['cache_bytes'] or 0) / 1e6:.1f} MB."]
    est = results["study_estimate"]
    lines += ["", f"Expected wall time of suites/study.toml ({est['runs']} runs) on one node of {est['gpus']} of these "
                  f"GPUs{' (CPU figures: meaningless)' if smoke else ''}: **{est['hours']} h** "
                  f"({est['gpu_hours']} GPU-hours; longest run of each kind: "
                  + ", ".join(f"{k} {v} h" for k, v in est["longest_run_hours"].items())
                  + f"), assuming the loop figures above per GPU, {est['assumptions']['jobs']}; the other assumptions "
                  "are in gpu.json and benchmarks/RESULTS.md.", "", "| check | result | detail |", "|---|---|---|"]
    for c in results["checks"]:
        shown = {True: "passed", False: "FAILED", None: "not applied"}[c["passed"]]
        lines.append(f"| {c['check']} | {shown} | {c['detail']} |")
    return "\n".join(lines) + "\n"


def run_check(mode: str, out: Path, work: Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    p = PARAMS[mode]
    device = "cpu" if mode == "smoke" else "cuda"
    os.environ.setdefault("TQDM_DISABLE", "1")
    started = time.perf_counter()
    results: dict[str, Any] = {"mode": mode, "params": p, "machine": machine(device)}
    timings: dict[str, float] = {}

    @contextlib.contextmanager
    def leg(name: str) -> Iterator[None]:
        log(f"{name} ...")
        began = time.perf_counter()
        yield
        timings[name] = round(time.perf_counter() - began, 1)

    with leg("synthetic data and its frame cache"):
        data, results["data"] = build_data(work, p)
    with leg("bare steps"):
        results["bare_step"] = {"uni": bare_step(UNI, device, p), "multi": bare_step(MULTI, device, p),
                                "forward_uni": bare_step(UNI, device, p, forward_only=True),
                                "forward_multi": bare_step(MULTI, device, p, forward_only=True)}
    results["loop"] = {}
    for source, cache in (("cache", ""), ("jpeg", "none")):
        results["loop"][source] = {}
        for name, tasks in (("uni", UNI), ("multi", MULTI)):
            with leg(f"training loop, {name}-task, from {source}"):
                row = loop(data, tasks, cache, device, p, work)
            row["of_bare"] = round(row["images_per_s"] / results["bare_step"][name]["images_per_s"], 3)
            results["loop"][source][name] = row
    with leg("fp16 + GradScaler"):
        results["fp16"] = {"bare": bare_step(MULTI, device, p, amp="fp16"),
                           "loop": loop(data, MULTI, "", device, p, work, fp16=True)}
    with leg("SyncBatchNorm"):
        results["sync_bn"] = sync_bn_leg(device, p)
    with leg("DDP scaling and resume"):
        results["ddp"] = ddp_legs(data, device, p, work, results["loop"]["cache"]["multi"])
    with leg("torch.compile"):
        results["compile"] = (compile_leg(device, p) if mode == "full" else
                              {"skipped": "not run in --smoke (compiling takes minutes on a CPU)"})
    with leg("short fit"):
        results["fit"] = short_fit(data, device, p, work)
    uni, multi = results["loop"]["cache"]["uni"], results["loop"]["cache"]["multi"]
    results["study_estimate"] = study_estimate(uni["images_per_s"], multi["images_per_s"],
                                               results["bare_step"]["forward_multi"]["images_per_s"])
    results["leg_seconds"] = timings
    results["wall_s"] = round(time.perf_counter() - started, 1)
    results["checks"] = checks(results)
    results["ok"] = all(c["passed"] is not False for c in results["checks"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (out / "gpu.md").write_text(markdown(results), encoding="utf-8")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "gpu_results"), metavar="DIR",
                        help="where gpu.json and gpu.md go (default benchmarks/gpu_results)")
    parser.add_argument("--work", default=None, metavar="DIR",
                        help="scratch folder for the data, cache and runs (default: a temporary folder)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes on CPU with a 2-process gloo group: checks the script, measures nothing")
    parser.add_argument("--ddp-worker", default=None, metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.ddp_worker:
        return ddp_worker(args.ddp_worker)
    import torch

    if not args.smoke and not torch.cuda.is_available():
        print(NO_CUDA, file=sys.stderr)
        return 2
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="affectmodel-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        results = run_check("smoke" if args.smoke else "full", Path(args.out), work)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print(markdown(results))
    if not results["ok"]:
        failed = [c["check"] for c in results["checks"] if c["passed"] is False]
        print("error: the GPU check failed: " + "; ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
