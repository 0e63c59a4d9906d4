"""One optimizer step: the model and its loss in one module, mixed precision (:mod:`.precision`),
valid-label checks, all without host-device synchronisation."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ..losses import MultiTaskLoss, has_labels
from ..model import AffectModel
from .precision import amp_dtype_for, optimizer_step  # noqa: F401 - amp_dtype_for re-exported


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


def to_device(batch_targets: Mapping[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch_targets.items()}


def labels_present(targets: Mapping[str, torch.Tensor], tasks: Sequence[str], n_classes: int) -> torch.Tensor:
    """(len(tasks),) float on the targets' device: 1 where the batch holds a label of that task
    (no host sync; a batch without labels for a task says nothing about its loss)."""
    return torch.stack([has_labels(t, targets[t], n_classes) for t in tasks])


def step_on_device(module: nn.Module, images: torch.Tensor, targets: Mapping[str, torch.Tensor],
                   optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None = None
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor], bool]:
    """One optimizer step without reading anything back to the host (but the fp16 scaler's own
    inf/NaN check): the total and per-task losses as detached device tensors, and whether the step was taken (an
    fp16 scaler skips steps with inf/NaN gradients; then the LR scheduler must not step)."""
    total, parts = module(images, targets)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None and scaler.is_enabled():
        scaler.scale(total).backward()
    else:
        total.backward()
    took = optimizer_step(scaler, optimizer)
    return total.detach(), {k: v.detach() for k, v in parts.items()}, took


def train_step(module: nn.Module, images: torch.Tensor, targets: Mapping[str, torch.Tensor],
               optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None = None
               ) -> tuple[float, dict[str, float]]:
    """One optimizer step; returns the total loss and each task's loss (floats: reads them back)."""
    total, parts, _ = step_on_device(module, images, targets, optimizer, scaler)
    return float(total), {k: float(v) for k, v in parts.items()}
