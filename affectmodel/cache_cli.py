"""``python -m affectmodel cache ROOT``: decode every frame once into a memory-mapped frame cache
(``affectmodel.data.cache`` describes the format). Rerun the same command to finish an interrupted
build; ``--verify`` checks every shard's checksum of a finished one."""
from __future__ import annotations

import argparse
import os

from .tasks import TASK_KEYS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .data.cache import DEFAULT_SHARD_FRAMES

    parser.add_argument("root", help="Aff-Wild2 data folder (or the synthetic benchmark)")
    parser.add_argument("--out", default=None,
                        help="cache folder (default: next to the data, ROOT/.affectmodel-cache/<size>px, where "
                             "training finds it)")
    parser.add_argument("--size", type=int, default=112, help="stored image size in pixels (default 112: the "
                        "model's input size; cropped_aligned frames are 112)")
    parser.add_argument("--splits", default="train,validation", help="comma-separated (default train,validation)")
    parser.add_argument("--tasks", default=",".join(TASK_KEYS),
                        help="tasks the cache serves, an index for every subset (default expr,au,va)")
    parser.add_argument("--source", default="auto", choices=("auto", "per-task", "mtl"),
                        help="annotation source, as for training (default auto)")
    parser.add_argument("--layout", default="auto", choices=("auto", "newer", "older"))
    parser.add_argument("--expression-space", default="abaw8", help="expression label space (default abaw8)")
    parser.add_argument("--shard-frames", type=int, default=DEFAULT_SHARD_FRAMES,
                        help=f"frames per shard file (default {DEFAULT_SHARD_FRAMES})")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                        help="decoding threads (default: cores, at most 8)")
    parser.add_argument("--verify", action="store_true", help="check every shard of the finished cache (CRC-32)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} TB"


def run(args: argparse.Namespace) -> int:
    from .data.cache import build_frame_cache, verify_frame_cache

    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    if not splits:
        raise ValueError("--splits names no split (train, validation)")
    if args.workers < 1:
        raise ValueError("--workers must be at least 1")
    summary = build_frame_cache(args.root, args.out, size=args.size, splits=splits, tasks=args.tasks,
                                shard_frames=args.shard_frames, workers=args.workers, progress=not args.quiet,
                                source=args.source, layout=args.layout, expression_space=args.expression_space)
    frames = ", ".join(f"{s} {n:,} frames" for s, n in summary.frames.items())
    print(f"frame cache {summary.out}: {frames}; shards written {summary.shards_written}, already done "
          f"{summary.shards_skipped}; {_human(summary.bytes_on_disk)} on disk")
    for split, errors in summary.unavailable.items():
        for key, reason in errors.items():
            print(f"note: no {split} index for tasks {key}: {reason}")
    if args.verify:
        checked = verify_frame_cache(summary.out, progress=not args.quiet)
        print(f"verified {checked:,} frames: every shard matches its checksum")
    return 0
