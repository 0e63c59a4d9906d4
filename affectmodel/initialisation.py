"""A new model with its trunk initialised: from nothing, torchvision's ImageNet weights, a weights
file, a model folder or a run folder (backbone transfer, e.g. a uni-task run into a multi-task one).

This sits above :mod:`affectmodel.model` and the one model loader (:mod:`affectmodel.hub.loading`),
so folders and files given as ``--init`` pass the same validation as any other model a user loads.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .hub.loading import load_model, read_weights_file
from .model import AffectModel, CheckpointError, ModelConfig


def backbone_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Extract trunk weights from a torchvision ResNet or an ``AffectModel`` state dict."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.")  # DDP checkpoints
        if key.startswith("trunk."):
            out[key.removeprefix("trunk.")] = value
        elif not key.startswith(("fc.", "heads.", "temporal.")) and "." in key:
            out[key] = value
    return out


def load_backbone(model: AffectModel, source: str | os.PathLike) -> None:
    """Initialise the trunk from a weights file, a model folder, or a run folder (``<run>/model``).

    Folders go through the one model loader (:func:`affectmodel.hub.loading.load_model`: config
    bounds, finite weights, strict shapes); files through its weights reader. Heads stay as they
    are. The trunk must match exactly (strict), so a wrong file fails loudly.
    """
    path = Path(source)
    if path.is_dir():
        state = load_model(path).state_dict()
    else:
        state = read_weights_file(path)
    state = backbone_state_dict(state)
    try:
        model.trunk.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"backbone weights in {path} do not fit {model.config.backbone}: {e}") from e


def load_imagenet(model: AffectModel) -> None:
    """torchvision's ImageNet weights for the trunk; offline, explain how to supply the file."""
    import torchvision  # only here: importing it costs about 1.3 s (affectmodel/resnet.py says why)

    weights = torchvision.models.get_model_weights(model.config.backbone).IMAGENET1K_V1
    try:
        state = weights.get_state_dict(progress=False)
    except Exception as e:
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


__all__ = ["backbone_state_dict", "build_model", "load_backbone", "load_imagenet"]
