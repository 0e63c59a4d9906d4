"""Validation: predictions of a model over a loader and their ABAW scores."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from ..metrics import confusion_matrix, evaluate, tune_au_thresholds
from ..model import AffectModel
from ..tasks import AU_NAMES, get_label_space


@torch.no_grad()
def predict(model: AffectModel, loader: DataLoader, device: torch.device, amp_dtype: torch.dtype | None = None,
            channels_last: bool = False, prepare: Callable[[torch.Tensor], torch.Tensor] | None = None
            ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Positions, outputs (EXPR probabilities, AU probabilities, VA values) and targets as arrays.

    ``prepare``: applied to each batch on the device (a frame cache's uint8 batches are normalised
    there). A loader with no batches (a process without validation images) gives arrays of the
    right trailing shape, so they join with other processes' outputs."""
    was_training = model.training
    model.eval()
    positions: list[np.ndarray] = []
    outputs: dict[str, list[np.ndarray]] = {k: [] for k in model.tasks}
    targets: dict[str, list[np.ndarray]] = {k: [] for k in ("expr", "au", "va")}
    for images, batch_targets, pos in loader:
        images = images.to(device, non_blocking=True)
        if prepare is not None:
            images = prepare(images)
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
    widths = model.config.head_sizes()
    target_shape = {"expr": (), "au": (len(AU_NAMES),), "va": (2,)}
    target_dtype = {"expr": np.int64, "au": np.float32, "va": np.float32}

    def cat(parts: list[np.ndarray], shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros((0, *shape), dtype=dtype)

    return (cat(positions, (), np.int64),
            {k: cat(v, (widths[k],), np.float32) for k, v in outputs.items()},
            {k: cat(v, target_shape[k], target_dtype[k]) for k, v in targets.items()})


def score(outputs: Mapping[str, np.ndarray], targets: Mapping[str, np.ndarray], tasks: Sequence[str],
          expression_space: str) -> dict[str, Any]:
    """ABAW metrics of one validation pass. P_AU uses per-AU thresholds tuned on these predictions
    (as the ABAW challenge scores AU detection); ``P_AU_at_0.5`` is the untuned score."""
    thresholds = tune_au_thresholds(outputs["au"], targets["au"]) if "au" in tasks else None
    metrics = evaluate({k: outputs[k] for k in tasks}, targets, expression_space, au_thresholds=thresholds)
    if thresholds is not None:
        metrics["P_AU_at_0.5"] = evaluate({"au": outputs["au"]}, {"au": targets["au"]})["P_AU"]
        metrics["au_thresholds"] = dict(zip(AU_NAMES, [float(t) for t in thresholds], strict=True))
    if "expr" in tasks:
        n_classes = len(get_label_space(expression_space))
        metrics["confusion_matrix"] = confusion_matrix(outputs["expr"], targets["expr"], n_classes).tolist()
    return plain(metrics)


def plain(obj: Any) -> Any:
    """numpy scalars/arrays to Python (checkpoints load with weights_only=True; JSON writes)."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj
