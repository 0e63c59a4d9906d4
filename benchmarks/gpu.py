#!/usr/bin/env python
"""The GPU check: one command that measures the CUDA training path and says whether it works.

    python benchmarks/gpu.py --out benchmarks/gpu_results          # on a CUDA machine (minutes)
    python benchmarks/gpu.py --smoke --out /tmp/gpu-smoke           # CPU check of this script (gloo)

It builds its own synthetic data (112 px) and the frame cache next to it, then measures:

1. the bare training step (model + losses + AdamW on random tensors already on the GPU, bf16
   autocast where the GPU computes bf16 natively, else fp16; channels_last), uni- and multi-task;
2. the real training loop (``train.py``'s :func:`affectmodel.training.train_run`) from the frame
   cache and from the JPEGs, uni- and multi-task: images/s over the timed steps, the loop's share
   of the bare step's speed, and the share of training time the host waited for the next batch;
3. one run with DistributedDataParallel on all visible GPUs with NCCL (``torchrun``);
   with one GPU it says so and skips;
4. a short fit (several epochs, multi-task): the training loss must fall.

Writes ``gpu.json`` and ``gpu.md`` (a table) into ``--out``. Exit status: 0 when everything
ran and the loss fell, 1 when a check failed, 2 without CUDA (``--smoke`` runs the same steps
on CPU with tiny sizes and a 2-process gloo group, so that tests can check the script).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PARAMS = {
    "full": {"size": 112, "batch": 256, "warmup": 10, "steps": 50, "videos": 40, "frames": 120, "fit_epochs": 6,
             "fit_batch": 128},
    "smoke": {"size": 32, "batch": 8, "warmup": 1, "steps": 2, "videos": 6, "frames": 8, "fit_epochs": 4,
              "fit_batch": 8},
}
UNI, MULTI = ["expr"], ["expr", "au", "va"]
NO_CUDA = ("error: benchmarks/gpu.py measures the CUDA training path, and no CUDA GPU is visible "
           "(torch.cuda.is_available() is False); run it on a GPU machine, or with --smoke for a CPU check "
           "of the script itself")


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


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


def bare_step(tasks: list[str], device: str, p: dict[str, Any]) -> dict[str, Any]:
    """Images/s of the training step alone: random inputs already on the device."""
    import torch

    from affectmodel.losses import MultiTaskLoss
    from affectmodel.model import AffectModel, ModelConfig
    from affectmodel.tasks import AU_NAMES
    from affectmodel.training.precision import amp_dtype_for, make_grad_scaler
    from affectmodel.training.step import TrainModule, step_on_device

    dev = torch.device(device)
    amp = amp_dtype_for(dev, True)
    torch.manual_seed(0)
    model = AffectModel(ModelConfig(tasks=tasks, input_size=p["size"]))
    module = TrainModule(model, MultiTaskLoss(tasks), amp).to(dev)
    if dev.type == "cuda":
        module.model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3)
    scaler = make_grad_scaler(dev, amp)
    b, s = p["batch"], p["size"]
    images = torch.randn(b, 3, s, s, device=dev)
    if dev.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)
    targets = {"expr": torch.randint(0, 8, (b,), device=dev),
               "au": torch.randint(0, 2, (b, len(AU_NAMES)), device=dev).float(),
               "va": torch.rand(b, 2, device=dev) * 2 - 1}
    for _ in range(p["warmup"]):
        step_on_device(module, images, targets, optimizer, scaler)
    _sync(device)
    start = time.perf_counter()
    for _ in range(p["steps"]):
        step_on_device(module, images, targets, optimizer, scaler)
    _sync(device)
    seconds = time.perf_counter() - start
    return {"images_per_s": round(b * p["steps"] / seconds, 1), "amp": str(amp).replace("torch.", "") if amp else
            "float32"}


def loop(data: Path, tasks: list[str], cache: str, device: str, p: dict[str, Any], work: Path) -> dict[str, Any]:
    """The real training loop for warmup + steps steps; images/s over the timed steps."""
    from affectmodel.records import read_run
    from affectmodel.training import TrainConfig, train_run

    count = 0
    stamps: dict[str, float] = {}

    def progress(_fraction: float, message: str) -> None:
        nonlocal count
        if " step " not in message:
            return
        count += 1
        if count in (p["warmup"], p["warmup"] + p["steps"]):
            _sync(device)  # only at the ends of the timed stretch: the loop itself never waits
            stamps["start" if count == p["warmup"] else "end"] = time.perf_counter()

    out = Path(tempfile.mkdtemp(prefix="run-", dir=work))
    config = TrainConfig(data=str(data), out=str(out / "run"), tasks=tasks, image_size=p["size"],
                         batch_size=p["batch"], epochs=1000, max_steps=p["warmup"] + p["steps"], limit_val=p["batch"],
                         augment="light", seed=0, cache=cache, dev_fraction=0, device=device.split(":")[0],
                         threads=0)
    train_run(config, progress=progress)
    metrics = read_run(out / "run").metrics
    shutil.rmtree(out, ignore_errors=True)
    if "end" not in stamps:
        raise RuntimeError(f"the synthetic training set is too small for {p['warmup'] + p['steps']} steps")
    seconds = stamps["end"] - stamps["start"]
    return {"images_per_s": round(p["batch"] * p["steps"] / seconds, 1),
            "data_wait_share": metrics.get("data_wait_share"), "device": metrics.get("device")}


def ddp_run(data: Path, device: str, p: dict[str, Any], work: Path) -> dict[str, Any]:
    """One multi-task run under torchrun on every visible GPU (NCCL); 2 gloo processes in --smoke."""
    import torch

    from affectmodel.records import read_run

    n = torch.cuda.device_count() if device.startswith("cuda") else 2
    if n < 2:
        return {"skipped": f"{n} GPU visible: DDP needs at least 2"}
    out = work / "ddp-run"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n),
           str(ROOT / "train.py"), "--data", str(data), "--out", str(out), "--tasks", ",".join(MULTI),
           "--image-size", str(p["size"]), "--batch-size", str(p["batch"] * n), "--max-steps",
           str(p["warmup"] + p["steps"]), "--epochs", "1000", "--limit-val", str(p["batch"] * n),
           "--dev-fraction", "0", "--device", "cuda" if device.startswith("cuda") else "cpu"]
    env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONPATH": str(ROOT)}
    if not device.startswith("cuda"):
        env["OMP_NUM_THREADS"] = "1"
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1],
                "processes": n}
    metrics = read_run(out).metrics
    shutil.rmtree(out, ignore_errors=True)
    return {"processes": n, "backend": "nccl" if device.startswith("cuda") else "gloo",
            "world_size": metrics.get("world_size"), "images_per_s": metrics.get("images_per_second"),
            "data_wait_share": metrics.get("data_wait_share"), "wall_s": round(wall, 1)}


def short_fit(data: Path, device: str, p: dict[str, Any], work: Path) -> dict[str, Any]:
    """A few epochs of multi-task training from the cache: the training loss must fall."""
    from affectmodel.records import read_run
    from affectmodel.training import TrainConfig, train_run

    out = work / "fit-run"
    shutil.rmtree(out, ignore_errors=True)
    config = TrainConfig(data=str(data), out=str(out), tasks=MULTI, image_size=p["size"], batch_size=p["fit_batch"],
                         epochs=p["fit_epochs"], lr=1e-3, augment="light", seed=0, dev_fraction=0,
                         device=device.split(":")[0])
    train_run(config)
    record = read_run(out)
    losses = [float(row["train_loss"]) for row in record.history]
    shutil.rmtree(out, ignore_errors=True)
    return {"epochs": len(losses), "train_loss": [round(v, 4) for v in losses],
            "loss_fell": bool(len(losses) >= 2 and losses[-1] < losses[0]),
            "P_MTL": record.metrics.get("P_MTL")}


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


def markdown(results: dict[str, Any]) -> str:
    p, m = results["params"], results["machine"]
    lines = [f"# GPU check ({results['mode']})", "",
             f"{m.get('gpu', m['device'])}, torch {m['torch']}; {p['size']} px, batch {p['batch']} per process, "
             f"{p['steps']} timed steps after {p['warmup']}; synthetic data "
             f"({p['videos']} videos x {p['frames']} frames).", "",
             "| measurement | uni-task | multi-task |", "|---|---:|---:|"]
    bare = results["bare_step"]
    layout = ", channels_last" if m["device"].startswith("cuda") else ""
    lines.append(f"| bare step ({bare['multi']['amp']}{layout}), img/s | {bare['uni']['images_per_s']:,.0f} | "
                 f"{bare['multi']['images_per_s']:,.0f} |")
    for source in ("cache", "jpeg"):
        row = results["loop"][source]
        label = "frame cache" if source == "cache" else "JPEGs"
        lines.append(f"| training loop from {label}, img/s | {row['uni']['images_per_s']:,.0f} | "
                     f"{row['multi']['images_per_s']:,.0f} |")
        lines.append(f"| loop / bare step, {label} | {row['uni']['of_bare']:.2f} | {row['multi']['of_bare']:.2f} |")
        lines.append(f"| share of time waiting for data, {label} | {row['uni']['data_wait_share']} | "
                     f"{row['multi']['data_wait_share']} |")
    ddp = results["ddp"]
    if "images_per_s" in ddp:
        lines += ["", f"DDP ({ddp['backend']}, {ddp['processes']} processes, multi-task, frame cache): "
                      f"{ddp['images_per_s']:,.0f} img/s over the run, data wait share {ddp['data_wait_share']}."]
    else:
        lines += ["", f"DDP: {ddp.get('skipped') or 'failed: ' + str(ddp.get('error'))}."]
    fit = results["fit"]
    verdict = "falls" if fit["loss_fell"] else "DOES NOT FALL"
    lines += [f"Short fit ({fit['epochs']} epochs, multi-task): training loss "
              f"{' -> '.join(f'{v:.3f}' for v in fit['train_loss'])} ({verdict}).",
              "", f"Frame cache: built in {results['data']['cache_build_s']} s, "
                  f"{(results['data']['cache_bytes'] or 0) / 1e6:.1f} MB."]
    return "\n".join(lines) + "\n"


def run_check(mode: str, out: Path, work: Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    p = PARAMS[mode]
    device = "cpu" if mode == "smoke" else "cuda"
    os.environ.setdefault("TQDM_DISABLE", "1")
    results: dict[str, Any] = {"mode": mode, "params": p, "machine": machine(device)}
    log("building the synthetic data and its frame cache ...")
    data, results["data"] = build_data(work, p)
    log("bare step ...")
    results["bare_step"] = {"uni": bare_step(UNI, device, p), "multi": bare_step(MULTI, device, p)}
    results["loop"] = {}
    for source, cache in (("cache", ""), ("jpeg", "none")):
        results["loop"][source] = {}
        for name, tasks in (("uni", UNI), ("multi", MULTI)):
            log(f"training loop, {name}-task, from {source} ...")
            row = loop(data, tasks, cache, device, p, work)
            row["of_bare"] = round(row["images_per_s"] / results["bare_step"][name]["images_per_s"], 3)
            results["loop"][source][name] = row
    log("DDP run ...")
    results["ddp"] = ddp_run(data, device, p, work)
    log("short fit ...")
    results["fit"] = short_fit(data, device, p, work)
    results["ok"] = bool(results["fit"]["loss_fell"] and "error" not in results["ddp"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (out / "gpu.md").write_text(markdown(results), encoding="utf-8")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "gpu_results"), metavar="DIR",
                        help="where gpu.json and gpu.md go (default benchmarks/gpu_results)")
    parser.add_argument("--work", default=None, metavar="DIR",
                        help="scratch folder for the data, cache and runs (default: a temporary folder)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes on CPU with a 2-process gloo group: checks the script, measures nothing")
    args = parser.parse_args(argv)
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
        print("error: the GPU check failed: " + ("the training loss did not fall" if not results["fit"]["loss_fell"]
                                                 else f"DDP: {results['ddp'].get('error')}"), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
