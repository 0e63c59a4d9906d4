"""Temporal modules over per-frame trunk features (docs/TEMPORAL.md).

A temporal module maps a window of per-frame features ``(B, T, F)`` to features of the same shape,
which the task heads then read frame by frame. Each is residual with a zero-initialised output
layer, so a freshly built module is the identity: a temporal model starts as its per-frame model
and moves away from it only as far as training pays.

Kinds (``ModelConfig.temporal``):

* ``none``: the per-frame model.
* ``smooth``: the per-frame model whose outputs are averaged over the last ``window`` frames of a
  face track (today's video smoothing, ``mean``); no parameters. The baseline a temporal model
  must beat.
* ``conv``: two residual dilated temporal convolutions (kernel 5, dilations 1 and 2: 13 frames of
  context), centred or, causal, looking back only.
* ``gru``: a GRU over the window, bidirectional or, causal, forward only.
"""
from __future__ import annotations

import torch
from torch import nn

# The kinds and the window bound are config fields' bounds, declared with ModelConfig (no torch).
from .model_config import LEARNED_KINDS as LEARNED_KINDS
from .model_config import MAX_WINDOW as MAX_WINDOW
from .model_config import TEMPORAL_KINDS as TEMPORAL_KINDS
from .model_config import anchor_position as anchor_position

HIDDEN = 128       # width of the temporal modules


class TemporalConv(nn.Module):
    """Residual dilated 1-D convolutions over time; causal ones pad on the past side only."""

    def __init__(self, features: int, causal: bool, hidden: int = HIDDEN, kernel: int = 5, dilations=(1, 2)):
        super().__init__()
        self.causal, self.kernel, self.dilations = causal, kernel, tuple(dilations)
        self.norm = nn.LayerNorm(features)
        self.inp = nn.Linear(features, hidden)
        self.convs = nn.ModuleList(nn.Conv1d(hidden, hidden, kernel, dilation=d) for d in self.dilations)
        self.out = nn.Linear(hidden, features)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.inp(self.norm(z))).transpose(1, 2)  # (B, H, T)
        for conv, d in zip(self.convs, self.dilations, strict=True):
            reach = (self.kernel - 1) * d
            pad = (reach, 0) if self.causal else (reach // 2, reach - reach // 2)
            # replicate padding: the edge frame stands for the unseen ones (zeros would read as a blank face)
            h = h + torch.relu(conv(nn.functional.pad(h, pad, mode="replicate")))
        return z + self.out(h.transpose(1, 2))


class TemporalGRU(nn.Module):
    """A GRU over the window (bidirectional unless causal), added back onto the features."""

    def __init__(self, features: int, causal: bool, hidden: int = HIDDEN):
        super().__init__()
        self.causal = causal
        self.norm = nn.LayerNorm(features)
        self.inp = nn.Linear(features, hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True, bidirectional=not causal)
        self.out = nn.Linear(hidden * (1 if causal else 2), features)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h, _ = self.gru(torch.relu(self.inp(self.norm(z))))
        return z + self.out(h)


def build_temporal(kind: str, features: int, causal: bool) -> nn.Module | None:
    """The module of a learned kind, None for ``none`` and ``smooth``."""
    if kind == "conv":
        return TemporalConv(features, causal)
    if kind == "gru":
        return TemporalGRU(features, causal)
    if kind in TEMPORAL_KINDS:
        return None
    raise ValueError(f"unknown temporal module {kind!r}; available: {', '.join(TEMPORAL_KINDS)}")


__all__ = ["LEARNED_KINDS", "MAX_WINDOW", "TEMPORAL_KINDS", "TemporalConv", "TemporalGRU", "anchor_position",
           "build_temporal"]
