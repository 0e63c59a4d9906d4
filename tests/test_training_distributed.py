"""DDP under torchrun: two CPU processes (gloo) train one run; rank 0 writes the record."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from _training_data import TinyAffectSet
from affectmodel.records import read_run

REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent('''
    import hashlib, json, os, sys
    sys.path[:0] = [{tests!r}, {repo!r}]
    import torch
    from _training_data import TinyAffectSet
    from affectmodel.training import trainer
    from affectmodel.training.config import TrainConfig

    rank = int(os.environ["RANK"])
    digests = []
    real_predict = trainer.predict

    def predict_and_fingerprint(model, *args, **kwargs):
        # Called once per epoch on every rank: DDP must keep the replicas identical.
        blob = b"".join(p.detach().numpy().tobytes() for p in model.parameters())
        digests.append(hashlib.sha256(blob).hexdigest())
        return real_predict(model, *args, **kwargs)

    trainer.predict = predict_and_fingerprint
    config = TrainConfig(out=sys.argv[1], tasks=["expr", "au", "va"], image_size=32, batch_size=8, epochs=2,
                         device="cpu", augment="none", weighting="uncertainty", lr=1e-3)
    trainer.run_training(config, TinyAffectSet(16, seed=0), TinyAffectSet(7, seed=1), {{"name": "tiny", "synthetic": True}})
    with open(os.path.join(sys.argv[2], f"rank{{rank}}.json"), "w") as f:
        json.dump({{"digests": digests, "world": torch.distributed.get_world_size()}}, f)
''')


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_two_cpu_processes_train_one_run(tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT.format(tests=str(REPO / "tests"), repo=str(REPO)))
    run_dir = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script), str(run_dir), str(tmp_path)],
                          capture_output=True, text=True, timeout=220, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["world"] == ranks[1]["world"] == 2
    # Each rank saw different data, yet the replicas stayed identical after every epoch.
    assert len(ranks[0]["digests"]) == 2 and ranks[0]["digests"] == ranks[1]["digests"]
    assert ranks[0]["digests"][0] != ranks[0]["digests"][1]
    record = read_run(run_dir)
    assert record.metrics["world_size"] == 2 and record.config["world_size"] == 2
    # Validation outputs of both ranks (4 + 3 images) were gathered: each labelled image counted once.
    val_expr = TinyAffectSet(7, seed=1).labels["expr"]
    assert record.metrics["n_expr"] == int((val_expr >= 0).sum())
    # 16 images, global batch 8 -> 2 steps per epoch (2 processes x 4 images).
    assert record.metrics["steps"] == 4 and record.metrics["images_seen"] == 32
    assert not (run_dir / "checkpoints").exists()
