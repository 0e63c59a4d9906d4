"""Time load_affwild2 on a generated Aff-Wild2-sized annotation set (no real images needed).

    python scripts/bench_affwild2_reader.py [--videos 50] [--frames 1000]

Writes per-task files for EXPR, AU and VA (videos x frames lines each) and one empty image file per
frame (the reader only lists the folders), then reports the time of one ``load_affwild2`` call.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from affectmodel.data.affwild2 import load_affwild2
from affectmodel.tasks import ABAW8, AU_NAMES

FOLDERS = {"expr": "EXPR_Recognition_Challenge", "au": "AU_Detection_Challenge", "va": "VA_Estimation_Challenge"}
HEADERS = {"expr": ",".join(ABAW8.labels), "au": ",".join(AU_NAMES), "va": "valence,arousal"}


def write_set(root: Path, videos: int, frames: int, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    for v in range(videos):
        name = f"video{v:03d}"
        folder = root / "cropped_aligned" / name
        folder.mkdir(parents=True)
        for f in range(1, frames + 1):
            (folder / f"{f:05d}.jpg").touch()
        bodies = {
            "expr": [str(x) for x in rng.integers(-1, 8, frames)],
            "au": [",".join(map(str, r)) for r in rng.integers(0, 2, (frames, 12))],
            "va": [f"{a:.3f},{b:.3f}" for a, b in rng.uniform(-1, 1, (frames, 2))],
        }
        for task, lines in bodies.items():
            path = root / "annotations" / FOLDERS[task] / "Train_Set" / f"{name}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join([HEADERS[task], *lines]) + "\n")
    return videos * frames * 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--videos", type=int, default=50)
    parser.add_argument("--frames", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        lines = write_set(Path(tmp), args.videos, args.frames)
        start = time.perf_counter()
        ds = load_affwild2(tmp, "train")
        seconds = time.perf_counter() - start
    print(f"load_affwild2: {lines} annotation lines ({args.videos} videos x {args.frames} frames x 3 tasks), "
          f"{len(ds)} frames kept, {seconds:.2f} s ({lines / seconds / 1000:.0f}k lines/s)")


if __name__ == "__main__":
    main()
