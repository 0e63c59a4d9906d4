"""ResNet-18 trunk shared by one head per task; the same class is uni- or multi-task.

Save/load goes through ``huggingface_hub.PyTorchModelHubMixin`` (``model.safetensors`` +
``config.json`` from the :class:`ModelConfig` dataclass). Loading is always strict and never
unpickles.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torchvision
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from .tasks import AU_NAMES, DEFAULT_EXPRESSION_SPACE, get_label_space, get_task, parse_tasks
from .temporal import MAX_WINDOW, TEMPORAL_KINDS, build_temporal

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BACKBONES = ("resnet18",)
# Bounds on config.json, which may come from a stranger's Hub repository. Aff-Wild2's aligned crops
# are 112 px; 1024 px is far above any useful face size and keeps one face's forward pass near 0.2 GB.
MIN_INPUT_SIZE, MAX_INPUT_SIZE = 16, 1024
# Float32 values alive per input pixel during one face's forward pass at most: input and normalised
# copy (3 + 3 channels), the stride-2 stem's 64 channels at a quarter of the pixels (16) and its
# batch-norm/ReLU output (16). Measured peak for input_size 20000 was 23.7 GB, i.e. about 15 per pixel.
FORWARD_FLOATS_PER_PIXEL = 38


class CheckpointError(RuntimeError):
    """A checkpoint or weights file is missing, unreadable or does not match the model."""


@dataclass
class ModelConfig:
    """Everything needed to rebuild the network and preprocess its input (saved as config.json)."""

    tasks: list[str] = field(default_factory=lambda: ["expr", "au", "va"])
    expression_space: str = DEFAULT_EXPRESSION_SPACE.name
    backbone: str = "resnet18"
    input_size: int = 112
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))
    dropout: float = 0.0
    # Per-AU decision thresholds tuned on validation data (None = 0.5 for every AU).
    au_thresholds: list[float] | None = None
    # Temporal context (affectmodel.temporal): the module over per-frame features, the window of
    # frames it was trained on, and whether it looks back only (streaming) or both ways.
    temporal: str = "none"
    window: int = 1
    causal: bool = False
    # Derived, written for readers of config.json outside this package; recomputed on load.
    labels: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Check every field against sane bounds (a config may come from an untrusted repository);
        errors are one line naming the field."""
        tasks: object = self.tasks  # typed, but read from a file that may hold anything
        if not isinstance(tasks, (list, tuple, str)) or not all(isinstance(t, str) for t in tasks):
            raise ValueError(f"field 'tasks' must be a list of task names, got {self.tasks!r}")
        self.tasks = list(parse_tasks(self.tasks))
        if not isinstance(self.expression_space, str):
            raise ValueError(f"field 'expression_space' must be a name, got {self.expression_space!r}")
        space = get_label_space(self.expression_space)
        self.expression_space = space.name
        if self.backbone not in BACKBONES:
            raise ValueError(f"field 'backbone': unknown backbone {self.backbone!r}; available: {', '.join(BACKBONES)}")
        if not _is_int(self.input_size) or not MIN_INPUT_SIZE <= self.input_size <= MAX_INPUT_SIZE:
            raise ValueError(f"field 'input_size' must be a whole number of pixels in "
                             f"[{MIN_INPUT_SIZE}, {MAX_INPUT_SIZE}], got {self.input_size!r}")
        self.input_size = int(self.input_size)
        self.mean = _finite_list("mean", self.mean, 3, low=-10.0, high=10.0)
        self.std = _finite_list("std", self.std, 3, low=1e-6, high=1e3)
        if not _is_number(self.dropout) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"field 'dropout' must be a number in [0, 1), got {self.dropout!r}")
        if self.au_thresholds is not None:
            self.au_thresholds = _finite_list("au_thresholds", self.au_thresholds, len(AU_NAMES), low=0.0, high=1.0)
        if self.temporal not in TEMPORAL_KINDS:
            raise ValueError(f"field 'temporal' must be one of {', '.join(TEMPORAL_KINDS)}, got {self.temporal!r}")
        if not _is_int(self.window) or not 1 <= self.window <= MAX_WINDOW:
            raise ValueError(f"field 'window' must be a whole number of frames in [1, {MAX_WINDOW}], "
                             f"got {self.window!r}")
        if not isinstance(self.causal, bool):
            raise ValueError(f"field 'causal' must be true or false, got {self.causal!r}")
        if self.temporal == "none":  # a per-frame model has no window
            self.window, self.causal = 1, False
        self.labels = {k: list(get_task(k, space).labels) for k in self.tasks}

    def head_sizes(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.labels.items()}


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _finite_list(name: str, values, length: int, low: float, high: float) -> list[float]:
    """``values`` as a list of ``length`` finite numbers in [low, high], or a one-line error."""
    if not isinstance(values, (list, tuple)) or len(values) != length:
        raise ValueError(f"field {name!r} needs a list of {length} numbers, got {values!r}")
    for i, v in enumerate(values):
        if not _is_number(v) or not low <= v <= high:
            raise ValueError(f"field {name!r}: value {i} must be a finite number in [{low:g}, {high:g}], got {v!r}")
    return [float(v) for v in values]


def forward_memory_bytes(input_size: int, faces: int = 1) -> int:
    """Upper estimate of the memory one forward pass of ``faces`` crops needs (checked before any
    allocation, so a hostile ``input_size`` cannot take the machine down)."""
    return 4 * FORWARD_FLOATS_PER_PIXEL * int(input_size) ** 2 * int(faces)


def _resnet_trunk(name: str) -> tuple[nn.Module, int]:
    net = getattr(torchvision.models, name)(weights=None)
    features = net.fc.in_features
    net.fc = nn.Identity()
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
        # Heads run in fp32 even under autocast: in bf16 the VA tanh saturates near 3.5 and its
        # outputs are quantised to steps of about 0.004; the heads are a tiny share of the work.
        device_type = z.device.type if z.device.type in ("cuda", "cpu", "xpu", "mps") else "cpu"
        with torch.autocast(device_type=device_type, enabled=False):
            z = z.float()
            out = {k: head(z) for k, head in self.heads.items()}
            if "va" in out:
                out["va"] = torch.tanh(out["va"])  # valence/arousal are bounded to [-1, 1]
        return out

    def au_thresholds(self) -> torch.Tensor:
        thr = self.config.au_thresholds
        return torch.tensor(thr if thr is not None else [0.5] * len(AU_NAMES))

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
