"""Model limit: the bare ResNet-18 trunk's forward pass at the model's input size, against the full
predictor on pre-cropped faces (uint8 crops in, plain records out).

The predictor adds preprocessing (uint8 HWC -> normalised float NCHW), the heads, softmax/sigmoid
and the records; its overhead over the bare trunk should be small (target: within 1.25x at batch
32). The target is judged on the predictor as users get it: with its default mirror averaging,
which reads each face twice (the face and its mirror image, in one pass), so the network's own work
doubles. The same predictor with ``mirror=False`` (one read a face) is timed in the same rounds,
for context: the overhead of everything but the second read. The trunk is timed in PyTorch's
default memory layout and in channels_last, and the ratio is taken against the faster of the two,
so a faster predictor layout cannot flatter the ratio.
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torchvision

from .common import FamilyResult, Row, check_mode, interleaved, profile_top, ratios

PARAMS = {
    "full": {"size": 112, "batch": 32, "repeats_1": 15, "calls_1": 10, "repeats_32": 9},
    "quick": {"size": 112, "batch": 32, "repeats_1": 5, "calls_1": 5, "repeats_32": 3},
    "tiny": {"size": 32, "batch": 4, "repeats_1": 2, "calls_1": 1, "repeats_32": 2},
}
TARGET_OVERHEAD = 1.25


def bare_trunk(channels_last: bool = False) -> torch.nn.Module:
    net = torchvision.models.resnet18(weights=None)
    net.fc = torch.nn.Identity()
    net.eval()
    return net.to(memory_format=torch.channels_last) if channels_last else net


def _repeat(fn, calls: int):
    def run() -> None:
        for _ in range(calls):
            fn()
    return run


def run(mode: str = "full") -> FamilyResult:
    from affectmodel import AffectModel, ModelConfig
    from affectmodel.inference import Predictor

    p = PARAMS[check_mode(mode)]
    started = time.perf_counter()
    size, batch = p["size"], p["batch"]
    torch.manual_seed(0)
    trunk, trunk_cl = bare_trunk(False), bare_trunk(True)
    model = AffectModel(ModelConfig(input_size=size))
    predictor = Predictor(model, detector=None, batch_size=max(64, batch))  # mirror averaging on (default)
    single = Predictor(model, detector=None, batch_size=max(64, batch), mirror=False)
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(batch)]
    x_batch = torch.randn(batch, 3, size, size)
    x_batch_cl = x_batch.contiguous(memory_format=torch.channels_last)
    x_one, x_one_cl = x_batch[:1].clone(), x_batch[:1].contiguous(memory_format=torch.channels_last)

    def forward(net, x):
        def call() -> None:
            with torch.inference_mode():
                net(x)
        return call

    k = p["calls_1"]
    one = interleaved({
        "bare": _repeat(forward(trunk, x_one), k),
        "bare_cl": _repeat(forward(trunk_cl, x_one_cl), k),
        "predictor": _repeat(lambda: predictor.predict_crops(crops[:1]), k),
        "single": _repeat(lambda: single.predict_crops(crops[:1]), k),
    }, p["repeats_1"])
    one = {name: [t / k for t in values] for name, values in one.items()}
    many = interleaved({
        "bare": forward(trunk, x_batch),
        "bare_cl": forward(trunk_cl, x_batch_cl),
        "predictor": lambda: predictor.predict_crops(crops),
        "single": lambda: single.predict_crops(crops),
    }, p["repeats_32"])

    def best(times: dict[str, list[float]]) -> list[float]:
        return [min(a, b) for a, b in zip(times["bare"], times["bare_cl"], strict=True)]

    ms = lambda values: [v * 1e3 for v in values]  # noqa: E731
    overhead_many = ratios(many["predictor"], best(many))
    rows = [
        Row(f"bare trunk, batch 1, {size} px", ms(one["bare"]), "ms"),
        Row(f"bare trunk channels_last, batch 1, {size} px", ms(one["bare_cl"]), "ms"),
        Row(f"bare trunk, batch {batch}", ms(many["bare"]), "ms"),
        Row(f"bare trunk channels_last, batch {batch}", ms(many["bare_cl"]), "ms"),
        Row(f"bare trunk, batch {batch}, per image", [v / batch for v in ms(best(many))], "ms"),
        Row("predictor.predict_crops, batch 1", ms(one["predictor"]), "ms"),
        Row(f"predictor.predict_crops, batch {batch}", ms(many["predictor"]), "ms"),
        Row("predictor / bare trunk, batch 1", ratios(one["predictor"], best(one)), "x",
            note="fixed per-call costs weigh more at batch 1"),
        Row("predictor.predict_crops, mirror averaging off, batch 1", ms(one["single"]), "ms"),
        Row(f"predictor.predict_crops, mirror averaging off, batch {batch}", ms(many["single"]), "ms"),
        Row(f"predictor / bare trunk, mirror averaging off, batch {batch}", ratios(many["single"], best(many)), "x",
            note="context: one read a face"),
        Row(f"predictor / bare trunk, batch {batch}", overhead_many, "x", ("<=", TARGET_OVERHEAD)),
    ]
    notes = [f"The predictor runs with its default mirror averaging unless a row says otherwise: each face is read "
             f"with its mirror image in one pass ({2 * batch} images through the network for {batch} faces), so "
             "the target row's ratio holds the second read as well as the preprocessing, the heads and the "
             "records. The rows with mirror averaging off read each face once (`Predictor(mirror=False)`), timed "
             "in the same interleaved rounds."]
    if mode != "tiny" and rows[-1].met is False:
        notes.append(f"Profile of predict_crops (batch {batch}), top entries by own time:\n\n```\n"
                     f"{profile_top(lambda: predictor.predict_crops(crops))}\n```")
    return FamilyResult("model_limit", "Model limit: bare ResNet-18 trunk vs the predictor on crops", rows,
                        params={**p, "torch_threads": torch.get_num_threads()}, notes=notes,
                        seconds=time.perf_counter() - started)
