"""A simple IoU tracker: stable face ids across video frames.

Detections of a new frame are matched to existing tracks greedily by box overlap (highest IoU
first); unmatched detections start new tracks; tracks unseen for more than ``max_missed``
detection rounds end. Between full detections, :func:`follow_tracks` re-finds each face in a
small window around its last box (and reports a lost track), and :func:`new_face_possible` tells
from a thumbnail whether anything changed outside the tracked faces (a face may have entered).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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

    def follow(self, followed: Sequence[tuple[int, Face]]) -> None:
        """New boxes for live tracks found between detection rounds (:func:`follow_tracks`)."""
        faces = dict(followed)
        for track in self._tracks:
            if track.id in faces:
                track.face = faces[track.id]

    def current(self) -> list[tuple[int, Face]]:
        """Tracks seen in the latest detection round, left to right (for in-between frames)."""
        live = [t for t in self._tracks if t.missed == 0]
        return [(t.id, t.face) for t in sorted(live, key=lambda t: t.face.center[0])]

    @property
    def active_ids(self) -> list[int]:
        return [t.id for t in self._tracks]


# ------------------------------------------------------------------ between full detections

ROI_CONTEXT = 1.0      # a track's search window: its box grown by this fraction of its size on each side
ROI_MAX_SIDE = 128     # search windows are detected at most this large (the face stays ~40-60 px)
THUMB_WIDTH = 48       # motion check: frames compared as grey thumbnails this wide
MOTION_LEVEL = 24      # grey levels (of 255) a thumbnail cell must change by to count as motion
MOTION_CELLS = 2       # cells outside the tracks that must change to suspect a new face


def follow_tracks(detector, image: np.ndarray, tracked: Sequence[tuple[int, Face]],
                  iou_threshold: float = 0.3) -> list[tuple[int, Face]] | None:
    """Re-find each tracked face in a small window around its last box (a few ms per face instead
    of a full-frame detection). Returns the updated ``[(track_id, face)]`` in full-image
    coordinates, or ``None`` when any track is lost, i.e. a full detection is needed."""
    import cv2

    h, w = image.shape[:2]
    out = []
    for track_id, face in tracked:
        x1, y1, x2, y2 = face.box
        pad_x, pad_y = (x2 - x1) * ROI_CONTEXT, (y2 - y1) * ROI_CONTEXT
        left, top = int(max(0, x1 - pad_x)), int(max(0, y1 - pad_y))
        right, bottom = int(min(w, x2 + pad_x)), int(min(h, y2 + pad_y))
        if right - left < 2 or bottom - top < 2:
            return None
        window = image[top:bottom, left:right]
        scale = min(1.0, ROI_MAX_SIDE / max(window.shape[:2]))
        if scale < 1.0:
            window = cv2.resize(window, (max(1, round(window.shape[1] * scale)), max(1, round(window.shape[0] * scale))),
                                interpolation=cv2.INTER_AREA)
        # the face keeps >= min(its size, ~50 px) in the window, so the detector's minimum size still holds
        found = [_to_image(f, scale, left, top) for f in detector.detect(np.ascontiguousarray(window))]
        if not found:
            return None
        overlaps = iou_matrix([face.box], [f.box for f in found])[0]
        best = int(overlaps.argmax())
        if overlaps[best] < iou_threshold:
            return None
        out.append((track_id, found[best]))
    return sorted(out, key=lambda t: t[1].center[0])


def _to_image(face: Face, scale: float, left: int, top: int) -> Face:
    x1, y1, x2, y2 = face.box
    box = (x1 / scale + left, y1 / scale + top, x2 / scale + left, y2 / scale + top)
    landmarks = None if face.landmarks is None else face.landmarks / scale + np.array([left, top], np.float32)
    return Face(tuple(float(v) for v in box), face.score, landmarks)


def motion_thumbnail(image: np.ndarray) -> np.ndarray:
    """A small grey copy of a frame for :func:`new_face_possible`."""
    import cv2

    h, w = image.shape[:2]
    height = max(1, round(h * THUMB_WIDTH / w))
    return cv2.resize(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), (THUMB_WIDTH, height),
                      interpolation=cv2.INTER_AREA).astype(np.int16)


def new_face_possible(previous: np.ndarray | None, current: np.ndarray, image_shape: Sequence[int],
                      tracked: Sequence[tuple[int, Face]]) -> bool:
    """True when the frame changed since the previous frame outside the tracked people: something
    may have entered, so detect again. A tracked person's region is the face with a face width on
    each side and half a face above, down to the bottom of the frame (their body moves too).
    Camera motion also counts (then detection simply runs more often)."""
    if previous is None or previous.shape != current.shape:
        return True
    changed = np.abs(current - previous) >= MOTION_LEVEL
    sy, sx = current.shape[0] / image_shape[0], current.shape[1] / image_shape[1]
    for _, face in tracked:
        x1, y1, x2, y2 = face.box
        pad_x, pad_y = (x2 - x1) * 1.0, (y2 - y1) * 0.5
        changed[max(0, int((y1 - pad_y) * sy)):,
                max(0, int((x1 - pad_x) * sx)):int(np.ceil((x2 + pad_x) * sx)) + 1] = False
    return int(changed.sum()) >= MOTION_CELLS
