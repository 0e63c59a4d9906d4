"""Command line of ``train.py``: one run, or ``suite`` for a declared list of runs.

Every option can also come from ``--config FILE`` (TOML/YAML, same names with ``_`` or ``-``);
options given on the command line win over the file.
"""
from __future__ import annotations

import argparse
import os
import sys
import tomllib
from typing import Any

from ..cli import UserError
from ..model import CheckpointError
from ..tasks import get_task
from .config import (AUGMENT_PRESETS, DEVICES, OPTIMIZERS, SCHEDULES, ConfigError, TrainConfig, load_config)

_D = TrainConfig()


def _task_weights(text: str) -> dict[str, float]:
    try:
        pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
        return {get_task(k.strip()).key: float(v) for k, v in pairs}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected TASK=WEIGHT[,TASK=WEIGHT...], got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Single-run options. Defaults are SUPPRESSed so that only given options override --config."""
    S = argparse.SUPPRESS
    g = parser.add_argument_group("run")
    g.add_argument("--config", default=None, metavar="FILE", help="TOML or YAML file with any of these options")
    g.add_argument("--data", default=S, metavar="ROOT", help="Aff-Wild2 or synthetic benchmark folder")
    g.add_argument("--out", default=S, metavar="DIR", help="run folder, e.g. runs/SUITE/NAME")
    g.add_argument("--tasks", default=S, help=f"comma-separated subset of expr,au,va; one task = uni-task "
                                              f"(default {','.join(_D.tasks)})")
    g.add_argument("--init", default=S, metavar="random|imagenet|PATH",
                   help="trunk initialisation: random, ImageNet, a weights file, a model folder or an earlier "
                        "run folder (its backbone) (default random)")
    g.add_argument("--expression-space", default=S, help="expression label space (default abaw8)")
    g.add_argument("--data-source", default=S, help="annotation source for the data reader (default auto)")
    g.add_argument("--resume", action="store_true", default=S, help="continue from the run folder's last checkpoint")
    g = parser.add_argument_group("losses")
    g.add_argument("--loss-expr", default=S, choices=get_task("expr").losses, help="(default ce)")
    g.add_argument("--loss-au", default=S, choices=get_task("au").losses, help="(default bce)")
    g.add_argument("--loss-va", default=S, choices=get_task("va").losses, help="(default ccc)")
    g.add_argument("--weighting", default=S, choices=("fixed", "uncertainty"), help="task weighting (default fixed)")
    g.add_argument("--task-weights", default=S, type=_task_weights, metavar="expr=1,au=1,va=1",
                   help="fixed task weights")
    g.add_argument("--label-smoothing", default=S, type=float, help="expression label smoothing (default 0)")
    g.add_argument("--focal-gamma", default=S, type=float, help="focal loss gamma (default 2)")
    g = parser.add_argument_group("data")
    g.add_argument("--augment", default=S, choices=AUGMENT_PRESETS, help=f"(default {_D.augment})")
    g.add_argument("--image-size", default=S, type=int, help=f"input size in pixels (default {_D.image_size})")
    g.add_argument("--batch-size", default=S, type=int,
                   help=f"total batch size over all processes (default {_D.batch_size})")
    g.add_argument("--workers", default=S, type=int, help="data loader processes per training process (default 0)")
    g.add_argument("--limit-train", default=S, type=int, metavar="N", help="train on a seeded random subset of N images")
    g.add_argument("--limit-val", default=S, type=int, metavar="N", help="validate on a seeded random subset of N images")
    g = parser.add_argument_group("optimisation")
    g.add_argument("--epochs", default=S, type=int, help=f"(default {_D.epochs})")
    g.add_argument("--max-steps", default=S, type=int, help="stop after this many optimizer steps")
    g.add_argument("--lr", default=S, type=float, help=f"peak learning rate (default {_D.lr})")
    g.add_argument("--schedule", default=S, choices=SCHEDULES, help=f"per-step LR schedule (default {_D.schedule})")
    g.add_argument("--step-epochs", default=S, type=int, help="step schedule: decay every N epochs (default 3)")
    g.add_argument("--step-gamma", default=S, type=float, help="step schedule: decay factor (default 0.1)")
    g.add_argument("--optimizer", default=S, choices=OPTIMIZERS, help=f"(default {_D.optimizer})")
    g.add_argument("--momentum", default=S, type=float, help="SGD momentum (default 0.9)")
    g.add_argument("--weight-decay", default=S, type=float, help=f"(default {_D.weight_decay})")
    g.add_argument("--dropout", default=S, type=float, help="dropout before the heads (default 0)")
    g.add_argument("--seed", default=S, type=int, help="seed of initialisation, data order and augmentation (default 0)")
    g = parser.add_argument_group("hardware")
    g.add_argument("--device", default=S, choices=DEVICES,
                   help="auto: CUDA when available, with mixed precision and channels_last (default auto)")
    g.add_argument("--threads", default=S, type=int,
                   help="CPU threads for torch (default: torch's choice; 1 is faster on a busy machine)")
    g.add_argument("--no-amp", dest="amp", action="store_false", default=S, help="no mixed precision on CUDA")
    g.add_argument("--checkpoint-every", default=S, type=int, metavar="N",
                   help="also checkpoint every N steps (default: once per epoch)")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in vars(args).items() if k not in ("config", "command")}


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0  # under torchrun, only rank 0 reports


def run(args: argparse.Namespace) -> int:
    from .loop import train_run

    config = load_config(args.config, _overrides(args))
    if not config.data or not config.out:
        raise UserError("--data ROOT and --out DIR are required (on the command line or in --config)")
    run_dir = train_run(config)
    if _is_main_process():
        print(f"run record: {run_dir}")
    return 0


def add_suite_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suite", metavar="CONFIG", help="suite file (TOML: [defaults] and [[runs]])")
    parser.add_argument("--data", required=True, metavar="ROOT", help="data folder for every run")
    parser.add_argument("--out", required=True, metavar="DIR", help="suite folder: runs go to DIR/<run name>")
    parser.add_argument("--only", default=None, metavar="NAME[,NAME...]", help="train only these runs")
    parser.add_argument("--list", action="store_true", help="print the resolved runs and exit")
    parser.add_argument("--device", default=None, choices=DEVICES, help="override every run's device")
    parser.add_argument("--workers", default=None, type=int, help="override every run's loader workers")
    parser.add_argument("--threads", default=None, type=int, help="override every run's CPU thread count")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="override an option of every run (repeatable), e.g. --set epochs=1")


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
    if args.device:
        overrides["device"] = args.device
    for key in ("workers", "threads"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    only = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
    if args.list:
        for run in load_suite(args.suite, args.data, args.out, overrides):
            c = run.config
            print(f"{run.name}: tasks={','.join(c.tasks)} init={c.init} augment={c.augment} "
                  f"losses={','.join(f'{t}={c.losses[t]}' for t in c.tasks)} weighting={c.weighting} "
                  f"epochs={c.epochs} image_size={c.image_size}")
        return 0
    main_process = _is_main_process()
    results = run_suite(args.suite, args.data, args.out, overrides, only=only,
                        log=print if main_process else (lambda _: None))
    if main_process:
        trained = sum(r["status"] == "trained" for r in results)
        skipped = sum(r["status"] == "skipped" for r in results)
        print(f"suite done: {trained} trained, {skipped} already complete")
        print(suite_table(args.out))
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
    except KeyboardInterrupt:
        print("interrupted: continue with --resume (suites resume by themselves)", file=sys.stderr)
        return 130
    finally:
        distributed.cleanup()
