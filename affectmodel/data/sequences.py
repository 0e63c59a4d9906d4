"""Ordered windows of consecutive frames per video, for temporal models (docs/TEMPORAL.md).

Any reader's data set (JPEGs or the frame cache: both say, per sample, its video and 1-based frame
number) is laid out per video on a *timeline* of frame numbers. A window is ``window`` consecutive
timeline slots holding sample indices. Rules:

* **Videos and splits.** A window never holds frames of two videos; ``<video>_left`` and
  ``<video>_right`` are two videos (two people), so two tracks never mix. A data set is one split
  (or the development subset of one), so a window never crosses a split either.
* **Gaps.** Frames missing from the data (no face found, or no label for any task) leave empty
  slots. An empty slot is *filled* with the nearest earlier sample of the window (else the nearest
  later one: the edge frame stands for the unseen ones) and marked not present, so its labels are
  masked out of the loss. A gap longer than ``window`` frames ends the timeline: context from
  before it says nothing about the frames after it (a lost track restarts).
* **Missing labels** stay per task: a present slot keeps whatever labels its sample has (-1 / -5
  for the tasks it lacks), masked by the losses as for single frames.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Windows:
    """``index`` (n, window) int64 sample indices (filled slots hold their stand-in's index);
    ``present`` (n, window) bool: the slot is the sample itself, not a stand-in for a gap."""

    index: np.ndarray
    present: np.ndarray

    def __len__(self) -> int:
        return len(self.index)


def timelines(video_ids: np.ndarray, frame_numbers: np.ndarray, max_gap: int) -> list[np.ndarray]:
    """Per video (and per stretch between gaps longer than ``max_gap`` frames): sample indices by
    frame offset, -1 for frames without a sample. Videos in order of first appearance."""
    video_ids = np.asarray(video_ids, dtype=np.int64)
    frame_numbers = np.asarray(frame_numbers, dtype=np.int64)
    out: list[np.ndarray] = []
    order = np.lexsort((frame_numbers, video_ids))
    _, first = np.unique(video_ids[order], return_index=True)
    bounds = [*first.tolist(), len(order)]
    stretches = []
    for a, b in itertools.pairwise(bounds):
        idx = order[a:b]
        frames = frame_numbers[idx]
        if len(np.unique(frames)) != len(frames):
            raise ValueError(f"video {int(video_ids[idx[0]])} lists a frame number twice")
        cuts = np.flatnonzero(np.diff(frames) > max_gap) + 1
        for part_idx, part_frames in zip(np.split(idx, cuts), np.split(frames, cuts), strict=True):
            line = np.full(int(part_frames[-1] - part_frames[0] + 1), -1, dtype=np.int64)
            line[part_frames - part_frames[0]] = part_idx
            stretches.append((int(part_idx.min()), line))
    stretches.sort(key=lambda s: s[0])  # the data set's own order of videos
    out = [line for _, line in stretches]
    return out


def _fill(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fill -1 slots of each row with the nearest earlier sample, else the nearest later one."""
    present = rows >= 0
    _n, w = rows.shape
    pos = np.where(present, np.arange(w)[None, :], -1)
    before = np.maximum.accumulate(pos, axis=1)
    after = np.where(present, np.arange(w)[None, :], w)
    after = np.minimum.accumulate(after[:, ::-1], axis=1)[:, ::-1]
    source = np.where(before >= 0, before, after)
    if (source >= w).any():
        raise ValueError("a window without any frame")
    return np.take_along_axis(rows, source, axis=1), present


def frame_windows(video_ids: np.ndarray, frame_numbers: np.ndarray, window: int, anchor: int) -> Windows:
    """One window per sample, in sample order: the sample sits at slot ``anchor`` (the last slot
    for a causal model, the middle for a bidirectional one) with its video's neighbours around it.
    Used to predict every frame once, with as much context as the model was built for."""
    _check(window, anchor)
    n = len(video_ids)
    rows = np.full((n, window), -1, dtype=np.int64)
    offsets = np.arange(window) - anchor
    for line in timelines(video_ids, frame_numbers, max_gap=window):
        at = np.flatnonzero(line >= 0)
        slots = at[:, None] + offsets[None, :]
        inside = (slots >= 0) & (slots < len(line))
        rows[line[at]] = np.where(inside, line[np.clip(slots, 0, len(line) - 1)], -1)
    index, present = _fill(rows)
    return Windows(index, present)


def training_windows(video_ids: np.ndarray, frame_numbers: np.ndarray, window: int, stride: int) -> Windows:
    """Windows every ``stride`` frames along each timeline (a timeline shorter than ``window``
    gives one window, padded at its end); windows without any sample are skipped."""
    _check(window, 0)
    if stride < 1:
        raise ValueError(f"stride must be at least 1, got {stride}")
    rows = []
    for line in timelines(video_ids, frame_numbers, max_gap=window):
        starts = range(0, max(1, len(line) - window + 1), stride)
        for s in starts:
            part = line[s:s + window]
            if len(part) < window:
                part = np.concatenate([part, np.full(window - len(part), -1, dtype=np.int64)])
            if (part >= 0).any():
                rows.append(part)
        last = len(line) - window  # the tail that the stride stepped over
        if last > 0 and last % stride and (line[last:] >= 0).any():
            rows.append(line[last:])
    if not rows:
        return Windows(np.zeros((0, window), np.int64), np.zeros((0, window), bool))
    index, present = _fill(np.stack(rows))
    return Windows(index, present)


def _check(window: int, anchor: int) -> None:
    if window < 1 or not 0 <= anchor < window:
        raise ValueError(f"window must be at least 1 and anchor in [0, window), got {window}, {anchor}")


__all__ = ["Windows", "frame_windows", "timelines", "training_windows"]
