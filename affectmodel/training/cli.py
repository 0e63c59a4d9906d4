"""Command line of ``train.py``: one run, or ``suite`` for a declared list of runs.

Every option can also come from ``--config FILE`` (TOML/YAML, same names with ``_`` or ``-``);
options given on the command line win over the file.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tomllib
from pathlib import Path
from typing import Any

from ..cli import UserError
from ..model import CheckpointError
from ..records import is_complete
from ..tasks import get_task
from .config import LOSS_ALIASES, ConfigError, TrainConfig, field_kind, load_config

GROUPS = ("run", "losses", "data", "optimisation", "temporal", "hardware")
# Options `train.py suite` takes directly (any other: --set KEY=VALUE): where and how fast runs execute.
SUITE_MACHINE_OPTIONS = ("device", "workers", "threads")


def _task_weights(text: str) -> dict[str, float]:
    try:
        pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
        return {get_task(k.strip()).key: float(v) for k, v in pairs}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected TASK=WEIGHT[,TASK=WEIGHT...], got {text!r}") from None


def _default_text(f: dataclasses.Field, default: Any) -> str:
    if f.metadata.get("default_text"):
        return f.metadata["default_text"]
    if isinstance(default, dict):
        return ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in default.items())
    if isinstance(default, list):
        return ",".join(map(str, default))
    return f"{default:g}" if isinstance(default, float) else str(default)


def _add_field(group: argparse._ActionsContainer, f: dataclasses.Field, default: Any, prefix: str = "",
               shown: str | None = None) -> None:
    """One option from a TrainConfig field: its flag, type, choices and help with the default
    (``shown``: how the default reads, when not the field's)."""
    flag = "--" + f.name.replace("_", "-")
    shown = shown or _default_text(f, default)
    help_text = f"{prefix}{f.metadata['help']} ({shown if shown == 'required' else 'default ' + shown})"
    kind = field_kind(f.name)
    kw: dict[str, Any] = {"default": argparse.SUPPRESS}
    if kind is bool:  # a switch away from the default
        if default:
            group.add_argument(f"--no-{f.name.replace('_', '-')}", dest=f.name, action="store_false",
                               help=f"no {f.metadata['help']}", **kw)
        else:
            group.add_argument(flag, dest=f.name, action="store_true", help=f.metadata["help"], **kw)
        return
    if kind is dict:
        kw["type"] = _task_weights
    elif kind in (int, float):
        kw["type"] = kind
        kw["metavar"] = "N" if kind is int else "X"
    if f.metadata.get("choices"):
        kw["choices"] = f.metadata["choices"]
    if f.metadata.get("metavar"):
        kw["metavar"] = f.metadata["metavar"]
    group.add_argument(flag, dest=f.name, help=help_text, **kw)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Single-run options, one per TrainConfig field (see :func:`affectmodel.training.config.option`).
    Defaults are SUPPRESSed so that only given options override --config."""
    defaults = TrainConfig()
    groups = {name: parser.add_argument_group(name) for name in GROUPS}
    groups["run"].add_argument("--config", default=None, metavar="FILE",
                               help="TOML or YAML file with any of these options")
    for f in dataclasses.fields(TrainConfig):
        if f.metadata.get("cli", True):
            _add_field(groups[f.metadata["group"]], f, getattr(defaults, f.name))
        elif f.name == "losses":  # one option per task: --loss-expr ...
            for alias, task in LOSS_ALIASES.items():
                groups["losses"].add_argument(f"--{alias.replace('_', '-')}", dest=alias, default=argparse.SUPPRESS,
                                              choices=get_task(task).losses,
                                              help=f"{task} loss (default {defaults.losses[task]})")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in vars(args).items() if k not in ("config", "command")}


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0  # under torchrun, only rank 0 reports


def run(args: argparse.Namespace) -> int:
    from .trainer import train_run

    config = load_config(args.config, _overrides(args))
    if not config.data or not config.out:
        raise UserError("--data ROOT and --out DIR are required (on the command line or in --config)")
    complete = bool(config.resume) and is_complete(Path(config.out))  # --resume keeps a complete run as it is
    run_dir = train_run(config)
    if _is_main_process():
        print(f"run record: {run_dir}" + (" (already complete, with these options: nothing to train)"
                                          if complete else ""))
    return 0


def add_suite_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suite", metavar="CONFIG", help="suite file (TOML: [defaults] and [[runs]])")
    parser.add_argument("--data", required=True, metavar="ROOT",
                        help="data folder of the runs (a run's own relative `data` is resolved inside it)")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="suite folder: runs go to DIR/<run name>/seed-<k>")
    parser.add_argument("--only", default=None, metavar="NAME[,NAME...]",
                        help="train only these configurations (all their seeds) or NAME/seed-K runs")
    parser.add_argument("--seeds", default=None, metavar="K[,K...]",
                        help="train every configuration with these seeds instead of the suite's")
    parser.add_argument("--list", action="store_true", help="print the resolved runs and exit")
    defaults = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        if f.name in SUITE_MACHINE_OPTIONS:
            _add_field(parser, f, getattr(defaults, f.name), prefix="every run: ", shown="the suite's")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="override an option of every run (repeatable), e.g. --set epochs=1")
    parser.add_argument("--devices", default=None, metavar="cuda:0,cuda:1,...",
                        help="train independent runs at the same time, one per GPU (one big run on several "
                             "GPUs: torchrun)")
    parser.add_argument("--jobs", type=int, default=None, metavar="N",
                        help="train N independent runs at the same time on CPU (threads shared out)")


def _parse_setting(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise UserError(f"--set expects KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:  # TOML value syntax: 3, 0.5, true, "text", ["expr", "au"]
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    return key.strip(), parsed


def run_suite_command(args: argparse.Namespace) -> int:
    from .suite import load_suite, run_suite, suite_table

    overrides: dict[str, Any] = dict(_parse_setting(s) for s in args.settings)
    for key in SUITE_MACHINE_OPTIONS:
        if hasattr(args, key):  # given (the defaults are SUPPRESSed)
            overrides[key] = getattr(args, key)
    if args.seeds:
        try:
            overrides["seeds"] = [int(k) for k in args.seeds.split(",") if k.strip()]
        except ValueError:
            raise UserError(f"--seeds expects K[,K...], got {args.seeds!r}") from None
    only = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
    if args.list:
        for run in load_suite(args.suite, args.data, args.out, overrides):
            c = run.config
            budget = f"steps={c.steps}" if c.steps is not None else f"epochs={c.epochs}"
            print(f"{run.folder}: tasks={','.join(c.tasks)} init={run.init_from_run or c.init} augment={c.augment} "
                  f"losses={','.join(f'{t}={c.losses[t]}' for t in c.tasks)} weighting={c.weighting} "
                  f"{budget} limit_train={c.limit_train} image_size={c.image_size}"
                  + (f" data={c.data}" if c.data != str(args.data) else ""))
        return 0
    from .jobs import job_slots

    slots = job_slots(args.devices, args.jobs)
    if len(slots) > 1 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserError("--devices/--jobs start their own processes: run the suite without torchrun")
    main_process = _is_main_process()
    results = run_suite(args.suite, args.data, args.out, overrides, only=only,
                        log=print if main_process else (lambda _: None), slots=slots)
    if main_process:
        trained = sum(r["status"] == "trained" for r in results)
        skipped = sum(r["status"] == "skipped" for r in results)
        unfinished = [r for r in results if r["status"] in ("failed", "diverged", "busy", "blocked")]
        print(f"suite done: {trained} trained, {skipped} already complete"
              + (f", {len(unfinished)} not finished ("
                 + ", ".join(f"{os.path.relpath(r['path'], args.out)}: {r['status']}" for r in unfinished) + ")"
                 if unfinished else ""))
        print(suite_table(args.out))
        if unfinished:
            return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "suite":
        parser = argparse.ArgumentParser(prog="train.py suite", description="Run a study suite; complete runs "
                                         "are skipped, interrupted ones resume.")
        add_suite_arguments(parser)
        args, command = parser.parse_args(argv[1:]), run_suite_command
    else:
        parser = argparse.ArgumentParser(prog="train.py", description="Train a uni- or multi-task affect model and "
                                         "write its run record. `train.py suite --help` for study suites.")
        add_arguments(parser)
        args, command = parser.parse_args(argv), run
    from . import distributed

    try:
        return command(args)
    except (UserError, ConfigError, CheckpointError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk (DiskFullError), a run folder locked by another process...
        from ..cli import os_error_message

        print(f"error: {os_error_message(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: continue with --resume (suites resume by themselves)", file=sys.stderr)
        return 130
    finally:
        distributed.cleanup()
