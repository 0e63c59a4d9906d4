"""Training: configs, the loop, resumable checkpoints, torchrun/DDP helpers and study suites.

Entry points: :func:`train_run` (one run from a :class:`TrainConfig`), :func:`run_suite`
(a declared list of runs), and ``python train.py`` at the repository root.
"""
from .config import ConfigError, TrainConfig, load_config
from .loop import TrainingError, run_training, train_run
from .suite import SuiteRun, load_suite, run_suite

__all__ = ["TrainConfig", "ConfigError", "load_config", "TrainingError", "train_run", "run_training",
           "SuiteRun", "load_suite", "run_suite"]
