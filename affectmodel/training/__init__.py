"""Training: configs, the trainer, resumable checkpoints, torchrun/DDP helpers and study suites.

Entry points: :func:`train_run` (one run from a :class:`TrainConfig`), :func:`run_suite`
(a declared list of runs), and ``python train.py`` at the repository root. Modules:
``config`` (the option schema), ``batches`` (data plumbing), ``step`` (one optimizer step),
``optim`` (optimizer, schedule), ``evaluation`` (predict, score), ``console`` (what a run
prints), ``trainer`` (the run), ``suite``, ``cli``.
"""
from .config import ConfigError, TrainConfig, TrainingError, load_config
from .suite import SuiteRun, load_suite, run_suite
from .trainer import run_training, train_run

__all__ = [
    "ConfigError",
    "SuiteRun",
    "TrainConfig",
    "TrainingError",
    "load_config",
    "load_suite",
    "run_suite",
    "run_training",
    "train_run",
]
