"""The demo's model when none is configured: built once from ``suites/demo.toml``, reused after.

``choose_model(None)`` returns ``$AFFECT_MODEL`` when set, else the default run folder, building it
on first use: the synthetic benchmark declared in the suite's ``[suite.data]`` table is generated in
a temporary folder and the suite's single run is trained through the library's suite API
(:func:`affectmodel.training.run_suite`), a few minutes on CPU. The result lives in
``$AFFECT_DEFAULT_MODEL_DIR`` (default ``~/.cache/affectmodel/default-model``, under
``$XDG_CACHE_HOME`` when set) and is a normal run folder, so ``model_info`` reports it as trained on
the synthetic benchmark and the demo says so on its first screen. Delete the folder (or run
``python -m demo.default_model --rebuild``) to build it again.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from affectmodel.records import is_complete

MODEL_ENV = "AFFECT_MODEL"
DEFAULT_DIR_ENV = "AFFECT_DEFAULT_MODEL_DIR"
# The recipe; next to the demo package in a checkout and in a published Space folder alike.
DEFAULT_SUITE = Path(__file__).resolve().parents[1] / "suites" / "demo.toml"
SUITE_RUN = "default"   # the one [[runs]] entry of the suite


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


def default_model_dir() -> Path:
    if os.environ.get(DEFAULT_DIR_ENV):
        return Path(os.environ[DEFAULT_DIR_ENV]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "affectmodel" / "default-model"


def choose_model(source: str | None = None) -> ModelChoice:
    """``source``, else ``$AFFECT_MODEL``, else the default model folder (built if missing)."""
    if source:
        return ModelChoice(str(source), "argument")
    if os.environ.get(MODEL_ENV):
        return ModelChoice(os.environ[MODEL_ENV], "environment")
    folder = default_model_dir()
    built = not is_complete(folder)
    return ModelChoice(str(ensure_default_model(folder)), "default", built)


def resolve_model_source(source: str | None = None) -> str:
    """The source string of :func:`choose_model`."""
    return choose_model(source).source


def read_demo_suite(path: Path = DEFAULT_SUITE) -> dict[str, Any]:
    """The synthetic benchmark of the suite's ``[suite.data]`` table (videos, frames, size, seed)."""
    with open(path, "rb") as f:
        data = tomllib.load(f).get("suite", {}).get("data")
    if not isinstance(data, dict) or set(data) != {"videos", "frames", "size", "seed"}:
        raise ValueError(f"{path}: [suite.data] must set videos, frames, size and seed (the synthetic benchmark)")
    return {k: int(v) for k, v in data.items()}


def ensure_default_model(folder: Path | None = None, suite: Path = DEFAULT_SUITE,
                         overrides: dict[str, Any] | None = None, data: dict[str, Any] | None = None) -> Path:
    """The default run folder, trained now if it does not exist yet (complete runs are reused)."""
    folder = Path(folder) if folder is not None else default_model_dir()
    if is_complete(folder):
        return folder
    return build_default_model(folder, suite, overrides, data)


def build_default_model(folder: Path, suite: Path = DEFAULT_SUITE, overrides: dict[str, Any] | None = None,
                        data: dict[str, Any] | None = None) -> Path:
    """Generate the suite's benchmark in a temporary folder, run the suite there, and move the
    finished run to ``folder`` in one rename (an interrupted build leaves nothing half-written).
    ``overrides`` (TrainConfig options) and ``data`` (benchmark size) shrink it for tests."""
    from affectmodel.data.synthetic import generate_benchmark
    from affectmodel.training import run_suite

    data = {**read_demo_suite(suite), **(data or {})}
    folder.parent.mkdir(parents=True, exist_ok=True)
    print(f"No model configured (--model / ${MODEL_ENV}): building the default demo model from {suite.name} "
          f"in {folder}.\nIt is trained on the synthetic benchmark for a few minutes, once; later launches "
          "reuse it.", flush=True)
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
        try:
            os.replace(run_dir, folder)
        except OSError:  # another process finished first (or an old incomplete folder is in the way)
            if not is_complete(folder):
                shutil.rmtree(folder, ignore_errors=True)
                os.replace(run_dir, folder)
    print(f"Default model ready: {folder}", flush=True)
    return folder


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
    built = not is_complete(folder)
    ensure_default_model(folder)
    print(f"{'built' if built else 'reused'}: {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
