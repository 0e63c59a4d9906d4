"""How closely do two sets of run records agree? And does the synthetic benchmark depend on the machine?

Two subcommands (docs/REPRODUCIBILITY.md says what they found on the project's machine):

    # Compare run records (e.g. your rerun of the quick study with the shipped one): per
    # configuration, seed and metric the difference, the largest difference per metric against the
    # spread between seeds, and whether both sides saw the same data (fingerprints) on what machine.
    python scripts/reproducibility.py compare results/quick runs/quick [--json out.json]

    # Generate the synthetic benchmark under numpy / libjpeg-turbo SIMD levels and thread counts
    # (environment variables, one process each) and compare the data fingerprints.
    python scripts/reproducibility.py synth --out /tmp/synth-check --videos 800 --frames 3 --size 64

To measure what another CPU would do on this one, train the same suite with lower kernel levels
(the same commands as the README, with an environment variable in front) and compare:

    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python train.py suite suites/quick.toml \\
        --data data/synthetic --out runs/quick-avx2
    python scripts/reproducibility.py compare runs/quick runs/quick-avx2
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from affectmodel.provenance import machine_summary
from affectmodel.records import METRIC_KEYS, RunRecord, read_runs

REPO = Path(__file__).resolve().parents[1]
# The settings of the synth check: each changes which SIMD code numpy or libjpeg-turbo runs, or how
# many threads the numeric libraries may use. NPY_DISABLE_CPU_FEATURES names numpy 2.x's groups.
SYNTH_VARIANTS: dict[str, dict[str, str]] = {
    "default": {},
    "numpy-baseline-simd": {"NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL AVX512_SPR"},
    "libjpeg-no-simd": {"JSIMD_FORCENONE": "1"},
    "one-thread": {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
}


# ----------------------------------------------------------------------------- compare

def _by_run(records: Sequence[RunRecord]) -> dict[tuple[str, int | None], RunRecord]:
    return {(r.configuration, r.seed): r for r in records}


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _sd(values: Sequence[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


def compare(reference: Sequence[RunRecord], other: Sequence[RunRecord],
            metrics: Sequence[str] = METRIC_KEYS) -> dict[str, Any]:
    """Per configuration and metric: the largest difference between the same configuration and seed
    on both sides, the spread between seeds (sample standard deviation on each side), the difference
    of the means over seeds; per metric the largest of those. Runs found on one side only are listed."""
    ref, oth = _by_run(reference), _by_run(other)
    common = sorted(set(ref) & set(oth), key=lambda k: (k[0], -1 if k[1] is None else k[1]))
    rows: list[dict[str, Any]] = []
    for configuration in dict.fromkeys(c for c, _ in common):
        seeds = [s for c, s in common if c == configuration]
        for metric in metrics:
            pairs = [(_number(ref[(configuration, s)].metrics.get(metric)),
                      _number(oth[(configuration, s)].metrics.get(metric))) for s in seeds]
            pairs_ok = [(a, b) for a, b in pairs if a is not None and b is not None]
            if not pairs_ok:
                continue
            a, b = np.array([p[0] for p in pairs_ok]), np.array([p[1] for p in pairs_ok])
            diff = b - a
            rows.append({"configuration": configuration, "metric": metric, "seeds": len(pairs_ok),
                         "identical": int((diff == 0).sum()),
                         "largest_difference": float(np.abs(diff).max()),
                         "mean_difference": float(diff.mean()),
                         "seed_sd_reference": _sd(a.tolist()), "seed_sd_other": _sd(b.tolist())})
    summary: list[dict[str, Any]] = []
    for metric in metrics:
        mine = [r for r in rows if r["metric"] == metric]
        if not mine:
            continue
        sds = [r["seed_sd_reference"] for r in mine if math.isfinite(r["seed_sd_reference"])]
        worst = max(mine, key=lambda r: r["largest_difference"])
        summary.append({"metric": metric, "configurations": len(mine), "runs": sum(r["seeds"] for r in mine),
                        "identical": sum(r["identical"] for r in mine),
                        "largest_difference": worst["largest_difference"], "where": worst["configuration"],
                        "largest_mean_difference": max(abs(r["mean_difference"]) for r in mine),
                        "median_seed_sd": float(np.median(sds)) if sds else math.nan,
                        "largest_seed_sd": max(sds) if sds else math.nan})
    return {"rows": rows, "summary": summary,
            "only_reference": [f"{c}/seed-{s}" for c, s in sorted(set(ref) - set(oth), key=str)],
            "only_other": [f"{c}/seed-{s}" for c, s in sorted(set(oth) - set(ref), key=str)],
            # over the runs compared: a side's other runs (e.g. a pre-training run on another set)
            # say nothing about whether the compared runs saw the same data
            "fingerprints": {"reference": sorted({str(ref[k].data_fingerprint) for k in common}),
                             "other": sorted({str(oth[k].data_fingerprint) for k in common})},
            "different_data": [f"{c}/seed-{s}" for c, s in common
                               if str(ref[(c, s)].data_fingerprint) != str(oth[(c, s)].data_fingerprint)],
            "machines": {"reference": sorted({machine_summary(r.machine) for r in reference}),
                         "other": sorted({machine_summary(r.machine) for r in other})}}


def data_warning(result: Mapping[str, Any]) -> str | None:
    """A sentence when the data fingerprints of the runs compared differ or are unknown (then the
    figures cannot tell the machine from the data)."""
    ref, oth = result["fingerprints"]["reference"], result["fingerprints"]["other"]
    if "None" in ref or "None" in oth:
        return ("Some records carry no data fingerprint: whether both sides trained on the same data is unknown "
                "(compare `python -m affectmodel data-info DATA` on both machines).")
    runs = result["different_data"]  # fingerprint sets that differ always have a pair that differs
    if runs:
        listed = ", ".join(runs[:5]) + (", ..." if len(runs) > 5 else "")
        return (f"The data differ in {len(runs)} of the runs compared ({listed}) (fingerprints {', '.join(ref)} "
                f"against {', '.join(oth)}): the differences below mix the data with the machine.")
    return None


def _f(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:.3f}"


def compare_markdown(result: Mapping[str, Any]) -> str:
    lines = []
    warning = data_warning(result)
    if warning:
        lines += [f"**{warning}**", ""]
    lines += [f"Reference: {'; '.join(result['machines']['reference'])}",
              f"Other: {'; '.join(result['machines']['other'])}", "",
              "| Metric | Runs (identical) | Largest difference (where) | Largest difference of a mean over seeds "
              "| Seed spread (sd), median / largest |",
              "|---|---|---|---|---|"]
    for s in result["summary"]:
        lines.append(f"| {s['metric']} | {s['runs']} ({s['identical']}) | {_f(s['largest_difference'])} ({s['where']}) "
                     f"| {_f(s['largest_mean_difference'])} | {_f(s['median_seed_sd'])} / {_f(s['largest_seed_sd'])} |")
    lines += ["", "| Configuration | Metric | Seeds | Largest difference | Difference of means "
              "| Seed sd (ref / other) |", "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['configuration']} | {r['metric']} | {r['seeds']} | {_f(r['largest_difference'])} | "
                     f"{r['mean_difference']:+.3f} | {_f(r['seed_sd_reference'])} / {_f(r['seed_sd_other'])} |")
    for side in ("only_reference", "only_other"):
        if result[side]:
            lines.append(f"\nOnly in the {side.split('_')[1]} records: {', '.join(result[side])}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- synth check

def synth_check(out: Path, args: Sequence[str], variants: Mapping[str, Mapping[str, str]] = SYNTH_VARIANTS
                ) -> dict[str, dict[str, Any]]:
    """Generate the benchmark once per variant (a fresh process with the variant's environment) and
    return each variant's data fingerprint."""
    from affectmodel.data.fingerprint import data_fingerprint

    found = {}
    for name, env in variants.items():
        folder = out / name
        subprocess.run([sys.executable, "-m", "affectmodel", "synth", "--out", str(folder), "--overwrite", "--quiet",
                        *args], check=True, cwd=REPO, env={**os.environ, **env}, stdout=subprocess.DEVNULL)
        found[name] = {"environment": dict(env), "fingerprint": data_fingerprint(folder)}
    return found


# ----------------------------------------------------------------------------- command line

def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compare", help="compare two folders of run records")
    c.add_argument("reference", type=Path)
    c.add_argument("other", type=Path)
    c.add_argument("--json", type=Path, default=None, help="also write the comparison as JSON")
    s = sub.add_parser("synth", help="generate the benchmark under SIMD/thread variants; compare fingerprints")
    s.add_argument("--out", type=Path, required=True)
    args, synth_args = parser.parse_known_args(argv)
    if args.command == "compare":
        sides = []
        for folder in (args.reference, args.other):
            records, errors = read_runs(folder)
            for e in errors:
                print(f"warning: skipped a run: {e}", file=sys.stderr)
            if not records:
                print(f"error: no run records under {folder}", file=sys.stderr)
                return 2
            sides.append(records)
        result = compare(sides[0], sides[1])
        print(compare_markdown(result))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
        return 0
    found = synth_check(args.out, synth_args)
    digests = {name: v["fingerprint"]["digest"] for name, v in found.items()}
    for name, digest in digests.items():
        print(f"{name:22s} {digest}  {found[name]['environment'] or ''}")
    same = len(set(digests.values())) == 1
    print("identical data under every variant" if same else "THE DATA DIFFER between variants")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
