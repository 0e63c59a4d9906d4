"""Image preprocessing and augmentation presets.

:func:`preprocess` is the one preprocessing step shared by training, evaluation and inference:
RGB, resize to ``config.input_size`` (square, bilinear with antialiasing), scale to [0, 1] and
normalise with ``config.mean`` / ``config.std`` — all read from the model config, so a published
model carries its own preprocessing.

Augmentation presets (training only; evaluation always uses plain :func:`preprocess`):

* ``none``: nothing.
* ``light``: horizontal flip, a small random resized crop (scale 0.85-1).
* ``strong``: ``light`` plus colour jitter, small rotation (±10°), occasional greyscale, and
  random erasing of a small patch.

None of them changes the labels: a horizontal flip mirrors the face, and expressions, the 12 AUs
(scored per AU, not per side) and valence/arousal are symmetric.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torchvision.transforms.v2 as T
from PIL import Image

from .normalise import PreprocessConfig, normalisation

AUGMENT_PRESETS: tuple[str, ...] = ("none", "light", "strong")


def preprocess(image: Image.Image, config: PreprocessConfig) -> torch.Tensor:
    """PIL image -> normalised float tensor (3, S, S), S = ``config.input_size``."""
    size = int(config.input_size)
    image = image.convert("RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    # (x / 255 - mean) / std in numpy, one pass: small torch ops each start an OpenMP region, which
    # made this a large share of the data-loading time on a busy 2-core machine.
    scale, shift = normalisation(tuple(config.mean), tuple(config.std))
    x = np.asarray(image, dtype=np.float32) * scale - shift
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


def _augmentations(preset: str, size: int) -> tuple[list, list]:
    """(PIL-stage transforms, tensor-stage transforms) of a preset."""
    light = [T.RandomResizedCrop(size, scale=(0.85, 1.0), ratio=(0.95, 1.05), antialias=True),
             T.RandomHorizontalFlip(0.5)]
    if preset == "light":
        return light, []
    if preset == "strong":
        return ([*light, T.RandomApply([T.ColorJitter(0.3, 0.3, 0.3, 0.03)], p=0.8),
                 T.RandomRotation(10, interpolation=T.InterpolationMode.BILINEAR),
                 T.RandomGrayscale(0.05)],
                [T.RandomErasing(p=0.25, scale=(0.02, 0.12), ratio=(0.5, 2.0), value=0)])
    return [], []


@dataclass
class ImageTransform:
    """Picklable callable (DataLoader workers): augment (optional), then :func:`preprocess`."""

    config: PreprocessConfig
    preset: str = "none"
    train: bool = False

    def __post_init__(self) -> None:
        if self.preset not in AUGMENT_PRESETS:
            raise ValueError(f"unknown augmentation preset {self.preset!r}; choose from {', '.join(AUGMENT_PRESETS)}")
        pil, tensor = _augmentations(self.preset if self.train else "none", int(self.config.input_size))
        self._pil = T.Compose(pil) if pil else None
        self._tensor = T.Compose(tensor) if tensor else None

    def __call__(self, image: Image.Image) -> torch.Tensor:
        image = image.convert("RGB")
        if self._pil is not None:
            image = self._pil(image)
        x = preprocess(image, self.config)
        if self._tensor is not None:
            x = self._tensor(x)
        return x


def build_transform(preset: str, config: PreprocessConfig, train: bool) -> Callable[[Image.Image], torch.Tensor]:
    """The transform for a data set: augmentation ``preset`` when ``train``, then :func:`preprocess`."""
    return ImageTransform(config, preset, train)


def denormalize(x: torch.Tensor, config: PreprocessConfig) -> torch.Tensor:
    """Inverse of the normalisation, to [0, 1] (for showing augmented samples)."""
    mean = torch.tensor(config.mean, dtype=x.dtype).view(3, 1, 1)
    std = torch.tensor(config.std, dtype=x.dtype).view(3, 1, 1)
    return (x * std + mean).clamp(0, 1)


__all__ = ["AUGMENT_PRESETS", "ImageTransform", "build_transform", "denormalize", "preprocess"]
