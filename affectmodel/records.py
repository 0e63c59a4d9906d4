"""Run records: the on-disk contract between training, the dashboard and the Hub.

A run folder ``runs/<suite>/<configuration>/seed-<k>/`` (one per configuration and seed; older
records use ``runs/<suite>/<run>/``) holds:

* ``config.json``  - the resolved training configuration (:class:`affectmodel.training.config.TrainConfig`
  as a dict) plus ``code_version``, ``machine`` (where the run started:
  :func:`affectmodel.provenance.machine_facts`), ``label_spaces``, ``dataset`` (name, format,
  annotation source, the data root, the frame cache when one was read, ``leakage``, ``fingerprint``
  (:func:`affectmodel.data.fingerprint.data_fingerprint`), ``generator`` for a generated set) and
  the run's identity: ``suite``, ``run`` (the configuration's name, without the seed), ``seed`` and
  ``config_id`` (a hash of the configuration that ignores the seed and machine-only options, so the
  seeds of one configuration share it). Older records without them are read from the folder names (see
  :attr:`RunRecord.configuration`, :attr:`RunRecord.suite`).
* ``metrics.json`` - validation results of the selected weights (see :data:`METRIC_KEYS`) and run facts.
  The weights and the AU thresholds are chosen on the development split (held-out training videos),
  never on validation: ``P_AU`` (and ``P_MTL``) use the development-tuned thresholds, ``P_AU_at_0.5``
  is the untuned score, and ``selection`` says how the choice was made (``{"split": "development",
  "videos", "frames", "metric", "rule", "thresholds", "epoch", "step", "scores"}``; ``"split": "none"``
  with ``dev_fraction = 0``: the last weights and thresholds 0.5). Also: ``tasks``, ``multi_task``,
  ``dataset`` (``{"name", "synthetic", "split", "fingerprint"}``: the data digest, absent in older
  records), ``headline_metric``, ``best_epoch``, ``best_step``, ``epochs``, ``parameters``,
  ``train_time_s``, ``images_per_second``, ``per_class_f1``, ``per_au_f1``, ``machine`` (where the
  run ended), ``au_thresholds``, optionally ``confusion_matrix`` (rows = true class) and ``hub_repo`` once
  published; the study fields ``steps``, ``budget_steps`` (own steps plus those of the run it was
  initialised from), ``images_seen``, ``labels_seen`` (``{task: labelled frames that entered the
  loss}``: under one step budget a multi-task run sees fewer labels per task than a uni-task one),
  ``init_run`` (that run's name or null), ``init_train_time_s``, ``leakage`` (training videos also in
  a validation set, Aff-Wild2) and ``P_AU_tuned_on_validation`` (thresholds tuned on the reported
  frames themselves: in-sample, optimistic, named so); ``health`` (per head, of the selected weights:
  ``{task: {"output_spread", "saturated_share", "constant_share", "collapsed"}}``, read through
  :func:`run_health`; absent in older records). Written last: its presence marks a complete run.
* ``val_predictions.npz`` - per-frame validation outputs and targets of the selected weights
  (:mod:`affectmodel.predictions`), so a record can be rescored without the model.
* ``history.csv``  - one row per evaluation: ``epoch``, ``step``, ``lr``, ``train_loss``,
  ``train_loss_<task>``, ``dev_<metric>`` (development-split scores; none with ``dev_fraction = 0``),
  ``dev_<task>_<field>`` per task for each health field (development split, ``collapsed`` as 0/1;
  :mod:`affectmodel.health`), ``time_s``. Older records have ``val_<metric>`` (validation scores)
  instead.
* ``diverged.json`` - only in a run that diverged (a non-finite loss or weights): ``{"step",
  "reason", "message"}`` (:data:`DIVERGED_FILE`, :func:`read_divergence`). Such a run has no
  ``metrics.json`` and cannot be resumed.
* ``model/``       - a folder that ``AffectModel.from_pretrained`` / :func:`affectmodel.load_model` loads,
  with the development-tuned AU thresholds; its config.json also names ``training_data``
  (``{"dataset", "fingerprint"}``), which loaders ignore. After ``python -m affectmodel export`` it
  also holds ``model.onnx`` (and ``model.int8.onnx``) with ``onnx.json``, the record of their check
  against the weights.
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .data.marker import SYNTHETIC_DATASET as SYNTHETIC_DATASET  # declared with the marker; re-exported
from .io import files_under
from .model_config import temporal_name

RUN_CONFIG_FILE = "config.json"     # the run's training options
# A published model folder (``publish``, a Hub repository) holds the run's options under this name
# (its config.json is the network's) and reads back as a run record too.
TRAINING_CONFIG_FILE = "training_config.json"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
DIVERGED_FILE = "diverged.json"     # a run that diverged: where and why (no metrics.json)
MODEL_DIR = "model"
# The model folder inside a run (and on the Hub), as AffectModel.save / PyTorchModelHubMixin writes it.
MODEL_CONFIG_FILE = "config.json"   # the network's ModelConfig, not the run's options
MODEL_WEIGHTS_FILE = "model.safetensors"
# Optional, written by `python -m affectmodel export` beside the weights: the ONNX graphs of the same
# model (fp32, and int8 on request) and the record of their check against PyTorch, without which
# neither is used (affectmodel/inference/onnx_engine.py).
MODEL_ONNX_FILE = "model.onnx"
MODEL_ONNX_INT8_FILE = "model.int8.onnx"
ONNX_RECORD_FILE = "onnx.json"
METRIC_KEYS = ("P_EXPR", "P_AU", "P_VA", "P_MTL", "ccc_valence", "ccc_arousal")
SEED_FOLDER = re.compile(r"^seed-(\d+)$")
# The default model (the demo's, built by affectmodel.training.default_model) is a run folder in the
# user's cache; ``--model default`` / ``load_model("default")`` name it.
DEFAULT_MODEL_NAME = "default"
DEFAULT_DIR_ENV = "AFFECT_DEFAULT_MODEL_DIR"
# Its recipe, in the suites/ folder next to the package: in a checkout and in a published Space
# folder alike (publish-space copies both).
DEFAULT_SUITE = Path(__file__).resolve().parents[1] / "suites" / "demo.toml"
# config.json keys that do not change what is trained: the seed, where things are, how fast, on
# what machine, and the identity fields themselves. A configuration id ignores them (and the study's
# matching: runs from two machines are compared, on the same data).
NON_CONFIGURATION_KEYS = frozenset({"seed", "data", "out", "device", "workers", "threads", "resume",
                                    "checkpoint_every", "cache", "code_version", "machine", "suite", "run",
                                    "config_id"})


HEALTH_KEY = "health"


# config.json keys that the run record adds to the training options: facts about the run, not options.
# Everything else in config.json is an option; the study treats the options in a configuration's
# identity (affectmodel.training.identity) as its factors. ``dataset`` and ``model`` are the scope of a
# comparison (the same data, the same network), never a factor. ``trunk`` (temporal runs): the per-frame
# run whose frozen trunk the run reads (training.identity.trunk_facts), whose options the study uses.
RUN_FACTS = frozenset({"config_id", "code_version", "label_spaces", "dataset", "model", "world_size",
                       "pretrained_from", "init_run", "machine", "trunk"})


class RunRecordError(ValueError):
    """A run folder is incomplete or one of its files is malformed."""


def recipe_changed(folder: Path, suite: Path = DEFAULT_SUITE) -> bool:
    """True when the default model in ``folder`` was built from another recipe than ``suite``: the
    ``suite.toml`` that travels with the model differs from the current one in content (comments
    aside). A folder without it (placed there by hand, or built before the recipe travelled) is not
    judged."""
    built_from = Path(folder) / "suite.toml"
    if not built_from.is_file() or not Path(suite).is_file():
        return False
    try:
        with open(built_from, "rb") as old, open(suite, "rb") as new:
            return tomllib.load(old) != tomllib.load(new)
    except (OSError, tomllib.TOMLDecodeError):
        return True  # an unreadable recipe copy says nothing the model can be trusted on


def default_model_dir() -> Path:
    """Where the default model lives: ``$AFFECT_DEFAULT_MODEL_DIR``, else
    ``$XDG_CACHE_HOME/affectmodel/default-model`` (``~/.cache/...`` when that is unset)."""
    if os.environ.get(DEFAULT_DIR_ENV):
        return Path(os.environ[DEFAULT_DIR_ENV]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "affectmodel" / "default-model"


@dataclass
class RunRecord:
    path: Path
    config: dict[str, Any]
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def _seed_folder(self) -> re.Match | None:
        return SEED_FOLDER.match(self.path.name)

    @property
    def configuration(self) -> str:
        """The configuration's name without the seed: ``run`` in config.json, else the folder name."""
        run = self.config.get("run")
        if isinstance(run, str) and run:
            return run
        return self.path.parent.name if self._seed_folder else self.path.name

    @property
    def seed(self) -> int | None:
        seed = self.config.get("seed")
        if isinstance(seed, int) and not isinstance(seed, bool):
            return seed
        folder = self._seed_folder
        return int(folder.group(1)) if folder else None

    @property
    def name(self) -> str:
        """Unique within a suite: ``<configuration>/seed-<k>`` for per-seed folders, else the folder name."""
        return f"{self.configuration}/{self.path.name}" if self._seed_folder else self.configuration

    @property
    def suite(self) -> str:
        suite = self.config.get("suite")
        if isinstance(suite, str) and suite:
            return suite
        return (self.path.parent.parent if self._seed_folder else self.path.parent).name

    @property
    def config_id(self) -> str:
        """config.json's ``config_id``, else :func:`config_id` of the config (older records)."""
        value = self.config.get("config_id")
        return value if isinstance(value, str) and value else config_id(self.config)

    @property
    def tasks(self) -> list[str]:
        return list(self.metrics.get("tasks") or self.config.get("tasks") or [])

    @property
    def synthetic(self) -> bool:
        return bool(self.metrics.get("dataset", {}).get("synthetic", False))

    @property
    def data_fingerprint(self) -> str | None:
        """The digest of the data the run trained and was scored on (metrics.json, else config.json),
        or None for a record written before runs carried one."""
        for source in (self.metrics, self.config):
            ds = source.get("dataset")
            value = ds.get("fingerprint") if isinstance(ds, dict) else None
            if isinstance(value, dict):
                value = value.get("digest")
            if isinstance(value, str) and value:
                return value
        return None

    @property
    def machine(self) -> dict[str, Any]:
        """Where the run ended (metrics.json ``machine``), else where it started (config.json); {} if neither."""
        for source in (self.metrics, self.config):
            value = source.get("machine")
            if isinstance(value, dict) and value:
                return value
        return {}

    @property
    def model_dir(self) -> Path:
        return self.path / MODEL_DIR


def is_complete(run_dir: str | Path) -> bool:
    run_dir = Path(run_dir)
    return (run_dir / METRICS_FILE).is_file() and (run_dir / MODEL_DIR / MODEL_WEIGHTS_FILE).is_file()


def read_divergence(run_dir: str | Path) -> dict[str, Any] | None:
    """What ``diverged.json`` says (``step``, ``reason``, ``message``), or None for a run that did not
    diverge. An unreadable file still says the run diverged."""
    path = Path(run_dir) / DIVERGED_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = None
    return data if isinstance(data, dict) else {"message": f"diverged ({DIVERGED_FILE} is unreadable)"}


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
    """Read one run folder, or a published model folder (its ``training_config.json`` holds the run's
    options); raises :class:`RunRecordError` with the file at fault."""
    run_dir = Path(run_dir)
    published = run_dir / TRAINING_CONFIG_FILE
    config = published if published.is_file() else run_dir / RUN_CONFIG_FILE
    return RunRecord(run_dir, _read_json(config), _read_json(run_dir / METRICS_FILE),
                     _read_history(run_dir / HISTORY_FILE))


def find_runs(root: str | Path) -> list[Path]:
    """Every folder under ``root`` (any depth, symlinked folders followed) that has a
    ``metrics.json``, sorted."""
    root = Path(root)
    return sorted(p.parent for p in files_under(root) if p.name == METRICS_FILE) if root.is_dir() else []


def read_runs(root: str | Path) -> tuple[list[RunRecord], list[str]]:
    """All readable runs under ``root`` and one message per run that could not be read."""
    records, errors = [], []
    for run_dir in find_runs(root):
        try:
            records.append(read_run(run_dir))
        except RunRecordError as e:
            errors.append(str(e))
    return records, errors


def config_id(config: dict[str, Any]) -> str:
    """A short hash of a configuration that ignores the seed and machine-only options
    (:data:`NON_CONFIGURATION_KEYS`): every seed of one configuration has the same id."""
    kept = {k: v for k, v in config.items() if k not in NON_CONFIGURATION_KEYS}
    text = json.dumps(kept, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def run_factors(config: dict[str, Any]) -> dict[str, str]:
    """A readable summary of a run's main options (table columns, the model card's training line).
    It decides nothing: the study's factors, its comparisons and the dashboard's filters are every
    option of the training identity (:func:`affectmodel.study.configuration_options`)."""
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
        "temporal": _temporal_factor(config),
    }


def _temporal_factor(config: dict[str, Any]) -> str:
    """``none`` (per frame), else the module, window and direction: ``gru w16 causal`` (the study's
    temporal level without the module's training: affectmodel.training.identity.temporal_level)."""
    return temporal_name(config.get("temporal"), config.get("window"), config.get("causal"))


@dataclass(frozen=True)
class HeadHealth:
    """How one head's outputs behaved on validation (metrics.json ``health``): their spread, the share
    of saturated outputs (at a bound of a bounded output) and of constant ones, and whether training
    judged the head collapsed."""

    output_spread: float
    saturated_share: float
    constant_share: float
    collapsed: bool


def _health_number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def run_health(record: RunRecord) -> dict[str, HeadHealth] | None:
    """Per-head health of a run (task -> :class:`HeadHealth`), the one reader of metrics.json ``health``;
    None for records that have none (older runs: judge them by their intervals alone). Entries that
    are not objects are skipped; a missing or non-boolean ``collapsed`` reads as not collapsed."""
    raw = record.metrics.get(HEALTH_KEY)
    if not isinstance(raw, dict):
        return None
    out = {}
    for task, head in raw.items():
        if isinstance(head, dict):
            out[str(task)] = HeadHealth(_health_number(head.get("output_spread")),
                                        _health_number(head.get("saturated_share")),
                                        _health_number(head.get("constant_share")),
                                        head.get("collapsed") is True)
    return out


def collapsed_heads(record: RunRecord) -> list[str]:
    """The tasks whose head the run's health record marks collapsed (none for older records)."""
    return [task for task, head in (run_health(record) or {}).items() if head.collapsed]


def non_finite_metrics(record: RunRecord) -> list[str]:
    """Headline metrics (:data:`METRIC_KEYS`) that metrics.json holds but not as a finite number: NaN,
    infinity or null, as a diverged run of an older version wrote them."""
    bad = []
    for key in METRIC_KEYS:
        if key in record.metrics:
            value = record.metrics[key]
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)):
                bad.append(key)
    return bad
