"""train.py end to end on a tiny synthetic benchmark, and its one-line errors."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from affectmodel.data.fingerprint import data_fingerprint
from affectmodel.data.synthetic import generate_benchmark
from affectmodel.records import is_complete, read_run
from affectmodel.training.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors gain nothing from more threads, and on a shared CPU extra threads spin."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)  # --threads 1 below changes the process-wide setting


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    generate_benchmark(root, videos=6, frames=8, seed=0, size=32, progress=False)
    return root


def test_single_run_from_a_config_file_with_cli_overrides(tmp_path, bench, capsys):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("tasks: [expr, au]\nimage_size: 32\nbatch_size: 8\nepochs: 3\nloss_expr: weighted_ce\n"
                   "augment: strong\nlr: 0.01\n")
    out = tmp_path / "runs" / "single"
    code = main(["--config", str(cfg), "--data", str(bench), "--out", str(out), "--max-steps", "2", "--lr", "3e-4",
                 "--device", "cpu", "--threads", "1"])
    assert code == 0 and f"run record: {out}" in capsys.readouterr().out
    record = read_run(out)
    c = record.config
    assert c["tasks"] == ["expr", "au"] and c["losses"] == {"expr": "weighted_ce", "au": "bce"}
    assert c["lr"] == 3e-4 and c["augment"] == "strong" and c["max_steps"] == 2      # CLI beat the file
    assert c["dataset"]["name"] == "synthetic-affect" and c["dataset"]["synthetic"] is True
    digest = data_fingerprint(bench)["digest"]
    assert record.metrics["dataset"] == {"name": "synthetic-affect", "synthetic": True, "split": "validation",
                                         "fingerprint": digest}
    assert record.metrics["steps"] == 2 and record.metrics["headline_metric"] == "P_MTL"
    # which data, generator, code and machine: in config.json, metrics.json and the model folder
    assert record.data_fingerprint == digest and c["dataset"]["fingerprint"] == data_fingerprint(bench)
    assert c["dataset"]["generator"]["config"]["seed"] == 0 and c["code_version"]
    for facts in (c["machine"], record.metrics["machine"]):
        assert facts["threads"] == 1 and facts["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    model_config = json.loads((out / "model" / "config.json").read_text())
    assert model_config["training_data"] == {"dataset": "synthetic-affect", "fingerprint": digest}


def test_the_same_run_twice_gives_identical_figures(tmp_path, bench):
    """Same code, data, configuration, seed, machine and thread count: bit-identical results, through
    the JPEG loader in a worker process with augmentation (docs/REPRODUCIBILITY.md: across machines
    they differ, by about a seed's spread)."""
    args = ["--data", str(bench), "--tasks", "expr,au,va", "--image-size", "32", "--batch-size", "8",
            "--max-steps", "3", "--augment", "strong", "--workers", "1", "--device", "cpu", "--threads", "1",
            "--seed", "4"]
    first, second = tmp_path / "first", tmp_path / "second"
    assert main([*args, "--out", str(first)]) == 0 and main([*args, "--out", str(second)]) == 0
    a, b = read_run(first), read_run(second)
    figures = [k for k, v in a.metrics.items() if isinstance(v, (int, float, list, dict)) and not k.endswith(
        ("time_s", "per_second", "wait_share")) and k != "machine"]
    assert "P_MTL" in figures and {k: a.metrics[k] for k in figures} == {k: b.metrics[k] for k in figures}
    pa, pb = np.load(first / "val_predictions.npz"), np.load(second / "val_predictions.npz")
    assert all(np.array_equal(pa[k], pb[k]) for k in pa.files)
    assert (first / "model" / "model.safetensors").read_bytes() == (second / "model" / "model.safetensors").read_bytes()


@pytest.mark.parametrize("argv, message", [
    (["--tasks", "pose"], "unknown task 'pose'"),
    (["--tasks", "expr,expr"], "task expr named more than once in 'expr,expr'"),  # was trained as expr alone
    (["--tasks", "expr,au,AU"], "task au named more than once"),
    (["--epochs", "0"], "epochs must be at least 1"),
    (["--init", "no/such/weights.pt"], "weights file not found"),
])
def test_bad_options_exit_2_with_one_line(tmp_path, bench, capsys, argv, message):
    code = main(["--data", str(bench), "--out", str(tmp_path / "run"), "--device", "cpu", "--threads", "1", *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and message in err and len(err.splitlines()) == 1


def test_resume_of_a_complete_run_with_other_options_is_refused(tmp_path, bench, capsys):
    """``--resume`` on a complete run keeps it as it is; with other options it used to print its
    'run record:' line and exit 0, although none of the new options applied."""
    out = tmp_path / "run"
    argv = ["--data", str(bench), "--out", str(out), "--tasks", "expr", "--image-size", "32", "--batch-size", "8",
            "--max-steps", "1", "--dev-fraction", "0", "--device", "cpu", "--threads", "1"]
    assert main(argv) == 0 and is_complete(out)
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert main([*argv, "--resume", "--lr", "0.01", "--max-steps", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert err.startswith(f"error: cannot resume {out}: options differ from the complete run it holds")
    assert err.endswith("lr (0.001 -> 0.01), max_steps (1 -> 3); it is kept as it is: choose another --out to "
                        "train with these options")
    assert main([*argv, "--resume", "--threads", "2"]) == 0  # machine-local options may change
    said = capsys.readouterr().out.strip()
    assert said == f"run record: {out} (already complete, with these options: nothing to train)"
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_missing_data_and_out_are_reported(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "run")]) == 2
    assert "--data ROOT and --out DIR are required" in capsys.readouterr().err
    assert main(["--data", str(tmp_path / "absent"), "--out", str(tmp_path / "run"), "--device", "cpu"]) == 2
    assert "absent" in capsys.readouterr().err


@pytest.mark.parametrize("lr", ["1e30", "inf"])
def test_a_diverging_run_exits_non_zero_with_one_line_and_no_record(tmp_path, bench, capsys, lr):
    out = tmp_path / "run"
    code = main(["--data", str(bench), "--out", str(out), "--device", "cpu", "--threads", "1", "--image-size", "32",
                 "--batch-size", "8", "--steps", "4", "--eval-every", "2", "--lr", lr])
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and "Traceback" not in captured.err + captured.out
    assert err.startswith("error: diverged at step ") and "(try a lower --lr)" in err
    assert not is_complete(out) and not (out / "metrics.json").exists()
    assert json.loads((out / "diverged.json").read_text())["message"] in err


DIVERGING_SUITE = """
[suite]
seeds = [0, 1]

[defaults]
image_size = 32
batch_size = 8
steps = 2
dev_fraction = 0.0

[[runs]]
name = "uni-va"
tasks = ["va"]
lr = inf

[[runs]]
name = "multi"
tasks = ["expr", "au", "va"]

[[runs]]
name = "multi-from-uni-va"
tasks = ["expr", "au", "va"]
init = "uni-va"
"""


def test_a_suite_goes_on_past_a_diverged_run_and_the_study_gets_no_verdict_from_it(tmp_path, bench, capsys):
    from affectmodel.records import read_runs
    from affectmodel.study import study_report

    suite = tmp_path / "diverging.toml"
    suite.write_text(DIVERGING_SUITE)
    out = tmp_path / "runs"
    argv = ["suite", str(suite), "--data", str(bench), "--out", str(out), "--device", "cpu", "--threads", "1"]
    assert main(argv) == 1  # not finished: two runs diverged, two are blocked
    printed = capsys.readouterr().out
    # one step per evaluation period: the weights check after step 1 sees them first
    assert "uni-va/seed-0: diverged at step 1: weights are not finite (try a lower --lr)" in printed
    assert "multi-from-uni-va/seed-1: blocked: starts from uni-va/seed-1, which diverged" in printed
    assert "suite done: 2 trained" in printed and "uni-va/seed-1: diverged" in printed
    records, errors = read_runs(out)
    assert not errors and sorted(r.name for r in records) == ["multi/seed-0", "multi/seed-1"]
    report = study_report({r.name: r for r in records}, resamples=50)
    # multi has nothing to be compared with: no helped/hurt verdict comes from the diverged side
    assert report.comparisons and all(c.uni is None and c.verdict == "unmatched" for c in report.comparisons)
    # again: the diverged runs are reported, not retried (resuming them would diverge again)
    assert main(argv) == 1
    assert "uni-va/seed-0: diverged at step 1: weights are not finite (try a lower --lr) (earlier; delete the " \
           "folder to train it again)" in capsys.readouterr().out


SUITE = """
[suite]
seeds = [3]

[defaults]
image_size = 32
batch_size = 8
epochs = 2
max_steps = 2

[[runs]]
name = "uni-expr"
tasks = ["expr"]

[[runs]]
name = "multi-from-uni-expr"
tasks = ["expr", "au", "va"]
init = "uni-expr"
losses = { expr = "focal", va = "mse" }
"""


@pytest.mark.slow
def test_suite_command_trains_then_skips(tmp_path, bench, capsys):
    suite = tmp_path / "mini.toml"
    suite.write_text(SUITE)
    out = tmp_path / "runs" / "mini"
    cmd = [sys.executable, str(REPO / "train.py"), "suite", str(suite), "--data", str(bench), "--out", str(out),
           "--device", "cpu", "--threads", "1"]
    env = {**os.environ, "TQDM_DISABLE": "1"}
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, check=False)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "suite done: 2 trained, 0 already complete" in first.stdout
    assert "Synthetic-benchmark figures" in first.stdout and "| multi-from-uni-expr |" in first.stdout
    uni_dir, multi_dir = out / "uni-expr" / "seed-3", out / "multi-from-uni-expr" / "seed-3"
    assert is_complete(uni_dir) and is_complete(multi_dir)
    uni, multi = read_run(uni_dir), read_run(multi_dir)
    assert multi.config["pretrained_from"] == "uni-expr" and multi.config["losses"]["expr"] == "focal"
    assert (multi.config["suite"], multi.config["run"], multi.config["seed"]) == ("mini", "multi-from-uni-expr", 3)
    assert multi.config["init"] == str(uni_dir)
    # the budget of a run started from another run counts that run's steps and time
    assert uni.metrics["steps"] == multi.metrics["steps"] == 2 and uni.metrics["budget_steps"] == 2
    assert multi.metrics["budget_steps"] == 4 and multi.metrics["init_run"] == "uni-expr"
    assert multi.metrics["init_train_time_s"] == pytest.approx(uni.metrics["train_time_s"], abs=1e-3)
    assert uni.metrics["init_run"] is None and uni.metrics["init_train_time_s"] == 0
    assert json.loads((uni_dir / "model" / "config.json").read_text())["tasks"] == ["expr"]
    assert main(cmd[2:]) == 0  # again, in this process: nothing left to train
    assert "suite done: 0 trained, 2 already complete" in capsys.readouterr().out
