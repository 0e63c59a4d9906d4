"""Which int8 quantisation settings ``python -m affectmodel export --int8`` uses, chosen on real faces
that are not the faces the figures are reported on.

For each alternative of :class:`affectmodel.inference.export.Int8Settings` (format, per-channel,
reduce_range, activation type, calibration method, layers kept in float) and of the calibration
faces (generated, as export does by default, or real face crops), this quantises the fp32 graph of
the benchmark's trained default model and compares it with PyTorch, both with the predictor's
default mirror averaging:

* on the **choice** faces: a third of scikit-image's LFW subset (faces 1, 4, 7, ...: 33 real faces,
  25 px greyscale, scaled up as any small crop is); the variant "calibrated on real faces" is
  calibrated on another third (faces 0, 3, 6, ... and their mirror images), as
  ``export --calibration`` would be on a user's own crops;
* on the **held-out** faces: the last third (faces 2, 5, 8, ...: 33 other faces), and the export's
  own check faces (96 generated faces), which neither chose nor calibrated anything;
* its speed per face at batch 32 against torch and the fp32 graph, interleaved (run it under the CPU
  lock: ``flock /work/cpu.lock .venv/bin/python scripts/int8_settings.py``).

The rule, fixed before the figures: keep the current default unless an alternative's mean absolute
difference of expression probabilities from PyTorch on the choice faces is lower with a paired
bootstrap 95 % interval (faces resampled) entirely below zero, at no more than 0.6x torch's time per
face; among such alternatives, the lowest mean wins. The headline quality figures (the benchmark's
real-face clip and the demo photos) are measured by ``benchmarks/run.py --only onnx_inference`` with
the chosen default, not here.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from affectmodel.inference import export  # noqa: E402
from affectmodel.inference.export import INT8_DEFAULT, Int8Settings  # noqa: E402
from affectmodel.inference.onnx_engine import INPUT_NAME, activate, open_session  # noqa: E402
from affectmodel.inference.predictor import preprocess_crops  # noqa: E402

SPEED_RATIO_LIMIT = 0.6
BOOTSTRAP = 2000
VARIANTS: dict[str, tuple[Int8Settings, str]] = {
    "default": (INT8_DEFAULT, "generated"),
    "calibrated on real faces (LFW calibration third + mirrors)": (INT8_DEFAULT, "real"),
    "QOperator format": (dataclasses.replace(INT8_DEFAULT, format="qoperator"), "generated"),
    "per-tensor weights": (dataclasses.replace(INT8_DEFAULT, per_channel=False), "generated"),
    "reduce_range (7-bit weights)": (dataclasses.replace(INT8_DEFAULT, reduce_range=True), "generated"),
    "int8 symmetric activations": (dataclasses.replace(INT8_DEFAULT, activations="int8"), "generated"),
    "percentile ranges": (dataclasses.replace(INT8_DEFAULT, method="percentile"), "generated"),
    "entropy ranges": (dataclasses.replace(INT8_DEFAULT, method="entropy"), "generated"),
    "first conv in float": (dataclasses.replace(INT8_DEFAULT, keep_float=("heads", "first_conv")), "generated"),
    "last block in float": (dataclasses.replace(INT8_DEFAULT, keep_float=("heads", "last_block")), "generated"),
    "first conv and last block in float": (
        dataclasses.replace(INT8_DEFAULT, keep_float=("heads", "first_conv", "last_block")), "generated"),
}


def lfw_faces() -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """(calibration, choice, held-out): the 100 faces of scikit-image's LFW subset as RGB uint8, in
    thirds by index modulo 3."""
    import skimage.data

    faces = np.load(Path(skimage.data.__file__).parent / "lfw_subset.npy")[:100]  # the first 100 are faces
    rgb = [np.repeat((f * 255).round().astype(np.uint8)[..., None], 3, axis=2) for f in faces]
    return rgb[0::3], rgb[1::3], rgb[2::3]


def mirrored_outputs(run, crops: list[np.ndarray], config, batch: int = 32) -> dict[str, np.ndarray]:
    """What the predictor reports by default: each crop and its mirror image, outputs averaged."""
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(crops), batch):
        x = preprocess_crops(crops[start:start + batch], config)
        n = len(x)
        out = activate(run(np.concatenate([x, x[:, :, ::-1]])))
        for key, values in out.items():
            parts.setdefault(key, []).append(0.5 * (values[:n] + values[n:]))
    return {key: np.concatenate(values) for key, values in parts.items()}


def graph_run(path: Path, threads: int):
    session = open_session(path, threads)
    names = [o.name for o in session.get_outputs()]

    def run(batch_nhwc: np.ndarray) -> dict[str, np.ndarray]:
        x = np.ascontiguousarray(batch_nhwc.transpose(0, 3, 1, 2))
        return dict(zip(names, session.run(names, {INPUT_NAME: x}), strict=True))

    return run


def figures(got: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> dict:
    per_face = np.abs(got["expr"] - ref["expr"]).mean(axis=1)
    return {"same_top": float(np.mean(got["expr"].argmax(1) == ref["expr"].argmax(1))),
            "mean_prob_diff": float(per_face.mean()), "per_face": per_face,
            "va_max": float(np.abs(got["va"] - ref["va"]).max()) if "va" in ref else None}


def paired_interval(a: np.ndarray, b: np.ndarray, seed: int = 0) -> tuple[float, float, float]:
    """Mean of a - b and its paired bootstrap 95 % interval (faces resampled)."""
    d = a - b
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), (BOOTSTRAP, len(d)))].mean(axis=1)
    return float(d.mean()), float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None,
                        help="model folder exported to fp32 (default: the benchmark's trained default model)")
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds (default %(default)s)")
    parser.add_argument("--no-speed", action="store_true", help="quality only")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args(argv)

    import torch

    from affectmodel.hub.loading import load_folder
    from affectmodel.inference.torch_engine import TorchEngine
    from benchmarks.common import interleaved
    from benchmarks.onnx_inference import quality_model

    folder = args.model or quality_model()
    model = load_folder(folder)
    config = model.config
    threads = torch.get_num_threads()
    calibration_third, choice, held_out = lfw_faces()
    sets = {"choice (LFW 1/3)": choice, "held-out (LFW 1/3)": held_out,
            "held-out (generated check faces)": export.generated_faces(export.CHECK_FACES, config.input_size,
                                                                       export.CHECK_SEED)}
    torch_run = TorchEngine(model).run
    reference = {name: mirrored_outputs(torch_run, faces, config) for name, faces in sets.items()}
    calibration = {"generated": export.generated_faces(export.CALIBRATION_FACES, config.input_size,
                                                       export.CALIBRATION_SEED),
                   "real": calibration_third + [np.ascontiguousarray(f[:, ::-1]) for f in calibration_third]}
    results: dict[str, dict] = {}
    runs = {"torch": torch_run, "onnx fp32": graph_run(folder / "model.onnx", threads)}
    with tempfile.TemporaryDirectory(prefix="int8-settings-") as tmp:
        for i, (name, (settings, calib)) in enumerate(VARIANTS.items()):
            work = Path(tmp) / f"v{i}"
            work.mkdir()
            path = work / "model.int8.onnx"
            export.quantize_int8(folder / "model.onnx", path, calibration[calib], config, work, settings)
            run = graph_run(path, threads)
            runs[name] = run
            results[name] = {"settings": settings.to_dict(), "calibration": calib,
                             **{s: figures(mirrored_outputs(run, faces, config), reference[s])
                                for s, faces in sets.items()}}
            print(f"quantised: {name}", file=sys.stderr, flush=True)
        speed: dict[str, float] = {}
        if not args.no_speed:
            rng = np.random.default_rng(0)
            crops = [rng.integers(0, 256, (config.input_size, config.input_size, 3), np.uint8) for _ in range(32)]
            calls = {name: functools.partial(mirrored_outputs, run, crops, config) for name, run in runs.items()}
            times = interleaved(calls, args.repeats, warmup=2)
            speed = {name: float(np.median(t)) / len(crops) for name, t in times.items()}
    choice_key = "choice (LFW 1/3)"
    default = results["default"][choice_key]["per_face"]
    chosen, best = "default", results["default"][choice_key]["mean_prob_diff"]
    for name, r in results.items():
        mean, low, high = paired_interval(r[choice_key]["per_face"], default)
        r["vs_default_on_choice"] = {"mean": mean, "low": low, "high": high}
        fast = not speed or speed[name] <= SPEED_RATIO_LIMIT * speed["torch"]
        if name != "default" and high < 0 and fast and r[choice_key]["mean_prob_diff"] < best:
            chosen, best = name, r[choice_key]["mean_prob_diff"]
    print(f"\nmodel {folder}; mirror averaging on (both engines); threads {threads}; speed: per face at batch 32 "
          f"(ms, median of {args.repeats})" + (" not measured" if not speed else ""))
    if speed:
        print(f"torch {speed['torch'] * 1e3:.2f} ms, onnx fp32 {speed['onnx fp32'] * 1e3:.2f} ms")
    header = "| settings | " + " | ".join(f"{s}: same top, mean abs prob diff, max VA diff" for s in sets)
    print(header + " | vs default on the choice faces (95 % interval) | ms per face (x torch) |")
    print("|---" * (len(sets) + 3) + "|")
    for name, r in results.items():
        cells = [f"{r[s]['same_top']:.1%}, {r[s]['mean_prob_diff']:.5f}, {r[s]['va_max']:.3f}" for s in sets]
        v = r["vs_default_on_choice"]
        sp = f"{speed[name] * 1e3:.2f} ({speed[name] / speed['torch']:.2f}x)" if speed else "-"
        print(f"| {name} | " + " | ".join(cells) + f" | {v['mean']:+.5f} [{v['low']:+.5f}, {v['high']:+.5f}] | {sp} |")
    print(f"\nchosen by the rule: {chosen}")
    if args.out:
        for r in results.values():
            for s in sets:
                r[s].pop("per_face")
        args.out.write_text(json.dumps({"model": str(folder), "threads": threads, "speed_s_per_face": speed,
                                        "results": results, "chosen": chosen}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
