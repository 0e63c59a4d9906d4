"""The trainer: one function trains a uni- or multi-task run and writes its run record.

``train_run(config)`` loads the data and calls :func:`run_training`, which tests and other
callers can also use with in-memory data sets that follow the target contract
(``(image CxHxW, {"expr", "au", "va"})``). A :class:`Trainer` is one session of one run: built
from the config (:meth:`Trainer.setup_data`, :meth:`Trainer.setup_model`,
:meth:`Trainer.setup_schedule`), then :meth:`Trainer.run`; resumable from its checkpoint.

Budget: ``epochs`` passes over the training data, or ``steps`` optimizer steps (the data is cycled
as needed). Training is cut into evaluation periods (an epoch, or ``eval_every`` steps); after each
the model is scored on the development split, and the best period's weights and its
development-tuned AU thresholds are kept (:mod:`.selection`). The validation split is scored once,
at the end, with those weights and thresholds, and its per-frame outputs are saved
(``val_predictions.npz``, :mod:`affectmodel.predictions`).

Reproducibility: see :mod:`.batches` (seeded per-sample augmentation, pass-seeded order).
"""
from __future__ import annotations

import contextlib
import json
import math
import random
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from ..data.fingerprint import fingerprint_change
from ..health import HeadCheck, collapse_warning, health_columns, health_record, health_report, health_row
from ..initialisation import build_model
from ..locking import run_folder_lock
from ..losses import MultiTaskLoss
from ..model import AffectModel, ModelConfig
from ..predictions import PREDICTIONS_FILE, Predictions, save_predictions
from ..provenance import machine_facts
from ..records import METRICS_FILE, MODEL_DIR, RUN_CONFIG_FILE, is_complete, read_divergence
from ..tasks import AU_NAMES, get_label_space, headline_metric
from . import checkpoint as ckpt
from . import distributed as dist_utils
from . import precision, records_writer
from .batches import (
    CachedSamples,
    EpochSampler,
    RunData,
    SeededSamples,
    build_train_sampler,
    is_frame_cache,
    label_arrays,
    load_datasets,
    loss_statistics,
    passthrough,
    prepare_run_data,
    sample_identity,
    valid_label_counts,
)
from .config import DEFAULT_EVALUATIONS, TrainConfig, TrainingError, config_differences, config_id, saved_value
from .console import RunConsole, step_count_note, summary_line
from .divergence import DivergenceWatch, TrainingDiverged, check_outputs, nonfinite_tensors
from .evaluation import plain, predict, score
from .optim import build_optimizer, build_scheduler
from .selection import validation_metrics
from .step import TrainModule, labels_present, step_on_device, to_device
from .sync_batchnorm import convert_sync_batchnorm

# The loss shown on the progress bar is read back from the device every LOG_EVERY steps only
# (each read is a host-device synchronisation that stalls the GPU's queue).
LOG_EVERY = 20

Progress = Callable[[float, str], None]


@dataclass
class RunState:
    """Counters and bookkeeping carried in a checkpoint."""

    epoch: int = 0                  # completed evaluation periods (epochs, unless eval_every/steps say otherwise)
    step: int = 0                   # optimizer steps done
    step_in_epoch: int = 0          # steps done in the period under way (mid-period checkpoints)
    epoch_sums: list[float] = field(default_factory=list)   # partial loss sums of that period
    history: list[dict[str, Any]] = field(default_factory=list)
    best_score: float = -math.inf
    best_epoch: int = 0
    best_step: int = 0
    best_metrics: dict[str, Any] = field(default_factory=dict)   # development scores of the selected period
    labels_seen: dict[str, int] = field(default_factory=dict)    # task -> labelled frames that entered the loss
    train_time_s: float = 0.0       # wall time of all sessions (training + validation)
    step_time_s: float = 0.0        # time spent in training epochs only (throughput)
    images_seen: int = 0
    data_wait_s: float = 0.0        # host time spent waiting for the training loader (in step_time_s)

    def to_dict(self) -> dict[str, Any]:
        return plain(self.__dict__.copy())


def init_run_info(init: str) -> dict[str, Any] | None:
    """What a run folder used as ``init`` says about itself: its configuration name (``run``, else
    the folder name), ``config_id``, and its cost so far (``budget_steps``: its steps plus those of
    its own init run; ``train_time_s``: likewise). None when ``init`` is not a run folder."""
    path = Path(init)
    if init in ("random", "imagenet") or not path.is_dir():
        return None
    if not ((path / RUN_CONFIG_FILE).is_file() and (path / MODEL_DIR).is_dir()):
        return None

    def read(name: str) -> dict[str, Any]:
        try:
            data = json.loads((path / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    config, metrics = read(RUN_CONFIG_FILE), read(METRICS_FILE)
    name = str(config.get("run") or path.name)
    steps = int(metrics.get("budget_steps", metrics.get("steps", 0)) or 0)
    seconds = float(metrics.get("train_time_s", 0.0) or 0.0) + float(metrics.get("init_train_time_s", 0.0) or 0.0)
    return {"run": name, "config_id": config.get("config_id") or name, "budget_steps": steps,
            "train_time_s": round(seconds, 3)}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def train_run(config: TrainConfig, progress: Progress | None = None) -> Path:
    """Train one run as ``config`` says and write its run record; returns the run folder.

    ``progress(fraction, message)`` is called on the main process after each step and epoch.
    Under torchrun every process calls this; rank 0 writes the files.
    """
    if config.temporal != "none":  # context over a trained per-frame model's frozen trunk: one process
        from .temporal import train_temporal

        return train_temporal(config, progress)
    info = dist_utils.setup(config.device)
    if dist_utils.on_rank0(lambda: check_run_folder(config, info.world_size), info) is None:
        return Path(config.out)  # complete already (and resume asked): nothing to load
    model_config = model_config_for(config)
    train, val, dataset = load_datasets(config, model_config)
    return run_training(config, train, val, dataset, progress=progress, dist_info=info)


def model_config_for(config: TrainConfig) -> ModelConfig:
    return ModelConfig(tasks=list(config.tasks), expression_space=config.expression_space,
                       input_size=config.image_size, dropout=config.dropout, va_bound=config.va_bound)


def check_run_folder(config: TrainConfig, world_size: int = 1) -> bool | None:
    """True: resume from the checkpoint; False: start; None: the run is complete (and resume was
    asked). Raises when the folder holds something that must not be overwritten, or a checkpoint
    that ``world_size`` processes cannot continue."""
    if not config.out:
        raise TrainingError("no run folder given (--out runs/SUITE/NAME)")
    run_dir = Path(config.out)
    diverged = read_divergence(run_dir)
    if diverged is not None and not is_complete(run_dir):
        raise TrainingError(f"{'cannot resume ' if config.resume else ''}{run_dir}: the run "
                            f"{diverged.get('message') or 'diverged'}; start it again in another folder "
                            "(or delete this one)")
    if is_complete(run_dir):
        if config.resume:
            # a complete run is kept as it is: options that differ would silently not apply
            _same_options(run_dir, config, "the complete run it holds",
                          "; it is kept as it is: choose another --out to train with these options")
            return None
        raise TrainingError(f"{run_dir} already holds a complete run: choose another --out or delete it")
    if ckpt.checkpoint_path(run_dir).is_file():
        if not config.resume:
            raise TrainingError(f"{run_dir} holds an unfinished run: pass --resume to continue it, "
                                "or choose another --out")
        saved = _same_options(run_dir, config, "the interrupted run")
        check_world_size(run_dir, int(saved.get("world_size", 1) or 1), world_size)
        return True
    if (run_dir / RUN_CONFIG_FILE).is_file() and not config.resume:
        raise TrainingError(f"{run_dir} already holds a run record: choose another --out or delete it")
    return False


def _same_options(run_dir: Path, config: TrainConfig, what: str, advice: str = "") -> dict[str, Any]:
    """The run folder's saved options; raises naming each option of ``config`` that differs."""
    saved = records_writer.read_config(run_dir)
    changed = config_differences(saved, config)
    if changed:
        now = config.to_dict()
        raise TrainingError(f"cannot resume {run_dir}: options differ from {what}: "
                            + ", ".join(f"{k} ({saved_value(saved, k)!r} -> {now[k]!r})" for k in changed) + advice)
    return saved


def check_world_size(run_dir: Path, saved: int, now: int) -> None:
    """A run continues with the number of processes it started with: how BatchNorm batches, the
    data order and each process's random state (all in its checkpoint and config_id) depend on it."""
    if saved != now:
        how = f"torchrun --nproc_per_node {saved}" if saved > 1 else "one process (no torchrun)"
        raise TrainingError(f"cannot resume {run_dir}: it was trained by {saved} process(es) and this launch has "
                            f"{now}; resume it with {how} (the batch split, data order and each process's random "
                            "state depend on the number of processes)")


def check_same_data(run_dir: Path, dataset: Mapping[str, Any]) -> None:
    """Refuse to resume a run on other data than it started on (its config.json's data fingerprint
    against the data's now; a record or data set without one is not checked)."""
    saved = (records_writer.read_config(run_dir).get("dataset") or {}).get("fingerprint")
    now = dataset.get("fingerprint")
    if not (isinstance(saved, dict) and isinstance(now, dict) and saved.get("digest") and now.get("digest")):
        return
    change = fingerprint_change(saved, now)
    if change:
        raise TrainingError(f"cannot resume {run_dir}: the data changed since the run started ({change} differ; "
                            f"data fingerprint {saved['digest']} -> {now['digest']}); start a new run "
                            "with another --out")


def run_training(config: TrainConfig, train_set: Dataset, val_set: Dataset, dataset: Mapping[str, Any],
                 progress: Progress | None = None, dist_info: dist_utils.DistInfo | None = None,
                 development: Dataset | None = None) -> Path:
    """Train on data sets that follow the target contract and write the run record; returns its folder.

    ``dataset`` describes the data for the record (``name``, ``synthetic``, ``leakage``...). The
    development split is cut from ``train_set`` (``config.dev_fraction``) unless ``development``
    is given; see :func:`.batches.prepare_run_data` for the label budgets.
    """
    info = dist_info or dist_utils.setup(config.device)
    with contextlib.ExitStack() as stack:
        def decide() -> bool | None:
            # Rank 0 alone holds the run folder's lock (one writer per folder: a second train.py,
            # resume or suite job on it gets one line) and decides for every rank whether to resume:
            # on several machines a rank that cannot see the checkpoint must not start fresh.
            stack.enter_context(run_folder_lock(config.out, purpose="resume" if config.resume else "train"))
            resume = check_run_folder(config, info.world_size)
            if resume:
                check_same_data(Path(config.out), dataset)
            return resume

        if not config.out:
            raise TrainingError("no run folder given (--out runs/SUITE/NAME)")
        resuming = dist_utils.on_rank0(decide, info)
        if resuming is None:
            return Path(config.out)
        if config.batch_size % info.world_size:
            raise TrainingError(f"batch size {config.batch_size} is not divisible by {info.world_size} processes")
        data = prepare_run_data(config, train_set, val_set, development,
                                eval_transform=getattr(val_set, "transform", None))
        trainer = Trainer(config, data, dict(dataset), info, progress)
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

    def __init__(self, config: TrainConfig, data: RunData, dataset: dict[str, Any],
                 info: dist_utils.DistInfo, progress: Progress | None):
        self.config, self.info, self.dataset, self.progress = config, info, dataset, progress
        self.data = data
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

        self.setup_data(data)
        self.setup_model()
        self.setup_schedule()
        self.state = RunState()
        self.init_info = init_run_info(config.init)
        self.pretrained_from = self.init_info["run"] if self.init_info else None
        self.columns = records_writer.history_columns(config.tasks, config.multi_task,
                                                      prefix="dev_" if self.dev_loader is not None else None)
        if "au" in config.tasks and self.dev_loader is not None:
            self.columns.insert(self.columns.index("time_s"), "dev_P_AU_at_0.5")
        if self.dev_loader is not None:  # each head's health at each evaluation (affectmodel.health)
            at = self.columns.index("time_s")
            self.columns[at:at] = health_columns(config.tasks, prefix="dev_")
        self.dev_health: dict[str, HeadCheck] = {}
        self.console = RunConsole(self.run_dir.name, self.n_epochs, enabled=info.is_main)
        self.noted: set[str] = set()  # step-count notes already printed
        self.session_start = time.perf_counter()
        self.base_train_time = 0.0
        # Labelled frames per task since the last checkpoint, counted on the device (no host sync per step).
        self.label_counter = torch.zeros(len(self.tasks), dtype=torch.int64, device=self.device)
        # The first step with a non-finite loss, on the device; read where the loss is read anyway.
        self.divergence = DivergenceWatch(self.device)

    # ------------------------------------------------------------------ setup

    def setup_data(self, data: RunData) -> None:
        """Per-sample seeded views, training labels and the development / validation loaders."""
        config = self.config
        # A frame cache is read a batch at a time and augmented on the device (train_batch).
        self.cached = is_frame_cache(data.train) and is_frame_cache(data.validation)
        view = CachedSamples if self.cached else SeededSamples
        self.train_view = view(data.train, None, config.seed)
        self.val_view = view(data.validation, None, config.seed)
        self.dev_view = view(data.development, None, config.seed) if data.development is not None else None
        if len(self.train_view) == 0 or len(self.val_view) == 0:
            which = "training" if len(self.train_view) == 0 else "validation"
            raise TrainingError(f"empty {which} set in {config.data or 'the given data'}")
        self.train_labels = label_arrays(data.train, None)  # by position in train_view
        # Loaders are made once; their workers stay alive between epochs (the epoch travels with
        # each index: EpochSampler). Own generators: making a loader must not draw from the global
        # RNG (resume exactness).
        workers = config.workers if config.workers is not None else dist_utils.default_workers(self.device)
        self.loader_kw: dict[str, Any] = {"num_workers": workers, "pin_memory": self.use_cuda,
                                              "persistent_workers": workers > 0}
        if self.cached:
            from ..data.batch_augment import BatchAugment

            self.loader_kw["collate_fn"] = passthrough
            self.augment = BatchAugment(config.augment, self.model_config, train=True)
            self.normalise = BatchAugment("none", self.model_config, train=False)
        self.val_loader = self.eval_loader(self.val_view)
        self.dev_loader = self.eval_loader(self.dev_view) if self.dev_view is not None else None

    def eval_loader(self, view: SeededSamples) -> DataLoader:
        """Each rank scores every world_size-th sample (outputs are gathered afterwards)."""
        return DataLoader(view, batch_size=self.batch,
                          sampler=list(range(self.info.rank, len(view), self.info.world_size)),
                          generator=torch.Generator().manual_seed(self.config.seed + 1), **self.loader_kw)

    def setup_model(self) -> None:
        """Model + loss (class statistics from the training subset) in one module, for DDP."""
        config = self.config
        class_weights, pos_weight = loss_statistics(config, self.train_labels)
        criterion = MultiTaskLoss(config.tasks, config.loss_config(), class_weights, pos_weight)
        self.amp_dtype = precision.amp_dtype_for(self.device, config.amp)
        model = build_model(self.model_config, config.init)
        if config.sync_bn and self.info.distributed:
            # BatchNorm statistics over the global batch, as one process with the whole batch
            # computes (without torch's host sync per layer; on CPU processes too).
            model = convert_sync_batchnorm(model)
        self.module = TrainModule(model, criterion, self.amp_dtype).to(self.device)
        if self.use_cuda:
            self.module.model.to(memory_format=torch.channels_last)
            torch.backends.cudnn.benchmark = True
        self.wrapped: nn.Module = self.module
        if self.info.distributed:
            device_ids = [self.device.index] if self.use_cuda else None
            # No buffer broadcast before every forward: training normalises with batch statistics,
            # and rank 0's running statistics (the ones saved) reach every rank before each
            # evaluation (gathered_predictions); rank 0's evolve the same either way.
            self.wrapped = DistributedDataParallel(self.module, device_ids=device_ids, broadcast_buffers=False)

    def setup_schedule(self) -> None:
        """Training order (``config.sampler``), budget, evaluation periods, optimizer, LR schedule, grad scaler.

        ``steps_per_epoch``: steps of one pass over the training data. Budget: ``steps`` when set,
        else ``epochs`` passes; ``max_steps`` caps either. An evaluation period is ``eval_every``
        steps, else one pass (epochs budget) or a fifth of the budget (steps budget).
        """
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
            self.steps_per_epoch = len(self.sampler)  # a MultiTaskBatchSampler: batches per epoch
        else:
            self.steps_per_epoch = per_rank // self.batch if self.drop_last else 1
        if self.steps_per_epoch < 1:
            raise TrainingError("the training order yields no batch")
        if config.steps is not None:
            self.total_steps = config.steps
            self.period = config.eval_every or math.ceil(config.steps / DEFAULT_EVALUATIONS)
        else:
            self.total_steps = self.steps_per_epoch * config.epochs
            self.period = config.eval_every or self.steps_per_epoch
        if config.max_steps is not None:
            self.total_steps = min(self.total_steps, config.max_steps)
        self.period = min(self.period, self.total_steps)
        self.n_epochs = math.ceil(self.total_steps / self.period)
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
        """config.json: the resolved options, their id, data set (with its leakage counts, development
        split and label budgets), label spaces and code version."""
        if self.info.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            record = self.config.to_dict()
            record.update({
                "config_id": config_id(self.config, self.init_info["config_id"] if self.init_info else None,
                                       self.info.world_size),
                "code_version": records_writer.code_version(),
                "machine": machine_facts(self.device),  # where it started (metrics.json: where it ended)
                "label_spaces": records_writer.label_spaces(self.config.tasks, self.config.expression_space),
                "dataset": {**self.dataset, **self.data.facts, "train_size": len(self.train_view),
                            "development_size": len(self.dev_view) if self.dev_view is not None else 0,
                            "val_size": len(self.val_view), "train_split": "train", "val_split": "validation"},
                "pretrained_from": self.pretrained_from,
                "init_run": self.pretrained_from,
                "model": {k: v for k, v in self.model_config.__dict__.items() if k != "labels"},
                "world_size": self.info.world_size,
            })
            records_writer.write_config(self.run_dir, record)
        dist_utils.barrier(self.info)

    def restore(self) -> None:
        """Continue from the checkpoint rank 0 reads (ranks on other machines may not see it)."""
        path = ckpt.checkpoint_path(self.run_dir)
        saved = dist_utils.on_rank0(lambda: ckpt.load_checkpoint(path), self.info)
        broken = nonfinite_tensors(saved["module"].items())
        if broken:
            raise TrainingError(f"cannot resume {self.run_dir}: its checkpoint holds non-finite weights "
                                f"({len(broken)} tensors, e.g. {broken[0]}): the run diverged; start it again in "
                                "another folder with a lower --lr")
        self.module.load_state_dict(saved["module"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        precision.restore_grad_scaler(self.scaler, saved["scaler"])  # a CPU/bf16 run saved an empty state
        self.state = RunState(**saved["state"])
        per_rank = saved.get("rng_ranks") or []
        if per_rank:  # check_run_folder refused another process count; a checkpoint from elsewhere is refused here
            check_world_size(self.run_dir, len(per_rank), self.info.world_size)
        own = per_rank[self.info.rank] if per_rank else saved["rng"]
        ckpt.restore_rng_state(own, self.device)
        if not self.info.is_main:
            self.state.epoch_sums = []  # rank 0 alone carries the (already reduced) partial sums
            self.state.labels_seen = {}  # likewise the label counts
        self.base_train_time = self.state.train_time_s

    def elapsed(self) -> float:
        return self.base_train_time + (time.perf_counter() - self.session_start)

    def flush_label_counts(self) -> None:
        """Add the device counters (summed over processes) to ``state.labels_seen``: one host sync."""
        counts = dist_utils.all_reduce_sum([float(c) for c in self.label_counter.tolist()], self.info)
        self.label_counter.zero_()
        if self.info.is_main:
            for task, n in zip(self.tasks, counts, strict=True):
                self.state.labels_seen[task] = int(self.state.labels_seen.get(task, 0) + round(n))

    def save_checkpoint(self, sums: list[float]) -> None:
        """``sums``: the reduced loss sums of the period under way (empty at a period's end)."""
        self.flush_label_counts()
        self.state.epoch_sums = sums
        self.state.train_time_s = self.elapsed()
        rngs = dist_utils.gather_objects(ckpt.capture_rng_state(self.device), self.info)  # each rank's own
        if rngs is not None:  # the main process
            ckpt.save_checkpoint(ckpt.checkpoint_path(self.run_dir), {
                "module": self.module.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "rng": rngs[0], "rng_ranks": rngs, "state": self.state.to_dict(), "config": self.config.to_dict(),
            })
        dist_utils.barrier(self.info)

    # ------------------------------------------------------------------ the loop

    def run(self) -> Path:
        state = self.state
        try:
            self.train_periods()
            report = self.final_validation()
            # rank 0 holds the outputs; every rank learns the verdict
            dist_utils.on_rank0(lambda: check_outputs(report[2], state.best_step, "validation")
                                if report is not None else None, self.info)
        except TrainingDiverged as e:
            if self.info.is_main:  # the folder says so; no metrics.json, and --resume refuses it
                records_writer.write_divergence(self.run_dir, e.step, e.reason, str(e))
            raise
        if self.info.is_main:
            assert report is not None
            self.finish(*report)
        dist_utils.barrier(self.info)
        if self.progress and self.info.is_main:
            assert report is not None
            shown = report[0].get(self.headline)
            self.progress(1.0, f"done: validation {self.headline} {shown:.3f}" if isinstance(shown, float) else "done")
        return self.run_dir

    def train_periods(self) -> None:
        """Train and evaluate period after period until the budget is spent (raises
        :class:`.divergence.TrainingDiverged` as soon as the loss, weights or outputs are not finite)."""
        state = self.state
        self.console.start(state.epoch)
        try:
            while state.step < self.total_steps:
                epoch_start = time.perf_counter()
                sums = self.train_epoch()
                metrics = self.validate()
                row = self.end_epoch(sums, metrics)
                summary = summary_line(state.epoch, self.n_epochs, row, self.tasks, metrics,
                                       state.best_epoch == state.epoch and bool(metrics),
                                       time.perf_counter() - epoch_start, split="dev")
                self.console.end_epoch(summary)
                warning = collapse_warning(self.dev_health, f"epoch {state.epoch}, development split")
                if warning:
                    self.console.line(warning)
                if self.progress and self.info.is_main:
                    self.progress(state.step / self.total_steps, summary)
        finally:
            self.console.close()

    def pass_loader(self, data_pass: int, skip: int) -> DataLoader:
        """The training loader set to pass ``data_pass`` over the data, past its first ``skip``
        batches (mid-pass resume, or a budget end or an evaluation that falls inside a pass)."""
        self.train_view.epoch = data_pass
        self.train_order.set_epoch(data_pass, skip if self.yields_batches else skip * self.batch)
        return self.train_loader

    def batches(self, start: int, end: int) -> Iterator[Any]:
        """Training batches for steps ``start`` to ``end`` (exclusive), cycling through the data:
        step ``s`` is batch ``s % steps_per_epoch`` of pass ``s // steps_per_epoch``."""
        step = start
        while step < end:
            data_pass, skip = divmod(step, self.steps_per_epoch)
            wanted = min(end, (data_pass + 1) * self.steps_per_epoch) - step
            taken = 0
            for batch in self.pass_loader(data_pass, skip):
                taken += 1
                yield batch
                if taken >= wanted:
                    break
            if taken == 0:
                raise TrainingError(f"pass {data_pass} over the training data yielded no batch")
            step += taken

    def steps_in_epoch(self) -> int:
        """Steps the period under way takes: fewer than ``period`` when the budget ends it."""
        state = self.state
        return min(self.period, self.total_steps - (state.step - state.step_in_epoch))

    def note_step_count(self, epoch: int, steps: int) -> None:
        """Say once why an epoch's step count is not the training set size over the batch size."""
        if self.config.steps is not None or self.config.eval_every is not None:
            return  # periods are not passes over the data: nothing to explain
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
        steps_this_epoch = self.steps_in_epoch()
        end = state.step - state.step_in_epoch + steps_this_epoch
        width = 2 + 2 * len(self.tasks)
        sums = torch.tensor(list(state.epoch_sums) or [0.0] * width, dtype=torch.float64, device=self.device)
        self.module.train()
        self.note_step_count(epoch + 1, steps_this_epoch)
        self.console.start_epoch(epoch + 1, steps_this_epoch, state.step_in_epoch)
        segment_start = time.perf_counter()
        shown: float | None = None
        batches = self.batches(state.step, end)
        while state.step_in_epoch < steps_this_epoch:
            wait_start = time.perf_counter()
            try:
                images, targets, _ = next(batches)
            except StopIteration:
                break
            state.data_wait_s += time.perf_counter() - wait_start
            loss = self.train_batch(images, targets, sums)
            checkpoint_now = bool(config.checkpoint_every and state.step % config.checkpoint_every == 0
                                  and state.step_in_epoch < steps_this_epoch)
            if state.step_in_epoch % LOG_EVERY == 0 or state.step_in_epoch == steps_this_epoch:
                shown = float(loss)
                # the loss is read here anyway; the weights are checked at the period's end and below
                self.divergence.check(state.step, distributed=self.info.distributed)
            self.console.step(shown)
            if checkpoint_now:  # nothing non-finite is ever checkpointed
                self.divergence.check(state.step, self.module, distributed=self.info.distributed)
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
        self.divergence.check(state.step, self.module, distributed=self.info.distributed)
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
        self.label_counter += valid_label_counts(targets, self.tasks, self.n_classes)
        present = labels_present(targets, self.tasks, self.n_classes)
        loss, parts, took = step_on_device(self.wrapped, images, targets, self.optimizer, self.scaler)
        if took:  # an fp16 step skipped for inf/NaN gradients leaves the schedule where it is
            self.scheduler.step()
        state.step += 1
        self.divergence.observe(loss, state.step)
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

    def gathered_predictions(self, loader: DataLoader) -> tuple[np.ndarray, dict[str, np.ndarray],
                                                                dict[str, np.ndarray]] | None:
        """Every rank predicts its shard with rank 0's BatchNorm statistics (the ones saved); the
        (positions, outputs, targets) are gathered to rank 0 (None on the others)."""
        dist_utils.broadcast_buffers(self.module, self.info)
        positions, outputs, targets = predict(self.module.model, loader, self.device, self.amp_dtype,
                                              self.use_cuda, prepare=self.normalise if self.cached else None)
        arrays = {**{f"o_{k}": v for k, v in outputs.items()}, **{f"t_{k}": v for k, v in targets.items()}}
        gathered = dist_utils.gather_arrays(positions, arrays, self.info, to_rank0=True)
        if gathered is None:
            return None
        positions, merged = gathered
        return (positions, {k[2:]: v for k, v in merged.items() if k.startswith("o_")},
                {k[2:]: v for k, v in merged.items() if k.startswith("t_")})

    def validate(self) -> dict[str, Any]:
        """Scores on the development split (AU thresholds tuned on it, once, on rank 0; every rank
        gets the scores so all agree on the selection); ``{}`` without one. The validation split
        is not looked at here."""
        if self.dev_loader is None:
            return {}
        gathered = self.gathered_predictions(self.dev_loader)

        def scores() -> tuple[dict[str, Any], dict[str, HeadCheck]]:
            assert gathered is not None
            check_outputs(gathered[1], self.state.step, "development")
            return (score(gathered[1], gathered[2], self.config.tasks, self.config.expression_space),
                    health_report(gathered[1], self.config.tasks, self.model_config.labels))

        metrics, self.dev_health = dist_utils.on_rank0(scores, self.info)
        return metrics

    def end_epoch(self, sums: list[float], metrics: dict[str, Any]) -> dict[str, Any]:
        """History row, selection (best development score; without a development split, the
        last weights), checkpoint."""
        state = self.state
        state.epoch += 1
        state.step_in_epoch = 0
        row: dict[str, Any] = {"epoch": state.epoch, "step": state.step, "lr": self.optimizer.param_groups[0]["lr"],
                               "train_loss": sums[0] / max(1.0, sums[-1])}
        for i, t in enumerate(self.tasks):
            row[f"train_loss_{t}"] = sums[1 + 2 * i] / sums[2 + 2 * i] if sums[2 + 2 * i] else None
        for key in ("P_EXPR", "P_AU", "P_VA", "P_MTL", "ccc_valence", "ccc_arousal", "P_AU_at_0.5"):
            if key in metrics:
                row[f"dev_{key}"] = metrics[key]
        if metrics:
            row.update(health_row(self.dev_health, prefix="dev_"))
        if metrics:
            current = float(metrics.get(self.headline, 0.0))
            selected = current > state.best_score
        else:  # no development split: the last weights are the run's
            current, selected = math.nan, state.step >= self.total_steps
        if selected:
            state.best_score, state.best_epoch, state.best_step = current, state.epoch, state.step
            state.best_metrics = metrics
            if self.info.is_main:
                ckpt.save_weights(ckpt.best_weights_path(self.run_dir), ckpt.cpu_state_dict(self.module.model))
        row["time_s"] = self.elapsed()
        state.history.append(plain(row))
        if self.info.is_main:
            records_writer.write_history(self.run_dir, state.history, self.columns)
        self.save_checkpoint([])
        return row

    def final_validation(self) -> tuple[dict[str, Any], np.ndarray, dict[str, np.ndarray],
                                        dict[str, np.ndarray]] | None:
        """The selected weights on the validation split, scored with the development-tuned AU
        thresholds (0.5 without a development split): (metrics, positions, outputs, targets) on
        rank 0, None on the others."""
        path = ckpt.best_weights_path(self.run_dir)
        dist_utils.barrier(self.info)  # rank 0 wrote the selected weights (other machines may not see them)
        self.module.model.load_state_dict(dist_utils.on_rank0(lambda: ckpt.load_weights(path), self.info), strict=True)
        gathered = self.gathered_predictions(self.val_loader)
        if gathered is None:
            return None
        positions, outputs, targets = gathered
        thresholds = self.state.best_metrics.get("au_thresholds") if self.dev_loader is not None else None
        metrics = validation_metrics(outputs, targets, self.config.tasks, self.config.expression_space, thresholds)
        return metrics, positions, outputs, targets

    def selection_record(self) -> dict[str, Any]:
        """How the weights and AU thresholds were chosen (``metrics.json`` ``selection``)."""
        state = self.state
        if self.dev_view is None:
            return {"split": "none", "videos": 0, "frames": 0, "rule": "last weights (dev_fraction = 0)",
                    "thresholds": "0.5 (not tuned)", "epoch": state.best_epoch, "step": state.best_step}
        dev_stats = self.data.facts.get("development", {}).get("development", {})
        return {"split": "development", "videos": int(dev_stats.get("videos", 0)),
                "frames": int(dev_stats.get("frames", len(self.dev_view))), "metric": self.headline,
                "rule": f"best development {self.headline} over {state.epoch} evaluations",
                "thresholds": "tuned on the development split", "epoch": state.best_epoch, "step": state.best_step,
                "scores": {k: state.best_metrics[k] for k in ("P_EXPR", "P_AU", "P_VA", "P_MTL")
                           if k in state.best_metrics}}

    def finish(self, val_metrics: dict[str, Any], positions: np.ndarray, outputs: dict[str, np.ndarray],
               targets: dict[str, np.ndarray]) -> None:
        """Selected weights + development-tuned AU thresholds into model/, validation predictions,
        then metrics.json (last), then tidy up."""
        config, state = self.config, self.state
        final = AffectModel(ModelConfig(**{k: v for k, v in self.model_config.__dict__.items() if k != "labels"}))
        final.load_state_dict(ckpt.load_weights(ckpt.best_weights_path(self.run_dir)), strict=True)
        if "au" in config.tasks and "au_thresholds" in val_metrics:
            final.config.au_thresholds = [float(val_metrics["au_thresholds"][a]) for a in AU_NAMES]
        fingerprint = (self.dataset.get("fingerprint") or {}).get("digest")
        records_writer.write_model(self.run_dir, final,
                                   {"dataset": self.dataset.get("name"), "fingerprint": fingerprint})
        video, frame = sample_identity(self.data.validation, positions)
        save_predictions(self.run_dir / PREDICTIONS_FILE, Predictions(
            video, frame, {t: outputs[t] for t in config.tasks}, {t: targets[t] for t in config.tasks},
            config.expression_space))
        init = self.init_info or {}
        health = health_report(outputs, config.tasks, self.model_config.labels)
        warning = collapse_warning(health, f"the reported weights (evaluation {state.best_epoch}) on validation")
        if warning:
            self.console.line(warning)
        metrics = {
            "tasks": list(config.tasks),
            "multi_task": config.multi_task,
            "headline_metric": self.headline,
            "dataset": {"name": self.dataset.get("name"), "synthetic": bool(self.dataset.get("synthetic")),
                        "split": "validation", "fingerprint": fingerprint},
            **val_metrics,
            "health": health_record(health),
            "selection": self.selection_record(),
            "best_epoch": state.best_epoch,
            "best_step": state.best_step,
            "epochs": state.epoch,
            "steps": state.step,
            "budget_steps": state.step + int(init.get("budget_steps", 0)),
            "images_seen": state.images_seen,
            # host time waiting for the next training batch, as a share of the training time
            "data_wait_share": round(state.data_wait_s / state.step_time_s, 4) if state.step_time_s else None,
            "labels_seen": {t: int(state.labels_seen.get(t, 0)) for t in config.tasks},
            "init_run": self.pretrained_from,
            "parameters": final.num_parameters(),
            "train_time_s": round(state.train_time_s, 3),
            "init_train_time_s": float(init.get("train_time_s", 0.0)),
            "images_per_second": round(state.images_seen / state.step_time_s, 2) if state.step_time_s else None,
            "device": device_name(self.device),
            "machine": machine_facts(self.device),
            "world_size": self.info.world_size,
            "pretrained_from": self.pretrained_from,
            "leakage": self.dataset.get("leakage"),
            "seed": config.seed,
        }
        records_writer.write_metrics(self.run_dir, metrics)
        shutil.rmtree(self.run_dir / ckpt.CHECKPOINT_DIR, ignore_errors=True)  # optimizer state: not needed now
