"""Training from a frame cache: the same frames, labels and joins as the JPEG path, batches read at
once and augmented on the training device, and a run that finds the cache next to the data."""
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from affectmodel.data.cache import FrameCacheDataset, build_frame_cache, default_cache_dir
from affectmodel.data.dataset import ImageLabelDataset
from affectmodel.data.synthetic import generate_benchmark
from affectmodel.model import ModelConfig
from affectmodel.records import read_run
from affectmodel.training.batches import CachedSamples, SeededSamples, frame_cache_dir, load_datasets, passthrough
from affectmodel.training.config import TrainConfig, TrainingError
from affectmodel.training.trainer import train_run

SIZE = 32


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    generate_benchmark(root, videos=6, frames=8, seed=0, size=SIZE, progress=False)
    build_frame_cache(root, size=SIZE, shard_frames=16, progress=False)  # next to the data
    return root


def _config(root, **kw):
    return TrainConfig(**{"data": str(root), "tasks": ["expr", "au", "va"], "image_size": SIZE, "batch_size": 8,
                          "augment": "none", **kw})


def test_cache_is_found_next_to_the_data_and_none_turns_it_off(bench, tmp_path):
    assert frame_cache_dir(_config(bench)) == str(default_cache_dir(bench, SIZE))
    assert frame_cache_dir(_config(bench, cache="none")) is None
    assert frame_cache_dir(_config(bench, cache=str(tmp_path))) == str(tmp_path)
    assert frame_cache_dir(_config(bench, image_size=48)) is None  # no cache at that size


def test_keep_leaking_videos_with_a_frame_cache_is_refused(bench):
    with pytest.raises(TrainingError, match=r"^keep_leaking_videos needs the JPEGs.*--cache none$"):
        load_datasets(_config(bench, keep_leaking_videos=True), ModelConfig(input_size=SIZE))
    train, _, info = load_datasets(_config(bench, keep_leaking_videos=True, cache="none"), ModelConfig(input_size=SIZE))
    assert len(train) > 0 and "frame_cache" not in info


@pytest.mark.parametrize("split", [0, 1])
def test_cached_batches_hold_the_jpeg_paths_frames_labels_and_order(bench, split):
    model_config = ModelConfig(tasks=["expr", "au", "va"], input_size=SIZE)
    cached = load_datasets(_config(bench), model_config)
    jpeg = load_datasets(_config(bench, cache="none"), model_config)
    assert cached[2]["frame_cache"] and "frame_cache" not in jpeg[2]
    c, j = cached[split], jpeg[split]
    assert isinstance(c, FrameCacheDataset) and isinstance(j, ImageLabelDataset)
    assert len(c) == len(j) > 0
    for task in ("expr", "au", "va"):
        np.testing.assert_array_equal(c.labels[task], j.labels[task])
    np.testing.assert_array_equal(c.frame_numbers, j.frame_numbers)
    assert [c.videos[i] for i in c.video_ids] == [j.videos[i] for i in j.video_ids]

    from affectmodel.data.batch_augment import BatchAugment

    positions = list(range(len(c)))[::3]
    images, targets, pos = CachedSamples(c, None, 0).__getitems__([(0, p) for p in positions])
    assert images.dtype == torch.uint8 and pos.tolist() == positions
    normalised = BatchAugment("none", model_config, train=False)(images)
    view = SeededSamples(j, None, 0)
    reference = torch.stack([view[p][0] for p in positions])
    torch.testing.assert_close(normalised, reference, rtol=0, atol=1e-5)  # identical pixels, same arithmetic
    for task in ("expr", "au", "va"):
        np.testing.assert_array_equal(targets[task].numpy(), np.stack([view[p][1][task].numpy() for p in positions]))


def test_a_loader_reads_each_cached_batch_in_one_call(bench, call_sizes):
    train, _, _ = load_datasets(_config(bench), ModelConfig(input_size=SIZE))
    assert isinstance(train, FrameCacheDataset)
    reads = call_sizes(train, "read_batch")
    loader = DataLoader(CachedSamples(train, None, 0), batch_size=8, collate_fn=passthrough)
    batches = list(loader)
    assert reads == [len(b[0]) for b in batches] and sum(reads) == len(train)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_run_trains_from_the_cache_next_to_the_data(bench, tmp_path):
    config = TrainConfig(data=str(bench), out=str(tmp_path / "run"), tasks=["expr", "au"], image_size=SIZE,
                         batch_size=8, max_steps=3, augment="strong", threads=1, workers=1, checkpoint_every=1,
                         dev_fraction=0)
    train_run(config)
    record = read_run(tmp_path / "run")
    assert record.config["dataset"]["frame_cache"] == str(default_cache_dir(bench, SIZE))
    assert record.metrics["steps"] == 3 and 0 <= record.metrics["data_wait_share"] <= 1


def test_training_warns_when_the_cache_exceeds_the_available_memory(bench, monkeypatch):
    from affectmodel import runtime

    monkeypatch.setattr(runtime, "available_memory_bytes", lambda: 1000)
    with pytest.warns(UserWarning, match=r"more than the 0\.0 GB of memory available.*local NVMe"):
        load_datasets(_config(bench), ModelConfig(input_size=SIZE))
    monkeypatch.setattr(runtime, "available_memory_bytes", lambda: 10**12)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_datasets(_config(bench), ModelConfig(input_size=SIZE))
