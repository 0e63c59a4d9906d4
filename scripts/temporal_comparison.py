#!/usr/bin/env python
"""The study's temporal comparisons, broken down by the frames one frame cannot explain.

    python scripts/temporal_comparison.py runs/temporal --data data/synthetic-dynamic > runs/temporal/COMPARISON.md

``python -m affectmodel study`` compares every temporal module with smoothing on the same trunk, and
smoothing with the per-frame model (the ``temporal`` factor: docs/STUDY.md, docs/TEMPORAL.md). This
script takes exactly those pairs (:func:`affectmodel.study.factor_pairs`) and scores them again on
subsets of the validation frames, with the study's statistics and verdict rules
(:func:`affectmodel.statistics.difference`, :func:`affectmodel.study.verdict_of`,
:func:`affectmodel.study.did_not_learn` on the subset's figures):

* all frames (the study's own figures, as a cross-check);
* with ``--data ROOT`` (the dynamic benchmark the runs used), the frames one frame cannot explain
  (onset or offset of an episode, or inside an occlusion, blur or head-turn burst:
  ``ROOT/dynamics/<video>.csv``) and the others. These need the benchmark's notes, which run records
  do not carry, so the breakdown lives here rather than in the study.

A verdict needs the interval to exclude zero, two seeds or more a side, and both sides above their
no-skill level on the frames compared.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from affectmodel import study  # noqa: E402
from affectmodel.data.synthetic_dynamics import ambiguous_frames, read_notes  # noqa: E402
from affectmodel.predictions import Predictions  # noqa: E402
from affectmodel.records import read_runs  # noqa: E402
from affectmodel.statistics import DEFAULT_RESAMPLES, ScoredRun, difference, estimate  # noqa: E402
from affectmodel.training.identity import TEMPORAL_FACTOR  # noqa: E402

Subset = Callable[[str, np.ndarray], np.ndarray]  # (video, frames) -> rows kept


def ambiguity(root: str | Path) -> Callable[[bool], Subset]:
    """Frame selectors from a dynamic benchmark's notes: ``select(True)`` keeps the frames one frame
    cannot explain, ``select(False)`` the others."""
    cache: dict[str, np.ndarray] = {}

    def flags(video: str) -> np.ndarray:
        if video not in cache:
            notes = read_notes(root, video)
            if notes is None:
                raise SystemExit(f"{root} has no dynamics/{video}.csv: not the dynamic benchmark these runs used")
            cache[video] = ambiguous_frames(notes)
        return cache[video]

    def select(ambiguous: bool) -> Subset:
        def keep(video: str, frames: np.ndarray) -> np.ndarray:
            f = flags(video)
            if frames.max(initial=0) > len(f):
                raise SystemExit(f"{root}/dynamics/{video}.csv has {len(f)} frames; the runs predicted frame "
                                 f"{int(frames.max())}: not the benchmark these runs used")
            return f[frames - 1] == ambiguous
        return keep

    return select


def restricted(config: study.Configuration, keep: Subset | None) -> list[ScoredRun] | None:
    """The configuration's seeds scored on the kept validation frames only (None: no predictions)."""
    runs = study.scored_runs(config)
    if runs is None or keep is None:
        return runs
    out = []
    for run in runs:
        p = run.predictions
        if not isinstance(p, Predictions):
            return None  # a published summary has no frames to select
        rows = np.zeros(len(p.video), dtype=bool)
        for video in np.unique(p.video):
            mine = p.video == video
            rows[mine] = keep(str(video), p.frame[mine])
        out.append(ScoredRun(p.select(rows), run.au_thresholds, run.name))
    return out


def rows(configs: list[study.Configuration], keep: Subset | None, resamples: int) -> list[str]:
    lines = []
    for factor, ref, var in study.factor_pairs(configs):
        if factor != TEMPORAL_FACTOR:
            continue
        ref_runs, var_runs = restricted(ref, keep), restricted(var, keep)
        for task in ref.tasks:
            metric = study.TASK_METRICS[task]
            if ref_runs is None or var_runs is None:
                lines.append(f"| {ref.name} | {metric} | {var.name} | - | - | - | no predictions to score |")
                continue
            ref_est, var_est = estimate(ref_runs, metric, resamples), estimate(var_runs, metric, resamples)
            diff = difference(var_runs, ref_runs, metric, resamples)
            failures = [f for f in (study.did_not_learn(var, metric, var_est),
                                    study.did_not_learn(ref, metric, ref_est)) if f]
            _, text = study.verdict_of(diff, metric, failures)
            levels = f"{study.factor_level(var, factor)} vs {study.factor_level(ref, factor)}"
            interval = f"{diff.mean:+.3f} [{diff.low:+.3f}, {diff.high:+.3f}]"
            lines.append(f"| {'+'.join(ref.tasks)} | {metric} | {levels} ({var.name} vs {ref.name}) | "
                         f"{ref_est.mean:.3f} | {var_est.mean:.3f} | {interval} | {text} |")
    return lines


HEADER = ["| tasks | metric | variant vs reference | reference | variant | difference [95 % interval] | verdict |",
          "|" + "---|" * 7]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", help="the suite's output folder (runs/temporal) or shipped records (results/temporal)")
    parser.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES)
    parser.add_argument("--data", default=None, metavar="ROOT",
                        help="the dynamic benchmark the runs used: also compare on ambiguous / other frames")
    args = parser.parse_args(argv)
    records, errors = read_runs(args.runs)
    configs = study.group_configurations(study.index_runs(records))
    sections: list[tuple[str, Subset | None]] = [("All validation frames (the study's comparisons)", None)]
    if args.data:
        select = ambiguity(args.data)
        sections += [("Frames one frame cannot explain (onset/offset, occlusion, blur, head turn)", select(True)),
                     ("The other frames (neutral stretches and apexes, unspoiled)", select(False))]
    for title, keep in sections:
        print(f"## {title}\n")
        print("\n".join(HEADER + rows(configs, keep, args.resamples)) + "\n")
    seeds = sorted({len(c.runs) for c in configs})
    print(f"Seeds per configuration: {', '.join(map(str, seeds))}. Figures are means over seeds on the validation "
          "split; intervals from the video bootstrap and the seed spread (affectmodel.statistics.difference), "
          "paired on the same frames; verdicts by the study's rules (docs/STUDY.md).")
    for e in errors:
        print(f"\nunreadable: {e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
