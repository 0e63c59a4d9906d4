"""Samplers: plain shuffle, class-balanced expression sampling, every task in every batch."""
import numpy as np
import pytest

from affectmodel.data.samplers import ClassBalancedSampler, MultiTaskBatchSampler, build_sampler, shuffle_sampler


def labels_for(expr, au_valid, va_valid):
    n = len(expr)
    au = np.full((n, 12), -1, dtype=np.float32)
    au[np.asarray(au_valid, dtype=np.int64)] = 0
    va = np.full((n, 2), -5, dtype=np.float32)
    va[np.asarray(va_valid, dtype=np.int64)] = 0.1
    return {"expr": np.asarray(expr, dtype=np.int64), "au": au, "va": va}


def test_shuffle_is_a_seeded_permutation():
    a, b, c = list(shuffle_sampler(50, seed=1)), list(shuffle_sampler(50, seed=1)), list(shuffle_sampler(50, seed=2))
    assert sorted(a) == list(range(50)) and a == b and a != c


def test_class_balanced_sampler_equalises_classes():
    expr = np.array([0] * 900 + [1] * 90 + [2] * 10)
    s = ClassBalancedSampler(expr, num_classes=8, num_samples=6000, seed=0)
    drawn = expr[list(s)]
    freq = np.bincount(drawn, minlength=3)[:3] / len(drawn)
    assert np.allclose(freq, 1 / 3, atol=0.04)
    assert list(s) == list(ClassBalancedSampler(expr, 8, 6000, seed=0))
    s.set_epoch(1)
    assert list(s) != list(ClassBalancedSampler(expr, 8, 6000, seed=0))


def test_class_balanced_sampler_keeps_unlabelled_share():
    expr = np.array([0] * 300 + [1] * 100 + [-1] * 600)
    drawn = expr[list(ClassBalancedSampler(expr, 8, num_samples=8000, seed=3))]
    assert abs((drawn == -1).mean() - 0.6) < 0.03
    assert abs((drawn == 0).mean() - (drawn == 1).mean()) < 0.04
    with pytest.raises(ValueError, match="no"):
        ClassBalancedSampler(np.full(5, -1), 8)


def test_multitask_batches_hold_every_task():
    n = 400
    rng = np.random.default_rng(0)
    expr = np.where(rng.random(n) < 0.7, rng.integers(0, 8, n), -1)
    au_valid = np.flatnonzero(rng.random(n) < 0.5)
    va_valid = rng.choice(n, 12, replace=False)  # rare task: 3 % of the samples
    labels = labels_for(expr, au_valid, va_valid)
    sampler = MultiTaskBatchSampler(labels, batch_size=16, min_per_task=2, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 25
    va_set, au_set = set(va_valid.tolist()), set(au_valid.tolist())
    for b in batches:
        assert len(b) <= 16 and len(set(b)) == len(b)
        assert sum(i in va_set for i in b) >= 2
        assert sum(i in au_set for i in b) >= 2
        assert sum(expr[i] >= 0 for i in b) >= 2
    seen = {i for b in batches for i in b}
    assert len(seen) > 0.85 * n  # about one pass over the data
    assert batches == list(MultiTaskBatchSampler(labels, 16, seed=0))
    sampler.set_epoch(1)
    assert list(sampler) != batches


def test_multitask_sampler_rejects_too_small_batches_and_ignores_absent_tasks():
    labels = labels_for([0, 1, 2, 3], [], [])
    with pytest.raises(ValueError, match="cannot hold"):
        MultiTaskBatchSampler(labels, batch_size=4, min_per_task=2)
    # AU and VA have no labels at all: batches are plain shuffled batches
    batches = list(MultiTaskBatchSampler(labels, batch_size=6, min_per_task=2, drop_last=False))
    assert len(batches) == 1 and sorted(batches[0]) == [0, 1, 2, 3]


def test_build_sampler():
    labels = labels_for([0, 1, 1, 1], [0], [1])
    assert sorted(build_sampler("shuffle", labels, 8)) == [0, 1, 2, 3]
    assert len(list(build_sampler("balanced", labels, 8))) == 4
    with pytest.raises(ValueError, match="unknown sampler"):
        build_sampler("stratified", labels, 8)
