"""Training: configs, the trainer, resumable checkpoints, torchrun/DDP helpers and study suites.

Entry points: :func:`train_run` (one run from a :class:`TrainConfig`), :func:`run_suite`
(a declared list of runs), and ``python train.py`` at the repository root. Modules:
``config`` (the option schema), ``batches`` (data plumbing), ``step`` (one optimizer step),
``optim`` (optimizer, schedule), ``evaluation`` (predict, score), ``console`` (what a run
prints), ``trainer`` (the run), ``suite``, ``cli``.
"""
from ..lazy import lazy_getattr

# Names are imported on first use: a module that needs one part (the demo's default model, a
# command's --help) does not pay for the trainer and everything it imports.
__getattr__ = lazy_getattr(__name__, {
    **dict.fromkeys(("ConfigError", "TrainConfig", "TrainingError", "load_config"), ".config"),
    **dict.fromkeys(("SuiteRun", "load_suite", "run_suite"), ".suite"),
    **dict.fromkeys(("run_training", "train_run"), ".trainer"),
})

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
