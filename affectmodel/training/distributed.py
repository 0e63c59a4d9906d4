"""torchrun / DistributedDataParallel helpers.

The same training script runs alone or under ``torchrun --nproc_per_node N`` (one or several
machines): torchrun sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``, and we use NCCL on CUDA and gloo
on CPU. Rank 0 writes run records and checkpoints and takes the decisions every rank must share
(:func:`on_rank0`: resume or start, the validation scores and tuned thresholds); validation outputs
are gathered to rank 0 only (:func:`gather_arrays` with ``to_rank0``).

What holds across GPUs: results are statistically equal whatever the process count (with
``sync_bn``; the losses are those of the global batch: :mod:`affectmodel.losses`), not
bit-identical; a resumed run is bit-identical to an uninterrupted one only on CPU with the same
thread count.
"""
from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` picks CUDA when available; ``cuda`` without a GPU is a clear error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda was requested but no CUDA GPU is available")
        count = torch.cuda.device_count()
        if not 0 <= local_rank < count:
            # A modulo would silently put two processes on one GPU (half speed, double memory).
            raise ValueError(f"local rank {local_rank} has no GPU of its own: {count} CUDA GPU(s) visible on this "
                             f"machine; start at most {count} processes per machine (--nproc_per_node {count})")
        return torch.device("cuda", local_rank)
    return torch.device(name)


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def setup(device: str = "auto") -> DistInfo:
    """Initialise the process group when launched by torchrun (idempotent); else single process."""
    world = env_world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world <= 1:
        return DistInfo(device=dev)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank, device=dev)


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def all_reduce_sum(values: list[float], info: DistInfo) -> list[float]:
    """Sum a list of numbers over ranks (loss sums and counts for epoch summaries)."""
    if not info.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def default_workers(device: torch.device) -> int:
    """Loader processes per training process when ``workers`` is unset: none on CPU (the training
    threads need the cores), min(8, CPUs per process) on a GPU."""
    if device.type != "cuda":
        return 0
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    per_process = cpus // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(0, min(8, per_process - 1))  # one core stays with the training process itself


def broadcast_buffers(module: torch.nn.Module, info: DistInfo) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics): each rank's last training
    forward updated its own, and rank 0's are the ones saved, so every rank validates with them."""
    if not info.distributed:
        return
    for buffer in module.buffers():
        dist.broadcast(buffer.data, src=0)


def gather_objects(obj: Any, info: DistInfo) -> list[Any] | None:
    """Every rank's ``obj`` as a list on rank 0; None on the others."""
    if not info.distributed:
        return [obj]
    parts: list[Any] | None = [None] * info.world_size if info.is_main else None
    dist.gather_object(obj, parts, dst=0)
    return parts


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    if not info.distributed:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def on_rank0(decide: Callable[[], T], info: DistInfo) -> T:
    """Call ``decide()`` on rank 0 only and give every rank its result, or raise its error on
    every rank. For decisions all ranks must share, e.g. "resume or start": on several machines a
    rank that cannot see rank 0's checkpoint would otherwise start fresh and the job hang. The
    result (and error) must be picklable."""
    if not info.distributed:
        return decide()
    outcome: tuple[bool, Any] | None = None
    error: BaseException | None = None
    if info.is_main:
        try:
            outcome = (True, decide())
        except Exception as e:  # noqa: BLE001 - re-raised below, on every rank
            error = e
            try:
                pickle.dumps(e)
                outcome = (False, e)
            except Exception:  # noqa: BLE001 - an unpicklable error still reaches every rank
                outcome = (False, RuntimeError(f"rank 0: {type(e).__name__}: {e}"))
    outcome = broadcast_object(outcome, info)
    if error is not None:
        raise error
    ok, value = outcome
    if not ok:
        raise value
    return value


def _matching_empty(parts: list[np.ndarray]) -> list[np.ndarray]:
    """An empty shard's arrays with the shape and dtype of the others' (a rank without validation
    images produces ``(0,)`` float arrays that np.concatenate cannot join with ``(n, 12)``)."""
    template = next((p for p in parts if len(p)), None)
    if template is None:
        return parts
    return [p if len(p) else np.zeros((0, *template.shape[1:]), dtype=template.dtype) for p in parts]


def gather_arrays(indices: np.ndarray, arrays: dict[str, np.ndarray], info: DistInfo, to_rank0: bool = False
                  ) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
    """Collect per-rank (indices, arrays), ordered by index, without duplicates: on every rank,
    or with ``to_rank0`` on rank 0 only (the others get None)."""
    if not info.distributed:
        order = np.argsort(indices, kind="stable")
        return indices[order], {k: v[order] for k, v in arrays.items()}
    if to_rank0:
        gathered = gather_objects((indices, arrays), info)
        if gathered is None:
            return None
        parts: list[Any] = gathered
    else:
        parts = [None] * info.world_size
        dist.all_gather_object(parts, (indices, arrays))
    all_idx = np.concatenate(_matching_empty([np.asarray(p[0]) for p in parts]))
    merged = {k: np.concatenate(_matching_empty([p[1][k] for p in parts])) for k in arrays}
    all_idx, first = np.unique(all_idx, return_index=True)
    return all_idx, {k: v[first] for k, v in merged.items()}
