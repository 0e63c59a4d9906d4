"""``python -m affectmodel data-info ROOT``: check an Aff-Wild2 installation before training.

Prints one JSON object: the layout found, then per split (``train``, ``validation``) and task
(``EXPR``, ``AU``, ``VA``) ``{"labelled", "invalid", "missing_images"}`` — ``missing_images`` counts
annotation lines whose image file is absent, ``invalid`` lines with the not-annotated code whose
image exists, ``labelled`` the rest — with class counts (EXPR) and positives per AU, plus per split
``frames`` (distinct images with at least one valid label) and ``videos``. ``leakage`` lists the
videos that sit in one task's training set and another task's validation set, per pair of sets;
training leaves them out by default (``load_affwild2``), and so do the training split's ``frames``
and ``videos`` here, while the per-task line counts describe the annotation files as installed.
``fingerprint`` is the data digest that run records carry (:mod:`affectmodel.data.fingerprint`);
``generator`` (synthetic benchmark only) what generated the set, from its marker.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..tasks import AU_NAMES, TASK_KEYS, get_label_space, get_task
from .affwild2 import LAYOUTS, SOURCES, SPLITS, detect_layout, load_affwild2
from .fingerprint import data_fingerprint, generator_facts


def data_info(root: str | Path, layout: str = "auto", source: str = "auto", expression_space: str = "abaw8",
              skip_bad_lines: bool = False, exclude_leaking_videos: bool = True) -> dict[str, Any]:
    """The report as a dict (see the module docstring)."""
    lay = detect_layout(root, layout)
    space = get_label_space(expression_space)
    report: dict[str, Any] = {"root": str(Path(root)), "layout": lay.layout, "images_dir": str(lay.images_dir),
                              "mtl_files": {s: str(p) for s, p in lay.mtl_files.items()}}
    dataset_name, synthetic, bad_total = None, False, 0
    report["leakage"] = None
    for split in SPLITS:
        has_task_dirs = any(split in d for d in lay.task_dirs.values())
        if (source == "per-task" and not has_task_dirs) or (
                source in ("auto", "mtl") and not has_task_dirs and split not in lay.mtl_files):
            report[split] = None  # this split is not installed
            continue
        ds = load_affwild2(root, split=split, tasks=TASK_KEYS, source=source, layout=layout,
                           expression_space=space, skip_bad_lines=skip_bad_lines,
                           exclude_leaking_videos=exclude_leaking_videos)
        dataset_name, synthetic = ds.dataset_name, ds.synthetic
        if split == "train":
            report["leakage"] = ds.stats["leakage"]
        bad_total += len(ds.bad_lines)
        entry: dict[str, Any] = {}
        for task in TASK_KEYS:
            name = get_task(task).challenge_name
            entry[name] = dict(ds.stats["tasks"][name])
        entry["EXPR"]["class_counts"] = dict(zip(space.labels, ds.class_counts().tolist(), strict=True))
        entry["AU"]["positives"] = dict(zip(AU_NAMES, ds.au_positive_counts().tolist(), strict=True))
        entry["frames"] = ds.stats["frames"]
        entry["videos"] = ds.stats["videos"]
        entry["source"] = ds.source
        report[split] = entry
    report["dataset"] = dataset_name
    report["synthetic"] = synthetic
    report["bad_lines"] = bad_total
    # the digest run records carry: a run on this data shows the same one (docs/REPRODUCIBILITY.md)
    report["fingerprint"] = data_fingerprint(root)
    generator = generator_facts(root)
    if generator is not None:
        report["generator"] = generator
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", help="Aff-Wild2 folder (holding cropped_aligned/ and the annotations)")
    parser.add_argument("--layout", default="auto", choices=("auto", *LAYOUTS),
                        help="annotation layout when both are present (default: auto, newer first)")
    parser.add_argument("--source", default="auto", choices=SOURCES,
                        help="per-task sets, the multi-task CSV, or auto (per-task when present)")
    parser.add_argument("--expression-space", default="abaw8", help="expression label space (default abaw8)")
    parser.add_argument("--skip-bad-lines", action="store_true",
                        help="count malformed annotation lines instead of stopping at the first one")
    parser.add_argument("--keep-leaking-videos", action="store_true",
                        help="count training videos that are also in a validation set in the training figures "
                             "(by default they are left out, as training leaves them out)")


def run(args: argparse.Namespace) -> int:
    report = data_info(args.root, layout=args.layout, source=args.source, expression_space=args.expression_space,
                       skip_bad_lines=args.skip_bad_lines, exclude_leaking_videos=not args.keep_leaking_videos)
    print(json.dumps(report, indent=2))
    return 0
