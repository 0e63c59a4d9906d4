"""benchmarks/gpu.py, the GPU check: a clear refusal without CUDA, and its --smoke mode (the same
steps on CPU with tiny sizes and a 2-process gloo group) runs end to end and writes its results."""
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import gpu  # noqa: E402


def test_without_cuda_it_exits_2_with_one_clear_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu.main(["--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no CUDA GPU is visible" in err and "--smoke" in err
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_smoke_mode_runs_every_leg_and_writes_json_and_a_table(tmp_path):
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu.py"), "--smoke", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=880, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "gpu.json").read_text())
    assert results["mode"] == "smoke" and results["ok"]
    p = results["params"]
    for name in ("uni", "multi", "forward_uni", "forward_multi"):
        row = results["bare_step"][name]
        assert row["images_per_s"] > 0 and row["peak_memory_mb"] > 0
    for source in ("cache", "jpeg"):
        for name in ("uni", "multi"):
            row = results["loop"][source][name]
            assert row["images_per_s"] > 0 and 0 <= row["data_wait_share"] <= 1 and row["of_bare"] > 0
            assert row["peak_memory_mb"] > 0
            # steady state: warm-up and timed steps inside one pass over the (repeated) training set
            assert row["passes"] == 1 and row["train_frames"] >= (p["warmup"] + p["steps"]) * p["batch"]
            assert row["timed_steps"] == p["steps"] >= 2
    ddp = results["ddp"]
    assert ddp["backend"] == "gloo" and ddp["scaling"]["world_size"] == 2
    assert ddp["scaling"]["scaling_efficiency"] > 0 and ddp["scaling"]["peak_memory_mb"] > 0
    # the resume leg: 2 processes (with --sync-bn on gloo), stopped after step 3, resumed to step 6
    assert ddp["resume"]["completed"] and ddp["resume"]["world_size"] == 2 and ddp["resume"]["steps"] == 6
    assert results["fp16"]["bare"]["grad_scaler"] and results["fp16"]["bare"]["host_syncs_per_step"] == 1
    assert results["fp16"]["loop"]["images_per_s"] > 0
    assert results["sync_bn"]["ours"]["host_syncs_per_step"] == results["sync_bn"]["plain"]["host_syncs_per_step"] == 0
    assert results["fit"]["loss_fell"] and results["fit"]["train_loss"][-1] < results["fit"]["train_loss"][0]
    assert results["study_estimate"]["runs"] > 0 and results["study_estimate"]["hours"] > 0
    assert "skipped" in results["compile"]  # minutes of compiling on a CPU: a GPU run measures it
    checked = {c["check"]: c["passed"] for c in results["checks"]}
    assert checked["the training loss falls"] is True
    assert checked["DDP scaling efficiency >= 80%"] is None  # throughput is not judged on CPU
    table = (tmp_path / "gpu.md").read_text()
    assert "| training loop from frame cache, img/s |" in table and "DDP (gloo, 2 processes" in table
    assert "scaling efficiency" in table and "Expected wall time of suites/study.toml" in table


def _results(**changes):
    """A full-mode result as gpu.py writes it, with healthy figures unless ``changes`` say otherwise."""
    row = {"images_per_s": 9000.0, "data_wait_share": 0.02, "of_bare": 0.95, "passes": 1, "train_frames": 19200,
           "host_syncs_per_step": 0, "peak_memory_mb": 5000.0}
    results = {"mode": "full", "fit": {"loss_fell": True, "train_loss": [2.0, 1.5]},
               "loop": {s: {"uni": dict(row), "multi": dict(row)} for s in ("cache", "jpeg")},
               "ddp": {"processes": 8, "scaling": {"images_per_s": 68000.0, "scaling_efficiency": 0.94},
                       "sync_bn": {"images_per_s": 60000.0}, "resume": {"completed": True, "finite": True,
                                                                         "steps": 40, "world_size": 8}},
               "bare_step": {"multi": dict(row), "uni": dict(row)},
               "fp16": {"bare": {**row, "host_syncs_per_step": 1}},
               "sync_bn": {"plain": dict(row), "ours": dict(row), "torch": {**row, "host_syncs_per_step": 60}}}
    for path, value in changes.items():
        *keys, last = path.split(".")
        target: Any = results
        for key in keys:
            target = target[key]
        target[last] = value
    return results


@pytest.mark.parametrize("change,failed", [
    ({}, set()),
    ({"loop.cache.multi.of_bare": 0.6}, {"loop from the cache >= 80% of the bare step (multi-task)"}),
    ({"loop.cache.uni.data_wait_share": 0.3}, {"data wait from the cache <= 10% of the timed steps"}),
    ({"ddp.scaling.scaling_efficiency": 0.5}, {"DDP scaling efficiency >= 80%"}),
    ({"fp16.bare.host_syncs_per_step": 3}, {"an fp16 step syncs once (the GradScaler's own read)"}),
    ({"sync_bn.ours.host_syncs_per_step": 20}, {"affectmodel's SyncBatchNorm adds no host sync"}),
    ({"loop.jpeg.uni.passes": 2}, {"no epoch end among the timed steps (jpeg, uni)"}),
    ({"ddp.resume.completed": False}, {"the resumed run reached its last step with its process count"}),
])
def test_ok_checks_throughput_and_steady_state_on_a_gpu(change, failed):
    results = _results(**change)
    got = {c["check"] for c in gpu.checks(results) if c["passed"] is False}
    assert got == failed
    results["mode"] = "smoke"  # on CPU throughput is reported, not judged; what ran is still checked
    throughput = {"loop from the cache >= 80% of the bare step (multi-task)",
                  "data wait from the cache <= 10% of the timed steps", "DDP scaling efficiency >= 80%",
                  "an fp16 step syncs once (the GradScaler's own read)"}
    assert {c["check"] for c in gpu.checks(results) if c["passed"] is False} == failed - throughput


def test_study_estimate_schedules_every_run_of_the_suite_on_eight_gpus():
    fast = gpu.study_estimate(10_000, 10_000, 30_000)
    slow = gpu.study_estimate(5_000, 5_000, 15_000)
    assert fast["runs"] == slow["runs"] > 70 and fast["gpus"] == 8
    # never better than perfect packing, and not far from it: the init-run chains are short
    assert fast["gpu_hours"] / 8 <= fast["hours"] <= fast["gpu_hours"] / 8 * 1.5
    assert slow["hours"] > 1.7 * fast["hours"]  # half the speed, nearly twice the time (start-up is fixed)
    uni_task = fast["longest_run_hours"]["uni-task"] * 3600  # 30,000 steps of 256 plus evaluations and start-up
    assert 30_000 * 256 / 10_000 < uni_task < 30_000 * 256 / 10_000 * 1.5


def _fake_torchrun(outcomes, calls):
    """``gpu.torchrun`` replaced: each launch pops its outcome (exit status, {mode: result}, error)
    and reports per job; ``calls`` gets each launch's job modes."""

    def torchrun(jobs, n, work, device):
        calls.append([job["mode"] for job in jobs])
        code, results, error = outcomes.pop(0)
        return code, [results.get(job["mode"], {}) for job in jobs], error

    return torchrun


@pytest.mark.parametrize("case", ["ok", "timed run fails", "first half crashes"])
def test_ddp_legs_share_a_launch_and_a_crash_is_not_an_interruption(monkeypatch, tmp_path, case):
    p = gpu.PARAMS["smoke"]
    timed = {"images_per_s": 40.0, "world_size": 2}
    resumed = {"steps": p["resume_steps"], "world_size": 2, "finite": True}
    stopped = {"stopped_at": p["resume_at"]}
    outcomes = {
        "ok": [(3, {"time": timed, "interrupt": stopped}, ""), (0, {"resume": resumed}, "")],
        # the timed run ends the launch before the interrupted half starts: that half gets a launch of its own
        "timed run fails": [(1, {}, "RuntimeError: boom"), (3, {"interrupt": stopped}, ""),
                            (0, {"resume": resumed}, "")],
        # a first half that crashed (no stop report) is not an interruption, even if the resume then completes
        "first half crashes": [(1, {"time": timed}, "RuntimeError: boom"), (0, {"resume": resumed}, "")],
    }[case]
    calls: list[list[str]] = []
    monkeypatch.setattr(gpu, "torchrun", _fake_torchrun(outcomes, calls))
    legs = gpu.ddp_legs(tmp_path, "cpu", p, tmp_path, {"images_per_s": 25.0})
    assert not outcomes  # every launch expected was made, and no other
    if case == "ok":
        assert calls == [["time", "interrupt"], ["resume"]]
        assert legs["scaling"]["scaling_efficiency"] == 0.8 and legs["resume"]["completed"]
    elif case == "timed run fails":
        assert calls == [["time", "interrupt"], ["interrupt"], ["resume"]]
        assert legs["scaling"] == {"error": "RuntimeError: boom"} and legs["resume"]["completed"]
    else:
        assert "error" in legs["resume"] and "did not stop" in legs["resume"]["error"]
        assert "completed" not in legs["resume"]
