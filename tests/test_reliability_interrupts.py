"""Interruptions (issue 10): training killed with SIGKILL and resumed, an interrupted suite, an
interrupted publish. Outcomes are listed in docs/RELIABILITY.md.

Training runs ``train.py`` as a real subprocess on a tiny synthetic benchmark (32 px, one thread)
and kills it twice over:

* at random moments (seeded delays after the run record appears), several times in a row, each
  time resuming with ``--resume``;
* at exact moments inside a write (a checkpoint or history file half on disk, then SIGKILL), by
  running the training command through a small wrapper that patches the writer.

After every kill each file of the run record that a reader can see must be whole (every JSON
parses, ``history.csv`` has whole rows, the checkpoint loads with ``weights_only=True``), the
checkpoint must never go backwards, and the finished run must equal an uninterrupted one
(same weights, same metrics): nothing lost beyond the last checkpoint, nothing done twice.
"""
from __future__ import annotations

import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hub_fixtures import make_run
from safetensors.torch import load_file

from affectmodel.data.synthetic import generate_benchmark
from affectmodel.hub import publish
from affectmodel.records import is_complete
from affectmodel.training import checkpoint as ckpt
from affectmodel.training.cli import main as train_main

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

TRAIN_OPTIONS = ["--image-size", "32", "--batch-size", "8", "--epochs", "3", "--lr", "1e-3", "--device", "cpu",
                 "--threads", "1", "--checkpoint-every", "2", "--dev-fraction", "0"]  # 3 training videos: none to spare
# Fields of metrics.json that depend on the wall clock, not on what was computed.
TIMING_FIELDS = {"train_time_s", "images_per_second", "data_wait_share", "init_train_time_s"}

# Runs the training command (or a publish) with one writer patched to die in mid-write:
#   KILL_IN=checkpoint:N  the N-th checkpoint save writes half its bytes, then SIGKILL
#   KILL_IN=history:N     the N-th history.csv write writes half its text, then SIGKILL
#   KILL_IN=publish       the dry-run publish dies after copying some files into its folder
WRAPPER = r'''
import os, pathlib, signal, sys
kind, _, nth = os.environ["KILL_IN"].partition(":")
nth = int(nth or 1)
calls = {"n": 0}

def die():
    sys.stdout.flush(); sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)

if kind == "checkpoint":
    import torch
    from affectmodel.training import checkpoint
    real_save = torch.save
    class PatchedTorch:
        def __getattr__(self, name):
            return getattr(torch, name)
        @staticmethod
        def save(obj, path, *args, **kwargs):
            real_save(obj, path, *args, **kwargs)
            calls["n"] += 1
            if calls["n"] == nth:
                data = pathlib.Path(path).read_bytes()
                pathlib.Path(path).write_bytes(data[: len(data) // 2])
                die()
    checkpoint.torch = PatchedTorch()
elif kind == "history":
    real_write_text = pathlib.Path.write_text
    def write_text(self, text, *args, **kwargs):
        if self.name.startswith(".history.csv."):
            calls["n"] += 1
            if calls["n"] == nth:
                real_write_text(self, text[: len(text) // 2], *args, **kwargs)
                die()
        return real_write_text(self, text, *args, **kwargs)
    pathlib.Path.write_text = write_text
elif kind == "publish":
    from affectmodel.hub import publish
    real_copy = publish.shutil.copyfile
    def copyfile(src, dst, *args, **kwargs):
        result = real_copy(src, dst, *args, **kwargs)
        if str(src).endswith("config.json"):
            die()
        return result
    publish.shutil.copyfile = copyfile

if sys.argv[1] == "publish":
    from affectmodel.cli import main
else:
    from affectmodel.training.cli import main
sys.exit(main(sys.argv[1:]))
'''


def _env() -> dict[str, str]:
    return {**os.environ, "TQDM_DISABLE": "1", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


@pytest.fixture(autouse=True)
def _restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)  # --threads 1 in-process changes the process-wide setting


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("interrupt_bench")
    generate_benchmark(root, videos=4, frames=8, seed=0, size=32, progress=False)
    return root


@pytest.fixture(scope="module")
def reference(bench, tmp_path_factory) -> Path:
    """The same run, never interrupted."""
    out = tmp_path_factory.mktemp("reference") / "run"
    before = torch.get_num_threads()
    try:
        assert train_main(["--data", str(bench), "--out", str(out), *TRAIN_OPTIONS]) == 0
    finally:
        torch.set_num_threads(before)
    return out


@pytest.fixture(scope="module")
def wrapper(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("wrapper") / "kill_in_write.py"
    path.write_text(WRAPPER)
    return path


def _train_cmd(bench: Path, out: Path, resume: bool = False) -> list[str]:
    return [str(REPO / "train.py"), "--data", str(bench), "--out", str(out), *TRAIN_OPTIONS] + (
        ["--resume"] if resume else [])


def check_run_record(run: Path) -> int | None:
    """Every visible file of the run is whole; returns the checkpoint's step (None: no checkpoint)."""
    for path in run.rglob("*.json"):
        if not path.name.startswith("."):
            json.loads(path.read_text(encoding="utf-8"))  # raises on a half-written file
    history = run / "history.csv"
    if history.exists():
        rows = list(csv.reader(history.open(newline="")))
        assert rows and all(len(r) == len(rows[0]) for r in rows), rows
        assert [int(r[0]) for r in rows[1:]] == list(range(1, len(rows)))  # epochs 1..n, whole rows
    step = None
    last = ckpt.checkpoint_path(run)
    if last.exists():
        state = ckpt.load_checkpoint(last)  # weights_only=True: raises on a truncated file
        step = int(state["state"]["step"])
        assert set(state) >= {"module", "optimizer", "scheduler", "rng", "state"}
    if ckpt.best_weights_path(run).exists():
        load_file(str(ckpt.best_weights_path(run)))
    if is_complete(run):
        load_file(str(run / "model" / "model.safetensors"))
    return step


def assert_same_result(run: Path, reference: Path) -> None:
    assert is_complete(run)
    got = load_file(str(run / "model" / "model.safetensors"))
    want = load_file(str(reference / "model" / "model.safetensors"))
    assert got.keys() == want.keys()
    for key in want:
        assert torch.equal(got[key], want[key]), key
    metrics = {k: v for k, v in json.loads((run / "metrics.json").read_text()).items() if k not in TIMING_FIELDS}
    expected = {k: v for k, v in json.loads((reference / "metrics.json").read_text()).items()
                if k not in TIMING_FIELDS}
    # The machine block records where the last leg ran; a resume finished in this process lacks the
    # subprocess's OMP_NUM_THREADS, which is the environment, not what was computed.
    machine, expected_machine = metrics.pop("machine"), expected.pop("machine")
    machine.pop("environment"), expected_machine.pop("environment")
    assert machine == expected_machine
    assert metrics == expected

    def history(path: Path) -> list[dict]:
        return [{k: v for k, v in row.items() if k != "time_s"} for row in csv.DictReader(path.open())]

    assert history(run / "history.csv") == history(reference / "history.csv")
    assert not (run / ckpt.CHECKPOINT_DIR).exists()  # tidied once complete


def _kill_after(process: subprocess.Popen, run: Path, delay: float, startup: float | None = None,
                timeout: float = 120) -> bool:
    """SIGKILL ``process`` ``delay`` seconds after it starts training: after its run record appears,
    or (a resume, whose record exists already) ``startup`` seconds after launch. False if it ended
    first."""
    deadline = time.monotonic() + timeout
    if startup is not None:
        delay += startup
    else:
        while not (run / "config.json").exists():
            if process.poll() is not None:
                return False
            assert time.monotonic() < deadline, "training did not start"
            time.sleep(0.05)
    try:
        process.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        return True


# ------------------------------------------------------------------ training

def test_sigkill_at_random_moments_then_resume_equals_an_uninterrupted_run(bench, reference, tmp_path):
    run = tmp_path / "run"
    rng = random.Random(10)
    steps, kills, startup = [], 0, None
    for attempt in range(3):
        delay = rng.uniform(0.0, 3.0)
        launched = time.monotonic()
        process = subprocess.Popen([sys.executable, *_train_cmd(bench, run, resume=attempt > 0)], cwd=REPO,
                                   env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        killed = _kill_after(process, run, delay, startup)
        if startup is None:  # imports and data loading, measured once: resumes start as slowly
            startup = time.monotonic() - launched - delay
        if not killed:
            assert process.returncode == 0, process.stderr.read().decode()
            break
        kills += 1
        step = check_run_record(run)
        steps.append(step)
        print(f"\nkill {kills} after {delay:.2f} s: checkpoint at step {step}")
    # the checkpoint only moves forward: a kill never loses work that was already checkpointed
    known = [s for s in steps if s is not None]
    assert known == sorted(known)
    if not is_complete(run):
        assert train_main(_train_cmd(bench, run, resume=True)[1:]) == 0
    assert kills >= 1, "the run finished before any kill: lengthen it"
    assert_same_result(run, reference)


KILLS_IN_A_WRITE = ["checkpoint:3", "history:2"]


@pytest.fixture(scope="module")
def killed_in_a_write(bench, wrapper, tmp_path_factory) -> dict[str, tuple[Path, int, bytes]]:
    """The training command killed inside a write, once per ``KILL_IN``: ``(run folder, exit status,
    stderr)``. The two processes are started together: each trains on one thread, so they share the
    machine's cores instead of waiting for each other (where each dies depends on a write, not on time)."""
    started = {}
    for kill_in in KILLS_IN_A_WRITE:
        run = tmp_path_factory.mktemp("killed_in_a_write") / "run"
        started[kill_in] = run, subprocess.Popen([sys.executable, str(wrapper), *_train_cmd(bench, run)[1:]], cwd=REPO,
                                                 env={**_env(), "KILL_IN": kill_in}, stdout=subprocess.DEVNULL,
                                                 stderr=subprocess.PIPE)
    done = {}
    for kill_in, (run, process) in started.items():
        _, stderr = process.communicate(timeout=300)
        done[kill_in] = run, process.returncode, stderr
    return done


@pytest.mark.parametrize("kill_in", KILLS_IN_A_WRITE)
def test_sigkill_in_the_middle_of_a_write_leaves_the_record_whole(bench, reference, killed_in_a_write, kill_in,
                                                                 capsys):
    """checkpoint:3 - the third checkpoint half written (the second is used); history:2 - the
    second epoch's history.csv half written (the first epoch's stays). A resume with other options
    or without --resume is refused first."""
    run, returncode, stderr = killed_in_a_write[kill_in]
    assert returncode == -signal.SIGKILL, stderr.decode()[-2000:]
    step = check_run_record(run)
    leftovers = sorted(p.name for p in run.rglob(".*.tmp"))
    assert leftovers, "the kill happened mid-write, so a hidden temporary file is expected"
    if kill_in == "checkpoint:3":
        assert step is not None and step > 0
        argv = _train_cmd(bench, run, resume=True)[1:]
        argv[argv.index("--lr") + 1] = "0.5"
        assert train_main(argv) == 2
        err = capsys.readouterr().err
        assert "options differ from the interrupted run" in err and "lr" in err and "Traceback" not in err
        assert train_main(_train_cmd(bench, run)[1:]) == 2  # without --resume: never overwritten
        assert "pass --resume" in capsys.readouterr().err
        assert check_run_record(run) == step
    else:
        rows = list(csv.DictReader((run / "history.csv").open()))
        assert [r["epoch"] for r in rows] == ["1"]
    assert train_main(_train_cmd(bench, run, resume=True)[1:]) == 0
    assert_same_result(run, reference)
    # the big temporary files (checkpoints) are gone; only a tiny record temp file may remain
    assert all(p.stat().st_size < 100_000 for p in run.rglob(".*.tmp"))


def test_the_next_checkpoint_removes_temporary_files_of_a_killed_write(tmp_path):
    folder = tmp_path / ckpt.CHECKPOINT_DIR
    folder.mkdir()
    stale = [folder / ".last.pt.k1ll3d.tmp", folder / ".best.safetensors.x2.tmp"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    ckpt.save_checkpoint(folder / ckpt.LAST_FILE, {"state": {"step": 1}})
    assert sorted(p.name for p in folder.iterdir()) == [ckpt.LAST_FILE]
    assert ckpt.load_checkpoint(folder / ckpt.LAST_FILE)["state"]["step"] == 1


# ------------------------------------------------------------------ suites

SUITE = """
[defaults]
image_size = 32
batch_size = 8
epochs = 2
threads = 1
device = "cpu"
checkpoint_every = 2
dev_fraction = 0  # 3 training videos: too few to hold one out for every task

[[runs]]
name = "first"
tasks = ["expr"]

[[runs]]
name = "second"
tasks = ["expr", "au", "va"]

[[runs]]
name = "third"
tasks = ["va"]
"""


def test_an_interrupted_suite_continues_where_it_stopped(bench, tmp_path, capsys):
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE)
    out = tmp_path / "suite"
    argv = ["suite", str(suite), "--data", str(bench), "--out", str(out)]
    process = subprocess.Popen([sys.executable, str(REPO / "train.py"), *argv], cwd=REPO, env=_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    run = {name: out / name / "seed-0" for name in ("first", "second", "third")}  # <name>/seed-<k>
    killed = _kill_after(process, run["second"], delay=random.Random(3).uniform(0.3, 1.5))
    assert killed, process.stderr.read().decode()[-2000:]
    assert is_complete(run["first"]) and not is_complete(run["second"])
    assert not (out / "third").exists()
    first_metrics = (run["first"] / "metrics.json").read_bytes()
    check_run_record(run["second"])
    assert train_main(argv) == 0
    printed = capsys.readouterr().out
    assert "first/seed-0: complete, skipped" in printed
    assert "second/seed-0: training" in printed and "third/seed-0: training" in printed
    assert "suite done: 2 trained, 1 already complete" in printed
    assert (run["first"] / "metrics.json").read_bytes() == first_metrics  # untouched
    for folder in run.values():
        assert is_complete(folder)
        check_run_record(folder)


# ------------------------------------------------------------------ publishing

def test_a_killed_dry_run_publish_leaves_no_half_written_folder(tmp_path, wrapper):
    run = make_run(tmp_path)
    dest = tmp_path / "upload" / "affect-mtl"
    result = subprocess.run([sys.executable, str(wrapper), "publish", str(run), "--repo", "me/affect-mtl",
                             "--dry-run", str(dest)], cwd=REPO, env={**_env(), "KILL_IN": "publish"},
                            capture_output=True, timeout=120, check=False)
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()[-2000:]
    assert not dest.exists()  # the destination is either whole or absent
    partial = list(dest.parent.glob(".affect-mtl.*.partial"))
    assert len(partial) == 1  # SIGKILL leaves the hidden build folder; nothing can clean up at that moment
    published = publish.publish_run(run, "me/affect-mtl", dry_run_dir=dest)
    assert sorted(published.files) == sorted(p.name for p in dest.iterdir())
    assert sorted(p.name for p in dest.parent.iterdir()) == ["affect-mtl"]  # the next publish tidied up


def test_a_publish_that_fails_mid_write_changes_nothing_locally(tmp_path, monkeypatch):
    """The upload succeeds but recording it in the run's metrics.json fails at the rename: the old
    metrics.json stays whole and no temporary file is left."""
    import types

    from huggingface_hub import HfApi

    run = make_run(tmp_path)
    before = (run / "metrics.json").read_bytes()
    monkeypatch.setattr(HfApi, "create_repo", lambda api, repo_id, **kw: None)
    monkeypatch.setattr(HfApi, "upload_folder", lambda api, **kw: types.SimpleNamespace(commit_url=None))
    real_replace = os.replace

    def failing_replace(src, dst, *args, **kwargs):
        if str(dst).endswith("metrics.json"):
            raise OSError(28, "No space left on device")
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr("affectmodel.io.os.replace", failing_replace)
    with pytest.raises(OSError, match="No space left"):
        publish.publish_run(run, "me/affect-mtl")
    assert (run / "metrics.json").read_bytes() == before
    assert not [p for p in run.iterdir() if p.name.startswith(".")]
    # assembling a dry-run folder that fails midway removes its partial folder too
    monkeypatch.setattr(publish.shutil, "copyfile", lambda *a, **k: (_ for _ in ()).throw(OSError(5, "I/O error")))
    with pytest.raises(OSError):
        publish.publish_run(run, "me/affect-mtl", dry_run_dir=tmp_path / "dry" / "out")
    assert list((tmp_path / "dry").iterdir()) == []
    shutil.rmtree(tmp_path / "dry")
