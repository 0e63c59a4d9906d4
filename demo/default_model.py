"""Which model the demo shows: ``--model``, else ``$AFFECT_MODEL``, else the default model.

The default model (built once from ``suites/demo.toml`` on the synthetic benchmark, reused after)
is the library's: :mod:`affectmodel.training.default_model`. This module only chooses between the
sources and says how it chose, for the launch line and the page.

    python -m demo.default_model            # build the default model if missing, print where it is
    python -m demo.default_model --rebuild  # delete it and build it again
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from affectmodel.training.default_model import DEFAULT_DIR_ENV, default_model_dir, ensure_default_model, needs_build

MODEL_ENV = "AFFECT_MODEL"


@dataclass(frozen=True)
class ModelChoice:
    """Which model the demo shows, and how it was chosen (for the launch line and the page)."""

    source: str          # model folder, run folder or Hub id
    origin: str          # "argument" (--model), "environment" ($AFFECT_MODEL) or "default"
    built: bool = False  # the default model was trained by this launch (else reused)

    def describe(self) -> str:
        if self.origin == "default":
            how = "built now" if self.built else "reused"
            return (f"the default demo model (synthetic benchmark, {how}) in {self.source}; "
                    f"delete that folder or run `python -m demo.default_model --rebuild` to rebuild it")
        where = "--model" if self.origin == "argument" else f"${MODEL_ENV}"
        return f"{self.source} (from {where})"


def choose_model(source: str | None = None) -> ModelChoice:
    """``source``, else ``$AFFECT_MODEL``, else the default model folder (built if missing)."""
    if source:
        return ModelChoice(str(source), "argument")
    if os.environ.get(MODEL_ENV):
        return ModelChoice(os.environ[MODEL_ENV], "environment")
    folder = default_model_dir()
    built = needs_build(folder)
    return ModelChoice(str(ensure_default_model(folder)), "default", built)


def resolve_model_source(source: str | None = None) -> str:
    """The source string of :func:`choose_model`."""
    return choose_model(source).source


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.default_model",
                                     description="Build (or show) the demo's default model.")
    parser.add_argument("--rebuild", action="store_true", help="delete the default model and build it again")
    parser.add_argument("--dir", default=None, help=f"where it lives (default: ${DEFAULT_DIR_ENV} or "
                                                    "~/.cache/affectmodel/default-model)")
    args = parser.parse_args(argv)
    folder = Path(args.dir).expanduser() if args.dir else default_model_dir()
    if args.rebuild and folder.exists():
        shutil.rmtree(folder)
    built = needs_build(folder)
    ensure_default_model(folder)
    print(f"{'built' if built else 'reused'}: {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
