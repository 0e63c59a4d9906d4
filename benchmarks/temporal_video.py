"""Temporal models on video: what reading a face over a window of frames costs (docs/TEMPORAL.md).

The generated video of ``video_e2e`` (a real face moving over a textured 640x360 frame, 25 fps)
goes through ``affectmodel.inference.iter_video_predictions`` with the library's defaults
(detection every 10 frames, optical flow between) and four models of the same trunk, interleaved
round-robin in one process: the per-frame model, the per-frame model with the demo's smoothing
(moving average over 5 frames), a bidirectional GRU and a causal GRU over windows of 16 frames (and
a bidirectional temporal convolution). Figures: fps of each, the temporal models' fps as a share of
the per-frame model's (target: at least 0.9, the temporal module being small next to the trunk),
and the latency a causal model adds to a live frame: the time of one window through the temporal
module and heads, and the frames a bidirectional model must wait for (window // 2, in ms at 25 fps).
"""
from __future__ import annotations

import time
from typing import TypedDict

import numpy as np

from .common import FamilyResult, Row, check_mode, interleaved, ratios
from .video_e2e import FPS, build_predictor, make_video


class Params(TypedDict):
    width: int
    height: int
    clip_s: float
    repeats: int
    window: int
    latency_repeats: int


PARAMS: dict[str, Params] = {
    "full": {"width": 640, "height": 360, "clip_s": 6, "repeats": 5, "window": 16, "latency_repeats": 200},
    "quick": {"width": 640, "height": 360, "clip_s": 3, "repeats": 2, "window": 16, "latency_repeats": 50},
    "tiny": {"width": 320, "height": 180, "clip_s": 0.4, "repeats": 1, "window": 4, "latency_repeats": 3},
}
TARGET_FPS_SHARE = 0.9
SMOOTH_WINDOW = 5  # the demo's default smoothing


def temporal_predictor(base, kind: str, window: int, causal: bool):
    """``base``'s trunk and heads with a temporal module (random output weights: speed does not
    depend on them), sharing ``base``'s detector."""
    import torch

    from affectmodel import AffectModel, ModelConfig
    from affectmodel.inference import Predictor

    config = ModelConfig(input_size=base.input_size, temporal=kind, window=window, causal=causal)
    model = AffectModel(config)
    model.load_state_dict(base.model.state_dict(), strict=False)
    assert model.temporal is not None
    torch.nn.init.normal_(model.temporal.out.weight, std=0.02)
    return Predictor(model, detector=base.detector)


def run(mode: str = "full") -> FamilyResult:
    from affectmodel.inference import VideoOptions, iter_video_predictions

    p = PARAMS[check_mode(mode)]
    started = time.perf_counter()
    w, window = p["window"], p["window"]
    clip = make_video(p["clip_s"], p["width"], p["height"])
    base = build_predictor()
    models = {"per-frame": base,
              "per-frame + smoothing": base,
              f"GRU, {w} frames, bidirectional": temporal_predictor(base, "gru", window, False),
              f"GRU, {w} frames, causal": temporal_predictor(base, "gru", window, True),
              f"conv, {w} frames, bidirectional": temporal_predictor(base, "conv", window, False)}
    rows_seen: dict[str, int] = {}

    def variant(name: str):
        options = VideoOptions(smoothing="mean" if "smoothing" in name else None, smooth_window=SMOOTH_WINDOW)

        def call() -> None:
            rows_seen[name] = sum(len(f.faces) for f in iter_video_predictions(models[name], clip, options))
        return call

    times = interleaved({name: variant(name) for name in models}, p["repeats"], warmup=1)
    n_frames = max(1, round(p["clip_s"] * FPS))
    fps = {name: [n_frames / t for t in ts] for name, ts in times.items()}
    rows = [Row(f"fps, {name} (library defaults)", fps[name], "fps") for name in models]
    for name in list(models)[2:]:
        rows.append(Row(f"fps share, {name} / per-frame", ratios(times["per-frame"], times[name]), "x",
                        (">=", TARGET_FPS_SHARE)))
    # latency of a live (causal) frame: one window through the temporal module and the heads
    causal = models[f"GRU, {w} frames, causal"]
    one_crop = [np.zeros((base.input_size, base.input_size, 3), np.uint8)]
    width = causal.features(one_crop).shape[1]  # the trunk's features (twice: with the face's mirror image)
    features = np.random.default_rng(0).standard_normal((1, window, width)).astype(np.float32)
    latency = interleaved({"window": lambda: causal.window_outputs(features, window - 1),
                           "trunk": lambda: causal.features(one_crop)}, p["latency_repeats"], warmup=3)
    rows += [
        Row(f"causal GRU: one window of {w} frames through the temporal module and heads",
            [1000 * t for t in latency["window"]], "ms"),
        Row("one face crop through the trunk, for scale", [1000 * t for t in latency["trunk"]], "ms"),
        Row(f"added delay of a bidirectional model ({w // 2} frames at {FPS} fps)", [1000 * (w // 2) / FPS], "ms"),
        Row("added delay of a causal model", [0.0], "ms"),
    ]
    faces = sorted(set(rows_seen.values()))
    notes = [f"Faces predicted per pass: {', '.join(map(str, faces))} (the same for every model, "
             f"{n_frames} frames). Models are randomly initialised (speed does not depend on the weights); "
             "the temporal modules have 0.3-0.5 M parameters next to the trunk's 11 M."]
    return FamilyResult("temporal_video", "Temporal models on video: fps and latency against the per-frame model",
                        rows, params=dict(p), notes=notes, seconds=time.perf_counter() - started)
