"""affectmodel.training.checkpoint: a full disk during a save leaves the earlier checkpoint loadable."""
import shutil

import pytest
import torch
from small_fs import fill, mounted_tmpfs

from affectmodel.io import DiskFullError, format_bytes
from affectmodel.training import checkpoint as ckpt


def _state(n: int, value: float) -> dict:
    return {"model": {"w": torch.full((n,), value)}, "epoch": 3, "history": [{"loss": 0.5}],
            "rng": ckpt.capture_rng_state()}


def test_checkpoint_on_a_full_disk_raises_disk_full_and_keeps_the_earlier_one(tmp_path):
    with mounted_tmpfs(tmp_path / "fs", 3_000_000) as fs:
        path = ckpt.checkpoint_path(fs / "run")
        ckpt.save_checkpoint(path, _state(100_000, 1.0))          # 400 KB
        fill(fs, leave_bytes=200_000)
        bigger = _state(150_000, 2.0)                              # 600 KB: does not fit
        with pytest.raises(DiskFullError) as caught:
            ckpt.save_checkpoint(path, bigger)
        message = str(caught.value)
        free = shutil.disk_usage(fs).free
        assert message.startswith(f"disk full (No space left on device): cannot write last.pt in {path.parent}: "
                                  f"about {format_bytes(ckpt.tensor_bytes(bigger))} needed, "
                                  f"{format_bytes(free)} free")
        assert 190_000 < free <= 200_000
        assert "unexpected pos" not in message and "\n" not in message
        assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]
        saved = ckpt.load_checkpoint(path)
        assert torch.equal(saved["model"]["w"], torch.full((100_000,), 1.0)) and saved["epoch"] == 3
        # Space freed: the next save goes through.
        (fs / "filler.bin").unlink()
        ckpt.save_checkpoint(path, _state(150_000, 2.0))
        assert torch.equal(ckpt.load_checkpoint(path)["model"]["w"], torch.full((150_000,), 2.0))


def test_best_weights_on_a_full_disk_raise_disk_full_and_keep_the_earlier_file(tmp_path):
    with mounted_tmpfs(tmp_path / "fs", 3_000_000) as fs:
        path = ckpt.best_weights_path(fs / "run")
        ckpt.save_weights(path, {"w": torch.ones(100_000)})
        fill(fs, leave_bytes=200_000)
        with pytest.raises(DiskFullError, match=rf"cannot write best.safetensors in {path.parent}: about 600.0 KB"):
            ckpt.save_weights(path, {"w": torch.zeros(150_000)})
        assert sorted(p.name for p in path.parent.iterdir()) == ["best.safetensors"]
        assert torch.equal(ckpt.load_weights(path)["w"], torch.ones(100_000))


def test_tensor_bytes_counts_nested_tensors():
    assert ckpt.tensor_bytes({"a": torch.zeros(10), "b": [torch.zeros(3, dtype=torch.float64), 5, "x"]}) == 64
