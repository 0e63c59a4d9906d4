"""affectmodel.locking: one writer per run folder; killed holders do not leave it stuck."""
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from affectmodel.locking import LOCK_FILE, RunFolderLockedError, ensure_not_being_written, lock_path, run_folder_lock

REPO = Path(__file__).resolve().parents[1]


def _race(run_dir: str, barrier, results, index: int) -> None:
    barrier.wait()
    try:
        with run_folder_lock(run_dir, purpose=f"racer{index}"):
            results[index] = "won"
            barrier.wait()  # hold the lock until every racer has tried
    except RunFolderLockedError as e:
        results[index] = f"lost: {e}"
        barrier.wait()


@pytest.mark.parametrize("round_", range(3))
def test_processes_racing_on_one_folder_exactly_one_wins(tmp_path, round_):
    ctx = multiprocessing.get_context("fork")
    n = 4
    barrier = ctx.Barrier(n)
    results = ctx.Manager().dict()
    procs = [ctx.Process(target=_race, args=(str(tmp_path / "run"), barrier, results, i)) for i in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    outcomes = [results[i] for i in range(n)]
    assert outcomes.count("won") == 1, outcomes
    winner = next(p.pid for p, o in zip(procs, outcomes, strict=True) if o == "won")
    for outcome in outcomes:
        if outcome != "won":
            assert f"run folder {tmp_path / 'run'} is being written by pid {winner}" in outcome
    assert not lock_path(tmp_path / "run").exists()  # released on exit


HOLDER = textwrap.dedent('''
    import sys, time
    sys.path.insert(0, {repo!r})
    from affectmodel.locking import run_folder_lock
    with run_folder_lock(sys.argv[1], purpose="train"):
        print("held", flush=True)
        time.sleep(60)
''')


def _start_holder(run_dir: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER.format(repo=str(REPO)), str(run_dir)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_live_holder_is_named_and_killed_holder_is_taken_over(tmp_path, capsys):
    run_dir = tmp_path / "run"
    holder = _start_holder(run_dir)
    try:
        with (pytest.raises(RunFolderLockedError, match=rf"{run_dir} is being written by pid {holder.pid} .*train"),
              run_folder_lock(run_dir)):
            pass
        with pytest.raises(RunFolderLockedError, match=f"pid {holder.pid}"):
            ensure_not_being_written(run_dir)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    # The SIGKILLed holder could not clean up: its lock file is still there, naming it.
    assert json.loads(lock_path(run_dir).read_text())["pid"] == holder.pid
    ensure_not_being_written(run_dir)  # stale: publishing is allowed
    with run_folder_lock(run_dir, purpose="resume") as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()
        assert json.loads(path.read_text())["purpose"] == "resume"
    assert f"took over the lock of {run_dir} left by pid {holder.pid}" in capsys.readouterr().err
    assert not lock_path(run_dir).exists()


def test_lock_from_another_host_is_not_taken_over_silently(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    foreign = {"pid": 4242, "host": "some-other-machine", "started": "2026-01-01T00:00:00", "purpose": "train"}
    lock_path(run_dir).write_text(json.dumps(foreign))
    with (pytest.raises(RunFolderLockedError, match="pid 4242 on some-other-machine.*another machine.*delete"),
          run_folder_lock(run_dir)):
        pass
    with pytest.raises(RunFolderLockedError, match="some-other-machine"):
        ensure_not_being_written(run_dir)
    assert json.loads(lock_path(run_dir).read_text()) == foreign  # left as it was


def test_read_guard_creates_nothing_and_lock_is_reusable(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    ensure_not_being_written(run_dir)
    assert list(run_dir.iterdir()) == []
    for _ in range(2):  # released, then taken again by the same process
        with run_folder_lock(run_dir), pytest.raises(RunFolderLockedError):
            ensure_not_being_written(run_dir)
    assert [p.name for p in run_dir.iterdir()] == []
    assert LOCK_FILE.startswith(".")  # hidden: not listed as a run file


def test_publish_refuses_a_run_being_written(tmp_path):
    from hub_fixtures import make_run

    from affectmodel.hub.publish import publish_run

    run = make_run(tmp_path)
    holder = _start_holder(run)
    try:
        with pytest.raises(RunFolderLockedError, match=f"{run} is being written by pid {holder.pid}"):
            publish_run(run, "me/x", dry_run_dir=tmp_path / "out")
        assert not (tmp_path / "out").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    publish_run(run, "me/x", dry_run_dir=tmp_path / "out")  # the holder is gone: allowed
    assert (tmp_path / "out" / "config.json").is_file()
