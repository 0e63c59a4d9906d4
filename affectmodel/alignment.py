"""Where an aligned face's landmarks go: the canonical five-point template and the similarity
transform onto it (numpy only).

Inference aligns detected faces with it (:mod:`affectmodel.inference.align`), and the synthetic
benchmark frames its faces with it (:mod:`affectmodel.data.synthetic_faces`), so a generated crop
and a real photo's aligned crop put the eyes, nose and mouth in the same places. The template is
the widely used ArcFace 112x112 five-point template, shrunk about the crop centre by ``1 + margin``
so that the forehead and chin stay in view.
"""
from __future__ import annotations

import numpy as np

# Left eye, right eye, nose tip, left and right mouth corner (image left/right) in a 112x112 crop.
ARCFACE_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
DEFAULT_MARGIN = 0.1        # template shrink: 10 % more context than ArcFace's tight crop


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
