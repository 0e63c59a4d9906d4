"""A simple IoU tracker: stable face ids across video frames.

Detections of a new frame are matched to existing tracks greedily by box overlap (highest IoU
first); unmatched detections start new tracks; tracks unseen for more than ``max_missed``
detection rounds end. Between detection rounds (detection every n frames) the last box and
landmarks of each track stand in for the face: at video frame rates faces move little.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .faces import Face


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    return float(iou_matrix([a], [b])[0, 0])


def iou_matrix(boxes_a: Sequence[Sequence[float]], boxes_b: Sequence[Sequence[float]]) -> np.ndarray:
    """Pairwise IoU, shape (len(a), len(b))."""
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


@dataclass
class Track:
    id: int
    face: Face
    missed: int = 0   # detection rounds since last matched
    hits: int = 1     # detection rounds matched in total


class IoUTracker:
    """Assign stable ids to faces. ``update(faces)`` after each detection round returns
    ``[(track_id, face)]`` in the order of ``faces`` (left to right); ``current()`` gives the
    live tracks for frames without detection."""

    def __init__(self, iou_threshold: float = 0.3, max_missed: int = 2):
        if not 0.0 <= iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
        self.iou_threshold = iou_threshold
        self.max_missed = max_missed
        self._tracks: list[Track] = []
        self._next_id = 1

    def update(self, faces: Sequence[Face]) -> list[tuple[int, Face]]:
        overlap = iou_matrix([t.face.box for t in self._tracks], [f.box for f in faces])
        assigned: dict[int, Track] = {}   # face index -> track
        used_tracks: set[int] = set()
        if overlap.size:
            # Greedy: best overlapping pair first; each track and face matched at most once.
            pairs = np.argwhere(overlap >= max(self.iou_threshold, 1e-9))
            for ti, fi in sorted(pairs.tolist(), key=lambda p: -overlap[p[0], p[1]]):
                if ti in used_tracks or fi in assigned:
                    continue
                used_tracks.add(ti)
                assigned[fi] = self._tracks[ti]
        for ti, track in enumerate(self._tracks):
            if ti not in used_tracks:
                track.missed += 1
        out = []
        for fi, face in enumerate(faces):
            track = assigned.get(fi)
            if track is None:
                track = Track(self._next_id, face)
                self._next_id += 1
                self._tracks.append(track)
            else:
                track.face, track.missed, track.hits = face, 0, track.hits + 1
            out.append((track.id, face))
        self._tracks = [t for t in self._tracks if t.missed <= self.max_missed]
        return out

    def current(self) -> list[tuple[int, Face]]:
        """Tracks seen in the latest detection round, left to right (for in-between frames)."""
        live = [t for t in self._tracks if t.missed == 0]
        return [(t.id, t.face) for t in sorted(live, key=lambda t: t.face.center[0])]

    @property
    def active_ids(self) -> list[int]:
        return [t.id for t in self._tracks]
