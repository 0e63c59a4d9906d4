"""The default model (what the demo shows when no model is configured, and what
``publish-space --bundle-model default`` bundles): built once from ``suites/demo.toml``, reused after.

The recipe is a suite file like any other: its ``[suite.data]`` table declares the synthetic
benchmark to generate, its single ``[[runs]]`` entry the training run. :func:`ensure_default_model`
generates the benchmark in a temporary folder next to the destination, trains the suite through
:func:`affectmodel.training.run_suite` (a few minutes on CPU) and moves the finished run folder into
place in one rename, so an interrupted build leaves nothing half-written and a finished one is
reused by every later launch, until ``suites/demo.toml`` changes: a model built from another
recipe (the ``suite.toml`` that travels with it differs) is built again. The result is a normal run
folder, so ``model_info`` reports it as trained on the synthetic benchmark and the demo says so on
its first screen.

It lives in ``$AFFECT_DEFAULT_MODEL_DIR`` (default ``~/.cache/affectmodel/default-model``, under
``$XDG_CACHE_HOME`` when set).
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from ..records import DEFAULT_DIR_ENV, DEFAULT_SUITE, default_model_dir, is_complete, recipe_changed

SUITE_RUN = "default"   # the one [[runs]] entry of the suite
_DATA_KEYS = {"videos", "frames", "size", "seed"}


def read_demo_suite(path: Path = DEFAULT_SUITE) -> dict[str, Any]:
    """The synthetic benchmark of the suite's ``[suite.data]`` table (videos, frames, size, seed)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: the default model's recipe is missing (it ships in the suites/ folder of "
                                "a checkout or a Space); give a model instead (--model, $AFFECT_MODEL)")
    with open(path, "rb") as f:
        data = tomllib.load(f).get("suite", {}).get("data")
    if not isinstance(data, dict) or set(data) != _DATA_KEYS:
        raise ValueError(f"{path}: [suite.data] must set videos, frames, size and seed (the synthetic benchmark)")
    return {k: int(v) for k, v in data.items()}


def needs_build(folder: Path, suite: Path = DEFAULT_SUITE) -> bool:
    """The default model must be (re)built: missing, incomplete, or from an older recipe."""
    return not is_complete(folder) or recipe_changed(folder, suite)


def ensure_default_model(folder: Path | None = None, suite: Path = DEFAULT_SUITE,
                         overrides: dict[str, Any] | None = None, data: dict[str, Any] | None = None) -> Path:
    """The default run folder, trained now if it does not exist yet or was built from an older
    recipe (a complete run of the current recipe is reused)."""
    folder = Path(folder) if folder is not None else default_model_dir()
    if not needs_build(folder, suite):
        return folder
    if is_complete(folder):
        # a model from an older suites/demo.toml would keep answering with the old recipe's flaws
        print(f"The default model in {folder} was built from an older {suite.name}: building it again.", flush=True)
    return build_default_model(folder, suite, overrides, data)


def build_default_model(folder: Path, suite: Path = DEFAULT_SUITE, overrides: dict[str, Any] | None = None,
                        data: dict[str, Any] | None = None) -> Path:
    """Generate the suite's benchmark in a temporary folder, run the suite there, and move the
    finished run to ``folder`` in one rename. ``overrides`` (TrainConfig options) and ``data``
    (benchmark size) shrink it for tests."""
    from ..data.synthetic import generate_benchmark
    from .suite import run_suite

    data = {**read_demo_suite(suite), **(data or {})}
    folder.parent.mkdir(parents=True, exist_ok=True)
    print(f"No model configured: building the default model from {suite.name} in {folder}.\n"
          "It is trained on the synthetic benchmark for a few minutes, once; later launches reuse it.", flush=True)
    with tempfile.TemporaryDirectory(prefix="default-model-", dir=folder.parent) as tmp:
        data_dir, out = Path(tmp) / "data", Path(tmp) / "suite"
        generate_benchmark(data_dir, videos=data["videos"], frames=data["frames"], seed=data["seed"],
                           size=data["size"], progress=sys.stderr.isatty())
        run_suite(suite, data_dir, out, overrides=overrides)
        run_dir = out / SUITE_RUN / "seed-0"  # suites train into <run>/seed-<k>; demo.toml: seed 0
        if not is_complete(run_dir):
            raise RuntimeError(f"training the default model did not produce a complete run in {run_dir}")
        if (out / "suite.toml").is_file():   # the recipe travels with the model
            shutil.copy2(out / "suite.toml", run_dir / "suite.toml")
        if recipe_changed(folder, suite):  # the old recipe's model makes way
            os.replace(folder, Path(tmp) / "replaced")
        try:
            os.replace(run_dir, folder)
        except OSError:  # another process finished first (or an old incomplete folder is in the way)
            if not is_complete(folder):
                shutil.rmtree(folder, ignore_errors=True)
                os.replace(run_dir, folder)
    print(f"Default model ready: {folder}", flush=True)
    return folder


__all__ = ["DEFAULT_DIR_ENV", "DEFAULT_SUITE", "SUITE_RUN", "build_default_model", "default_model_dir",
           "ensure_default_model", "needs_build", "read_demo_suite", "recipe_changed"]
