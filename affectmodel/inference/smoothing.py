"""Temporal smoothing of per-frame predictions, per face track (causal: usable while streaming).

* ``mean``: moving average of the last ``window`` values (fewer at the start of a track).
* ``ema``: exponential smoothing ``y_t = alpha x_t + (1 - alpha) y_{t-1}``, ``y_0 = x_0``; by
  default ``alpha = 2 / (window + 1)`` (the usual span equivalence, so one ``window`` setting
  means a similar amount of smoothing for both).

Averaging expression probability vectors keeps them summing to 1; AU probabilities are smoothed
before thresholding; valence/arousal stay within [-1, 1].
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import numpy as np

SMOOTHING_METHODS = ("mean", "ema")


def ema_alpha(window: int) -> float:
    return 2.0 / (window + 1.0)


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Causal moving average along axis 0: row t is the mean of rows max(0, t-window+1)..t."""
    x = np.asarray(values, dtype=np.float64)
    _check_window(window)
    if len(x) == 0:
        return x.copy()
    # Window sums over a zero-padded copy: exact (no cumulative-sum drift on long series).
    padded = np.concatenate([np.zeros((window - 1,) + x.shape[1:]), x], axis=0)
    out = np.lib.stride_tricks.sliding_window_view(padded, window, axis=0).sum(axis=-1)
    counts = np.minimum(np.arange(1, len(x) + 1), window).reshape((-1,) + (1,) * (x.ndim - 1))
    return out / counts


def exponential_smoothing(values: np.ndarray, alpha: float) -> np.ndarray:
    """Causal exponential smoothing along axis 0 (``y_0 = x_0``)."""
    x = np.asarray(values, dtype=np.float64)
    _check_alpha(alpha)
    out = np.empty_like(x)
    for t in range(len(x)):
        out[t] = x[t] if t == 0 else alpha * x[t] + (1 - alpha) * out[t - 1]
    return out


def smooth_series(values: np.ndarray, method: str = "mean", window: int = 5, alpha: float | None = None) -> np.ndarray:
    """Smooth a whole series at once (same result as feeding :class:`TrackSmoother` row by row)."""
    method = _check_method(method)
    if method == "mean":
        return moving_average(values, window)
    return exponential_smoothing(values, ema_alpha(window) if alpha is None else alpha)


class TrackSmoother:
    """Streaming smoother keyed by track id. ``update(track_id, outputs)`` takes one face's
    outputs (``{"expr": (C,), "au": (12,), "va": (2,)}``, any subset) and returns them smoothed."""

    def __init__(self, method: str = "mean", window: int = 5, alpha: float | None = None):
        self.method = _check_method(method)
        _check_window(window)
        self.window = window
        self.alpha = ema_alpha(window) if alpha is None else alpha
        _check_alpha(self.alpha)
        self._history: dict[int, dict[str, deque]] = {}
        self._state: dict[int, dict[str, np.ndarray]] = {}

    def update(self, track_id: int, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.method == "mean":
            history = self._history.setdefault(track_id, {})
            out = {}
            for key, value in outputs.items():
                h = history.setdefault(key, deque(maxlen=self.window))
                h.append(np.asarray(value, dtype=np.float64))
                out[key] = np.mean(h, axis=0)
            return out
        state = self._state.setdefault(track_id, {})
        out = {}
        for key, value in outputs.items():
            value = np.asarray(value, dtype=np.float64)
            prev = state.get(key)
            state[key] = value if prev is None else self.alpha * value + (1 - self.alpha) * prev
            out[key] = state[key].copy()
        return out

    def retain(self, track_ids: Iterable[int]) -> None:
        """Forget tracks that ended, so memory stays bounded on long videos."""
        keep = set(track_ids)
        for store in (self._history, self._state):
            for tid in [t for t in store if t not in keep]:
                del store[tid]

    def __len__(self) -> int:
        return len(self._history) + len(self._state)


def _check_method(method: str) -> str:
    m = method.lower()
    if m not in SMOOTHING_METHODS:
        raise ValueError(f"unknown smoothing method {method!r}; available: {', '.join(SMOOTHING_METHODS)}")
    return m


def _check_window(window: int) -> None:
    if int(window) != window or window < 1:
        raise ValueError(f"smoothing window must be a positive integer, got {window}")


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"smoothing alpha must be in (0, 1], got {alpha}")
