"""Data plumbing of training: seeded views of the data sets, subsets, label arrays, the
training sampler and loss statistics.

Reproducibility: each sample's augmentation draws from an RNG seeded by ``(seed, epoch, index)``
(:class:`SeededSamples`), and every sampler is seeded by ``seed`` and the epoch, so the result does
not depend on the number of loader workers and a resumed run repeats what an uninterrupted one does.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeGuard

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler

from ..data.samplers import ClassBalancedSampler, MultiTaskBatchSampler
from ..losses import au_pos_weight, inverse_frequency_weights
from ..metrics import valid_au, valid_expression, valid_rows
from ..model import ModelConfig
from ..tasks import get_label_space
from .config import NO_CACHE, TrainConfig, TrainingError

if TYPE_CHECKING:
    from ..data.cache import FrameCacheDataset
    from ..data.dataset import ImageLabelDataset

# Seed of the validation label choice (limit_val): fixed, so every run of a study is scored on the
# same frames whatever its own seed.
VALIDATION_SEED = 0


class SeededSamples(Dataset):
    """View of ``base`` (optionally a subset) yielding ``(image, targets, position)``.

    Each sample is produced under a private torch RNG seeded by ``(seed, epoch, position)``:
    random augmentation is then the same whatever the worker count or resume point. An item is a
    position, or ``(epoch, position)`` from an :class:`EpochSampler` (persistent loader workers
    hold their own copy of this view, so the epoch travels with the index).
    """

    def __init__(self, base: Any, indices: Sequence[int] | None, seed: int):
        # ``base``: any map-style data set with a length (torch's Dataset declares no __len__).
        self.base = base
        # an array, not a list of ints: loader workers share it with the parent untouched
        self.indices = np.arange(len(base), dtype=np.int64) if indices is None else np.asarray(indices, dtype=np.int64)
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
            image, targets = self.base[int(self.indices[position])]
        return image, targets, position


class CachedSamples(SeededSamples):
    """View of a frame cache split (:class:`affectmodel.data.cache.FrameCacheDataset`) read a
    batch at a time: ``__getitems__`` gives ``(uint8 images (B, 3, S, S), targets, positions)``
    with one read for the whole batch (use :func:`passthrough` as the loader's ``collate_fn``).
    Augmentation happens on the training device, on the whole batch
    (:class:`affectmodel.data.batch_augment.BatchAugment`, seeded per batch)."""

    base: FrameCacheDataset

    def __init__(self, base: Any, indices: Sequence[int] | None, seed: int):  # a FrameCacheDataset
        super().__init__(base, indices, seed)

    def __getitems__(self, items: Sequence[int | tuple[int, int]]):
        positions = np.asarray([i[1] if isinstance(i, tuple) else i for i in items], dtype=np.int64)
        rows = self.indices[positions]
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


def label_arrays(dataset: Any, indices: Sequence[int] | None) -> dict[str, np.ndarray]:
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


def build_train_sampler(config: TrainConfig, view: SeededSamples, labels: Mapping[str, np.ndarray], batch: int,
                        drop_last: bool, world_size: int, rank: int
                        ) -> DistributedSampler | ClassBalancedSampler | MultiTaskBatchSampler:
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


def load_datasets(config: TrainConfig, model_config: ModelConfig
                  ) -> tuple[ImageLabelDataset, ImageLabelDataset, dict[str, Any]]:
    """Training and validation sets of ``config.data``, plus the data set's description for the run
    record (with the training set's leakage counts, Aff-Wild2 only): from the frame cache when there
    is one (:func:`frame_cache_dir`: the same frames, labels and order as the JPEGs, checked against
    the data's annotations), else in any format :func:`affectmodel.data.load_dataset` detects
    (Aff-Wild2 or the synthetic benchmark, AffectNet-style CSVs, folder-per-class sets with their
    expression classes mapped by concept)."""
    from ..data import build_transform
    from ..data.fingerprint import data_fingerprint, generator_facts
    from ..data.registry import load_dataset

    if not config.data:
        raise TrainingError("no data folder given (--data ROOT)")
    options: dict[str, Any] = {}
    if config.data_source != "auto":
        options["source"] = config.data_source
    if config.keep_leaking_videos:
        options["exclude_leaking_videos"] = False
    common = dict(tasks=config.tasks, expression_space=config.expression_space, **options)
    cache_dir = frame_cache_dir(config)
    extra: dict[str, Any] = {}
    if cache_dir is not None and config.keep_leaking_videos:
        # A frame cache holds the default splits (leaking videos left out of training): training on
        # it would silently ignore the option.
        raise TrainingError(f"keep_leaking_videos needs the JPEGs, not the frame cache {cache_dir} (built without "
                            "the leaking videos): pass --cache none")
    if cache_dir is not None:
        from ..data.cache import larger_than_memory, open_frame_cache

        cache_options: dict[str, Any] = {"tasks": config.tasks, "source": config.data_source,
                         "expression_space": config.expression_space}
        cached = open_frame_cache(cache_dir, "train", root=config.data, **cache_options)
        if cached.image_size != config.image_size:
            raise TrainingError(f"frame cache {cache_dir} holds {cached.image_size} px frames, not image_size "
                                f"{config.image_size}: build one with --size {config.image_size} or pass --cache none")
        train: ImageLabelDataset = cached
        val: ImageLabelDataset = open_frame_cache(cache_dir, "validation", root=config.data, **cache_options)
        extra["frame_cache"] = str(cache_dir)
        too_large = larger_than_memory(cache_dir, ["train", "validation"])
        if too_large and os.environ.get("LOCAL_RANK", "0") == "0":  # said once per machine under torchrun
            warnings.warn(too_large, stacklevel=2)
    else:
        train = load_dataset(config.data, split="train",
                             transform=build_transform(config.augment, model_config, True), **common)
        val = load_dataset(config.data, split="validation", transform=build_transform("none", model_config, False),
                           **common)
    stats = getattr(train, "stats", {}) or {}
    info = {"name": getattr(train, "dataset_name", "aff-wild2"), "synthetic": bool(getattr(train, "synthetic", False)),
            "root": str(config.data), "format": stats.get("format"), "source": stats.get("source", config.data_source),
            "leakage": stats.get("leakage"), **extra}
    # Which data, in one digest the study compares (never pools runs whose data differ), and for a
    # generated set what generated it (data/fingerprint.py).
    info["fingerprint"] = data_fingerprint(config.data)
    generator = generator_facts(config.data)
    if generator is not None:
        info["generator"] = generator
    return train, val, info


# ------------------------------------------------------------------ the data a run trains, selects and reports on

@dataclass
class RunData:
    """What one run uses: ``train`` (label-limited), ``development`` (held-out training videos, or
    None with ``dev_fraction = 0``), ``validation`` (reported only), and the record's facts."""

    train: Dataset
    development: Dataset | None
    validation: Dataset
    facts: dict[str, Any] = field(default_factory=dict)


def names_videos(dataset: Any) -> TypeGuard[ImageLabelDataset]:
    """True for data sets that say which video each sample comes from (every affectmodel reader:
    :class:`affectmodel.data.dataset.ImageLabelDataset` and its subclasses, or a look-alike)."""
    return all(hasattr(dataset, a) for a in ("frame_keys", "video_ids", "videos", "subset", "valid_masks"))


def prepare_run_data(config: TrainConfig, train: Dataset, validation: Dataset,
                     development: Dataset | None = None, eval_transform: Any = None) -> RunData:
    """Development split, label budgets and the validation subset, the same for every run of a study.

    Order: ``development_split(train, dev_fraction)`` (whole training videos, chosen by name) →
    ``limit_labels(rest, tasks, limit_train, seed)`` → ``limit_labels(validation, tasks, limit_val,
    seed 0)`` (a fixed seed: every run and seed is scored on the same frames). ``development``
    given: the caller split already (``train`` is then the rest). Data sets that do not name their
    videos (plain torch sets in tests) need ``dev_fraction = 0`` or ``development`` and no limits.
    ``eval_transform``: the development set's transform (no augmentation), when it is a subset of
    the training set.
    """
    from ..data.splits import development_split, limit_labels

    facts: dict[str, Any] = {}
    if development is None and config.dev_fraction > 0:
        if not names_videos(train):
            raise TrainingError(f"dev_fraction={config.dev_fraction:g} needs a data set that names its videos "
                                "(an affectmodel reader); set dev_fraction = 0 or pass a development set")
        split = development_split(train, config.dev_fraction,
                                  validation=validation if names_videos(validation) else None)
        train, development = split.train, split.development
        if eval_transform is not None:
            development.transform = eval_transform  # a copy: the training subset keeps its augmentation
        facts["development"] = split.stats
        if len(development) == 0:
            raise TrainingError(f"dev_fraction={config.dev_fraction:g} left no development frames (too few "
                                "training videos?); use a larger fraction or dev_fraction = 0")
        labelled = development.valid_masks()
        missing = [t for t in config.tasks if not np.any(labelled.get(t, False))]
        if missing:  # recorded and said: that task neither tunes thresholds nor weighs in the selection
            facts["development"]["tasks_without_labels"] = missing
            warnings.warn(f"the development split ({len(split.development_videos)} video(s)) holds no "
                          f"{'/'.join(missing)} labels: {'AU thresholds stay 0.5 and ' if 'au' in missing else ''}"
                          "the selection ignores that task; use a larger dev_fraction", stacklevel=2)
    if config.limit_train is not None or config.limit_val is not None:
        for name, ds in (("training", train), ("validation", validation)):
            if not names_videos(ds):
                raise TrainingError(f"limit_train / limit_val need a {name} set that names its frames "
                                    "(an affectmodel reader)")
    if config.limit_train is not None and names_videos(train):
        chosen = limit_labels(train, config.tasks, config.limit_train, config.seed)
        train = chosen.dataset
        facts["label_budget"] = chosen.stats
    if config.limit_val is not None and names_videos(validation):
        chosen = limit_labels(validation, config.tasks, config.limit_val, VALIDATION_SEED)
        validation = chosen.dataset
        facts["validation_subset"] = chosen.stats
    return RunData(train, development, validation, facts)


def sample_identity(dataset: Dataset, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(video names, 1-based frame numbers) of ``indices``; ``sample<i>`` and -1 for data sets
    that do not name their videos."""
    indices = np.asarray(indices, dtype=np.int64)
    if names_videos(dataset) and hasattr(dataset, "frame_numbers"):
        videos = np.asarray(dataset.videos, dtype=np.str_)
        ids = np.asarray(dataset.video_ids)[indices]
        return videos[ids] if len(videos) else np.zeros(0, dtype=np.str_), np.asarray(dataset.frame_numbers)[indices]
    return np.array([f"sample{i}" for i in indices], dtype=str), np.full(len(indices), -1, dtype=np.int64)


def valid_label_counts(targets: Mapping[str, torch.Tensor], tasks: Sequence[str], n_classes: int) -> torch.Tensor:
    """Frames of a batch with a usable label, per task (int64 on the targets' device; no host sync).
    AU: at least one AU annotated; VA: at least one of valence/arousal (as the label budgets count)."""
    counts = [valid_rows(task, targets[task], n_classes).sum() for task in tasks]
    return torch.stack(counts).to(torch.int64)
