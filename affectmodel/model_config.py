"""A model's configuration (``config.json``) and its bounds, without PyTorch.

:class:`ModelConfig` says everything needed to rebuild the network and to preprocess its input;
it is read from model folders that may come from a stranger's repository, so every field is checked
against bounds here. It lives apart from the network (:mod:`affectmodel.model`, which re-exports
these names) so that the ONNX inference path, the model loader's validation and the demo read a
model folder without importing torch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .tasks import AU_NAMES, DEFAULT_EXPRESSION_SPACE, VA_BOUNDS, get_label_space, get_task, parse_tasks

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BACKBONES = ("resnet18",)
# Bounds on config.json, which may come from a stranger's Hub repository. Aff-Wild2's aligned crops
# are 112 px; 1024 px is far above any useful face size and keeps one face's forward pass near 0.2 GB.
MIN_INPUT_SIZE, MAX_INPUT_SIZE = 16, 1024
# Float32 values alive per input pixel during one face's forward pass at most: input and normalised
# copy (3 + 3 channels), the stride-2 stem's 64 channels at a quarter of the pixels (16) and its
# batch-norm/ReLU output (16). Measured peak for input_size 20000 was 23.7 GB, i.e. about 15 per pixel.
FORWARD_FLOATS_PER_PIXEL = 38
# Temporal context over per-frame features (affectmodel/temporal.py builds the modules; docs/TEMPORAL.md).
TEMPORAL_KINDS = ("none", "smooth", "conv", "gru")
LEARNED_KINDS = ("conv", "gru")  # the kinds with a trained module (smooth averages the outputs)
MAX_WINDOW = 256   # frames; a config.json may come from a stranger


def anchor_position(window: int, causal: bool) -> int:
    """Where in its window a frame's own output is read: the last slot (causal: only the past is
    seen) or the middle (bidirectional: as much past as future)."""
    return window - 1 if causal else window // 2


def temporal_name(kind: str | None, window: object = None, causal: object = False) -> str:
    """A model's temporal context in a few words (tables, the study's temporal factor): ``none``,
    ``smooth w5`` (always causal) or ``gru w16 bidirectional`` / ``conv w16 causal``."""
    kind = str(kind or "none")
    if kind == "none":
        return "none"
    if kind == "smooth":
        return f"smooth w{window if window is not None else '?'}"
    return f"{kind} w{window if window is not None else '?'} {'causal' if causal else 'bidirectional'}"


class CheckpointError(RuntimeError):
    """A checkpoint or weights file is missing, unreadable or does not match the model."""


@dataclass
class ModelConfig:
    """Everything needed to rebuild the network and preprocess its input (saved as config.json)."""

    tasks: list[str] = field(default_factory=lambda: ["expr", "au", "va"])
    expression_space: str = DEFAULT_EXPRESSION_SPACE.name
    backbone: str = "resnet18"
    input_size: int = 112
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))
    dropout: float = 0.0
    # Per-AU decision thresholds tuned on validation data (None = 0.5 for every AU).
    au_thresholds: list[float] | None = None
    # Temporal context (affectmodel.temporal): the module over per-frame features, the window of
    # frames it was trained on, and whether it looks back only (streaming) or both ways.
    temporal: str = "none"
    window: int = 1
    causal: bool = False
    # How the VA outputs are held in [-1, 1] (affectmodel.tasks.VA_BOUNDS). The default reads the
    # config.json of a model written before the field existed: those were all trained with tanh.
    va_bound: str = "tanh"
    # Derived, written for readers of config.json outside this package; recomputed on load.
    labels: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Check every field against sane bounds (a config may come from an untrusted repository);
        errors are one line naming the field."""
        tasks: object = self.tasks  # typed, but read from a file that may hold anything
        if not isinstance(tasks, (list, tuple, str)) or not all(isinstance(t, str) for t in tasks):
            raise ValueError(f"field 'tasks' must be a list of task names, got {self.tasks!r}")
        self.tasks = list(parse_tasks(self.tasks))
        if not isinstance(self.expression_space, str):
            raise ValueError(f"field 'expression_space' must be a name, got {self.expression_space!r}")
        space = get_label_space(self.expression_space)
        self.expression_space = space.name
        if self.backbone not in BACKBONES:
            raise ValueError(f"field 'backbone': unknown backbone {self.backbone!r}; available: {', '.join(BACKBONES)}")
        if not _is_int(self.input_size) or not MIN_INPUT_SIZE <= self.input_size <= MAX_INPUT_SIZE:
            raise ValueError(f"field 'input_size' must be a whole number of pixels in "
                             f"[{MIN_INPUT_SIZE}, {MAX_INPUT_SIZE}], got {self.input_size!r}")
        self.input_size = int(self.input_size)
        self.mean = _finite_list("mean", self.mean, 3, low=-10.0, high=10.0)
        self.std = _finite_list("std", self.std, 3, low=1e-6, high=1e3)
        if not _is_number(self.dropout) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"field 'dropout' must be a number in [0, 1), got {self.dropout!r}")
        if self.au_thresholds is not None:
            self.au_thresholds = _finite_list("au_thresholds", self.au_thresholds, len(AU_NAMES), low=0.0, high=1.0)
        if self.temporal not in TEMPORAL_KINDS:
            raise ValueError(f"field 'temporal' must be one of {', '.join(TEMPORAL_KINDS)}, got {self.temporal!r}")
        if not _is_int(self.window) or not 1 <= self.window <= MAX_WINDOW:
            raise ValueError(f"field 'window' must be a whole number of frames in [1, {MAX_WINDOW}], "
                             f"got {self.window!r}")
        if not isinstance(self.causal, bool):
            raise ValueError(f"field 'causal' must be true or false, got {self.causal!r}")
        if self.va_bound not in VA_BOUNDS:
            raise ValueError(f"field 'va_bound' must be one of {', '.join(VA_BOUNDS)}, got {self.va_bound!r}")
        if self.temporal == "none":  # a per-frame model has no window
            self.window, self.causal = 1, False
        self.labels = {k: list(get_task(k, space).labels) for k in self.tasks}

    def head_sizes(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.labels.items()}


def au_thresholds_of(config: ModelConfig) -> list[float]:
    """The per-AU decision thresholds of a model (0.5 for every AU when none are stored)."""
    return list(config.au_thresholds) if config.au_thresholds is not None else [0.5] * len(AU_NAMES)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _finite_list(name: str, values, length: int, low: float, high: float) -> list[float]:
    """``values`` as a list of ``length`` finite numbers in [low, high], or a one-line error."""
    if not isinstance(values, (list, tuple)) or len(values) != length:
        raise ValueError(f"field {name!r} needs a list of {length} numbers, got {values!r}")
    for i, v in enumerate(values):
        if not _is_number(v) or not low <= v <= high:
            raise ValueError(f"field {name!r}: value {i} must be a finite number in [{low:g}, {high:g}], got {v!r}")
    return [float(v) for v in values]


def forward_memory_bytes(input_size: int, faces: int = 1) -> int:
    """Upper estimate of the memory one forward pass of ``faces`` crops needs (checked before any
    allocation, so a hostile ``input_size`` cannot take the machine down)."""
    return 4 * FORWARD_FLOATS_PER_PIXEL * int(input_size) ** 2 * int(faces)


__all__ = [
    "BACKBONES",
    "FORWARD_FLOATS_PER_PIXEL",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MAX_INPUT_SIZE",
    "MAX_WINDOW",
    "MIN_INPUT_SIZE",
    "TEMPORAL_KINDS",
    "CheckpointError",
    "ModelConfig",
    "au_thresholds_of",
    "forward_memory_bytes",
]
