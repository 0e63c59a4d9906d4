"""The uni-task versus multi-task study as tables: what the dashboard (and reports) show.

Pure pandas on :class:`affectmodel.records.RunRecord` objects: no plotting and no UI, so that the
logic is tested on its own and the library stays light. Study factors are read only through
:func:`affectmodel.records.run_factors`; label names come from :mod:`affectmodel.tasks`.

Every comparison is made within one data set: a score on the synthetic benchmark and a score on
Aff-Wild2 are never ranked against each other.
"""
from __future__ import annotations

import math
import re
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from .records import METRIC_KEYS, SYNTHETIC_DATASET, RunRecord, run_factors
from .tasks import ABAW_BASELINES, AU_NAMES, LABEL_SPACES, MTL_METRIC, TASK_KEYS, get_task

FACTOR_COLUMNS: tuple[str, ...] = ("tasks", "setting", "init", "pretraining", "augmentation", "losses",
                                   "weighting")
# Factors whose effect is shown as small multiples (tasks/setting are the main comparison itself).
EFFECT_FACTORS: tuple[str, ...] = ("init", "pretraining", "augmentation", "losses", "weighting")
METRIC_COLUMNS: tuple[str, ...] = METRIC_KEYS
COST_COLUMNS: tuple[str, ...] = ("parameters", "train_time_s", "images_per_second")
# Direction of "best" for each numeric column of the study table.
HIGHER_IS_BETTER: dict[str, bool] = {**{m: True for m in METRIC_COLUMNS},
                                     "parameters": False, "train_time_s": False, "images_per_second": True}
TASK_METRICS: dict[str, str] = {k: get_task(k).metric for k in TASK_KEYS}
# A difference smaller than this (on a 0-1 score) is reported as "no difference".
NEGLIGIBLE_DELTA = 0.005
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
        row: dict[str, Any] = {"run": key, "source": "hub" if key.startswith(HUB_PREFIX) else "local"}
        row.update(dataset_info(record))
        row.update(run_factors(record.config if record.config.get("tasks") else
                               {**record.config, "tasks": record.tasks}))
        row.update({c: _number(m.get(c)) for c in METRIC_COLUMNS + COST_COLUMNS})
        row["best_epoch"] = _number(m.get("best_epoch"))
        row["hub_repo"] = m.get("hub_repo") or None
        row["path"] = str(record.path)
        rows.append(row)
    columns = (["run", "source", "dataset", "synthetic", "split", *FACTOR_COLUMNS, *METRIC_COLUMNS,
                *COST_COLUMNS, "best_epoch", "hub_repo", "path"])
    table = pd.DataFrame(rows, columns=columns)
    for c in METRIC_COLUMNS + COST_COLUMNS + ("best_epoch",):
        table[c] = table[c].astype(float)
    table["synthetic"] = table["synthetic"].astype(bool)
    return table.sort_values(["dataset", "setting", "tasks", "run"], ignore_index=True,
                             key=lambda s: s.map(_setting_order) if s.name == "setting" else s)


def _setting_order(value: str) -> int:
    return 0 if value == "uni-task" else 1


def filter_options(table: pd.DataFrame) -> dict[str, list[str]]:
    """The values each factor (and the data set) takes in ``table``, for filter widgets."""
    return {c: sorted(table[c].dropna().astype(str).unique()) for c in ("dataset", *FACTOR_COLUMNS)}


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
    return rows.loc[rows[metric].idxmax()]


def headline_comparison(table: pd.DataFrame) -> pd.DataFrame:
    """For each data set and task: the best uni-task run against the best multi-task run on that task's metric.

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
            row = {"dataset": dataset, "synthetic": bool(group["synthetic"].any()), "task": task,
                   "title": get_task(task).title, "metric": metric}
            for side, best in (("uni", uni), ("multi", multi)):
                row[f"{side}_run"] = None if best is None else best["run"]
                row[side] = math.nan if best is None else float(best[metric])
                row[f"{side}_parameters"] = math.nan if best is None else float(best["parameters"])
                row[f"{side}_train_time_s"] = math.nan if best is None else float(best["train_time_s"])
            row["delta"] = row["multi"] - row["uni"]
            row["baseline"] = ABAW_BASELINES.get(metric, math.nan) if is_affwild2(dataset) else math.nan
            rows.append(row)
    columns = ["dataset", "synthetic", "task", "title", "metric", "uni_run", "uni", "multi_run", "multi",
               "delta", "baseline", "uni_parameters", "uni_train_time_s", "multi_parameters",
               "multi_train_time_s"]
    return pd.DataFrame(rows, columns=columns)


def cost_comparison(table: pd.DataFrame) -> pd.DataFrame:
    """Per data set: the best uni-task model of each task together (N models) against one shared model.

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
        multi_rows = group[tasks_of.map(lambda t: len(t) > 1 and covered <= set(t))] if covered else group[
            tasks_of.map(lambda t: len(t) > 1)]
        multi = _best_row(multi_rows, MTL_METRIC)
        if not uni_best and multi is None:
            continue
        uni = pd.DataFrame(uni_best.values())
        ips = uni["images_per_second"] if uni_best else pd.Series(dtype=float)
        row = {
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


def verdict(comparison: pd.DataFrame, cost: pd.DataFrame | None = None) -> str:
    """One sentence answering "did multi-task learning help, for which task, at what cost?" for one data set."""
    helped, hurt, same, missing = [], [], [], []
    for row in comparison.itertuples():
        if not (math.isfinite(row.uni) and math.isfinite(row.multi)):
            missing.append(row.title.lower())
            continue
        text = f"{row.title.lower()} ({row.delta:+.3f} {row.metric})"
        (same if abs(row.delta) < NEGLIGIBLE_DELTA else helped if row.delta > 0 else hurt).append(text)
    parts = []
    if helped:
        parts.append("helped " + _join(helped))
    if hurt:
        parts.append("hurt " + _join(hurt))
    if same:
        parts.append("made no real difference to " + _join(same))
    sentence = ("Multi-task learning " + "; ".join(parts) + ".") if parts else \
        "No task has both a uni-task and a multi-task run to compare."
    if missing:
        sentence += f" Not comparable (a run is missing on one side): {_join(missing)}."
    if cost is not None and len(cost) and cost.iloc[0]["multi_run"] is not None and cost.iloc[0]["uni_models"] > 1:
        c = cost.iloc[0]
        sentence += (f" Cost: one shared model with {format_count(c.multi_parameters)} parameters instead of "
                     f"{c.uni_models} with {format_count(c.uni_parameters)} in total, trained in "
                     f"{format_duration(c.multi_train_time_s)} instead of {format_duration(c.uni_train_time_s)}.")
    return sentence


def cost_summary(cost: pd.Series) -> pd.DataFrame:
    """One row of :func:`cost_comparison` as a small display table: what, N uni-task models, one shared model."""
    n = int(cost["uni_models"])

    def num(x: float, spec: str) -> str:
        return format(x, spec) if math.isfinite(x) else "n/a"

    return pd.DataFrame({
        "": ["Models to train and run", "Parameters", "Training time", "Images/s through all tasks",
             "P_MTL (sum of task scores)"],
        f"{n} uni-task": [str(n), format_count(cost["uni_parameters"]), format_duration(cost["uni_train_time_s"]),
                          format_rate(cost["uni_images_per_second"]), num(cost["uni_P_MTL"], ".3f")],
        "1 multi-task": ["1", format_count(cost["multi_parameters"]), format_duration(cost["multi_train_time_s"]),
                         format_rate(cost["multi_images_per_second"]), num(cost["multi_P_MTL"], ".3f")],
    })


def _join(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


# ----------------------------------------------------------------------------- factor effects

def factor_effects(table: pd.DataFrame, metric: str, factors: Sequence[str] = EFFECT_FACTORS) -> pd.DataFrame:
    """Mean ``metric`` per (factor, level, task set) for factors that vary within some task set.

    Long format for small multiples: factor, level, tasks, value, runs (how many runs the mean is over).
    """
    scored = table.dropna(subset=[metric])
    rows = []
    for factor in factors:
        varies = scored.groupby("tasks")[factor].nunique()
        if not (varies > 1).any():
            continue
        for (tasks, level), group in scored.groupby(["tasks", factor], sort=True):
            rows.append({"factor": factor, "level": str(level), "tasks": tasks,
                         "value": float(group[metric].mean()), "runs": int(len(group))})
    return pd.DataFrame(rows, columns=["factor", "level", "tasks", "value", "runs"])


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
        return [(n, _number(v)) for n, v in zip(names, value)]
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
    """Long table (run, epoch, kind, series, value): kind "loss" for train_loss*, "validation" for val_*."""
    rows = []
    for run, record in runs.items():
        for entry in record.history:
            epoch = entry.get("epoch")
            for column, value in entry.items():
                if column.startswith("train_loss"):
                    kind, series = "loss", "total" if column == "train_loss" else column[len("train_loss_"):]
                elif column.startswith("val_"):
                    kind, series = "validation", column[len("val_"):]
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
    "FACTOR_COLUMNS", "EFFECT_FACTORS", "METRIC_COLUMNS", "COST_COLUMNS", "HIGHER_IS_BETTER", "TASK_METRICS",
    "run_id", "index_runs", "dataset_info", "dataset_label", "is_affwild2", "hub_url", "study_table",
    "filter_options", "filter_table", "best_mask", "best_runs", "table_csv", "headline_comparison",
    "cost_comparison", "cost_summary", "verdict", "format_count", "format_duration", "format_rate",
    "factor_effects", "expression_labels", "per_label_f1", "history_long", "confusion_long", "run_metrics",
]
