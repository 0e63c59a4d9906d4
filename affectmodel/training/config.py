"""Training configuration: one typed dataclass, loadable from TOML/YAML, overridable from the CLI.

Each :class:`TrainConfig` field carries its own schema in ``field(metadata=...)`` (help text,
choices, option group): ``train.py``'s options (:mod:`.cli`), suite keys and ``config.json`` are all
derived from the fields, so an option is declared once, here.

Precedence: dataclass defaults < config file < command-line options. The resolved configuration
is what a run saves in its ``config.json`` (see :mod:`affectmodel.records`).
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import tomllib
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.samplers import SAMPLERS
from ..data.transforms import AUGMENT_PRESETS
from ..losses import LossConfig
from ..tasks import TASK_KEYS, TASK_WEIGHTINGS, VA_BOUNDS, get_label_space, get_task, parse_tasks
from ..temporal import MAX_WINDOW, TEMPORAL_KINDS

# Which options make up a configuration's identity (and so the study's factors) is declared in
# .identity, which imports nothing of the project, so that the study reads it without torch.
from .identity import DATASET_LOCAL_KEYS as DATASET_LOCAL_KEYS
from .identity import IDENTITY_IGNORED as IDENTITY_IGNORED
from .identity import LEGACY_VALUES as LEGACY_VALUES
from .identity import MACHINE_LOCAL_OPTIONS as MACHINE_LOCAL_OPTIONS
from .identity import RESUME_MUTABLE as RESUME_MUTABLE
from .identity import TEMPORAL_OPTIONS as TEMPORAL_OPTIONS
from .identity import identity_values

SCHEDULES = ("cosine", "step", "none")
OPTIMIZERS = ("adamw", "sgd")
DEVICES = ("auto", "cpu", "cuda")
NO_CACHE = "none"   # --cache none: read the JPEGs even when a frame cache lies next to the data
# With a ``steps`` budget and no ``eval_every``: this many evaluations, evenly spaced.
DEFAULT_EVALUATIONS = 5


class ConfigError(ValueError):
    """A configuration file or option is invalid (message names the file and key)."""


class TrainingError(ValueError):
    """A run cannot start or continue as asked (printed as one line by the CLI)."""


def _default_losses() -> dict[str, str]:
    return {k: get_task(k).default_loss for k in TASK_KEYS}


def option(default: Any = dataclasses.MISSING, *, help: str, group: str, choices: tuple[str, ...] | None = None,
           metavar: str | None = None, default_factory: Callable[[], Any] | None = None,
           default_text: str | None = None, cli: bool = True) -> Any:
    """A TrainConfig field with its schema: ``help`` (the default is appended by the CLI),
    ``group`` (the --help section), ``choices``, ``metavar``, ``default_text`` (how an unset
    default reads in --help) and ``cli`` (False: set through aliases, not its own option).
    It returns a ``dataclasses.field`` (mutable defaults go through ``default_factory``); ruff's
    RUF009 cannot see that, hence the ``noqa`` on the fields that use it."""
    metadata = {"help": help, "group": group, "choices": choices, "metavar": metavar,
                "default_text": default_text, "cli": cli}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class TrainConfig:
    """Every option of one training run (``python train.py --help`` documents each)."""

    data: str = option("", group="run", metavar="ROOT", default_text="required",
                       help="Aff-Wild2 or synthetic benchmark folder")
    out: str = option("", group="run", metavar="DIR", default_text="required",
                      help="run folder, e.g. runs/SUITE/NAME")
    tasks: list[str] = option(group="run", default_factory=lambda: list(TASK_KEYS),  # noqa: RUF009
                              help="comma-separated subset of expr,au,va; one task = uni-task")
    init: str = option("random", group="run", metavar="random|imagenet|PATH",
                       help="trunk initialisation: random, ImageNet, a weights file, a model folder or an "
                            "earlier run folder (its backbone)")
    expression_space: str = option("abaw8", group="run", help="expression label space")
    data_source: str = option("auto", group="run",
                              help="annotation source for the data reader (affectmodel.data.load_affwild2)")
    losses: dict[str, str] = option(group="losses", default_factory=_default_losses, cli=False,  # noqa: RUF009
                                    help="loss per task (also loss_TASK = NAME)")
    weighting: str = option("fixed", group="losses", choices=TASK_WEIGHTINGS, help="task weighting")
    task_weights: dict[str, float] = option(group="losses",  # noqa: RUF009
                                            default_factory=lambda: dict.fromkeys(TASK_KEYS, 1.0),
                                            metavar="expr=1,au=1,va=1",
                                            help="fixed task weights (also weight_TASK = W)")
    va_bound: str = option("clamp", group="losses", choices=VA_BOUNDS,
                           help="how valence/arousal outputs are held in [-1, 1]: clamp (the gradient passes "
                                "straight through in training, so the loss pulls an output back from a bound) or "
                                "tanh (the recipe before; its slope vanishes at the bounds)")
    label_smoothing: float = option(0.0, group="losses", help="expression label smoothing")
    focal_gamma: float = option(2.0, group="losses", help="focal loss gamma")
    augment: str = option("light", group="data", choices=AUGMENT_PRESETS, help="augmentation preset")
    image_size: int = option(112, group="data", help="input size in pixels")
    dropout: float = option(0.0, group="optimisation", help="dropout before the heads")
    batch_size: int = option(64, group="data", help="total batch size over all processes")
    epochs: int = option(10, group="optimisation", help="training epochs (unless --steps is set)")
    steps: int | None = option(None, group="optimisation", metavar="N", default_text="epochs decide",
                               help="budget in optimizer steps: replaces --epochs, the data is cycled as needed "
                                    "(set it once for a whole comparison so every run has the same budget)")
    eval_every: int | None = option(None, group="optimisation", metavar="N",
                                    default_text=f"each epoch; with --steps, {DEFAULT_EVALUATIONS} evenly spaced",
                                    help="evaluate on the development split every N steps (and at the end)")
    max_steps: int | None = option(None, group="optimisation", metavar="N", default_text="no cap",
                                   help="stop after this many optimizer steps (a cap on the epochs or steps budget)")
    lr: float = option(1e-3, group="optimisation", help="peak learning rate")
    schedule: str = option("cosine", group="optimisation", choices=SCHEDULES, help="per-step LR schedule")
    warmup: float = option(0.1, group="optimisation",
                           help="share of the step budget over which the learning rate rises linearly to --lr, "
                                "then follows the schedule (0: none). Adam's first steps move every weight by "
                                "about --lr at once; without it a valence/arousal head saturated in 5 steps "
                                "(docs/TRAINING.md)")
    step_epochs: int = option(3, group="optimisation", help="step schedule: decay every N epochs")
    step_gamma: float = option(0.1, group="optimisation", help="step schedule: decay factor")
    optimizer: str = option("adamw", group="optimisation", choices=OPTIMIZERS, help="optimizer")
    momentum: float = option(0.9, group="optimisation", help="SGD momentum")
    weight_decay: float = option(1e-4, group="optimisation", help="weight decay of weight matrices and kernels")
    seed: int = option(0, group="optimisation", help="seed of initialisation, data order and augmentation")
    device: str = option("auto", group="hardware", choices=DEVICES,
                         help="auto: CUDA when available, with mixed precision and channels_last")
    amp: bool = option(True, group="hardware", help="mixed precision on CUDA (bf16 where supported, else fp16)")
    workers: int | None = option(None, group="data", metavar="N",
                                 default_text="min(8, CPUs per process) on CUDA, 0 on CPU",
                                 help="data loader processes per training process (kept alive between epochs)")
    cache: str = option("", group="data", metavar="DIR|none", default_text="ROOT/.affectmodel-cache/<size>px if built",
                        help="frame cache (python -m affectmodel cache ROOT): batches are read from it and augmented "
                             "on the training device; 'none' reads the JPEGs")
    sync_bn: bool = option(False, group="hardware",
                           help="under torchrun: BatchNorm statistics over the global batch (SyncBatchNorm), so "
                                "results do not depend on the number of processes (without it, BatchNorm sees "
                                "each process's share and the run's config_id says so)")
    ccc_global_batch: bool = option(True, group="losses",
                                    help="under torchrun: VA's CCC over the global batch, not each process's share")
    threads: int = option(0, group="hardware", default_text="torch's choice",
                          help="CPU threads for torch (1 is faster on a busy machine)")
    limit_train: int | None = option(None, group="data", metavar="N", default_text="all",
                                     help="labels per task: a seeded choice of N labelled training frames per task, "
                                          "the same labels in a uni-task and a multi-task run")
    limit_val: int | None = option(None, group="data", metavar="N", default_text="all",
                                   help="validation labels per task: the same N labelled frames per task for every "
                                        "run and seed (so runs are scored on the same frames)")
    dev_fraction: float = option(0.1, group="data",
                                 help="fraction of the training videos held out as the development split, on which "
                                      "AU thresholds are tuned and the best evaluation is chosen (the same videos for "
                                      "every run); 0: none, thresholds 0.5 and the last weights")
    keep_leaking_videos: bool = option(False, group="data",
                                       help="keep training videos that are also in a validation set (Aff-Wild2 "
                                            "per-task sets; left out of training by default)")
    checkpoint_every: int = option(0, group="hardware", metavar="N", default_text="once per epoch",
                                   help="also checkpoint every N steps")
    resume: bool = option(False, group="run", help="continue from the run folder's last checkpoint")
    suite: str = option("", group="run", metavar="NAME", default_text="none",
                        help="suite the run belongs to, for the study's records (`train.py suite` sets it)")
    run: str = option("", group="run", metavar="NAME", default_text="the run folder's name",
                      help="configuration name without the seed, for the study's records (`train.py suite` sets it)")
    temporal: str = option("none", group="temporal", choices=TEMPORAL_KINDS,
                           help="temporal context: none (the per-frame model); smooth (the --init model's outputs "
                                "averaged over the last --window frames, today's video smoothing); conv or gru (a "
                                "temporal module trained over windows of the --init model's frozen trunk features; "
                                "docs/TEMPORAL.md)")
    window: int = option(16, group="temporal", metavar="N",
                         help="temporal models: frames per window (smooth: frames averaged)")
    causal: bool = option(False, group="temporal",
                          help="temporal models: look back only (streaming, the webcam); else both ways (files)")
    sampler: str = option("shuffle", group="data", choices=SAMPLERS,
                          help="training order: shuffle (each image once per epoch), balanced (expression "
                               "classes equally often, with replacement; one process only) or multitask "
                               "(every labelled task in every batch; one process only)")

    def __post_init__(self) -> None:
        self.tasks = list(parse_tasks(self.tasks))
        self.expression_space = get_label_space(self.expression_space).name
        losses = _default_losses()
        for key, value in dict(self.losses or {}).items():
            task = get_task(key).key
            losses[task] = str(value)
        self.losses = losses
        weights = dict.fromkeys(TASK_KEYS, 1.0)
        for key, weight in dict(self.task_weights or {}).items():
            weights[get_task(key).key] = float(weight)
        self.task_weights = weights
        self.init = str(self.init)
        self.data, self.out = str(self.data), str(self.out)
        self._check()
        self.loss_config()  # validates loss names against affectmodel.tasks

    def _check(self) -> None:
        def choice(name: str, allowed: tuple[str, ...]) -> None:
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name}={getattr(self, name)!r} is not one of: {', '.join(allowed)}")

        for f in dataclasses.fields(self):
            if f.metadata.get("choices"):
                choice(f.name, f.metadata["choices"])
        positive = ["image_size", "batch_size", "epochs", "step_epochs"]
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("steps", "eval_every", "max_steps", "limit_train", "limit_val"):
            value = getattr(self, name)
            if value is not None and int(value) < 1:
                raise ConfigError(f"{name} must be at least 1 (or unset), got {value}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0.0 <= self.dev_fraction < 1.0:
            raise ConfigError(f"dev_fraction must be in [0, 1), got {self.dev_fraction}")
        if not 0.0 <= self.warmup < 1.0:
            raise ConfigError(f"warmup must be in [0, 1) (a share of the step budget), got {self.warmup}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.temporal == "smooth":
            self.causal = True  # today's smoothing averages the frames up to each frame: it looks back only
        if not 1 <= self.window <= MAX_WINDOW:
            raise ConfigError(f"window must be in [1, {MAX_WINDOW}] frames, got {self.window}")
        if min(self.workers or 0, self.threads, self.checkpoint_every, self.weight_decay) < 0:
            raise ConfigError("workers, threads, checkpoint_every and weight_decay cannot be negative")

    # ------------------------------------------------------------------ derived configs

    @property
    def multi_task(self) -> bool:
        return len(self.tasks) > 1

    def loss_config(self) -> LossConfig:
        return LossConfig(expr=self.losses["expr"], au=self.losses["au"], va=self.losses["va"],
                          weighting=self.weighting, task_weights=dict(self.task_weights),
                          label_smoothing=self.label_smoothing, focal_gamma=self.focal_gamma,
                          va_global_batch=self.ccc_global_batch, global_batch=True)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; only the trained tasks' losses and weights are kept."""
        d = dataclasses.asdict(self)
        d["losses"] = {t: self.losses[t] for t in self.tasks}
        d["task_weights"] = {t: self.task_weights[t] for t in self.tasks}
        return d

    def replace(self, **changes: Any) -> TrainConfig:
        return config_from_mapping({**self.to_dict(), **changes})


# ------------------------------------------------------------------ building from mappings/files

_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
# Flat spellings accepted in files and on the command line: loss_expr = "focal", weight_au = 2.
LOSS_ALIASES = {f"loss_{k}": k for k in TASK_KEYS}
WEIGHT_ALIASES = {f"weight_{k}": k for k in TASK_KEYS}


def field_kind(name: str) -> type:
    """The value type of a TrainConfig field: int, float, bool, str, list or dict (``X | None``
    fields give X)."""
    hint = _HINTS[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if isinstance(hint, type) and not typing.get_args(hint):
        return hint
    origin = typing.get_origin(hint)
    if origin in (list, dict):
        return origin
    return args[0]  # X | None


_HINTS = typing.get_type_hints(TrainConfig)


def _coerce(name: str, value: Any, where: str) -> Any:
    kind = field_kind(name)
    try:
        if value is None:
            return None
        if kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            return int(value)
        if kind is float:
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if kind is bool:
            if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
                return value.lower() in ("true", "yes", "1")
            if not isinstance(value, bool):
                raise TypeError
            return value
        if kind is list:  # tasks
            try:
                return list(parse_tasks(value))
            except ValueError as e:  # keep the foundation's message: it lists the known tasks
                raise ConfigError(f"{where}: {e}") from None
        if kind is dict:
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
        if key in LOSS_ALIASES:
            out.setdefault("losses", {})[LOSS_ALIASES[key]] = value
        elif key in WEIGHT_ALIASES:
            out.setdefault("task_weights", {})[WEIGHT_ALIASES[key]] = value
        elif key in _FIELDS:
            value = _coerce(key, value, where)
            if field_kind(key) is dict and key in out:
                out[key] = {**value, **out[key]}
            else:
                out[key] = value
        else:
            known = list(_FIELDS) + list(LOSS_ALIASES) + list(WEIGHT_ALIASES)
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
        for key in ("losses", "task_weights"):  # per-task tables merge
            if key in extra and key in values:
                extra[key] = {**values[key], **extra[key]}
        values.update(extra)
    return config_from_mapping(values, where=str(path) if path else "options")


def config_id(config: TrainConfig, init_identity: str | None = None, world_size: int = 1) -> str:
    """A stable id (12 hex digits) of what a configuration computes: every option but the seed
    and those in :data:`IDENTITY_IGNORED`. Runs of one configuration with different seeds share it.

    ``init_identity`` replaces ``init`` when the run starts from another run's folder (whose path
    differs per seed and machine): pass that run's own config id.

    ``world_size``: the processes that split each batch (torchrun). Where they change what a step
    computes, the id says so: without ``sync_bn`` BatchNorm normalises each process's share of the
    batch (``batchnorm_batch``), without ``ccc_global_batch`` VA's CCC too (``ccc_batch``). With
    both, a run on N processes computes what one process does and shares its id.
    """
    values = identity_values(config.to_dict(), world_size)
    if init_identity is not None:
        values["init"] = f"run:{init_identity}"
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=6).hexdigest()


def config_differences(saved: Mapping[str, Any], current: TrainConfig) -> list[str]:
    """Options of ``current`` that differ from a saved run config, ignoring those that may change
    on resume (device, workers...)."""
    now = current.to_dict()
    return sorted(k for k in now if k not in RESUME_MUTABLE and (k in saved or k in LEGACY_VALUES)
                  and saved_value(saved, k) != now[k])


def saved_value(saved: Mapping[str, Any], key: str) -> Any:
    """An option's value in a saved run config; an option added since (:data:`LEGACY_VALUES`) that
    the config lacks had its legacy value."""
    return saved.get(key, LEGACY_VALUES.get(key))
