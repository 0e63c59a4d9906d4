import numpy as np
import pytest

from affectmodel.inference.smoothing import (
    TrackSmoother,
    ema_alpha,
    exponential_smoothing,
    moving_average,
    smooth_series,
)


def _naive_mean(x, w):
    return np.array([x[max(0, t - w + 1):t + 1].mean(axis=0) for t in range(len(x))])


def test_moving_average_matches_the_definition():
    x = np.random.default_rng(0).normal(size=(30, 4))
    for w in (1, 2, 5, 30, 50):
        assert np.allclose(moving_average(x, w), _naive_mean(x, w))
    assert np.array_equal(moving_average(x, 1), x)
    assert moving_average(np.zeros((0, 3)), 3).shape == (0, 3)


def test_exponential_smoothing_matches_the_recursion():
    x = np.array([0.0, 1.0, 1.0, 0.0])
    a = 0.5
    assert np.allclose(exponential_smoothing(x, a), [0.0, 0.5, 0.75, 0.375])
    assert np.array_equal(exponential_smoothing(x, 1.0), x)
    assert ema_alpha(3) == pytest.approx(0.5)


def test_constant_series_is_unchanged_and_noise_is_reduced():
    const = np.full((20, 2), 0.3)
    assert np.allclose(smooth_series(const, "mean", 5), const)
    assert np.allclose(smooth_series(const, "ema", 5), const)
    noise = np.random.default_rng(1).normal(size=(500, 1))
    assert smooth_series(noise, "mean", 9)[20:].std() < noise.std() / 2.5
    assert smooth_series(noise, "ema", 9)[20:].std() < noise.std() / 2


@pytest.mark.parametrize("method", ["mean", "ema"])
def test_streaming_per_track_equals_smoothing_each_series(method):
    rng = np.random.default_rng(2)
    tracks = {1: rng.dirichlet(np.ones(8), size=15), 2: rng.dirichlet(np.ones(8), size=15)}
    va = {1: rng.uniform(-1, 1, (15, 2)), 2: rng.uniform(-1, 1, (15, 2))}
    smoother = TrackSmoother(method, window=4)
    got = {1: [], 2: []}
    for t in range(15):
        for tid in (2, 1):  # interleaved tracks must not mix
            out = smoother.update(tid, {"expr": tracks[tid][t], "va": va[tid][t]})
            got[tid].append(out)
    for tid in (1, 2):
        expr = np.array([o["expr"] for o in got[tid]])
        assert np.allclose(expr, smooth_series(tracks[tid], method, 4))
        assert np.allclose(expr.sum(axis=1), 1.0)  # still probability vectors
        assert np.allclose([o["va"] for o in got[tid]], smooth_series(va[tid], method, 4))


def test_retain_forgets_ended_tracks():
    smoother = TrackSmoother("mean", 3)
    smoother.update(1, {"va": np.array([1.0, 1.0])})
    smoother.update(2, {"va": np.array([0.0, 0.0])})
    smoother.retain([2])
    assert len(smoother) == 1
    assert np.allclose(smoother.update(1, {"va": np.array([-1.0, -1.0])})["va"], [-1.0, -1.0])  # fresh start


def test_bad_settings():
    with pytest.raises(ValueError, match="unknown smoothing"):
        TrackSmoother("median")
    with pytest.raises(ValueError, match="window"):
        moving_average(np.zeros(3), 0)
    with pytest.raises(ValueError, match="alpha"):
        exponential_smoothing(np.zeros(3), 0.0)
