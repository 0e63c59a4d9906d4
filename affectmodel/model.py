"""ResNet-18 trunk shared by one head per task; the same class is uni- or multi-task.

Save/load goes through ``huggingface_hub.PyTorchModelHubMixin`` (``model.safetensors`` +
``config.json`` from the :class:`ModelConfig` dataclass). Loading is always strict and never
unpickles.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

# The configuration and its bounds need no torch: they live in model_config (read by the ONNX path
# and the loader's validation) and are re-exported here, where the network that uses them lives.
from .model_config import (
    BACKBONES,
    FORWARD_FLOATS_PER_PIXEL,
    IMAGENET_MEAN,
    IMAGENET_STD,
    MAX_INPUT_SIZE,
    MIN_INPUT_SIZE,
    CheckpointError,
    ModelConfig,
    au_thresholds_of,
    forward_memory_bytes,
)
from .resnet import resnet
from .temporal import build_temporal


def bound_va(values: torch.Tensor, kind: str, training: bool) -> torch.Tensor:
    """Valence/arousal held in [-1, 1] (:data:`affectmodel.tasks.VA_BOUNDS`). In training, ``clamp``
    gives the clamped values with the gradient of the identity (straight through), so the loss still
    pulls back an output driven past a bound; otherwise exactly the clamp."""
    if kind == "tanh":
        return torch.tanh(values)
    bounded = values.clamp(-1.0, 1.0)
    return values + (bounded - values).detach() if training else bounded


def _resnet_trunk(name: str) -> tuple[nn.Module, int]:
    net = resnet(name)  # torchvision's network, without importing torchvision (affectmodel/resnet.py)
    features = net.fc.in_features
    net.fc = nn.Identity()  # type: ignore[assignment]  # features out: the heads classify
    return net, features


class AffectModel(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="affectmodel",
    tags=["facial-expression-recognition", "action-units", "valence-arousal", "affective-computing"],
    pipeline_tag="image-classification",
    license="mit",
):
    """``forward(images) -> {"expr": logits (n, C), "au": logits (n, 12), "va": (n, 2) in [-1, 1]}``
    for the configured tasks only."""

    def __init__(self, config: ModelConfig | dict | None = None):
        super().__init__()
        if isinstance(config, dict):  # from config.json; unknown keys are ignored
            config = ModelConfig(**{k: v for k, v in config.items() if k in ModelConfig.__dataclass_fields__})
        self.config = config if config is not None else ModelConfig()
        # The mixin serialises this object on save; keep it the same object as self.config so
        # later changes (e.g. tuned AU thresholds) are saved too.
        self._hub_mixin_config = self.config
        self.trunk, n_features = _resnet_trunk(self.config.backbone)
        self.dropout = nn.Dropout(self.config.dropout)
        self.n_features = n_features
        # None for per-frame models (and "smooth", whose averaging happens on the outputs)
        self.temporal = build_temporal(self.config.temporal, n_features, self.config.causal)
        self.heads = nn.ModuleDict({k: nn.Linear(n_features, n) for k, n in self.config.head_sizes().items()})

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.config.tasks)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Per-frame trunk features (n, F)."""
        return self.trunk(images)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Images (n, 3, S, S) give outputs (n, ...), each image read alone (a temporal model sees
        a window of one frame); windows (B, T, 3, S, S) give outputs (B, T, ...)."""
        if images.dim() == 5:
            b, t = images.shape[:2]
            z = self.features(images.flatten(0, 1))
            return self.sequence_outputs(z.reshape(b, t, -1))
        z = self.features(images)
        if self.temporal is not None:
            return {k: v[:, 0] for k, v in self.sequence_outputs(z[:, None]).items()}
        return self.head_outputs(z)

    def sequence_outputs(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Outputs (B, T, ...) of windows of per-frame features (B, T, F): the temporal module (if
        any) then the heads."""
        if self.temporal is not None:
            z = self.temporal(z.float())
        return self.head_outputs(z)

    def head_outputs(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """The task heads on features (..., F)."""
        z = self.dropout(z)
        # Heads run in fp32 even under autocast: in bf16 the VA outputs would be quantised to steps of
        # about 0.004 (and tanh saturates near 3.5); the heads are a tiny share of the work.
        device_type = z.device.type if z.device.type in ("cuda", "cpu", "xpu", "mps") else "cpu"
        with torch.autocast(device_type=device_type, enabled=False):
            z = z.float()
            out = {k: head(z) for k, head in self.heads.items()}
            if "va" in out:
                out["va"] = bound_va(out["va"], self.config.va_bound, self.training)
        return out

    def au_thresholds(self) -> torch.Tensor:
        return torch.tensor(au_thresholds_of(self.config))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``model.safetensors`` + ``config.json`` (no auto-generated model card)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "README.md").exists() or (directory / "README.md").write_text(
            "# affectmodel checkpoint\n\nLoad with `affectmodel.load_model(path)`.\n")
        self.save_pretrained(directory, config=self.config)
        return directory


__all__ = [
    "BACKBONES",
    "FORWARD_FLOATS_PER_PIXEL",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MAX_INPUT_SIZE",
    "MIN_INPUT_SIZE",
    "AffectModel",
    "CheckpointError",
    "ModelConfig",
    "forward_memory_bytes",
]
