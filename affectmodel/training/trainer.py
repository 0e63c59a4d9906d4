"""The trainer: one function trains a uni- or multi-task run and writes its run record.

``train_run(config)`` loads the data and calls :func:`run_training`, which tests and other
callers can also use with in-memory data sets that follow the target contract
(``(image CxHxW, {"expr", "au", "va"})``). A :class:`Trainer` is one session of one run: built
from the config (:meth:`Trainer.setup_data`, :meth:`Trainer.setup_model`,
:meth:`Trainer.setup_schedule`), then :meth:`Trainer.run`; resumable from its checkpoint.

Reproducibility: see :mod:`.batches` (seeded per-sample augmentation, epoch-seeded order).
"""
from __future__ import annotations

import contextlib
import math
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from ..locking import run_folder_lock
from ..losses import MultiTaskLoss
from ..model import AffectModel, ModelConfig, build_model
from ..records import CONFIG_FILE, MODEL_DIR, is_complete
from ..tasks import AU_NAMES, get_label_space, headline_metric
from . import checkpoint as ckpt
from . import distributed as dist_utils
from . import precision, records_writer
from .batches import (CachedSamples, EpochSampler, SeededSamples, build_train_sampler, is_frame_cache, label_arrays,
                      load_datasets, loss_statistics, passthrough, subset_indices)
from .config import TrainConfig, TrainingError, config_differences
from .console import RunConsole, step_count_note, summary_line
from .evaluation import plain, predict, score
from .optim import build_optimizer, build_scheduler
from .step import TrainModule, labels_present, step_on_device, to_device

# The loss shown on the progress bar is read back from the device every LOG_EVERY steps only
# (each read is a host-device synchronisation that stalls the GPU's queue).
LOG_EVERY = 20

Progress = Callable[[float, str], None]


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
    data_wait_s: float = 0.0        # host time spent waiting for the training loader (in step_time_s)

    def to_dict(self) -> dict[str, Any]:
        return plain(self.__dict__.copy())


def pretrained_from(init: str) -> str | None:
    """The name of the run whose backbone initialises this one (a folder with config.json + model/)."""
    path = Path(init)
    if init in ("random", "imagenet") or not path.is_dir():
        return None
    if (path / CONFIG_FILE).is_file() and (path / MODEL_DIR).is_dir():
        return path.name
    return None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def train_run(config: TrainConfig, progress: Progress | None = None) -> Path:
    """Train one run as ``config`` says and write its run record; returns the run folder.

    ``progress(fraction, message)`` is called on the main process after each step and epoch.
    Under torchrun every process calls this; rank 0 writes the files.
    """
    info = dist_utils.setup(config.device)
    if dist_utils.on_rank0(lambda: check_run_folder(config), info) is None:
        return Path(config.out)  # complete already (and resume asked): nothing to load
    model_config = model_config_for(config)
    train, val, dataset = load_datasets(config, model_config)
    return run_training(config, train, val, dataset, progress=progress, dist_info=info)


def model_config_for(config: TrainConfig) -> ModelConfig:
    return ModelConfig(tasks=list(config.tasks), expression_space=config.expression_space,
                       input_size=config.image_size, dropout=config.dropout)


def check_run_folder(config: TrainConfig) -> bool | None:
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
    with contextlib.ExitStack() as stack:
        def decide() -> bool | None:
            # Rank 0 alone holds the run folder's lock (one writer per folder: a second train.py,
            # resume or suite job on it gets one line) and decides for every rank whether to resume:
            # on several machines a rank that cannot see the checkpoint must not start fresh.
            stack.enter_context(run_folder_lock(config.out, purpose="resume" if config.resume else "train"))
            return check_run_folder(config)

        if not config.out:
            raise TrainingError("no run folder given (--out runs/SUITE/NAME)")
        resuming = dist_utils.on_rank0(decide, info)
        if resuming is None:
            return Path(config.out)
        if config.batch_size % info.world_size:
            raise TrainingError(f"batch size {config.batch_size} is not divisible by {info.world_size} processes")
        trainer = Trainer(config, train_set, val_set, dict(dataset), info, progress)
        if resuming:
            trainer.restore()
        else:
            trainer.start_record()
        return trainer.run()


class Trainer:
    """One training session of one run: built from the config, then :meth:`run`.

    Construction goes data (:meth:`setup_data`), model (:meth:`setup_model`), then order and
    schedule (:meth:`setup_schedule`); this order is part of the seeded result (model
    initialisation draws from the global RNG after the data setup).
    """

    def __init__(self, config: TrainConfig, train_set: Dataset, val_set: Dataset, dataset: dict[str, Any],
                 info: dist_utils.DistInfo, progress: Progress | None):
        self.config, self.info, self.dataset, self.progress = config, info, dataset, progress
        self.run_dir = Path(config.out)
        self.device = info.device
        self.use_cuda = self.device.type == "cuda"
        if config.threads:
            torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        np.random.seed(config.seed % 2**32)
        random.seed(config.seed)
        self.model_config = model_config_for(config)
        self.tasks = list(config.tasks)
        self.n_classes = len(get_label_space(config.expression_space))
        self.headline = headline_metric(config.tasks)
        self.batch = config.batch_size // info.world_size  # the global batch is split over processes

        self.setup_data(train_set, val_set)
        self.setup_model()
        self.setup_schedule()
        self.state = RunState()
        self.pretrained_from = pretrained_from(config.init)
        self.columns = records_writer.history_columns(config.tasks, config.multi_task)
        if "au" in config.tasks:
            self.columns.insert(self.columns.index("time_s"), "val_P_AU_at_0.5")
        self.console = RunConsole(self.run_dir.name, self.n_epochs, enabled=info.is_main)
        self.noted: set[str] = set()  # step-count notes already printed
        self.session_start = time.perf_counter()
        self.base_train_time = 0.0

    # ------------------------------------------------------------------ setup

    def setup_data(self, train_set: Dataset, val_set: Dataset) -> None:
        """Seeded subsets, per-sample seeded views, training labels and the validation loader."""
        config, info = self.config, self.info
        train_indices = subset_indices(len(train_set), config.limit_train, config.seed)
        val_indices = subset_indices(len(val_set), config.limit_val, config.seed + 1)
        # A frame cache is read a batch at a time and augmented on the device (train_batch).
        self.cached = is_frame_cache(train_set) and is_frame_cache(val_set)
        view = CachedSamples if self.cached else SeededSamples
        self.train_view = view(train_set, train_indices, config.seed)
        self.val_view = view(val_set, val_indices, config.seed)
        if len(self.train_view) == 0 or len(self.val_view) == 0:
            which = "training" if len(self.train_view) == 0 else "validation"
            raise TrainingError(f"empty {which} set in {config.data or 'the given data'}")
        self.train_labels = label_arrays(train_set, train_indices)  # by position in train_view
        # Loaders are made once; their workers stay alive between epochs (the epoch travels with
        # each index: EpochSampler). Own generators: making a loader must not draw from the global
        # RNG (resume exactness).
        workers = config.workers if config.workers is not None else dist_utils.default_workers(self.device)
        self.loader_kw: dict[str, Any] = dict(num_workers=workers, pin_memory=self.use_cuda,
                                              persistent_workers=workers > 0)
        if self.cached:
            from ..data.batch_augment import BatchAugment

            self.loader_kw["collate_fn"] = passthrough
            self.augment = BatchAugment(config.augment, self.model_config, train=True)
            self.normalise = BatchAugment("none", self.model_config, train=False)
        self.val_loader = DataLoader(self.val_view, batch_size=self.batch,
                                     sampler=list(range(info.rank, len(self.val_view), info.world_size)),
                                     generator=torch.Generator().manual_seed(config.seed + 1), **self.loader_kw)

    def setup_model(self) -> None:
        """Model + loss (class statistics from the training subset) in one module, for DDP."""
        config = self.config
        class_weights, pos_weight = loss_statistics(config, self.train_labels)
        criterion = MultiTaskLoss(config.tasks, config.loss_config(), class_weights, pos_weight)
        self.amp_dtype = precision.amp_dtype_for(self.device, config.amp)
        model = build_model(self.model_config, config.init)
        if config.sync_bn and self.info.distributed:
            # BatchNorm statistics over the global batch, as one process with the whole batch computes.
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.module = TrainModule(model, criterion, self.amp_dtype).to(self.device)
        if self.use_cuda:
            self.module.model.to(memory_format=torch.channels_last)
            torch.backends.cudnn.benchmark = True
        self.wrapped: nn.Module = self.module
        if self.info.distributed:
            device_ids = [self.device.index] if self.use_cuda else None
            self.wrapped = DistributedDataParallel(self.module, device_ids=device_ids)

    def setup_schedule(self) -> None:
        """Training order (``config.sampler``), steps per epoch, optimizer, LR schedule, grad scaler."""
        config, info = self.config, self.info
        per_rank = math.ceil(len(self.train_view) / info.world_size)
        self.drop_last = per_rank >= self.batch
        if not self.drop_last and per_rank < 2:
            raise TrainingError("the training set is too small for batch normalisation (2 images per process)")
        self.sampler = build_train_sampler(config, self.train_view, self.train_labels, self.batch, self.drop_last,
                                           info.world_size, info.rank)
        self.yields_batches = config.sampler == "multitask"
        self.per_rank = per_rank
        if self.yields_batches:
            self.steps_per_epoch = len(self.sampler)
        else:
            self.steps_per_epoch = per_rank // self.batch if self.drop_last else 1
        self.total_steps = self.steps_per_epoch * config.epochs
        if config.max_steps is not None:
            self.total_steps = min(self.total_steps, config.max_steps)
        self.n_epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        self.optimizer = build_optimizer(self.module, config)
        self.scheduler = build_scheduler(self.optimizer, config, self.steps_per_epoch, self.total_steps)
        self.scaler = precision.make_grad_scaler(self.device, self.amp_dtype)
        self.train_order = EpochSampler(self.sampler, batches=self.yields_batches)
        generator = torch.Generator().manual_seed(config.seed)
        if self.yields_batches:
            self.train_loader = DataLoader(self.train_view, batch_sampler=self.train_order, generator=generator,
                                           **self.loader_kw)
        else:
            self.train_loader = DataLoader(self.train_view, batch_size=self.batch, drop_last=self.drop_last,
                                           sampler=self.train_order, generator=generator, **self.loader_kw)

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
        """Continue from the checkpoint rank 0 reads (ranks on other machines may not see it)."""
        path = ckpt.checkpoint_path(self.run_dir)
        saved = dist_utils.on_rank0(lambda: ckpt.load_checkpoint(path), self.info)
        self.module.load_state_dict(saved["module"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        precision.restore_grad_scaler(self.scaler, saved["scaler"])  # a CPU/bf16 run saved an empty state
        self.state = RunState(**saved["state"])
        per_rank = saved.get("rng_ranks") or []
        own = per_rank[self.info.rank] if len(per_rank) == self.info.world_size else saved["rng"]
        ckpt.restore_rng_state(own, self.device)
        if not self.info.is_main:
            self.state.epoch_sums = []  # rank 0 alone carries the (already reduced) partial sums
        self.base_train_time = self.state.train_time_s

    def elapsed(self) -> float:
        return self.base_train_time + (time.perf_counter() - self.session_start)

    def save_checkpoint(self, sums: list[float]) -> None:
        """``sums``: the reduced loss sums of the epoch under way (empty at an epoch's end)."""
        self.state.epoch_sums = sums
        self.state.train_time_s = self.elapsed()
        rngs = dist_utils.gather_objects(ckpt.capture_rng_state(self.device), self.info)  # each rank's own
        if self.info.is_main:
            ckpt.save_checkpoint(ckpt.checkpoint_path(self.run_dir), {
                "module": self.module.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "rng": rngs[0], "rng_ranks": rngs, "state": self.state.to_dict(), "config": self.config.to_dict(),
            })
        dist_utils.barrier(self.info)

    # ------------------------------------------------------------------ the loop

    def run(self) -> Path:
        state = self.state
        self.console.start(state.epoch)
        try:
            while state.step < self.total_steps:
                epoch_start = time.perf_counter()
                sums = self.train_epoch()
                metrics = self.validate()
                row = self.end_epoch(sums, metrics)
                summary = summary_line(state.epoch, self.n_epochs, row, self.tasks, metrics,
                                       state.best_epoch == state.epoch, time.perf_counter() - epoch_start)
                self.console.end_epoch(summary)
                if self.progress and self.info.is_main:
                    self.progress(state.step / self.total_steps, summary)
        finally:
            self.console.close()
        if self.info.is_main:
            self.finish()
        dist_utils.barrier(self.info)
        if self.progress and self.info.is_main:
            self.progress(1.0, f"done: {self.headline} {state.best_score:.3f} (epoch {state.best_epoch})")
        return self.run_dir

    def epoch_loader(self, epoch: int) -> DataLoader:
        """The training loader set to ``epoch``, past the steps a mid-epoch checkpoint already took."""
        self.train_view.epoch = epoch
        skip = self.state.step_in_epoch  # in batches
        self.train_order.set_epoch(epoch, skip if self.yields_batches else skip * self.batch)
        return self.train_loader

    def steps_in_epoch(self) -> int:
        """Steps the epoch under way takes: fewer than ``steps_per_epoch`` when max_steps ends it."""
        state = self.state
        return min(self.steps_per_epoch, self.total_steps - (state.step - state.step_in_epoch))

    def note_step_count(self, epoch: int, steps: int) -> None:
        """Say once why an epoch's step count is not the training set size over the batch size."""
        note = step_count_note(epoch, steps, self.steps_per_epoch, self.per_rank, self.batch, self.drop_last)
        if note is not None and note[0] not in self.noted:
            self.noted.add(note[0])
            self.console.line(note[1])

    def train_epoch(self) -> list[float]:
        """Train until the epoch (or max_steps) ends; returns loss sums reduced over processes:
        ``[total, (task sum, task steps) per task..., steps]``. The sums stay on the device and
        are read back once per checkpoint and epoch."""
        state, config = self.state, self.config
        epoch = state.epoch
        loader = self.epoch_loader(epoch)
        steps_this_epoch = self.steps_in_epoch()
        width = 2 + 2 * len(self.tasks)
        sums = torch.tensor(list(state.epoch_sums) or [0.0] * width, dtype=torch.float64, device=self.device)
        self.module.train()
        self.note_step_count(epoch + 1, steps_this_epoch)
        self.console.start_epoch(epoch + 1, steps_this_epoch, state.step_in_epoch)
        segment_start = time.perf_counter()
        shown: float | None = None
        batches = iter(loader)
        while state.step_in_epoch < steps_this_epoch:
            wait_start = time.perf_counter()
            try:
                images, targets, _ = next(batches)
            except StopIteration:
                break
            state.data_wait_s += time.perf_counter() - wait_start
            loss = self.train_batch(images, targets, sums)
            if state.step_in_epoch % LOG_EVERY == 0 or state.step_in_epoch == steps_this_epoch:
                shown = float(loss)
            self.console.step(shown)
            if config.checkpoint_every and state.step % config.checkpoint_every == 0 \
                    and state.step_in_epoch < steps_this_epoch:
                state.step_time_s += time.perf_counter() - segment_start
                reduced = self.reduce_sums(sums)
                self.save_checkpoint(reduced)
                sums = torch.tensor(reduced if self.info.is_main else [0.0] * width, dtype=torch.float64,
                                    device=self.device)
                segment_start = time.perf_counter()
            if self.progress and self.info.is_main:
                self.progress(state.step / self.total_steps, f"epoch {epoch + 1}/{self.n_epochs} step "
                              f"{state.step_in_epoch}/{steps_this_epoch}"
                              + (f" loss {shown:.3f}" if shown is not None else ""))
        state.step_time_s += time.perf_counter() - segment_start
        return self.reduce_sums(sums)

    def reduce_sums(self, sums: torch.Tensor) -> list[float]:
        """Loss sums of every process, read back to the host (one synchronisation)."""
        if self.info.distributed:
            sums = sums.clone()
            torch.distributed.all_reduce(sums)
        return sums.tolist()

    def train_batch(self, images: torch.Tensor, targets: Mapping[str, torch.Tensor], sums: torch.Tensor
                    ) -> torch.Tensor:
        """One optimizer and schedule step; counts it in the state and adds its losses to ``sums``
        (on the device); returns the loss as a device tensor."""
        state = self.state
        images = images.to(self.device, non_blocking=True)
        if self.cached:  # uint8 frames: the whole batch augmented here, seeded by (seed, epoch, step, rank)
            from ..data.batch_augment import batch_generator

            step_key = state.step * self.info.world_size + self.info.rank
            images = self.augment(images, batch_generator(self.config.seed, state.epoch, step_key))
        if self.use_cuda:
            images = images.contiguous(memory_format=torch.channels_last)
        targets = to_device(targets, self.device)
        present = labels_present(targets, self.tasks, self.n_classes)
        loss, parts, took = step_on_device(self.wrapped, images, targets, self.optimizer, self.scaler)
        if took:  # an fp16 step skipped for inf/NaN gradients leaves the schedule where it is
            self.scheduler.step()
        state.step += 1
        state.step_in_epoch += 1
        state.images_seen += images.shape[0] * self.info.world_size
        part_values = torch.stack([parts[t] for t in self.tasks]).to(torch.float64)
        step_sums = torch.empty_like(sums)
        step_sums[0] = loss
        # A batch without labels for a task says nothing about its loss.
        step_sums[1:-1:2] = torch.where(present > 0, part_values, torch.zeros_like(part_values))
        step_sums[2:-1:2] = present
        step_sums[-1] = 1
        sums += step_sums
        return loss

    def validate(self) -> dict[str, Any]:
        """Every rank predicts its shard with rank 0's BatchNorm statistics (the ones saved); the
        outputs are gathered to rank 0, which scores them and tunes the AU thresholds once; every
        rank gets its scores (so all agree on the best epoch)."""
        dist_utils.broadcast_buffers(self.module, self.info)
        positions, outputs, targets = predict(self.module.model, self.val_loader, self.device, self.amp_dtype,
                                              self.use_cuda, prepare=self.normalise if self.cached else None)
        arrays = {**{f"o_{k}": v for k, v in outputs.items()}, **{f"t_{k}": v for k, v in targets.items()}}
        gathered = dist_utils.gather_arrays(positions, arrays, self.info, to_rank0=True)

        def scores() -> dict[str, Any]:
            assert gathered is not None
            merged = gathered[1]
            return score({k[2:]: v for k, v in merged.items() if k.startswith("o_")},
                         {k[2:]: v for k, v in merged.items() if k.startswith("t_")},
                         self.config.tasks, self.config.expression_space)

        return dist_utils.on_rank0(scores, self.info)

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
        state.history.append(plain(row))
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
            # host time waiting for the next training batch, as a share of the training time
            "data_wait_share": round(state.data_wait_s / state.step_time_s, 4) if state.step_time_s else None,
            "device": device_name(self.device),
            "world_size": self.info.world_size,
            "pretrained_from": self.pretrained_from,
        }
        records_writer.write_metrics(self.run_dir, metrics)
        shutil.rmtree(self.run_dir / ckpt.CHECKPOINT_DIR, ignore_errors=True)  # optimizer state: not needed now
