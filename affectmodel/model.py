"""ResNet-18 trunk shared by one head per task; the same class is uni- or multi-task.

Save/load goes through ``huggingface_hub.PyTorchModelHubMixin`` (``model.safetensors`` +
``config.json`` from the :class:`ModelConfig` dataclass). Loading is always strict and never
unpickles.
"""
from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn
import torchvision
from huggingface_hub import PyTorchModelHubMixin
from safetensors import SafetensorError

from .tasks import AU_NAMES, DEFAULT_EXPRESSION_SPACE, VA_NAMES, get_label_space, parse_tasks

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BACKBONES = ("resnet18",)
INIT_CHOICES = ("random", "imagenet")  # or a path: weights file / checkpoint folder / run folder


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
    # Derived, written for readers of config.json outside this package; recomputed on load.
    labels: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tasks = list(parse_tasks(self.tasks))
        space = get_label_space(self.expression_space)
        self.expression_space = space.name
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {self.backbone!r}; available: {', '.join(BACKBONES)}")
        if self.au_thresholds is not None and len(self.au_thresholds) != len(AU_NAMES):
            raise ValueError(f"au_thresholds needs {len(AU_NAMES)} values, got {len(self.au_thresholds)}")
        self.labels = {k: list(v) for k, v in (("expr", space.labels), ("au", AU_NAMES), ("va", VA_NAMES))
                       if k in self.tasks}

    def head_sizes(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.labels.items()}


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
        self.heads = nn.ModuleDict({k: nn.Linear(n_features, n) for k, n in self.config.head_sizes().items()})

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.config.tasks)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.trunk(images)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.dropout(self.features(images))
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

    @classmethod
    def load(cls, directory: str | os.PathLike, map_location: str = "cpu") -> "AffectModel":
        """Strict local load of a folder written by :meth:`save` (safetensors only)."""
        directory = Path(directory)
        for name in ("config.json", "model.safetensors"):
            if not (directory / name).is_file():
                raise CheckpointError(f"{directory} is not a model folder: {name} is missing")
        try:
            # The mixin prints "Loading weights from local directory"; keep stdout clean for
            # commands that print JSON.
            with contextlib.redirect_stdout(io.StringIO()):
                return cls.from_pretrained(str(directory), strict=True, map_location=map_location)
        except SafetensorError as e:  # not a safetensors file, or a damaged one (never unpickled)
            raise CheckpointError(f"cannot read weights from {directory / 'model.safetensors'}: {e}") from None
        except (RuntimeError, ValueError, TypeError) as e:
            raise CheckpointError(f"checkpoint {directory} does not match the model config: {e}") from e


# ------------------------------------------------------------------ initialisation

def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read tensors from safetensors or a weights-only torch file (never unpickles objects)."""
    if not path.exists():
        raise CheckpointError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure here means an unusable file
        raise CheckpointError(f"cannot read weights from {path}: {e}") from e
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} does not hold a state dict")
    return state


def backbone_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Extract trunk weights from a torchvision ResNet or an ``AffectModel`` state dict."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.")  # DDP checkpoints
        if key.startswith("trunk."):
            out[key.removeprefix("trunk.")] = value
        elif not key.startswith(("fc.", "heads.")) and "." in key:
            out[key] = value
    return out


def load_backbone(model: AffectModel, source: str | os.PathLike) -> None:
    """Initialise the trunk from a weights file, a model folder, or a run folder (``<run>/model``).

    Heads stay as they are. The trunk must match exactly (strict), so a wrong file fails loudly.
    """
    path = Path(source)
    if path.is_dir():
        folder = path / "model" if (path / "model" / "model.safetensors").exists() else path
        path = folder / "model.safetensors"
    state = backbone_state_dict(_read_state_dict(path))
    try:
        model.trunk.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"backbone weights in {path} do not fit {model.config.backbone}: {e}") from e


def load_imagenet(model: AffectModel) -> None:
    """torchvision's ImageNet weights for the trunk; offline, explain how to supply the file."""
    weights = torchvision.models.get_model_weights(model.config.backbone).IMAGENET1K_V1
    try:
        state = weights.get_state_dict(progress=False)
    except Exception as e:  # noqa: BLE001 - URLError, socket errors, SSL errors...
        filename = os.path.basename(weights.url)
        hub_dir = Path(torch.hub.get_dir()) / "checkpoints"
        raise CheckpointError(
            f"ImageNet weights for {model.config.backbone} could not be downloaded ({e.__class__.__name__}). "
            f"Offline, download {weights.url} elsewhere and either put it at {hub_dir / filename} "
            f"or pass the file with --init {filename}."
        ) from e
    model.trunk.load_state_dict(backbone_state_dict(state), strict=True)


def build_model(config: ModelConfig | None = None, init: str | os.PathLike = "random") -> AffectModel:
    """Create a model and initialise its trunk: ``random``, ``imagenet``, or a path to a weights
    file (torchvision ResNet or this project's), a model folder or a run folder (backbone transfer,
    e.g. uni-task to multi-task)."""
    model = AffectModel(config or ModelConfig())
    if str(init) == "random":
        return model
    if str(init) == "imagenet":
        load_imagenet(model)
        return model
    load_backbone(model, init)
    return model


def count_parameters(tasks: Sequence[str] = ("expr", "au", "va")) -> int:
    return AffectModel(ModelConfig(tasks=list(tasks))).num_parameters()
