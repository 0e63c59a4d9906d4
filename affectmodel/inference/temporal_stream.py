"""Windows of each face track's trunk features for a temporal model, in frame order
(docs/TEMPORAL.md, "Inference").

The video path pushes each processed frame's faces (track id, trunk features) and gets frames back
once every face's window is complete: at once for a causal model (its window ends at the frame),
``window - 1 - anchor`` frames later for a bidirectional one (it also reads frames after it), and
all remaining frames at the end of the video. A window holds one track's frames only: another
person never enters it, and a lost track's successor has a new id, so its windows start afresh.
Frames where a track has no face (a missed detection, the start or end of the track) are filled
with the track's nearest earlier frame in the window (else the nearest later one), as in training
(:mod:`affectmodel.data.sequences`). Only the features the pending frames' windows can still reach
are kept, so memory does not grow with the video.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np


class TemporalStream:
    def __init__(self, window: int, anchor: int):
        if window < 1 or not 0 <= anchor < window:
            raise ValueError(f"window must be at least 1 and anchor in [0, window), got {window}, {anchor}")
        self.window, self.anchor, self.delay = window, anchor, window - 1 - anchor
        self._latest = -1  # sequence number of the last pushed frame
        self._history: dict[int, dict[int, np.ndarray]] = {}  # track -> frame sequence -> features
        self._pending: deque[tuple[int, Any, list[int]]] = deque()  # (sequence, payload, track ids)

    def push(self, payload: Any, track_ids: Sequence[int], features: np.ndarray) -> None:
        """One processed frame: its faces' track ids and trunk features (k, F), in the same order."""
        self._latest += 1
        ids = [int(t) for t in track_ids]
        if len(ids) != len(features):
            raise ValueError(f"{len(ids)} track ids for {len(features)} feature rows")
        for tid, row in zip(ids, features, strict=True):
            self._history.setdefault(tid, {})[self._latest] = np.asarray(row, dtype=np.float32)
        self._pending.append((self._latest, payload, ids))

    def ready(self, final: bool = False) -> list[tuple[Any, np.ndarray]]:
        """Frames whose windows are complete (all remaining ones when ``final``), oldest first, each
        with its windows (k, window, F) in the order of its track ids."""
        out = []
        while self._pending and (final or self._pending[0][0] + self.delay <= self._latest):
            seq, payload, ids = self._pending.popleft()
            out.append((payload, self._windows(seq, ids)))
        self._forget()
        return out

    def held_frames(self) -> int:
        return len(self._pending)

    def _windows(self, seq: int, ids: list[int]) -> np.ndarray:
        rows = []
        for tid in ids:
            track = self._history[tid]
            slots = list(range(seq - self.anchor, seq + self.delay + 1))
            known = [i for i, s in enumerate(slots) if s in track]  # the anchor slot always is
            filled = []
            for i, s in enumerate(slots):
                if s not in track:
                    earlier = [k for k in known if k < i]
                    s = slots[earlier[-1] if earlier else min(k for k in known if k > i)]
                filled.append(track[s])
            rows.append(np.stack(filled))
        return np.stack(rows) if rows else np.zeros((0, self.window, 0), np.float32)

    def _forget(self) -> None:
        """Drop features no pending (or future) frame's window reaches."""
        oldest = self._pending[0][0] if self._pending else self._latest + 1
        keep_from = oldest - self.anchor
        for tid in list(self._history):
            track = self._history[tid]
            for s in [s for s in track if s < keep_from]:
                del track[s]
            if not track:
                del self._history[tid]

    def __len__(self) -> int:
        """Feature rows held (bounded by the tracks in view times the window)."""
        return sum(len(t) for t in self._history.values())





class LiveFaceWindow:
    """The webcam's causal window: the trunk features of the last ``window`` frames of the face in
    front of the camera (the largest), for a causal temporal model. The window starts afresh when
    no face is in view or the largest face is not where the last one was (another person)."""

    def __init__(self, window: int, min_iou: float = 0.3):
        self.window, self.min_iou = window, min_iou
        self._features: deque[np.ndarray] = deque(maxlen=window)
        self._box: Sequence[float] | None = None

    def reset(self) -> None:
        self._features.clear()
        self._box = None

    def push(self, box: Sequence[float], features: np.ndarray) -> np.ndarray:
        """Add the face's features; returns its window (window, F), the first frame standing in for
        the frames before the window started."""
        from .tracking import iou

        if self._box is not None and iou(self._box, box) < self.min_iou:
            self.reset()
        self._box = box
        self._features.append(np.asarray(features, dtype=np.float32))
        rows = list(self._features)
        return np.stack([rows[0]] * (self.window - len(rows)) + rows)

    def __len__(self) -> int:
        return len(self._features)
__all__ = ["LiveFaceWindow", "TemporalStream"]
