"""Run folders for the study/dashboard tests, written the way training writes them (records.py contract).

Scores are invented but plausible; the tests derive every expected value from what is written here.
Nothing here trains a model: the dashboard reads config.json, metrics.json and history.csv only.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from affectmodel.tasks import ABAW8, AU_NAMES, headline_metric, parse_tasks

SYNTHETIC = {"name": "synthetic-affect", "synthetic": True, "split": "val"}
AFFWILD2 = {"name": "aff-wild2", "synthetic": False, "split": "val"}
DEFAULT_LOSSES = {"expr": "ce", "au": "bce", "va": "ccc"}
PARAMS_PER_MODEL = 11_180_000


def write_run(root: Path, suite: str, name: str, *, tasks: str, scores: dict[str, float],
              dataset: dict[str, Any] = SYNTHETIC, init: str = "random", pretrained_from: str | None = None,
              augment: str = "light", losses: dict[str, str] | None = None, weighting: str = "fixed",
              train_time_s: float = 60.0, images_per_second: float = 300.0, epochs: int = 3,
              confusion: bool = False, hub_repo: str | None = None) -> Path:
    """Write one run folder; ``scores`` gives the per-task headline metric (P_EXPR/P_AU/P_VA)."""
    keys = parse_tasks(tasks)
    run = root / suite / name
    run.mkdir(parents=True)
    config = {"tasks": list(keys), "init": init, "pretrained_from": pretrained_from, "augment": augment,
              "losses": {k: v for k, v in {**DEFAULT_LOSSES, **(losses or {})}.items() if k in keys},
              "weighting": weighting, "data": "/data/x", "image_size": 64, "epochs": epochs, "seed": 0,
              "dataset": dataset, "label_spaces": {"expr": "abaw8"}}
    metrics: dict[str, Any] = {"tasks": list(keys), "multi_task": len(keys) > 1, "dataset": dataset,
                               "headline_metric": headline_metric(keys), "best_epoch": epochs - 1,
                               "parameters": PARAMS_PER_MODEL + 1000 * len(keys), "train_time_s": train_time_s,
                               "images_per_second": images_per_second}
    if "expr" in keys:
        p = scores["P_EXPR"]
        metrics["P_EXPR"] = p
        # spread around the mean so that the per-class mean equals P_EXPR
        offsets = [0.1, -0.1, 0.05, -0.05, 0.08, -0.08, 0.0, 0.0]
        metrics["per_class_f1"] = {label: round(p + o, 4) for label, o in zip(ABAW8.labels, offsets)}
        if confusion:
            metrics["confusion_matrix"] = [[10 if i == j else (1 if j == (i + 1) % 8 else 0) for j in range(8)]
                                           for i in range(8)]
    if "au" in keys:
        p = scores["P_AU"]
        metrics["P_AU"] = p
        metrics["per_au_f1"] = {au: round(p + (0.02 if i % 2 else -0.02), 4) for i, au in enumerate(AU_NAMES)}
    if "va" in keys:
        p = scores["P_VA"]
        metrics.update({"P_VA": p, "ccc_valence": p + 0.05, "ccc_arousal": p - 0.05})
    if len(keys) > 1:
        metrics["P_MTL"] = sum(metrics[m] for m in ("P_EXPR", "P_AU", "P_VA") if m in metrics)
    if hub_repo:
        metrics["hub_repo"] = hub_repo
    (run / "config.json").write_text(json.dumps(config, indent=2))
    (run / "metrics.json").write_text(json.dumps(metrics, indent=2))
    val = [m for m in ("P_EXPR", "P_AU", "P_VA", "P_MTL") if m in metrics]
    header = ["epoch", "lr", "train_loss", *[f"train_loss_{k}" for k in keys], *[f"val_{m}" for m in val], "time_s"]
    with open(run / "history.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for e in range(epochs):
            frac = (e + 1) / epochs
            # losses fall faster for better runs, so that curves of different runs differ
            drop = 0.15 + 0.3 * sum(scores.values()) / len(scores)
            w.writerow([e, 1e-3, round(len(keys) * (1.0 - e * drop), 4), *[round(1.0 - e * drop, 4) for _ in keys],
                        *[round(metrics[m] * frac, 4) for m in val], 20.0 * (e + 1)])
    return run


def write_study_runs(root: Path) -> dict[str, Path]:
    """Six synthetic-benchmark runs (suite "quick") and two Aff-Wild2 runs (suite "affwild2").

    On the synthetic suite the multi-task runs beat uni-task on expression and AUs and lose on VA.
    """
    root = Path(root)
    runs = {
        "uni-expr": write_run(root, "quick", "uni-expr", tasks="expr", scores={"P_EXPR": 0.40}, confusion=True,
                              train_time_s=50.0, images_per_second=400.0),
        "uni-au": write_run(root, "quick", "uni-au", tasks="au", scores={"P_AU": 0.50}, train_time_s=55.0,
                            images_per_second=400.0),
        "uni-va": write_run(root, "quick", "uni-va", tasks="va", scores={"P_VA": 0.60}, train_time_s=45.0,
                            images_per_second=400.0),
        "multi": write_run(root, "quick", "multi", tasks="expr,au,va",
                           scores={"P_EXPR": 0.45, "P_AU": 0.52, "P_VA": 0.55}, train_time_s=70.0,
                           images_per_second=350.0, confusion=True),
        "multi-from-uni": write_run(root, "quick", "multi-from-uni", tasks="expr,au,va", init="checkpoint",
                                    pretrained_from="uni-task backbones",
                                    scores={"P_EXPR": 0.43, "P_AU": 0.56, "P_VA": 0.57}, train_time_s=72.0,
                                    images_per_second=350.0),
        "multi-focal": write_run(root, "quick", "multi-focal", tasks="expr,au,va", losses={"expr": "focal"},
                                 scores={"P_EXPR": 0.47, "P_AU": 0.49, "P_VA": 0.50}, train_time_s=75.0,
                                 images_per_second=340.0, hub_repo="someone/affect-multi-focal"),
        "aw2-uni-expr": write_run(root, "affwild2", "uni-expr", tasks="expr", dataset=AFFWILD2,
                                  init="imagenet", scores={"P_EXPR": 0.28}, train_time_s=3600.0),
        "aw2-multi": write_run(root, "affwild2", "multi", tasks="expr,au,va", dataset=AFFWILD2, init="imagenet",
                               scores={"P_EXPR": 0.30, "P_AU": 0.45, "P_VA": 0.35}, train_time_s=5400.0),
    }
    return runs
