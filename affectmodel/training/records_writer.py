"""Write a run folder exactly as :mod:`affectmodel.records` reads it.

Order matters: ``config.json`` when the run starts, ``history.csv`` after each evaluation, and at
the end ``model/``, ``val_predictions.npz`` (:mod:`affectmodel.predictions`) and finally
``metrics.json``, whose presence marks the run complete.
"""
from __future__ import annotations

import csv
import io
import json
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import __version__
from ..io import write_json_atomic, write_text_atomic
from ..model import AffectModel
from ..records import (
    DIVERGED_FILE,
    HISTORY_FILE,
    METRIC_KEYS,
    METRICS_FILE,
    MODEL_CONFIG_FILE,
    MODEL_DIR,
    RUN_CONFIG_FILE,
)
from ..tasks import get_task


def code_version() -> str:
    """Package version plus the git commit of the source tree when there is one."""
    repo = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True,
                                text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "affectmodel"],
                               cwd=repo, capture_output=True, text=True, timeout=5, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{commit}{'.dirty' if dirty else ''}" if commit else __version__


def label_spaces(tasks: Sequence[str], expression_space: str) -> dict[str, dict[str, Any]]:
    """Names and order of the outputs of each trained task."""
    out = {}
    for key in tasks:
        spec = get_task(key, expression_space)
        name = expression_space if key == "expr" else {"au": "abaw12", "va": "valence-arousal"}[key]
        out[key] = {"name": name, "labels": list(spec.labels)}
    return out


def read_config(run_dir: Path) -> dict[str, Any]:
    """The config.json of an earlier session of this run (to check a resume matches it)."""
    try:
        data = json.loads((run_dir / RUN_CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot resume {run_dir}: {RUN_CONFIG_FILE} is unreadable ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"cannot resume {run_dir}: {RUN_CONFIG_FILE} does not hold an object")
    return data


def write_config(run_dir: Path, config: Mapping[str, Any]) -> Path:
    return write_json_atomic(run_dir / RUN_CONFIG_FILE, dict(config))


def history_columns(tasks: Sequence[str], multi_task: bool, prefix: str | None = "val_") -> list[str]:
    """Columns of ``history.csv``: step counters, training losses, the scores on the split each
    evaluation uses (``prefix``: ``dev_`` for the development split; None: no scores), time."""
    metric_for = {"expr": ["P_EXPR"], "au": ["P_AU"], "va": ["P_VA", "ccc_valence", "ccc_arousal"]}
    val = [m for t in tasks for m in metric_for[t]] + (["P_MTL"] if multi_task else [])
    val = [m for m in METRIC_KEYS if m in val]  # keep the contract's order
    return (["epoch", "step", "lr", "train_loss"] + [f"train_loss_{t}" for t in tasks]
            + ([f"{prefix}{m}" for m in val] if prefix else []) + ["time_s"])


def write_history(run_dir: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in columns})
    return write_text_atomic(run_dir / HISTORY_FILE, buf.getvalue())


def write_model(run_dir: Path, model: AffectModel, training_data: Mapping[str, Any] | None = None) -> Path:
    """``model/`` as the loader reads it; ``training_data`` (the data set's name and fingerprint)
    joins its config.json, where loaders ignore it and a reader of the folder alone finds it."""
    folder = model.save(run_dir / MODEL_DIR)
    if training_data is not None:
        path = run_dir / MODEL_DIR / MODEL_CONFIG_FILE
        config = json.loads(path.read_text(encoding="utf-8"))
        write_json_atomic(path, {**config, "training_data": dict(training_data)})
    return folder


def write_metrics(run_dir: Path, metrics: Mapping[str, Any]) -> Path:
    """Last file of a run: once it exists the run counts as complete."""
    return write_json_atomic(run_dir / METRICS_FILE, dict(metrics))


def write_divergence(run_dir: Path, step: int, reason: str, message: str) -> Path:
    """Mark a run that diverged (instead of ``metrics.json``): resume refuses it, readers skip it."""
    return write_json_atomic(run_dir / DIVERGED_FILE, {"step": int(step), "reason": reason, "message": message})
