"""Tiny in-memory data sets that follow the target contract, for the training tests."""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch.utils.data import Dataset

from affectmodel.data.dataset import valid_label_masks
from affectmodel.tasks import ABAW8, AU_NAMES


class TinyAffectSet(Dataset):
    """Random images whose labels depend on the image (so training can lower the loss).

    ``missing``: fraction of rows without a label, per task, to exercise masking. Like every
    affectmodel reader, it names the video of each sample (``frames_per_video`` frames each, named
    ``<prefix>NN``), so development splits and label budgets work on it.
    """

    dataset_name = "tiny-test-set"
    synthetic = True

    def __init__(self, n: int = 24, size: int = 32, seed: int = 0, missing: float = 0.25, frames_per_video: int = 4,
                 prefix: str = "video"):
        g = np.random.default_rng(seed)
        self.images = torch.from_numpy(g.normal(size=(n, 3, size, size)).astype(np.float32))
        brightness = self.images.mean(dim=(1, 2, 3)).numpy()
        expr = (np.argsort(np.argsort(brightness)) * len(ABAW8) // n).astype(np.int64)
        au = (g.random((n, len(AU_NAMES))) < 0.3).astype(np.float32)
        va = np.clip(np.stack([brightness * 40, -brightness * 40], axis=1), -1, 1).astype(np.float32)
        expr[g.random(n) < missing] = -1
        au[g.random(n) < missing] = -1
        va[g.random(n) < missing] = -5
        self.labels = {"expr": expr, "au": au, "va": va}
        self.videos = [f"{prefix}{i:02d}" for i in range((n + frames_per_video - 1) // frames_per_video)]
        self.video_ids = np.arange(n, dtype=np.int64) // frames_per_video
        self.frame_numbers = np.arange(n, dtype=np.int64) % frames_per_video + 1

    def frame_keys(self) -> list[str]:
        return [f"{self.videos[v]}/{int(f)}" for v, f in zip(self.video_ids, self.frame_numbers, strict=True)]

    def valid_masks(self) -> dict[str, np.ndarray]:
        return valid_label_masks(self.labels, len(ABAW8))

    def subset(self, indices) -> TinyAffectSet:
        idx = np.asarray(indices, dtype=np.int64)
        new = copy.copy(self)
        new.images = self.images[idx]
        new.labels = {k: v[idx] for k, v in self.labels.items()}
        new.video_ids, new.frame_numbers = self.video_ids[idx], self.frame_numbers[idx]
        return new

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        # A random flip, so that augmentation randomness is part of what resume must reproduce.
        image = self.images[i]
        if torch.rand(()) < 0.5:
            image = image.flip(-1)
        return image, {"expr": torch.tensor(self.labels["expr"][i]), "au": torch.from_numpy(self.labels["au"][i]),
                       "va": torch.from_numpy(self.labels["va"][i])}


class ValenceArousalSet(TinyAffectSet):
    """Images whose valence and arousal labels are visible: the red channel is brighter with
    valence, the blue one with arousal, under pixel noise (a VA head can learn it in a few dozen
    steps). Labels spread over [-0.9, 0.9] like real ones, with the arousal mean above zero."""

    dataset_name = "va-test-set"

    def __init__(self, n: int = 128, size: int = 32, seed: int = 0, frames_per_video: int = 4, noise: float = 0.6):
        super().__init__(n, size, seed, missing=0.0, frames_per_video=frames_per_video)
        g = np.random.default_rng(seed + 100)
        va = np.stack([g.uniform(-0.9, 0.9, n), np.clip(g.normal(0.25, 0.4, n), -0.9, 0.9)], axis=1)
        images = g.normal(0, noise, size=(n, 3, size, size))
        images[:, 0] += va[:, :1, None]
        images[:, 2] += va[:, 1:, None]
        self.images = torch.from_numpy(images.astype(np.float32))
        self.labels = {**self.labels, "va": va.astype(np.float32)}
