"""The PyTorch engine: an :class:`~affectmodel.model.AffectModel` in eval mode.

``run(batch)`` takes the normalised NHWC float32 batch the predictor makes and returns the raw head
outputs as numpy, like :class:`~.onnx_engine.OnnxEngine`. The model runs in channels_last, the
layout oneDNN's convolutions prefer on CPU (about 10-15 % faster): the NHWC buffer seen as NCHW is
channels_last already, so no copy is made.
"""
from __future__ import annotations

import numpy as np
import torch

from ..model import AffectModel


class TorchEngine:
    name = "torch"

    def __init__(self, model: AffectModel, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.model = model.to(self.device, memory_format=torch.channels_last).eval()  # type: ignore[call-overload]  # Module.to takes memory_format; stubs omit it
        self.config = self.model.config

    @torch.inference_mode()
    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Raw outputs (expression and AU logits, VA) for a normalised ``(n, S, S, 3)`` float32 batch."""
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).to(self.device)
        return {key: value.float().cpu().numpy() for key, value in self.model(x).items()}


__all__ = ["TorchEngine"]
