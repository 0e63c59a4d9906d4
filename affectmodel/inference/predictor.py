"""Predictor: faces in, plain data out.

``Predictor(model_or_source).predict_image(image)`` detects faces, aligns each, and runs ONE
batched forward pass; ``predict_crops(crops)`` does the same for faces that are already cropped
(e.g. Aff-Wild2 ``cropped_aligned`` frames). Each face becomes a plain dict::

    {"box": [x1, y1, x2, y2], "score": 0.99,
     "expression": {label: prob}, "aus": {AU: prob}, "aus_active": {AU: bool},
     "valence": v, "arousal": a}

with only the fields of the model's tasks (a uni-task AU model gives ``aus``/``aus_active``).
Label names come from the model's config (set from :mod:`affectmodel.tasks`).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np

from ..data.normalise import PreprocessConfig, normalise_image_into
from ..images import ImageSource, array_to_rgb, load_image
from ..model_config import LEARNED_KINDS, au_thresholds_of, forward_memory_bytes
from ..runtime import available_memory_bytes
from .align import DEFAULT_BOX_MARGIN, DEFAULT_MARGIN, face_crop
from .engines import Engine, open_engine
from .faces import Face, FaceDetector, create_detector
from .onnx_engine import activate

if TYPE_CHECKING:
    from ..model import AffectModel

# Raw model outputs as numpy, one row per face: "expr" (n, C) softmax probabilities,
# "au" (n, 12) sigmoid probabilities, "va" (n, 2) valence/arousal in [-1, 1].
Outputs = dict[str, np.ndarray]


class NonFiniteOutputError(ValueError):
    """The model gave NaN or inf: broken weights, never an answer to show."""


class ModelTooLargeError(MemoryError, ValueError):
    """One face's forward pass would not fit in memory (refused before allocating). Also a
    ``ValueError`` so that command lines print it as one line."""


def fit_batch_size(input_size: int, batch_size: int, available: int | None = None) -> int:
    """``batch_size`` lowered so that one forward pass fits in half the available memory; a model
    whose single face would not fit is refused before anything is allocated."""
    available = available_memory_bytes() if available is None else available
    if available is None:
        return batch_size
    per_face = forward_memory_bytes(input_size)
    fitting = (available // 2) // per_face
    if fitting < 1:
        raise ModelTooLargeError(f"the model's input_size {input_size} needs about {per_face / 2**30:.1f} GiB "
                                 f"per face; only {available / 2**30:.1f} GiB of memory is available")
    return int(min(batch_size, fitting))


def load_predictor_model(source: AffectModel | str | os.PathLike, map_location: str = "cpu") -> AffectModel:
    """A model object as is; otherwise a model folder, a run folder or a Hub id through
    the one model loader (strict, never unpickles)."""
    if not isinstance(source, (str, os.PathLike)):
        return source
    from ..hub.loading import load_model  # lazy: the Hub client loads only when a source must be resolved

    return load_model(source, map_location=map_location)


def preprocess_crops(crops: Sequence[np.ndarray], config: PreprocessConfig) -> np.ndarray:
    """RGB uint8 crops of any size -> normalised ``(n, S, S, 3)`` float32 array (S = ``config.input_size``):
    resized to S (area averaging when shrinking), then training's normalisation
    (:mod:`affectmodel.data.normalise`). The input of every engine; numpy only."""
    size = int(config.input_size)
    batch = np.empty((len(crops), size, size, 3), dtype=np.float32)
    for i, crop in enumerate(crops):
        if not (crop.dtype == np.uint8 and crop.ndim == 3 and crop.shape[2] == 3):
            crop = array_to_rgb(crop)
        if crop.shape[:2] != (size, size):
            shrink = crop.shape[0] > size or crop.shape[1] > size
            crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        normalise_image_into(np.ascontiguousarray(crop), batch[i], config.mean, config.std)
    return batch


class Predictor:
    """Face detection + alignment + the affect model, for images and crops.

    ``model`` is a model folder, a run folder, a Hub id or a model object. ``engine`` chooses what
    runs the network (:data:`.engines.ENGINES`): ``auto`` (default) uses the folder's verified
    ``model.onnx`` on ONNX Runtime when there is one, else PyTorch; ``torch``, ``onnx`` and
    ``onnx-int8`` ask for one. Preprocessing, outputs and checks are the same for every engine.
    ``threads`` caps the ONNX session's threads (``None``: one per core; PyTorch keeps its process-wide
    setting). ``detector`` is a detector object, a detector name (``retinaface``/``haar``) or ``None``
    (then only :meth:`predict_crops` works). ``batch_size`` caps one forward pass. ``detect_max_side``
    (a detector name only) overrides the detection scale (:data:`.faces.DEFAULT_DETECT_MAX_SIDE`;
    0 = full resolution); crops always come from the full-resolution image.

    ``mirror`` (default on): :meth:`forward` also reads each face as its mirror image, in the same
    pass, and averages the two readings (probabilities, AU probabilities, valence/arousal).
    Expressions, the 12 AUs (all bilateral) and valence/arousal do not change under a horizontal
    flip, but a network need not be exactly symmetric: a face and its mirror image then get the same
    answer. It doubles the network's work per face. A temporal model reads the mirrored video too:
    :meth:`features` holds each frame's features and its mirror image's side by side, and
    :meth:`window_outputs` averages the two windows' readings.
    """

    def __init__(self, model: AffectModel | str | os.PathLike, detector: FaceDetector | str | None = "retinaface",
                 device: str = "cpu", batch_size: int = 64, align_margin: float = DEFAULT_MARGIN,
                 box_margin: float = DEFAULT_BOX_MARGIN, min_face_size: float | None = None,
                 detect_max_side: int | None = None, engine: str = "auto", threads: int | None = None,
                 mirror: bool = True):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.engine: Engine = open_engine(model, engine, str(device), threads)
        if self.engine.config.temporal in LEARNED_KINDS and getattr(self.engine, "model", None) is None:
            # an exported graph reads single frames; a temporal model's windows need its PyTorch module
            if engine != "auto":
                raise ValueError(f"engine {engine!r} runs single frames; this temporal model "
                                 f"({self.engine.config.temporal}) reads windows of frames: use --engine torch")
            self.engine = open_engine(model, "torch", str(device), threads)
        # The PyTorch model when the torch engine runs it (hooks, tests, training tools), else None.
        self.model: AffectModel | None = getattr(self.engine, "model", None)
        if isinstance(detector, str):
            options: dict = {}
            if min_face_size is not None:
                options["min_face_size"] = min_face_size
            if detect_max_side is not None:
                options["max_side"] = detect_max_side
            if threads is not None and detector.lower() == "retinaface":
                options["threads"] = threads
            detector = create_detector(detector, **options)
        self.detector = detector
        config = self.config = self.engine.config
        self.mirror = bool(mirror)
        # the mirror images share a pass: half as many faces per pass within the same memory
        self.batch_size = fit_batch_size(int(config.input_size), batch_size * (2 if self.mirror else 1))
        if self.mirror:
            self.batch_size = max(1, self.batch_size // 2)
        self.align_margin = align_margin
        self.box_margin = box_margin
        self.tasks: tuple[str, ...] = tuple(config.tasks)
        self.labels: dict[str, list[str]] = {k: list(v) for k, v in config.labels.items()}
        self.input_size = int(config.input_size)
        self.au_thresholds = np.asarray(au_thresholds_of(config), dtype=np.float64)

    @property
    def engine_name(self) -> str:
        """``torch``, ``onnx`` or ``onnx-int8``: what runs the network."""
        return self.engine.name

    # ------------------------------------------------------------------ stages

    def detect(self, image: np.ndarray) -> list[Face]:
        if self.detector is None:
            raise ValueError("this predictor has no face detector; use predict_crops for cropped faces")
        return self.detector.detect(image)

    def crops(self, image: np.ndarray, faces: Sequence[Face]) -> list[np.ndarray]:
        """Aligned crops at the model's input size."""
        return [face_crop(image, f, self.input_size, self.align_margin, self.box_margin) for f in faces]

    def preprocess(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """RGB uint8 crops of any size -> the normalised ``(n, S, S, 3)`` float32 input of every engine."""
        return preprocess_crops(crops, self.config)

    def forward(self, crops: Sequence[np.ndarray]) -> Outputs:
        """Probabilities / values for each crop (averaged with its mirror image's when ``mirror``), in
        chunks of ``batch_size`` crops (each crop read alone, also by a temporal model: videos go
        through :meth:`features` and :meth:`window_outputs`)."""
        parts: dict[str, list[np.ndarray]] = {k: [] for k in self.tasks}
        for start in range(0, len(crops), self.batch_size):
            x = self.preprocess(crops[start:start + self.batch_size])
            n = len(x)
            if self.mirror:  # one pass: the crops, then their mirror images (NHWC: flip the width axis)
                x = np.concatenate([x, x[:, :, ::-1]])
            out = activate(self.engine.run(x))
            for key in self.tasks:
                parts[key].append(0.5 * (out[key][:n] + out[key][n:]) if self.mirror else out[key])
        return self._checked(parts, len(crops))

    @property
    def temporal(self) -> bool:
        """True when the model has a learned temporal module (it reads a face over a window of frames)."""
        return self.config.temporal in LEARNED_KINDS

    def _temporal_model(self) -> AffectModel:
        if self.model is None:  # __init__ opens the torch engine for temporal models
            raise ValueError(f"the {self.engine_name} engine runs single frames only; a temporal model's windows "
                             "need the torch engine")
        return self.model

    def features(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Per-frame trunk features (n, F) float32 of each crop, in chunks of ``batch_size`` (torch
        engine); with ``mirror`` (n, 2F): the crop's features, then its mirror image's."""
        import torch

        model = self._temporal_model()
        device = next(model.parameters()).device
        parts = []
        with torch.inference_mode():
            for s in range(0, len(crops), self.batch_size):
                x = torch.from_numpy(self.preprocess(crops[s:s + self.batch_size])).permute(0, 3, 1, 2)
                n = len(x)
                if self.mirror:  # one pass: the crops, then their mirror images (NCHW: flip the width axis)
                    x = torch.cat([x, x.flip(-1)])
                f = model.features(x.to(device)).float().cpu()
                parts.append(torch.cat([f[:n], f[n:]], dim=1) if self.mirror else f)
        width = model.n_features * (2 if self.mirror else 1)
        return torch.cat(parts).numpy() if parts else np.zeros((0, width), np.float32)

    def window_outputs(self, windows: np.ndarray, anchor: int) -> Outputs:
        """Outputs of the frame at slot ``anchor`` of each window of trunk features (n, W, F): the
        temporal module, then the heads; windows in chunks of ``batch_size``. With ``mirror`` the
        windows hold :meth:`features`' (n, W, 2F): the window and its mirror image's are read in one
        pass and their outputs averaged."""
        import torch

        model = self._temporal_model()
        device = next(model.parameters()).device
        parts: dict[str, list[np.ndarray]] = {k: [] for k in self.tasks}
        with torch.inference_mode():
            for start in range(0, len(windows), self.batch_size):
                z = torch.from_numpy(np.ascontiguousarray(windows[start:start + self.batch_size], np.float32))
                n = len(z)
                if self.mirror:
                    z = torch.cat(z.chunk(2, dim=-1))
                out = model.sequence_outputs(z.to(device))
                raw = {k: v[:, anchor].float().cpu().numpy() for k, v in out.items()}
                for key, values in activate(raw).items():
                    parts[key].append(0.5 * (values[:n] + values[n:]) if self.mirror else values)
        return self._checked(parts, len(windows))

    def _checked(self, parts: dict[str, list[np.ndarray]], n: int) -> Outputs:
        outputs = {k: (np.concatenate(v) if v else np.zeros((0, len(self.labels[k])), np.float32))
                   for k, v in parts.items()}
        for key, values in outputs.items():
            if not np.isfinite(values).all():
                bad = int((~np.isfinite(values)).any(axis=1).sum())
                raise NonFiniteOutputError(f"the model gave NaN or inf {key} outputs for {bad} of {n} face(s): "
                                           "its weights are broken; refusing to report them")
        return outputs

    def to_records(self, outputs: Outputs, faces: Sequence[Face] | None = None) -> list[dict]:
        """Plain per-face dicts from :meth:`forward` outputs (optionally smoothed first)."""
        n = len(next(iter(outputs.values()))) if outputs else 0
        records = []
        for i in range(n):
            rec: dict = {}
            if faces is not None:
                rec["box"] = [round(float(v), 2) for v in faces[i].box]
                rec["score"] = float(faces[i].score)
            if "expr" in outputs:
                rec["expression"] = {label: float(p)
                                     for label, p in zip(self.labels["expr"], outputs["expr"][i], strict=True)}
            if "au" in outputs:
                probs = outputs["au"][i]
                rec["aus"] = {au: float(p) for au, p in zip(self.labels["au"], probs, strict=True)}
                rec["aus_active"] = {au: bool(p >= t)
                                     for au, p, t in zip(self.labels["au"], probs, self.au_thresholds, strict=True)}
            if "va" in outputs:
                rec["valence"], rec["arousal"] = (float(v) for v in outputs["va"][i])
            records.append(rec)
        return records

    # ------------------------------------------------------------------ one-call API

    def predict_crops(self, crops: Sequence[ImageSource]) -> list[dict]:
        """Predict on already cropped (ideally aligned) faces: one record per crop, no box."""
        arrays = [load_image(c) for c in crops]
        return self.to_records(self.forward(arrays))

    def predict_image(self, image: ImageSource, faces: Sequence[Face] | None = None) -> list[dict]:
        """Detect (unless ``faces`` are given), align, predict: one record per face, left to right.
        No face gives an empty list."""
        rgb = load_image(image)
        faces = self.detect(rgb) if faces is None else list(faces)
        if not faces:
            return []
        return self.to_records(self.forward(self.crops(rgb, faces)), faces)


# ------------------------------------------------------------------ flat rows (CSV)

def flatten_record(record: dict) -> dict:
    """One CSV row from a face record: ``x1..y2``, ``score``, ``expression`` (top label),
    ``expr_<label>``, ``<AU>`` (probability), ``<AU>_active`` (0/1), ``valence``, ``arousal``; other keys
    (``frame``, ``time_s``, ``track_id``, ``source``) are kept as they are."""
    row: dict = {}
    for key, value in record.items():
        if key == "box":
            row.update(zip(("x1", "y1", "x2", "y2"), value, strict=True))
        elif key == "expression":
            row["expression"] = max(value, key=value.get) if value else ""
            row.update({f"expr_{label}": round(p, 6) for label, p in value.items()})
        elif key == "aus":
            row.update({au: round(p, 6) for au, p in value.items()})
        elif key == "aus_active":
            row.update({f"{au}_active": int(on) for au, on in value.items()})
        elif key in ("valence", "arousal"):
            row[key] = round(value, 6)
        elif key != "landmarks":
            row[key] = value
    return row


def numbered(records: Sequence[dict]) -> list[dict]:
    """The records with their face number first: ``face`` = 1, 2, ... in the given order (left to
    right, as :meth:`Predictor.predict_image` returns them). One numbering for the ``predict``
    outputs and the demo's API."""
    return [{"face": i, **record} for i, record in enumerate(records, start=1)]


def largest_face(records: Sequence[dict]) -> dict | None:
    """The face record with the largest box (the person in front of the camera; the one face per
    frame of a challenge submission), or ``None`` for no faces. Records without a box (aligned
    crops) count as size 0, so the first one is kept."""
    if not records:
        return None

    def area(record: dict) -> float:
        box = record.get("box")
        return (box[2] - box[0]) * (box[3] - box[1]) if box else 0.0

    return max(records, key=area)


def top_expression(record: dict) -> tuple[str, float] | None:
    """The most probable expression label and its probability, or ``None`` without that task."""
    probs = record.get("expression")
    if not probs:
        return None
    label = max(probs, key=probs.get)
    return label, probs[label]
