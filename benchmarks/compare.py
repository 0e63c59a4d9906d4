#!/usr/bin/env python
"""Before and after: every benchmark family of an earlier commit and of this tree, side by side in
one run, and this tree's figures written to ``RESULTS.md`` as a full run of ``run.py`` would.

    python benchmarks/compare.py --base 35f1c20             # every family both trees have (~20 min)
    python benchmarks/compare.py --base 35f1c20 --only loading --quick

The earlier commit is exported with ``git archive`` into a temporary folder and imported from there
(its own ``affectmodel`` and ``benchmarks``, with its own temporary folder for generated inputs).
Each family runs in a fresh process per tree, the two trees back to back and the order alternated
from one family to the next, so both see the same machine. Families only this tree has (e.g.
``loader_throughput``) run once, for ``RESULTS.md``.

A figure counts as slower beyond noise when this tree's median is worse than the earlier tree's
worst repeat (below its minimum for rates, above its maximum for times and sizes) AND by more than
the drift between the two back-to-back runs, measured on control figures that time code both trees
share unchanged (a bare torchvision ResNet-18 trunk and training step): two runs of the same code
differ by that much on this machine. Figures without a direction (context ratios) are shown but not
judged. The table goes to
``benchmarks/COMPARISON.md`` and the raw results to ``benchmarks/comparison.json``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import fmt, load_average, machine_description  # noqa: E402
from benchmarks.run import FAMILIES, RESULTS_JSON, RESULTS_MD, format_value, render  # noqa: E402

COMPARISON_MD = ROOT / "benchmarks" / "COMPARISON.md"
COMPARISON_JSON = ROOT / "benchmarks" / "comparison.json"
# Units where more is better / less is better; others ("x", "share", "IoU") take the row's target.
HIGHER_IS_BETTER = {"fps", "img/s", "lines/s"}
LOWER_IS_BETTER = {"ms", "s", "ms/frame", "ms/face", "MiB"}
# Figures that time the same code in both trees (torchvision's ResNet-18, no project code): their
# before/after ratio is the drift between two back-to-back runs.
CONTROL_PREFIXES = ("bare trunk", "bare ResNet-18 step")
# One family in a fresh process of the given tree; its result as the last line of stdout.
RUNNER = ("import json, sys\nsys.path.insert(0, '.')\nfrom benchmarks.run import run_family\n"
          "print(json.dumps(run_family(sys.argv[1], sys.argv[2])))\n")


def export(rev: str, dest: Path) -> str:
    """``rev``'s tree into ``dest``; returns its full commit id."""
    commit = subprocess.run(["git", "rev-parse", "--verify", f"{rev}^{{commit}}"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.strip()
    dest.mkdir(parents=True)
    archive = subprocess.Popen(["git", "archive", commit], cwd=ROOT, stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(dest)], stdin=archive.stdout, check=True)
    if archive.wait() != 0:
        raise RuntimeError(f"git archive {commit} failed")
    return commit


def families_of(tree: Path) -> set[str]:
    return {name for name in FAMILIES if (tree / "benchmarks" / f"{name}.py").is_file()}


def run_in(tree: Path, family: str, mode: str, tmpdir: Path | None) -> dict:
    """One family in a fresh process that imports ``tree``'s code (PYTHONPATH and working folder)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    if tmpdir is not None:  # the earlier tree's generated inputs apart from this tree's
        tmpdir.mkdir(parents=True, exist_ok=True)
        env["TMPDIR"] = str(tmpdir)
    done = subprocess.run([sys.executable, "-c", RUNNER, family, mode], cwd=tree, env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{family} in {tree} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def direction(row: dict) -> str | None:
    """"higher" or "lower" is better, or None (not judged)."""
    if row["unit"] in HIGHER_IS_BETTER:
        return "higher"
    if row["unit"] in LOWER_IS_BETTER:
        return "lower"
    if str(row.get("target", "")).startswith("≥"):
        return "higher"
    if str(row.get("target", "")).startswith("≤"):
        return "lower"
    return None


def verdict(before: dict, after: dict, drift: float = 0.0) -> str:
    """``drift``: the relative change two runs of the same code show (0.05 = 5 %)."""
    way = direction(after)
    if way is None:
        return "not judged"
    change = after["median"] / before["median"] - 1 if before["median"] else 0.0
    if way == "higher":
        worse = after["median"] < before["min"] and -change > drift
        better = after["median"] > before["max"] and change > drift
    else:
        worse = after["median"] > before["max"] and change > drift
        better = after["median"] < before["min"] and -change > drift
    return "slower beyond noise" if worse else ("faster beyond noise" if better else "within noise")


def control_drift(families: list[tuple[dict, dict]]) -> float:
    """The largest relative change among the control figures (same code in both trees)."""
    changes = [abs(a["median"] / b["median"] - 1) for before, after in families
               for b in before["rows"] for a in after["rows"]
               if a["name"] == b["name"] and a["name"].startswith(CONTROL_PREFIXES) and b["median"]]
    return max(changes, default=0.0)


def comparison_rows(before: dict, after: dict, drift: float = 0.0) -> list[dict]:
    earlier = {r["name"]: r for r in before["rows"]}
    out = []
    for row in after["rows"]:
        old = earlier.get(row["name"])
        if old is None or old["unit"] != row["unit"]:
            continue
        ratio = row["median"] / old["median"] if old["median"] else float("nan")
        out.append({"name": row["name"], "unit": row["unit"], "before": old, "after": row, "ratio": ratio,
                    "verdict": ("control" if row["name"].startswith(CONTROL_PREFIXES) else verdict(old, row, drift))
                    if old["n"] > 1 or row["n"] > 1 else
                    ("not judged" if direction(row) is None else "single run")})
    return out


def spread(row: dict) -> str:
    return f" ({fmt(row['min'])}–{fmt(row['max'])})" if row["n"] > 1 else ""


def render_comparison(report: dict) -> str:
    lines = [
        "# Benchmarks before and after",
        "",
        f"Generated by `{report['command']}` on {report['measured_at']}; do not edit by hand. Earlier tree: "
        f"commit `{report['base'][:12]}`; this tree: commit `{report['head'][:12]}`"
        f"{' with uncommitted changes' if report['dirty'] else ''}. Each family ran in a fresh process per "
        "tree, the two back to back (order alternated between families), on this machine:",
        "",
        f"- {report['machine']['cpu']}; {report['machine']['logical_cores']} logical cores; "
        f"load average before {report['load_before']}, after {report['load_after']}",
        "",
        "Figures are medians over each family's repeats with min–max beside. \"Control\" rows time the same "
        "code in both trees (torchvision's ResNet-18 alone); the largest of their changes, "
        f"{report['drift']:.1%}, is how far two back-to-back runs of identical code drift here. \"Slower "
        "beyond noise\" means this tree's median is worse than the earlier tree's worst repeat and by more "
        "than that drift.",
        "",
        f"**Summary:** {report['summary']}",
    ]
    for family in report["families"]:
        lines += ["", f"## {family['title']}", "",
                  f"`benchmarks/{family['family']}.py`; earlier tree {family['before_seconds']:g} s, "
                  f"this tree {family['after_seconds']:g} s.", "",
                  "| figure | before | after | after / before | |", "|---|---:|---:|---:|---|"]
        for r in family["rows"]:
            lines.append(f"| {r['name']} | {format_value(r['before']['median'], r['unit'])}{spread(r['before'])} | "
                         f"{format_value(r['after']['median'], r['unit'])}{spread(r['after'])} | "
                         f"{fmt(r['ratio'])}x | {r['verdict']} |")
        if family["only_after"]:
            lines += ["", "Only in this tree (new figures): " + "; ".join(family["only_after"]) + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the earlier commit (any git revision)")
    parser.add_argument("--only", action="append", choices=FAMILIES, metavar="NAME",
                        help="only this family (repeatable)")
    parser.add_argument("--quick", action="store_true", help="small sizes: checks that it runs; writes nothing")
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "full"
    command = "python benchmarks/compare.py " + " ".join(argv if argv is not None else sys.argv[1:])
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                capture_output=True, text=True, check=True).stdout.strip())
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="bench-base-") as tmp:
        base_tree = Path(tmp) / "tree"
        base = export(args.base, base_tree)
        names = [n for n in (args.only or FAMILIES) if n in FAMILIES]
        shared = families_of(base_tree)
        print(f"{command}: base {base[:12]} ({', '.join(sorted(shared))}), this tree {head[:12]}"
              f"{' (dirty)' if dirty else ''}; load {load_before}", flush=True)
        after: dict[str, dict] = {}
        pairs: list[tuple[dict, dict]] = []
        report_families = []
        for i, name in enumerate(names):
            if name not in shared:
                print(f"-- {name}: this tree only", flush=True)
                after[name] = {**run_in(ROOT, name, mode, None), "command": command}
                continue
            order = ("base", "head") if i % 2 == 0 else ("head", "base")
            result: dict[str, dict] = {}
            for side in order:
                print(f"-- {name}: {'earlier' if side == 'base' else 'this'} tree", flush=True)
                result[side] = (run_in(base_tree, name, mode, Path(tmp) / "tmp") if side == "base"
                                else run_in(ROOT, name, mode, None))
            after[name] = {**result["head"], "command": command}
            pairs.append((result["base"], result["head"]))
            for r in comparison_rows(result["base"], result["head"]):
                print(f"  {r['name'][:70]:<70} {format_value(r['before']['median'], r['unit']):>14} -> "
                      f"{format_value(r['after']['median'], r['unit']):>14}", flush=True)
    drift = control_drift(pairs)
    for before_result, after_result in pairs:
        rows = comparison_rows(before_result, after_result, drift)
        compared = {r["name"] for r in rows}
        report_families.append({
            "family": after_result["family"], "title": after_result["title"], "rows": rows,
            "before_seconds": before_result["seconds"], "after_seconds": after_result["seconds"],
            "only_after": [r["name"] for r in after_result["rows"] if r["name"] not in compared],
            "before": before_result, "after": after_result})
    judged = [r for f in report_families for r in f["rows"]
              if r["verdict"] not in ("not judged", "single run", "control")]
    slower = [f"{f['family']}: {r['name']}" for f in report_families for r in f["rows"]
              if r["verdict"] == "slower beyond noise"]
    summary = (f"{len(judged)} figures judged against a drift of {drift:.1%} between runs of identical code; "
               f"{len(slower)} slower beyond noise"
               + (f" ({'; '.join(slower)})" if slower else "") + "; "
               f"{sum(r['verdict'] == 'faster beyond noise' for r in judged)} faster beyond noise.")
    print(summary)
    if mode != "full":
        return 0
    report = {"command": command, "base": base, "head": head, "dirty": dirty,
              "measured_at": dt.datetime.now().isoformat(timespec="seconds"), "machine": machine_description(),
              "load_before": load_before, "load_after": load_average(), "summary": summary, "drift": drift,
              "families": report_families}
    COMPARISON_JSON.write_text(json.dumps(report, indent=1) + "\n")
    COMPARISON_MD.write_text(render_comparison(report))
    results = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.is_file() else {"families": {}}
    results["machine"] = machine_description()
    results["command"] = command
    results["families"].update(after)
    RESULTS_JSON.write_text(json.dumps(results, indent=1) + "\n")
    RESULTS_MD.write_text(render(results))
    print(f"wrote {COMPARISON_MD.relative_to(ROOT)}, {COMPARISON_JSON.relative_to(ROOT)}, "
          f"{RESULTS_MD.relative_to(ROOT)} and {RESULTS_JSON.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
