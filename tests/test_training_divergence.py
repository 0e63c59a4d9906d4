"""A diverged run stops at once, leaves no complete-looking record and cannot be resumed."""
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from _training_data import TinyAffectSet

from affectmodel.records import DIVERGED_FILE, METRICS_FILE, is_complete, read_divergence
from affectmodel.training import TrainingError, run_training
from affectmodel.training.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint
from affectmodel.training.config import TrainConfig
from affectmodel.training.divergence import DivergenceWatch, TrainingDiverged, nonfinite_tensors

DATASET = {"name": "tiny-test-set", "synthetic": True}
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _config(tmp_path, name, **changes):
    values: dict[str, Any] = {"out": str(tmp_path / name), "tasks": ["expr", "au", "va"], "image_size": 32,
                              "batch_size": 4, "steps": 8, "eval_every": 4, "device": "cpu", "augment": "none",
                              "threads": 1}
    values.update(changes)
    return TrainConfig(**values)


def _data():
    return TinyAffectSet(20, seed=0), TinyAffectSet(8, seed=1)


# ------------------------------------------------------------------ the watch

def test_the_first_non_finite_loss_is_named_with_its_step():
    watch = DivergenceWatch(torch.device("cpu"))
    for step, value in enumerate([0.5, 0.4, float("nan"), float("inf"), 0.3], start=1):
        watch.observe(torch.tensor(value), step)
    with pytest.raises(TrainingDiverged, match=r"^diverged at step 3: loss is NaN \(try a lower --lr\)$") as e:
        watch.check(5)
    assert (e.value.step, e.value.reason) == (3, "loss is NaN")
    inf = DivergenceWatch(torch.device("cpu"))
    inf.observe(torch.tensor(1.0), 1)
    inf.observe(torch.tensor(-float("inf")), 2)
    with pytest.raises(TrainingDiverged, match="at step 2: loss is inf"):
        inf.check(2)


def test_finite_losses_and_weights_pass_and_broken_weights_do_not():
    watch = DivergenceWatch(torch.device("cpu"))
    module = torch.nn.Linear(3, 2)
    watch.observe(torch.tensor(0.7), 1)
    watch.check(1, module)  # nothing to say
    with torch.no_grad():
        module.weight[0, 1] = float("nan")
    with pytest.raises(TrainingDiverged, match=r"^diverged at step 7: weights are not finite"):
        watch.check(7, module)
    assert nonfinite_tensors(module.state_dict().items()) == ["weight"]


# ------------------------------------------------------------------ in a run

@pytest.fixture(scope="module")
def diverged(tmp_path_factory):
    """A run with an infinite learning rate (the weights blow up on the first step)."""
    tmp = tmp_path_factory.mktemp("diverged")
    config = _config(tmp, "inf", lr=float("inf"))
    with pytest.raises(TrainingDiverged) as e:
        run_training(config, *_data(), DATASET)
    return config, e.value


def test_an_infinite_learning_rate_stops_the_run_at_once_and_says_so(diverged):
    config, error = diverged
    # step 1's loss is computed before any update; step 2 is the first on broken weights
    assert str(error) == "diverged at step 2: loss is NaN (try a lower --lr)"
    run_dir = Path(config.out)
    assert read_divergence(run_dir) == {"step": 2, "reason": "loss is NaN", "message": str(error)}
    assert not is_complete(run_dir) and not (run_dir / METRICS_FILE).exists()


def test_nothing_non_finite_is_checkpointed_and_resume_is_refused(diverged):
    config, _ = diverged
    run_dir = Path(config.out)
    assert not checkpoint_path(run_dir).exists()  # the first period never ended
    with pytest.raises(TrainingError, match=r"cannot resume .*: the run diverged at step 2: loss is NaN"):
        run_training(config.replace(resume=True), *_data(), DATASET)
    with pytest.raises(TrainingError, match="the run diverged at step 2"):  # nor overwritten without --resume
        run_training(config.replace(lr=1e-3), *_data(), DATASET)
    assert json.loads((run_dir / DIVERGED_FILE).read_text())["step"] == 2


def test_finite_weights_with_overflowing_outputs_are_a_divergence_too(tmp_path):
    # lr 1e30: after step 1 the weights are still finite (about 1e30), but every output overflows;
    # the evaluation after that step refuses it, before its checkpoint is written
    config = _config(tmp_path, "huge", lr=1e30, steps=8, eval_every=1)
    with pytest.raises(TrainingDiverged, match=r"^diverged at step 1: expr, au, va outputs are not finite on the "
                                               r"development split \(try a lower --lr\)$"):
        run_training(config, *_data(), DATASET)
    assert not checkpoint_path(config.out).exists()
    assert (read_divergence(config.out) or {}).get("step") == 1


def test_without_a_development_split_the_validation_outputs_are_checked(tmp_path):
    config = _config(tmp_path, "huge-no-dev", lr=1e30, steps=1, dev_fraction=0.0)
    with pytest.raises(TrainingDiverged, match="outputs are not finite on the validation split"):
        run_training(config, *_data(), DATASET)
    assert not is_complete(config.out) and read_divergence(config.out) is not None


def test_resume_refuses_a_checkpoint_with_non_finite_weights(tmp_path):
    # a checkpoint from elsewhere (or an older version) that holds NaN weights
    config = _config(tmp_path, "poisoned", steps=8, eval_every=4)

    class Stop(Exception):
        pass

    def stop_after_first_period(fraction, message):
        if message.startswith("epoch 1/2:"):  # the first evaluation's summary: its checkpoint is written
            raise Stop

    with pytest.raises(Stop):
        run_training(config, *_data(), DATASET, progress=stop_after_first_period)
    path = checkpoint_path(config.out)
    state = load_checkpoint(path)
    first = next(k for k, v in state["module"].items() if torch.is_floating_point(v))
    state["module"][first] = torch.full_like(state["module"][first], float("nan"))
    save_checkpoint(path, state)
    with pytest.raises(TrainingError, match=r"cannot resume .*: its checkpoint holds non-finite weights \(1 tensors"):
        run_training(config.replace(resume=True), *_data(), DATASET)
