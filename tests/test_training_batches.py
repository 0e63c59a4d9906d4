"""Training order: the `sampler` option selects affectmodel.data.samplers in the trainer."""
from collections import Counter

import numpy as np
import pytest
import torch
from _training_data import TinyAffectSet
from safetensors.torch import load_file

from affectmodel.records import read_run
from affectmodel.training import TrainingError, run_training
from affectmodel.training.batches import SeededSamples, build_train_sampler, label_arrays
from affectmodel.training.config import TrainConfig

DATASET = {"name": "tiny-test-set", "synthetic": True}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class RecordingSet(TinyAffectSet):
    """Remembers which items the training loop read (loader workers: 0)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.read: list[int] = []

    def __getitem__(self, i):
        self.read.append(int(i))
        return super().__getitem__(i)


def _skewed(n=24, seed=0):
    """Expression class 0 on 3 of every 4 labelled images; the rest spread over classes 1-3."""
    data = RecordingSet(n, seed=seed, missing=0.0)
    data.labels["expr"] = np.array([0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3] * (n // 12), dtype=np.int64)
    return data


def _config(tmp_path, name, **changes):
    # No development split: these tests count what the training order reads.
    values = {"out": str(tmp_path / name), "tasks": ["expr"], "image_size": 32, "batch_size": 4, "epochs": 1,
              "device": "cpu", "augment": "none", "threads": 1, "dev_fraction": 0.0}
    values.update(changes)
    return TrainConfig(**values)


def test_sampler_choices_come_from_the_data_package():
    from affectmodel.data.samplers import SAMPLERS

    assert TrainConfig().sampler == "shuffle" and "balanced" in SAMPLERS
    with pytest.raises(ValueError, match="sampler='weighted' is not one of"):
        TrainConfig(sampler="weighted")


def test_balanced_sampler_changes_the_class_mix_the_model_sees(tmp_path):
    seen = {}
    for sampler in ("shuffle", "balanced"):
        train = _skewed()
        run_training(_config(tmp_path, sampler, sampler=sampler, epochs=2), train, TinyAffectSet(8, seed=1),
                     DATASET)
        seen[sampler] = Counter(int(train.labels["expr"][i]) for i in train.read)
    # shuffle: each image once per epoch, so the data set's own mix (class 0: 3/4).
    assert seen["shuffle"] == Counter({0: 36, 1: 4, 2: 4, 3: 4})
    # balanced: each class about equally often (with replacement, 48 draws).
    assert seen["balanced"][0] < 24 and min(seen["balanced"][c] for c in (1, 2, 3)) >= 6


@pytest.mark.parametrize("sampler", ["balanced", "multitask"])
def test_resume_mid_epoch_is_exact_with_other_samplers(tmp_path, sampler):
    class Interrupt(Exception):
        pass

    def stop_in_epoch_2(fraction, message):
        if message.startswith("epoch 2/2 step 2/"):
            raise Interrupt

    tasks, batch = ["expr", "au", "va"], 6  # multitask: room for 2 labelled samples of each task
    data = lambda: (_skewed(), TinyAffectSet(8, seed=1))  # noqa: E731
    straight = run_training(_config(tmp_path, "straight", sampler=sampler, tasks=tasks, batch_size=batch, epochs=2),
                            *data(), DATASET)
    with pytest.raises(Interrupt):
        run_training(_config(tmp_path, "mid", sampler=sampler, tasks=tasks, batch_size=batch, epochs=2,
                                 checkpoint_every=1), *data(),
                     DATASET, progress=stop_in_epoch_2)
    resumed = run_training(_config(tmp_path, "mid", sampler=sampler, tasks=tasks, batch_size=batch, epochs=2,
                                   checkpoint_every=1, resume=True), *data(), DATASET)
    drop_time = lambda run: [{k: v for k, v in r.items() if k != "time_s"} for r in read_run(run).history]  # noqa: E731
    assert drop_time(straight) == drop_time(resumed)
    a, b = (load_file(str(run / "model" / "model.safetensors")) for run in (straight, resumed))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_multitask_sampler_puts_every_task_in_every_batch():
    data = TinyAffectSet(24, seed=0, missing=0.7)
    view = SeededSamples(data, None, seed=0)
    labels = label_arrays(data, None)
    config = TrainConfig(sampler="multitask", batch_size=6)
    sampler = build_train_sampler(config, view, labels, 6, True, world_size=1, rank=0)
    sampler.set_epoch(0)
    for batch in sampler:
        assert (labels["expr"][batch] >= 0).sum() >= 2 and (labels["va"][batch][:, 0] > -5).sum() >= 2


@pytest.mark.parametrize("sampler", ["balanced", "multitask"])
def test_samplers_of_one_process_are_refused_under_several(sampler):
    data = TinyAffectSet(16, seed=0)
    view = SeededSamples(data, None, seed=0)
    with pytest.raises(TrainingError, match=f"sampler='{sampler}'.*2 processes.*sampler=shuffle under torchrun"):
        build_train_sampler(TrainConfig(sampler=sampler), view, label_arrays(data, None), 4, True, world_size=2,
                            rank=0)


def test_balanced_sampler_without_expression_labels_is_a_clear_error(tmp_path):
    train = TinyAffectSet(16, seed=0)
    train.labels["expr"][:] = -1
    with pytest.raises(TrainingError, match="sampler='balanced'.*needs expression labels"):
        run_training(_config(tmp_path, "none", sampler="balanced"), train, TinyAffectSet(8, seed=1), DATASET)
