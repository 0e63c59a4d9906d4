"""Samplers over label arrays (no image is opened).

* :func:`shuffle_sampler`: a plain seeded shuffle.
* :class:`ClassBalancedSampler`: expression classes drawn equally often (with replacement).
* :class:`MultiTaskBatchSampler`: batches in which every task with labels is represented by at
  least ``min_per_task`` samples, so no task loss is empty (CCC needs two values).

All take the data set's ``labels`` dict (``expr`` (n,), ``au`` (n, 12), ``va`` (n, 2)) and are
deterministic for a seed; call ``set_epoch(e)`` to vary the order between epochs.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import RandomSampler, Sampler

from ..metrics import valid_expression
from ..tasks import TASK_KEYS, parse_tasks
from .dataset import valid_label_masks

SAMPLERS: tuple[str, ...] = ("shuffle", "balanced", "multitask")


def shuffle_sampler(n: int, seed: int = 0) -> RandomSampler:
    """Each sample once per epoch, in a seeded random order."""
    return RandomSampler(range(n), generator=torch.Generator().manual_seed(seed))


class ClassBalancedSampler(Sampler[int]):
    """Draws every expression class equally often (with replacement).

    Samples without an expression label (multi-task sets) keep their natural share of the draws;
    the rest of the draws are split equally among the classes present.
    """

    def __init__(self, expr: Sequence[int] | np.ndarray, num_classes: int, num_samples: int | None = None,
                 seed: int = 0):
        expr = np.asarray(expr, dtype=np.int64)
        valid = valid_expression(expr, num_classes)
        if not valid.any():
            raise ValueError("class-balanced sampling needs expression labels; none are annotated")
        counts = np.bincount(expr[valid], minlength=num_classes)
        present = counts > 0
        weights = np.zeros(len(expr), dtype=np.float64)
        share_valid = valid.mean()
        weights[valid] = share_valid / (present.sum() * counts[expr[valid]])
        if (~valid).any():
            weights[~valid] = (1 - share_valid) / (~valid).sum()
        self.weights = torch.as_tensor(weights / weights.sum(), dtype=torch.float64)
        self.num_samples = int(num_samples if num_samples is not None else len(expr))
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.multinomial(self.weights, self.num_samples, replacement=True, generator=g).tolist())


class MultiTaskBatchSampler(Sampler[list[int]]):
    """Shuffled batches; each batch holds at least ``min_per_task`` samples labelled for every
    task that has that many labelled samples at all.

    An epoch visits every sample about once: a shuffled order is cut into batches, and a batch
    short of some task swaps unneeded members for random samples labelled for that task.
    """

    def __init__(self, labels: Mapping[str, np.ndarray], batch_size: int, tasks: Sequence[str] = TASK_KEYS,
                 num_classes: int = 8, min_per_task: int = 2, seed: int = 0, drop_last: bool = False):
        tasks = parse_tasks(tasks)
        if batch_size < min_per_task * len(tasks):
            raise ValueError(f"batch_size {batch_size} cannot hold {min_per_task} samples of each of "
                             f"{len(tasks)} tasks")
        masks = valid_label_masks({k: np.asarray(v) for k, v in labels.items()}, num_classes)
        self.n = len(masks["expr"])
        self.valid = {t: masks[t] for t in tasks}
        self.pools = {t: np.flatnonzero(m) for t, m in self.valid.items() if m.sum() >= min_per_task}
        self.batch_size, self.min_per_task = batch_size, min_per_task
        self.seed, self.epoch, self.drop_last = seed, 0, drop_last

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else math.ceil(self.n / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(self.n)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            batch = order[start:start + self.batch_size].tolist()
            yield self._complete(batch, rng)

    def _complete(self, batch: list[int], rng: np.random.Generator) -> list[int]:
        m = self.min_per_task
        for task, pool in self.pools.items():
            have = sum(bool(self.valid[task][i]) for i in batch)
            if have >= m:
                continue
            in_batch = set(batch)
            candidates = [i for i in rng.permutation(pool).tolist() if i not in in_batch][: m - have]
            for new in candidates:
                slot = self._replaceable(batch, task)
                if slot is None or len(batch) < self.batch_size:
                    batch.append(new)
                else:
                    batch[slot] = new
        return batch

    def _replaceable(self, batch: list[int], needed_task: str) -> int | None:
        """A position whose sample no task needs to keep its minimum."""
        counts = {t: sum(bool(self.valid[t][i]) for i in batch) for t in self.pools}
        for pos in range(len(batch) - 1, -1, -1):
            i = batch[pos]
            if self.valid[needed_task][i]:
                continue
            if all(not self.valid[t][i] or counts[t] > self.min_per_task for t in self.pools):
                return pos
        return None


def build_sampler(kind: str, labels: Mapping[str, np.ndarray], num_classes: int, seed: int = 0):
    """A per-sample sampler by name: "shuffle" or "balanced" (the multi-task one yields batches:
    construct :class:`MultiTaskBatchSampler` directly and pass it as ``batch_sampler``)."""
    n = len(labels["expr"])
    if kind == "shuffle":
        return shuffle_sampler(n, seed)
    if kind == "balanced":
        return ClassBalancedSampler(labels["expr"], num_classes, seed=seed)
    raise ValueError(f"unknown sampler {kind!r}; choose shuffle or balanced (or MultiTaskBatchSampler)")


__all__ = ["SAMPLERS", "ClassBalancedSampler", "MultiTaskBatchSampler", "build_sampler", "shuffle_sampler"]
