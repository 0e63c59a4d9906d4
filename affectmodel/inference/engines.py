"""Which engine runs the network: PyTorch, or ONNX Runtime on the model folder's exported graph.

Both engines have one method, ``run(batch) -> raw outputs``: a normalised ``(n, S, S, 3)`` float32
batch (the predictor's preprocessing, the same for both) in, the heads' raw outputs (expression and
AU logits, valence/arousal) as float32 numpy out. Everything before (detection, alignment,
preprocessing) and after (softmax/sigmoid, the finiteness check, records, smoothing) is shared, so
a feature such as mirror averaging or a temporal model wraps ``run`` once for both.

:data:`ENGINES`:

* ``auto`` (default): ``onnx`` when the model folder holds a verified ``model.onnx``
  (:mod:`.onnx_engine`) and the device is the CPU, else ``torch``. A graph that fails its check
  (stale, changed, mismatched) is reported as a warning and torch is used.
* ``torch``: the PyTorch model (any device).
* ``onnx`` / ``onnx-int8``: the verified fp32 / int8 graph on the CPU; refused in one line when the
  folder has none or it fails its check, and for a temporal model (``conv``/``gru``: ONNX does not
  cover them, ``auto`` runs them on torch).

Importing this module does not import torch; only the torch engine does.
"""
from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ..model_config import LEARNED_KINDS, ModelConfig, temporal_name
from ..records import MODEL_ONNX_FILE, MODEL_ONNX_INT8_FILE, ONNX_RECORD_FILE
from .onnx_engine import OnnxEngine, OnnxMissingError, OnnxModelError

if TYPE_CHECKING:
    from ..model import AffectModel

ENGINES = ("auto", "torch", "onnx", "onnx-int8")
# The environment variable through which an application (the demo, a Space) is told its engine.
ENGINE_ENV = "AFFECT_ENGINE"
_ONNX_PRECISION = {"onnx": "fp32", "onnx-int8": "int8"}


class Engine(Protocol):
    name: str
    config: ModelConfig

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Raw head outputs for a normalised ``(n, S, S, 3)`` float32 batch."""


def check_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
    return engine


def _torch_engine(model: AffectModel | None, folder=None, device: str = "cpu") -> Engine:
    from ..hub.loading import load_folder
    from .torch_engine import TorchEngine

    return TorchEngine(model if model is not None else load_folder(folder, map_location=str(device)), device)


def open_engine(model: AffectModel | str | os.PathLike, engine: str = "auto", device: str = "cpu",
                threads: int | None = None, revision: str | None = None) -> Engine:
    """The engine for a model object (torch only), a model folder, a run folder or a Hub id."""
    check_engine(engine)
    if not isinstance(model, (str, os.PathLike)):  # a model object: only PyTorch can run it
        if engine in _ONNX_PRECISION:
            raise ValueError(f"engine {engine!r} runs the exported graph of a model folder; a model object runs on "
                             "the torch engine (export the folder with `python -m affectmodel export FOLDER`)")
        return _torch_engine(model, device=str(device))
    from ..hub.loading import model_folder, read_model_config

    if engine == "torch" or (engine == "auto" and str(device) != "cpu"):
        return _torch_engine(None, model_folder(model, revision), str(device))
    if engine in _ONNX_PRECISION and str(device) != "cpu":
        raise ValueError(f"engine {engine!r} runs on the CPU only; use --engine torch for device {device!r}")
    precision = _ONNX_PRECISION.get(engine, "fp32")
    graph = MODEL_ONNX_FILE if precision == "fp32" else MODEL_ONNX_INT8_FILE
    # A Hub model: its ONNX files if it has them; the weights only when they will be read.
    folder = model_folder(model, revision, weights=False, optional=(ONNX_RECORD_FILE, graph))
    config = read_model_config(folder)
    if config.temporal in LEARNED_KINDS:
        # an exported graph reads one frame at a time; export refuses temporal models, so "export it"
        # would be no advice: a temporal model's windows run on its PyTorch module
        if engine != "auto":
            kind = temporal_name(config.temporal, config.window, config.causal)
            raise OnnxModelError(f"{folder} is a temporal model ({kind}): ONNX does not cover temporal models "
                                 "(export refuses them; a graph reads one frame at a time): use --engine torch "
                                 "(or auto)")
        return _torch_engine(None, model_folder(model, revision), str(device))
    try:
        return OnnxEngine(folder, config, precision, threads)
    except OnnxModelError as e:
        if engine != "auto":
            raise
        reason = e
    except ImportError as e:  # onnxruntime is a dependency, but a trimmed install may lack it
        if engine != "auto":
            raise OnnxModelError(f"engine {engine!r} needs onnxruntime ({e})") from None
        reason = OnnxModelError(f"onnxruntime is not installed ({e})")
    try:
        torch_engine = _torch_engine(None, model_folder(model, revision), str(device))
    except ImportError as e:
        raise OnnxModelError(f"no engine can run this model: {reason}; and PyTorch is not installed "
                             f"({e.name or e})") from None
    if not isinstance(reason, OnnxMissingError):
        warnings.warn(f"{reason}; using the torch engine", stacklevel=3)
    return torch_engine


__all__ = ["ENGINES", "ENGINE_ENV", "Engine", "check_engine", "open_engine"]
