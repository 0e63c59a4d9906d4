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
from ..metrics import (confusion_matrix, evaluate, tune_au_thresholds, valid_au, valid_expression,
                       valid_va)
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
            torch.manual_seed(sample_seed)
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
    model_config = model_config_for(config)
    train, val, dataset = load_datasets(config, model_config)
    return run_training(config, train, val, dataset, progress=progress, dist_info=info)


def model_config_for(config: TrainConfig) -> ModelConfig:
    return ModelConfig(tasks=list(config.tasks), expression_space=config.expression_space,
                       input_size=config.image_size, dropout=config.dropout)


def _check_run_folder(run_dir: Path, config: TrainConfig) -> bool:
    """Whether to resume from a checkpoint; raises when the folder holds something else."""
    last = ckpt.checkpoint_path(run_dir)
    if last.is_file():
        if not config.resume:
            raise TrainingError(f"{run_dir} holds an unfinished run: pass --resume to continue it, "
                                "or choose another --out")
        return True
    if (run_dir / CONFIG_FILE).is_file() and not config.resume:
        raise TrainingError(f"{run_dir} already holds a run record: choose another --out or delete it")
    return False


def run_training(config: TrainConfig, train_set: Dataset, val_set: Dataset, dataset: Mapping[str, Any],
                 progress: Progress | None = None, dist_info: dist_utils.DistInfo | None = None) -> Path:
    """Train on in-memory data sets that follow the target contract; write the run record."""
    info = dist_info or dist_utils.setup(config.device)
    if not config.out:
        raise TrainingError("no run folder given (--out runs/SUITE/NAME)")
    run_dir = Path(config.out)
    if is_complete(run_dir):
        if config.resume:
            return run_dir
        raise TrainingError(f"{run_dir} already holds a complete run: choose another --out or delete it")
    resuming = _check_run_folder(run_dir, config)
    if resuming:
        saved_config = records_writer.read_config(run_dir)
        changed = config_differences(saved_config, config)
        if changed:
            raise TrainingError(f"cannot resume {run_dir}: options differ from the interrupted run: "
                                + ", ".join(f"{k} ({saved_config[k]!r} -> {config.to_dict()[k]!r})" for k in changed))
    if config.batch_size % info.world_size:
        raise TrainingError(f"batch size {config.batch_size} is not divisible by {info.world_size} processes")

    device = info.device
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed % 2**32)
    random.seed(config.seed)
    model_config = model_config_for(config)
    model = build_model(model_config, config.init)
    n_classes = len(get_label_space(config.expression_space))

    train_indices = subset_indices(len(train_set), config.limit_train, config.seed)
    val_indices = subset_indices(len(val_set), config.limit_val, config.seed + 1)
    train_view = SeededSamples(train_set, train_indices, config.seed)
    val_view = SeededSamples(val_set, val_indices, config.seed)
    if len(train_view) == 0 or len(val_view) == 0:
        raise TrainingError(f"empty {'training' if len(train_view) == 0 else 'validation'} set in {config.data}")
    class_weights, pos_weight = loss_statistics(config, label_arrays(train_set, train_indices))
    criterion = MultiTaskLoss(config.tasks, config.loss_config(), class_weights, pos_weight)

    use_cuda = device.type == "cuda"
    amp_dtype = amp_dtype_for(device, config.amp)
    module = TrainModule(model, criterion, amp_dtype, channels_last=use_cuda).to(device)
    if use_cuda:
        module.model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    wrapped: nn.Module = module
    if info.distributed:
        wrapped = DistributedDataParallel(module, device_ids=[device.index] if use_cuda else None)

    # Data: global batch split over processes; the sampler gives the seeded order of each epoch.
    per_rank_batch = config.batch_size // info.world_size
    sampler = DistributedSampler(train_view, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                                 seed=config.seed, drop_last=False)
    per_rank_n = len(sampler)
    drop_last = per_rank_n >= per_rank_batch
    steps_per_epoch = per_rank_n // per_rank_batch if drop_last else 1
    if not drop_last and per_rank_n < 2:
        raise TrainingError("the training set is too small for batch normalisation (needs 2 images per process)")
    total_steps = steps_per_epoch * config.epochs
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    n_epochs = math.ceil(total_steps / steps_per_epoch)
    loader_kw = dict(num_workers=config.workers, pin_memory=use_cuda, persistent_workers=False)
    val_positions = list(range(info.rank, len(val_view), info.world_size))
    val_loader = DataLoader(val_view, batch_size=per_rank_batch, sampler=val_positions,
                            generator=torch.Generator().manual_seed(config.seed), **loader_kw)

    optimizer = build_optimizer(module, config)
    scheduler = build_scheduler(optimizer, config, steps_per_epoch, total_steps)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)

    state = RunState()
    if resuming:
        saved = ckpt.load_checkpoint(ckpt.checkpoint_path(run_dir))
        module.load_state_dict(saved["module"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        scaler.load_state_dict(saved["scaler"])
        state = RunState(**saved["state"])
        ckpt.restore_rng_state(saved["rng"])
        if not info.is_main:
            state.epoch_sums = []  # rank 0 carries the (already reduced) partial sums
    pretrained_from = _pretrained_from(config.init)
    if info.is_main and not resuming:
        run_dir.mkdir(parents=True, exist_ok=True)
        record = config.to_dict()
        record.update({
            "code_version": records_writer.code_version(),
            "label_spaces": records_writer.label_spaces(config.tasks, config.expression_space),
            "dataset": {**dict(dataset), "train_size": len(train_view), "val_size": len(val_view),
                        "train_split": "train", "val_split": "validation"},
            "pretrained_from": pretrained_from,
            "model": {k: v for k, v in model_config.__dict__.items() if k != "labels"},
            "world_size": info.world_size,
        })
        records_writer.write_config(run_dir, record)
    dist_utils.barrier(info)

    headline = headline_metric(config.tasks)
    columns = records_writer.history_columns(config.tasks, config.multi_task)
    if "au" in config.tasks:
        columns.insert(columns.index("time_s"), "val_P_AU_at_0.5")
    task_list = list(config.tasks)
    n_sums = 1 + 2 * len(task_list)  # total loss, then (sum, count) per task, plus step count below
    session_start = time.perf_counter()
    base_train_time = state.train_time_s

    def save_state(current_step_in_epoch: int, sums: list[float]) -> None:
        state.step_in_epoch = current_step_in_epoch
        state.epoch_sums = sums
        state.train_time_s = base_train_time + (time.perf_counter() - session_start)
        if info.is_main:
            ckpt.save_checkpoint(ckpt.checkpoint_path(run_dir), {
                "module": module.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                "rng": ckpt.capture_rng_state(), "state": state.to_dict(), "config": config.to_dict(),
            })
        dist_utils.barrier(info)

    # Only rank 0 draws bars; leaving `disable` unset there lets TQDM_DISABLE=1 silence them.
    bar_kw: dict[str, Any] = {"dynamic_ncols": True} if info.is_main else {"disable": True}
    epoch_bar = tqdm(total=n_epochs, initial=state.epoch, desc=run_dir.name or "train", unit="epoch", **bar_kw)
    try:
        while state.step < total_steps:
            epoch = state.epoch
            train_view.epoch = epoch
            sampler.set_epoch(epoch)
            skip = state.step_in_epoch * per_rank_batch
            # Own generator: creating the loader must not draw from the global RNG (resume exactness).
            loader = DataLoader(train_view, batch_size=per_rank_batch, drop_last=drop_last,
                                sampler=SkipSampler(sampler, skip) if skip else sampler,
                                generator=torch.Generator().manual_seed(config.seed + epoch), **loader_kw)
            steps_this_epoch = min(steps_per_epoch, total_steps - (state.step - state.step_in_epoch))
            # sums = [total, (task sum, task count)..., steps]; carried over a mid-epoch resume
            sums = list(state.epoch_sums) or [0.0] * (n_sums + 1)
            epoch_start = segment_start = time.perf_counter()
            module.train()
            step_bar = tqdm(total=steps_this_epoch, initial=state.step_in_epoch, desc=f"epoch {epoch + 1}/{n_epochs}",
                            unit="step", leave=False, **bar_kw)
            for images, targets, _ in loader:
                if state.step_in_epoch >= steps_this_epoch:
                    break
                images = images.to(device, non_blocking=True)
                if use_cuda:
                    images = images.contiguous(memory_format=torch.channels_last)
                targets = _to_device(targets, device)
                valid = _valid_rows(targets, task_list, n_classes)
                loss, parts = train_step(wrapped, images, targets, optimizer, scaler)
                scheduler.step()
                state.step += 1
                state.step_in_epoch += 1
                state.images_seen += images.shape[0] * info.world_size
                sums[0] += loss
                for i, t in enumerate(task_list):
                    if valid[t]:
                        sums[1 + 2 * i] += parts[t]
                        sums[2 + 2 * i] += 1
                sums[-1] += 1
                step_bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
                step_bar.update(1)
                if config.checkpoint_every and state.step % config.checkpoint_every == 0 \
                        and state.step_in_epoch < steps_this_epoch:
                    state.step_time_s += time.perf_counter() - segment_start
                    reduced = dist_utils.all_reduce_sum(sums, info)
                    save_state(state.step_in_epoch, reduced)
                    # After a resume rank 0 alone carries the reduced sums; mirror that here.
                    sums = list(reduced) if info.is_main else [0.0] * len(sums)
                    segment_start = time.perf_counter()
                if progress and info.is_main:
                    progress(state.step / total_steps,
                             f"epoch {epoch + 1}/{n_epochs} step {state.step_in_epoch}/{steps_this_epoch} "
                             f"loss {loss:.3f}")
            step_bar.close()
            state.step_time_s += time.perf_counter() - segment_start
            sums = dist_utils.all_reduce_sum(sums, info)

            # Validation on every rank's shard, gathered everywhere so all ranks agree on "best".
            positions, outputs, targets_np = predict(module.model, val_loader, device, amp_dtype, use_cuda)
            positions, merged = dist_utils.gather_arrays(positions, {**{f"o_{k}": v for k, v in outputs.items()},
                                                                    **{f"t_{k}": v for k, v in targets_np.items()}},
                                                         info)
            metrics = score({k[2:]: v for k, v in merged.items() if k.startswith("o_")},
                            {k[2:]: v for k, v in merged.items() if k.startswith("t_")},
                            config.tasks, config.expression_space)
            state.epoch = epoch + 1
            row: dict[str, Any] = {"epoch": state.epoch, "step": state.step, "lr": optimizer.param_groups[0]["lr"],
                                   "train_loss": sums[0] / max(1.0, sums[-1])}
            for i, t in enumerate(task_list):
                row[f"train_loss_{t}"] = sums[1 + 2 * i] / sums[2 + 2 * i] if sums[2 + 2 * i] else None
            for key in ("P_EXPR", "P_AU", "P_VA", "P_MTL", "ccc_valence", "ccc_arousal", "P_AU_at_0.5"):
                if key in metrics:
                    row[f"val_{key}"] = metrics[key]
            current = float(metrics.get(headline, 0.0))
            is_best = current > state.best_score
            if is_best:
                state.best_score, state.best_epoch, state.best_metrics = current, state.epoch, metrics
                if info.is_main:
                    ckpt.save_weights(ckpt.best_weights_path(run_dir), ckpt.cpu_state_dict(module.model))
            row["time_s"] = base_train_time + (time.perf_counter() - session_start)
            state.history.append(_plain(row))
            if info.is_main:
                records_writer.write_history(run_dir, state.history, columns)
            save_state(0, [])
            summary = _summary_line(state, n_epochs, row, task_list, metrics, headline, is_best,
                                    time.perf_counter() - epoch_start)
            if info.is_main:
                tqdm.write(summary)
            epoch_bar.update(1)
            if progress and info.is_main:
                progress(state.step / total_steps, summary)
    finally:
        epoch_bar.close()

    if info.is_main:
        _finish(run_dir, config, model_config, state, dataset, pretrained_from, info)
    dist_utils.barrier(info)
    if progress and info.is_main:
        progress(1.0, f"done: {headline} {state.best_score:.3f} (epoch {state.best_epoch})")
    return run_dir


def _summary_line(state: RunState, n_epochs: int, row: Mapping[str, Any], tasks: Sequence[str],
                  metrics: Mapping[str, Any], headline: str, is_best: bool, seconds: float) -> str:
    losses = " ".join(f"{t} {row[f'train_loss_{t}']:.3f}" for t in tasks if row.get(f"train_loss_{t}") is not None)
    shown = [m for m in ("P_EXPR", "P_AU", "P_VA", "P_MTL") if m in metrics]
    scores = " ".join(f"{m} {metrics[m]:.3f}" for m in shown)
    return (f"epoch {state.epoch}/{n_epochs}: loss {row['train_loss']:.3f}"
            + (f" ({losses})" if len(tasks) > 1 and losses else "")
            + f" | val {scores}{' *best' if is_best else ''} | lr {row['lr']:.2e} | {seconds:.1f}s")


def _finish(run_dir: Path, config: TrainConfig, model_config: ModelConfig, state: RunState,
            dataset: Mapping[str, Any], pretrained_from: str | None, info: dist_utils.DistInfo) -> None:
    """Best weights + tuned AU thresholds into model/, then metrics.json (last), then tidy up."""
    final = AffectModel(ModelConfig(**{k: v for k, v in model_config.__dict__.items() if k != "labels"}))
    final.load_state_dict(ckpt.load_weights(ckpt.best_weights_path(run_dir)), strict=True)
    best = dict(state.best_metrics)
    if "au" in config.tasks and "au_thresholds" in best:
        final.config.au_thresholds = [float(best["au_thresholds"][a]) for a in AU_NAMES]
    records_writer.write_model(run_dir, final)
    metrics = {
        "tasks": list(config.tasks),
        "multi_task": config.multi_task,
        "headline_metric": headline_metric(config.tasks),
        "dataset": {"name": dataset.get("name"), "synthetic": bool(dataset.get("synthetic")), "split": "validation"},
        **best,
        "best_epoch": state.best_epoch,
        "epochs": state.epoch,
        "steps": state.step,
        "parameters": final.num_parameters(),
        "train_time_s": round(state.train_time_s, 3),
        "images_per_second": round(state.images_seen / state.step_time_s, 2) if state.step_time_s else None,
        "images_seen": state.images_seen,
        "device": _device_name(info.device),
        "world_size": info.world_size,
        "pretrained_from": pretrained_from,
    }
    records_writer.write_metrics(run_dir, metrics)
    shutil.rmtree(run_dir / ckpt.CHECKPOINT_DIR, ignore_errors=True)  # optimizer state: no longer needed
