"""Data plumbing of training: seeded views of the data sets, subsets, label arrays, the
training sampler and loss statistics.

Reproducibility: each sample's augmentation draws from an RNG seeded by ``(seed, epoch, index)``
(:class:`SeededSamples`), and every sampler is seeded by ``seed`` and the epoch, so the result does
not depend on the number of loader workers and a resumed run repeats what an uninterrupted one does.
"""
from __future__ import annotations

from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler

from ..data.samplers import ClassBalancedSampler, MultiTaskBatchSampler
from ..losses import au_pos_weight, inverse_frequency_weights
from ..metrics import valid_au, valid_expression
from ..model import ModelConfig
from ..tasks import get_label_space
from .config import NO_CACHE, TrainConfig, TrainingError


class SeededSamples(Dataset):
    """View of ``base`` (optionally a subset) yielding ``(image, targets, position)``.

    Each sample is produced under a private torch RNG seeded by ``(seed, epoch, position)``:
    random augmentation is then the same whatever the worker count or resume point. An item is a
    position, or ``(epoch, position)`` from an :class:`EpochSampler` (persistent loader workers
    hold their own copy of this view, so the epoch travels with the index).
    """

    def __init__(self, base: Dataset, indices: Sequence[int] | None, seed: int):
        self.base = base
        self.indices = list(range(len(base))) if indices is None else [int(i) for i in indices]
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int | tuple[int, int]):
        epoch, position = item if isinstance(item, tuple) else (self.epoch, item)
        sample_seed = ((self.seed * 1_000_003 + epoch) * 1_000_003 + position) % (2**63)
        with torch.random.fork_rng(devices=[]):
            # The CPU generator only: torch.manual_seed also queues lazy CUDA/XPU/MTIA seeding with
            # a formatted stack trace, about 2 ms per sample (profiled in benchmarks/training_throughput.py).
            torch.default_generator.manual_seed(sample_seed)
            image, targets = self.base[self.indices[position]]
        return image, targets, position


class CachedSamples(SeededSamples):
    """View of a frame cache split (:class:`affectmodel.data.cache.FrameCacheDataset`) read a
    batch at a time: ``__getitems__`` gives ``(uint8 images (B, 3, S, S), targets, positions)``
    with one read for the whole batch (use :func:`passthrough` as the loader's ``collate_fn``).
    Augmentation happens on the training device, on the whole batch
    (:class:`affectmodel.data.batch_augment.BatchAugment`, seeded per batch)."""

    def __init__(self, base: Dataset, indices: Sequence[int] | None, seed: int):
        super().__init__(base, indices, seed)
        self.index_array = np.asarray(self.indices, dtype=np.int64)

    def __getitems__(self, items: Sequence[int | tuple[int, int]]):
        positions = np.asarray([i[1] if isinstance(i, tuple) else i for i in items], dtype=np.int64)
        rows = self.index_array[positions]
        return self.base.read_batch(rows), self.base.batch_targets(rows), torch.from_numpy(positions)


def passthrough(batch: Any) -> Any:
    """``collate_fn`` for :class:`CachedSamples`: ``__getitems__`` already returns a whole batch."""
    return batch


def is_frame_cache(dataset: Dataset) -> bool:
    return hasattr(dataset, "read_batch") and hasattr(dataset, "batch_targets")


class EpochSampler(Sampler):
    """Wraps the training order for a loader created once (persistent workers): yields
    ``(epoch, index)`` (or batches of them), past the first ``skip`` items (mid-epoch resume).
    Call :meth:`set_epoch` before iterating the loader for an epoch."""

    def __init__(self, sampler: Sampler, batches: bool):
        self.sampler, self.batches = sampler, batches
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip
        self.sampler.set_epoch(epoch)  # type: ignore[attr-defined]

    def __iter__(self) -> Iterator:
        epoch = self.epoch
        for k, item in enumerate(self.sampler):
            if k < self.skip:
                continue
            yield [(epoch, int(i)) for i in item] if self.batches else (epoch, int(item))

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.skip)  # type: ignore[arg-type]


class SkipSampler(Sampler):
    """The first ``skip`` items of ``sampler`` (indices, or batches of a batch sampler) are
    dropped (mid-epoch resume)."""

    def __init__(self, sampler: Sampler, skip: int):
        self.sampler, self.skip = sampler, skip

    def __iter__(self) -> Iterator:
        return iter(list(self.sampler)[self.skip:])

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.skip)  # type: ignore[arg-type]


def subset_indices(n: int, limit: int | None, seed: int) -> list[int] | None:
    """A seeded random subset of ``limit`` items (sorted), or None for all."""
    if limit is None or limit >= n:
        return None
    g = torch.Generator().manual_seed(seed)
    return sorted(torch.randperm(n, generator=g)[:limit].tolist())


def label_arrays(dataset: Dataset, indices: Sequence[int] | None) -> dict[str, np.ndarray]:
    """Labels of the (subset of the) training set, from ``dataset.labels`` when it has them."""
    labels = getattr(dataset, "labels", None)
    if isinstance(labels, Mapping) and all(k in labels for k in ("expr", "au", "va")):
        sel = slice(None) if indices is None else np.asarray(indices)
        return {k: np.asarray(labels[k])[sel] for k in ("expr", "au", "va")}
    ids = range(len(dataset)) if indices is None else indices  # slow path: read every sample
    items = [dataset[i][1] for i in ids]
    return {k: np.stack([np.asarray(t[k]) for t in items]) for k in ("expr", "au", "va")}


def loss_statistics(config: TrainConfig, labels: Mapping[str, np.ndarray]
                    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Class weights (EXPR) and per-AU pos_weight from the training labels, when a loss uses them."""
    class_weights = pos_weight = None
    if "expr" in config.tasks and config.losses["expr"] in ("weighted_ce", "focal"):
        n_classes = len(get_label_space(config.expression_space))
        expr = np.asarray(labels["expr"]).astype(int)
        expr = expr[valid_expression(expr, n_classes)]
        counts = np.bincount(expr, minlength=n_classes)
        class_weights = inverse_frequency_weights(counts.tolist())
        if config.losses["expr"] == "focal" and counts.min() == 0:
            class_weights = None  # alpha of an absent class would be 0: plain focal instead
    if "au" in config.tasks and config.losses["au"] in ("weighted_bce", "focal"):
        au = np.asarray(labels["au"], dtype=float)
        valid = valid_au(au)
        positives = ((au == 1) & valid).sum(axis=0)
        negatives = ((au == 0) & valid).sum(axis=0)
        pos_weight = au_pos_weight(positives.tolist(), negatives.tolist())
    return class_weights, pos_weight


def build_train_sampler(config: TrainConfig, view: Dataset, labels: Mapping[str, np.ndarray], batch: int,
                        drop_last: bool, world_size: int, rank: int) -> Sampler:
    """The training order ``config.sampler`` names; call ``set_epoch(e)`` before each epoch.

    ``shuffle``: ``DistributedSampler`` (a generator seeded with ``seed + e``), shared by all
    processes. ``balanced`` yields indices, ``multitask`` yields whole batches (pass it as
    ``batch_sampler``); both draw for one process and are refused under torchrun.
    """
    if config.sampler == "shuffle":
        return DistributedSampler(view, num_replicas=world_size, rank=rank, shuffle=True, seed=config.seed,
                                  drop_last=False)
    if world_size > 1:
        raise TrainingError(f"sampler={config.sampler!r} draws for one process and cannot split its order over "
                            f"{world_size} processes: use sampler=shuffle under torchrun")
    n_classes = len(get_label_space(config.expression_space))
    try:
        if config.sampler == "balanced":
            return ClassBalancedSampler(labels["expr"], n_classes, num_samples=len(view), seed=config.seed)
        return MultiTaskBatchSampler(labels, batch, config.tasks, n_classes, seed=config.seed, drop_last=drop_last)
    except ValueError as e:
        raise TrainingError(f"sampler={config.sampler!r}: {e}") from None


def frame_cache_dir(config: TrainConfig) -> str | None:
    """The frame cache a run reads: ``config.cache``, else a complete one next to the data at the
    run's image size (:func:`affectmodel.data.cache.find_frame_cache`); None with ``cache=none``."""
    from ..data.cache import find_frame_cache

    if config.cache == NO_CACHE:
        return None
    if config.cache:
        return config.cache
    found = find_frame_cache(config.data, config.image_size) if config.data else None
    return str(found) if found is not None else None


def load_datasets(config: TrainConfig, model_config: ModelConfig) -> tuple[Dataset, Dataset, dict[str, Any]]:
    """Training and validation sets of ``config.data`` via :mod:`affectmodel.data`: from the frame
    cache when there is one (:func:`frame_cache_dir`: the same frames, labels and order as the
    JPEGs, checked against the data's annotations), else from the JPEGs."""
    from ..data import build_transform, load_affwild2

    if not config.data:
        raise TrainingError("no data folder given (--data ROOT)")
    common = dict(tasks=config.tasks, source=config.data_source, expression_space=config.expression_space)
    cache_dir = frame_cache_dir(config)
    if cache_dir is not None:
        from ..data.cache import open_frame_cache

        train = open_frame_cache(cache_dir, "train", root=config.data, **common)
        val = open_frame_cache(cache_dir, "validation", root=config.data, **common)
        if train.image_size != config.image_size:
            raise TrainingError(f"frame cache {cache_dir} holds {train.image_size} px frames, not image_size "
                                f"{config.image_size}: build one with --size {config.image_size} or pass --cache none")
        info = {"name": getattr(train, "dataset_name", "aff-wild2"), "synthetic": bool(getattr(train, "synthetic", False)),
                "root": str(config.data), "source": getattr(train, "stats", {}).get("source", config.data_source),
                "frame_cache": str(cache_dir)}
        return train, val, info
    train = load_affwild2(config.data, split="train", transform=build_transform(config.augment, model_config, True),
                          **common)
    val = load_affwild2(config.data, split="validation", transform=build_transform("none", model_config, False),
                        **common)
    info = {"name": getattr(train, "dataset_name", "aff-wild2"), "synthetic": bool(getattr(train, "synthetic", False)),
            "root": str(config.data), "source": getattr(train, "stats", {}).get("source", config.data_source)}
    return train, val, info
