"""Study suites: a TOML file declares configurations, each trained with several seeds; complete
runs are skipped.

Format::

    [suite]
    name = "quick"                 # optional (default: the file name)
    description = "..."            # optional
    seeds = [0, 1, 2]              # every configuration runs once per seed (also in [defaults])

    [defaults]                     # any TrainConfig option
    image_size = 64
    steps = 300                    # one budget for every run of a comparison

    [[runs]]
    name = "uni-expr"
    tasks = ["expr"]

    [[runs]]
    name = "multi-from-expr"
    tasks = ["expr", "au", "va"]
    init = "uni-expr"              # the run of that (earlier) configuration with the same seed
    seeds = [0]                    # a run may declare its own seeds

    [[runs]]
    name = "pretrain-expr"
    tasks = ["expr"]
    data = "../expression-folders" # its own data: relative to the suite's --data, or absolute

Each (configuration, seed) trains into ``<out>/<name>/seed-<k>`` with ``resume`` on, so an
interrupted suite continues where it stopped; its ``config.json`` records ``suite``, ``run``
(the configuration name), ``seed`` and ``config_id``. Without ``seeds`` anywhere, a configuration
runs once with its ``seed`` option (default 0).
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..io import write_text_atomic
from ..records import is_complete, read_divergence, read_runs, run_factors
from .config import (
    ConfigError,
    TrainConfig,
    config_differences,
    config_from_mapping,
    normalise_keys,
    read_config_file,
    saved_value,
)
from .divergence import TrainingDiverged

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# Options the suite itself sets for every run.
_SUITE_OWNED = ("out", "resume", "suite", "run")
_SUITE_KEYS = ("name", "description", "seeds", "data")  # [suite.data]: read by training/default_model.py


@dataclass(frozen=True)
class SuiteRun:
    name: str                            # the configuration's name
    config: TrainConfig
    init_from_run: str | None = None     # configuration whose run with the same seed initialises this one
    seed: int = 0

    @property
    def folder(self) -> str:
        """The run folder relative to the suite folder."""
        return run_folder(self.name, self.seed)


def run_folder(name: str, seed: int) -> str:
    return f"{name}/seed-{seed}"


def _seeds(value: Any, where: str) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if (not isinstance(value, list) or not value
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)):
        raise ConfigError(f"{where}: seeds must be a non-empty list of non-negative integers, got {value!r}")
    if len(set(value)) != len(value):
        raise ConfigError(f"{where}: seeds {value!r} repeat a seed")
    return list(value)


def load_suite(path: str | Path, data: str | Path, out: str | Path,
               overrides: Mapping[str, Any] | None = None) -> list[SuiteRun]:
    """Resolve every (configuration, seed) run of the suite file at ``path``, in declaration
    order (a configuration's seeds together); ``overrides`` (e.g. device, workers; ``seeds``
    replaces every configuration's seeds) win."""
    path = Path(path)
    raw = read_config_file(path)
    unknown = set(raw) - {"suite", "defaults", "runs"}
    if unknown:
        raise ConfigError(f"{path}: unknown top-level table(s) {sorted(unknown)}; "
                          "expected [suite], [defaults] and [[runs]]")
    header = raw.get("suite", {})
    defaults = dict(raw.get("defaults", {}) or {})
    runs = raw.get("runs")
    if not isinstance(header, dict):
        raise ConfigError(f"{path}: [suite] must be a table")
    bad = sorted(set(header) - set(_SUITE_KEYS))
    if bad:
        raise ConfigError(f"{path} [suite]: unknown key(s) {bad}; expected {', '.join(_SUITE_KEYS)}")
    if not isinstance(defaults, dict):
        raise ConfigError(f"{path}: [defaults] must be a table")
    if not isinstance(runs, list) or not runs:
        raise ConfigError(f"{path}: declare at least one [[runs]] entry with a name")
    suite_name = str(header.get("name") or path.stem)
    suite_seeds = None
    if "seeds" in header and "seeds" in defaults:
        raise ConfigError(f"{path}: seeds is set in both [suite] and [defaults]; keep one")
    if "seeds" in header or "seeds" in defaults:
        where = f"{path} [suite]" if "seeds" in header else f"{path} [defaults]"
        suite_seeds = _seeds(header.get("seeds", defaults.pop("seeds", None)), where)
    for key in (*_SUITE_OWNED, "data"):
        if key in defaults:
            raise ConfigError(f"{path} [defaults]: {key!r} is set by the suite command, not in [defaults]"
                              + (" (a run may set its own data)" if key == "data" else ""))
    cli = dict(overrides or {})
    cli_seeds = _seeds(cli.pop("seeds"), "--seeds") if "seeds" in cli else None
    defaults = normalise_keys(defaults, where=f"{path} [defaults]")
    cli = normalise_keys(cli, where="command line")
    out = Path(out)
    resolved: list[SuiteRun] = []
    seeds_of: dict[str, list[int]] = {}
    declared = {str(r.get("name")) for r in runs if isinstance(r, dict)}
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
        if name in seeds_of:
            raise ConfigError(f"{where}: the name is used twice")
        entry.pop("description", None)
        for key in _SUITE_OWNED:
            if key in entry:
                raise ConfigError(f"{where}: {key!r} is set by the suite command, not in the file")
        run_seeds = _seeds(entry.pop("seeds"), where) if "seeds" in entry else suite_seeds
        run_seeds = cli_seeds or run_seeds
        run_data = entry.pop("data", None)
        values = _merge(defaults, normalise_keys(entry, where=where))
        values = _merge(values, cli)
        if run_seeds is not None and ("seed" in entry or "seed" in defaults or "seed" in cli):
            raise ConfigError(f"{where}: both seed and seeds are set; a suite run's seed comes from seeds")
        if run_seeds is None:
            run_seeds = [int(values.get("seed", 0))]
        init_from_run = None
        init = str(values.get("init", "random"))
        if init in seeds_of:
            init_from_run = init
            missing = [k for k in run_seeds if k not in seeds_of[init]]
            if missing:
                raise ConfigError(f"{where}: starts from {init!r}, which has no run with seed(s) "
                                  f"{', '.join(map(str, missing))}")
        elif init in declared:
            raise ConfigError(f"{where}: init run {init!r} must be declared before this run")
        run_root = Path(data)
        if run_data is not None:
            run_root = Path(str(run_data)) if Path(str(run_data)).is_absolute() else Path(data) / str(run_data)
        for seed in run_seeds:
            seeded = dict(values, seed=seed, data=str(run_root), out=str(out / run_folder(name, seed)),
                          resume=True, suite=suite_name, run=name)
            if init_from_run:
                seeded["init"] = str(out / run_folder(init_from_run, seed))
            resolved.append(SuiteRun(name, config_from_mapping(seeded, where=where), init_from_run, seed))
        seeds_of[name] = run_seeds
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
    """Train every run not yet complete, in order; returns one status dict per run ("trained",
    "skipped", "not selected", "diverged": a non-finite loss or weights stopped it, the other runs
    go on; "blocked": it starts from a run that diverged).

    ``train`` defaults to :func:`affectmodel.training.trainer.train_run` (injectable for tests).
    ``slots``: the devices of concurrent jobs (:func:`affectmodel.training.jobs.job_slots`); with
    more than one, independent runs train at the same time (:mod:`affectmodel.training.jobs`).
    """
    if train is None:
        from .trainer import train_run

        train = train_run
    runs = load_suite(path, data, out, overrides)
    if only:
        unknown = sorted(set(only) - {r.name for r in runs} - {r.folder for r in runs})
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
        run_dir = out / run.folder
        status = {"name": run.name, "seed": run.seed, "path": str(run_dir)}
        if only and run.name not in only and run.folder not in only:
            results.append({**status, "status": "not selected"})
            continue
        if is_complete(run_dir):
            log(f"[{i}/{len(runs)}] {run.folder}: complete, skipped{_other_options(run, run_dir)}")
            results.append({**status, "status": "skipped"})
            continue
        diverged = read_divergence(run_dir)
        if diverged is not None:  # an earlier session's result; resuming it would diverge again
            log(f"[{i}/{len(runs)}] {run.folder}: {diverged.get('message') or 'diverged'} "
                "(earlier; delete the folder to train it again)")
            results.append({**status, "status": "diverged", "error": str(diverged.get("message") or "diverged")})
            continue
        init_folder = run_folder(run.init_from_run, run.seed) if run.init_from_run else None
        if init_folder and read_divergence(out / init_folder) is not None:
            log(f"[{i}/{len(runs)}] {run.folder}: blocked: starts from {init_folder}, which diverged")
            results.append({**status, "status": "blocked", "error": f"starts from {init_folder}, which diverged"})
            continue
        if init_folder and not is_complete(out / init_folder):
            raise ConfigError(f"run {run.folder!r} starts from run {init_folder!r}, which is not complete "
                              f"in {out}: run it first")
        log(f"[{i}/{len(runs)}] {run.folder}: training ({'+'.join(run.config.tasks)})")
        start = time.perf_counter()
        try:
            train(run.config)
        except TrainingDiverged as e:  # a result about this configuration: the others still train
            log(f"[{i}/{len(runs)}] {run.folder}: {e}")
            results.append({**status, "status": "diverged", "error": str(e)})
            continue
        seconds = round(time.perf_counter() - start, 1)
        log(f"[{i}/{len(runs)}] {run.folder}: done in {seconds:.0f} s")
        results.append({**status, "status": "trained", "seconds": seconds})
    return results


def _other_options(run: SuiteRun, run_dir: Path) -> str:
    """A note for a complete run that the suite now describes with other options (an edited suite
    file): it is kept as it is, so its figures are not those of the options asked for."""
    from .records_writer import read_config

    try:
        saved = read_config(run_dir)
    except ValueError:
        return ""
    changed = config_differences(saved, run.config)
    if not changed:
        return ""
    now = run.config.to_dict()
    return (" (WARNING: trained with other options than the suite now gives: "
            + ", ".join(f"{k} {saved_value(saved, k)!r} -> {now[k]!r}" for k in changed)
            + "; delete the run folder to train it again)")


def _run_concurrently(runs: Sequence[SuiteRun], out: Path, only: Sequence[str] | None, slots: Sequence[str],
                      log: Callable[[str], None]) -> list[dict[str, Any]]:
    from .jobs import run_jobs

    statuses: dict[str, dict[str, Any]] = {}
    to_train = []
    for i, run in enumerate(runs, start=1):
        status = {"name": run.name, "seed": run.seed, "path": str(out / run.folder)}
        if only and run.name not in only and run.folder not in only:
            statuses[run.folder] = {**status, "status": "not selected"}
        elif is_complete(out / run.folder):
            log(f"[{i}/{len(runs)}] {run.folder}: complete, skipped{_other_options(run, out / run.folder)}")
            statuses[run.folder] = {**status, "status": "skipped"}
        else:
            to_train.append(run)
    for run, status in zip(to_train, run_jobs(to_train, out, slots, log=log), strict=True):
        statuses[run.folder] = {**status, "name": run.name, "seed": run.seed}
    return [statuses[r.folder] for r in runs]


def suite_table(out: str | Path) -> str:
    """A Markdown table of the complete runs under ``out``, one row per (configuration, seed):
    validation scores of the selected weights and the step budget (with that of an init run)."""
    records, errors = read_runs(out)
    if not records:
        return "no complete runs in " + str(out)
    metric_cols = ("P_EXPR", "P_AU", "P_VA", "P_MTL")
    head = ["run", "seed", "setting", "tasks", "init", "pretraining", "augmentation", "losses", *metric_cols,
            "steps", "img/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    name = lambda r: str(r.config.get("run") or r.name)  # noqa: E731 - configuration name, not seed-<k>
    for rec in sorted(records, key=lambda r: (name(r), str(r.config.get("seed", "")))):
        f = run_factors(rec.config)
        cells = [name(rec), str(rec.config.get("seed", "-")), f["setting"], f["tasks"], f["init"], f["pretraining"],
                 f["augmentation"], f["losses"]]
        cells += [f"{rec.metrics[m]:.3f}" if isinstance(rec.metrics.get(m), (int, float)) else "-" for m in metric_cols]
        cells.append(str(rec.metrics.get("budget_steps", rec.metrics.get("steps", "-"))))
        ips = rec.metrics.get("images_per_second")
        cells.append(f"{ips:.0f}" if isinstance(ips, (int, float)) else "-")
        lines.append("| " + " | ".join(cells) + " |")
    synthetic = any(r.synthetic for r in records)
    note = ("\nSynthetic-benchmark figures (validation split of the generated benchmark), not Aff-Wild2 results."
            if synthetic else "")
    errs = "".join(f"\nunreadable: {e}" for e in errors)
    return "\n".join(lines) + note + errs
