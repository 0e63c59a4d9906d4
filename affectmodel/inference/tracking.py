"""A simple IoU tracker: stable face ids across video frames.

Detections of a new frame are matched to existing tracks greedily by box overlap (highest IoU
first); unmatched detections start new tracks; tracks unseen for more than ``max_missed``
detection rounds end. Between full detections, :func:`follow_tracks` moves each face by sparse
optical flow from the previous frame (and reports a lost track), and :func:`new_face_possible`
tells from a thumbnail whether anything changed outside the tracked faces (a face may have entered).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .faces import Face, float_box


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
            found = assigned.get(fi)
            if found is None:
                track = Track(self._next_id, face)
                self._next_id += 1
                self._tracks.append(track)
            else:
                track = found
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

FLOW_CONTEXT = 0.5     # a face is followed inside its box grown by this fraction of its size on each side
FLOW_FACE_SIDE = 96    # ... at most this many pixels across the face (larger faces on a scaled copy)
FLOW_WINDOW = 15       # Lucas-Kanade window (px, at that scale); 3 pyramid levels reach ~60 px of motion
FLOW_LEVELS = 2
FLOW_GRID = 4          # points followed inside the face box: a FLOW_GRID x FLOW_GRID grid, plus the landmarks
FLOW_ROUND_TRIP = 1.0  # a point counts when following it back lands within this many px of where it started
FLOW_MIN_SHARE = 0.6   # ... and at least this share of a face's points must count, or the face is lost
THUMB_WIDTH = 48       # motion check: frames compared as grey thumbnails this wide
MOTION_LEVEL = 24      # grey levels (of 255) a thumbnail cell must change by to count as motion
MOTION_CELLS = 2       # cells outside the tracks that must change to suspect a new face


def follow_tracks(previous: np.ndarray, image: np.ndarray,
                  tracked: Sequence[tuple[int, Face]]) -> list[tuple[int, Face]] | None:
    """Move each tracked face from ``previous`` to ``image`` (consecutive RGB frames) by sparse
    optical flow: points on a grid inside the face box and its landmarks are followed with
    pyramidal Lucas-Kanade and checked by following them back (a point that does not return to
    where it started is dropped). The box moves by the median motion and scales with the points'
    spread; each landmark moves with its own flow. Well under a millisecond per face, against
    several for a detection on a window around it.

    Returns the updated ``[(track_id, face)]`` in full-image coordinates, left to right, or
    ``None`` when any face is lost (too few points survive the check, or the face leaves the
    frame): the caller then detects on the whole frame."""
    import cv2

    if previous.shape != image.shape:
        return None
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03)
    window = (FLOW_WINDOW, FLOW_WINDOW)
    h, w = image.shape[:2]
    out = []
    for track_id, face in tracked:
        x1, y1, x2, y2 = face.box
        side = max(x2 - x1, y2 - y1)
        if side < 2:
            return None
        pad = side * FLOW_CONTEXT
        left, top = int(max(0, x1 - pad)), int(max(0, y1 - pad))
        right, bottom = int(min(w, np.ceil(x2 + pad))), int(min(h, np.ceil(y2 + pad)))
        if right - left < 8 or bottom - top < 8:
            return None
        scale = min(1.0, FLOW_FACE_SIDE / side)
        before, after = (_grey_window(frame, left, top, right, bottom, scale) for frame in (previous, image))
        gx = np.linspace(x1 + 0.2 * (x2 - x1), x2 - 0.2 * (x2 - x1), FLOW_GRID)
        gy = np.linspace(y1 + 0.2 * (y2 - y1), y2 - 0.2 * (y2 - y1), FLOW_GRID)
        grid = np.stack(np.meshgrid(gx, gy), -1).reshape(-1, 2)
        n_landmarks = 0 if face.landmarks is None else len(face.landmarks)
        points = grid if face.landmarks is None else np.concatenate([face.landmarks, grid])
        start = ((points - (left, top)) * scale).astype(np.float32).reshape(-1, 1, 2)
        moved, ok, _ = cv2.calcOpticalFlowPyrLK(before, after, start, start.copy(), winSize=window,
                                                maxLevel=FLOW_LEVELS, criteria=criteria)
        back, ok_back, _ = cv2.calcOpticalFlowPyrLK(after, before, moved, np.array(moved), winSize=window,
                                                    maxLevel=FLOW_LEVELS, criteria=criteria)
        p0, p1, p_back = (np.asarray(a, np.float32).reshape(-1, 2) for a in (start, moved, back))
        good = np.asarray(ok).ravel().astype(bool) & np.asarray(ok_back).ravel().astype(bool) & \
            (np.linalg.norm(p_back - p0, axis=1) <= FLOW_ROUND_TRIP)
        if good.sum() < max(3, FLOW_MIN_SHARE * len(points)):
            return None
        shift = np.median(p1[good] - p0[good], axis=0) / scale
        spread_before = np.linalg.norm(p0[good] - p0[good].mean(0), axis=1).mean()
        spread_after = np.linalg.norm(p1[good] - p1[good].mean(0), axis=1).mean()
        zoom = float(np.clip(spread_after / spread_before, 0.8, 1.25)) if spread_before > 1e-3 else 1.0
        cx, cy = (x1 + x2) / 2 + shift[0], (y1 + y2) / 2 + shift[1]
        half_w, half_h = (x2 - x1) / 2 * zoom, (y2 - y1) / 2 * zoom
        box = (cx - half_w, cy - half_h, cx + half_w, cy + half_h)
        if box[2] <= 0 or box[3] <= 0 or box[0] >= w or box[1] >= h:
            return None  # left the frame
        landmarks = None
        if face.landmarks is not None:
            followed = p1[:n_landmarks] / scale + (left, top)
            held = face.landmarks + shift  # a landmark whose own flow failed moves with the face
            landmarks = np.where(good[:n_landmarks, None], followed, held).astype(np.float32)
        out.append((track_id, Face(float_box(box), face.score, landmarks)))
    return sorted(out, key=lambda t: t[1].center[0])


def _grey_window(image: np.ndarray, left: int, top: int, right: int, bottom: int, scale: float) -> np.ndarray:
    import cv2

    grey = cv2.cvtColor(image[top:bottom, left:right], cv2.COLOR_RGB2GRAY)
    if scale < 1.0:
        size = (max(1, round((right - left) * scale)), max(1, round((bottom - top) * scale)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    return grey


def motion_thumbnail(image: np.ndarray) -> np.ndarray:
    """A small grey copy of a frame for :func:`new_face_possible`: every k-th pixel (about three
    per thumbnail cell across), averaged into cells :data:`THUMB_WIDTH` wide. Reading a sample of the
    pixels keeps it at ~0.15 ms per frame whatever the resolution (a 4K frame in full: ~11 ms), and
    ~10 samples per cell still average out compression noise far below :data:`MOTION_LEVEL`."""
    import cv2

    h, w = image.shape[:2]
    step = max(1, w // (THUMB_WIDTH * 3))
    sampled = np.ascontiguousarray(image[::step, ::step])
    height = max(1, round(h * THUMB_WIDTH / w))
    return cv2.resize(cv2.cvtColor(sampled, cv2.COLOR_RGB2GRAY), (THUMB_WIDTH, height),
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
