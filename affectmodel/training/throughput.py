"""Training-step throughput of the affect model against a bare torchvision ResNet-18, measured in
the same process on random tensors, so that the overhead of the heads and masked losses shows."""
from __future__ import annotations

import time
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from ..losses import MultiTaskLoss
from ..model import AffectModel, ModelConfig
from .distributed import resolve_device
from .loop import TrainModule, amp_dtype_for


def _images_per_second(step: Callable[[], None], batch_size: int, steps: int, warmup: int,
                       device: torch.device) -> float:
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return batch_size * steps / (time.perf_counter() - start)


def compare_step_throughput(image_size: int = 112, batch_size: int = 64, steps: int = 10, warmup: int = 2,
                            device: str = "auto", tasks: tuple[str, ...] = ("expr", "au", "va")) -> dict[str, float]:
    """Images/s of one optimizer step: bare ResNet-18 + cross-entropy vs the affect model + masked
    multi-task loss (same optimizer, precision and memory format)."""
    dev = resolve_device(device)
    amp = amp_dtype_for(dev, True)
    images = torch.randn(batch_size, 3, image_size, image_size, device=dev)
    fmt = torch.channels_last if dev.type == "cuda" else torch.contiguous_format
    images = images.contiguous(memory_format=fmt)
    n_classes = 8
    targets = {"expr": torch.randint(0, n_classes, (batch_size,), device=dev),
               "au": torch.randint(0, 2, (batch_size, 12), device=dev).float(),
               "va": torch.rand(batch_size, 2, device=dev) * 2 - 1}

    bare = torchvision.models.resnet18(weights=None, num_classes=n_classes).to(dev, memory_format=fmt)
    bare_opt = torch.optim.AdamW(bare.parameters(), lr=1e-4)

    def bare_step() -> None:
        with torch.autocast(dev.type, dtype=amp or torch.float32, enabled=amp is not None):
            loss = F.cross_entropy(bare(images).float(), targets["expr"])
        bare_opt.zero_grad(set_to_none=True)
        loss.backward()
        bare_opt.step()

    model = AffectModel(ModelConfig(tasks=list(tasks), input_size=image_size))
    module: nn.Module = TrainModule(model, MultiTaskLoss(tasks), amp).to(dev)
    module.model.to(memory_format=fmt)
    opt = torch.optim.AdamW(module.parameters(), lr=1e-4)

    def affect_step() -> None:
        loss, _ = module(images, targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    bare_ips = _images_per_second(bare_step, batch_size, steps, warmup, dev)
    affect_ips = _images_per_second(affect_step, batch_size, steps, warmup, dev)
    return {"bare_resnet18_images_per_second": round(bare_ips, 1),
            "affect_model_images_per_second": round(affect_ips, 1),
            "relative": round(affect_ips / bare_ips, 3), "image_size": image_size, "batch_size": batch_size,
            "device": str(dev), "threads": torch.get_num_threads()}
