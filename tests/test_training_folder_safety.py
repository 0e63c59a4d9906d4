"""One writer per run folder and a full disk during training: one line each, nothing mixed or lost,
and ``--resume`` continues once space is freed (a real full disk: a small tmpfs the test mounts)."""
import os
from pathlib import Path

import pytest
from _training_data import TinyAffectSet
from small_fs import fill, mounted_tmpfs

from affectmodel.data.synthetic import generate_benchmark
from affectmodel.io import DiskFullError
from affectmodel.locking import run_folder_lock
from affectmodel.records import is_complete, read_run
from affectmodel.training import checkpoint as ckpt
from affectmodel.training.cli import main
from affectmodel.training.config import TrainConfig
from affectmodel.training.trainer import run_training

DATASET = {"name": "tiny", "synthetic": True}


def _config(out, **kw):
    return TrainConfig(out=str(out), tasks=["expr", "au", "va"], image_size=32, batch_size=4, epochs=1,
                       device="cpu", augment="none", threads=1, dev_fraction=0, checkpoint_every=1, **kw)


def test_second_train_on_a_folder_being_written_gets_one_line(tmp_path, capsys):
    bench = tmp_path / "data"
    generate_benchmark(bench, videos=4, frames=6, seed=0, size=32, progress=False)
    out = tmp_path / "run"
    with run_folder_lock(out, purpose="train"):  # the first train.py, still running
        code = main(["--data", str(bench), "--out", str(out), "--image-size", "32", "--max-steps", "1",
                     "--threads", "1"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == (f"error: run folder {out} is being written by pid {os.getpid()} on {os.uname().nodename} "
                   f"(train, since {err.split('since ')[1].split(')')[0]}): wait for it to finish or stop it")
    assert not any(p.name != ".affectmodel-lock" for p in out.iterdir())  # the second wrote nothing


def test_a_full_disk_in_train_py_is_one_line(tmp_path, capsys, monkeypatch):
    from affectmodel.training import trainer

    def full(config, progress=None):
        raise DiskFullError(f"disk full (No space left on device): cannot write last.pt in {tmp_path}: "
                            "about 135.0 MB needed, 3.1 MB free (the earlier last.pt, if any, is unchanged)")

    monkeypatch.setattr(trainer, "train_run", full)
    assert main(["--data", str(tmp_path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: disk full") and str(tmp_path) in err


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_disk_full_during_a_checkpoint_keeps_the_last_one_and_resume_works_once_space_is_freed(tmp_path):
    train, val = TinyAffectSet(16, seed=0), TinyAffectSet(6, seed=1)
    # ResNet-18 + AdamW: a checkpoint is ~135 MB; the old one and the one being written coexist.
    with mounted_tmpfs(tmp_path / "fs", 450 * 10**6) as fs:
        out = fs / "run"
        filler: Path | None = None

        def fill_after_first_checkpoint(fraction, message):
            nonlocal filler
            if filler is None and ckpt.checkpoint_path(out).is_file():
                filler = fill(fs, leave_bytes=20 * 10**6)  # the next checkpoint cannot fit

        with pytest.raises(DiskFullError) as caught:
            run_training(_config(out), train, val, DATASET, progress=fill_after_first_checkpoint)
        message = str(caught.value)
        assert "\n" not in message and "disk full" in message
        assert str(out / "checkpoints") in message and "needed" in message and "free" in message
        saved = ckpt.load_checkpoint(ckpt.checkpoint_path(out))  # the earlier checkpoint, intact
        assert saved["state"]["step"] == 1
        assert not list((out / "checkpoints").glob(".*.tmp"))  # no partial file left behind
        assert not is_complete(out)

        assert filler is not None  # the checkpoint was written, then the disk filled
        filler.unlink()  # space freed
        run_training(_config(out, resume=True), train, val, DATASET)
        record = read_run(out)
        assert record.metrics["steps"] == 4 and is_complete(out)
    straight = tmp_path / "straight"
    run_training(_config(straight), train, val, DATASET)
    keep = lambda m: {k: v for k, v in m.items() if k not in ("train_time_s", "images_per_second",  # noqa: E731
                                                              "data_wait_share")}
    assert keep(record.metrics) == keep(read_run(straight).metrics)  # as if the disk had never filled
