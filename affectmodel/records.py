"""Run records: the on-disk contract between training, the dashboard and the Hub.

A run folder ``runs/<suite>/<run>/`` holds:

* ``config.json``  - the resolved training configuration (:class:`affectmodel.training.config.TrainConfig`
  as a dict) plus ``code_version``, ``label_spaces`` and ``dataset``.
* ``metrics.json`` - validation results of the best checkpoint (see :data:`METRIC_KEYS`) and run facts:
  ``tasks``, ``multi_task``, ``dataset`` (``{"name", "synthetic", "split"}``), ``headline_metric``,
  ``best_epoch``, ``parameters``, ``train_time_s``, ``images_per_second``, ``per_class_f1``,
  ``per_au_f1``, ``au_thresholds``, optionally ``confusion_matrix`` (rows = true class) and
  ``hub_repo`` once published. Written last: its presence marks a complete run.
* ``history.csv``  - one row per epoch: ``epoch``, ``lr``, ``train_loss``, ``train_loss_<task>``,
  ``val_<metric>`` for each metric, ``time_s``.
* ``model/``       - a folder that ``AffectModel.from_pretrained`` / :func:`affectmodel.load_model` loads.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .data.marker import SYNTHETIC_DATASET as SYNTHETIC_DATASET  # declared with the marker; re-exported

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
MODEL_DIR = "model"
METRIC_KEYS = ("P_EXPR", "P_AU", "P_VA", "P_MTL", "ccc_valence", "ccc_arousal")


class RunRecordError(ValueError):
    """A run folder is incomplete or one of its files is malformed."""


@dataclass
class RunRecord:
    path: Path
    config: dict[str, Any]
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def suite(self) -> str:
        return self.path.parent.name

    @property
    def tasks(self) -> list[str]:
        return list(self.metrics.get("tasks") or self.config.get("tasks") or [])

    @property
    def synthetic(self) -> bool:
        return bool(self.metrics.get("dataset", {}).get("synthetic", False))

    @property
    def model_dir(self) -> Path:
        return self.path / MODEL_DIR


def is_complete(run_dir: str | Path) -> bool:
    run_dir = Path(run_dir)
    return (run_dir / METRICS_FILE).is_file() and (run_dir / MODEL_DIR / "model.safetensors").is_file()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunRecordError(f"{path} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunRecordError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise RunRecordError(f"{path} should hold a JSON object")
    return data


def _read_history(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for line_no, row in enumerate(csv.DictReader(f), start=2):
            try:
                rows.append({k: (float(v) if v not in ("", None) and k != "epoch" else
                                 (int(float(v)) if k == "epoch" and v else None)) for k, v in row.items()})
            except ValueError as e:
                raise RunRecordError(f"{path}:{line_no}: {e}") from None
    return rows


def read_run(run_dir: str | Path) -> RunRecord:
    """Read one run folder; raises :class:`RunRecordError` with the file at fault."""
    run_dir = Path(run_dir)
    return RunRecord(run_dir, _read_json(run_dir / CONFIG_FILE), _read_json(run_dir / METRICS_FILE),
                     _read_history(run_dir / HISTORY_FILE))


def find_runs(root: str | Path) -> list[Path]:
    """Every folder under ``root`` (any depth) that has a ``metrics.json``, sorted."""
    root = Path(root)
    return sorted(p.parent for p in root.rglob(METRICS_FILE)) if root.is_dir() else []


def read_runs(root: str | Path) -> tuple[list[RunRecord], list[str]]:
    """All readable runs under ``root`` and one message per run that could not be read."""
    records, errors = [], []
    for run_dir in find_runs(root):
        try:
            records.append(read_run(run_dir))
        except RunRecordError as e:
            errors.append(str(e))
    return records, errors


def run_factors(config: dict[str, Any]) -> dict[str, str]:
    """The study factors of a run, for tables and filters (derived from its config.json)."""
    losses = config.get("losses") or {}
    tasks = config.get("tasks") or []
    init = str(config.get("init", "random"))
    return {
        "tasks": "+".join(tasks),
        "setting": "multi-task" if len(tasks) > 1 else "uni-task",
        "init": init if init in ("random", "imagenet") else "checkpoint",
        "pretraining": str(config.get("pretrained_from") or "none"),
        "augmentation": str(config.get("augment", "none")),
        "losses": ", ".join(f"{t}={losses[t]}" for t in tasks if t in losses),
        "weighting": str(config.get("weighting", "fixed")) if len(tasks) > 1 else "-",
    }
