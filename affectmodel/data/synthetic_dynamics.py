"""The dynamic synthetic benchmark (``synth --dynamics``): labels that evolve over time as real ones
do, and frames that only their neighbours explain (docs/TEMPORAL.md).

It is the synthetic benchmark of :mod:`.synthetic` (same faces, nuisances, label masks, layout,
readers and marker) with a different sequence sampler. Each video's base sequence comes from
:func:`.synthetic.sample_sequence` (identity, pose drift, lighting, occluders, JPEG quality); its
labels and AU intensities are then replaced by:

* **Episodes.** Expressions come as episodes separated by neutral stretches: an *onset* (the AUs
  ramp up from nothing), an *apex* (held, with a little wobble) and an *offset* (back to rest).
  The episode's expression label and its AU occurrence labels cover the whole episode, as an
  annotator marks them from the first visible movement: at early onset and late offset the face
  is nearly neutral, so the label is only readable from the apex next to it.
* **Mood.** Valence and arousal drift slowly (a smoothed random walk) on top of the episodes'
  circumplex places; the mood shows faintly in the face (a slight smile or frown, widened eyes),
  too faintly for one frame but clearly over many.
* **Bursts.** Short stretches where the face is hidden or spoiled while the labels carry on:
  occlusion bursts (a hand or object over the mouth or eyes), blur bursts (motion blur) and brief
  head turns (the yaw swings far out and back).

Per frame, ``OUT/dynamics/<video>.csv`` says which of these apply (``phase`` = neutral / onset /
apex / offset, and ``occluded``, ``blurred``, ``turned`` as 0/1), so a score can be broken down
by the frames where context matters. The readers ignore that folder.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..io import write_text_atomic
from ..tasks import ABAW8, AU_NAMES
from .synthetic import (
    CIRCUMPLEX,
    EXPRESSION_PROTOTYPES,
    SynthConfig,
    SyntheticSequence,
    _other_expression,
    _smooth,
    generate_benchmark,
    mixture_circumplex,
    sample_sequence,
)
from .synthetic_faces import HIDDEN_AUS

DYNAMICS_FOLDER = "dynamics"
DYNAMICS_VERSION = 1
PHASES = ("neutral", "onset", "apex", "offset")
NOTE_COLUMNS = ("frame", "phase", "occluded", "blurred", "turned")


@dataclass(frozen=True)
class DynamicsConfig:
    """How the dynamic benchmark's videos evolve (saved in ``SYNTHETIC.json`` under ``dynamics``)."""

    neutral_frames: tuple[int, int] = (4, 16)   # neutral stretch before each episode
    onset_frames: tuple[int, int] = (5, 12)
    apex_frames: tuple[int, int] = (8, 24)
    offset_frames: tuple[int, int] = (5, 12)
    mood_scale: float = 0.3          # std of the slowly drifting valence/arousal
    mood_sigma: float = 12.0         # frames: how slowly the mood drifts
    mood_visibility: float = 0.3     # AU intensity per unit of mood (faint: a frame alone hardly shows it)
    occlusion_every: float = 50.0    # frames per occlusion burst, on average
    blur_every: float = 50.0
    turn_every: float = 60.0
    burst_frames: tuple[int, int] = (3, 8)
    turn_yaw: tuple[float, float] = (0.75, 1.0)  # radians at the far point of a head turn
    blur_radius: float = 3.0         # pixels at 112 px (scaled with the image size)

    def __post_init__(self) -> None:
        for name in ("neutral_frames", "onset_frames", "apex_frames", "offset_frames", "burst_frames"):
            lo, hi = getattr(self, name)
            if not 1 <= lo <= hi:
                raise ValueError(f"{name} must be (low, high) with 1 <= low <= high, got {(lo, hi)}")
        for name in ("occlusion_every", "blur_every", "turn_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive (frames per burst), got {getattr(self, name)}")


@dataclass
class DynamicNotes:
    """Per frame: the episode phase (index into :data:`PHASES`) and the bursts that spoil it."""

    phase: np.ndarray      # int64 (T,)
    occluded: np.ndarray   # bool (T,)
    blurred: np.ndarray    # bool (T,)
    turned: np.ndarray     # bool (T,)

    def csv_lines(self) -> list[str]:
        rows = [",".join(NOTE_COLUMNS)]
        for t in range(len(self.phase)):
            rows.append(f"{t + 1},{PHASES[int(self.phase[t])]},{int(self.occluded[t])},{int(self.blurred[t])},"
                        f"{int(self.turned[t])}")
        return rows


@dataclass
class DynamicSequence(SyntheticSequence):
    """A :class:`SyntheticSequence` with its per-frame :class:`DynamicNotes`."""

    notes: DynamicNotes | None = None


def _ramp(n: int, rising: bool) -> np.ndarray:
    """A smooth (cosine) ramp of ``n`` frames from near 0 to 1 (or back)."""
    x = (np.arange(n) + 1) / (n + 1)
    r = 0.5 - 0.5 * np.cos(np.pi * x)
    return r if rising else r[::-1]


def _slow_drift(rng: np.random.Generator, frames: int, scale: float, sigma: float) -> np.ndarray:
    """A smooth random signal with std ``scale`` everywhere: white noise smoothed with room on both
    sides (edge padding would give the first and last frames far more than ``scale``)."""
    r = math.ceil(3 * sigma)
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= math.sqrt(float((k ** 2).sum()))  # unit std for white noise
    return scale * np.convolve(rng.standard_normal(frames + 2 * r), k, mode="valid")


def _bursts(rng: np.random.Generator, frames: int, every: float, length: tuple[int, int]) -> list[tuple[int, int]]:
    """Non-empty [start, stop) stretches, about one per ``every`` frames."""
    out = []
    for _ in range(int(rng.poisson(frames / every))):
        start = int(rng.integers(0, frames))
        out.append((start, min(frames, start + int(rng.integers(length[0], length[1] + 1)))))
    return out


def sample_dynamic_sequence(frames: int = 100, rng: np.random.Generator | int | None = None,
                            config: SynthConfig | None = None, identity=None, next_expression=None,
                            dynamics: DynamicsConfig | None = None) -> DynamicSequence:
    """One video of the dynamic benchmark (the arguments of :func:`.synthetic.sample_sequence`)."""
    cfg = config or SynthConfig()
    dyn = dynamics or DynamicsConfig()
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    base = sample_sequence(frames, rng, cfg, identity=identity, next_expression=next_expression)
    T = len(base)
    names = list(AU_NAMES) + list(HIDDEN_AUS)
    col = {n: i for i, n in enumerate(names)}
    neutral = ABAW8.labels.index("Neutral")

    # -- episodes: neutral stretch, onset, apex, offset
    target = np.zeros((T, len(names)))
    episode_au = np.zeros((T, len(AU_NAMES)), dtype=bool)  # AUs an annotator marks for the episode
    va_episode = np.zeros((T, 2))
    expr = np.full(T, neutral, dtype=np.int64)
    phase = np.zeros(T, dtype=np.int64)
    t = 0
    while t < T:
        t += int(rng.integers(dyn.neutral_frames[0], dyn.neutral_frames[1] + 1))
        if t >= T:
            break
        e = int(next_expression()) if next_expression is not None else int(rng.integers(len(ABAW8)))
        name = ABAW8.labels[e]
        if name == "Neutral":  # a longer neutral stretch instead of an episode
            t += int(rng.integers(dyn.apex_frames[0], dyn.apex_frames[1] + 1))
            continue
        lengths = [int(rng.integers(lo, hi + 1)) for lo, hi in (dyn.onset_frames, dyn.apex_frames, dyn.offset_frames)]
        env = np.concatenate([_ramp(lengths[0], True), 1 + 0.05 * rng.standard_normal(lengths[1]),
                              _ramp(lengths[2], False)])
        phases = np.repeat([1, 2, 3], lengths)
        end = min(T, t + len(env))
        env, phases = env[:end - t], phases[:end - t]
        peak = float(0.6 + 0.4 * rng.beta(2.0, 1.0))
        proto = _other_expression(rng) if name == "Other" else dict(EXPRESSION_PROTOTYPES[name])
        for au_name, value in proto.items():
            target[t:end, col[au_name]] = np.clip(value * rng.uniform(0.85, 1.1), 0, 1) * peak * env
            if au_name in AU_NAMES:
                episode_au[t:end, AU_NAMES.index(au_name)] = True
        v, a = mixture_circumplex(proto) if name == "Other" else CIRCUMPLEX[name]
        va_episode[t:end] = np.outer(peak * env, (v, a))
        expr[t:end] = e
        phase[t:end] = phases
        t = end

    # -- mood: slow valence/arousal drift that shows faintly in the face
    mood = np.stack([_slow_drift(rng, T, dyn.mood_scale, dyn.mood_sigma) for _ in range(2)], axis=1)
    vis = dyn.mood_visibility
    target[:, col["AU12"]] += vis * np.clip(mood[:, 0], 0, None)
    target[:, col["AU15"]] += vis * np.clip(-mood[:, 0], 0, None)
    target[:, col["AU5"]] += vis * np.clip(mood[:, 1], 0, None)
    target[:, col["AU1"]] += 0.5 * vis * np.clip(mood[:, 1], 0, None)
    intensity = np.clip(target + _smooth(rng.normal(0, 0.04, size=target.shape), 1.0), 0, 1)
    au_int = intensity[:, :len(AU_NAMES)].astype(np.float32)
    au = ((au_int >= cfg.au_threshold) | episode_au).astype(np.int64)
    flips = rng.random(au.shape) < cfg.au_label_noise
    au[flips] = 1 - au[flips]
    va = np.clip(va_episode + mood + rng.normal(0, 0.05, size=2), -1, 1).astype(np.float32)

    # -- bursts: the face is hidden or spoiled, the labels carry on
    pose, light = base.pose.copy(), base.light.copy()
    occluders = list(base.occluders)
    occluded, blurred, turned = (np.zeros(T, dtype=bool) for _ in range(3))
    skin = tuple(int(c) for c in np.clip(np.asarray(base.identity.skin) * 0.95, 0, 255))
    for start, stop in _bursts(rng, T, dyn.occlusion_every, dyn.burst_frames):
        lower = rng.random() < 0.6  # over the mouth, else over the eyes
        kind = str(rng.choice(["hand", "bar", "blob"]))
        occ = {"kind": kind, "size": float(rng.uniform(0.45, 0.6)), "angle": float(rng.uniform(-25, 25)),
               "color": skin if kind == "hand" else tuple(int(c) for c in rng.integers(0, 255, 3)),
               "center": (float(rng.uniform(0.4, 0.6)),
                          float(rng.uniform(0.68, 0.8) if lower else rng.uniform(0.3, 0.4)))}
        for i in range(start, stop):
            occluders[i] = occ
        occluded[start:stop] = True
    radius = dyn.blur_radius * cfg.size / 112
    for start, stop in _bursts(rng, T, dyn.blur_every, dyn.burst_frames):
        light[start:stop, 1] = np.maximum(light[start:stop, 1], radius * rng.uniform(0.8, 1.3))
        blurred[start:stop] = True
    for start, stop in _bursts(rng, T, dyn.turn_every, dyn.burst_frames):
        n = stop - start
        swing = float(rng.uniform(*dyn.turn_yaw)) * (1 if rng.random() < 0.5 else -1)
        bump = np.sin(np.pi * (np.arange(n) + 1) / (n + 1))
        pose[start:stop, 0] = pose[start:stop, 0] * (1 - bump) + swing * bump
        turned[start:stop] = np.abs(pose[start:stop, 0]) > 0.5
    notes = DynamicNotes(phase, occluded, blurred, turned)
    return DynamicSequence(expr=expr, au_intensity=au_int, hidden_au=intensity[:, len(AU_NAMES):].astype(np.float32),
                           au=au, va=va, identity=base.identity, pose=pose.astype(np.float32),
                           light=light.astype(np.float32), occluders=occluders, nuisance=base.nuisance,
                           jpeg_quality=base.jpeg_quality, background_seed=base.background_seed, notes=notes)


def _write_notes(out: Path, name: str, seq: SyntheticSequence) -> None:
    notes = getattr(seq, "notes", None)
    if notes is not None:
        write_text_atomic(out / DYNAMICS_FOLDER / f"{name}.csv", "\n".join(notes.csv_lines()) + "\n")


def generate_dynamic_benchmark(out_dir: str | Path, videos: int = 20, frames: int = 100, seed: int = 0,
                               size: int = 112, config: SynthConfig | None = None,
                               dynamics: DynamicsConfig | None = None, overwrite: bool = False,
                               progress: bool = True) -> dict:
    """Write the dynamic benchmark (:func:`.synthetic.generate_benchmark` with the dynamic sampler,
    plus ``dynamics/<video>.csv``); deterministic for a seed."""
    cfg = config or SynthConfig(videos=videos, frames=frames, seed=seed, size=size)
    dyn = dynamics or DynamicsConfig()
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and overwrite:
        import shutil

        from .marker import MARKER_FILE
        if (out / MARKER_FILE).exists():  # generate_benchmark refuses folders without the marker
            shutil.rmtree(out / DYNAMICS_FOLDER, ignore_errors=True)

    def sampler(frames: int, rng: np.random.Generator, config: SynthConfig, **kw: Any) -> DynamicSequence:
        return sample_dynamic_sequence(frames, rng, config, dynamics=dyn, **kw)

    return generate_benchmark(out, config=cfg, overwrite=overwrite, progress=progress, sampler=sampler,
                              on_video=_write_notes,
                              marker_extra={"dynamics": {"version": DYNAMICS_VERSION, **asdict(dyn)}})


def read_notes(root: str | Path, video: str) -> DynamicNotes | None:
    """The per-frame notes of one video of a dynamic benchmark (None for other data)."""
    path = Path(root) / DYNAMICS_FOLDER / f"{video}.csv"
    if not path.is_file():
        return None
    lines = path.read_text(encoding="utf-8").splitlines()[1:]
    cells = [line.split(",") for line in lines if line]
    return DynamicNotes(np.array([PHASES.index(c[1]) for c in cells], dtype=np.int64),
                        *(np.array([c[k] == "1" for c in cells], dtype=bool) for k in (2, 3, 4)))


def ambiguous_frames(notes: DynamicNotes) -> np.ndarray:
    """Frames that one frame cannot explain: onset/offset of an episode or inside a burst."""
    return (notes.phase == 1) | (notes.phase == 3) | notes.occluded | notes.blurred | notes.turned


__all__ = [
    "DYNAMICS_FOLDER",
    "PHASES",
    "DynamicNotes",
    "DynamicSequence",
    "DynamicsConfig",
    "ambiguous_frames",
    "generate_dynamic_benchmark",
    "read_notes",
    "sample_dynamic_sequence",
]
