"""Tiny in-memory data sets that follow the target contract, for the training tests."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from affectmodel.tasks import ABAW8, AU_NAMES


class TinyAffectSet(Dataset):
    """Random images whose labels depend on the image (so training can lower the loss).

    ``missing``: fraction of rows without a label, per task, to exercise masking.
    """

    dataset_name = "tiny-test-set"
    synthetic = True

    def __init__(self, n: int = 24, size: int = 32, seed: int = 0, missing: float = 0.25):
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

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        # A random flip, so that augmentation randomness is part of what resume must reproduce.
        image = self.images[i]
        if torch.rand(()) < 0.5:
            image = image.flip(-1)
        return image, {"expr": torch.tensor(self.labels["expr"][i]), "au": torch.from_numpy(self.labels["au"][i]),
                       "va": torch.from_numpy(self.labels["va"][i])}
