"""One optimizer step: the model and its loss in one module, mixed precision, valid-label checks."""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn as nn

from ..losses import MultiTaskLoss
from ..model import AffectModel


class TrainModule(nn.Module):
    """Model + loss in one module, so DDP also synchronises the uncertainty-weighting parameters."""

    def __init__(self, model: AffectModel, criterion: MultiTaskLoss, amp_dtype: torch.dtype | None = None):
        super().__init__()
        self.model, self.criterion = model, criterion
        self.amp_dtype = amp_dtype

    def forward(self, images: torch.Tensor, targets: Mapping[str, torch.Tensor]):
        with torch.autocast(device_type=images.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            outputs = self.model(images)
        return self.criterion(outputs, targets)  # losses compute in float32


def amp_dtype_for(device: torch.device, enabled: bool) -> torch.dtype | None:
    if device.type != "cuda" or not enabled:
        return None  # CPU autocast is slower than float32 on most CPUs
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def to_device(batch_targets: Mapping[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch_targets.items()}


def valid_rows(targets: Mapping[str, torch.Tensor], tasks: Sequence[str], n_classes: int) -> dict[str, bool]:
    checks = {
        "expr": lambda t: bool(((t >= 0) & (t < n_classes)).any()),
        "au": lambda t: bool(((t == 0) | (t == 1)).any()),
        "va": lambda t: bool((torch.isfinite(t) & (t >= -1) & (t <= 1)).any()),
    }
    return {k: checks[k](targets[k]) for k in tasks}


def train_step(module: nn.Module, images: torch.Tensor, targets: Mapping[str, torch.Tensor],
               optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None = None
               ) -> tuple[float, dict[str, float]]:
    """One optimizer step; returns the total loss and each task's loss (floats)."""
    total, parts = module(images, targets)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None and scaler.is_enabled():
        scaler.scale(total).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        total.backward()
        optimizer.step()
    return float(total.detach()), {k: float(v.detach()) for k, v in parts.items()}
