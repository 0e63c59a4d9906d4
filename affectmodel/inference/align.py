"""Face alignment: a similarity transform from five landmarks to a canonical template.

The model trains on aligned faces (Aff-Wild2's ``cropped_aligned``: eyes level, face centred,
112x112), so inference aligns the same way, onto the five-point template of
:mod:`affectmodel.alignment` (ArcFace's, with a margin; the synthetic benchmark frames its faces
with it too). Without landmarks (e.g. the Haar detector) a square crop around the box is
the fallback.
"""
from __future__ import annotations

import cv2
import numpy as np

from ..alignment import (  # the template is shared with the synthetic benchmark's framing
    ARCFACE_TEMPLATE_112,
    DEFAULT_MARGIN,
    canonical_template,
    similarity_transform,
)
from .faces import Face

__all__ = ["ARCFACE_TEMPLATE_112", "DEFAULT_BOX_MARGIN", "DEFAULT_MARGIN", "align_face", "canonical_template",
           "crop_box", "face_crop", "similarity_transform"]
DEFAULT_BOX_MARGIN = 0.25   # box fallback: square side = longer box side x (1 + margin)


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
