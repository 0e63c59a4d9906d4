"""Run folders for the study/dashboard tests, written with the library's own writers
(affectmodel.training.records_writer and affectmodel.predictions.save_predictions).

Two kinds of record:

* older records (``seed=None``): ``<root>/<suite>/<name>/`` with invented but plausible scores and no
  predictions file, as runs made before seeds and held-out tuning existed;
* study records (``seed=k``): ``<root>/<suite>/<name>/seed-<k>/`` with ``val_predictions.npz`` drawn
  from a simple model of given skill, and metrics.json computed from those predictions by
  :func:`affectmodel.metrics.evaluate`, so the two always agree.

Nothing here trains a model: the dashboard and the study read records and predictions only.
"""
from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from affectmodel import metrics as metrics_module
from affectmodel.predictions import PREDICTIONS_FILE, Predictions, save_predictions
from affectmodel.records import config_id
from affectmodel.tasks import ABAW8, AU_NAMES, headline_metric, parse_tasks
from affectmodel.training.records_writer import history_columns, write_config, write_history, write_metrics

SYNTHETIC = {"name": "synthetic-affect", "synthetic": True, "split": "val"}
AFFWILD2 = {"name": "aff-wild2", "synthetic": False, "split": "val"}
DEFAULT_LOSSES = {"expr": "ce", "au": "bce", "va": "ccc"}
PARAMS_PER_MODEL = 11_180_000


def simulated_predictions(tasks: Sequence[str], skill: dict[str, float], seed: int, n_videos: int = 10,
                          frames: int = 24, video_seed: int = 1234) -> Predictions:
    """Validation predictions of a model of given ``skill`` (0 = chance, 1 = perfect) per task.

    Targets depend only on ``video_seed`` (the same validation set for every run); outputs on ``seed``.
    Each video has its own difficulty, so frames of one video are correlated as in real data.
    """
    truth_rng, rng = np.random.default_rng(video_seed), np.random.default_rng(seed)
    n = n_videos * frames
    video = np.repeat([f"video{i:02d}" for i in range(n_videos)], frames)
    frame = np.tile(np.arange(1, frames + 1), n_videos)
    difficulty = np.repeat(truth_rng.uniform(0.6, 1.0, n_videos), frames)
    expr_true = np.where(truth_rng.random(n) < 0.1, -1, truth_rng.integers(0, len(ABAW8), n))
    au_true = (truth_rng.random((n, len(AU_NAMES))) < 0.3).astype(np.float32)
    va_true = np.clip(truth_rng.normal(0, 0.4, (n, 2)), -1, 1)
    outputs, targets = {}, {}
    if "expr" in tasks:
        correct = rng.random(n) < skill["P_EXPR"] * difficulty
        pred = np.where(correct, np.maximum(expr_true, 0), rng.integers(0, len(ABAW8), n))
        outputs["expr"] = np.eye(len(ABAW8), dtype=np.float32)[pred] * 0.8 + 0.025
        targets["expr"] = expr_true
    if "au" in tasks:
        s = skill["P_AU"] * difficulty[:, None]
        outputs["au"] = np.clip(s * au_true + (1 - s) * rng.random((n, len(AU_NAMES))), 0, 1)
        targets["au"] = au_true
    if "va" in tasks:
        s = skill["P_VA"] * difficulty[:, None]
        outputs["va"] = np.clip(s * va_true + (1 - s) * rng.normal(0, 0.4, (n, 2)), -1, 1)
        targets["va"] = np.where(truth_rng.random((n, 2)) < 0.05, -5, va_true)
    return Predictions(video, frame, outputs, targets)


def write_run(root: Path, suite: str, name: str, *, tasks: str, scores: dict[str, float],
              dataset: dict[str, Any] = SYNTHETIC, init: str = "random", pretrained_from: str | None = None,
              augment: str = "light", losses: dict[str, str] | None = None, weighting: str = "fixed",
              train_time_s: float = 60.0, images_per_second: float = 300.0, epochs: int = 3,
              confusion: bool = False, hub_repo: str | None = None, seed: int | None = None,
              steps: int | None = None, init_run: str | None = None, init_steps: int = 0,
              init_train_time_s: float = 0.0, n_videos: int = 10, frames: int = 24,
              options: dict[str, Any] | None = None) -> Path:
    """Write one run folder.

    ``scores`` gives each task's headline metric (older records, ``seed=None``) or each task's skill
    (study records, ``seed=k``: the metrics are then computed from the simulated predictions).
    ``options`` adds or overrides config.json entries (any training option).
    """
    keys = parse_tasks(tasks)
    run = root / suite / name if seed is None else root / suite / name / f"seed-{seed}"
    config = {"tasks": list(keys), "init": init, "pretrained_from": pretrained_from, "augment": augment,
              "losses": {k: v for k, v in {**DEFAULT_LOSSES, **(losses or {})}.items() if k in keys},
              "weighting": weighting, "data": "/data/x", "image_size": 64, "epochs": epochs,
              "seed": 0 if seed is None else seed, "dataset": dataset,
              "label_spaces": {"expr": {"name": "abaw8", "labels": list(ABAW8.labels)}}}
    config.update(options or {})
    if seed is not None:
        config.update({"suite": suite, "run": name, "max_steps": steps})
        config["config_id"] = config_id(config)
    write_config(run, config)
    m: dict[str, Any] = {"tasks": list(keys), "multi_task": len(keys) > 1, "dataset": dataset,
                         "headline_metric": headline_metric(keys), "best_epoch": epochs - 1,
                         "parameters": PARAMS_PER_MODEL + 1000 * len(keys), "train_time_s": train_time_s,
                         "images_per_second": images_per_second}
    if seed is None:
        m.update(_invented_scores(keys, scores, confusion))
    else:
        predictions = simulated_predictions(keys, scores, seed=zlib.crc32(f"{suite}/{name}/{seed}".encode()),
                                            n_videos=n_videos, frames=frames)
        save_predictions(run / PREDICTIONS_FILE, predictions)
        thresholds = [0.5] * len(AU_NAMES)
        m.update(metrics_module.evaluate(predictions.outputs, predictions.targets, au_thresholds=thresholds))
        if "au" in keys:
            m["au_thresholds"] = dict(zip(AU_NAMES, thresholds, strict=True))
            m["P_AU_at_0.5"] = m["P_AU"]
        own = 100 if steps is None else steps
        m.update({"steps": own, "images_seen": own * 32, "labels_seen": dict.fromkeys(keys, own * 30),
                  "budget_steps": own + init_steps, "init_run": init_run, "init_train_time_s": init_train_time_s,
                  "selection": {"split": "development", "videos": 4, "frames": 96}, "leakage": {}})
    if hub_repo:
        m["hub_repo"] = hub_repo
    columns = history_columns(keys, len(keys) > 1)
    rows = []
    for e in range(epochs):
        frac = (e + 1) / epochs
        # losses fall faster for better runs, so that curves of different runs differ
        drop = 0.15 + 0.3 * sum(scores.values()) / len(scores)
        row = {"epoch": e, "step": (e + 1) * 10, "lr": 1e-3, "train_loss": round(len(keys) * (1.0 - e * drop), 4),
               "time_s": 20.0 * (e + 1)}
        row.update({f"train_loss_{k}": round(1.0 - e * drop, 4) for k in keys})
        row.update({c: round(m[c[4:]] * frac, 4) for c in columns if c.startswith("val_") and c[4:] in m})
        rows.append(row)
    write_history(run, rows, columns)
    write_metrics(run, m)
    return run


def _invented_scores(keys: Sequence[str], scores: dict[str, float], confusion: bool) -> dict[str, Any]:
    m: dict[str, Any] = {}
    if "expr" in keys:
        p = scores["P_EXPR"]
        m["P_EXPR"] = p
        # spread around the mean so that the per-class mean equals P_EXPR
        offsets = [0.1, -0.1, 0.05, -0.05, 0.08, -0.08, 0.0, 0.0]
        m["per_class_f1"] = {label: round(p + o, 4) for label, o in zip(ABAW8.labels, offsets, strict=True)}
        if confusion:
            m["confusion_matrix"] = [[10 if i == j else (1 if j == (i + 1) % 8 else 0) for j in range(8)]
                                     for i in range(8)]
    if "au" in keys:
        p = scores["P_AU"]
        m["P_AU"] = p
        m["per_au_f1"] = {au: round(p + (0.02 if i % 2 else -0.02), 4) for i, au in enumerate(AU_NAMES)}
    if "va" in keys:
        p = scores["P_VA"]
        m.update({"P_VA": p, "ccc_valence": p + 0.05, "ccc_arousal": p - 0.05})
    if len(keys) > 1:
        m["P_MTL"] = sum(m[k] for k in ("P_EXPR", "P_AU", "P_VA") if k in m)
    return m


def write_study_runs(root: Path) -> dict[str, Path]:
    """Six synthetic-benchmark runs (suite "quick") and two Aff-Wild2 runs (suite "affwild2"), older records.

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


def write_seeded_study(root: Path, seeds: Sequence[int] = (0, 1, 2), multi_gain: float = 0.0,
                       suite: str = "quick") -> dict[str, list[Path]]:
    """A small multi-seed study: uni-expr/uni-au/uni-va, a matched multi-task configuration, one
    initialised from uni-au (twice the budget: unmatched) and one with a focal expression loss.

    ``multi_gain`` is added to the multi-task configuration's skill on every task (0: no true effect).
    """
    root = Path(root)
    base = {"P_EXPR": 0.5, "P_AU": 0.5, "P_VA": 0.5}
    out: dict[str, list[Path]] = {}

    def add(name: str, tasks: str, skill: dict[str, float], **kw) -> None:
        out[name] = [write_run(root, suite, name, tasks=tasks, scores=skill, seed=s, steps=100, **kw)
                     for s in seeds]

    add("uni-expr", "expr", {"P_EXPR": base["P_EXPR"]}, train_time_s=40.0, images_per_second=400.0)
    add("uni-au", "au", {"P_AU": base["P_AU"]}, train_time_s=50.0, images_per_second=400.0)
    add("uni-va", "va", {"P_VA": base["P_VA"]}, train_time_s=45.0, images_per_second=400.0)
    add("multi", "expr,au,va", {k: v + multi_gain for k, v in base.items()}, train_time_s=60.0,
        images_per_second=350.0)
    add("multi-from-uni-au", "expr,au,va", dict(base), init="runs/quick/uni-au", pretrained_from="uni-au",
        init_run="uni-au", init_steps=100, init_train_time_s=50.0, train_time_s=60.0, images_per_second=350.0)
    add("multi-focal", "expr,au,va", dict(base), losses={"expr": "focal"}, train_time_s=60.0,
        images_per_second=350.0)
    return out


# The temporal suite's kinds (suites/temporal.toml): config.json options of each temporal run.
TEMPORAL_KINDS: dict[str, dict[str, Any]] = {
    "smooth": {"temporal": "smooth", "window": 5, "causal": True},
    "gru": {"temporal": "gru", "window": 16, "causal": False},
    "gru-causal": {"temporal": "gru", "window": 16, "causal": True},
    "conv": {"temporal": "conv", "window": 16, "causal": False},
}


def write_temporal_study(root: Path, kinds: Sequence[str] = ("smooth", "gru", "gru-causal", "conv"),
                         tasks: Sequence[str] = ("expr",), seeds: Sequence[int] = (0, 1),
                         skill: dict[str, float] | None = None, trunk_steps: int = 150,
                         temporal_steps: int = 300, suite: str = "temporal",
                         options: dict[str, dict[str, Any]] | None = None, suffix: str = "") -> dict[str, list[Path]]:
    """The temporal suite's records: per-frame-<t> (``t`` = a task or ``multi``) and, on it with the same
    seed, <kind>-<t>, each temporal record holding its trunk's facts (config.json ``trunk``) as
    training writes them (affectmodel.training.identity.trunk_facts). ``skill``: per configuration name
    (default 0.5 on every task); ``options``: config.json overrides per configuration name; ``suffix``:
    added to every name (a second set of trunks in the same suite)."""
    import json

    from affectmodel.training.identity import trunk_facts

    root, skill, options = Path(root), skill or {}, options or {}
    out: dict[str, list[Path]] = {}
    for t in tasks:
        keys = ",".join(parse_tasks("expr,au,va" if t == "multi" else t))
        label = (t if t != "expr,au,va" else "multi") + suffix

        def scores(name: str, keys: str = keys) -> dict[str, float]:
            return {headline_metric([k]): skill.get(name, 0.5) for k in parse_tasks(keys)}

        base = f"per-frame-{label}"
        out[base] = [write_run(root, suite, base, tasks=keys, scores=scores(base), seed=s, steps=trunk_steps,
                               options=options.get(base)) for s in seeds]
        for kind in kinds:
            name = f"{kind}-{label}"
            out[name] = []
            for s, trunk in zip(seeds, out[base], strict=True):
                facts = trunk_facts(json.loads((trunk / "config.json").read_text()),
                                    json.loads((trunk / "metrics.json").read_text()))
                own = 0 if kind == "smooth" else temporal_steps
                out[name].append(write_run(
                    root, suite, name, tasks=keys, scores=scores(name), seed=s, steps=own, init=f"runs/{suite}/{base}",
                    init_run=base, init_steps=trunk_steps,
                    options={**TEMPORAL_KINDS[kind], "trunk": facts, **options.get(name, {})}))
    return out
