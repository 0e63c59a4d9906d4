"""Resumable training checkpoints, written atomically and read without unpickling objects.

A checkpoint holds everything needed to continue a run: model, optimizer, LR scheduler, gradient
scaler, loss (uncertainty weights), the RNG states of every process (each rank's own CUDA
generator included), epoch/step counters and the bookkeeping of the run (history, best score).
On CPU with the same thread count, a resumed run is bit-identical to an uninterrupted one. On
GPUs it is statistically equal only: cuDNN's autotuned algorithms and non-deterministic kernels
(atomic adds in backward passes) change the last bits from one session to the next. It is saved
with ``torch.save`` and loaded with
``torch.load(weights_only=True)``, so every RNG state is stored as a tensor.

Both files are written atomically (:func:`affectmodel.io.atomic_write`): on a full disk the save
raises one :class:`affectmodel.io.DiskFullError` line (folder, space needed and free) and the
previous checkpoint stays intact and loadable, so ``--resume`` works once space is freed.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..io import atomic_write
from ..model import CheckpointError

CHECKPOINT_DIR = "checkpoints"
LAST_FILE = "last.pt"
BEST_FILE = "best.safetensors"


def checkpoint_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / LAST_FILE


def best_weights_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / BEST_FILE


# ------------------------------------------------------------------ RNG states as tensors

def capture_rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """This process's RNG states; ``device``: the process's own GPU, whose CUDA generator is saved."""
    np_state = np.random.get_state(legacy=True)
    assert isinstance(np_state, tuple)  # legacy form: (name, keys, pos, has_gauss, cached_gaussian)
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
        "numpy_meta": torch.tensor([np_state[2], np_state[3]], dtype=torch.int64),
        "numpy_gauss": torch.tensor([np_state[4]], dtype=torch.float64),
        "python": torch.tensor(py_internal, dtype=torch.int64),
        "python_meta": torch.tensor([py_version, py_gauss is not None], dtype=torch.int64),
        "python_gauss": torch.tensor([py_gauss or 0.0], dtype=torch.float64),
    }
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state: dict[str, Any], device: torch.device | None = None) -> None:
    """Restore what :func:`capture_rng_state` saved; the CUDA state goes to ``device``."""
    torch.set_rng_state(state["torch"].cpu())
    meta = state["numpy_meta"].tolist()
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32),
                         int(meta[0]), int(meta[1]), float(state["numpy_gauss"][0])))
    version, has_gauss = state["python_meta"].tolist()
    gauss = float(state["python_gauss"][0]) if has_gauss else None
    random.setstate((int(version), tuple(int(v) for v in state["python"].tolist()), gauss))
    if "cuda" in state and device is not None and device.type == "cuda":
        cuda_state = state["cuda"]
        if isinstance(cuda_state, (list, tuple)):  # older checkpoints: every visible GPU's state
            cuda_state = cuda_state[device.index or 0] if len(cuda_state) > (device.index or 0) else None
        if cuda_state is not None:
            torch.cuda.set_rng_state(cuda_state.cpu(), device)


# ------------------------------------------------------------------ save / load

def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Atomically write ``state`` (only tensors, numbers, strings, lists, dicts, None)."""
    written = atomic_write(path, lambda tmp: torch.save(state, tmp), size_hint=tensor_bytes(state))
    remove_stale_temp_files(written.parent)
    return written


def tensor_bytes(obj: Any) -> int:
    """Bytes of the tensors in a nested state (what a checkpoint of it needs on disk, roughly)."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def remove_stale_temp_files(folder: str | Path) -> None:
    """Delete the hidden ``.<name>.*.tmp`` files that a process killed mid-write left in the
    checkpoint folder (one writer per run, so none of them is still being written); each can be
    as large as a checkpoint."""
    for stale in Path(folder).glob(".*.tmp"):
        stale.unlink(missing_ok=True)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        # CheckpointError (a RuntimeError) is what train.py reports as one line, exit status 2
        raise CheckpointError(f"cannot read checkpoint {path}: {e}") from e


def cpu_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Contiguous CPU copies (channels_last weights cannot go to safetensors as they are)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}


def save_weights(path: str | Path, state_dict: dict[str, torch.Tensor]) -> Path:
    return atomic_write(path, lambda tmp: save_file(state_dict, str(tmp)), size_hint=tensor_bytes(state_dict))


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))
