"""A suite's independent runs at the same time: one run per GPU (``--devices cuda:0,cuda:1``) or
``--jobs N`` runs on CPU, each in its own process.

Each run trains exactly as in a sequential suite (same resolved options but the device and its
share of the machine: ``CPUs / jobs`` torch threads and, on a GPU, that share minus one loader
workers, unless the run sets its own; resumable, complete runs skipped), so the records are the same;
only one run's own options decide what it computes. A run initialised from another run of the
suite (``init = "<run>"``) waits until that run is complete. One big run on several GPUs is
still ``torchrun`` (DDP), not this.

Each job writes its console output to ``<out>/.logs/<run>.log``; the suite prints one line when a
run starts and one when it ends (with the error line of a failed run). A run whose folder is
locked by another process (e.g. a second suite command on the same folder) is reported as
``busy`` and left to that process. The suite fails at the end if any run failed.
"""
from __future__ import annotations

import multiprocessing
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..records import is_complete, read_divergence
from .config import ConfigError

_DEVICE = re.compile(r"^(cpu|cuda:\d+)$")
BUSY_EXIT = 75  # EX_TEMPFAIL: the run folder is locked by another process
LOG_FOLDER = ".logs"


def job_slots(devices: str | None = None, jobs: int | None = None) -> list[str]:
    """The device of each concurrent job: ``devices`` ("cuda:0,cuda:1", each at most once per
    job; "cpu" may repeat) or ``jobs`` CPU jobs. One slot means a sequential suite."""
    if devices and jobs:
        raise ConfigError("give --devices or --jobs, not both (--devices cuda:0,cuda:1 runs one job per GPU)")
    if devices:
        slots = [d.strip() for d in devices.split(",") if d.strip()]
        bad = [d for d in slots if not _DEVICE.match(d)]
        if bad or not slots:
            raise ConfigError(f"--devices expects a comma-separated list of cuda:N or cpu, got {devices!r}")
        gpus = [d for d in slots if d != "cpu"]
        if len(set(gpus)) != len(gpus):
            raise ConfigError(f"--devices names a GPU twice ({devices}): one job per GPU")
        return slots
    if jobs is not None and jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}")
    return ["cpu"] * (jobs or 1)


@dataclass
class _Job:
    index: int
    run: Any                   # a SuiteRun (name, config, init_from_run)
    slot: int = -1
    process: Any = None
    started: float = 0.0


def _key(run: Any) -> str:
    """A run's identity in a suite: its folder under the suite folder (``<name>/seed-<k>``)."""
    return str(getattr(run, "folder", run.name))


def _log_path(out: Path, run: Any) -> Path:
    return out / LOG_FOLDER / (_key(run).replace("/", "_") + ".log")


def cpu_count() -> int:
    """CPUs this process may use (its affinity where the platform has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def job_share(slots: Sequence[str], cpus: int) -> dict[str, int]:
    """What each of ``len(slots)`` concurrent jobs may use of ``cpus`` CPUs: ``threads`` for torch
    and, on a GPU, ``workers`` loader processes (one CPU stays with the training process, as
    :func:`affectmodel.training.distributed.default_workers` leaves one; a CPU job loads in its
    own process). Without this, 8 GPU jobs would each start min(8, CPUs - 1) workers and torch's
    default threads."""
    share = max(1, cpus // max(1, len(slots)))
    return {"threads": share, "gpu_workers": max(0, min(8, share - 1))}


def job_config_values(config_values: dict[str, Any], device: str, share: dict[str, int]) -> dict[str, Any]:
    """The run's options in a job on ``device`` (``cuda`` for ``cuda:N``: the job sees only its
    GPU): its share of threads and, on a GPU, of loader workers, unless the run sets its own."""
    changes: dict[str, Any] = {"device": "cuda" if device.startswith("cuda:") else device}
    if not config_values.get("threads"):
        changes["threads"] = share["threads"]
    if device.startswith("cuda:") and config_values.get("workers") is None:
        changes["workers"] = share["gpu_workers"]
    return {**config_values, **changes}


def _job_main(config_values: dict[str, Any], device: str, share: dict[str, int], log_file: str) -> None:
    """One run in a fresh process (spawned: no CUDA or OpenMP state inherited)."""
    # Kept open for the life of this process: it becomes its stdout and stderr.
    log = open(log_file, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    sys.stdout = sys.stderr = log
    os.environ.setdefault("TQDM_DISABLE", "1")
    if device.startswith("cuda:"):
        # This process sees its GPU only (before CUDA initialises), as cuda:0.
        os.environ["CUDA_VISIBLE_DEVICES"] = device.split(":", 1)[1]
    from ..locking import RunFolderLockedError
    from .config import config_from_mapping
    from .trainer import train_run

    try:
        config = config_from_mapping(job_config_values(config_values, device, share), where="suite job")
        train_run(config)
    except RunFolderLockedError as e:
        print(e, flush=True)
        sys.exit(BUSY_EXIT)
    except KeyboardInterrupt:
        sys.exit(130)
    except BaseException as e:  # noqa: BLE001 - the suite reports this line; the traceback goes to the log
        import traceback

        traceback.print_exc()
        print(f"error: {type(e).__name__}: {e}", flush=True)
        sys.exit(2)


def _last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def run_jobs(runs: Sequence[Any], out: str | Path, slots: Sequence[str], log: Callable[[str], None] = print,
             poll_s: float = 0.2) -> list[dict[str, Any]]:
    """Train ``runs`` (suite runs still to train, in suite order) concurrently, one per slot;
    returns one status dict per run ("trained", "failed", "diverged", "busy", "blocked")."""
    out = Path(out)
    (out / LOG_FOLDER).mkdir(parents=True, exist_ok=True)
    by_out = {str(Path(r.config.out)): _key(r) for r in runs}
    for run in runs:
        dep = _dependency(run, by_out)
        if run.config.init and dep is None and run.init_from_run and not is_complete(Path(run.config.init)):
            raise ConfigError(f"run {_key(run)!r} starts from run {run.init_from_run!r}, which is not complete "
                              f"in {out}: run it first")
    share = job_share(slots, cpu_count())
    ctx = multiprocessing.get_context("spawn")
    pending = [_Job(i, r) for i, r in enumerate(runs, start=1)]
    running: dict[int, _Job] = {}
    results: dict[str, dict[str, Any]] = {}
    total = len(runs)
    try:
        while pending or running:
            for slot, device in enumerate(slots):
                if slot in running:
                    continue
                job = _next_ready(pending, by_out, results)
                if job is None:
                    break
                path = _log_path(out, job.run)
                job.slot, job.started = slot, time.perf_counter()
                job.process = ctx.Process(target=_job_main, args=(job.run.config.to_dict(), device, share,
                                                                  str(path)),
                                          name=f"suite-job-{_key(job.run)}")
                job.process.start()
                running[slot] = job
                log(f"[{job.index}/{total}] {_key(job.run)}: training ({'+'.join(job.run.config.tasks)}) on {device}, "
                    f"log {path}")
            for slot, job in list(running.items()):
                code = job.process.exitcode
                if code is None:
                    continue
                job.process.join()
                del running[slot]
                status = {"name": _key(job.run), "path": job.run.config.out,
                          "seconds": round(time.perf_counter() - job.started, 1)}
                if code == 0 and is_complete(Path(job.run.config.out)):
                    status["status"] = "trained"
                    log(f"[{job.index}/{total}] {_key(job.run)}: done in {status['seconds']:.0f}s")
                else:
                    diverged = read_divergence(Path(job.run.config.out)) is not None
                    status["status"] = "busy" if code == BUSY_EXIT else "diverged" if diverged else "failed"
                    status["error"] = _last_line(_log_path(out, job.run)) or f"exit status {code}"
                    log(f"[{job.index}/{total}] {_key(job.run)}: {status['status']}: {status['error']}")
                results[_key(job.run)] = status
            if pending and not running and _next_ready(pending, by_out, results, peek=True) is None:
                break  # only runs waiting for dependencies that will not complete
            time.sleep(poll_s)
    except BaseException:
        for job in running.values():  # Ctrl-C: stop the jobs; their checkpoints let the suite resume
            if job.process.is_alive():
                job.process.terminate()
        for job in running.values():
            job.process.join(30)
        raise
    for job in pending:
        results.setdefault(_key(job.run), {"name": _key(job.run), "path": job.run.config.out, "status": "blocked",
                                          "error": f"waits for run {_dependency(job.run, by_out)!r}, which did not "
                                                   "complete"})
    return [results[_key(r)] for r in runs]


def _dependency(run: Any, by_out: dict[str, str]) -> str | None:
    """The run of this batch whose folder initialises ``run`` (its ``init``), if any."""
    init = getattr(run.config, "init", None)
    if not init or init in ("random", "imagenet"):
        return None
    return by_out.get(str(Path(init)))


def _next_ready(pending: list[_Job], by_out: dict[str, str], results: dict[str, dict[str, Any]],
                peek: bool = False) -> _Job | None:
    """The first pending job whose dependency is complete (removed from ``pending`` unless
    ``peek``); a job whose dependency failed is marked blocked and skipped."""
    for job in list(pending):
        dep = _dependency(job.run, by_out)
        if dep is not None and dep in results and results[dep]["status"] != "trained":
            if not peek:
                pending.remove(job)
                results[_key(job.run)] = {"name": _key(job.run), "path": job.run.config.out, "status": "blocked",
                                         "error": f"waits for run {dep!r}, which {results[dep]['status']}"}
            continue
        if dep is not None and dep not in results:
            continue  # still to train, or training now
        if not peek:
            pending.remove(job)
        return job
    return None
