"""Optimizer and learning-rate schedule of a run."""
from __future__ import annotations

import torch
from torch import nn

from .config import TrainConfig


def build_optimizer(module: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Weight decay on weight matrices/kernels only (not biases, BatchNorm or task log-variances)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in module.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0)


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int,
                    total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Stepped once per optimizer step."""
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps))
    if config.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, config.step_epochs * steps_per_epoch),
                                               gamma=config.step_gamma)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
