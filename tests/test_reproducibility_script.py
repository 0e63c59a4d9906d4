"""scripts/reproducibility.py: comparing two sets of run records (largest difference per metric
against the seed spread, the data fingerprints of both sides) and the synthetic benchmark's check."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from study_fixtures import write_run

from affectmodel.records import read_runs

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("reproducibility_script", REPO / "scripts" / "reproducibility.py")
assert _spec is not None and _spec.loader is not None
script = importlib.util.module_from_spec(_spec)
sys.modules["reproducibility_script"] = script
_spec.loader.exec_module(script)


def _suite(root: Path, fingerprint: str | None, shift: float = 0.0) -> list:
    data = {"name": "synthetic-affect", "synthetic": True, "split": "validation"}
    if fingerprint:
        data["fingerprint"] = fingerprint
    for seed in (0, 1, 2):
        write_run(root, "quick", "uni-va", tasks="va", scores={"P_VA": 0.5}, seed=seed, dataset=data)
    for seed in (0, 1):
        write_run(root, "quick", "uni-expr", tasks="expr", scores={"P_EXPR": 0.4}, seed=seed, dataset=data)
    if shift:  # the other machine: P_VA of seed 1 moved by ``shift``
        path = root / "quick" / "uni-va" / "seed-1" / "metrics.json"
        metrics = json.loads(path.read_text())
        metrics["P_VA"] += shift
        path.write_text(json.dumps(metrics))
    return read_runs(root)[0]


def test_compare_finds_the_largest_difference_against_the_seed_spread(tmp_path):
    reference = _suite(tmp_path / "a", "f" * 16)
    other = _suite(tmp_path / "b", "f" * 16, shift=0.05)
    result = script.compare(reference, other)
    summary = {s["metric"]: s for s in result["summary"]}
    assert summary["P_VA"]["largest_difference"] == pytest.approx(0.05)
    assert summary["P_VA"]["where"] == "uni-va" and summary["P_VA"]["runs"] == 3 and summary["P_VA"]["identical"] == 2
    assert summary["P_VA"]["largest_mean_difference"] == pytest.approx(0.05 / 3)
    values = [r.metrics["P_VA"] for r in reference if r.configuration == "uni-va"]
    assert summary["P_VA"]["median_seed_sd"] == pytest.approx(np.std(values, ddof=1))
    assert summary["P_EXPR"]["largest_difference"] == 0 and summary["P_EXPR"]["identical"] == 2
    assert script.data_warning(result) is None
    text = script.compare_markdown(result)
    assert "| P_VA | 3 (2) | 0.050 (uni-va) |" in text


def test_compare_says_when_the_data_differ_or_are_unknown(tmp_path):
    a = _suite(tmp_path / "a", "a" * 16)
    assert "The data differ" in script.data_warning(script.compare(a, _suite(tmp_path / "b", "b" * 16)))
    assert "no data fingerprint" in script.data_warning(script.compare(a, _suite(tmp_path / "c", None)))
    fewer = [r for r in a if not (r.configuration == "uni-expr" and r.seed == 1)]
    assert script.compare(fewer, a)["only_other"] == ["uni-expr/seed-1"]


def test_compare_judges_the_data_on_the_runs_it_compares(tmp_path):
    """A reference with a further run on another data set (the quick suite's pre-training run on the
    folder set) against a rerun of some configurations on the same data: no warning; a compared
    run on other data is named."""
    reference = _suite(tmp_path / "a", "a" * 16)
    write_run(tmp_path / "a", "quick", "pretrain-expr", tasks="expr", scores={"P_EXPR": 0.3}, seed=0,
              dataset={"name": "synthetic-affect-folders", "synthetic": True, "split": "validation",
                       "fingerprint": "c" * 16})
    reference = read_runs(tmp_path / "a")[0]
    rerun = _suite(tmp_path / "b", "a" * 16)
    result = script.compare(reference, rerun)
    assert result["only_reference"] == ["pretrain-expr/seed-0"]
    assert script.data_warning(result) is None
    path = tmp_path / "b" / "quick" / "uni-va" / "seed-2" / "metrics.json"
    metrics = json.loads(path.read_text())
    metrics["dataset"]["fingerprint"] = "d" * 16
    path.write_text(json.dumps(metrics))
    warning = script.data_warning(script.compare(reference, read_runs(tmp_path / "b")[0]))
    assert warning is not None and "1 of the runs compared (uni-va/seed-2)" in warning


def test_synth_check_compares_fingerprints_across_variants(tmp_path):
    variants = {"default": {}, "one-thread": {"OMP_NUM_THREADS": "1"}}
    found = script.synth_check(tmp_path, ["--videos", "2", "--frames", "2", "--size", "24"], variants)
    assert set(found) == {"default", "one-thread"}
    assert found["default"]["fingerprint"]["digest"] == found["one-thread"]["fingerprint"]["digest"]
