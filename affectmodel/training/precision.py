"""Mixed precision on CUDA: which autocast dtype, and the fp16 GradScaler's edge cases.

* bf16 only where the GPU computes it natively (compute capability >= 8.0: A100, H100, RTX 30xx
  and later; ROCm GPUs). ``torch.cuda.is_bf16_supported()`` also counts *emulated* bf16, which a
  V100 or T4 would get, slowly and with no scaler; those GPUs get fp16 with a GradScaler instead.
* A scaler saved while disabled (a CPU or bf16 run) has an empty state; loading it into an enabled
  scaler raises in torch, so :func:`restore_grad_scaler` starts such a scaler fresh instead.
* When the scaler finds inf/NaN gradients it skips the optimizer step; the LR scheduler must then
  not step either (:func:`optimizer_step` says whether the step was taken, without reading the
  scale back: one host read per fp16 step, the scaler's own).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch


def native_bf16(device: torch.device) -> bool:
    """The GPU ``device`` computes bf16 in hardware (not emulated)."""
    if torch.version.hip:
        return True
    return torch.cuda.get_device_properties(device).major >= 8


def amp_dtype_for(device: torch.device, enabled: bool) -> torch.dtype | None:
    """Autocast dtype for ``device``: None (float32) on CPU or when disabled, bf16 where native,
    else fp16 (which needs a GradScaler: :func:`make_grad_scaler`)."""
    if device.type != "cuda" or not enabled:
        return None  # CPU autocast is slower than float32 on most CPUs
    return torch.bfloat16 if native_bf16(device) else torch.float16


def make_grad_scaler(device: torch.device, amp_dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """A GradScaler enabled only for fp16 (bf16 has float32's range and needs none)."""
    return torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)


def restore_grad_scaler(scaler: torch.amp.GradScaler, state: Mapping[str, Any] | None) -> bool:
    """Load a saved scaler state; True if loaded. An empty state (saved by a disabled scaler) or
    a disabled ``scaler`` leaves the scaler as it is, without raising."""
    if not scaler.is_enabled() or not state:
        return False
    scaler.load_state_dict(dict(state))
    return True


def optimizer_step(scaler: torch.amp.GradScaler | None, optimizer: torch.optim.Optimizer) -> bool:
    """``optimizer.step()`` through the scaler when it is enabled; True if the parameters were
    updated, False if the scaler skipped the step (inf/NaN gradients): then do not step the LR
    scheduler. The only host read is the scaler's own (whether any gradient was inf/NaN): whether
    ``optimizer.step()`` ran is seen by a step hook, not by reading the scale back."""
    if scaler is None or not scaler.is_enabled():
        optimizer.step()
        return True
    ran: list[bool] = []
    hook = optimizer.register_step_post_hook(lambda *_: ran.append(True))
    try:
        scaler.step(optimizer)
    finally:
        hook.remove()
    scaler.update()
    return bool(ran)
