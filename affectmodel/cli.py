"""``python -m affectmodel COMMAND``: one table of commands, each implemented in its own module.

A command module defines ``add_arguments(parser)`` and ``run(args) -> int``; modules are
imported only when their command runs, so ``--help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from .runtime import configure_openmp

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "score": ("affectmodel.scoring", "score a prediction file against Aff-Wild2 annotations (ABAW metrics)"),
    "data-info": ("affectmodel.data.info", "check an Aff-Wild2 installation and count its labels"),
    "synth": ("affectmodel.data.synthetic", "generate the synthetic benchmark (Aff-Wild2 layout or class folders)"),
    "cache": ("affectmodel.cache_cli", "decode every frame once into a memory-mapped frame cache for fast training"),
    "predict": ("affectmodel.inference.cli", "predict on images, folders and videos"),
    "export": ("affectmodel.inference.export", "export a model to ONNX (fp32, int8) for fast CPU inference, checked "
                                               "against PyTorch"),
    "publish": ("affectmodel.hub.publish", "publish a training run to the Hugging Face Hub"),
    "publish-space": ("affectmodel.hub.space", "publish the Gradio demo as a Hugging Face Space"),
    "study": ("affectmodel.study", "matched uni- vs multi-task comparisons: means, intervals, seeds, verdicts"),
}


class UserError(Exception):
    """An error caused by the user's input: printed as one line, exit status 2, no traceback."""


def os_error_message(error: OSError) -> str:
    """``<path>: <reason>``; for a failed rename, the destination (the path the user named)."""
    path = error.filename2 or error.filename
    return f"{path}: {error.strerror}" if path and error.strerror else str(error)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m affectmodel",
                                     description="Facial affect analysis: expressions, action units, valence/arousal.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    configure_openmp()  # before a command imports torch (affectmodel/runtime.py says why)
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv:
        parser.print_help(sys.stderr)
        return 2
    if argv[0] not in COMMANDS:
        parser.parse_args(argv)  # prints help (exit 0) or "invalid choice" (exit 2)
        return 2
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(COMMANDS[name][0])
    cmd_parser = argparse.ArgumentParser(prog=f"python -m affectmodel {name}", description=COMMANDS[name][1])
    module.add_arguments(cmd_parser)
    args = cmd_parser.parse_args(rest)
    try:
        return int(module.run(args) or 0)
    except (UserError, FileNotFoundError, ValueError) as e:
        # Known input problems: one readable line, no traceback.
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        # The file system refused (a folder where a file should go, a path under a file, no
        # permission, disk full): something the user can fix, so one line as well.
        print(f"error: {os_error_message(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
