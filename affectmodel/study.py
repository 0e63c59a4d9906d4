"""The uni-task versus multi-task study as tables: what the dashboard, ``python -m affectmodel study``,
the README table and the model card show.

Verdicts come only from matched comparisons (:func:`study_report`): a multi-task configuration
against the uni-task configurations that differ from it only in the tasks, over seeds, with intervals
from :mod:`affectmodel.statistics`. The "best run" tables stay for browsing and never drive a verdict.

Pure pandas on :class:`affectmodel.records.RunRecord` objects: no plotting and no UI, so that the
logic is tested on its own and the library stays light. Study factors are read only through
:func:`affectmodel.records.run_factors`; label names come from :mod:`affectmodel.tasks`.

Every comparison is made within one data set: a score on the synthetic benchmark and a score on
Aff-Wild2 are never ranked against each other.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .metrics import NO_SKILL_VA
from .predictions import PREDICTIONS_FILE, Predictions, PredictionsError, load_predictions
from .provenance import machine_summary
from .records import (
    METRIC_KEYS,
    RUN_FACTS,
    SYNTHETIC_DATASET,
    RunRecord,
    collapsed_heads,
    non_finite_metrics,
    read_runs,
    run_factors,
)
from .statistics import (
    DEFAULT_LEVEL,
    DEFAULT_RESAMPLES,
    METRIC_TASKS,
    Interval,
    ScoredRun,
    contrast,
    estimate,
    summarise,
    t_quantile,
)
from .summaries import SUMMARY_FILE, ValidationSummary, load_summary
from .tasks import ABAW_BASELINES, AU_NAMES, LABEL_SPACES, MTL_METRIC, TASK_KEYS, get_task
from .training.identity import (
    BUDGET_FACTOR,
    BUDGET_OPTIONS,
    TEMPORAL_FACTOR,
    fold_temporal,
    identity_values,
    temporal_rank,
)

# A readable summary of each run's main options (records.run_factors); the factors themselves are the
# option columns (OPTION_PREFIX), every training option that varies.
SUMMARY_COLUMNS: tuple[str, ...] = ("tasks", "setting", "init", "pretraining", "augmentation", "losses",
                                    "weighting")
METRIC_COLUMNS: tuple[str, ...] = METRIC_KEYS
COST_COLUMNS: tuple[str, ...] = ("parameters", "train_time_s", "images_per_second")
# Direction of "best" for each numeric column of the study table.
HIGHER_IS_BETTER: dict[str, bool] = {**dict.fromkeys(METRIC_COLUMNS, True),
                                     "parameters": False, "train_time_s": False, "images_per_second": True}
TASK_METRICS: dict[str, str] = {k: get_task(k).metric for k in TASK_KEYS}
HUB_PREFIX = "hub:"
HUB_URL = "https://huggingface.co/"


# ----------------------------------------------------------------------------- identity

def run_id(record: RunRecord, source: str = "local") -> str:
    """A readable id, unique within one source: ``suite/run`` locally, ``hub:owner/name`` from the Hub."""
    if source == "hub":
        return HUB_PREFIX + str(record.metrics.get("hub_repo") or record.path.as_posix())
    return f"{record.suite}/{record.name}"


def index_runs(records: Iterable[RunRecord], source: str = "local",
               taken: Iterable[str] = ()) -> dict[str, RunRecord]:
    """Records keyed by :func:`run_id`; a clash (same id twice) gets a ``#2``, ``#3`` suffix."""
    seen = set(taken)
    out: dict[str, RunRecord] = {}
    for record in records:
        base = key = run_id(record, source)
        n = 1
        while key in seen:
            n += 1
            key = f"{base} #{n}"
        seen.add(key)
        out[key] = record
    return out


def dataset_info(record: RunRecord) -> dict[str, Any]:
    ds = record.metrics.get("dataset") or record.config.get("dataset") or {}
    if not isinstance(ds, Mapping):
        ds = {"name": str(ds)}
    name = str(ds.get("name") or "unknown")
    synthetic = bool(ds.get("synthetic", name == SYNTHETIC_DATASET))
    return {"dataset": name, "synthetic": synthetic, "split": str(ds.get("split") or "")}


def dataset_label(name: str, synthetic: bool) -> str:
    """How a data set is named on screen: synthetic data always says so."""
    return f"{name} (synthetic benchmark)" if synthetic else name


def is_affwild2(dataset: str) -> bool:
    """Whether the ABAW baselines (measured on Aff-Wild2 validation) are a fair reference."""
    return "affwild2" in re.sub(r"[^a-z0-9]", "", dataset.lower())


def hub_url(repo_id: str | None) -> str | None:
    return HUB_URL + repo_id if repo_id else None


# ----------------------------------------------------------------------------- study table

def _number(value: Any) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return math.nan
    return x


def study_table(runs: Mapping[str, RunRecord]) -> pd.DataFrame:
    """One row per run: id, source, data set, factors, metrics (NaN where a task is absent) and cost."""
    rows = []
    for key, record in runs.items():
        m = record.metrics
        row: dict[str, Any] = {"run": key, "configuration": f"{record.suite}/{record.configuration}",
                               "seed": record.seed, "source": "hub" if key.startswith(HUB_PREFIX) else "local"}
        row.update(dataset_info(record))
        row.update(run_factors(record.config if record.config.get("tasks") else
                               {**record.config, "tasks": record.tasks}))
        row.update({c: _number(m.get(c)) for c in METRIC_COLUMNS + COST_COLUMNS})
        row["best_epoch"] = _number(m.get("best_epoch"))
        row["hub_repo"] = m.get("hub_repo") or None
        row["path"] = str(record.path)
        rows.append(row)
    options = varying_options(runs)
    for row, record in zip(rows, runs.values(), strict=True):
        mine = configuration_options(record)
        row.update({OPTION_PREFIX + k: option_text(mine.get(k)) for k in options})
    columns = (["run", "configuration", "seed", "source", "dataset", "synthetic", "split", *SUMMARY_COLUMNS,
                *METRIC_COLUMNS,
                *COST_COLUMNS, "best_epoch", "hub_repo", "path", *(OPTION_PREFIX + k for k in options)])
    table = pd.DataFrame(rows, columns=columns)
    for c in METRIC_COLUMNS + COST_COLUMNS + ("best_epoch",):
        table[c] = table[c].astype(float)
    table["synthetic"] = table["synthetic"].astype(bool)
    return table.sort_values(["dataset", "setting", "tasks", "run"], ignore_index=True,
                             key=lambda s: s.map(_setting_order) if s.name == "setting" else s)


def _setting_order(value: str) -> int:
    return 0 if value == "uni-task" else 1


OPTION_PREFIX = "option: "   # study_table columns of the training options that vary among the runs


def option_text(value: Any) -> str:
    """A training option's value for a table cell or filter: ``expr=focal, au=bce`` for a per-task
    option, ``expr+au+va`` for the tasks, ``none`` for an unset one."""
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return "+".join(str(v) for v in value)
    return "none" if value is None else str(value)


def varying_options(runs: Mapping[str, RunRecord]) -> list[str]:
    """The options of the training identity (:func:`configuration_options`: the study's factors) whose
    value differs between some of ``runs``, tasks first: the table's option columns and the filters."""
    seen: dict[str, set[str]] = {}
    all_options = [configuration_options(r) for r in runs.values()]
    keys = set().union(*all_options) if all_options else set()
    for options in all_options:
        for k in keys:
            seen.setdefault(k, set()).add(_canonical(options.get(k)))
    return sorted((k for k, values in seen.items() if len(values) > 1), key=lambda k: (k != "tasks", k))


def filter_options(table: pd.DataFrame) -> dict[str, list[str]]:
    """The values the data set, the setting and each training option that varies take in ``table``,
    for filter widgets (the options are the study's factors, read from the training identity)."""
    columns = ["dataset", "setting", *(c for c in table.columns if c.startswith(OPTION_PREFIX))]
    return {c: sorted(table[c].dropna().astype(str).unique()) for c in columns}


def filter_table(table: pd.DataFrame, selections: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """Rows whose value in each selected column is one of the chosen values (empty choice = no filter)."""
    keep = pd.Series(True, index=table.index)
    for column, chosen in selections.items():
        if chosen:
            keep &= table[column].astype(str).isin([str(c) for c in chosen])
    return table[keep].reset_index(drop=True)


def best_mask(table: pd.DataFrame, columns: Sequence[str] = METRIC_COLUMNS) -> pd.DataFrame:
    """True where a cell is the best of its column among runs on the same data set.

    Only the scores by default: a uni-task run always "wins" on per-run parameters and time, which
    hides that the uni-task setting needs one model per task (see :func:`cost_comparison`).
    """
    mask = pd.DataFrame(False, index=table.index, columns=table.columns)
    for _, group in table.groupby("dataset", sort=False):
        for column in columns:
            higher = HIGHER_IS_BETTER[column]
            values = group[column].dropna()
            if values.empty:
                continue
            best = values.max() if higher else values.min()
            mask.loc[values.index[values == best], column] = True
    return mask


def best_runs(table: pd.DataFrame, columns: Sequence[str] = METRIC_COLUMNS) -> dict[str, list[str]]:
    """Column -> run ids holding the best value (one per data set; ties give several)."""
    mask = best_mask(table, columns)
    return {c: table.loc[mask[c], "run"].tolist() for c in columns if mask[c].any()}


def table_csv(table: pd.DataFrame) -> bytes:
    """The table as UTF-8 CSV (what the export button hands out)."""
    return table.to_csv(index=False).encode("utf-8")


# ----------------------------------------------------------------------------- headline

def _task_sets(table: pd.DataFrame) -> pd.Series:
    return table["tasks"].fillna("").str.split("+")


def _best_row(rows: pd.DataFrame, metric: str) -> pd.Series | None:
    rows = rows.dropna(subset=[metric])
    if rows.empty:
        return None
    return rows.iloc[int(rows[metric].astype(float).to_numpy().argmax())]


def headline_comparison(table: pd.DataFrame) -> pd.DataFrame:
    """The "best run" table: for each data set and task, the best uni-task run and the best multi-task run.

    Best-of-N against best-of-M favours the side with more runs, and the best run may have had a
    larger budget: this table is shown *labelled as best runs* and never drives a verdict (verdicts
    come from :func:`matched_comparisons`).

    Columns: dataset, synthetic, task, title, metric, uni_run, uni, multi_run, multi, delta (multi - uni),
    baseline (the ABAW reference for Aff-Wild2, else NaN), and each side's parameters and training time.
    A task with no run on one side keeps NaN there (and in delta).
    """
    rows = []
    for dataset, group in table.groupby("dataset", sort=True):
        tasks_of = _task_sets(group)
        for task in TASK_KEYS:
            metric = TASK_METRICS[task]
            uni = _best_row(group[tasks_of.map(lambda t, task=task: t == [task])], metric)
            multi = _best_row(group[tasks_of.map(lambda t, task=task: len(t) > 1 and task in t)], metric)
            if uni is None and multi is None:
                continue
            row: dict[str, Any] = {"dataset": dataset, "synthetic": bool(group["synthetic"].any()), "task": task,
                   "title": get_task(task).title, "metric": metric}
            for side, best in (("uni", uni), ("multi", multi)):
                row[f"{side}_run"] = None if best is None else best["run"]
                row[side] = math.nan if best is None else float(best[metric])
                row[f"{side}_parameters"] = math.nan if best is None else float(best["parameters"])
                row[f"{side}_train_time_s"] = math.nan if best is None else float(best["train_time_s"])
            row["delta"] = row["multi"] - row["uni"]
            row["baseline"] = ABAW_BASELINES.get(metric, math.nan) if is_affwild2(str(dataset)) else math.nan
            rows.append(row)
    columns = ["dataset", "synthetic", "task", "title", "metric", "uni_run", "uni", "multi_run", "multi",
               "delta", "baseline", "uni_parameters", "uni_train_time_s", "multi_parameters",
               "multi_train_time_s"]
    return pd.DataFrame(rows, columns=columns)


def cost_comparison(table: pd.DataFrame) -> pd.DataFrame:
    """Best-run cost table: the best uni-task model of each task together (N models) against one shared model.
    (The matched cost of a comparison is :func:`matched_costs`.)

    The shared model is the multi-task run with the highest P_MTL among those covering every task the
    uni-task side covers. ``uni_P_MTL`` sums the uni-task models' scores, comparable to the shared
    model's P_MTL when both cover the same tasks. Throughput of N models is images through all N
    (1 / sum of 1/throughput). The shared model's training time includes the uni-task run it was
    initialised from (``multi_pretraining_s``), when that run is part of the same study.
    """
    rows = []
    for dataset, group in table.groupby("dataset", sort=True):
        tasks_of = _task_sets(group)
        uni_best = {}
        for task in TASK_KEYS:
            best = _best_row(group[tasks_of.map(lambda t, task=task: t == [task])], TASK_METRICS[task])
            if best is not None:
                uni_best[task] = best
        covered = set(uni_best)
        multi_rows = (group[tasks_of.map(lambda t, covered=covered: len(t) > 1 and covered <= set(t))] if covered
                      else group[tasks_of.map(lambda t: len(t) > 1)])
        multi = _best_row(multi_rows, MTL_METRIC)
        if not uni_best and multi is None:
            continue
        uni = pd.DataFrame(uni_best.values())
        ips = uni["images_per_second"] if uni_best else pd.Series(dtype=float)
        row: dict[str, Any] = {
            "dataset": dataset, "synthetic": bool(group["synthetic"].any()),
            "tasks": "+".join(t for t in TASK_KEYS if t in uni_best),
            "uni_runs": ", ".join(str(r["run"]) for r in uni_best.values()),
            "uni_models": len(uni_best),
            "uni_parameters": float(uni["parameters"].sum(min_count=len(uni))) if uni_best else math.nan,
            "uni_train_time_s": float(uni["train_time_s"].sum(min_count=len(uni))) if uni_best else math.nan,
            "uni_images_per_second": (1.0 / float((1.0 / ips).sum()))
            if uni_best and ips.notna().all() and (ips > 0).all() else math.nan,
            "uni_P_MTL": float(sum(r[TASK_METRICS[t]] for t, r in uni_best.items())) if len(uni_best) > 1
            else math.nan,
            "multi_run": None if multi is None else multi["run"],
            "multi_tasks": None if multi is None else multi["tasks"],
        }
        for c in ("parameters", "train_time_s", "images_per_second", MTL_METRIC):
            row[f"multi_{c}"] = math.nan if multi is None else float(multi[c])
        # A shared model initialised from a uni-task run of the same study also paid for that run.
        run_names = group["run"].astype(str).str.rsplit("/", n=1).str[-1]
        pre = group[run_names == str(multi["pretraining"])] if multi is not None else group.iloc[:0]
        row["multi_pretraining_s"] = float(pre["train_time_s"].iloc[0]) if len(pre) else 0.0
        row["multi_train_time_s"] += row["multi_pretraining_s"]
        rows.append(row)
    columns = ["dataset", "synthetic", "tasks", "uni_runs", "uni_models", "uni_parameters", "uni_train_time_s",
               "uni_images_per_second", "uni_P_MTL", "multi_run", "multi_tasks", "multi_parameters",
               "multi_train_time_s", "multi_pretraining_s", "multi_images_per_second", "multi_P_MTL"]
    return pd.DataFrame(rows, columns=columns)


def format_count(n: float) -> str:
    if not math.isfinite(n):
        return "n/a"
    if abs(n) >= 1e6:
        return f"{n / 1e6:.1f} M"
    if abs(n) >= 1e3:
        return f"{n / 1e3:.1f} k"
    return f"{n:.0f}"


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "n/a"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 120:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.0f} s"


def format_rate(x: float) -> str:
    """Images per second with three significant figures, never in exponent notation."""
    if not math.isfinite(x):
        return "n/a"
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}"


def _join(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


# ----------------------------------------------------------------------------- matched comparisons

# Options that may differ between a multi-task configuration and the uni-task ones it is compared
# with: the tasks themselves and how tasks are weighted (a uni-task run has nothing to weigh).
# Options given per task (``{task: value}``, e.g. ``losses``) are compared on the task compared only.
TASK_ONLY_OPTIONS = frozenset({"tasks", "weighting"})
VERDICTS = ("helped", "hurt", "no clear difference", "undecided", "unmatched")


@dataclass
class Configuration:
    """The seeds of one configuration: runs of one suite with the same name and configuration id."""

    key: str                              # "suite/configuration"
    suite: str
    name: str
    dataset: str
    synthetic: bool
    tasks: tuple[str, ...]
    runs: dict[str, RunRecord] = field(default_factory=dict)   # run id -> record (one per seed)
    data_fingerprint: str | None = None   # the runs' data digest (None: older records without one)

    @property
    def multi_task(self) -> bool:
        return len(self.tasks) > 1

    @property
    def seeds(self) -> list[int]:
        return sorted(r.seed for r in self.runs.values() if r.seed is not None)

    @property
    def init_run(self) -> str | None:
        values = {r.metrics.get("init_run") for r in self.runs.values()}
        return next((str(v) for v in values if v), None)

    @property
    def budget_steps(self) -> int | None:
        """Own steps plus those of the run this one was initialised from (None for older records)."""
        values = {_budget(r) for r in self.runs.values()}
        return values.pop() if len(values) == 1 else None

    def mean(self, key: str) -> float:
        values = [_number(r.metrics.get(key)) for r in self.runs.values()]
        values = [v for v in values if math.isfinite(v)]
        return float(sum(values) / len(values)) if values else math.nan

    def train_time_s(self) -> float:
        """Mean training time per seed, including the run it was initialised from."""
        own, init = self.mean("train_time_s"), self.mean("init_train_time_s")
        return own + (init if math.isfinite(init) else 0.0)


def _budget(record: RunRecord) -> int | None:
    value = record.metrics.get("budget_steps")
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def group_configurations(runs: Mapping[str, RunRecord]) -> list[Configuration]:
    """Runs grouped into configurations (seeds together), by data set, suite, name, configuration id
    and data fingerprint: seeds trained on different data are never pooled (:func:`data_notes`)."""
    groups: dict[tuple, Configuration] = {}
    for run, record in runs.items():
        info = dataset_info(record)
        fingerprint = record.data_fingerprint
        # Hub runs pool like local ones (their suite is "hub:OWNER"): a study shared through the Hub,
        # one repository per seed, keeps its configurations, and its intervals over videos and seeds.
        ident = (info["dataset"], record.suite, record.configuration, record.config_id, fingerprint)
        if ident not in groups:
            key = f"{record.suite}/{record.configuration}"
            if any(c.key == key for c in groups.values()):
                twins = [i for i in groups if i[:4] == ident[:4]]  # same configuration, other data
                if any(i[4] != fingerprint for i in twins):
                    key += f" (data {fingerprint[:8] if fingerprint else 'unknown'})"
                else:
                    key += f" #{record.config_id[:6]}"
            groups[ident] = Configuration(key, record.suite, record.configuration, info["dataset"],
                                          info["synthetic"], tuple(t for t in TASK_KEYS if t in record.tasks),
                                          data_fingerprint=fingerprint)
        groups[ident].runs[run] = record
    return sorted(groups.values(), key=lambda c: (c.dataset, c.multi_task, c.key))


def _data_text(fingerprint: str | None) -> str:
    return f"data {fingerprint}" if fingerprint else "no data fingerprint"


def data_notes(configurations: Sequence[Configuration]) -> list[str]:
    """What the study could not pool or check because of the data, naming the runs: seeds of one
    configuration trained on data with different fingerprints (kept apart), and records that carry
    no fingerprint (written before runs recorded one: their data cannot be checked)."""
    notes = []
    by_name: dict[tuple, list[Configuration]] = {}
    for c in configurations:
        by_name.setdefault((c.dataset, c.suite, c.name), []).append(c)
    for (_, suite, name), group in by_name.items():
        fingerprints = {c.data_fingerprint for c in group}
        if len(fingerprints) > 1:
            parts = "; ".join(f"{', '.join(c.runs)} on {_data_text(c.data_fingerprint)}" for c in group)
            notes.append(f"{suite}/{name}: seeds not pooled, their data differ: {parts}.")
    unknown = [run for c in configurations if c.data_fingerprint is None for run in c.runs]
    if unknown:
        shown = ", ".join(unknown[:6]) + (f" and {len(unknown) - 6} more" if len(unknown) > 6 else "")
        notes.append(f"{len(unknown)} run record{'s' if len(unknown) != 1 else ''} carry no data fingerprint "
                     f"(written before runs recorded one): the study cannot check that they saw the same data "
                     f"({shown}); they are pooled and matched only with each other.")
    return notes


# ----------------------------------------------------------------------------- identity of a configuration

def configuration_options(record: RunRecord) -> dict[str, Any]:
    """The options that make up what a run computed, as the study compares them: every option of its
    config.json in the training identity (:func:`affectmodel.training.identity.identity_values`; the
    record's own facts, :data:`affectmodel.records.RUN_FACTS`, left out). Three adjustments: a run
    initialised from another run has ``init`` = ``run:<that configuration>`` (its folder differs per
    seed and machine); the budget options give way to one, ``budget_steps`` (own steps plus those of
    the run it started from; epochs/steps/max_steps for older records without it); and the temporal
    options are one factor, ``temporal`` (:func:`affectmodel.training.identity.fold_temporal`): a
    temporal run is the configuration of the per-frame run whose trunk it reads (config.json
    ``trunk``) plus its temporal level, e.g. ``gru w16 causal (300 steps)``; a per-frame run's level
    is ``none``."""
    world_size = record.config.get("world_size")
    values = identity_values(record.config, world_size if isinstance(world_size, int) else 1)
    budget = _budget(record)
    options = _study_options(values, record.config.get("init_run") or record.metrics.get("init_run"),
                             budget if budget is not None else [record.config.get(k) for k in sorted(BUDGET_OPTIONS)])
    steps = record.metrics.get("steps")
    return fold_temporal(options, steps if isinstance(steps, int) and not isinstance(steps, bool) else None,
                         _trunk_options(record))


def _study_options(values: Mapping[str, Any], init_run: Any, budget: Any) -> dict[str, Any]:
    options = {k: v for k, v in values.items() if k not in RUN_FACTS and k not in BUDGET_OPTIONS}
    if init_run:
        options["init"] = f"run:{init_run}"
    options[BUDGET_FACTOR] = budget
    return options


def _trunk_options(record: RunRecord) -> dict[str, Any] | None:
    """The study options of the per-frame run whose frozen trunk a temporal run reads, from the
    facts it recorded (config.json ``trunk``: :func:`affectmodel.training.identity.trunk_facts`);
    None for other runs and for a temporal run started from a model folder."""
    trunk = record.config.get("trunk")
    if not isinstance(trunk, Mapping) or not isinstance(trunk.get("options"), Mapping):
        return None
    budget = trunk.get("budget_steps")
    return _study_options(trunk["options"], trunk.get("init_run"),
                          budget if isinstance(budget, int) and not isinstance(budget, bool) else None)


def comparison_scope(record: RunRecord) -> dict[str, Any]:
    """What must be equal before two runs are compared at all, beyond their options: the data set and
    its fingerprint (never compare runs on different data; None for older records without one)."""
    return {"dataset": dataset_info(record)["dataset"], "data_fingerprint": record.data_fingerprint}


def _for_task(value: Any, task: str) -> Any:
    """A per-task option (``{task: value}``) read for one task; anything else as it is."""
    if isinstance(value, Mapping) and value and set(value) <= set(TASK_KEYS):
        return value.get(task)
    return value


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _match_signature(record: RunRecord, task: str, ignore_init: bool) -> str:
    """What a multi-task run and a uni-task run of ``task`` must share to be compared on ``task``."""
    kept = {k: _for_task(v, task) for k, v in configuration_options(record).items()
            if k not in TASK_ONLY_OPTIONS and not (ignore_init and k == "init")}
    return _canonical({"scope": comparison_scope(record), "options": kept})


def _signatures(config: Configuration, task: str, ignore_init: bool) -> set[str]:
    return {_match_signature(r, task, ignore_init) for r in config.runs.values()}


def find_matches(multi: Configuration, configurations: Sequence[Configuration]) -> dict[str, tuple[
        Configuration | None, str]]:
    """For each task of ``multi``: the uni-task configuration that differs from it only in the tasks
    (same data set, initialisation, pre-training, augmentation, that task's loss, every other option
    and the same total budget in steps), or None with the reason. A multi-task run initialised from
    another run is matched on its total budget (its own steps plus that run's): with a uni-task run
    started from the same run where there is one, else with a uni-task run of that total budget.
    """
    out: dict[str, tuple[Configuration | None, str]] = {}
    for task in multi.tasks:
        unis = [c for c in configurations if c.tasks == (task,) and c.dataset == multi.dataset]
        if not unis:
            out[task] = (None, f"no uni-task {get_task(task).title.lower()} configuration on {multi.dataset}")
            continue
        found: list[Configuration] = []
        for ignore_init in (False, True) if multi.init_run is not None else (False,):
            want = _signatures(multi, task, ignore_init)
            found = [u for u in unis if _signatures(u, task, ignore_init) == want]
            if found:
                break
        if len(found) > 1:  # prefer the same suite, then the name
            found.sort(key=lambda u: (u.suite != multi.suite, u.key))
        if found:
            out[task] = (found[0], "")
            continue
        budget = multi.budget_steps
        same_budget = [u for u in unis if u.budget_steps == budget]
        other_data = [u for u in unis if u.data_fingerprint != multi.data_fingerprint]
        if other_data and len(other_data) == len(unis):
            reason = (f"the uni-task configurations ({', '.join(u.key for u in other_data)}) were trained on other "
                      f"data ({_data_text(other_data[0].data_fingerprint)}, not {_data_text(multi.data_fingerprint)})")
        elif budget is not None and not same_budget:
            init = f" (includes {multi.init_run})" if multi.init_run else ""
            reason = f"no uni-task configuration with the same total budget of {budget} steps{init}"
        else:
            reason = "no uni-task configuration differs from it only in the tasks"
        out[task] = (None, reason)
    return out


def configuration_identity(config: Configuration) -> tuple[str, dict[str, str]] | None:
    """(scope, option -> canonical value) of a configuration; None when its seeds disagree (an edited
    suite reusing a name), which makes it comparable with nothing."""
    seen = {_canonical([comparison_scope(r), configuration_options(r)]) for r in config.runs.values()}
    if len(seen) != 1:
        return None
    scope, options = json.loads(seen.pop())
    return _canonical(scope), {k: _canonical(v) for k, v in options.items()}


_ABSENT = "<absent>"


def option_differences(a: Configuration, b: Configuration) -> list[str] | None:
    """The options in which two configurations differ (sorted), or None when they cannot be compared
    at all: another data set, or seeds that disagree among themselves. An option one record lacks
    (an older version) counts as a difference."""
    ia, ib = configuration_identity(a), configuration_identity(b)
    if ia is None or ib is None or ia[0] != ib[0] or a.dataset != b.dataset:
        return None
    return sorted(k for k in set(ia[1]) | set(ib[1]) if ia[1].get(k, _ABSENT) != ib[1].get(k, _ABSENT))


def factor_pairs(configurations: Sequence[Configuration]) -> list[tuple[str, Configuration, Configuration]]:
    """Every matched factor comparison as (factor, reference, variant): configurations with the same
    tasks that differ in exactly one option of the training identity (the factor; a pair that differs
    in two options is never matched). The reference is the level most configurations of the data set
    use (the suite's default), then the shorter name; where a factor takes several levels among
    configurations that are otherwise equal, each level is compared with that one reference. The
    temporal factor's reference is the baseline each level must beat (:func:`_temporal_pairs`): a
    temporal module is compared with smoothing, smoothing with the per-frame model."""
    configs = list(configurations)
    pairs: list[tuple[str, Configuration, Configuration]] = []
    for i, a in enumerate(configs):
        for b in configs[i + 1:]:
            if a.tasks != b.tasks:
                continue
            differ = option_differences(a, b)
            if differ is not None and len(differ) == 1:
                pairs.append((differ[0], a, b))
    identities = {c.key: configuration_identity(c) for c in configs}

    def usage(config: Configuration, factor: str) -> int:
        """How many configurations on the same data use this configuration's level of ``factor``."""
        mine = identities[config.key]
        value = mine[1].get(factor, _ABSENT) if mine else None
        count = 0
        for c in configs:
            theirs = identities[c.key]
            count += c.dataset == config.dataset and theirs is not None and theirs[1].get(factor, _ABSENT) == value
        return count

    # groups of configurations equal in everything but the factor (each pair within one is matched)
    groups: dict[tuple[str, str], dict[str, Configuration]] = {}
    for factor, a, b in pairs:
        ident = configuration_identity(a)
        assert ident is not None  # pairs are only made of comparable configurations
        rest = _canonical([ident[0], a.tasks, {k: v for k, v in ident[1].items() if k != factor}])
        group = groups.setdefault((factor, rest), {})
        group[a.key], group[b.key] = a, b
    out = []
    for (factor, _), members in groups.items():
        def order(c: Configuration, factor: str = factor) -> tuple[int, int, str]:
            return -usage(c, factor), len(c.key), c.key

        ordered = sorted(members.values(), key=order)
        if factor == TEMPORAL_FACTOR:
            found = _temporal_pairs(ordered, {c.key: factor_level(c, factor) for c in ordered})
        else:
            found = [(factor, ordered[0], other) for other in ordered[1:]]
        # two configurations equal in every option (one configuration under two names) are no comparison
        out += [p for p in found if _level_of(identities[p[1].key], factor) != _level_of(identities[p[2].key], factor)]
    return sorted(out, key=lambda p: (p[1].dataset, p[0], p[1].tasks, p[1].key, p[2].key))


def _level_of(identity: tuple[str, dict[str, str]] | None, factor: str) -> str | None:
    return identity[1].get(factor, _ABSENT) if identity else None


def _temporal_pairs(ordered: Sequence[Configuration], levels: Mapping[str, str]
                    ) -> list[tuple[str, Configuration, Configuration]]:
    """The temporal factor's pairs among configurations equal in everything else: each level against
    the baseline it must beat, the nearest lower rank present (:func:`affectmodel.training.identity.
    temporal_rank`): a temporal module against smoothing (else the per-frame model), smoothing against
    the per-frame model; learned levels with no baseline present against the usual reference."""
    rank = {c.key: temporal_rank(levels[c.key]) for c in ordered}
    base = min(ordered, key=lambda c: rank[c.key])   # ordered: most used level, then the shorter name
    out = []
    for c in ordered:
        lower = [o for o in ordered if rank[o.key] < rank[c.key]]
        if lower:
            top = max(rank[o.key] for o in lower)
            out.append((TEMPORAL_FACTOR, next(o for o in lower if rank[o.key] == top), c))
        elif c is not base:
            out.append((TEMPORAL_FACTOR, base, c))
    return out


def factor_level(config: Configuration, factor: str, other: Configuration | None = None) -> str:
    """A configuration's value of ``factor`` in words; for a per-task option, only the tasks whose
    value differs from ``other``'s."""
    record = next(iter(config.runs.values()))
    value = configuration_options(record).get(factor)
    if factor == BUDGET_FACTOR and isinstance(value, int):
        return f"{value} steps"
    if isinstance(value, Mapping):
        theirs = configuration_options(next(iter(other.runs.values()))).get(factor) if other else None
        shown = [k for k in value if not isinstance(theirs, Mapping) or theirs.get(k) != value.get(k)]
        return ", ".join(f"{k}={value[k]}" for k in shown or list(value))
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return "not set" if value is None and factor not in configuration_options(record) else str(value)


def _thresholds(record: RunRecord) -> list[float] | None:
    value = record.metrics.get("au_thresholds")
    if isinstance(value, Mapping):
        value = [value.get(au) for au in AU_NAMES]
    if isinstance(value, (list, tuple)) and len(value) == len(AU_NAMES) and all(
            isinstance(v, (int, float)) for v in value):
        return [float(v) for v in value]
    return None


def run_scores(record: RunRecord) -> Predictions | ValidationSummary | None:
    """What a record keeps to be scored again: its validation predictions (a run folder), else the
    per-video summary a published run carries (a ``publish`` folder or a Hub repository); None when
    it has neither. Raises :class:`PredictionsError` (or :class:`SummaryError`) for an unreadable file."""
    if (record.path / PREDICTIONS_FILE).is_file():
        return load_predictions(record.path / PREDICTIONS_FILE)
    if (record.path / SUMMARY_FILE).is_file():
        return load_summary(record.path / SUMMARY_FILE)
    return None


def scored_runs(config: Configuration) -> list[ScoredRun] | None:
    """Each seed's validation predictions (or published per-video summary) with its AU thresholds;
    None when a seed has neither."""
    out = []
    for run, record in config.runs.items():
        try:
            scores = run_scores(record)
        except PredictionsError:
            return None
        if scores is None:
            return None
        out.append(ScoredRun(scores, _thresholds(record), run))
    return out


def run_summary(record: RunRecord) -> ValidationSummary | None:
    """The per-video summary of a run folder's validation predictions (what ``publish`` writes in place
    of ``val_predictions.npz``), at the run's AU thresholds; None without predictions."""
    scores = run_scores(record)
    if isinstance(scores, Predictions):
        return summarise(scores, _thresholds(record))
    return scores


def record_warnings(configurations: Sequence[Configuration]) -> list[str]:
    """What the report could not use from the records, and what that changed, one line each.

    A validation predictions file that exists but cannot be read (empty, garbage, a wrong array):
    its configuration's intervals then come from the seeds' metrics.json figures alone, over seeds
    and not over videos (wider; a verdict may change). In such figures, a seed whose metrics.json
    holds NaN (or nothing) for a metric is left out of it. A missing predictions file (an older
    record) is the documented fallback and not warned about."""
    out = []
    for config in configurations:
        for record in config.runs.values():
            if (record.path / PREDICTIONS_FILE).exists() or (record.path / SUMMARY_FILE).exists():
                try:
                    run_scores(record)
                except PredictionsError as e:
                    out.append(f"{e}: {config.key} is estimated from its seeds' metrics.json figures alone "
                               "(intervals over seeds, not over validation videos)")
        if scored_runs(config) is not None:
            continue
        for metric in ("P_EXPR", "P_AU", "P_VA", MTL_METRIC):
            if (metric == MTL_METRIC and not config.multi_task) or (
                    metric != MTL_METRIC and METRIC_TASKS[metric][0] not in config.tasks):
                continue
            for run, record in config.runs.items():
                value = record.metrics.get(metric)
                if not math.isfinite(_number(value)):
                    where = f"seed {record.seed}" if record.seed is not None else run
                    holds = f"holds {value!r} for it" if metric in record.metrics else "does not hold it"
                    out.append(f"{where} of {config.key} is left out of {metric}: its metrics.json {holds}")
    return out


# No-skill levels that do not depend on the labels (CCC), for figures without predictions to read labels from.
LABEL_FREE_NO_SKILL = {"P_VA": NO_SKILL_VA, "ccc_valence": NO_SKILL_VA, "ccc_arousal": NO_SKILL_VA}


def _seeds_only(values: Sequence[float], level: float, no_skill: float = math.nan) -> Interval | None:
    """Mean over seeds of metrics.json figures, with a seeds-only interval (no predictions to resample)."""
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return None
    mean = sum(values) / len(values)
    n = len(values)
    if n > 1:
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
        half = t_quantile(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
    else:
        sd, half = 0.0, math.nan
    return Interval(mean, mean - half, mean + half, level, (n,), 0, 0, math.nan, sd / math.sqrt(n), n - 1.0,
                    (tuple(values),), no_skill)


@dataclass
class Comparison:
    """One task of one multi-task configuration against its matched uni-task configuration."""

    dataset: str
    synthetic: bool
    task: str
    metric: str
    multi: str
    uni: str | None
    reason: str                          # why unmatched ("" when matched)
    multi_estimate: Interval | None
    uni_estimate: Interval | None
    difference: Interval | None          # multi - uni, paired over videos, combined with seeds
    multi_budget_steps: int | None
    uni_budget_steps: int | None
    init_run: str | None
    verdict: str                         # one of VERDICTS
    verdict_text: str
    did_not_learn: list[str] = field(default_factory=list)   # why a side gives no verdict (did_not_learn)

    @property
    def title(self) -> str:
        return get_task(self.task).title

    def as_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in ("dataset", "synthetic", "task", "metric", "multi", "uni", "reason",
                                           "multi_budget_steps", "uni_budget_steps", "init_run", "verdict",
                                           "verdict_text", "did_not_learn")}
        for k in ("multi_estimate", "uni_estimate", "difference"):
            value = getattr(self, k)
            d[k] = None if value is None else _json_safe(value.as_dict())
        d["n_seeds"] = {"multi": self.multi_estimate.n_seeds[0] if self.multi_estimate else 0,
                        "uni": self.uni_estimate.n_seeds[0] if self.uni_estimate else 0}
        return d


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def verdict_of(difference: Interval | None, metric: str, failures: Sequence[str] = ()) -> tuple[str, str]:
    """("helped" | "hurt" | "no clear difference" | "undecided", plain words with the figures).

    "helped"/"hurt" only when the interval of the difference excludes zero and every side has at
    least two seeds (otherwise the run-to-run spread is unknown and no verdict is drawn), and never
    when a side did not learn (``failures``: the reasons :func:`did_not_learn` gives, one per side that
    failed): then it is "undecided" with the reason.
    """
    if failures:
        return "undecided", "undecided: " + "; ".join(failures)
    if difference is None or not math.isfinite(difference.mean):
        return "undecided", "undecided: no figure on one side"
    d, lo, hi = difference.mean, difference.low, difference.high
    level = f"{difference.level:.0%}".replace("%", " %")
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "undecided", (f"undecided: {d:+.3f} {metric}, but no interval (one seed and no readable validation "
                             "predictions to resample)")
    if difference.n_videos == 0:
        span = f"{lo:+.3f} to {hi:+.3f} over seeds only"
        return "undecided", (f"undecided: {d:+.3f} {metric} ({span}; no readable validation predictions to "
                             "resample videos)")
    if not difference.seeds_known:
        return "undecided", (f"undecided: one seed on a side, so run-to-run spread is unknown ({d:+.3f} {metric}; "
                             f"{lo:+.3f} to {hi:+.3f} over validation videos only)")
    seeds = "/".join(str(n) for n in difference.n_seeds)
    if difference.excludes_zero:
        word = "helped" if d > 0 else "hurt"
        return word, f"{word}: {d:+.3f} {metric} ({level} interval {lo:+.3f} to {hi:+.3f}; {seeds} seeds)"
    return "no clear difference", f"no clear difference ({lo:+.3f} to {hi:+.3f} {metric}; {seeds} seeds)"


def configuration_estimate(config: Configuration, metric: str, resamples: int = DEFAULT_RESAMPLES,
                           seed: int = 0, level: float = DEFAULT_LEVEL) -> Interval | None:
    """Mean of ``metric`` over the configuration's seeds with its interval (video bootstrap + seeds);
    from metrics.json over seeds only when validation predictions are missing; None without the metric."""
    if metric not in METRIC_TASKS or (metric == MTL_METRIC and not config.multi_task) or (
            metric != MTL_METRIC and METRIC_TASKS[metric][0] not in config.tasks):
        return None
    runs = scored_runs(config)
    if runs is not None:
        try:
            return estimate(runs, metric, resamples, level, seed)
        except ValueError:  # predictions without this task or without shared frames: figures only
            pass
    return _seeds_only([_number(r.metrics.get(metric)) for r in config.runs.values()], level,
                       LABEL_FREE_NO_SKILL.get(metric, math.nan))


def did_not_learn(config: Configuration, metric: str, estimate: Interval | None) -> str | None:
    """Why ``config`` shows no evidence of having learned what ``metric`` measures, or None.

    In this order: a seed whose metrics.json holds a headline figure that is not a number (a diverged
    run of an older version; current training stops such runs and leaves no record); a seed whose
    health record marks a head of the metric's tasks collapsed (:func:`affectmodel.records.run_health`;
    older records have none); an interval over seeds and videos that reaches the metric's no-skill level
    (:func:`affectmodel.metrics.no_skill_levels`). Any of these, on either side, means no verdict.
    """
    tasks = [t for t in METRIC_TASKS.get(metric, ()) if t in config.tasks]
    for run, record in config.runs.items():
        where = f"seed {record.seed}" if record.seed is not None else run
        bad = non_finite_metrics(record)
        if bad:
            return f"{config.key} diverged ({bad[0]} is not a number in {where})"
        collapsed = [t for t in collapsed_heads(record) if t in tasks]
        if collapsed:
            heads = _join([get_task(t).title.lower() for t in collapsed])
            return f"{config.key} did not learn (its {heads} head collapsed in {where})"
    if estimate is not None and estimate.above_no_skill is False:
        return (f"{config.key} did not learn ({metric} {estimate.low:+.3f} to {estimate.high:+.3f}, "
                f"no-skill level {estimate.no_skill:.3f})")
    return None


def _contrast(configs: Sequence[Configuration], signs: Sequence[float], metric: str, resamples: int, seed: int,
              level: float) -> Interval | None:
    """``sum(sign * mean)`` over configurations, paired over validation videos and combined with each
    side's seed spread (:func:`affectmodel.statistics.contrast`); from metrics.json figures over seeds
    only when a side has no predictions to resample (never a verdict: no videos); None without figures."""
    scored = [scored_runs(c) for c in configs]
    if all(s is not None for s in scored):
        try:
            return contrast([s for s in scored if s is not None], signs, metric, resamples, level, seed)
        except ValueError:  # no validation frame shared by every side: figures only, never a verdict
            pass
    sides = [_seeds_only([_number(r.metrics.get(metric)) for r in c.runs.values()], level) for c in configs]
    if any(side is None for side in sides):
        return None
    known = [side for side in sides if side is not None]
    var = sum(side.seed_se ** 2 for side in known)
    counts = tuple(side.n_seeds[0] for side in known)
    if min(counts) > 1 and var > 0:
        df = var ** 2 / sum(side.seed_se ** 4 / (side.n_seeds[0] - 1) for side in known)
        half = t_quantile(0.5 + level / 2, df) * math.sqrt(var)
    else:
        df, half = math.nan, (0.0 if min(counts) > 1 else math.nan)
    d = sum(sign * side.mean for sign, side in zip(signs, known, strict=True))
    return Interval(d, d - half, d + half, level, counts, 0, 0, math.nan, math.sqrt(var), df,
                    tuple(p for side in known for p in side.per_seed))


def _difference(a: Configuration, b: Configuration, metric: str, resamples: int, seed: int,
                level: float) -> Interval | None:
    """``a - b`` (see :func:`_contrast`)."""
    return _contrast([a, b], (1.0, -1.0), metric, resamples, seed, level)


def matched_comparisons(configurations: Sequence[Configuration], resamples: int = DEFAULT_RESAMPLES,
                        seed: int = 0, level: float = DEFAULT_LEVEL) -> list[Comparison]:
    """Every task of every multi-task configuration against its matched uni-task configuration.

    Unmatched pairs are listed with the reason (verdict "unmatched") and never get a verdict.
    """
    out = []
    for multi in [c for c in configurations if c.multi_task]:
        for task, (uni, reason) in find_matches(multi, configurations).items():
            metric = TASK_METRICS[task]
            multi_est = configuration_estimate(multi, metric, resamples, seed, level)
            uni_est = configuration_estimate(uni, metric, resamples, seed, level) if uni else None
            failures: list[str] = []
            if uni is None:
                diff, word, text = None, "unmatched", f"unmatched: {reason}"
            else:
                diff = _difference(multi, uni, metric, resamples, seed, level)
                failures = [f for f in (did_not_learn(multi, metric, multi_est), did_not_learn(uni, metric, uni_est))
                            if f]
                word, text = verdict_of(diff, metric, failures)
            out.append(Comparison(multi.dataset, multi.synthetic, task, metric, multi.key,
                                  uni.key if uni else None, reason, multi_est, uni_est, diff, multi.budget_steps,
                                  uni.budget_steps if uni else None, multi.init_run, word, text, failures))
    return out


# ----------------------------------------------------------------------------- factor comparisons

@dataclass
class FactorComparison:
    """One task of two configurations that differ in exactly one option (the factor): the variant
    level against the reference level, paired over the same validation videos, with seeds."""

    dataset: str
    synthetic: bool
    factor: str                          # the option that differs (a training option, or budget_steps)
    task: str
    metric: str
    reference: str                       # configuration keys
    variant: str
    reference_level: str
    variant_level: str
    reference_estimate: Interval | None
    variant_estimate: Interval | None
    difference: Interval | None          # variant - reference
    budget_steps: int | None             # of the reference (equal on both sides unless budget is the factor)
    verdict: str
    verdict_text: str
    did_not_learn: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        return get_task(self.task).title

    @property
    def label(self) -> str:
        """``factor: variant vs reference`` in words."""
        return f"{self.factor}: {self.variant_level} vs {self.reference_level}"

    def as_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in ("dataset", "synthetic", "factor", "task", "metric", "reference", "variant",
                                           "reference_level", "variant_level", "budget_steps", "verdict",
                                           "verdict_text", "did_not_learn")}
        for k in ("reference_estimate", "variant_estimate", "difference"):
            value = getattr(self, k)
            d[k] = None if value is None else _json_safe(value.as_dict())
        d["n_seeds"] = {"reference": self.reference_estimate.n_seeds[0] if self.reference_estimate else 0,
                        "variant": self.variant_estimate.n_seeds[0] if self.variant_estimate else 0}
        return d


def factor_comparisons(configurations: Sequence[Configuration], resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                       level: float = DEFAULT_LEVEL) -> list[FactorComparison]:
    """Every task of every matched factor pair (:func:`factor_pairs`), with the verdict rules of the
    uni- vs multi-task comparison (:func:`verdict_of`, :func:`did_not_learn`)."""
    out = []
    for factor, ref, var in factor_pairs(configurations):
        for task in ref.tasks:
            metric = TASK_METRICS[task]
            ref_est = configuration_estimate(ref, metric, resamples, seed, level)
            var_est = configuration_estimate(var, metric, resamples, seed, level)
            diff = _difference(var, ref, metric, resamples, seed, level)
            failures = [f for f in (did_not_learn(var, metric, var_est), did_not_learn(ref, metric, ref_est)) if f]
            word, text = verdict_of(diff, metric, failures)
            out.append(FactorComparison(ref.dataset, ref.synthetic, factor, task, metric, ref.key, var.key,
                                        factor_level(ref, factor, var), factor_level(var, factor, ref), ref_est,
                                        var_est, diff, ref.budget_steps, word, text, failures))
    return out


@dataclass
class Interaction:
    """Does a factor change the multi-task effect on a task? The multi-task effect (multi - matched
    uni) at the variant level minus the one at the reference level: a difference of differences over
    four configurations, paired over the same validation videos, with each one's seed spread."""

    dataset: str
    synthetic: bool
    factor: str
    task: str
    metric: str
    reference_level: str
    variant_level: str
    reference_multi: str                 # configuration keys
    reference_uni: str
    variant_multi: str
    variant_uni: str
    reference_effect: Interval | None    # reference_multi - reference_uni
    variant_effect: Interval | None      # variant_multi - variant_uni
    difference: Interval | None          # variant_effect - reference_effect
    verdict: str                         # "helped": the variant level makes the multi-task effect larger
    verdict_text: str
    did_not_learn: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        return get_task(self.task).title

    @property
    def label(self) -> str:
        return f"multi-task effect × {self.factor}: {self.variant_level} vs {self.reference_level}"

    def as_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in ("dataset", "synthetic", "factor", "task", "metric", "reference_level",
                                           "variant_level", "reference_multi", "reference_uni", "variant_multi",
                                           "variant_uni", "verdict", "verdict_text", "did_not_learn")}
        for k in ("reference_effect", "variant_effect", "difference"):
            value = getattr(self, k)
            d[k] = None if value is None else _json_safe(value.as_dict())
        return d


def interactions(configurations: Sequence[Configuration], resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                 level: float = DEFAULT_LEVEL) -> list[Interaction]:
    """Every task where a suite holds the four configurations an interaction needs: two multi-task
    configurations that differ in one factor, each with a matched uni-task configuration of the task,
    and those two different (when the factor does not concern the uni-task side, e.g. the weighting of
    tasks or another task's loss, there is no interaction to measure)."""
    out = []
    for factor, ref, var in factor_pairs(configurations):
        if not ref.multi_task:
            continue
        ref_unis, var_unis = find_matches(ref, configurations), find_matches(var, configurations)
        for task in ref.tasks:
            ref_uni, var_uni = ref_unis[task][0], var_unis[task][0]
            if ref_uni is None or var_uni is None or ref_uni.key == var_uni.key:
                continue
            metric = TASK_METRICS[task]
            four = [var, var_uni, ref, ref_uni]
            diff = _contrast(four, (1.0, -1.0, -1.0, 1.0), metric, resamples, seed, level)
            failures = [f for f in (did_not_learn(c, metric, configuration_estimate(c, metric, resamples, seed, level))
                                    for c in four) if f]
            word, text = verdict_of(diff, metric, failures)
            out.append(Interaction(ref.dataset, ref.synthetic, factor, task, metric, factor_level(ref, factor, var),
                                   factor_level(var, factor, ref), ref.key, ref_uni.key, var.key, var_uni.key,
                                   _difference(ref, ref_uni, metric, resamples, seed, level),
                                   _difference(var, var_uni, metric, resamples, seed, level), diff, word, text,
                                   failures))
    return out


def not_compared(configurations: Sequence[Configuration], comparisons: Sequence[Comparison],
                 factors: Sequence[FactorComparison]) -> dict[str, str]:
    """Configurations that take part in no matched comparison, with why: the nearest configuration
    with the same tasks on the same data and the options in which it differs."""
    used = {c.multi for c in comparisons if c.uni} | {c.uni for c in comparisons if c.uni}
    used |= {f.reference for f in factors} | {f.variant for f in factors}
    out = {}
    for config in configurations:
        if config.key in used:
            continue
        near = []
        for other in configurations:
            if other is not config and other.tasks == config.tasks:
                differ = option_differences(config, other)
                if differ is not None:
                    near.append((len(differ), other.key, differ))
        if not near:
            out[config.key] = "no other configuration with the same tasks on the same data"
        else:
            _, key, differ = min(near)
            out[config.key] = f"the nearest, {key}, differs in {_join(differ)}"
    return out


@dataclass
class MatchedCost:
    """One shared model against the matched uni-task models of its tasks (means over seeds)."""

    dataset: str
    multi: str
    unis: list[str]
    multi_parameters: float
    uni_parameters: float                  # sum over the uni-task models
    multi_train_time_s: float              # including the run it was initialised from
    uni_train_time_s: float                # sum over the uni-task models
    multi_init_train_time_s: float
    multi_images_per_second: float
    uni_images_per_second: float           # images through all uni-task models (1 / sum 1/throughput)
    parameters_ratio: float                # multi / uni
    train_time_ratio: float
    speed_ratio: float

    def as_dict(self) -> dict[str, Any]:
        return _json_safe(dict(self.__dict__))

    def summary_table(self) -> pd.DataFrame:
        """A small display table: what, N uni-task models, one shared model, shared / uni."""
        n = len(self.unis)

        def ratio(x: float) -> str:
            return f"{x:.2f}x" if math.isfinite(x) else "n/a"

        return pd.DataFrame({
            "": ["Models to train and run", "Parameters", "Training time (incl. init run)",
                 "Images/s through all tasks"],
            f"{n} uni-task": [str(n), format_count(self.uni_parameters), format_duration(self.uni_train_time_s),
                              format_rate(self.uni_images_per_second)],
            "1 multi-task": ["1", format_count(self.multi_parameters), format_duration(self.multi_train_time_s),
                             format_rate(self.multi_images_per_second)],
            "shared / uni": [ratio(1 / n) if n else "n/a", ratio(self.parameters_ratio),
                             ratio(self.train_time_ratio), ratio(self.speed_ratio)],
        })


def matched_costs(configurations: Sequence[Configuration]) -> list[MatchedCost]:
    """Cost of each multi-task configuration against the uni-task configurations it is matched with."""
    by_key = {c.key: c for c in configurations}
    out = []
    for multi in [c for c in configurations if c.multi_task]:
        unis = [u for u, _ in find_matches(multi, configurations).values() if u is not None]
        if not unis:
            continue
        params = sum(u.mean("parameters") for u in unis)
        time_s = sum(u.train_time_s() for u in unis)
        ips = [u.mean("images_per_second") for u in unis]
        uni_ips = 1.0 / sum(1.0 / x for x in ips) if all(math.isfinite(x) and x > 0 for x in ips) else math.nan
        m_params, m_time, m_ips = multi.mean("parameters"), multi.train_time_s(), multi.mean("images_per_second")
        init = multi.mean("init_train_time_s")

        def div(a: float, b: float) -> float:
            return a / b if math.isfinite(a) and math.isfinite(b) and b else math.nan

        out.append(MatchedCost(multi.dataset, multi.key, [u.key for u in unis if u.key in by_key], m_params, params,
                               m_time, time_s, init if math.isfinite(init) else 0.0, m_ips, uni_ips,
                               div(m_params, params), div(m_time, time_s), div(m_ips, uni_ips)))
    return out


@dataclass
class StudyReport:
    """Everything the study command, the dashboard, the README table and the model card show."""

    configurations: list[Configuration]
    comparisons: list[Comparison]
    costs: list[MatchedCost]
    estimates: dict[str, dict[str, Interval | None]]   # configuration key -> metric -> interval
    resamples: int
    level: float
    data_notes: list[str] = field(default_factory=list)   # runs not pooled or not checkable (data_notes)
    warnings: list[str] = field(default_factory=list)  # record_warnings: what could not be used, and its effect
    factors: list[FactorComparison] = field(default_factory=list)
    interactions: list[Interaction] = field(default_factory=list)
    not_compared: dict[str, str] = field(default_factory=dict)   # configuration key -> why

    def as_dict(self) -> dict[str, Any]:
        return {
            "protocol": PROTOCOL,
            "resamples": self.resamples, "level": self.level,
            "configurations": [{"key": c.key, "dataset": c.dataset, "synthetic": c.synthetic, "tasks": list(c.tasks),
                                "seeds": c.seeds, "n_seeds": len(c.runs), "runs": list(c.runs),
                                "budget_steps": c.budget_steps, "init_run": c.init_run,
                                "data_fingerprint": c.data_fingerprint,
                                "estimates": {m: (None if i is None else _json_safe(i.as_dict()))
                                              for m, i in self.estimates.get(c.key, {}).items()}}
                               for c in self.configurations],
            "comparisons": [c.as_dict() for c in self.comparisons],
            "factor_comparisons": [f.as_dict() for f in self.factors],
            "interactions": [i.as_dict() for i in self.interactions],
            "not_compared": dict(self.not_compared),
            "costs": [c.as_dict() for c in self.costs],
            "data_notes": list(self.data_notes),
            "warnings": list(self.warnings),
        }


PROTOCOL = ("Figures are means over seeds. AU thresholds and the best epoch are chosen on held-out training "
            "videos (a development split), never on the validation frames reported. Intervals: 95 % from a "
            "bootstrap over validation videos (paired for differences) combined with the spread over seeds "
            "(t interval, Welch-Satterthwaite degrees of freedom). A verdict says helped/hurt only when the "
            "interval of the difference excludes zero, each side has at least two seeds, and each side learned: "
            "no diverged seed, no collapsed head, and an interval above its no-skill level (P_VA 0, P_EXPR the "
            "best constant class, P_AU every AU on). Multi-task configurations are compared only with "
            "uni-task configurations that differ from them only in the tasks and have the same budget in steps; "
            "a factor comparison pairs configurations that differ in exactly one training option; an interaction "
            "is the difference of two such matched differences.")


def study_report(runs: Mapping[str, RunRecord], resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                 level: float = DEFAULT_LEVEL) -> StudyReport:
    """Configurations, matched comparisons with verdicts (uni- vs multi-task, every factor, interactions),
    matched costs and per-configuration intervals."""
    configurations = group_configurations(runs)
    estimates = {c.key: {m: configuration_estimate(c, m, resamples, seed, level)
                         for m in ("P_EXPR", "P_AU", "P_VA", MTL_METRIC)} for c in configurations}
    comparisons = matched_comparisons(configurations, resamples, seed, level)
    factors = factor_comparisons(configurations, resamples, seed, level)
    return StudyReport(configurations, comparisons, matched_costs(configurations), estimates, resamples, level,
                       data_notes=data_notes(configurations), factors=factors,
                       interactions=interactions(configurations, resamples, seed, level),
                       not_compared=not_compared(configurations, comparisons, factors),
                       warnings=record_warnings(configurations))


def run_estimates(record: RunRecord, resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                  level: float = DEFAULT_LEVEL) -> dict[str, Interval]:
    """One run's headline metrics with intervals over its validation videos (the run as a one-seed
    configuration; empty when it has no predictions file)."""
    info = dataset_info(record)
    config = Configuration(f"{record.suite}/{record.configuration}", record.suite, record.configuration,
                           info["dataset"], info["synthetic"], tuple(t for t in TASK_KEYS if t in record.tasks),
                           {record.name: record})
    if scored_runs(config) is None:
        return {}
    out = {}
    for metric in ("P_EXPR", "P_AU", "P_VA", MTL_METRIC):
        est = configuration_estimate(config, metric, resamples, seed, level)
        if est is not None:
            out[metric] = est
    return out


def comparisons_of(report: StudyReport, record: RunRecord) -> list[Comparison]:
    """The matched comparisons a run's configuration takes part in (on either side)."""
    key = f"{record.suite}/{record.configuration}"
    return [c for c in report.comparisons if key in (c.multi, c.uni)]


def factors_of(report: StudyReport, record: RunRecord) -> tuple[list[FactorComparison], list[Interaction]]:
    """The factor comparisons and interactions a run's configuration takes part in (any side)."""
    key = f"{record.suite}/{record.configuration}"
    factors = [f for f in report.factors if key in (f.reference, f.variant)]
    inter = [i for i in report.interactions
             if key in (i.reference_multi, i.reference_uni, i.variant_multi, i.variant_uni)]
    return factors, inter


def verdict_sentence(comparisons: Sequence[Comparison], cost: MatchedCost | None = None) -> str:
    """Plain words for one multi-task configuration's comparisons (one data set)."""
    if not comparisons:
        return "No multi-task configuration to compare."
    multi = comparisons[0].multi
    parts = [f"{c.title.lower()}: {c.verdict_text}" for c in comparisons]
    text = f"{multi} against one model per task: " + "; ".join(parts) + "."
    if cost is not None and cost.unis:
        text += (f" Cost: one model with {format_count(cost.multi_parameters)} parameters instead of "
                 f"{len(cost.unis)} with {format_count(cost.uni_parameters)}, trained in "
                 f"{format_duration(cost.multi_train_time_s)} instead of {format_duration(cost.uni_train_time_s)}"
                 + (" (including the run it started from)" if cost.multi_init_train_time_s else "") + ".")
    return text


def _cell(i: Interval | None, signed: bool = False) -> str:
    """An estimate with its interval for a table; ``signed`` for a difference (``+0.012 (-0.004 to
    +0.030)``: "to", since a dash beside minus signs reads badly)."""
    if i is None or not math.isfinite(i.mean):
        return "–"
    number, between = ("+.3f", " to ") if signed else (".3f", "–")
    if not (math.isfinite(i.low) and math.isfinite(i.high)):
        return f"{i.mean:{number}}"
    return f"{i.mean:{number}} ({i.low:{number}}{between}{i.high:{number}})"


# The same cells in the dashboard's tables.
interval_text = _cell


def report_markdown(report: StudyReport) -> str:
    """The README's study table and verdict text (markdown), from :func:`study_report`."""
    lines: list[str] = []
    costs = {c.multi: c for c in report.costs}
    for dataset in sorted({c.dataset for c in report.comparisons}):
        comps = [c for c in report.comparisons if c.dataset == dataset]
        lines += [f"### {dataset_label(dataset, comps[0].synthetic)}", "",
                  "| Multi-task configuration | Task | Metric | Uni-task (matched) | Multi-task "
                  "| Difference (95 % interval) "
                  "| Seeds (multi/uni) | Budget (steps) | Verdict |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for c in comps:
            seeds = f"{c.multi_estimate.n_seeds[0] if c.multi_estimate else 0}/" \
                    f"{c.uni_estimate.n_seeds[0] if c.uni_estimate else 0}"
            budget = f"{c.multi_budget_steps if c.multi_budget_steps is not None else '?'}" + (
                f" (incl. {c.init_run})" if c.init_run else "")
            lines.append(f"| {c.multi} | {c.title} | {c.metric} | {c.uni or 'unmatched'} {_cell(c.uni_estimate)} | "
                         f"{_cell(c.multi_estimate)} | {_cell(c.difference, signed=True)} | {seeds} | {budget} | "
                         f"{c.verdict_text} |")
        lines.append("")
        for multi in dict.fromkeys(c.multi for c in comps):
            lines += [verdict_sentence([c for c in comps if c.multi == multi], costs.get(multi)), ""]
    lines += _factors_markdown(report)
    lines += [f"_{PROTOCOL}_", ""]
    lines += [f"_Data: {note}_\n" for note in report.data_notes]
    if any(c.synthetic for c in report.comparisons) or any(f.synthetic for f in report.factors):
        lines += ["_Synthetic benchmark: these figures check the pipeline and the statistics; they say nothing "
                  "about real faces or Aff-Wild2._", ""]
    return "\n".join(lines)


def _seeds_of(*estimates: Interval | None) -> str:
    return "/".join(str(e.n_seeds[0] if e else 0) for e in estimates)


def _factors_markdown(report: StudyReport) -> list[str]:
    """Markdown tables of every factor comparison and interaction, and the configurations compared with nothing."""
    lines: list[str] = []
    for dataset in sorted({f.dataset for f in report.factors}):
        rows = [f for f in report.factors if f.dataset == dataset]
        lines += [f"### Factor comparisons · {dataset_label(dataset, rows[0].synthetic)}", "",
                  "Configurations that differ in exactly one option; the difference is variant − reference.", "",
                  "| Factor | Variant vs reference | Configurations | Task | Metric | Reference | Variant "
                  "| Difference (95 % interval) | Seeds (variant/reference) | Budget (steps) | Verdict |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for f in rows:
            seeds = _seeds_of(f.variant_estimate, f.reference_estimate)
            lines.append(f"| {f.factor} | {f.variant_level} vs {f.reference_level} | {f.variant} vs {f.reference} | "
                         f"{f.title} | {f.metric} | {_cell(f.reference_estimate)} | {_cell(f.variant_estimate)} | "
                         f"{_cell(f.difference, signed=True)} | {seeds} | "
                         f"{f.budget_steps if f.budget_steps is not None else '?'} | {f.verdict_text} |")
        lines.append("")
    for dataset in sorted({i.dataset for i in report.interactions}):
        synthetic = next(i.synthetic for i in report.interactions if i.dataset == dataset)
        lines += [f"### Interactions: does a factor change the multi-task effect? · "
                  f"{dataset_label(dataset, synthetic)}", "",
                  "Multi-task effect = multi-task − matched uni-task configuration; the interaction is the effect at "
                  "the variant level minus the effect at the reference level.", "",
                  "| Factor | Variant vs reference | Task | Metric | Effect at the reference level | Effect at the "
                  "variant level | Difference of differences (95 % interval) | Seeds | Verdict |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for i in [x for x in report.interactions if x.dataset == dataset]:
            seeds = "/".join(str(n) for n in i.difference.n_seeds) if i.difference else "?"
            lines.append(f"| {i.factor} | {i.variant_level} vs {i.reference_level} | {i.title} | {i.metric} | "
                         f"{_cell(i.reference_effect, signed=True)} ({i.reference_multi} − {i.reference_uni}) | "
                         f"{_cell(i.variant_effect, signed=True)} ({i.variant_multi} − {i.variant_uni}) | "
                         f"{_cell(i.difference, signed=True)} | {seeds} | {i.verdict_text} |")
        lines.append("")
    if report.not_compared:
        lines += ["Not compared with anything (no configuration differs from them in exactly one option):", ""]
        lines += [f"- {key}: {why}" for key, why in report.not_compared.items()]
        lines.append("")
    return lines


def comparisons_frame(comparisons: Sequence[Comparison]) -> pd.DataFrame:
    """One row per comparison (what the dashboard's comparison table shows): configurations, means with
    intervals, difference with interval, seeds, budget, verdict."""
    rows = []
    for c in comparisons:
        row = {"dataset": c.dataset, "synthetic": c.synthetic, "multi": c.multi, "task": c.task, "title": c.title,
               "metric": c.metric, "uni": c.uni or "unmatched"}
        for side, est in (("multi", c.multi_estimate), ("uni", c.uni_estimate), ("diff", c.difference)):
            row[f"{side}_mean"] = est.mean if est else math.nan
            row[f"{side}_low"] = est.low if est else math.nan
            row[f"{side}_high"] = est.high if est else math.nan
        row["multi_seeds"] = c.multi_estimate.n_seeds[0] if c.multi_estimate else 0
        row["uni_seeds"] = c.uni_estimate.n_seeds[0] if c.uni_estimate else 0
        row["budget_steps"] = c.multi_budget_steps
        row["verdict"], row["verdict_text"] = c.verdict, c.verdict_text
        rows.append(row)
    columns = ["dataset", "synthetic", "multi", "task", "title", "metric", "uni", "multi_mean", "multi_low",
               "multi_high", "uni_mean", "uni_low", "uni_high", "diff_mean", "diff_low", "diff_high", "multi_seeds",
               "uni_seeds", "budget_steps", "verdict", "verdict_text"]
    return pd.DataFrame(rows, columns=columns)


def _interval_columns(prefix: str, est: Interval | None) -> dict[str, float]:
    return {f"{prefix}_mean": est.mean if est else math.nan, f"{prefix}_low": est.low if est else math.nan,
            f"{prefix}_high": est.high if est else math.nan}


def factors_frame(factors: Sequence[FactorComparison]) -> pd.DataFrame:
    """One row per factor comparison and task (what the dashboard's factor tab shows and charts):
    the factor, its levels, both configurations with their means and intervals, the difference
    (variant - reference) with its interval, the seeds and the verdict in words."""
    rows = []
    for f in factors:
        row: dict[str, Any] = {"dataset": f.dataset, "synthetic": f.synthetic, "factor": f.factor,
                               "comparison": f.label, "configurations": f"{f.variant} vs {f.reference}",
                               "reference": f.reference, "variant": f.variant, "task": f.task, "title": f.title,
                               "metric": f.metric}
        row.update(_interval_columns("reference", f.reference_estimate))
        row.update(_interval_columns("variant", f.variant_estimate))
        row.update(_interval_columns("diff", f.difference))
        row["seeds"] = _seeds_of(f.variant_estimate, f.reference_estimate)
        row["verdict"], row["verdict_text"] = f.verdict, f.verdict_text
        rows.append(row)
    columns = ["dataset", "synthetic", "factor", "comparison", "configurations", "reference", "variant", "task",
               "title", "metric", "reference_mean", "reference_low", "reference_high", "variant_mean", "variant_low",
               "variant_high", "diff_mean", "diff_low", "diff_high", "seeds", "verdict", "verdict_text"]
    return pd.DataFrame(rows, columns=columns)


def interactions_frame(interactions: Sequence[Interaction]) -> pd.DataFrame:
    """One row per interaction: the multi-task effect at each level with its interval, their
    difference with its interval, the four configurations, the seeds and the verdict in words."""
    rows = []
    for i in interactions:
        row: dict[str, Any] = {"dataset": i.dataset, "synthetic": i.synthetic, "factor": i.factor,
                               "comparison": i.label, "task": i.task, "title": i.title, "metric": i.metric,
                               "configurations": f"({i.variant_multi} − {i.variant_uni}) − ({i.reference_multi} − "
                                                 f"{i.reference_uni})",
                               "members": [i.reference_multi, i.reference_uni, i.variant_multi, i.variant_uni]}
        row.update(_interval_columns("reference_effect", i.reference_effect))
        row.update(_interval_columns("variant_effect", i.variant_effect))
        row.update(_interval_columns("diff", i.difference))
        row["seeds"] = "/".join(str(n) for n in i.difference.n_seeds) if i.difference else ""
        row["verdict"], row["verdict_text"] = i.verdict, i.verdict_text
        rows.append(row)
    columns = ["dataset", "synthetic", "factor", "comparison", "task", "title", "metric", "configurations", "members",
               "reference_effect_mean", "reference_effect_low", "reference_effect_high", "variant_effect_mean",
               "variant_effect_low", "variant_effect_high", "diff_mean", "diff_low", "diff_high", "seeds", "verdict",
               "verdict_text"]
    return pd.DataFrame(rows, columns=columns)


def comparison_bars(comparisons: Sequence[Comparison]) -> pd.DataFrame:
    """Long table for a bar chart with error bars: task, setting, configuration, mean, low, high, seeds, verdict,
    the ABAW baseline (Aff-Wild2 only) and the metric's no-skill level on the frames scored."""
    rows = []
    for c in comparisons:
        for setting, key, est in (("uni-task", c.uni, c.uni_estimate), ("multi-task", c.multi, c.multi_estimate)):
            if est is None or not math.isfinite(est.mean):
                continue
            rows.append({"task": f"{c.title} ({c.metric})", "setting": setting, "configuration": key,
                         "mean": est.mean, "low": est.low if math.isfinite(est.low) else None,
                         "high": est.high if math.isfinite(est.high) else None, "seeds": est.n_seeds[0],
                         "verdict": c.verdict_text,
                         "baseline": ABAW_BASELINES.get(c.metric, math.nan) if is_affwild2(c.dataset) else math.nan,
                         "no_skill": est.no_skill if math.isfinite(est.no_skill) else None})
    return pd.DataFrame(rows, columns=["task", "setting", "configuration", "mean", "low", "high", "seeds", "verdict",
                                       "baseline", "no_skill"])


def in_sample_figures(record: RunRecord) -> dict[str, float]:
    """Figures tuned on the validation frames they are reported on (optimistic), by metrics.json key."""
    return {k: _number(v) for k, v in record.metrics.items()
            if k.endswith("_tuned_on_validation") and math.isfinite(_number(v))}


def selection_note(record: RunRecord) -> str:
    """How a run's AU thresholds and best epoch were chosen, in words (from metrics.json ``selection``)."""
    sel = record.metrics.get("selection")
    if isinstance(sel, Mapping) and sel.get("split"):
        size = ", ".join(f"{sel[k]} {k}" for k in ("videos", "frames") if sel.get(k) is not None)
        return (f"AU thresholds and the best epoch were chosen on the {sel['split']} split "
                f"({size}) of held-out training videos, not on the validation frames reported.")
    return ("This record does not say where AU thresholds and the best epoch were chosen (an older run): "
            "they may have been tuned on the validation frames reported, which is optimistic.")


def provenance_note(record: RunRecord) -> str:
    """Which data (fingerprint), code and machine a run's figures came from, in words (docs/REPRODUCIBILITY.md)."""
    fingerprint = record.data_fingerprint
    data = (f"Data fingerprint `{fingerprint}` (`python -m affectmodel data-info ROOT` prints a local copy's; "
            "the same data give the same fingerprint)") if fingerprint else \
        "No data fingerprint (a record older than data fingerprints)"
    code = record.config.get("code_version") or "not recorded"
    return (f"{data}. Code version {code}; trained on {machine_summary(record.machine)}. The same code, data, "
            "configuration, seed and machine give the same figures; another CPU or thread count gives other "
            "figures, by about what another seed would (docs/REPRODUCIBILITY.md).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", type=Path, help="folder of run records (any depth), e.g. runs/quick")
    parser.add_argument("--json", action="store_true", help="print the whole report as one JSON object")
    parser.add_argument("--markdown", action="store_true", help="print the README table and verdicts (markdown)")
    parser.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES,
                        help=f"bootstrap resamples over validation videos (default {DEFAULT_RESAMPLES})")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the bootstrap (default 0)")


def run(args: argparse.Namespace) -> int:
    if not args.runs.is_dir():
        raise FileNotFoundError(f"runs folder not found: {args.runs}")
    if args.resamples < 2:
        raise ValueError(f"--resamples must be at least 2, got {args.resamples}")
    records, errors = read_runs(args.runs)
    for e in errors:
        print(f"warning: skipped a run: {e}", file=sys.stderr)
    if not records:
        raise ValueError(f"no run records (metrics.json) under {args.runs}")
    report = study_report(index_runs(records), args.resamples, args.seed)
    for warning in report.warnings:  # also in --json ("warnings") and on the dashboard
        print(f"warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    elif args.markdown:
        print(report_markdown(report))
    else:
        print(report_text(report))
    return 0


def report_text(report: StudyReport) -> str:
    """The console form of the report: one block per multi-task configuration."""
    lines = []
    for c in report.comparisons:
        lines.append(f"{dataset_label(c.dataset, c.synthetic)} · {c.multi} vs {c.uni or '(unmatched)'} · "
                     f"{c.title} ({c.metric})")
        lines.append(f"  multi {_cell(c.multi_estimate)}  uni {_cell(c.uni_estimate)}  "
                     f"difference {_cell(c.difference, signed=True)}  seeds "
                     f"{c.multi_estimate.n_seeds[0] if c.multi_estimate else 0}/"
                     f"{c.uni_estimate.n_seeds[0] if c.uni_estimate else 0}")
        lines.append(f"  {c.verdict_text}")
    if not report.comparisons:
        lines.append("No multi-task configuration to compare.")
    for f in report.factors:
        lines.append(f"{dataset_label(f.dataset, f.synthetic)} · {f.label} ({f.variant} vs {f.reference}) · "
                     f"{f.title} ({f.metric})")
        lines.append(f"  variant {_cell(f.variant_estimate)}  reference {_cell(f.reference_estimate)}  "
                     f"difference {_cell(f.difference, signed=True)}  seeds "
                     f"{_seeds_of(f.variant_estimate, f.reference_estimate)}")
        lines.append(f"  {f.verdict_text}")
    for i in report.interactions:
        lines.append(f"{dataset_label(i.dataset, i.synthetic)} · {i.label} · {i.title} ({i.metric})")
        lines.append(f"  effect at {i.variant_level} {_cell(i.variant_effect, signed=True)}  at {i.reference_level} "
                     f"{_cell(i.reference_effect, signed=True)}  difference {_cell(i.difference, signed=True)}")
        lines.append(f"  {i.verdict_text}")
    for key, why in report.not_compared.items():
        lines.append(f"not compared: {key} ({why})")
    lines += [f"Data: {note}" for note in report.data_notes]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- per run breakdowns

def expression_labels(record: RunRecord, n: int) -> list[str]:
    """Class names for a run's expression outputs: from its per-class F1, its label space, else by size."""
    per_class = record.metrics.get("per_class_f1")
    if isinstance(per_class, Mapping) and len(per_class) == n:
        return [str(k) for k in per_class]
    spaces = record.config.get("label_spaces") or {}
    name = spaces.get("expr") if isinstance(spaces, Mapping) else None
    if isinstance(name, Mapping):  # {"name": "abaw8", "labels": [...]} as training writes it
        name = name.get("labels") or name.get("name")
    name = name or record.config.get("expression_space")
    if isinstance(name, (list, tuple)) and len(name) == n:
        return [str(x) for x in name]
    if isinstance(name, str) and name.lower() in LABEL_SPACES and len(LABEL_SPACES[name.lower()]) == n:
        return list(LABEL_SPACES[name.lower()].labels)
    for space in LABEL_SPACES.values():  # ABAW-8 first: the default space
        if len(space) == n:
            return list(space.labels)
    return [f"class {i}" for i in range(n)]


def _scores(value: Any, labels: Sequence[str]) -> list[tuple[str, float]]:
    if isinstance(value, Mapping):
        return [(str(k), _number(v)) for k, v in value.items()]
    if isinstance(value, (list, tuple)):
        names = list(labels) if len(labels) == len(value) else [f"#{i}" for i in range(len(value))]
        return [(n, _number(v)) for n, v in zip(names, value, strict=True)]
    return []


def per_label_f1(runs: Mapping[str, RunRecord], kind: str) -> pd.DataFrame:
    """Long table (run, label, f1) of per-class (``kind="expr"``) or per-AU (``kind="au"``) F1."""
    if kind not in ("expr", "au"):
        raise ValueError(f"kind must be 'expr' or 'au', not {kind!r}")
    key = "per_class_f1" if kind == "expr" else "per_au_f1"
    rows = []
    for run, record in runs.items():
        value = record.metrics.get(key)
        if value is None:
            continue
        n = len(value) if hasattr(value, "__len__") else 0
        labels = expression_labels(record, n) if kind == "expr" else AU_NAMES
        rows += [{"run": run, "label": label, "f1": f1} for label, f1 in _scores(value, labels)]
    return pd.DataFrame(rows, columns=["run", "label", "f1"])


def history_long(runs: Mapping[str, RunRecord]) -> pd.DataFrame:
    """Long table (run, epoch, kind, series, value): kind "loss" for ``train_loss*``, "development"
    for ``dev_*`` (scores on the development split, where the best evaluation is chosen) and
    "validation" for ``val_*`` (older records, scored on the validation set during training)."""
    rows = []
    for run, record in runs.items():
        for entry in record.history:
            epoch = entry.get("epoch")
            for column, value in entry.items():
                if column.startswith("train_loss"):
                    kind, series = "loss", "total" if column == "train_loss" else column[len("train_loss_"):]
                elif column.startswith(("dev_", "val_")):
                    kind = "development" if column.startswith("dev_") else "validation"
                    series = column[len("dev_"):]
                else:
                    continue
                if value is None or epoch is None or not math.isfinite(_number(value)):
                    continue
                rows.append({"run": run, "epoch": int(epoch), "kind": kind, "series": series,
                             "value": float(value)})
    return pd.DataFrame(rows, columns=["run", "epoch", "kind", "series", "value"])


def confusion_long(record: RunRecord) -> pd.DataFrame:
    """The saved expression confusion matrix (rows = true class) as (true, predicted, count, rate);
    empty when the run saved none or it is not a square matrix."""
    cm = record.metrics.get("confusion_matrix")
    columns = ["true", "predicted", "count", "rate"]
    if not isinstance(cm, list) or not cm or not all(isinstance(r, list) and len(r) == len(cm) for r in cm):
        return pd.DataFrame(columns=columns)
    labels = expression_labels(record, len(cm))
    rows = []
    for i, row in enumerate(cm):
        total = sum(_number(v) for v in row)
        for j, v in enumerate(row):
            count = _number(v)
            rows.append({"true": labels[i], "predicted": labels[j], "count": count,
                         "rate": count / total if total > 0 else 0.0})
    return pd.DataFrame(rows, columns=columns)


def run_metrics(record: RunRecord) -> dict[str, float]:
    """The headline metrics a run has, in the standard order."""
    return {m: _number(record.metrics.get(m)) for m in METRIC_COLUMNS
            if math.isfinite(_number(record.metrics.get(m)))}


__all__ = [
    "COST_COLUMNS",
    "HIGHER_IS_BETTER",
    "METRIC_COLUMNS",
    "OPTION_PREFIX",
    "PROTOCOL",
    "SUMMARY_COLUMNS",
    "TASK_METRICS",
    "VERDICTS",
    "Comparison",
    "Configuration",
    "MatchedCost",
    "StudyReport",
    "add_arguments",
    "best_mask",
    "best_runs",
    "comparison_bars",
    "comparisons_frame",
    "comparisons_of",
    "configuration_estimate",
    "confusion_long",
    "cost_comparison",
    "data_notes",
    "dataset_info",
    "dataset_label",
    "did_not_learn",
    "expression_labels",
    "factor_comparisons",
    "factor_level",
    "factor_pairs",
    "factors_frame",
    "factors_of",
    "filter_options",
    "filter_table",
    "find_matches",
    "format_count",
    "format_duration",
    "format_rate",
    "group_configurations",
    "headline_comparison",
    "history_long",
    "hub_url",
    "in_sample_figures",
    "index_runs",
    "interactions",
    "interactions_frame",
    "is_affwild2",
    "matched_comparisons",
    "matched_costs",
    "option_text",
    "per_label_f1",
    "provenance_note",
    "report_markdown",
    "report_text",
    "run",
    "run_estimates",
    "run_id",
    "run_metrics",
    "run_scores",
    "run_summary",
    "scored_runs",
    "selection_note",
    "study_report",
    "study_table",
    "table_csv",
    "varying_options",
    "verdict_of",
    "verdict_sentence",
]
