"""DDP under torchrun: two CPU processes (gloo) train one run; rank 0 writes the record."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from _training_data import TinyAffectSet

from affectmodel.records import read_run
from affectmodel.training import distributed as dist_utils
from affectmodel.training.config import TrainConfig, TrainingError, config_id
from affectmodel.training.trainer import run_training

REPO = Path(__file__).resolve().parents[1]
CONFIG = {"tasks": ["expr", "au", "va"], "image_size": 32, "batch_size": 8, "epochs": 2, "device": "cpu",
          "augment": "none", "weighting": "uncertainty", "lr": 1e-3, "checkpoint_every": 1, "threads": 1}

SCRIPT = textwrap.dedent('''
    import hashlib, json, os, sys
    sys.path[:0] = [{tests!r}, {repo!r}]
    import torch
    from _training_data import TinyAffectSet
    from affectmodel.training import checkpoint as ckpt
    from affectmodel.training import trainer
    from affectmodel.training.config import TrainConfig

    rank = int(os.environ["RANK"])
    report, runs = sys.argv[1], sys.argv[2:]  # runs: MODE=FOLDER, trained one after the other
    digests = []
    real_predict, real_batch = trainer.predict, trainer.Trainer.train_batch

    def predict_and_fingerprint(model, *args, **kwargs):
        # Called once per epoch on every rank: DDP keeps the parameters identical, and every rank
        # must validate with rank 0's BatchNorm running statistics (buffers), not its own.
        params = b"".join(p.detach().numpy().tobytes() for p in model.parameters())
        buffers = b"".join(b.detach().numpy().tobytes() for b in model.buffers())
        digests.append([hashlib.sha256(params).hexdigest(), hashlib.sha256(buffers).hexdigest()])
        return real_predict(model, *args, **kwargs)

    def stop_after_three(self, *args):
        if self.state.step == 3:
            raise SystemExit(3)
        return real_batch(self, *args)

    def unreadable(path):
        raise FileNotFoundError(path)

    trainer.predict = predict_and_fingerprint
    for run in runs:
        mode, out = run.split("=", 1)
        digests.clear()
        if mode == "interrupt":  # every rank stops after 3 optimizer steps (a killed job)
            trainer.Trainer.train_batch = stop_after_three
        if mode == "resume" and rank == 1:
            # Rank 1 is on a machine that cannot see the run folder: left to itself it would start
            # fresh. Rank 0 decides and reads the checkpoint for every rank.
            trainer.check_run_folder = lambda config: False
            ckpt.load_checkpoint = unreadable
        config = TrainConfig(out=out, resume=mode == "resume", **{config!r})
        # 20 images in 5 videos: one video held out for development, 16 to train on
        trainer.run_training(config, TinyAffectSet(20, seed=0), TinyAffectSet(7, seed=1),
                             {{"name": "tiny", "synthetic": True}})
        with open(os.path.join(report, f"{{mode}}-rank{{rank}}.json"), "w") as f:
            json.dump({{"digests": digests, "world": torch.distributed.get_world_size()}}, f)
''')


def _torchrun(tmp_path, runs, expect=0):
    """One torchrun launch of 2 processes training ``runs`` ((mode, folder) pairs) one after the other."""
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT.format(tests=str(REPO / "tests"), repo=str(REPO), config=CONFIG))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script), str(tmp_path), *(f"{mode}={folder}" for mode, folder in runs)],
                          capture_output=True, text=True, timeout=220, env=env, cwd=tmp_path, check=False)
    assert (proc.returncode == 0) == (expect == 0), proc.stderr[-3000:]
    return proc


def _comparable(metrics):
    return {k: v for k, v in metrics.items() if k not in ("train_time_s", "images_per_second", "data_wait_share")}


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_cpu_processes_train_one_run_and_resume_as_rank0_decides(tmp_path):
    run_dir, resumed_dir = tmp_path / "run", tmp_path / "resumed"
    # One launch (process start-ups are most of the cost): the uninterrupted run, then another
    # run of the same configuration interrupted after 3 steps (mid-epoch 2).
    _torchrun(tmp_path, [("straight", run_dir), ("interrupt", resumed_dir)], expect=3)
    ranks = [json.loads((tmp_path / f"straight-rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["world"] == ranks[1]["world"] == 2
    # Each rank saw different data, yet parameters AND BatchNorm buffers were identical at every
    # validation (buffers: broadcast from rank 0 before validating).
    # 2 development evaluations, then the selected weights on validation
    assert len(ranks[0]["digests"]) == 3 and ranks[0]["digests"] == ranks[1]["digests"]
    assert ranks[0]["digests"][0] != ranks[0]["digests"][1]
    record = read_run(run_dir)
    assert record.metrics["world_size"] == 2 and record.config["world_size"] == 2
    # BatchNorm over 4 images per process is not one process's BatchNorm over 8: another configuration.
    config = TrainConfig(out=str(run_dir), **CONFIG)
    assert record.config_id == config_id(config, world_size=2) != config_id(config)
    # Validation outputs of both ranks (4 + 3 images, uneven shards) reached rank 0: each
    # labelled image counted once.
    val_expr = TinyAffectSet(7, seed=1).labels["expr"]
    assert record.metrics["n_expr"] == int((val_expr >= 0).sum())
    # 16 images, global batch 8 -> 2 steps per epoch (2 processes x 4 images).
    assert record.metrics["steps"] == 4 and record.metrics["images_seen"] == 32
    assert not (run_dir / "checkpoints").exists()

    # The interrupted run (after 3 steps, mid-epoch 2) is resumed with rank 1 blind to the folder.
    assert not (tmp_path / "interrupt-rank0.json").exists()  # it never reached its end
    saved = torch.load(resumed_dir / "checkpoints" / "last.pt", weights_only=True)
    assert saved["state"]["step"] == 3 and len(saved["rng_ranks"]) == 2  # each rank's own RNG state
    # One process cannot continue what two started: refused with one line, the checkpoint kept.
    with pytest.raises(TrainingError, match=r"trained by 2 process\(es\) and this launch has 1; resume it with "
                                            r"torchrun --nproc_per_node 2"):
        run_training(TrainConfig(out=str(resumed_dir), resume=True, **CONFIG), TinyAffectSet(20, seed=0),
                     TinyAffectSet(7, seed=1), {"name": "tiny", "synthetic": True})
    assert (resumed_dir / "checkpoints" / "last.pt").is_file()
    _torchrun(tmp_path, [("resume", resumed_dir)])
    resumed = read_run(resumed_dir)
    # On CPU with the same thread count, resuming gives the uninterrupted run's results exactly.
    assert _comparable(resumed.metrics) == _comparable(record.metrics)


# ------------------------------------------------------------------ helpers, with gloo on CPU


def _in_two_processes(worker, *args):
    """Run ``worker(info, *args)`` on ranks 0 and 1 of a gloo group; the ranks' outcomes."""
    from _gloo import in_two_ranks

    return in_two_ranks(lambda rank, *a: worker(dist_utils.DistInfo(rank=rank, world_size=2), *a), *args)


def _resume_decision(info, checkpoint_seen_by):
    def decide():
        assert info.rank == 0, "only rank 0 decides"
        return info.rank in checkpoint_seen_by  # "a checkpoint is there: resume"
    return dist_utils.on_rank0(decide, info)


def test_every_rank_follows_rank0s_resume_decision():
    # Multi-node: only rank 0's machine sees the checkpoint; rank 1 must resume all the same.
    assert _in_two_processes(_resume_decision, {0}) == [("ok", True), ("ok", True)]
    assert _in_two_processes(_resume_decision, {1}) == [("ok", False), ("ok", False)]


def _refusing_decision(info):
    def decide():
        raise ValueError("runs/x holds an unfinished run: pass --resume")
    return dist_utils.on_rank0(decide, info)


def test_rank0s_refusal_reaches_every_rank_instead_of_a_hang():
    expected = ("error", "ValueError: runs/x holds an unfinished run: pass --resume")
    assert _in_two_processes(_refusing_decision) == [expected, expected]


def _gather_with_empty_shard(info):
    if info.rank == 0:
        idx = np.array([4, 0, 2])
        arrays = {"au": np.arange(36, dtype=np.float32).reshape(3, 12), "expr": np.array([1, 0, 3])}
    else:  # what predict() returns for a rank without validation images
        idx, arrays = np.zeros((0,)), {"au": np.zeros((0,)), "expr": np.zeros((0,))}
    gathered = dist_utils.gather_arrays(idx, arrays, info)
    assert gathered is not None  # on every rank without to_rank0
    idx, merged = gathered
    return idx.tolist(), merged["au"].shape, str(merged["au"].dtype), merged["expr"].tolist()


def test_gather_with_an_empty_validation_shard_keeps_shapes():
    want = ("ok", ([0, 2, 4], (3, 12), "float32", [0, 3, 1]))
    assert _in_two_processes(_gather_with_empty_shard) == [want, want]


def test_single_process_on_rank0_just_calls():
    assert dist_utils.on_rank0(lambda: 7, dist_utils.DistInfo()) == 7


def test_more_processes_than_gpus_is_an_error_not_a_shared_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert dist_utils.resolve_device("cuda", 1) == torch.device("cuda", 1)
    with pytest.raises(ValueError, match=r"local rank 2 has no GPU of its own: 2 CUDA GPU\(s\) visible.*"
                                         r"--nproc_per_node 2"):
        dist_utils.resolve_device("cuda", 2)
    with pytest.raises(ValueError, match="local rank 3"):
        dist_utils.resolve_device("auto", 3)


def test_a_process_without_validation_images_gives_outputs_of_the_right_shape():
    from torch.utils.data import DataLoader

    from affectmodel.model import AffectModel, ModelConfig
    from affectmodel.training.evaluation import predict

    model = AffectModel(ModelConfig(tasks=["expr", "au", "va"], input_size=32))
    positions, outputs, targets = predict(model, DataLoader([], batch_size=4), torch.device("cpu"))
    assert positions.shape == (0,)
    assert outputs["expr"].shape == (0, 8) and outputs["au"].shape == (0, 12) and outputs["va"].shape == (0, 2)
    assert targets["expr"].shape == (0,) and targets["au"].shape == (0, 12) and targets["va"].shape == (0, 2)


def test_skipped_fp16_step_does_not_advance_the_lr_schedule(tmp_path):
    """fp16 logic on CPU tensors: an enabled GradScaler that finds inf/NaN gradients (here: a
    batch that overflows) skips the optimizer step; the trainer then leaves the LR schedule."""
    from affectmodel.training import trainer as trainer_mod
    from affectmodel.training.batches import RunData
    from affectmodel.training.config import TrainConfig

    config = TrainConfig(out=str(tmp_path / "run"), tasks=["expr"], image_size=32, batch_size=4, epochs=1,
                         device="cpu", augment="none", threads=1)
    data = RunData(TinyAffectSet(8), None, TinyAffectSet(4, seed=1))  # train, development, validation
    run = trainer_mod.Trainer(config, data, {"name": "tiny"}, dist_utils.DistInfo(), None)
    run.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 16)
    images, targets, _ = next(iter(run.pass_loader(0, 0)))
    overflowing = images * 1e38
    before = [p.detach().clone() for p in run.module.parameters()]
    lr_before, sched_before = run.optimizer.param_groups[0]["lr"], run.scheduler.last_epoch
    sums = torch.zeros(4, dtype=torch.float64)
    run.train_batch(overflowing, targets, sums)
    assert run.scaler.get_scale() < 2.0 ** 16          # the scaler saw inf gradients and backed off
    assert all(torch.equal(a, b) for a, b in zip(before, run.module.parameters(), strict=True))  # step skipped
    assert run.scheduler.last_epoch == sched_before and run.optimizer.param_groups[0]["lr"] == lr_before
    assert run.state.step == 1 and sums[-1] == 1       # the step still counts (as torch's own loop)
    run.train_batch(images, targets, sums)
    assert run.scheduler.last_epoch == sched_before + 1


def _train_with_sync_bn(info, out):
    from affectmodel.training import trainer as trainer_mod
    from affectmodel.training.sync_batchnorm import SyncBatchNormNoHostSync

    layers = []
    real_setup = trainer_mod.Trainer.setup_model

    def setup_model(self):
        real_setup(self)
        batchnorm = torch.nn.modules.batchnorm._BatchNorm
        layers.extend(type(m).__name__ for m in self.module.modules() if isinstance(m, batchnorm))

    trainer_mod.Trainer.setup_model = setup_model
    config = TrainConfig(out=out, tasks=["expr"], image_size=32, batch_size=4, epochs=1, device="cpu", sync_bn=True,
                         dev_fraction=0, threads=1, augment="none")
    run_training(config, TinyAffectSet(8), TinyAffectSet(4, seed=1), {"name": "tiny"}, dist_info=info)
    assert set(layers) == {SyncBatchNormNoHostSync.__name__} and len(layers) == 20
    return read_run(out).config_id if info.is_main else None


def test_sync_bn_trains_on_cpu_processes_and_shares_the_one_process_config_id(tmp_path):
    """Two gloo processes with --sync-bn normalise over the global batch, as one process does:
    their run is a seed of the one-process configuration (without --sync-bn it would not be)."""
    out = str(tmp_path / "run")
    (rank0, ident), (rank1, _) = _in_two_processes(_train_with_sync_bn, out)
    assert rank0 == rank1 == "ok", ident
    config = TrainConfig(out=out, tasks=["expr"], image_size=32, batch_size=4, epochs=1, device="cpu", sync_bn=True,
                         dev_fraction=0, threads=1, augment="none")
    assert ident == config_id(config) == config_id(config, world_size=2)
    assert config_id(config.replace(sync_bn=False), world_size=2) != ident
