"""Optimizer and learning-rate schedule of a run."""
from __future__ import annotations

import math
from collections.abc import Callable

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
    """Stepped once per optimizer step. With ``config.warmup``, the first ``warmup * total_steps``
    steps scale the schedule by ``(step + 1) / warmup_steps`` (Adam's first updates move every
    weight by about the learning rate, whatever its gradient; see docs/TRAINING.md)."""
    warmup_steps = round(config.warmup * total_steps)
    step_size = max(1, config.step_epochs * steps_per_epoch)
    if warmup_steps < 1:  # the schedulers runs without warm-up always used (same values, same checkpoints)
        if config.schedule == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps))
        if config.schedule == "step":
            return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=config.step_gamma)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    schedule = schedule_factor(config.schedule, max(1, total_steps), step_size, config.step_gamma)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup_steps)
                                             * schedule(step))


def schedule_factor(schedule: str, total_steps: int, step_size: int, gamma: float) -> Callable[[int], float]:
    """The schedule's multiple of the peak learning rate at a step (0-based): the closed forms of
    CosineAnnealingLR (to 0 at ``total_steps``), StepLR and a constant rate."""
    if schedule == "cosine":
        return lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))
    if schedule == "step":
        return lambda step: gamma ** (step // step_size)
    return lambda step: 1.0
