"""Training configuration: one typed dataclass, loadable from TOML/YAML, overridable from the CLI.

Precedence: dataclass defaults < config file < command-line options. The resolved configuration
is what a run saves in its ``config.json`` (see :mod:`affectmodel.records`).
"""
from __future__ import annotations

import dataclasses
import difflib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..losses import LossConfig
from ..tasks import TASK_KEYS, TASK_WEIGHTINGS, get_label_space, get_task, parse_tasks

AUGMENT_PRESETS = ("none", "light", "strong")
SCHEDULES = ("cosine", "step", "none")
OPTIMIZERS = ("adamw", "sgd")
DEVICES = ("auto", "cpu", "cuda")
# Options that may differ between an interrupted run and its resumption: they change where and
# how fast the run executes, not what it computes (bit-for-bit equality with an uninterrupted run
# also needs the same device and thread count: float sums depend on how work is split).
RESUME_MUTABLE = frozenset({"resume", "workers", "threads", "device", "checkpoint_every", "out", "data"})


class ConfigError(ValueError):
    """A configuration file or option is invalid (message names the file and key)."""


def _default_losses() -> dict[str, str]:
    return {k: get_task(k).default_loss for k in TASK_KEYS}


@dataclass
class TrainConfig:
    """Every option of one training run (``python train.py --help`` documents each)."""

    data: str = ""                      # Aff-Wild2 (or synthetic benchmark) root folder
    out: str = ""                       # run folder, e.g. runs/<suite>/<run>
    tasks: list[str] = field(default_factory=lambda: list(TASK_KEYS))
    init: str = "random"                # random | imagenet | weights file | model folder | run folder
    expression_space: str = "abaw8"
    data_source: str = "auto"           # passed to affectmodel.data.load_affwild2(source=...)
    losses: dict[str, str] = field(default_factory=_default_losses)
    weighting: str = "fixed"            # fixed | uncertainty
    task_weights: dict[str, float] = field(default_factory=lambda: {k: 1.0 for k in TASK_KEYS})
    label_smoothing: float = 0.0
    focal_gamma: float = 2.0
    augment: str = "light"
    image_size: int = 112
    dropout: float = 0.0
    batch_size: int = 64                # total over all processes under torchrun
    epochs: int = 10
    max_steps: int | None = None        # stop after this many optimizer steps (None: all epochs)
    lr: float = 1e-3
    schedule: str = "cosine"
    step_epochs: int = 3                # step schedule: decay every N epochs...
    step_gamma: float = 0.1             # ...by this factor
    optimizer: str = "adamw"
    momentum: float = 0.9               # SGD only
    weight_decay: float = 1e-4
    seed: int = 0
    device: str = "auto"
    amp: bool = True                    # mixed precision on CUDA (bf16 where supported, else fp16)
    workers: int = 0
    threads: int = 0                    # CPU threads for torch (0: torch's default)
    limit_train: int | None = None      # random subset sizes (seeded), for quick runs
    limit_val: int | None = None
    checkpoint_every: int = 0           # also checkpoint every N steps (0: once per epoch)
    resume: bool = False

    def __post_init__(self) -> None:
        self.tasks = list(parse_tasks(self.tasks))
        self.expression_space = get_label_space(self.expression_space).name
        losses = _default_losses()
        for key, value in dict(self.losses or {}).items():
            task = get_task(key).key
            losses[task] = str(value)
        self.losses = losses
        weights = {k: 1.0 for k in TASK_KEYS}
        for key, value in dict(self.task_weights or {}).items():
            weights[get_task(key).key] = float(value)
        self.task_weights = weights
        self.init = str(self.init)
        self.data, self.out = str(self.data), str(self.out)
        self._check()
        self.loss_config()  # validates loss names against affectmodel.tasks

    def _check(self) -> None:
        def choice(name: str, allowed: tuple[str, ...]) -> None:
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name}={getattr(self, name)!r} is not one of: {', '.join(allowed)}")

        choice("augment", AUGMENT_PRESETS)
        choice("schedule", SCHEDULES)
        choice("optimizer", OPTIMIZERS)
        choice("device", DEVICES)
        choice("weighting", TASK_WEIGHTINGS)
        positive = ["image_size", "batch_size", "epochs", "step_epochs"]
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("max_steps", "limit_train", "limit_val"):
            value = getattr(self, name)
            if value is not None and int(value) < 1:
                raise ConfigError(f"{name} must be at least 1 (or unset), got {value}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if min(self.workers, self.threads, self.checkpoint_every, self.weight_decay) < 0:
            raise ConfigError("workers, threads, checkpoint_every and weight_decay cannot be negative")

    # ------------------------------------------------------------------ derived configs

    @property
    def multi_task(self) -> bool:
        return len(self.tasks) > 1

    def loss_config(self) -> LossConfig:
        return LossConfig(expr=self.losses["expr"], au=self.losses["au"], va=self.losses["va"],
                          weighting=self.weighting, task_weights=dict(self.task_weights),
                          label_smoothing=self.label_smoothing, focal_gamma=self.focal_gamma)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; only the trained tasks' losses and weights are kept."""
        d = dataclasses.asdict(self)
        d["losses"] = {t: self.losses[t] for t in self.tasks}
        d["task_weights"] = {t: self.task_weights[t] for t in self.tasks}
        return d

    def replace(self, **changes: Any) -> "TrainConfig":
        return config_from_mapping({**self.to_dict(), **changes})


# ------------------------------------------------------------------ building from mappings/files

_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
# Flat spellings accepted in files and on the command line: loss_expr = "focal", weight_au = 2.
_LOSS_ALIASES = {f"loss_{k}": k for k in TASK_KEYS}
_WEIGHT_ALIASES = {f"weight_{k}": k for k in TASK_KEYS}
_INT_FIELDS = {"image_size", "batch_size", "epochs", "max_steps", "step_epochs", "seed", "workers", "threads",
               "limit_train", "limit_val", "checkpoint_every"}
_FLOAT_FIELDS = {"label_smoothing", "focal_gamma", "dropout", "lr", "step_gamma", "momentum", "weight_decay"}
_BOOL_FIELDS = {"amp", "resume"}


def _coerce(name: str, value: Any, where: str) -> Any:
    try:
        if value is None:
            return None
        if name in _INT_FIELDS:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            return int(value)
        if name in _FLOAT_FIELDS:
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if name in _BOOL_FIELDS:
            if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
                return value.lower() in ("true", "yes", "1")
            if not isinstance(value, bool):
                raise TypeError
            return value
        if name == "tasks":
            try:
                return list(parse_tasks(value))
            except ValueError as e:  # keep the foundation's message: it lists the known tasks
                raise ConfigError(f"{where}: {e}") from None
        if name in ("losses", "task_weights"):
            if not isinstance(value, Mapping):
                raise TypeError
            return dict(value)
        if isinstance(value, (dict, list)):
            raise TypeError
        return str(value)
    except ConfigError:
        raise
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {name} has an invalid value {value!r}") from None


def normalise_keys(values: Mapping[str, Any], where: str = "config") -> dict[str, Any]:
    """Map file/CLI spellings onto TrainConfig fields; unknown keys are an error with a hint."""
    out: dict[str, Any] = {}
    for raw_key, value in values.items():
        key = str(raw_key).replace("-", "_")
        if key in _LOSS_ALIASES:
            out.setdefault("losses", {})[_LOSS_ALIASES[key]] = value
        elif key in _WEIGHT_ALIASES:
            out.setdefault("task_weights", {})[_WEIGHT_ALIASES[key]] = value
        elif key in _FIELDS:
            value = _coerce(key, value, where)
            if key in ("losses", "task_weights") and key in out:
                out[key] = {**value, **out[key]}
            else:
                out[key] = value
        else:
            known = list(_FIELDS) + list(_LOSS_ALIASES) + list(_WEIGHT_ALIASES)
            hint = difflib.get_close_matches(key, known, n=1)
            raise ConfigError(f"{where}: unknown option {raw_key!r}"
                              + (f" (did you mean {hint[0]!r}?)" if hint else ""))
    return out


def config_from_mapping(values: Mapping[str, Any], where: str = "config") -> TrainConfig:
    values = normalise_keys(values, where)
    try:
        return TrainConfig(**values)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    except ValueError as e:  # unknown task / label space / loss from the foundation modules
        raise ConfigError(f"{where}: {e}") from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML (``.toml``) or YAML (``.yaml``/``.yml``) file into a plain dict."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    if suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: invalid TOML: {e}") from None
    elif suffix in (".yaml", ".yml"):
        import yaml  # PyYAML comes with huggingface_hub

        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: invalid YAML: {e}") from None
    else:
        raise ConfigError(f"{path}: config files must end in .toml, .yaml or .yml")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a table of options at the top level")
    return data


def load_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """Defaults, then the file at ``path`` (if any), then ``overrides`` (e.g. CLI options)."""
    values: dict[str, Any] = {}
    if path is not None:
        values = normalise_keys(read_config_file(path), where=str(path))
    if overrides:
        extra = normalise_keys(overrides, where="command line")
        for key in ("losses", "task_weights"):
            if key in extra and key in values:
                extra[key] = {**values[key], **extra[key]}
        values.update(extra)
    return config_from_mapping(values, where=str(path) if path else "options")


def config_differences(saved: Mapping[str, Any], current: TrainConfig) -> list[str]:
    """Options of ``current`` that differ from a saved run config, ignoring those that may change
    on resume (device, workers...)."""
    now = current.to_dict()
    return sorted(k for k in now if k not in RESUME_MUTABLE and k in saved and saved[k] != now[k])
