"""Study suites: a TOML file declares a list of runs; complete runs are skipped.

Format::

    [suite]
    name = "quick"                 # optional
    description = "..."            # optional

    [defaults]                     # any TrainConfig option
    image_size = 64
    epochs = 3

    [[runs]]
    name = "uni-expr"
    tasks = ["expr"]

    [[runs]]
    name = "multi-from-expr"
    tasks = ["expr", "au", "va"]
    init = "uni-expr"              # the backbone of an earlier run of this suite

Each run trains into ``<out>/<name>`` with ``resume`` on, so an interrupted suite continues where
it stopped.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..io import write_text_atomic
from ..records import is_complete, read_runs, run_factors
from .config import ConfigError, TrainConfig, config_from_mapping, normalise_keys, read_config_file

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# Options the suite itself sets for every run.
_SUITE_OWNED = ("data", "out", "resume")


@dataclass(frozen=True)
class SuiteRun:
    name: str
    config: TrainConfig
    init_from_run: str | None = None     # name of the suite run whose backbone initialises this one


def load_suite(path: str | Path, data: str | Path, out: str | Path,
               overrides: Mapping[str, Any] | None = None) -> list[SuiteRun]:
    """Resolve every run of the suite file at ``path``; ``overrides`` (e.g. device, workers) win."""
    path = Path(path)
    raw = read_config_file(path)
    unknown = set(raw) - {"suite", "defaults", "runs"}
    if unknown:
        raise ConfigError(f"{path}: unknown top-level table(s) {sorted(unknown)}; "
                          "expected [suite], [defaults] and [[runs]]")
    defaults = raw.get("defaults", {})
    runs = raw.get("runs")
    if not isinstance(defaults, dict):
        raise ConfigError(f"{path}: [defaults] must be a table")
    if not isinstance(runs, list) or not runs:
        raise ConfigError(f"{path}: declare at least one [[runs]] entry with a name")
    defaults = normalise_keys(defaults, where=f"{path} [defaults]")
    cli = normalise_keys(overrides or {}, where="command line")
    out = Path(out)
    resolved: list[SuiteRun] = []
    names: list[str] = []
    for i, entry in enumerate(runs, start=1):
        where = f"{path} run #{i}"
        if not isinstance(entry, dict) or "name" not in entry:
            raise ConfigError(f"{where}: every [[runs]] entry needs a name")
        entry = dict(entry)
        name = str(entry.pop("name"))
        where = f"{path} run {name!r}"
        if not _NAME.match(name):
            raise ConfigError(f"{where}: a run name may hold letters, digits, '.', '_' and '-' only")
        if name in ("random", "imagenet"):
            raise ConfigError(f"{where}: {name!r} is an init choice; give the run another name")
        if name in names:
            raise ConfigError(f"{where}: the name is used twice")
        entry.pop("description", None)
        values = _merge(defaults, normalise_keys(entry, where=where))
        values = _merge(values, cli)
        for key in _SUITE_OWNED:
            if key in entry or key in defaults:
                raise ConfigError(f"{where}: {key!r} is set by the suite command, not in the file")
        init_from_run = None
        init = str(values.get("init", "random"))
        if init in names:
            init_from_run = init
            values["init"] = str(out / init)
        elif init in {str(r.get("name")) for r in runs if isinstance(r, dict)}:
            raise ConfigError(f"{where}: init run {init!r} must be declared before this run")
        values.update(data=str(data), out=str(out / name), resume=True)
        resolved.append(SuiteRun(name, config_from_mapping(values, where=where), init_from_run))
        names.append(name)
    return resolved


def _merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if key in ("losses", "task_weights") and key in merged:
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def run_suite(path: str | Path, data: str | Path, out: str | Path, overrides: Mapping[str, Any] | None = None,
              only: Sequence[str] | None = None,
              train: Callable[[TrainConfig], Path] | None = None,
              log: Callable[[str], None] = print, slots: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Train every run not yet complete, in order; returns one status dict per run.

    ``train`` defaults to :func:`affectmodel.training.trainer.train_run` (injectable for tests).
    ``slots``: the devices of concurrent jobs (:func:`affectmodel.training.jobs.job_slots`); with
    more than one, independent runs train at the same time (:mod:`affectmodel.training.jobs`).
    """
    if train is None:
        from .trainer import train_run as train
    runs = load_suite(path, data, out, overrides)
    if only:
        unknown = sorted(set(only) - {r.name for r in runs})
        if unknown:
            raise ConfigError(f"--only names unknown run(s): {', '.join(unknown)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if Path(path).resolve() != (out / "suite.toml").resolve() and Path(path).suffix == ".toml":
        # What produced these runs, next to them (atomic: every torchrun process writes it).
        write_text_atomic(out / "suite.toml", Path(path).read_text(encoding="utf-8"))
    if slots is not None and len(slots) > 1:
        return _run_concurrently(runs, out, only, slots, log)
    results = []
    for i, run in enumerate(runs, start=1):
        run_dir = out / run.name
        status = {"name": run.name, "path": str(run_dir)}
        if only and run.name not in only:
            results.append({**status, "status": "not selected"})
            continue
        if is_complete(run_dir):
            log(f"[{i}/{len(runs)}] {run.name}: complete, skipped")
            results.append({**status, "status": "skipped"})
            continue
        if run.init_from_run and not is_complete(out / run.init_from_run):
            raise ConfigError(f"run {run.name!r} starts from run {run.init_from_run!r}, which is not complete "
                              f"in {out}: run it first")
        log(f"[{i}/{len(runs)}] {run.name}: training ({'+'.join(run.config.tasks)})")
        start = time.perf_counter()
        train(run.config)
        results.append({**status, "status": "trained", "seconds": round(time.perf_counter() - start, 1)})
    return results


def _run_concurrently(runs: Sequence[SuiteRun], out: Path, only: Sequence[str] | None, slots: Sequence[str],
                      log: Callable[[str], None]) -> list[dict[str, Any]]:
    from .jobs import run_jobs

    statuses: dict[str, dict[str, Any]] = {}
    to_train = []
    for i, run in enumerate(runs, start=1):
        status = {"name": run.name, "path": str(out / run.name)}
        if only and run.name not in only:
            statuses[run.name] = {**status, "status": "not selected"}
        elif is_complete(out / run.name):
            log(f"[{i}/{len(runs)}] {run.name}: complete, skipped")
            statuses[run.name] = {**status, "status": "skipped"}
        else:
            to_train.append(run)
    for status in run_jobs(to_train, out, slots, log=log):
        statuses[status["name"]] = status
    return [statuses[r.name] for r in runs]


def suite_table(out: str | Path) -> str:
    """A Markdown table of the complete runs under ``out`` (validation scores of each best epoch)."""
    records, errors = read_runs(out)
    if not records:
        return "no complete runs in " + str(out)
    metric_cols = ("P_EXPR", "P_AU", "P_VA", "P_MTL")
    head = ["run", "setting", "tasks", "init", "pretraining", "augmentation", "losses", *metric_cols, "img/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for rec in sorted(records, key=lambda r: r.name):
        f = run_factors(rec.config)
        cells = [rec.name, f["setting"], f["tasks"], f["init"], f["pretraining"], f["augmentation"], f["losses"]]
        cells += [f"{rec.metrics[m]:.3f}" if isinstance(rec.metrics.get(m), (int, float)) else "-" for m in metric_cols]
        ips = rec.metrics.get("images_per_second")
        cells.append(f"{ips:.0f}" if isinstance(ips, (int, float)) else "-")
        lines.append("| " + " | ".join(cells) + " |")
    synthetic = any(r.synthetic for r in records)
    note = ("\nSynthetic-benchmark figures (validation split of the generated benchmark), not Aff-Wild2 results."
            if synthetic else "")
    errs = "".join(f"\nunreadable: {e}" for e in errors)
    return "\n".join(lines) + note + errs
