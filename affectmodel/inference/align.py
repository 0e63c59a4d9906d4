"""Face alignment: a similarity transform from five landmarks to a canonical template.

The model trains on aligned faces (Aff-Wild2's ``cropped_aligned``: eyes level, face centred,
112x112), so inference aligns the same way. The template is the widely used ArcFace 112x112
five-point template, shrunk about the crop centre by ``1 + margin`` so that the forehead and
chin stay in view. Without landmarks (e.g. the Haar detector) a square crop around the box is
the fallback.
"""
from __future__ import annotations

import cv2
import numpy as np

from .faces import Face

# Left eye, right eye, nose tip, left and right mouth corner (image left/right) in a 112x112 crop.
ARCFACE_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
DEFAULT_MARGIN = 0.1        # template shrink: 10 % more context than ArcFace's tight crop
DEFAULT_BOX_MARGIN = 0.25   # box fallback: square side = longer box side x (1 + margin)


def canonical_template(size: int = 112, margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """The five landmark positions (5, 2) in a ``size`` x ``size`` aligned crop."""
    if size <= 0:
        raise ValueError(f"crop size must be positive, got {size}")
    if margin <= -1:
        raise ValueError(f"margin must be > -1, got {margin}")
    unit = ARCFACE_TEMPLATE_112 / 112.0
    return (0.5 + (unit - 0.5) / (1.0 + margin)) * size


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2x3 similarity (rotation, uniform scale, translation) that maps ``source`` points onto
    ``target`` points with least squares (Umeyama 1991; deterministic, unlike RANSAC)."""
    src = np.asarray(source, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(target, dtype=np.float64).reshape(-1, 2)
    if src.shape != dst.shape or len(src) < 2:
        raise ValueError(f"need matching point sets of at least 2 points, got {src.shape} and {dst.shape}")
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    src_var = (src_c ** 2).sum() / len(src)
    if src_var < 1e-12:
        raise ValueError("landmarks are degenerate (all at one point)")
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:  # no reflections
        d[1] = -1
    rotation = u @ np.diag(d) @ vt
    scale = (s * d).sum() / src_var
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int = 112, margin: float = DEFAULT_MARGIN
               ) -> np.ndarray:
    """Warp ``image`` so the five ``landmarks`` land on the canonical template: (size, size, 3)."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape != (5, 2):
        raise ValueError(f"alignment needs 5 landmarks as a (5, 2) array, got shape {landmarks.shape}")
    matrix = similarity_transform(landmarks, canonical_template(size, margin))
    return _warp(image, matrix, size)


def crop_box(image: np.ndarray, box, size: int = 112, margin: float = DEFAULT_BOX_MARGIN) -> np.ndarray:
    """A square crop centred on ``box`` (x1, y1, x2, y2), enlarged by ``margin``, resized to
    ``size``; parts outside the image are black, like the aligned crops."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1) * (1.0 + margin)
    if side <= 0:
        raise ValueError(f"empty face box {box}")
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    scale = size / side
    matrix = np.array([[scale, 0.0, size / 2 - scale * cx], [0.0, scale, size / 2 - scale * cy]])
    return _warp(image, matrix, size)


def face_crop(image: np.ndarray, face: Face, size: int = 112, margin: float = DEFAULT_MARGIN,
              box_margin: float = DEFAULT_BOX_MARGIN) -> np.ndarray:
    """The model's view of one face: aligned by landmarks when present, else a box crop."""
    if face.landmarks is not None:
        try:
            return align_face(image, face.landmarks, size, margin)
        except ValueError:
            pass  # degenerate landmarks (e.g. a tiny face): the box still says where the face is
    return crop_box(image, face.box, size, box_margin)


def _warp(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    # Shrinking a large face a lot aliases with bilinear sampling, and warps have no INTER_AREA:
    # warp to an integer multiple k of the size first, then average k x k blocks down.
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    k = int(min(8, np.ceil(1.0 / scale))) if scale < 0.75 else 1
    if k > 1:
        # Intermediate pixel j sits at output coordinate (j + 0.5) / k - 0.5: keep centres aligned.
        matrix = np.hstack([matrix[:, :2] * k, matrix[:, 2:] * k + (k - 1) / 2])
    out = cv2.warpAffine(image, matrix, (size * k, size * k), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    return out if k == 1 else cv2.resize(out, (size, size), interpolation=cv2.INTER_AREA)
