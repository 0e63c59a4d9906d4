#!/usr/bin/env python
"""Matched comparisons of the temporal suite (suites/temporal.toml) as a Markdown table.

    python scripts/temporal_comparison.py runs/temporal > runs/temporal/COMPARISON.md

For each task set (expr, au, va, multi) every temporal configuration (gru, gru-causal, conv) is
compared with the per-frame model plus today's smoothing (smooth-<tasks>), and smoothing with the
raw per-frame model, on each task's headline metric (and P_MTL for the multi-task set): the
difference of the means over seeds, paired on the same validation videos and frames, with its 95 %
interval from :func:`affectmodel.statistics.difference` (video bootstrap and seed spread). A verdict
("better" / "worse") needs the interval to exclude zero and at least two seeds a side; otherwise
"no clear difference".

``--data ROOT`` (the dynamic benchmark the suite ran on) adds the same comparisons on two subsets
of the validation frames: those one frame cannot explain (onset or offset of an episode, or inside
an occlusion, blur or head-turn burst: ``dynamics/<video>.csv``) and the others.

This is a stand-in until the study's factor comparisons (issue 25) read the ``temporal`` factor
themselves; it uses the same statistics.
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from affectmodel.data.synthetic_dynamics import ambiguous_frames, read_notes  # noqa: E402
from affectmodel.predictions import PREDICTIONS_FILE, Predictions, load_predictions  # noqa: E402
from affectmodel.records import read_runs  # noqa: E402
from affectmodel.statistics import ScoredRun, difference, estimate  # noqa: E402
from affectmodel.tasks import AU_NAMES  # noqa: E402

TASK_SETS = {"expr": ["P_EXPR"], "au": ["P_AU"], "va": ["P_VA"], "multi": ["P_EXPR", "P_AU", "P_VA", "P_MTL"]}
CANDIDATES = ("gru", "gru-causal", "conv")


def scored(records) -> dict[str, list[ScoredRun]]:
    runs: dict[str, list[ScoredRun]] = defaultdict(list)
    for rec in records:
        thresholds = rec.metrics.get("au_thresholds")
        thr = [float(thresholds[a]) for a in AU_NAMES] if isinstance(thresholds, dict) else None
        name = str(rec.config.get("run") or rec.name)
        runs[name].append(ScoredRun(load_predictions(rec.path / PREDICTIONS_FILE), thr, f"{name}/{rec.name}"))
    return runs


def frame_subset(runs: dict[str, list[ScoredRun]], root: str, ambiguous: bool) -> dict[str, list[ScoredRun]]:
    """The same runs restricted to the validation frames that are (or are not) ambiguous."""
    cache: dict[str, np.ndarray] = {}

    def flags(video: str) -> np.ndarray:
        if video not in cache:
            notes = read_notes(root, video)
            if notes is None:
                raise SystemExit(f"{root} has no dynamics/{video}.csv: not the dynamic benchmark these runs used")
            cache[video] = ambiguous_frames(notes)
        return cache[video]

    out: dict[str, list[ScoredRun]] = {}
    for name, scored_runs in runs.items():
        out[name] = []
        for run in scored_runs:
            p = run.predictions
            assert isinstance(p, Predictions)  # read from val_predictions.npz above, never a summary
            keep = np.array([flags(v)[f - 1] == ambiguous for v, f in zip(p.video, p.frame, strict=True)])
            out[name].append(ScoredRun(p.select(keep), run.au_thresholds, run.name))
    return out


def table(runs: dict[str, list[ScoredRun]], resamples: int) -> list[str]:
    lines = ["| tasks | metric | per-frame | per-frame + smoothing | candidate | candidate's figure | "
             "candidate - baseline [95 % interval] | verdict |", "|" + "---|" * 8]
    for key, metrics in TASK_SETS.items():
        base, smooth = runs.get(f"per-frame-{key}"), runs.get(f"smooth-{key}")
        if not base or not smooth:
            continue
        for metric in metrics:
            b, s = estimate(base, metric, resamples), estimate(smooth, metric, resamples)
            pairs = [("smoothing vs per-frame", smooth, base)]
            pairs += [(f"{c} vs smoothing", runs[f"{c}-{key}"], smooth) for c in CANDIDATES if runs.get(f"{c}-{key}")]
            for label, cand, ref in pairs:
                c_est = estimate(cand, metric, resamples)
                d = difference(cand, ref, metric, resamples)
                lines.append(f"| {key} | {metric} | {b.mean:.3f} | {s.mean:.3f} | {label} | {c_est.mean:.3f} | "
                             f"{cell(d)} | {verdict(d)} |")
    return lines


def cell(interval) -> str:
    return f"{interval.mean:+.3f} [{interval.low:+.3f}, {interval.high:+.3f}]"


def verdict(interval) -> str:
    if not interval.seeds_known:
        return "no verdict (fewer than 2 seeds a side)"
    if interval.excludes_zero:
        return "better" if interval.mean > 0 else "worse"
    return "no clear difference"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", help="the suite's output folder (runs/temporal)")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--data", default=None, metavar="ROOT",
                        help="the dynamic benchmark the runs used: also compare on ambiguous / other frames")
    args = parser.parse_args(argv)
    records, errors = read_runs(args.runs)
    runs = scored(records)
    print("## All validation frames\n")
    print("\n".join(table(runs, args.resamples)))
    if args.data:
        for ambiguous, title in ((True, "Frames one frame cannot explain (onset/offset, occlusion, blur, head turn)"),
                                 (False, "The other frames (neutral stretches and apexes, unspoiled)")):
            print(f"\n## {title}\n")
            print("\n".join(table(frame_subset(runs, args.data, ambiguous), args.resamples)))
    seeds = sorted({len(v) for v in runs.values()})
    print(f"\nSeeds per configuration: {', '.join(map(str, seeds))}. Figures are means over seeds on the "
          "validation split of the dynamic synthetic benchmark; intervals from the video bootstrap and the "
          "seed spread (affectmodel.statistics.difference), paired on the same frames.")
    for e in errors:
        print(f"\nunreadable: {e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
