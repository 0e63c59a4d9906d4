"""The demo's model when none is configured: build it once on the synthetic benchmark, reuse it after.

``resolve_model_source(None)`` returns ``$AFFECT_MODEL`` when set, else the cached default run
folder, building it on first use: a small synthetic benchmark is generated and a multi-task model
trained on it for a few minutes on CPU, with progress bars in the terminal (tqdm). The result lives in
``$AFFECT_DEFAULT_MODEL_DIR`` (default ``~/.cache/affectmodel/default-model``, under
``$XDG_CACHE_HOME`` when set) and is a normal run folder, so ``model_info`` reports it as trained on
the synthetic benchmark and the demo says so on its first screen.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from affectmodel.records import is_complete


MODEL_ENV = "AFFECT_MODEL"
DEFAULT_DIR_ENV = "AFFECT_DEFAULT_MODEL_DIR"


@dataclass(frozen=True)
class DefaultModelRecipe:
    """Small enough to train in a few minutes on 2 CPU cores; it only has to show the pipeline."""

    # many short videos (many identities, few near-duplicate frames): what makes the synthetic
    # benchmark learnable in a short CPU run (benchmarks/data.md)
    videos: int = 800
    frames: int = 3
    image_size: int = 64
    batch_size: int = 32
    max_steps: int = 250           # ~0.45 s per step on 2 idle cores: about 2 minutes
    epochs: int = 7
    limit_val: int = 256           # validation images scored after each epoch
    lr: float = 2e-3
    seed: int = 0
    threads: int = 1               # on a shared 2-core machine one torch thread was fastest


def default_model_dir() -> Path:
    if os.environ.get(DEFAULT_DIR_ENV):
        return Path(os.environ[DEFAULT_DIR_ENV]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "affectmodel" / "default-model"


def resolve_model_source(source: str | None = None) -> str:
    """``source``, else ``$AFFECT_MODEL``, else the default model folder (built if missing)."""
    source = source or os.environ.get(MODEL_ENV) or None
    if source:
        return str(source)
    return str(ensure_default_model())


def ensure_default_model(folder: Path | None = None, recipe: DefaultModelRecipe | None = None) -> Path:
    """The default run folder, trained now if it does not exist yet (complete runs are reused)."""
    folder = Path(folder) if folder is not None else default_model_dir()
    if is_complete(folder):
        return folder
    return build_default_model(folder, recipe or DefaultModelRecipe())


def build_default_model(folder: Path, recipe: DefaultModelRecipe) -> Path:
    """Generate the synthetic benchmark in a temporary folder, train, and move the finished run to
    ``folder`` in one rename (an interrupted build leaves nothing half-written behind)."""
    from affectmodel.data.synthetic import generate_benchmark
    from affectmodel.training import TrainConfig, train_run

    folder.parent.mkdir(parents=True, exist_ok=True)
    print(f"No model configured (--model / ${MODEL_ENV}): building the default demo model in {folder}.\n"
          "It is trained on the synthetic benchmark for a few minutes, once; later launches reuse it.",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="default-model-", dir=folder.parent) as tmp:
        data_dir, run_dir = Path(tmp) / "data", Path(tmp) / "run"
        generate_benchmark(data_dir, videos=recipe.videos, frames=recipe.frames, seed=recipe.seed,
                           size=max(recipe.image_size, 64), progress=True)
        config = TrainConfig(data=str(data_dir), out=str(run_dir), tasks=["expr", "au", "va"],
                             image_size=recipe.image_size, batch_size=recipe.batch_size, epochs=recipe.epochs,
                             max_steps=recipe.max_steps, lr=recipe.lr, seed=recipe.seed, device="cpu",
                             augment="light", limit_val=recipe.limit_val, threads=recipe.threads)
        run_dir = train_run(config)  # shows its own progress bars (epochs, steps, validation scores)
        if not is_complete(run_dir):
            raise RuntimeError(f"training the default model did not produce a complete run in {run_dir}")
        try:
            os.replace(run_dir, folder)
        except OSError:  # another process finished first (or an old incomplete folder is in the way)
            if not is_complete(folder):
                shutil.rmtree(folder, ignore_errors=True)
                os.replace(run_dir, folder)
    print(f"Default model ready: {folder}", flush=True)
    return folder
