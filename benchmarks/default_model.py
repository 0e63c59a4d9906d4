#!/usr/bin/env python
"""The demo's default model, checked as issue 21 asks: its validation floors, its build time, and how
it reads real faces (mirror agreement, spread, smiles).

    python benchmarks/default_model.py --build runs/default-model     # build it as the demo does, then check
    python benchmarks/default_model.py --model ~/.cache/affectmodel/default-model   # check a built one

Run ``--build`` under the CPU lock on an otherwise idle machine (``flock /work/cpu.lock ...``): its
build time is one of the figures. It prints a summary and writes ``default_model.json`` into the
model folder.

* **Floors**: read from the run's own ``metrics.json`` (the reported weights on its validation
  split, never on the real faces below): ``ccc_valence`` >= 0.5, ``ccc_arousal`` >= 0.4,
  P_EXPR >= 0.45, P_AU >= 0.5.
* **Real faces** (nothing downloaded): the demo's example photos and scikit-image's test photos
  (the astronaut, the cameraman, and the 100 face images of its LFW subset, 25x25 grey, upscaled
  and padded here so that the detector finds them). Each face is detected and aligned as the demo
  does it. Nothing is tuned on them.
  - *mirror agreement*: the share of faces whose top expression equals that of their aligned crop's
    mirror image, read by the network alone (``Predictor(mirror=False)``). The demo averages each
    face with its mirror image (``mirror=True``), which makes the agreement 100 % by construction;
    the network-alone figure is the honest one.
  - *spread*: valence and arousal over the faces (with the demo's mirror averaging): standard
    deviation, range, and the share at the bounds (|value| >= 0.95).
  - *smiles*: faces chosen by eye as clearly smiling (teeth showing) before any model read them:
    the astronaut's (in three example photos) and 16 of the LFW faces (:data:`LFW_SMILES`); share
    read as Happiness, share with positive valence.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `affectmodel` importable
    sys.path.insert(0, str(ROOT))

FLOORS = {"ccc_valence": 0.5, "ccc_arousal": 0.4, "P_EXPR": 0.45, "P_AU": 0.5}
EXAMPLES = ROOT / "demo" / "examples"
# Indices into skimage's LFW subset (its first 100 images are faces) of the faces that smile broadly
# with their teeth showing, picked by eye from the images alone.
LFW_SMILES = (18, 19, 21, 27, 31, 37, 52, 53, 69, 74, 79, 81, 85, 91, 93, 94)
SATURATED = 0.95


@dataclass
class RealFace:
    name: str
    crop: np.ndarray      # aligned RGB crop at the model's input size
    smiling: bool


def _lfw_images() -> list[np.ndarray]:
    """The 100 face images of scikit-image's LFW subset, upscaled 25 -> 112 px and padded with their
    edge by half a face on each side (the detector needs some context), as RGB."""
    import cv2
    from skimage import data

    faces = data.lfw_subset()[:100]
    out = []
    for face in faces:
        grey = cv2.resize((face * 255).round().astype(np.uint8), (112, 112), interpolation=cv2.INTER_CUBIC)
        out.append(np.repeat(np.pad(grey, 56, mode="edge")[..., None], 3, axis=2))
    return out


def real_faces(predictor, lfw: bool = True) -> list[RealFace]:
    """Every face the predictor's detector finds in the real photos, aligned as the demo aligns it.
    ``lfw=False`` keeps the example photos and the cameraman only (fast)."""
    from skimage import data

    from affectmodel.images import load_image

    photos: list[tuple[str, np.ndarray, bool]] = [
        ("astronaut.jpg", load_image(EXAMPLES / "astronaut.jpg"), True),
        ("face_crop.jpg", load_image(EXAMPLES / "face_crop.jpg"), True),
        ("two_faces.jpg", load_image(EXAMPLES / "two_faces.jpg"), True),
        ("skimage camera", np.repeat(data.camera()[..., None], 3, axis=2), False),
    ]
    if lfw:
        photos += [(f"lfw {i}", image, i in LFW_SMILES) for i, image in enumerate(_lfw_images())]
    faces = []
    for name, image, smiling in photos:
        found = predictor.detect(image)
        for k, crop in enumerate(predictor.crops(image, found)):
            faces.append(RealFace(f"{name}#{k}" if len(found) > 1 else name, crop, smiling))
    return faces


def read_real_faces(model, lfw: bool = True) -> dict:
    """The real-face figures of ``model`` (a model folder, run folder or model object)."""
    from affectmodel.inference.predictor import Predictor

    alone = Predictor(model, mirror=False)
    averaged = Predictor(model, mirror=True)
    faces = real_faces(alone, lfw)
    if not faces:
        raise RuntimeError("no real face found")
    crops = [f.crop for f in faces]
    labels = alone.labels["expr"]
    plain = alone.forward(crops)
    flipped = alone.forward([np.ascontiguousarray(c[:, ::-1]) for c in crops])
    both = averaged.forward(crops)
    top, top_flipped, top_both = (np.argmax(o["expr"], axis=1) for o in (plain, flipped, both))
    smiling = np.array([f.smiling for f in faces])
    va = both["va"]
    happy = labels.index("Happiness")
    both_flipped = averaged.forward([np.ascontiguousarray(c[:, ::-1]) for c in crops])
    report = {
        "faces": len(faces),
        "mirror_agreement_network_alone": float(np.mean(top == top_flipped)),
        "mirror_agreement_averaged": float(np.mean(top_both == np.argmax(both_flipped["expr"], axis=1))),
        "top_expressions": {labels[k]: int(n) for k, n in zip(*np.unique(top_both, return_counts=True), strict=True)},
        "smiling_faces": int(smiling.sum()),
        "smiles_read_as_happiness": float(np.mean(top_both[smiling] == happy)) if smiling.any() else None,
        "smiles_positive_valence": float(np.mean(va[smiling, 0] > 0)) if smiling.any() else None,
        "smiles_mean_valence": float(np.mean(va[smiling, 0])) if smiling.any() else None,
        "others_mean_valence": float(np.mean(va[~smiling, 0])) if (~smiling).any() else None,
    }
    for i, name in enumerate(("valence", "arousal")):
        values = va[:, i]
        report[name] = {"std": float(values.std()), "min": float(values.min()), "max": float(values.max()),
                        "saturated_share": float(np.mean(np.abs(values) >= SATURATED))}
    report["per_face"] = [{"name": f.name, "smiling": f.smiling, "top": labels[int(t)],
                           "network_alone": labels[int(a)], "network_alone_mirror_image": labels[int(m)],
                           "valence": round(float(v[0]), 3), "arousal": round(float(v[1]), 3)}
                          for f, t, a, m, v in zip(faces, top_both, top, top_flipped, va, strict=True)]
    return report


def validation_figures(folder: Path) -> dict:
    """The floors' metrics from the run's ``metrics.json``: its reported weights on the validation
    split (top-level keys; ``selection`` holds the development split's, which are not these)."""
    metrics = json.loads((Path(folder) / "metrics.json").read_text())
    return {key: None if metrics.get(key) is None else float(metrics[key]) for key in FLOORS}


def build(folder: Path) -> dict:
    """Build the default model into ``folder`` exactly as the demo's first launch does, timed."""
    from affectmodel.runtime import configure_openmp

    configure_openmp()
    from affectmodel.training.default_model import build_default_model

    start = time.perf_counter()
    build_default_model(Path(folder))
    return {"build_s": round(time.perf_counter() - start, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--build", type=Path, metavar="OUT", help="build the default model into OUT, then check it")
    group.add_argument("--model", type=Path, help="check an existing default model (run folder)")
    args = parser.parse_args(argv)
    folder = args.build or args.model
    result: dict = {}
    if args.build:
        result.update(build(folder))
    result["validation"] = validation_figures(folder)
    result["floors_met"] = {k: v is not None and v >= FLOORS[k] for k, v in result["validation"].items()}
    health = json.loads((Path(folder) / "metrics.json").read_text()).get("health") or {}
    result["collapsed_heads"] = sorted(task for task, h in health.items() if h.get("collapsed"))
    result["real_faces"] = read_real_faces(folder)
    (Path(folder) / "default_model.json").write_text(json.dumps(result, indent=1) + "\n")
    summary = {k: v for k, v in result["real_faces"].items() if k != "per_face"}
    print(json.dumps({**{k: v for k, v in result.items() if k != "real_faces"}, "real_faces": summary}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
