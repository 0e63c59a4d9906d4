"""Temporal runs (affectmodel.training.temporal): smooth, conv and gru over a per-frame run."""
import json
from typing import Any

import numpy as np
import pytest

from affectmodel.hub.loading import load_model
from affectmodel.predictions import load_predictions
from affectmodel.training.config import TrainConfig, TrainingError, config_id
from affectmodel.training.trainer import train_run

pytestmark = pytest.mark.usefixtures("one_torch_thread")
COMMON: dict[str, Any] = {"image_size": 24, "batch_size": 8, "threads": 1, "workers": 0, "dev_fraction": 0.3,
                          "augment": "none"}


@pytest.fixture(scope="module")
def per_frame(tmp_path_factory):
    """A tiny dynamic benchmark and a per-frame multi-task run on it (a few steps)."""
    from affectmodel.data.synthetic import SynthConfig
    from affectmodel.data.synthetic_dynamics import generate_dynamic_benchmark

    root = tmp_path_factory.mktemp("temporal")
    data = root / "data"
    generate_dynamic_benchmark(data, config=SynthConfig(videos=8, frames=16, size=24, seed=1,
                                                        validation_fraction=0.25), progress=False)
    run = train_run(TrainConfig(data=str(data), out=str(root / "per-frame"), steps=3, **COMMON))
    return root, data, run


@pytest.mark.parametrize(("kind", "causal"), [("gru", False), ("conv", True), ("smooth", False)])
def test_temporal_run_writes_a_complete_record_over_the_same_frames(per_frame, kind, causal):
    root, data, base = per_frame
    config = TrainConfig(data=str(data), out=str(root / kind), init=str(base), temporal=kind, window=4,
                         causal=causal, steps=4, eval_every=2, **COMMON)
    run = train_run(config)
    metrics = json.loads((run / "metrics.json").read_text())
    record = json.loads((run / "config.json").read_text())
    assert metrics["temporal"]["kind"] == kind and metrics["temporal"]["window"] == 4
    assert metrics["temporal"]["causal"] == (causal or kind == "smooth")  # smoothing looks back only
    assert metrics["steps"] == (0 if kind == "smooth" else 4) and metrics["init_run"] == "per-frame"
    assert record["temporal"] == kind
    assert record["config_id"] != json.loads((base / "config.json").read_text())["config_id"]
    # the trunk it reads is recorded, so the study compares it with that run in one factor, "temporal"
    assert record["trunk"]["run"] == "per-frame" and record["trunk"]["budget_steps"] == 3
    from affectmodel.records import read_run
    from affectmodel.study import configuration_options

    mine, trunk_options = configuration_options(read_run(run)), configuration_options(read_run(base))
    assert {k: v for k, v in mine.items() if k != "temporal"} == {k: v for k, v in trunk_options.items()
                                                                  if k != "temporal"}
    # the module's own training (its steps, and eval_every, which its trunk did not set) is in its level
    assert mine["temporal"] == {"gru": "gru w4 bidirectional (4 steps, eval_every=2)",
                                "conv": "conv w4 causal (4 steps, eval_every=2)",
                                "smooth": "smooth w4 (eval_every=2)"}[kind] and trunk_options["temporal"] == "none"
    # one validation row per frame, the same frames (and order) as the per-frame run's
    ours, theirs = load_predictions(run / "val_predictions.npz"), load_predictions(base / "val_predictions.npz")
    assert list(ours.video) == list(theirs.video) and list(ours.frame) == list(theirs.frame)
    assert all(np.isfinite(v).all() for v in ours.outputs.values())
    history = (run / "history.csv").read_text().splitlines()
    assert len(history) == (2 if kind == "smooth" else 4)  # header, step 0 (, 2, 4)
    # each head's health, at each evaluation and for the reported weights, as a per-frame run records it
    from affectmodel.records import run_health

    assert set(metrics["health"]) == {"expr", "au", "va"}
    health = run_health(read_run(run))
    assert health is not None and all(np.isfinite(h.output_spread) for h in health.values())
    assert {f"dev_{t}_collapsed" for t in ("expr", "au", "va")} <= set(history[0].split(","))
    # trained and scored on the per-frame run's data: the same data fingerprint
    assert read_run(run).data_fingerprint == read_run(base).data_fingerprint is not None
    assert metrics["dataset"]["fingerprint"] == read_run(base).data_fingerprint
    model = load_model(run)  # through the one loader: config fields and weight shapes checked
    assert model.config.temporal == kind and model.config.window == 4
    assert (model.temporal is not None) == (kind != "smooth")
    # the trunk is the per-frame model's, untouched
    trunk = load_model(base).state_dict()
    assert all(np.array_equal(v.numpy(), trunk[k].numpy()) for k, v in model.state_dict().items()
               if k.startswith("trunk."))


def test_smooth_averages_the_per_frame_outputs_over_the_track(per_frame):
    root, _, base = per_frame
    smooth = load_predictions(root / "smooth" / "val_predictions.npz")
    raw = load_predictions(base / "val_predictions.npz")
    video, frame = np.asarray(raw.video), np.asarray(raw.frame)
    first = [i for i in range(len(frame)) if i == 0 or video[i] != video[i - 1]]
    # a track's first frame has nothing before it; later frames are means of up to 4 frames
    assert np.allclose(smooth.outputs["va"][first], raw.outputs["va"][first], atol=1e-4)
    v = video == video[0]
    expected = np.mean(raw.outputs["va"][v][:4], axis=0) if frame[v][3] - frame[v][0] == 3 else None
    if expected is not None:
        assert np.allclose(smooth.outputs["va"][np.flatnonzero(v)[3]], expected, atol=1e-4)


def test_a_collapsed_head_is_recorded_and_named(per_frame, tmp_path, capsys):
    """A temporal run on a model whose VA head says the same for every face: its record marks the head
    collapsed (so the study gives no verdict from it) and the console names it."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from affectmodel.records import MODEL_DIR, MODEL_WEIGHTS_FILE, collapsed_heads, read_run

    _, shared, base = per_frame
    data = shutil.copytree(shared, tmp_path / "data", ignore=shutil.ignore_patterns(".affectmodel-cache"))
    flat = tmp_path / "flat-va"
    shutil.copytree(base / MODEL_DIR, flat)
    state = load_file(flat / MODEL_WEIGHTS_FILE)
    save_file({k: torch.zeros_like(v) if k.startswith("heads.va.") else v for k, v in state.items()},
              flat / MODEL_WEIGHTS_FILE)
    run = train_run(TrainConfig(data=str(data), out=str(tmp_path / "smooth"), init=str(flat), temporal="smooth",
                                window=4, **COMMON))
    assert collapsed_heads(read_run(run)) == ["va"]
    assert "collapsed head: va (valence constant" in capsys.readouterr().out


def test_uni_task_temporal_run_from_a_multi_task_model(per_frame):
    root, data, base = per_frame
    run = train_run(TrainConfig(data=str(data), out=str(root / "uni"), init=str(base), tasks=["au"],
                                temporal="gru", window=4, steps=2, **COMMON))
    assert load_model(run).tasks == ("au",)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["tasks"] == ["au"]
    # the same trunk over the same frames: its features were kept beside the data by the first run
    assert metrics["temporal"]["features"] == "cache"
    assert len(list((data / ".affectmodel-cache" / "features").glob("*.npz"))) == 1


def test_temporal_options_are_checked(per_frame, tmp_path):
    root, data, base = per_frame
    with pytest.raises(TrainingError, match="--init"):
        train_run(TrainConfig(data=str(data), out=str(tmp_path / "a"), temporal="gru", **COMMON))
    with pytest.raises(TrainingError, match="already a temporal model"):
        train_run(TrainConfig(data=str(data), out=str(tmp_path / "b"), init=str(root / "gru"), temporal="conv",
                              **COMMON))
    with pytest.raises(TrainingError, match="image_size"):
        train_run(TrainConfig(data=str(data), out=str(tmp_path / "c"), init=str(base), temporal="gru",
                              **{**COMMON, "image_size": 32}))


def test_per_frame_identity_is_unchanged_by_the_temporal_options():
    base = TrainConfig(data="d", out="o")
    # the id a per-frame configuration had before the temporal options existed
    assert config_id(base) == config_id(base.replace(window=5, causal=True))
    assert config_id(base.replace(temporal="gru")) != config_id(base.replace(temporal="conv"))
    assert config_id(base.replace(temporal="gru")) != config_id(base.replace(temporal="gru", causal=True))
