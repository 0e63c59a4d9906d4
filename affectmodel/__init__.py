"""affectmodel: one network for facial expressions, action units and valence/arousal.

Folder tour: ``tasks`` (label spaces, the single source of truth), ``model``, ``initialisation``, ``losses``,
``metrics``, ``scoring`` (the challenge's evaluation), ``data/`` (readers, augmentation,
synthetic benchmark), ``training/`` (loop, configs, suites), ``records`` (run folders),
``hub/`` (publish and load), ``inference/`` (faces, predictor, video).
"""
from .lazy import lazy_getattr
from .tasks import ABAW8, AU_NAMES, VA_NAMES, get_label_space, get_task

# The model names import torch/torchvision (seconds); resolve them on first use so that
# `python -m affectmodel --help` and torch-free commands (score) start fast.
__getattr__ = lazy_getattr(__name__, {**dict.fromkeys(("AffectModel", "CheckpointError", "ModelConfig"), ".model"),
                                      "build_model": ".initialisation"})

__version__ = "0.1.0"


def load_model(source, revision=None, local_files_only=None, map_location="cpu"):
    """Load a model from a local model folder, a run folder or a Hub repository id."""
    from .hub.loading import load_model as _load  # lazy: keeps `import affectmodel` light

    return _load(source, revision=revision, local_files_only=local_files_only, map_location=map_location)


__all__ = [
    "ABAW8",
    "AU_NAMES",
    "VA_NAMES",
    "AffectModel",
    "CheckpointError",
    "ModelConfig",
    "__version__",
    "build_model",
    "get_label_space",
    "get_task",
    "load_model",
]
