"""The study protocol of a run: held-out tuning and selection, matched label budgets, rescorable
validation predictions, leakage counts in the record, and a pre-training chain across formats."""
from typing import Any

import numpy as np
import pytest
from _training_data import TinyAffectSet
from affwild2_fixtures import au_line, make_study_tree, write_images, write_task_file

from affectmodel import load_model
from affectmodel.data.synthetic import generate_benchmark, generate_expression_folders
from affectmodel.metrics import evaluate
from affectmodel.predictions import PREDICTIONS_FILE, load_predictions
from affectmodel.records import RUN_FACTS, is_complete, read_run
from affectmodel.study import BUDGET_FACTOR, configuration_options
from affectmodel.tasks import AU_NAMES
from affectmodel.training import run_training
from affectmodel.training import trainer as trainer_mod
from affectmodel.training.cli import main
from affectmodel.training.config import TrainConfig
from affectmodel.training.identity import BUDGET_OPTIONS, IDENTITY_IGNORED, TEMPORAL_FACTOR, TEMPORAL_OPTIONS
from affectmodel.training.suite import run_suite

DATASET = {"name": "tiny-test-set", "synthetic": True}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _config(tmp_path, name, **changes):
    values: dict[str, Any] = {"out": str(tmp_path / name), "tasks": ["expr", "au", "va"], "image_size": 32,
                              "batch_size": 4, "epochs": 2, "device": "cpu", "augment": "none", "threads": 1}
    values.update(changes)
    return TrainConfig(**values)


# ------------------------------------------------------------------ held-out tuning and selection

def test_selection_and_thresholds_follow_the_development_split_never_validation(tmp_path, monkeypatch):
    """Development and validation disagree on purpose: development favours the first evaluation
    and low AU thresholds, validation would favour high ones. The record must follow development,
    and validation must be predicted once, after training, with the selected weights."""
    real = trainer_mod.Trainer.gathered_predictions
    calls = []
    rng = np.random.default_rng(0)

    def crafted(self, loader):
        gathered = real(self, loader)
        assert gathered is not None  # one process: it is the main one
        positions, outputs, targets = gathered
        which = "dev" if loader is self.dev_loader else "val"
        calls.append((which, self.state.step))
        truth = np.zeros_like(targets["au"])
        truth[::2] = 1  # every AU has positives and negatives on both splits
        targets = {**targets, "au": truth}
        if which == "dev":
            # evaluation 1: positives 0.3, negatives 0.1 (best threshold ~0.2, F1 1); later: noise
            good = self.state.epoch == 0
            scores = np.where(truth == 1, 0.3, 0.1) if good else rng.random(truth.shape)
        else:
            scores = np.where(truth == 1, 0.7, 0.6)  # separable only above 0.6
        return positions, {**outputs, "au": scores.astype(np.float32)}, targets

    monkeypatch.setattr(trainer_mod.Trainer, "gathered_predictions", crafted)
    run_dir = run_training(_config(tmp_path, "run", tasks=["au"], epochs=3), TinyAffectSet(40, missing=0.0),
                           TinyAffectSet(12, seed=1, missing=0.0), DATASET)
    m = read_run(run_dir).metrics
    assert [w for w, _ in calls] == ["dev", "dev", "dev", "val"]       # validation: once, at the end
    assert calls[-1][1] == m["steps"]
    assert m["best_epoch"] == 1 and m["selection"]["split"] == "development" and m["selection"]["epoch"] == 1
    thresholds = [m["au_thresholds"][a] for a in AU_NAMES]
    assert max(thresholds) <= 0.3                                      # tuned on development
    assert load_model(run_dir / "model").config.au_thresholds == thresholds
    # validation scored with those thresholds: every frame called positive, so below the in-sample figure
    assert m["P_AU"] < m["P_AU_tuned_on_validation"] == pytest.approx(1.0)
    assert m["selection"]["scores"]["P_AU"] == pytest.approx(1.0)


def test_no_development_split_uses_the_last_weights_and_threshold_half(tmp_path):
    run_dir = run_training(_config(tmp_path, "run", dev_fraction=0.0), TinyAffectSet(16), TinyAffectSet(8, seed=1),
                           DATASET)
    record = read_run(run_dir)
    m = record.metrics
    assert m["selection"]["split"] == "none" and "last" in m["selection"]["rule"]
    assert m["best_epoch"] == m["epochs"] == 2 and set(m["au_thresholds"].values()) == {0.5}
    assert m["P_AU"] == pytest.approx(m["P_AU_at_0.5"])
    assert not any(k.startswith(("dev_", "val_")) for k in record.history[0])


# ------------------------------------------------------------------ predictions file

def test_val_predictions_rescore_to_the_recorded_figures_and_options_read_as_the_identity(tmp_path):
    val = TinyAffectSet(12, seed=1, prefix="val")
    run_dir = run_training(_config(tmp_path, "run"), TinyAffectSet(20), val, DATASET)
    m = read_run(run_dir).metrics
    preds = load_predictions(run_dir / PREDICTIONS_FILE)
    assert preds.tasks == ("expr", "au", "va") and len(preds) == len(val)
    assert sorted(zip(preds.video, preds.frame, strict=True)) == sorted(
        (val.videos[v], int(f)) for v, f in zip(val.video_ids, val.frame_numbers, strict=True))
    again = evaluate(preds.outputs, preds.targets, preds.expression_space,
                     au_thresholds=[m["au_thresholds"][a] for a in AU_NAMES])
    for key in ("P_EXPR", "P_AU", "P_VA", "P_MTL", "ccc_valence", "ccc_arousal"):
        assert again[key] == pytest.approx(m[key], abs=1e-9), key
    # config.json = the training options + the record's own facts (records.RUN_FACTS). The study's
    # factors are the options in the identity: a key the trainer adds to config.json must be declared
    # a run fact, or it would pose as a factor.
    record = read_run(run_dir)
    options = set(TrainConfig.__dataclass_fields__)
    assert set(record.config) - options <= RUN_FACTS, "config.json keys that are neither options nor run facts"
    # a per-frame run leaves the temporal options out of its identity (identity_values); the study
    # compares them as one factor, whose per-frame level is "none"
    per_frame = set(TEMPORAL_OPTIONS)
    assert set(configuration_options(record)) == (options - IDENTITY_IGNORED - BUDGET_OPTIONS - per_frame) | {
        BUDGET_FACTOR, TEMPORAL_FACTOR}
    assert configuration_options(record)[TEMPORAL_FACTOR] == "none"



# ------------------------------------------------------------------ matched label budgets and step budgets

@pytest.fixture(scope="module")
def study_tree(tmp_path_factory):
    return make_study_tree(tmp_path_factory.mktemp("affwild2"), videos=20, frames=3, validation=4)


def test_uni_and_multi_task_runs_see_the_same_labels(tmp_path, study_tree):
    # one step of the whole (label-limited) set per epoch: every chosen label enters the loss once
    common = ["--data", str(study_tree), "--image-size", "32", "--batch-size", "32", "--epochs", "2",
              "--limit-train", "5", "--limit-val", "4", "--seed", "7", "--device", "cpu", "--threads", "1",
              "--augment", "none"]
    records = {}
    for name, tasks in (("uni-expr", "expr"), ("uni-au", "au"), ("multi", "expr,au,va")):
        assert main([*common, "--tasks", tasks, "--out", str(tmp_path / name)]) == 0
        records[name] = read_run(tmp_path / name)
    multi = records["multi"]
    for task in ("expr", "au"):
        uni = records[f"uni-{task}"]
        assert uni.metrics["labels_seen"][task] == multi.metrics["labels_seen"][task] == 2 * 5
        assert uni.config["dataset"]["label_budget"]["labels"][task] == 5
        assert uni.metrics[f"n_{task}"] == multi.metrics[f"n_{task}"] == 4  # the same validation labels
        assert uni.config["dataset"]["development"]["development"]["videos"] == \
            multi.config["dataset"]["development"]["development"]["videos"] == 2
    assert multi.metrics["labels_seen"]["va"] == 2 * 5
    assert multi.config["config_id"] != records["uni-expr"].config["config_id"]


def test_a_steps_budget_cycles_the_data_and_evaluates_evenly(tmp_path):
    run_dir = run_training(_config(tmp_path, "run", steps=10, epochs=1), TinyAffectSet(20), TinyAffectSet(8, seed=1),
                           DATASET)  # 16 training images, batch 4: 4 steps per pass, 2.5 passes
    record = read_run(run_dir)
    assert record.metrics["steps"] == record.metrics["budget_steps"] == 10 and record.metrics["images_seen"] == 40
    assert [row["step"] for row in record.history] == [2, 4, 6, 8, 10]  # 5 evaluations
    again = run_training(_config(tmp_path, "every3", steps=10, eval_every=3), TinyAffectSet(20),
                         TinyAffectSet(8, seed=1), DATASET)
    assert [row["step"] for row in read_run(again).history] == [3, 6, 9, 10]


def test_config_id_ignores_seed_and_location_but_not_what_is_computed():
    from affectmodel.training.config import config_id

    base = TrainConfig(tasks=["expr"], steps=100)
    assert config_id(base) == config_id(base.replace(seed=3, out="/x", data="/y", workers=4, threads=2, run="a"))
    assert config_id(base) != config_id(base.replace(lr=0.01))
    assert config_id(base) != config_id(base.replace(steps=200))


def test_config_id_says_how_batchnorm_was_batched_over_processes():
    from affectmodel.training.config import config_id

    base = TrainConfig(tasks=["expr", "va"], steps=100, batch_size=256)
    one = config_id(base)
    # BatchNorm over 128 images per process is not BatchNorm over 256: not seeds of one configuration.
    assert config_id(base, world_size=2) != one and config_id(base, world_size=4) != config_id(base, world_size=2)
    # SyncBatchNorm (and the default global-batch CCC) make N processes compute what one does.
    synced = base.replace(sync_bn=True)
    assert config_id(synced, world_size=8) == config_id(synced) == one
    # Per-process CCC is a difference of its own, even with SyncBatchNorm.
    local_ccc = synced.replace(ccc_global_batch=False)
    assert config_id(local_ccc, world_size=2) != config_id(local_ccc)


# ------------------------------------------------------------------ leakage guard

def _leaky(root):
    make_study_tree(root, videos=10, frames=3, validation=2)
    write_images(root, "tL", [1, 2, 3])  # EXPR training and AU validation: a leak
    write_task_file(root, "newer", "expr", "train", "tL", ["1", "2", "3"])
    write_task_file(root, "newer", "au", "validation", "tL", [au_line(1)] * 3)
    return root


@pytest.mark.parametrize("keep", [False, True])
def test_leakage_counts_reach_the_run_record(tmp_path, keep):
    root = _leaky(tmp_path / "data")
    argv = ["--data", str(root), "--out", str(tmp_path / "run"), "--tasks", "expr", "--image-size", "32",
            "--batch-size", "4", "--steps", "2", "--device", "cpu", "--threads", "1"]
    if keep:
        with pytest.warns(UserWarning, match="stay in training"):
            assert main([*argv, "--keep-leaking-videos"]) == 0
    else:
        assert main(argv) == 0
    record = read_run(tmp_path / "run")
    for leak in (record.config["dataset"]["leakage"], record.metrics["leakage"]):
        assert leak["videos"] == 1 and leak["video_names"] == ["tL"] and leak["excluded"] is (not keep)
        assert leak["pairs"]["EXPR_train/AU_validation"] == {"videos": 1, "frames": 3}
    assert record.config["keep_leaking_videos"] is keep


# ------------------------------------------------------------------ pre-training chain

CHAIN = """
[suite]
name = "chain"
seeds = [0]

[defaults]
image_size = 32
batch_size = 8
steps = 2

[[runs]]
name = "pretrain-expr"
tasks = ["expr"]
data = "{folders}"

[[runs]]
name = "multi-from-pretrain"
tasks = ["expr", "au", "va"]
init = "pretrain-expr"
"""


def test_a_suite_chains_pretraining_on_a_folder_set_into_fine_tuning(tmp_path):
    folders, bench = tmp_path / "folders", tmp_path / "bench"
    generate_expression_folders(folders, videos=8, frames=10, seed=0, size=32, every=2, progress=False)
    generate_benchmark(bench, videos=6, frames=6, seed=0, size=32, progress=False)
    suite = tmp_path / "chain.toml"
    suite.write_text(CHAIN.format(folders="../folders"))  # relative to the suite's --data
    out = tmp_path / "runs"
    results = run_suite(suite, bench, out, overrides={"device": "cpu", "threads": 1}, log=lambda m: None)
    assert [r["status"] for r in results] == ["trained", "trained"]
    pre, fine = read_run(out / "pretrain-expr" / "seed-0"), read_run(out / "multi-from-pretrain" / "seed-0")
    assert pre.config["dataset"]["format"] == "image-folder" and pre.config["dataset"]["name"] != \
        fine.config["dataset"]["name"]
    assert fine.config["dataset"]["format"] == "aff-wild2" and fine.config["data"] == str(bench)
    assert fine.metrics["init_run"] == fine.config["pretrained_from"] == "pretrain-expr"
    assert fine.metrics["budget_steps"] == pre.metrics["steps"] + fine.metrics["steps"] == 4
    assert is_complete(out / "multi-from-pretrain" / "seed-0")
