"""The training loop: one function trains a uni- or multi-task run and writes its run record.

``train_run(config)`` loads the data and calls :func:`run_training`, which tests and other
callers can also use with in-memory data sets that follow the target contract
(``(image CxHxW, {"expr", "au", "va"})``).

Reproducibility: the data order of epoch ``e`` comes from ``DistributedSampler`` (a
``torch.Generator`` seeded with ``seed + e``), and each sample's augmentation draws from an RNG
seeded by ``(seed, epoch, index)``, so the result does not depend on the number of loader
workers and a resumed run repeats exactly what an uninterrupted one does.
"""
from __future__ import annotations

import math
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler
from tqdm.auto import tqdm

from ..losses import MultiTaskLoss, au_pos_weight, inverse_frequency_weights
from ..metrics import confusion_matrix, evaluate, tune_au_thresholds, valid_au, valid_expression
from ..model import AffectModel, ModelConfig, build_model
from ..records import CONFIG_FILE, MODEL_DIR, is_complete
from ..tasks import AU_NAMES, get_label_space, headline_metric
from . import checkpoint as ckpt
from . import distributed as dist_utils
from . import records_writer
from .config import TrainConfig, config_differences

Progress = Callable[[float, str], None]


class TrainingError(ValueError):
    """A run cannot start or continue as asked (printed as one line by the CLI)."""


# ------------------------------------------------------------------ data plumbing

class SeededSamples(Dataset):
    """View of ``base`` (optionally a subset) yielding ``(image, targets, position)``.

    Each sample is produced under a private torch RNG seeded by ``(seed, epoch, position)``:
    random augmentation is then the same whatever the worker count or resume point.
    """

    def __init__(self, base: Dataset, indices: Sequence[int] | None, seed: int):
        self.base = base
        self.indices = list(range(len(base))) if indices is None else [int(i) for i in indices]
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int):
        sample_seed = ((self.seed * 1_000_003 + self.epoch) * 1_000_003 + position) % (2**63)
        with torch.random.fork_rng(devices=[]):
            # The CPU generator only: torch.manual_seed also queues lazy CUDA/XPU/MTIA seeding with
            # a formatted stack trace, about 2 ms per sample (profiled in benchmarks/training_throughput.py).
            torch.default_generator.manual_seed(sample_seed)
            image, targets = self.base[self.indices[position]]
        return image, targets, position


class SkipSampler(Sampler[int]):
    """The first ``skip`` positions of ``sampler`` are dropped (mid-epoch resume)."""

    def __init__(self, sampler: Sampler[int], skip: int):
        self.sampler, self.skip = sampler, skip

    def __iter__(self) -> Iterator[int]:
        return iter(list(self.sampler)[self.skip:])

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.skip)  # type: ignore[arg-type]


def subset_indices(n: int, limit: int | None, seed: int) -> list[int] | None:
    """A seeded random subset of ``limit`` items (sorted), or None for all."""
    if limit is None or limit >= n:
        return None
    g = torch.Generator().manual_seed(seed)
    return sorted(torch.randperm(n, generator=g)[:limit].tolist())


def label_arrays(dataset: Dataset, indices: Sequence[int] | None) -> dict[str, np.ndarray]:
    """Labels of the (subset of the) training set, from ``dataset.labels`` when it has them."""
    labels = getattr(dataset, "labels", None)
    if isinstance(labels, Mapping) and all(k in labels for k in ("expr", "au", "va")):
        sel = slice(None) if indices is None else np.asarray(indices)
        return {k: np.asarray(labels[k])[sel] for k in ("expr", "au", "va")}
    ids = range(len(dataset)) if indices is None else indices  # slow path: read every sample
    items = [dataset[i][1] for i in ids]
    return {k: np.stack([np.asarray(t[k]) for t in items]) for k in ("expr", "au", "va")}


def loss_statistics(config: TrainConfig, labels: Mapping[str, np.ndarray]
                    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Class weights (EXPR) and per-AU pos_weight from the training labels, when a loss uses them."""
    class_weights = pos_weight = None
    if "expr" in config.tasks and config.losses["expr"] in ("weighted_ce", "focal"):
        n_classes = len(get_label_space(config.expression_space))
        expr = np.asarray(labels["expr"]).astype(int)
        expr = expr[valid_expression(expr, n_classes)]
        counts = np.bincount(expr, minlength=n_classes)
        class_weights = inverse_frequency_weights(counts.tolist())
        if config.losses["expr"] == "focal" and counts.min() == 0:
            class_weights = None  # alpha of an absent class would be 0: plain focal instead
    if "au" in config.tasks and config.losses["au"] in ("weighted_bce", "focal"):
        au = np.asarray(labels["au"], dtype=float)
        valid = valid_au(au)
        positives = ((au == 1) & valid).sum(axis=0)
        negatives = ((au == 0) & valid).sum(axis=0)
        pos_weight = au_pos_weight(positives.tolist(), negatives.tolist())
    return class_weights, pos_weight


# ------------------------------------------------------------------ model, optimizer, schedule

class TrainModule(nn.Module):
    """Model + loss in one module, so DDP also synchronises the uncertainty-weighting parameters."""

    def __init__(self, model: AffectModel, criterion: MultiTaskLoss, amp_dtype: torch.dtype | None = None,
                 channels_last: bool = False):
        super().__init__()
        self.model, self.criterion = model, criterion
        self.amp_dtype, self.channels_last = amp_dtype, channels_last

    def forward(self, images: torch.Tensor, targets: Mapping[str, torch.Tensor]):
        with torch.autocast(device_type=images.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            outputs = self.model(images)
        return self.criterion(outputs, targets)  # losses compute in float32


def build_optimizer(module: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Weight decay on weight matrices/kernels only (not biases, BatchNorm or task log-variances)."""
    decay, no_decay = [], []
    for p in module.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0)


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int,
                    total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Stepped once per optimizer step."""
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps))
    if config.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, config.step_epochs * steps_per_epoch),
                                               gamma=config.step_gamma)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def amp_dtype_for(device: torch.device, enabled: bool) -> torch.dtype | None:
    if device.type != "cuda" or not enabled:
        return None  # CPU autocast is slower than float32 on most CPUs
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _to_device(batch_targets: Mapping[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch_targets.items()}


def _valid_rows(targets: Mapping[str, torch.Tensor], tasks: Sequence[str], n_classes: int) -> dict[str, bool]:
    checks = {
        "expr": lambda t: bool(((t >= 0) & (t < n_classes)).any()),
        "au": lambda t: bool(((t == 0) | (t == 1)).any()),
        "va": lambda t: bool((torch.isfinite(t) & (t >= -1) & (t <= 1)).any()),
    }
    return {k: checks[k](targets[k]) for k in tasks}


def train_step(module: nn.Module, images: torch.Tensor, targets: Mapping[str, torch.Tensor],
               optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None = None
               ) -> tuple[float, dict[str, float]]:
    """One optimizer step; returns the total loss and each task's loss (floats)."""
    total, parts = module(images, targets)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None and scaler.is_enabled():
        scaler.scale(total).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        total.backward()
        optimizer.step()
    return float(total.detach()), {k: float(v.detach()) for k, v in parts.items()}


@torch.no_grad()
def predict(model: AffectModel, loader: DataLoader, device: torch.device, amp_dtype: torch.dtype | None = None,
            channels_last: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Positions, outputs (EXPR probabilities, AU probabilities, VA values) and targets as arrays."""
    was_training = model.training
    model.eval()
    positions, outputs, targets = [], {k: [] for k in model.tasks}, {k: [] for k in ("expr", "au", "va")}
    for images, batch_targets, pos in loader:
        images = images.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            out = model(images)
        for k, v in out.items():
            v = v.float()
            v = F.softmax(v, dim=1) if k == "expr" else torch.sigmoid(v) if k == "au" else v
            outputs[k].append(v.cpu().numpy())
        for k in targets:
            targets[k].append(batch_targets[k].numpy())
        positions.append(np.asarray(pos))
    model.train(was_training)
    cat = lambda parts: np.concatenate(parts) if parts else np.zeros((0,))  # noqa: E731
    return cat(positions), {k: cat(v) for k, v in outputs.items()}, {k: cat(v) for k, v in targets.items()}


def score(outputs: Mapping[str, np.ndarray], targets: Mapping[str, np.ndarray], tasks: Sequence[str],
          expression_space: str) -> dict[str, Any]:
    """ABAW metrics of one validation pass. P_AU uses per-AU thresholds tuned on these predictions
    (DESIGN.md §4); ``P_AU_at_0.5`` is the untuned score."""
    thresholds = None
    if "au" in tasks:
        thresholds = tune_au_thresholds(outputs["au"], targets["au"])
    metrics = evaluate({k: outputs[k] for k in tasks}, targets, expression_space, au_thresholds=thresholds)
    if "au" in tasks:
        metrics["P_AU_at_0.5"] = evaluate({"au": outputs["au"]}, {"au": targets["au"]})["P_AU"]
        metrics["au_thresholds"] = dict(zip(AU_NAMES, [float(t) for t in thresholds]))
    if "expr" in tasks:
        n_classes = len(get_label_space(expression_space))
        metrics["confusion_matrix"] = confusion_matrix(outputs["expr"], targets["expr"], n_classes).tolist()
    return _plain(metrics)


def _plain(obj: Any) -> Any:
    """numpy scalars/arrays to Python (checkpoints load with weights_only=True; JSON writes)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj


# ------------------------------------------------------------------ run state

@dataclass
class RunState:
    """Counters and bookkeeping carried in a checkpoint."""

    epoch: int = 0                  # completed epochs
    step: int = 0                   # optimizer steps done
    step_in_epoch: int = 0          # steps done in the epoch under way (mid-epoch checkpoints)
    epoch_sums: list[float] = field(default_factory=list)   # partial loss sums of that epoch
    history: list[dict[str, Any]] = field(default_factory=list)
    best_score: float = -math.inf
    best_epoch: int = 0
    best_metrics: dict[str, Any] = field(default_factory=dict)
    train_time_s: float = 0.0       # wall time of all sessions (training + validation)
    step_time_s: float = 0.0        # time spent in training epochs only (throughput)
    images_seen: int = 0

    def to_dict(self) -> dict[str, Any]:
        return _plain(self.__dict__.copy())


def _pretrained_from(init: str) -> str | None:
    """The name of the run whose backbone initialises this one (a folder with config.json + model/)."""
    path = Path(init)
    if init in ("random", "imagenet") or not path.is_dir():
        return None
    if (path / CONFIG_FILE).is_file() and (path / MODEL_DIR).is_dir():
        return path.name
    return None


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


# ------------------------------------------------------------------ entry points

def load_datasets(config: TrainConfig, model_config: ModelConfig) -> tuple[Dataset, Dataset, dict[str, Any]]:
    """Training and validation sets of ``config.data`` via :mod:`affectmodel.data`."""
    from ..data import build_transform, load_affwild2

    if not config.data:
        raise TrainingError("no data folder given (--data ROOT)")
    common = dict(tasks=config.tasks, source=config.data_source, expression_space=config.expression_space)
    train = load_affwild2(config.data, split="train", transform=build_transform(config.augment, model_config, True),
                          **common)
    val = load_affwild2(config.data, split="validation", transform=build_transform("none", model_config, False),
                        **common)
    info = {"name": getattr(train, "dataset_name", "aff-wild2"), "synthetic": bool(getattr(train, "synthetic", False)),
            "root": str(config.data), "source": getattr(train, "stats", {}).get("source", config.data_source)}
    return train, val, info


def train_run(config: TrainConfig, progress: Progress | None = None) -> Path:
    """Train one run as ``config`` says and write its run record; returns the run folder.

    ``progress(fraction, message)`` is called on the main process after each step and epoch.
    Under torchrun every process calls this; rank 0 writes the files.
    """
    info = dist_utils.setup(config.device)
    if _check_run_folder(config) is None:
        return Path(config.out)  # complete already (and resume asked): nothing to load
    model_config = model_config_for(config)
    train, val, dataset = load_datasets(config, model_config)
    return run_training(config, train, val, dataset, progress=progress, dist_info=info)


def model_config_for(config: TrainConfig) -> ModelConfig:
    return ModelConfig(tasks=list(config.tasks), expression_space=config.expression_space,
                       input_size=config.image_size, dropout=config.dropout)


def _check_run_folder(config: TrainConfig) -> bool | None:
    """True: resume from the checkpoint; False: start; None: the run is complete (and resume was
    asked). Raises when the folder holds something that must not be overwritten."""
    if not config.out:
        raise TrainingError("no run folder given (--out runs/SUITE/NAME)")
    run_dir = Path(config.out)
    if is_complete(run_dir):
        if config.resume:
            return None
        raise TrainingError(f"{run_dir} already holds a complete run: choose another --out or delete it")
    if ckpt.checkpoint_path(run_dir).is_file():
        if not config.resume:
            raise TrainingError(f"{run_dir} holds an unfinished run: pass --resume to continue it, "
                                "or choose another --out")
        saved = records_writer.read_config(run_dir)
        changed = config_differences(saved, config)
        if changed:
            now = config.to_dict()
            raise TrainingError(f"cannot resume {run_dir}: options differ from the interrupted run: "
                                + ", ".join(f"{k} ({saved[k]!r} -> {now[k]!r})" for k in changed))
        return True
    if (run_dir / CONFIG_FILE).is_file() and not config.resume:
        raise TrainingError(f"{run_dir} already holds a run record: choose another --out or delete it")
    return False


def run_training(config: TrainConfig, train_set: Dataset, val_set: Dataset, dataset: Mapping[str, Any],
                 progress: Progress | None = None, dist_info: dist_utils.DistInfo | None = None) -> Path:
    """Train on data sets that follow the target contract and write the run record; returns its folder.

    ``dataset`` describes the data for the record (``name``, ``synthetic``, ...).
    """
    info = dist_info or dist_utils.setup(config.device)
    resuming = _check_run_folder(config)
    if resuming is None:
        return Path(config.out)
    if config.batch_size % info.world_size:
        raise TrainingError(f"batch size {config.batch_size} is not divisible by {info.world_size} processes")
    trainer = _Trainer(config, train_set, val_set, dict(dataset), info, progress)
    if resuming:
        trainer.restore()
    else:
        trainer.start_record()
    return trainer.run()


class _Trainer:
    """One training session of one run: built from the config, then :meth:`run`."""

    def __init__(self, config: TrainConfig, train_set: Dataset, val_set: Dataset, dataset: dict[str, Any],
                 info: dist_utils.DistInfo, progress: Progress | None):
        self.config, self.info, self.dataset, self.progress = config, info, dataset, progress
        self.run_dir = Path(config.out)
        self.device = info.device
        if config.threads:
            torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        np.random.seed(config.seed % 2**32)
        random.seed(config.seed)
        self.model_config = model_config_for(config)
        self.tasks = list(config.tasks)
        self.n_classes = len(get_label_space(config.expression_space))
        self.headline = headline_metric(config.tasks)

        # Data: seeded subsets, per-sample seeded augmentation.
        train_indices = subset_indices(len(train_set), config.limit_train, config.seed)
        val_indices = subset_indices(len(val_set), config.limit_val, config.seed + 1)
        self.train_view = SeededSamples(train_set, train_indices, config.seed)
        self.val_view = SeededSamples(val_set, val_indices, config.seed)
        if len(self.train_view) == 0 or len(self.val_view) == 0:
            which = "training" if len(self.train_view) == 0 else "validation"
            raise TrainingError(f"empty {which} set in {config.data or 'the given data'}")

        # Model + loss (class statistics from the training subset) in one module for DDP.
        class_weights, pos_weight = loss_statistics(config, label_arrays(train_set, train_indices))
        criterion = MultiTaskLoss(config.tasks, config.loss_config(), class_weights, pos_weight)
        self.use_cuda = self.device.type == "cuda"
        self.amp_dtype = amp_dtype_for(self.device, config.amp)
        model = build_model(self.model_config, config.init)
        self.module = TrainModule(model, criterion, self.amp_dtype, channels_last=self.use_cuda).to(self.device)
        if self.use_cuda:
            self.module.model.to(memory_format=torch.channels_last)
            torch.backends.cudnn.benchmark = True
        self.wrapped: nn.Module = self.module
        if info.distributed:
            self.wrapped = DistributedDataParallel(self.module, device_ids=[self.device.index] if self.use_cuda else None)

        # The global batch is split over processes; the sampler orders epoch e with seed + e.
        self.batch = config.batch_size // info.world_size
        self.sampler = DistributedSampler(self.train_view, num_replicas=info.world_size, rank=info.rank,
                                          shuffle=True, seed=config.seed, drop_last=False)
        per_rank = len(self.sampler)
        self.drop_last = per_rank >= self.batch
        if not self.drop_last and per_rank < 2:
            raise TrainingError("the training set is too small for batch normalisation (2 images per process)")
        self.steps_per_epoch = per_rank // self.batch if self.drop_last else 1
        self.total_steps = self.steps_per_epoch * config.epochs
        if config.max_steps is not None:
            self.total_steps = min(self.total_steps, config.max_steps)
        self.n_epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        self.loader_kw = dict(num_workers=config.workers, pin_memory=self.use_cuda, persistent_workers=False)
        self.val_loader = DataLoader(self.val_view, batch_size=self.batch,
                                     sampler=list(range(info.rank, len(self.val_view), info.world_size)),
                                     generator=torch.Generator().manual_seed(config.seed), **self.loader_kw)

        self.optimizer = build_optimizer(self.module, config)
        self.scheduler = build_scheduler(self.optimizer, config, self.steps_per_epoch, self.total_steps)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.state = RunState()
        self.pretrained_from = _pretrained_from(config.init)
        self.columns = records_writer.history_columns(config.tasks, config.multi_task)
        if "au" in config.tasks:
            self.columns.insert(self.columns.index("time_s"), "val_P_AU_at_0.5")
        # Only rank 0 draws bars; leaving `disable` unset there lets TQDM_DISABLE=1 silence them.
        self.bar_kw: dict[str, Any] = {"dynamic_ncols": True} if info.is_main else {"disable": True}
        self.session_start = time.perf_counter()
        self.base_train_time = 0.0

    # ------------------------------------------------------------------ record and checkpoints

    def start_record(self) -> None:
        """config.json: the resolved options, data set, label spaces and code version."""
        if self.info.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            record = self.config.to_dict()
            record.update({
                "code_version": records_writer.code_version(),
                "label_spaces": records_writer.label_spaces(self.config.tasks, self.config.expression_space),
                "dataset": {**self.dataset, "train_size": len(self.train_view), "val_size": len(self.val_view),
                            "train_split": "train", "val_split": "validation"},
                "pretrained_from": self.pretrained_from,
                "model": {k: v for k, v in self.model_config.__dict__.items() if k != "labels"},
                "world_size": self.info.world_size,
            })
            records_writer.write_config(self.run_dir, record)
        dist_utils.barrier(self.info)

    def restore(self) -> None:
        saved = ckpt.load_checkpoint(ckpt.checkpoint_path(self.run_dir))
        self.module.load_state_dict(saved["module"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.scaler.load_state_dict(saved["scaler"])
        self.state = RunState(**saved["state"])
        ckpt.restore_rng_state(saved["rng"])
        if not self.info.is_main:
            self.state.epoch_sums = []  # rank 0 alone carries the (already reduced) partial sums
        self.base_train_time = self.state.train_time_s

    def elapsed(self) -> float:
        return self.base_train_time + (time.perf_counter() - self.session_start)

    def save_checkpoint(self, sums: list[float]) -> None:
        """``sums``: the reduced loss sums of the epoch under way (empty at an epoch's end)."""
        self.state.epoch_sums = sums
        self.state.train_time_s = self.elapsed()
        if self.info.is_main:
            ckpt.save_checkpoint(ckpt.checkpoint_path(self.run_dir), {
                "module": self.module.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "rng": ckpt.capture_rng_state(), "state": self.state.to_dict(), "config": self.config.to_dict(),
            })
        dist_utils.barrier(self.info)

    # ------------------------------------------------------------------ the loop

    def run(self) -> Path:
        state = self.state
        epoch_bar = tqdm(total=self.n_epochs, initial=state.epoch, desc=self.run_dir.name or "train", unit="epoch",
                         **self.bar_kw)
        try:
            while state.step < self.total_steps:
                epoch_start = time.perf_counter()
                sums = self.train_epoch()
                metrics = self.validate()
                row = self.end_epoch(sums, metrics)
                summary = _summary_line(state, self.n_epochs, row, self.tasks, metrics, self.headline,
                                        state.best_epoch == state.epoch, time.perf_counter() - epoch_start)
                epoch_bar.update(1)
                if self.info.is_main:
                    tqdm.write(summary)
                    if self.progress:
                        self.progress(state.step / self.total_steps, summary)
        finally:
            epoch_bar.close()
        if self.info.is_main:
            self.finish()
        dist_utils.barrier(self.info)
        if self.progress and self.info.is_main:
            self.progress(1.0, f"done: {self.headline} {state.best_score:.3f} (epoch {state.best_epoch})")
        return self.run_dir

    def train_epoch(self) -> list[float]:
        """Train until the epoch (or max_steps) ends; returns loss sums reduced over processes:
        ``[total, (task sum, task steps) per task..., steps]``."""
        state, config = self.state, self.config
        epoch = state.epoch
        self.train_view.epoch = epoch
        self.sampler.set_epoch(epoch)
        skip = state.step_in_epoch * self.batch  # mid-epoch resume
        # Own generator: creating the loader must not draw from the global RNG (resume exactness).
        loader = DataLoader(self.train_view, batch_size=self.batch, drop_last=self.drop_last,
                            sampler=SkipSampler(self.sampler, skip) if skip else self.sampler,
                            generator=torch.Generator().manual_seed(config.seed + epoch), **self.loader_kw)
        steps_this_epoch = min(self.steps_per_epoch, self.total_steps - (state.step - state.step_in_epoch))
        sums = list(state.epoch_sums) or [0.0] * (2 + 2 * len(self.tasks))
        self.module.train()
        bar = tqdm(total=steps_this_epoch, initial=state.step_in_epoch, desc=f"epoch {epoch + 1}/{self.n_epochs}",
                   unit="step", leave=False, **self.bar_kw)
        segment_start = time.perf_counter()
        for images, targets, _ in loader:
            if state.step_in_epoch >= steps_this_epoch:
                break
            images = images.to(self.device, non_blocking=True)
            if self.use_cuda:
                images = images.contiguous(memory_format=torch.channels_last)
            targets = _to_device(targets, self.device)
            valid = _valid_rows(targets, self.tasks, self.n_classes)
            loss, parts = train_step(self.wrapped, images, targets, self.optimizer, self.scaler)
            self.scheduler.step()
            state.step += 1
            state.step_in_epoch += 1
            state.images_seen += images.shape[0] * self.info.world_size
            sums[0] += loss
            for i, t in enumerate(self.tasks):
                if valid[t]:  # a batch without labels for a task says nothing about its loss
                    sums[1 + 2 * i] += parts[t]
                    sums[2 + 2 * i] += 1
            sums[-1] += 1
            bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
            bar.update(1)
            if config.checkpoint_every and state.step % config.checkpoint_every == 0 \
                    and state.step_in_epoch < steps_this_epoch:
                state.step_time_s += time.perf_counter() - segment_start
                reduced = dist_utils.all_reduce_sum(sums, self.info)
                self.save_checkpoint(reduced)
                sums = list(reduced) if self.info.is_main else [0.0] * len(sums)
                segment_start = time.perf_counter()
            if self.progress and self.info.is_main:
                self.progress(state.step / self.total_steps, f"epoch {epoch + 1}/{self.n_epochs} step "
                              f"{state.step_in_epoch}/{steps_this_epoch} loss {loss:.3f}")
        bar.close()
        state.step_time_s += time.perf_counter() - segment_start
        return dist_utils.all_reduce_sum(sums, self.info)

    def validate(self) -> dict[str, Any]:
        """Every rank scores its shard; outputs are gathered so all ranks agree on the best epoch."""
        positions, outputs, targets = predict(self.module.model, self.val_loader, self.device, self.amp_dtype,
                                              self.use_cuda)
        arrays = {**{f"o_{k}": v for k, v in outputs.items()}, **{f"t_{k}": v for k, v in targets.items()}}
        _, merged = dist_utils.gather_arrays(positions, arrays, self.info)
        return score({k[2:]: v for k, v in merged.items() if k.startswith("o_")},
                     {k[2:]: v for k, v in merged.items() if k.startswith("t_")},
                     self.config.tasks, self.config.expression_space)

    def end_epoch(self, sums: list[float], metrics: dict[str, Any]) -> dict[str, Any]:
        """History row, best weights, checkpoint."""
        state = self.state
        state.epoch += 1
        state.step_in_epoch = 0
        row: dict[str, Any] = {"epoch": state.epoch, "step": state.step, "lr": self.optimizer.param_groups[0]["lr"],
                               "train_loss": sums[0] / max(1.0, sums[-1])}
        for i, t in enumerate(self.tasks):
            row[f"train_loss_{t}"] = sums[1 + 2 * i] / sums[2 + 2 * i] if sums[2 + 2 * i] else None
        for key in ("P_EXPR", "P_AU", "P_VA", "P_MTL", "ccc_valence", "ccc_arousal", "P_AU_at_0.5"):
            if key in metrics:
                row[f"val_{key}"] = metrics[key]
        current = float(metrics.get(self.headline, 0.0))
        if current > state.best_score:
            state.best_score, state.best_epoch, state.best_metrics = current, state.epoch, metrics
            if self.info.is_main:
                ckpt.save_weights(ckpt.best_weights_path(self.run_dir), ckpt.cpu_state_dict(self.module.model))
        row["time_s"] = self.elapsed()
        state.history.append(_plain(row))
        if self.info.is_main:
            records_writer.write_history(self.run_dir, state.history, self.columns)
        self.save_checkpoint([])
        return row

    def finish(self) -> None:
        """Best weights + tuned AU thresholds into model/, then metrics.json (last), then tidy up."""
        config, state = self.config, self.state
        final = AffectModel(ModelConfig(**{k: v for k, v in self.model_config.__dict__.items() if k != "labels"}))
        final.load_state_dict(ckpt.load_weights(ckpt.best_weights_path(self.run_dir)), strict=True)
        best = dict(state.best_metrics)
        if "au" in config.tasks and "au_thresholds" in best:
            final.config.au_thresholds = [float(best["au_thresholds"][a]) for a in AU_NAMES]
        records_writer.write_model(self.run_dir, final)
        metrics = {
            "tasks": list(config.tasks),
            "multi_task": config.multi_task,
            "headline_metric": self.headline,
            "dataset": {"name": self.dataset.get("name"), "synthetic": bool(self.dataset.get("synthetic")),
                        "split": "validation"},
            **best,
            "best_epoch": state.best_epoch,
            "epochs": state.epoch,
            "steps": state.step,
            "parameters": final.num_parameters(),
            "train_time_s": round(state.train_time_s, 3),
            "images_per_second": round(state.images_seen / state.step_time_s, 2) if state.step_time_s else None,
            "images_seen": state.images_seen,
            "device": _device_name(self.device),
            "world_size": self.info.world_size,
            "pretrained_from": self.pretrained_from,
        }
        records_writer.write_metrics(self.run_dir, metrics)
        shutil.rmtree(self.run_dir / ckpt.CHECKPOINT_DIR, ignore_errors=True)  # optimizer state: not needed now


def _summary_line(state: RunState, n_epochs: int, row: Mapping[str, Any], tasks: Sequence[str],
                  metrics: Mapping[str, Any], headline: str, is_best: bool, seconds: float) -> str:
    losses = " ".join(f"{t} {row[f'train_loss_{t}']:.3f}" for t in tasks if row.get(f"train_loss_{t}") is not None)
    shown = [m for m in ("P_EXPR", "P_AU", "P_VA", "P_MTL") if m in metrics]
    scores = " ".join(f"{m} {metrics[m]:.3f}" for m in shown)
    return (f"epoch {state.epoch}/{n_epochs}: loss {row['train_loss']:.3f}"
            + (f" ({losses})" if len(tasks) > 1 and losses else "")
            + f" | val {scores}{' *best' if is_best else ''} | lr {row['lr']:.2e} | {seconds:.1f}s")
