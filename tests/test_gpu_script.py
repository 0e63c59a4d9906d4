"""benchmarks/gpu.py, the GPU check: a clear refusal without CUDA, and its --smoke mode (the same
steps on CPU with tiny sizes and a 2-process gloo group) runs end to end and writes its results."""
import json
import os
import subprocess
import sys
from pathlib import Path

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
def test_smoke_mode_runs_every_step_and_writes_json_and_a_table(tmp_path):
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu.py"), "--smoke", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=880, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "gpu.json").read_text())
    assert results["mode"] == "smoke" and results["ok"]
    for name in ("uni", "multi"):
        assert results["bare_step"][name]["images_per_s"] > 0
        for source in ("cache", "jpeg"):
            row = results["loop"][source][name]
            assert row["images_per_s"] > 0 and 0 <= row["data_wait_share"] <= 1 and row["of_bare"] > 0
    assert results["ddp"]["world_size"] == 2 and results["ddp"]["backend"] == "gloo"
    assert results["fit"]["loss_fell"] and results["fit"]["train_loss"][-1] < results["fit"]["train_loss"][0]
    table = (tmp_path / "gpu.md").read_text()
    assert "| training loop from frame cache, img/s |" in table and "DDP (gloo, 2 processes" in table
