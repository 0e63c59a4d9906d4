"""The in-memory labelled image set that every reader returns.

An item is ``(image_tensor (3, H, W) float, {"expr": int64 scalar, "au": float32 (12,),
"va": float32 (2,)})`` with all three keys always present; -1 / -5 mark missing labels
(``affectmodel.tasks``). Labels live in numpy arrays (``.labels``) so samplers and loss
statistics never need to open an image.

Every data set also says which video each sample comes from (``videos``, ``video_ids``,
``frame_numbers``), so development splits, bootstraps and leakage checks work by whole video.
Per-image sets (AffectNet, folder-per-class) are read as one one-frame "video" per image.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..images import ImageLoadError
from ..images import load_image as read_rgb
from ..metrics import valid_rows
from ..tasks import AU_NAMES, AU_TASK, TASK_KEYS, VA_NAMES, VA_TASK, get_label_space
from .paths import PathList

Transform = Callable[[Image.Image], torch.Tensor]


class ImageReadError(ValueError):
    """An image file exists but cannot be decoded (the message names the file)."""


def load_image(path: str | Path) -> Image.Image:
    """Open an image as RGB, with an error that names the file when it is missing or corrupt."""
    # The inference loader handles every mode (16-bit, CMYK, palette...), EXIF orientation and the
    # pixel limit, so training and inference read images the same way.
    try:
        return Image.fromarray(read_rgb(path))
    except FileNotFoundError:
        raise FileNotFoundError(f"image not found: {path}") from None
    except ImageLoadError as e:
        raise ImageReadError(f"cannot read image {path}: {e}") from e


def image_key(path: Path, root: Path | None) -> str:
    """An image's path relative to ``root`` (POSIX form) when inside it, else the full path."""
    path = Path(path)
    if root is not None:
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            pass
    return path.as_posix()


def empty_labels(n: int) -> dict[str, np.ndarray]:
    """Label arrays for ``n`` samples, all "not annotated"."""
    return {
        "expr": np.full(n, -1, dtype=np.int64),
        "au": np.full((n, len(AU_NAMES)), AU_TASK.invalid_code, dtype=np.float32),
        "va": np.full((n, len(VA_NAMES)), VA_TASK.invalid_code, dtype=np.float32),
    }


def valid_label_masks(labels: dict[str, np.ndarray], num_classes: int) -> dict[str, np.ndarray]:
    """Per task, bool (n,): the sample carries a usable label (AU: at least one AU annotated)."""
    return {task: valid_rows(task, labels[task], num_classes) for task in ("expr", "au", "va")}


@dataclass(eq=False)
class ImageLabelDataset(Dataset):
    """Images on disk + label arrays in memory (a ``torch.utils.data.Dataset``)."""

    image_paths: Sequence[Path]  # given as a list, kept as a PathList; or a frame cache's lazy sequence
    labels: dict[str, np.ndarray]
    tasks: tuple[str, ...] = TASK_KEYS
    transform: Transform | None = None
    expression_space: str = "abaw8"
    dataset_name: str = "images"
    synthetic: bool = False
    root: Path | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    bad_lines: list[str] = field(default_factory=list)  # lines skipped with skip_bad_lines
    videos: list[str] = field(default_factory=list)     # video names; per-image sets: image paths
    video_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # (n,) into videos
    frame_numbers: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # (n,) 1-based

    def __post_init__(self) -> None:
        if isinstance(self.image_paths, (list, tuple)):
            # a few arrays instead of a Path per frame, shared untouched by forked loader workers
            self.image_paths = PathList(self.image_paths)
        n = len(self.image_paths)
        for key, shape in (("expr", (n,)), ("au", (n, len(AU_NAMES))), ("va", (n, len(VA_NAMES)))):
            if key not in self.labels or self.labels[key].shape != shape:
                raise ValueError(f"labels[{key!r}] must have shape {shape}")
        if n and not len(self.video_ids):  # per-image set: each image is its own one-frame video
            self.videos = [image_key(p, self.root) for p in self.image_paths]
            self.video_ids = np.arange(n, dtype=np.int64)
            self.frame_numbers = np.ones(n, dtype=np.int64)
        if self.video_ids.shape != (n,) or self.frame_numbers.shape != (n,):
            raise ValueError(f"video_ids and frame_numbers must have shape ({n},)")
        if self.transform is None:
            from ..model import ModelConfig
            from .transforms import build_transform
            self.transform = build_transform("none", ModelConfig(expression_space=self.expression_space), False)

    def __len__(self) -> int:
        return len(self.image_paths)

    def targets(self, index: int) -> dict[str, torch.Tensor]:
        return {
            "expr": torch.tensor(int(self.labels["expr"][index]), dtype=torch.int64),
            "au": torch.from_numpy(self.labels["au"][index].astype(np.float32, copy=True)),
            "va": torch.from_numpy(self.labels["va"][index].astype(np.float32, copy=True)),
        }

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        image = load_image(self.image_paths[index])
        return self.transform(image), self.targets(index)  # type: ignore[misc]

    # -- label statistics (loss weights, samplers, reports)

    @property
    def num_classes(self) -> int:
        return len(get_label_space(self.expression_space))

    def valid_masks(self) -> dict[str, np.ndarray]:
        return valid_label_masks(self.labels, self.num_classes)

    def class_counts(self) -> np.ndarray:
        """Samples per expression class (int64, one per class of ``expression_space``)."""
        expr = self.labels["expr"]
        return np.bincount(expr[self.valid_masks()["expr"]], minlength=self.num_classes).astype(np.int64)

    def au_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """(positives, negatives) per AU over annotated samples (int64, 12 each)."""
        au = self.labels["au"]
        return (au == 1).sum(axis=0).astype(np.int64), (au == 0).sum(axis=0).astype(np.int64)

    def au_positive_counts(self) -> np.ndarray:
        return self.au_counts()[0]

    def subset(self, indices: Sequence[int] | np.ndarray) -> ImageLabelDataset:
        """A copy holding only ``indices`` (same transform and metadata)."""
        idx = np.asarray(indices, dtype=np.int64)
        return self._copy_with(idx)

    def _copy_with(self, idx: np.ndarray) -> ImageLabelDataset:
        import copy
        new = copy.copy(self)
        paths = self.image_paths
        new.image_paths = paths.take(idx) if isinstance(paths, PathList) else [paths[i] for i in idx]
        new.labels = {k: v[idx] for k, v in self.labels.items()}
        new.video_ids = self.video_ids[idx]
        new.frame_numbers = self.frame_numbers[idx]
        return new

    def video_names(self) -> list[str]:
        """The video name of every sample (n,)."""
        return [self.videos[i] for i in self.video_ids]

    def frame_keys(self) -> list[str]:
        """A name for every sample that is the same in every load of this data (``<video>/<frame>``),
        used to match frames across data sets of the same root (tasks differ, splits differ)."""
        return [f"{self.videos[v]}/{int(f)}" for v, f in zip(self.video_ids, self.frame_numbers, strict=True)]


__all__ = ["ImageLabelDataset", "ImageReadError", "empty_labels", "image_key", "load_image", "valid_label_masks"]
