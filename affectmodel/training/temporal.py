"""Temporal runs (``train.py --temporal smooth|conv|gru --init RUN``): context over the frames of
a trained per-frame model (docs/TEMPORAL.md).

The ``--init`` model's trunk is frozen and read once per frame ("cached trunk features"): every
training, development and validation frame's features are extracted (training frames through the
run's augmentation), then the temporal module and the task heads (started from the per-frame
heads) are trained over windows of consecutive frames (:mod:`affectmodel.data.sequences`) in
seconds, with the same masked losses as per-frame training. ``smooth`` trains nothing: it scores
the per-frame model with today's video smoothing (the mean over the last ``window`` frames of a
track), the baseline that a temporal model must beat, on the same trunk and frames.

The protocol is the per-frame trainer's: the best of the evaluations on the development split
(step 0, the per-frame heads unchanged, included) with AU thresholds tuned there, validation
scored once, and a run folder the study reads like any other (``val_predictions.npz`` one row per
frame). Frames are predicted with the frame at the window's end (causal) or middle.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import time
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..data.cache import CACHE_FOLDER
from ..data.sequences import Windows, frame_windows, training_windows
from ..health import HeadCheck, collapse_warning, health_columns, health_record, health_report, health_row
from ..hub.loading import load_model
from ..io import atomic_write
from ..locking import run_folder_lock
from ..losses import MultiTaskLoss
from ..metrics import valid_rows
from ..model import AffectModel, ModelConfig
from ..predictions import PREDICTIONS_FILE, Predictions, save_predictions
from ..records import METRICS_FILE, MODEL_DIR, MODEL_WEIGHTS_FILE, RUN_CONFIG_FILE
from ..tasks import AU_NAMES, TASK_KEYS, get_label_space, get_task, headline_metric
from ..temporal import LEARNED_KINDS, anchor_position
from . import records_writer
from .batches import SeededSamples, label_arrays, load_datasets, loss_statistics, prepare_run_data, sample_identity
from .config import DEFAULT_EVALUATIONS, TrainConfig, TrainingError, config_id
from .console import RunConsole
from .evaluation import plain, score
from .identity import trunk_facts
from .optim import build_optimizer, build_scheduler
from .selection import validation_metrics

Progress = Callable[[float, str], None]
FEATURE_BATCH = 64    # frames per trunk forward pass while extracting features
WINDOW_BATCH = 256    # windows per temporal forward pass while predicting
FEATURE_CACHE_VERSION = 1  # bump when the extraction changes
SWAP_PROBABILITY = 0.1  # training: a window slot's features replaced by another frame's (a spoiled frame)


def train_temporal(config: TrainConfig, progress: Progress | None = None) -> Path:
    """Train (or, for ``smooth``, score) one temporal run and write its run folder."""
    from .trainer import check_run_folder, init_run_info

    if config.temporal not in ("smooth", *LEARNED_KINDS):
        raise TrainingError(f"temporal={config.temporal!r}: per-frame runs go through the trainer")
    init = Path(config.init)
    if config.init in ("random", "imagenet") or not init.is_dir():
        raise TrainingError(f"--temporal {config.temporal} reads the frozen trunk of a trained per-frame model: "
                            f"pass --init RUN_OR_MODEL_FOLDER (got {config.init!r})")
    if not config.out:
        raise TrainingError("no run folder given (--out runs/SUITE/NAME)")
    with run_folder_lock(config.out, purpose="resume" if config.resume else "train"):
        if check_run_folder(config) is None:
            return Path(config.out)  # complete already
        started = time.perf_counter()
        if config.threads:
            torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        base = load_model(init).eval()
        model_config = _model_config(config, base)
        init_info = init_run_info(config.init)
        run = _TemporalRun(config, base, model_config, init_info, progress)
        return run.train(started)


def _model_config(config: TrainConfig, base: AffectModel) -> ModelConfig:
    b = base.config
    if b.temporal != "none":
        raise TrainingError(f"--init {config.init} is already a temporal model ({b.temporal}); a temporal run "
                            "starts from a per-frame model")
    missing = [t for t in config.tasks if t not in b.tasks]
    if missing:
        raise TrainingError(f"--init {config.init} has no {'/'.join(missing)} head (its tasks: {', '.join(b.tasks)}); "
                            "a temporal run trains the heads of its per-frame model")
    if config.expression_space != b.expression_space or config.image_size != b.input_size:
        raise TrainingError(f"--init {config.init} was trained with expression_space {b.expression_space} and "
                            f"image_size {b.input_size}: pass the same options")
    return ModelConfig(tasks=list(config.tasks), expression_space=b.expression_space, input_size=b.input_size,
                       mean=list(b.mean), std=list(b.std), dropout=config.dropout, temporal=config.temporal,
                       window=config.window, causal=config.causal, va_bound=b.va_bound)


def trunk_record(init: Path) -> dict[str, Any] | None:
    """What a temporal run records about the per-frame run it starts from (config.json ``trunk``:
    :func:`affectmodel.training.identity.trunk_facts`); None for a model folder (no run record)."""
    try:
        config = json.loads((init / RUN_CONFIG_FILE).read_text(encoding="utf-8"))
        metrics = json.loads((init / METRICS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict) or not isinstance(metrics, dict) or not (init / MODEL_DIR).is_dir():
        return None
    return trunk_facts(config, metrics, init.name)


def _mask_tasks(dataset: Any, tasks: list[str]) -> None:
    """Labels of the tasks a run does not train become "not annotated" (their frames stay: context)."""
    from ..data.dataset import empty_labels

    blank = empty_labels(len(dataset))
    dataset.labels = {k: (v if k in tasks else blank[k]) for k, v in dataset.labels.items()}


@torch.no_grad()
def extract_features(model: AffectModel, dataset: Any, seed: int, workers: int = 0) -> torch.Tensor:
    """Trunk features (n, F) of every sample, in order (through the data set's own transform)."""
    view = SeededSamples(dataset, None, seed)
    loader = DataLoader(view, batch_size=FEATURE_BATCH, shuffle=False, num_workers=workers)
    parts = [model.features(images) for images, _, _ in loader]
    return torch.cat(parts) if parts else torch.zeros((0, model.n_features))


def _window_targets(labels: Mapping[str, np.ndarray], windows: Windows, rows: np.ndarray) -> dict[str, torch.Tensor]:
    """Targets (B*W, ...) of the windows ``rows``; slots that stand in for a gap are not annotated."""
    idx = windows.index[rows].reshape(-1)
    absent = ~windows.present[rows].reshape(-1)
    out = {}
    for task in TASK_KEYS:
        values = labels[task][idx].copy()
        values[absent] = get_task(task).invalid_code
        out[task] = torch.from_numpy(values.astype(np.int64 if task == "expr" else np.float32))
    return out


def _probabilities(outputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: (torch.softmax(v, -1) if k == "expr" else torch.sigmoid(v) if k == "au" else v)
            for k, v in outputs.items()}


@torch.no_grad()
def predict_frames(model: AffectModel, features: torch.Tensor, windows: Windows, anchor: int,
                   smooth: bool = False) -> dict[str, np.ndarray]:
    """Per-frame outputs (probabilities, VA values) from one window per frame (``frame_windows``):
    the anchor slot's output, or (``smooth``) the per-frame outputs averaged over the window's
    present slots."""
    model.eval()
    parts: dict[str, list[np.ndarray]] = {k: [] for k in model.tasks}
    for start in range(0, len(windows), WINDOW_BATCH):
        rows = slice(start, start + WINDOW_BATCH)
        x = features[torch.from_numpy(windows.index[rows])]
        if smooth:
            probs = _probabilities(model.head_outputs(x))
            weight = torch.from_numpy(windows.present[rows]).float()[..., None]
            one = {k: (v * weight).sum(1) / weight.sum(1) for k, v in probs.items()}
        else:
            one = {k: v[:, anchor] for k, v in _probabilities(model.sequence_outputs(x)).items()}
        for k, v in one.items():
            parts[k].append(v.float().numpy())
    return {k: np.concatenate(v) for k, v in parts.items()}


class _TemporalRun:
    """One temporal run: data and features, then the loop over windows, then the run folder."""

    def __init__(self, config: TrainConfig, base: AffectModel, model_config: ModelConfig,
                 init_info: dict[str, Any] | None, progress: Progress | None):
        self.config, self.base, self.model_config, self.init_info = config, base, model_config, init_info
        self.progress = progress
        self.run_dir = Path(config.out)
        self.tasks = list(config.tasks)
        self.headline = headline_metric(config.tasks)
        # smoothing averages the frames up to each frame (a causal mean, as in the video path)
        self.anchor = anchor_position(config.window, config.causal or config.temporal == "smooth")

    # ------------------------------------------------------------------ data

    def load(self) -> None:
        config = self.config
        # All tasks' frames are read (a uni-task run keeps the other tasks' frames as context), then
        # the labels of the tasks not trained are masked.
        train, val, self.dataset = load_datasets(config.replace(tasks=list(TASK_KEYS)), self.model_config)
        for ds in (train, val):
            _mask_tasks(ds, self.tasks)
        self.data = prepare_run_data(config, train, val, eval_transform=getattr(val, "transform", None))
        if self.data.development is None:
            raise TrainingError("a temporal run selects on the development split: dev_fraction must be above 0")
        # every reader's data set names its videos and frames (ImageLabelDataset): typed loosely here
        self.sets: dict[str, Any] = {"train": self.data.train, "development": self.data.development,
                                     "validation": self.data.validation}
        t0 = time.perf_counter()
        self.features, self.feature_source = self.cached_features()
        self.feature_seconds = time.perf_counter() - t0
        self.labels = {name: label_arrays(ds, None) for name, ds in self.sets.items()}
        w = config.window
        self.windows = {name: frame_windows(ds.video_ids, ds.frame_numbers, w, self.anchor)
                        for name, ds in self.sets.items() if name != "train"}
        train_set = self.sets["train"]
        self.train_windows = training_windows(train_set.video_ids, train_set.frame_numbers, w, stride=max(1, w // 4))
        if len(self.train_windows) == 0:
            raise TrainingError(f"no training window in {config.data}")

    def feature_cache_path(self) -> Path | None:
        """Where this trunk's features of these frames are kept (beside the data, like the frame
        cache), so the temporal runs of one per-frame run extract them once. The key holds the
        trunk's weights, the frames of each split, the augmentation and its seed."""
        weights = Path(self.config.init) / MODEL_DIR / MODEL_WEIGHTS_FILE
        if not weights.is_file():
            weights = Path(self.config.init) / MODEL_WEIGHTS_FILE
        if not weights.is_file() or not self.config.data:
            return None
        key = hashlib.blake2b(digest_size=12)
        with open(weights, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                key.update(block)
        key.update(json.dumps([FEATURE_CACHE_VERSION, self.config.augment, self.config.seed, self.config.image_size,
                               {name: ds.frame_keys() for name, ds in self.sets.items()}]).encode())
        return Path(self.config.data) / CACHE_FOLDER / "features" / f"{key.hexdigest()}.npz"

    def cached_features(self) -> tuple[dict[str, torch.Tensor], str]:
        """The trunk features of every split: read from the feature cache, else extracted (and
        cached when the data folder is writable)."""
        path = self.feature_cache_path()
        if path is not None and path.is_file():
            try:
                with np.load(path, allow_pickle=False) as saved:
                    features = {name: torch.from_numpy(saved[name]) for name in self.sets}
                if all(len(features[n]) == len(ds) for n, ds in self.sets.items()):
                    return features, "cache"
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
                pass  # unreadable or stale: extracted again below
        workers = self.config.workers or 0
        features = {name: extract_features(self.base, ds, self.config.seed, workers)
                    for name, ds in self.sets.items()}
        if path is not None:
            arrays = {n: v.numpy() for n, v in features.items()}

            def save(tmp: Path) -> None:
                with open(tmp, "wb") as f:
                    np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as bool

            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(path, save)
            except OSError:
                pass  # a read-only data folder: the next run extracts them again
        return features, "extracted"

    # ------------------------------------------------------------------ model and loop

    def build(self) -> AffectModel:
        model = AffectModel(self.model_config)
        state = {k: v for k, v in self.base.state_dict().items()
                 if k.startswith("trunk.") or any(k.startswith(f"heads.{t}.") for t in self.tasks)}
        result = model.load_state_dict(state, strict=False)
        assert not result.unexpected_keys and all(k.startswith("temporal.") for k in result.missing_keys)
        model.trunk.requires_grad_(False)
        return model.eval()

    def predict(self, model: AffectModel, split: str) -> dict[str, np.ndarray]:
        return predict_frames(model, self.features[split], self.windows[split], self.anchor,
                              smooth=self.config.temporal == "smooth")

    def evaluate(self, model: AffectModel) -> tuple[dict[str, Any], dict[str, HeadCheck]]:
        """Development scores and each head's health (:mod:`affectmodel.health`) at one evaluation."""
        outputs = self.predict(model, "development")
        return (score(outputs, self.labels["development"], self.tasks, self.config.expression_space),
                health_report(outputs, self.tasks, self.model_config.labels))

    def train(self, started: float) -> Path:
        config = self.config
        self.load()
        model = self.build()
        self.start_record()
        learned = config.temporal in LEARNED_KINDS
        steps_per_epoch = math.ceil(len(self.train_windows) / config.batch_size)
        total = 0 if not learned else (config.steps or steps_per_epoch * config.epochs)
        if learned and config.max_steps is not None:
            total = min(total, config.max_steps)
        period = max(1, min(total, config.eval_every or math.ceil(max(total, 1) / DEFAULT_EVALUATIONS)))
        history: list[dict[str, Any]] = []
        columns = records_writer.history_columns(self.tasks, config.multi_task, prefix="dev_")
        at = columns.index("time_s")  # each head's health at each evaluation, as the per-frame trainer records it
        columns[at:at] = health_columns(self.tasks, prefix="dev_")
        best: dict[str, Any] = {"score": -math.inf}

        def evaluation(step: int, losses: list[float], lr: float) -> None:
            metrics, health = self.evaluate(model)
            row: dict[str, Any] = {"epoch": len(history), "step": step, "lr": lr,
                                   "train_loss": float(np.mean(losses)) if losses else None,
                                   "time_s": round(time.perf_counter() - started, 3)}
            row.update({f"dev_{k}": metrics[k] for k in ("P_EXPR", "P_AU", "P_VA", "P_MTL", "ccc_valence",
                                                          "ccc_arousal") if k in metrics})
            row.update(health_row(health, prefix="dev_"))
            history.append(plain(row))
            records_writer.write_history(self.run_dir, history, columns)
            current = float(metrics.get(self.headline, -math.inf))
            best["evaluations"] = len(history)
            if current > best["score"]:
                best.update(score=current, step=step, epoch=len(history) - 1, metrics=metrics,
                            state=copy.deepcopy({k: v for k, v in model.state_dict().items()
                                                 if not k.startswith("trunk.")}))
            if self.progress:
                self.progress(step / max(total, 1), f"step {step}/{total}: dev {self.headline} {current:.3f}")

        evaluation(0, [], config.lr if learned else 0.0)  # the per-frame heads (or smoothing) as they are
        if learned:
            self.loop(model, total, period, steps_per_epoch, evaluation)
        model.load_state_dict(best["state"], strict=False)
        self.finish(model, best, total, started)
        return self.run_dir

    def loop(self, model: AffectModel, total: int, period: int, steps_per_epoch: int,
             evaluation: Callable[[int, list[float], float], None]) -> None:
        config = self.config
        class_weights, pos_weight = loss_statistics(config, self.labels["train"])
        criterion = MultiTaskLoss(config.tasks, config.loss_config(), class_weights, pos_weight)
        assert model.temporal is not None  # a learned kind
        trainable = torch.nn.ModuleDict({"temporal": model.temporal, "heads": model.heads, "loss": criterion})
        optimizer = build_optimizer(trainable, config)
        scheduler = build_scheduler(optimizer, config, steps_per_epoch, total)
        features, windows = self.features["train"], self.train_windows
        generator = np.random.default_rng([config.seed, 26])
        order: list[int] = []
        losses: list[float] = []
        for step in range(1, total + 1):
            if len(order) < config.batch_size:
                order.extend(generator.permutation(len(windows)).tolist())
            rows = np.array(order[:config.batch_size])
            del order[:config.batch_size]
            x = features[torch.from_numpy(windows.index[rows])]
            # spoiled frames: a slot's features swapped for another frame's, its labels kept, so
            # that the module learns to lean on the neighbours
            swap = torch.from_numpy(generator.random(x.shape[:2]) < SWAP_PROBABILITY)
            if swap.any():
                x = x.clone()
                x[swap] = features[torch.from_numpy(generator.integers(0, len(features), int(swap.sum())))]
            targets = _window_targets(self.labels["train"], windows, rows)
            model.train()
            model.trunk.eval()
            outputs = {k: v.reshape(-1, *v.shape[2:]) for k, v in model.sequence_outputs(x).items()}
            loss, _ = criterion(outputs, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
            if step % period == 0 or step == total:
                evaluation(step, losses, optimizer.param_groups[0]["lr"])
                losses = []

    # ------------------------------------------------------------------ the run folder

    def start_record(self) -> None:
        config, data, sizes = self.config, self.data, {k: len(v) for k, v in self.sets.items()}
        self.run_dir.mkdir(parents=True, exist_ok=True)
        record = config.to_dict()
        record.update({
            "config_id": config_id(config, self.init_info["config_id"] if self.init_info else None),
            "code_version": records_writer.code_version(),
            "label_spaces": records_writer.label_spaces(config.tasks, config.expression_space),
            "dataset": {**self.dataset, **data.facts, "train_size": sizes["train"],
                        "development_size": sizes["development"], "val_size": sizes["validation"],
                        "train_split": "train", "val_split": "validation",
                        "train_windows": len(self.train_windows)},
            "pretrained_from": self.init_info["run"] if self.init_info else None,
            "init_run": self.init_info["run"] if self.init_info else None,
            # the per-frame run whose trunk this run reads: the study compares this run as that run's
            # configuration plus one temporal factor (training.identity.fold_temporal)
            "trunk": trunk_record(Path(config.init)),
            "model": {k: v for k, v in self.model_config.__dict__.items() if k != "labels"},
            "world_size": 1,
        })
        records_writer.write_config(self.run_dir, record)

    def finish(self, model: AffectModel, best: dict[str, Any], steps: int, started: float) -> None:
        config = self.config
        outputs = self.predict(model, "validation")
        targets = self.labels["validation"]
        thresholds = best["metrics"].get("au_thresholds")
        metrics = validation_metrics(outputs, targets, config.tasks, config.expression_space, thresholds)
        if "au" in config.tasks and "au_thresholds" in metrics:
            model.config.au_thresholds = [float(metrics["au_thresholds"][a]) for a in AU_NAMES]
        fingerprint = (self.dataset.get("fingerprint") or {}).get("digest")
        records_writer.write_model(self.run_dir, model,
                                   {"dataset": self.dataset.get("name"), "fingerprint": fingerprint})
        video, frame = sample_identity(self.sets["validation"], np.arange(len(self.sets["validation"])))
        save_predictions(self.run_dir / PREDICTIONS_FILE, Predictions(
            video, frame, {t: outputs[t] for t in config.tasks}, {t: targets[t] for t in config.tasks},
            config.expression_space))
        health = health_report(outputs, config.tasks, self.model_config.labels)
        warning = collapse_warning(health, f"the reported weights (step {best['step']}) on validation")
        if warning:
            RunConsole(self.run_dir.name, 1, interactive=False).line(warning)
        init = self.init_info or {}
        n_classes = len(get_label_space(config.expression_space))
        elapsed = time.perf_counter() - started
        records_writer.write_metrics(self.run_dir, {
            "tasks": list(config.tasks),
            "multi_task": config.multi_task,
            "headline_metric": self.headline,
            "dataset": {"name": self.dataset.get("name"), "synthetic": bool(self.dataset.get("synthetic")),
                        "split": "validation", "fingerprint": fingerprint},
            **metrics,
            "health": health_record(health),
            "selection": {"split": "development", "frames": len(self.sets["development"]),
                          "metric": self.headline,
                          "rule": f"best development {self.headline} over {best['evaluations']} evaluations "
                                  "(step 0: the per-frame heads unchanged)",
                          "thresholds": "tuned on the development split", "epoch": best["epoch"],
                          "step": best["step"]},
            "temporal": {"kind": config.temporal, "window": config.window, "causal": config.causal,
                         "anchor": self.anchor, "trunk": "frozen (features cached)",
                         "train_windows": len(self.train_windows),
                         "features": self.feature_source,
                         "feature_extraction_s": round(self.feature_seconds, 3)},
            "best_epoch": best["epoch"],
            "best_step": best["step"],
            "epochs": math.ceil(steps / max(1, math.ceil(len(self.train_windows) / config.batch_size))),
            "steps": steps,
            "budget_steps": steps + int(init.get("budget_steps", 0)),
            "images_seen": sum(len(v) for v in self.sets.values()),  # each frame through the trunk once
            "labels_seen": {t: int(valid_rows(t, self.labels["train"][t], n_classes).sum()) for t in config.tasks},
            "init_run": init.get("run"),
            "parameters": model.num_parameters(),
            "trained_parameters": sum(p.numel() for n, p in model.named_parameters() if not n.startswith("trunk.")),
            "train_time_s": round(elapsed, 3),
            "init_train_time_s": float(init.get("train_time_s", 0.0)),
            "images_per_second": None,
            "data_wait_share": None,
            "device": f"cpu ({torch.get_num_threads()} threads)",
            "world_size": 1,
            "pretrained_from": init.get("run"),
            "leakage": self.dataset.get("leakage"),
            "seed": config.seed,
        })


__all__ = ["extract_features", "predict_frames", "train_temporal"]
