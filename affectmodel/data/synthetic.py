"""The synthetic affect benchmark ("synthetic-affect"), written in Aff-Wild2's own layout.

Aff-Wild2 cannot be shipped, so the toolkit generates a procedural stand-in for tests, CI, demos
and sanity checks (docs/DATA.md). It never stands in for real results.

* Each video is one identity; its expression changes in segments whose intensity ramps up and
  holds, so AU intensities vary smoothly over time (video models and smoothing can be tested).
* Expressions are prototypical AU combinations; AU occurrence labels are the intensities above a
  threshold (plus a little annotator noise); valence/arousal come from the expression's place on
  the circumplex scaled by intensity, plus smooth noise. The tasks are therefore correlated as in
  real data, but not identical: "Other" is a random non-prototypical mixture, talking opens the
  lips in any expression, and people have resting faces.
* Nuisances: identity shape, skin tone, hair, glasses, pose, scale, lighting, background, blur,
  sensor noise, occluders (hands, objects) and JPEG compression.
* Label masks mimic Aff-Wild2's partly overlapping annotation sets: each video is annotated for a
  random subset of the tasks, annotated videos contain stretches of "not annotated" frames
  (-1 / -5), and a few frames have no image (no face found) although their annotation line exists.

Output (``generate_benchmark``)::

    OUT/cropped_aligned/<video>/00001.jpg ...
    OUT/annotations/{EXPR_Recognition_Challenge,AU_Detection_Challenge,VA_Estimation_Challenge}/
        {Train_Set,Validation_Set}/<video>.txt
    OUT/annotations/MTL_Challenge/{training_set_annotations.txt,validation_set_annotations.txt}
    OUT/SYNTHETIC.json   (marker + generator parameters; readers label the set "synthetic-affect")

``generate_expression_folders`` (``synth --layout folders``) writes an expression-only set in the
folder-per-class layout of FER2013 / RAF-DB image folders ("synthetic-affect-folders"), for the
pre-training axis of a study.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..alignment import canonical_template
from ..io import write_json_atomic, write_text_atomic
from ..progress import Progress
from ..provenance import image_library_versions
from ..tasks import ABAW8, AU_NAMES, AU_TASK, VA_TASK, expression_task
from .layout import MTL_FILES, MTL_FOLDER, SPLIT_DIRS, TASK_FOLDERS, TRACK_SUFFIXES, base_video_name
from .marker import MARKER_FILE, SYNTHETIC_DATASET, SYNTHETIC_FOLDERS_DATASET, read_marker
from .synthetic_faces import (
    HIDDEN_AUS,
    FaceParams,
    ImageNuisance,
    apply_nuisance,
    random_background,
    render_face,
    sample_identity,
    with_pose,
)

DATASET_NAME = SYNTHETIC_DATASET
FOLDER_SPLITS = {"train": "train", "validation": "validation"}  # folder-per-class layout
GENERATOR_VERSION = 3  # 3: faces framed like aligned crops, smiles bare the teeth, AU6 cheeks, soft shading
SPLIT_FOLDERS = {split: names[0] for split, names in SPLIT_DIRS.items()}  # the newer layout's names

# Prototypical AU combinations (intensity at the expression's apex), keyed by ABAW-8 label.
# Hidden AUs (not labelled) make the faces read as the expression, like in real faces.
EXPRESSION_PROTOTYPES: dict[str, dict[str, float]] = {
    "Neutral": {},
    "Anger": {"AU4": 1.0, "AU7": 0.8, "AU23": 0.75, "AU24": 0.6, "AU5": 0.35, "AU17": 0.4},
    "Disgust": {"AU10": 1.0, "AU15": 0.35, "AU4": 0.45, "AU9": 0.9, "AU7": 0.3},
    "Fear": {"AU1": 0.95, "AU2": 0.8, "AU4": 0.7, "AU7": 0.5, "AU25": 0.85, "AU26": 0.3,
             "AU5": 1.0, "AU20": 0.8},
    "Happiness": {"AU6": 0.85, "AU12": 1.0, "AU25": 0.45, "AU10": 0.2},
    "Sadness": {"AU1": 0.95, "AU4": 0.6, "AU15": 0.95, "AU17": 0.6},
    "Surprise": {"AU1": 1.0, "AU2": 1.0, "AU25": 0.95, "AU26": 0.9, "AU5": 0.85},
    "Other": {},  # a random non-prototypical mixture, drawn per segment
}
# Place of each expression on the valence/arousal circumplex at full intensity.
CIRCUMPLEX: dict[str, tuple[float, float]] = {
    "Neutral": (0.0, -0.1),
    "Anger": (-0.65, 0.65),
    "Disgust": (-0.7, 0.3),
    "Fear": (-0.55, 0.8),
    "Happiness": (0.8, 0.45),
    "Sadness": (-0.7, -0.4),
    "Surprise": (0.25, 0.8),
    "Other": (0.0, 0.0),  # drawn per segment
}
# Frequencies of the ABAW-8 classes: imbalanced like Aff-Wild2 (many Neutral, Happiness and
# Other frames) but softened so that a short training run sees every class often enough.
DEFAULT_EXPRESSION_WEIGHTS: tuple[float, ...] = (0.18, 0.09, 0.08, 0.08, 0.17, 0.12, 0.11, 0.17)
# Action units of the upper and lower face ("Other" mixes the halves of two expressions).
UPPER_FACE_AUS = frozenset({"AU1", "AU2", "AU4", "AU5", "AU6", "AU7", "AU9"})


@dataclass
class SynthConfig:
    """Parameters of the benchmark; saved in ``SYNTHETIC.json``."""

    videos: int = 20
    frames: int = 100
    seed: int = 0
    size: int = 112
    validation_fraction: float = 0.25
    expression_weights: tuple[float, ...] = DEFAULT_EXPRESSION_WEIGHTS
    # fraction of videos annotated for each task (Aff-Wild2's sets overlap only partly)
    task_fractions: dict[str, float] = field(default_factory=lambda: {"expr": 0.7, "au": 0.7, "va": 0.8})
    invalid_fraction: float = 0.04        # frames marked not-annotated inside annotated videos
    missing_image_fraction: float = 0.02  # annotated frames without an image (no face found)
    au_threshold: float = 0.35            # AU intensity from which the AU counts as present
    au_label_noise: float = 0.03          # probability of a flipped AU label per frame
    va_noise: float = 0.1                 # std of the smooth valence/arousal noise
    talking_probability: float = 0.5      # videos in which the person talks (lips part anyway)
    segment_frames: tuple[int, int] = (10, 45)
    # 0 = clean frontal faces ... 1 = harsh nuisances. The default keeps every nuisance present but
    # mild enough that a short CPU training run learns expressions (benchmarks/data.md).
    nuisance: float = 0.4
    jpeg_quality: tuple[int, int] = (40, 95)
    pair_every: int = 7                   # every n-th video is a two-person video (_left/_right)

    def __post_init__(self) -> None:
        if self.videos < 1 or self.frames < 1:
            raise ValueError("videos and frames must be at least 1")
        if not 16 <= self.size <= 1024:
            raise ValueError(f"size must be between 16 and 1024 pixels, got {self.size}")
        if len(self.expression_weights) != len(ABAW8):
            raise ValueError(f"expression_weights needs {len(ABAW8)} values (ABAW-8 order)")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError("validation_fraction must be in [0, 1)")
        for key, value in self.task_fractions.items():
            if key not in TASK_FOLDERS or not 0 <= value <= 1:
                raise ValueError(f"task_fractions: {key}={value} (tasks expr/au/va, fractions in [0, 1])")
        self.expression_weights = tuple(float(w) for w in self.expression_weights)
        self.segment_frames = tuple(int(x) for x in self.segment_frames)  # type: ignore[assignment]
        self.jpeg_quality = tuple(int(x) for x in self.jpeg_quality)  # type: ignore[assignment]


# ----------------------------------------------------------------------------- sequences

@dataclass
class SyntheticSequence:
    """One video's ground truth and per-frame rendering parameters (``T`` frames)."""

    expr: np.ndarray          # int64 (T,), ABAW-8 index
    au_intensity: np.ndarray  # float32 (T, 12) in [0, 1]
    hidden_au: np.ndarray     # float32 (T, len(HIDDEN_AUS)) unlabelled AUs that shape the face
    au: np.ndarray            # int64 (T, 12) occurrence labels (0/1)
    va: np.ndarray            # float32 (T, 2) in [-1, 1]
    identity: FaceParams
    pose: np.ndarray          # float32 (T, 6): yaw, pitch, roll (deg), scale, shift x, shift y
    light: np.ndarray         # float32 (T, 2): brightness, blur radius
    occluders: list[dict | None]
    nuisance: ImageNuisance   # per-video photometric settings (light direction, noise, ...)
    jpeg_quality: int
    background_seed: int

    def __len__(self) -> int:
        return len(self.expr)

    def frame_params(self, t: int) -> FaceParams:
        yaw, pitch, roll, scale, sx, sy = (float(v) for v in self.pose[t])
        return with_pose(self.identity, yaw=yaw, pitch=pitch, roll=roll, scale=scale, shift=(sx, sy))

    def render(self, t: int, size: int, background: Image.Image | None = None,
               rng: np.random.Generator | None = None) -> Image.Image:
        """Frame ``t`` (0-based) as an RGB image, before JPEG compression."""
        rng = rng or np.random.default_rng(self.background_seed + t)
        if background is None:
            background = random_background(np.random.default_rng(self.background_seed), size)
        hidden = dict(zip(HIDDEN_AUS, self.hidden_au[t].tolist(), strict=True))
        img = render_face(self.au_intensity[t], self.frame_params(t), size, background=background,
                          occluder=self.occluders[t], hidden_au=hidden, framing=crop_framing(size, self.pose[t]))
        n = self.nuisance
        n = ImageNuisance(light_direction=n.light_direction, light_strength=n.light_strength,
                          brightness=float(self.light[t, 0]), contrast=n.contrast,
                          blur=float(self.light[t, 1]), noise=n.noise)
        return apply_nuisance(img, n, rng)


def crop_framing(size: int, pose: np.ndarray) -> np.ndarray:
    """Where a frame's eye centres, nose tip and mouth corners go (5, 2): the aligned-crop template
    of :mod:`affectmodel.alignment` (what inference aligns real faces onto), moved by a little of
    the frame's scale, shift and roll, as a detector's landmarks move a real alignment. Derived from
    the pose already drawn (no new random draws: labels and sequences stay as they were)."""
    _, _, roll, scale, shift_x, shift_y = (float(v) for v in pose)
    template = canonical_template(size)
    centre = size / 2.0
    angle = math.radians(0.3 * roll)
    k = 1.0 + 0.5 * (scale - 1.0)
    turn = k * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return centre + (template - centre) @ turn.T + size * np.array([shift_x, shift_y])


def _smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing along axis 0 (edges padded with the edge values)."""
    if sigma <= 0 or len(x) < 2:
        return x
    r = math.ceil(3 * sigma)
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    x2 = x.reshape(len(x), -1)
    padded = np.pad(x2, ((r, r), (0, 0)), mode="edge")
    out = np.stack([np.convolve(padded[:, j], k, mode="valid") for j in range(x2.shape[1])], axis=1)
    return out.reshape(x.shape)


def _drift(rng: np.random.Generator, frames: int, scale: float, sigma: float = 8.0) -> np.ndarray:
    """A smooth random signal with std about ``scale``."""
    raw = rng.normal(0, 1, size=frames + 1)[:frames]
    s = _smooth(raw, sigma)
    # Normalise by the std that smoothing gives white noise in theory, not by the sample's std:
    # in a short video the smoothed signal is almost constant, and dividing by its tiny sample
    # std blew its offset up (a negative face scale: "x1 must be greater than or equal to x0").
    if sigma > 0 and frames > 1:
        r = math.ceil(3 * sigma)
        k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
        s = s / math.sqrt(float(((k / k.sum()) ** 2).sum()))
    return (s * scale).astype(np.float64)


# How single AUs move valence/arousal; places the "Other" mixtures on the circumplex so that their
# valence/arousal is predictable from the face, as for the prototypical expressions.
_AU_VALENCE = {"AU12": 0.55, "AU6": 0.25, "AU4": -0.35, "AU15": -0.4, "AU10": -0.35, "AU9": -0.25,
               "AU23": -0.2, "AU24": -0.2, "AU20": -0.15, "AU17": -0.1}
_AU_AROUSAL = {"AU1": 0.2, "AU2": 0.3, "AU5": 0.4, "AU25": 0.3, "AU26": 0.3, "AU4": 0.2, "AU7": 0.2,
               "AU20": 0.2, "AU15": -0.15}


def mixture_circumplex(mix: dict[str, float]) -> tuple[float, float]:
    """(valence, arousal) of an AU mixture at full intensity (before the segment's intensity)."""
    v = sum(_AU_VALENCE.get(k, 0.0) * x for k, x in mix.items())
    a = sum(_AU_AROUSAL.get(k, 0.0) * x for k, x in mix.items()) - 0.1
    return float(np.clip(v, -0.9, 0.9)), float(np.clip(a, -0.9, 0.9))


def _other_expression(rng: np.random.Generator) -> dict[str, float]:
    """A non-prototypical mixture: mostly the upper face of one expression with the lower face of
    another (a smile with sad brows, a snarl with raised brows), else 2-3 random AUs."""
    if rng.random() < 0.65:
        names = [n for n in EXPRESSION_PROTOTYPES if EXPRESSION_PROTOTYPES[n]]
        up, low = rng.choice(len(names), size=2, replace=False)
        mix = {k: v for k, v in EXPRESSION_PROTOTYPES[names[up]].items() if k in UPPER_FACE_AUS}
        mix.update({k: v for k, v in EXPRESSION_PROTOTYPES[names[low]].items() if k not in UPPER_FACE_AUS})
        if len(mix) >= 2:
            return mix
    k = int(rng.integers(2, 4))
    chosen = rng.choice(len(AU_NAMES), size=k, replace=False)
    mix = {AU_NAMES[i]: float(rng.uniform(0.5, 1.0)) for i in chosen}
    if rng.random() < 0.3:
        mix[HIDDEN_AUS[int(rng.integers(len(HIDDEN_AUS)))]] = float(rng.uniform(0.3, 0.9))
    return mix


def expression_deck(weights: Sequence[float], rng: np.random.Generator, block: int = 40) -> Callable[[], int]:
    """Draw expression classes from shuffled blocks holding each class in proportion to
    ``weights`` (at least once per block), so even a small benchmark contains every class."""
    w = np.asarray(weights, dtype=np.float64)
    counts = np.maximum(1, np.round(w / w.sum() * block)).astype(int)
    tickets: list[int] = []

    def draw() -> int:
        if not tickets:
            tickets.extend(rng.permutation(np.repeat(np.arange(len(w)), counts)).tolist())
        return tickets.pop()
    return draw


def sample_sequence(frames: int = 100, rng: np.random.Generator | int | None = None,
                    config: SynthConfig | None = None, identity: FaceParams | None = None,
                    next_expression: Callable[[], int] | None = None) -> SyntheticSequence:
    """Sample one video: expression segments, smooth AU/VA trajectories, pose, lighting, occluders.

    ``next_expression`` supplies the class of each segment (default: drawn from
    ``config.expression_weights``; the benchmark uses :func:`expression_deck`)."""
    cfg = config or SynthConfig()
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    T = int(frames)
    nz = float(cfg.nuisance)
    identity = identity or sample_identity(rng)
    labels = ABAW8.labels
    weights = np.asarray(cfg.expression_weights, dtype=np.float64)
    weights = weights / weights.sum()
    au_names = list(AU_NAMES) + list(HIDDEN_AUS)
    col = {n: i for i, n in enumerate(au_names)}

    # -- expression segments with ramped intensity
    target = np.zeros((T, len(au_names)))
    va_target = np.zeros((T, 2))
    expr = np.zeros(T, dtype=np.int64)
    t = 0
    lo, hi = cfg.segment_frames
    while t < T:
        length = int(rng.integers(lo, hi + 1))
        end = min(T, t + length)
        e = int(next_expression()) if next_expression is not None else int(rng.choice(len(labels), p=weights))
        name = labels[e]
        # apex intensity weighted towards clear expressions (as in posed/acted segments)
        peak = float(0.5 + 0.5 * rng.beta(2.0, 1.0))
        proto = _other_expression(rng) if name == "Other" else dict(EXPRESSION_PROTOTYPES[name])
        if name == "Anger":  # tightened or pressed lips, rarely both at full strength
            proto["AU23" if rng.random() < 0.5 else "AU24"] *= 0.4
        n = end - t
        ramp = max(1, int(n * rng.uniform(0.1, 0.3)))
        env = np.ones(n)
        env[:ramp] = np.linspace(0.5, 1.0, ramp)
        for au_name, value in proto.items():
            jitter = float(np.clip(value * rng.uniform(0.8, 1.15), 0, 1))
            target[t:end, col[au_name]] = jitter * peak * env
        if name == "Other":
            v, a = np.add(mixture_circumplex(proto), rng.normal(0, 0.08, size=2))
        elif name == "Neutral":
            v, a = rng.normal(0, 0.08), rng.normal(-0.1, 0.08)
        else:
            v, a = CIRCUMPLEX[name]
        va_target[t:end] = np.outer(peak * env if name != "Neutral" else np.ones(n), (v, a))
        expr[t:end] = e
        t = end

    # -- resting face, talking, per-frame variation; transitions are smoothed
    rest = np.zeros(len(au_names))
    for i in rng.choice(len(AU_NAMES), size=2, replace=False):
        rest[i] = rng.uniform(0.0, 0.2)
    intensity = _smooth(target + rest, 2.0)
    if rng.random() < cfg.talking_probability:
        phase = rng.uniform(0, 2 * np.pi)
        speech = np.clip(0.5 + 0.5 * np.sin(np.arange(T) * rng.uniform(0.5, 1.2) + phase)
                         + rng.normal(0, 0.25, T), 0, 1)
        talking = _smooth((rng.random(T) < 0.6).astype(float), 4.0)  # pauses
        intensity[:, col["AU25"]] = np.maximum(intensity[:, col["AU25"]], 0.75 * speech * talking)
        intensity[:, col["AU26"]] = np.maximum(intensity[:, col["AU26"]], 0.35 * speech * talking)
    intensity = intensity + _smooth(rng.normal(0, 0.06, size=intensity.shape), 1.0)
    intensity = np.clip(intensity, 0, 1)
    au_int = intensity[:, :len(AU_NAMES)].astype(np.float32)
    hidden = intensity[:, len(AU_NAMES):].astype(np.float32)
    au = (au_int >= cfg.au_threshold).astype(np.int64)
    flips = rng.random(au.shape) < cfg.au_label_noise
    au[flips] = 1 - au[flips]

    bias = rng.normal(0, 0.08, size=2)  # this annotator/person's offset
    va = _smooth(va_target, 2.0) + bias + np.stack([_drift(rng, T, cfg.va_noise, 4.0) for _ in range(2)], axis=1)
    va = np.clip(va, -1, 1).astype(np.float32)

    # -- pose and photometric nuisances (smooth over time)
    pose = np.stack([
        np.clip(rng.normal(0, 0.18 * nz) + _drift(rng, T, 0.08 * nz), -0.5, 0.5),  # yaw (rad)
        rng.normal(0, 0.08 * nz) + _drift(rng, T, 0.05 * nz),          # pitch (rad)
        rng.normal(0, 6 * nz) + _drift(rng, T, 3 * nz),                # roll (deg)
        np.clip(rng.uniform(1 - 0.12 * nz, 1 + 0.06 * nz) * (1 + _drift(rng, T, 0.03 * nz)), 0.7, 1.2),  # scale
        rng.normal(0, 0.03 * nz) + _drift(rng, T, 0.015 * nz),         # shift x
        rng.normal(0, 0.03 * nz) + _drift(rng, T, 0.015 * nz),         # shift y
    ], axis=1).astype(np.float32)
    brightness = rng.uniform(1 - 0.3 * nz, 1 + 0.15 * nz) * (1 + _drift(rng, T, 0.05 * nz))
    blur = np.full(T, rng.uniform(0, 0.5 * nz)) + (rng.random(T) < 0.06 * nz) * rng.uniform(0.6, 1.4, T) * nz
    light = np.stack([brightness, blur], axis=1).astype(np.float32)
    nuisance = ImageNuisance(
        light_direction=float(rng.uniform(0, 2 * np.pi)),
        light_strength=float(rng.uniform(0, 0.35 * nz)),
        contrast=float(rng.uniform(1 - 0.3 * nz, 1 + 0.1 * nz)),
        noise=float(rng.uniform(0, 7 * nz)),
    )
    occluders: list[dict | None] = [None] * T
    if rng.random() < 0.3 * nz:
        for _ in range(int(rng.integers(1, 3))):
            start = int(rng.integers(0, T))
            stop = min(T, start + int(rng.integers(5, 30)))
            kind = str(rng.choice(["hand", "bar", "blob"]))
            color = (tuple(int(c) for c in np.clip(np.asarray(identity.skin) * 0.95, 0, 255))
                     if kind == "hand" else tuple(int(c) for c in rng.integers(0, 255, 3)))
            occ = {"kind": kind, "size": float(rng.uniform(0.2, 0.4)), "angle": float(rng.uniform(-40, 40)),
                   "color": color,
                   "center": (float(rng.uniform(0.2, 0.8)), float(rng.uniform(0.55, 0.95)))}
            for i in range(start, stop):
                occluders[i] = occ
    lo_q, hi_q = cfg.jpeg_quality
    quality = round(hi_q - (hi_q - lo_q) * nz * rng.random())
    return SyntheticSequence(expr=expr, au_intensity=au_int, hidden_au=hidden, au=au, va=va,
                             identity=identity, pose=pose, light=light, occluders=occluders,
                             nuisance=nuisance, jpeg_quality=quality,
                             background_seed=int(rng.integers(2**31)))


# ----------------------------------------------------------------------------- benchmark layout

@dataclass
class _VideoPlan:
    name: str
    split: str
    tasks: tuple[str, ...]   # tasks annotated for this video
    seed: np.random.SeedSequence


def _video_names(n: int, pair_every: int) -> list[str]:
    """``video000``, ... with some two-person videos named ``<base>_left`` / ``<base>_right``."""
    names: list[str] = []
    i = 0
    while len(names) < n:
        base = f"video{i:03d}"
        if pair_every > 0 and i % pair_every == pair_every - 1 and len(names) + 2 <= n:
            names += [f"{base}{suffix}" for suffix in TRACK_SUFFIXES]
        else:
            names.append(base)
        i += 1
    return names


def plan_videos(cfg: SynthConfig) -> list[_VideoPlan]:
    """Names, splits and annotated tasks of every video (deterministic for ``cfg.seed``)."""
    root = np.random.SeedSequence(cfg.seed)
    plan_seed, *video_seeds = root.spawn(cfg.videos + 1)
    rng = np.random.default_rng(plan_seed)
    names = _video_names(cfg.videos, cfg.pair_every)
    bases = sorted({base_video_name(n) for n in names})
    n_val = round(len(bases) * cfg.validation_fraction) if len(bases) > 1 else 0
    if cfg.validation_fraction > 0 and len(bases) > 1:
        n_val = max(1, n_val)
    val_bases = set(rng.permutation(bases)[:n_val].tolist())
    plans = []
    for name, seed in zip(names, video_seeds, strict=True):
        base = base_video_name(name)
        tasks = tuple(t for t in TASK_FOLDERS if rng.random() < cfg.task_fractions.get(t, 0.0))
        if not tasks:
            tasks = (str(rng.choice(list(TASK_FOLDERS))),)
        plans.append(_VideoPlan(name, "validation" if base in val_bases else "train", tasks, seed))
    # every split that has videos has every task annotated somewhere (so each task can be scored)
    for split in SPLIT_FOLDERS:
        in_split = [p for p in plans if p.split == split]
        for task in TASK_FOLDERS:
            if in_split and cfg.task_fractions.get(task, 0.0) > 0 and not any(task in p.tasks for p in in_split):
                p = in_split[int(rng.integers(len(in_split)))]
                p.tasks = tuple(t for t in TASK_FOLDERS if t in p.tasks or t == task)
    return plans


def _invalid_mask(rng: np.random.Generator, frames: int, fraction: float) -> np.ndarray:
    """Stretches of not-annotated frames covering about ``fraction`` of a video."""
    mask = np.zeros(frames, dtype=bool)
    if fraction <= 0:
        return mask
    target = frames * fraction * rng.uniform(0.5, 1.5)  # frames to mark
    if target < 1:  # short video: one frame, with the matching probability (not always one)
        if rng.random() < target:
            mask[int(rng.integers(0, frames))] = True
        return mask
    while mask.sum() < target:
        length = int(rng.integers(1, max(2, int(frames * fraction * 2))))
        start = int(rng.integers(0, frames))
        mask[start:start + length] = True
    return mask


def _expr_lines(values: np.ndarray) -> list[str]:
    return [str(int(v)) for v in values]


def _au_lines(values: np.ndarray) -> list[str]:
    return [",".join(str(int(x)) for x in row) for row in values]


def _va_lines(values: np.ndarray) -> list[str]:
    return [",".join("-5" if x == VA_TASK.invalid_code else f"{x:.3f}" for x in row) for row in values]


def _prepare_out_dir(out: Path, overwrite: bool, subfolders: tuple[str, ...] = ("cropped_aligned", "annotations")
                     ) -> None:
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ValueError(f"{out} is not empty; choose another folder or pass --overwrite")
        if not (out / MARKER_FILE).exists():
            raise ValueError(f"{out} is not empty and holds no {MARKER_FILE}: refusing to overwrite it")
        for sub in subfolders:
            shutil.rmtree(out / sub, ignore_errors=True)
        (out / MARKER_FILE).unlink()
    out.mkdir(parents=True, exist_ok=True)


SequenceSampler = Callable[..., SyntheticSequence]  # sample_sequence's signature
VideoHook = Callable[[Path, str, SyntheticSequence], None]  # (out_dir, video name, sequence)


def generate_benchmark(out_dir: str | Path, videos: int = 20, frames: int = 100, seed: int = 0, size: int = 112,
                       config: SynthConfig | None = None, overwrite: bool = False, progress: bool = True,
                       sampler: SequenceSampler | None = None, on_video: VideoHook | None = None,
                       marker_extra: dict[str, Any] | None = None) -> dict:
    """Write the synthetic benchmark under ``out_dir`` and return a summary dict.

    ``config`` overrides ``videos``/``frames``/``seed``/``size`` when given. Deterministic for a
    seed: the same parameters write byte-identical files, whatever the CPU's SIMD level (numpy's and
    libjpeg-turbo's dispatch) or thread count, as long as Pillow draws the same (11.x and 12.x do;
    10.x fills polygons differently): the marker's ``libraries`` say what drew and encoded the
    images, and ``data-info`` prints the data fingerprint to compare (docs/REPRODUCIBILITY.md).

    ``sampler`` replaces :func:`sample_sequence` (same arguments; the dynamic benchmark of
    :mod:`.synthetic_dynamics`), ``on_video(out, name, sequence)`` is called after each video's
    frames are written, and ``marker_extra`` is merged into ``SYNTHETIC.json``.
    """
    sample = sampler or sample_sequence
    cfg = config or SynthConfig(videos=videos, frames=frames, seed=seed, size=size)
    out = Path(out_dir)
    _prepare_out_dir(out, overwrite)
    started = time.perf_counter()
    plans = plan_videos(cfg)
    deck = expression_deck(cfg.expression_weights, np.random.default_rng([cfg.seed, 1]))
    space = expression_task(ABAW8)
    headers = {"expr": ",".join(space.annotation_header), "au": ",".join(AU_TASK.annotation_header),
               "va": ",".join(VA_TASK.annotation_header)}
    formatters = {"expr": _expr_lines, "au": _au_lines, "va": _va_lines}
    mtl_rows: dict[str, list[str]] = {s: [] for s in SPLIT_FOLDERS}
    counts: dict[str, dict[str, Any]] = {
        s: {"videos": 0, "images": 0, **{t: {"labelled": 0, "invalid": 0, "missing_images": 0} for t in TASK_FOLDERS}}
        for s in SPLIT_FOLDERS}
    bar = Progress(cfg.videos * cfg.frames, "synth", "frame", enabled=progress)
    for plan in plans:
        rng = np.random.default_rng(plan.seed)
        seq = sample(cfg.frames, rng, cfg, next_expression=deck)
        T = len(seq)
        # frames whose face "was not found": short runs, no image written
        missing = _invalid_mask(rng, T, cfg.missing_image_fraction)
        values = {"expr": seq.expr.copy(), "au": seq.au.astype(np.int64), "va": seq.va.copy()}
        annotated = {}
        for task in TASK_FOLDERS:
            invalid = _invalid_mask(rng, T, cfg.invalid_fraction)
            if task not in plan.tasks:
                invalid[:] = True
            v = values[task]
            v[invalid] = -1 if task != "va" else VA_TASK.invalid_code
            annotated[task] = ~invalid
        # images
        video_dir = out / "cropped_aligned" / plan.name
        video_dir.mkdir(parents=True, exist_ok=True)
        background = random_background(np.random.default_rng(seq.background_seed), cfg.size)
        for t in range(T):
            if not missing[t]:
                img = seq.render(t, cfg.size, background, rng)
                img.save(video_dir / f"{t + 1:05d}.jpg", format="JPEG", quality=seq.jpeg_quality)
            bar.update(1)
        if on_video is not None:
            on_video(out, plan.name, seq)
        c = counts[plan.split]
        c["videos"] += 1
        c["images"] += int((~missing).sum())
        # per-task files (only for the tasks this video is annotated for, like Aff-Wild2)
        for task in plan.tasks:
            path = out / "annotations" / TASK_FOLDERS[task] / SPLIT_FOLDERS[plan.split] / f"{plan.name}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join([headers[task], *formatters[task](values[task])]) + "\n", encoding="utf-8")
            c[task]["labelled"] += int((annotated[task] & ~missing).sum())
            c[task]["invalid"] += int((~annotated[task] & ~missing).sum())
            c[task]["missing_images"] += int(missing.sum())
        # multi-task rows: images with at least one valid label
        for t in np.flatnonzero(~missing & (annotated["expr"] | annotated["au"] | annotated["va"])).tolist():
            va_txt = _va_lines(values["va"][t:t + 1])[0]
            mtl_rows[plan.split].append(f"{plan.name}/{t + 1:05d}.jpg,{va_txt},{int(values['expr'][t])},"
                                        + _au_lines(values["au"][t:t + 1])[0])
    bar.close()
    mtl_header = "image,valence,arousal,expression," + ",".join(AU_NAMES)
    for split, rows in mtl_rows.items():
        write_text_atomic(out / "annotations" / MTL_FOLDER / MTL_FILES[split], "\n".join([mtl_header, *rows]) + "\n")
    summary = {
        "dataset": DATASET_NAME,
        "out_dir": str(out),
        "videos": {s: [p.name for p in plans if p.split == s] for s in SPLIT_FOLDERS},
        "frames_per_video": cfg.frames,
        "counts": counts,
        "seconds": round(time.perf_counter() - started, 2),
    }
    marker = {
        "dataset": DATASET_NAME,
        "generator": "affectmodel.data.synthetic",
        "generator_version": GENERATOR_VERSION,
        "libraries": image_library_versions(),  # what drew and encoded the images (same versions, same bytes)
        "note": "Procedural faces for tests, demos and sanity checks; results on it never stand in for Aff-Wild2.",
        "expression_space": ABAW8.name,
        "config": asdict(cfg),
        "videos": summary["videos"],
        "annotated_tasks": {p.name: list(p.tasks) for p in plans},
        "counts": counts,
        **(marker_extra or {}),
    }
    write_json_atomic(out / MARKER_FILE, marker)  # written last: its presence means "complete"
    return summary


# ----------------------------------------------------------------------------- folder-per-class layout

def generate_expression_folders(out_dir: str | Path, videos: int = 20, frames: int = 100, seed: int = 0,
                                size: int = 112, config: SynthConfig | None = None, every: int = 5,
                                overwrite: bool = False, progress: bool = True) -> dict:
    """Write a synthetic expression-only set in the folder-per-class layout (like FER2013 / RAF-DB
    image folders), for the pre-training axis of a study::

        OUT/{train,validation}/<ABAW-8 label>/<video>_<frame>.jpg
        OUT/SYNTHETIC.json   (dataset "synthetic-affect-folders"; readers mark it synthetic)

    Each video is one identity (``validation_fraction`` of them go to validation, so no face is in
    both splits); every ``every``-th frame is kept. Deterministic for a seed.
    """
    cfg = config or SynthConfig(videos=videos, frames=frames, seed=seed, size=size)
    if every < 1:
        raise ValueError(f"every must be at least 1, got {every}")
    out = Path(out_dir)
    _prepare_out_dir(out, overwrite, subfolders=tuple(FOLDER_SPLITS.values()))
    started = time.perf_counter()
    plans = plan_videos(cfg)
    deck = expression_deck(cfg.expression_weights, np.random.default_rng([cfg.seed, 1]))
    counts = {s: dict.fromkeys(ABAW8.labels, 0) for s in FOLDER_SPLITS}
    bar = Progress(cfg.videos, "synth folders", "video", enabled=progress)
    for plan in plans:
        rng = np.random.default_rng(plan.seed)
        seq = sample_sequence(cfg.frames, rng, cfg, next_expression=deck)
        background = random_background(np.random.default_rng(seq.background_seed), cfg.size)
        for t in range(0, len(seq), every):
            label = ABAW8.labels[int(seq.expr[t])]
            path = out / FOLDER_SPLITS[plan.split] / label / f"{plan.name}_{t + 1:05d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            seq.render(t, cfg.size, background, rng).save(path, format="JPEG", quality=seq.jpeg_quality)
            counts[plan.split][label] += 1
        bar.update(1)
    bar.close()
    summary = {"dataset": SYNTHETIC_FOLDERS_DATASET, "layout": "folders", "out_dir": str(out),
               "videos": {s: [p.name for p in plans if p.split == s] for s in FOLDER_SPLITS},
               "counts": counts, "seconds": round(time.perf_counter() - started, 2)}
    marker = {"dataset": SYNTHETIC_FOLDERS_DATASET, "layout": "folders", "generator": "affectmodel.data.synthetic",
              "generator_version": GENERATOR_VERSION, "libraries": image_library_versions(),
              "note": "Procedural faces for pre-training tests and demos; results on it never stand in for real data.",
              "expression_space": ABAW8.name, "every": every, "config": asdict(cfg),
              "videos": summary["videos"], "counts": counts}
    write_json_atomic(out / MARKER_FILE, marker)  # written last: its presence means "complete"
    return summary


# ----------------------------------------------------------------------------- contact sheet

def prototype_intensities(expression: str, intensity: float = 1.0,
                          rng: np.random.Generator | None = None) -> tuple[np.ndarray, dict[str, float]]:
    """(12 AU intensities, hidden AUs) of an ABAW-8 expression at ``intensity`` ("Other" draws a
    random mixture from ``rng``)."""
    if expression not in EXPRESSION_PROTOTYPES:
        raise ValueError(f"unknown expression {expression!r}; expected one of {', '.join(ABAW8.labels)}")
    proto = (_other_expression(rng or np.random.default_rng(0)) if expression == "Other"
             else EXPRESSION_PROTOTYPES[expression])
    au = np.array([proto.get(n, 0.0) * intensity for n in AU_NAMES], dtype=np.float32)
    hidden = {n: proto[n] * intensity for n in HIDDEN_AUS if n in proto}
    return au, hidden


def contact_sheet(path: str | Path | None = None, columns: int = 6, size: int = 112, seed: int = 0,
                  scale: int = 1) -> Image.Image:
    """One row per ABAW-8 expression: the first half of the columns at full intensity on clean
    frontal faces, the rest as in the benchmark (random intensity, pose and nuisances)."""
    rng = np.random.default_rng(seed)
    identities = [sample_identity(rng) for _ in range(columns)]
    label_w = 90
    sheet = Image.new("RGB", (label_w + columns * size, len(ABAW8) * size + 24), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    clean = (columns + 1) // 2
    draw.text((label_w + 4, 4), "prototypes (intensity 1, clean)", fill=(0, 0, 0), font=font)
    draw.text((label_w + clean * size + 4, 4), "as in the benchmark (noisy)", fill=(0, 0, 0), font=font)
    cfg = SynthConfig()
    for row, name in enumerate(ABAW8.labels):
        y = 24 + row * size
        draw.text((6, y + size // 2 - 6), name, fill=(0, 0, 0), font=font)
        for col_i, ident in enumerate(identities):
            if col_i < clean:
                au, hidden = prototype_intensities(name, 1.0, rng)
                img = render_face(au, ident, size, background=(200, 200, 205), hidden_au=hidden,
                                  framing=canonical_template(size))
            else:
                seq = sample_sequence(40, rng, cfg, identity=ident)
                # pick a frame of this expression at its apex
                peak = rng.uniform(0.75, 1.0)
                au, hidden = prototype_intensities(name, peak, rng)
                seq.au_intensity[-1] = np.clip(au + rng.uniform(0, 0.15, size=au.shape), 0, 1)
                seq.hidden_au[-1] = [hidden.get(n, 0.0) for n in HIDDEN_AUS]
                seq.occluders[-1] = None
                img = seq.render(len(seq) - 1, size)
                buf = io.BytesIO()
                img.save(buf, format="JPEG", quality=seq.jpeg_quality)
                img = Image.open(buf).convert("RGB")
            sheet.paste(img, (label_w + col_i * size, y))
    if scale != 1:
        sheet = sheet.resize((sheet.width * scale, sheet.height * scale), Image.Resampling.NEAREST)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        sheet.save(path)
    return sheet


# ----------------------------------------------------------------------------- command line

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--layout", default="affwild2", choices=("affwild2", "folders"),
                        help="affwild2: the Aff-Wild2 layout (all tasks, default); folders: an expression-only "
                             "folder-per-class set (train/<label>/, validation/<label>/) for pre-training")
    parser.add_argument("--every", type=int, default=5,
                        help="folders layout: keep every n-th frame of each synthetic video (default 5)")
    parser.add_argument("--videos", type=int, default=20, help="number of videos (default 20)")
    parser.add_argument("--frames", type=int, default=100, help="frames per video (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same files)")
    parser.add_argument("--size", type=int, default=112,
                        help="image size in pixels (default 112, like cropped_aligned)")
    parser.add_argument("--validation-fraction", type=float, default=0.25)
    parser.add_argument("--nuisance", type=float, default=SynthConfig.nuisance,
                        help=f"strength of pose/lighting/blur/noise/occlusion, 0 (clean) to 1 (harsh); "
                             f"default {SynthConfig.nuisance}")
    parser.add_argument("--dynamics", action="store_true",
                        help="affwild2 layout: the dynamic benchmark (AU onset/apex/offset, expression episodes, "
                             "drifting valence/arousal, occlusion/blur/head-turn bursts; docs/TEMPORAL.md)")
    parser.add_argument("--overwrite", action="store_true", help="replace a benchmark previously generated there")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    cfg = SynthConfig(videos=args.videos, frames=args.frames, seed=args.seed, size=args.size,
                      validation_fraction=args.validation_fraction, nuisance=args.nuisance)
    if args.layout == "folders":
        if args.dynamics:
            raise ValueError("--dynamics writes the affwild2 layout (videos with labels over time), "
                             "not --layout folders")
        summary = generate_expression_folders(args.out, config=cfg, every=args.every, overwrite=args.overwrite,
                                              progress=not args.quiet)
        print(json.dumps({"dataset": SYNTHETIC_FOLDERS_DATASET, "layout": "folders", "out_dir": summary["out_dir"],
                          "images": {s: sum(c.values()) for s, c in summary["counts"].items()},
                          "seconds": summary["seconds"]}))
        return 0
    if args.dynamics:
        from .synthetic_dynamics import generate_dynamic_benchmark  # imports this module

        summary = generate_dynamic_benchmark(args.out, config=cfg, overwrite=args.overwrite, progress=not args.quiet)
    else:
        summary = generate_benchmark(args.out, config=cfg, overwrite=args.overwrite, progress=not args.quiet)
    c = summary["counts"]
    print(json.dumps({"dataset": DATASET_NAME, "out_dir": summary["out_dir"],
                      "videos": {s: len(v) for s, v in summary["videos"].items()},
                      "images": {s: c[s]["images"] for s in c}, "seconds": summary["seconds"]}))
    return 0


__all__ = [
    "CIRCUMPLEX",
    "DATASET_NAME",
    "EXPRESSION_PROTOTYPES",
    "MARKER_FILE",
    "SynthConfig",
    "SyntheticSequence",
    "contact_sheet",
    "generate_benchmark",
    "generate_expression_folders",
    "mixture_circumplex",
    "plan_videos",
    "prototype_intensities",
    "read_marker",
    "render_face",
    "sample_sequence",
]
