"""Development splits by whole video and matched label budgets (affectmodel.data.splits)."""
from pathlib import Path

import numpy as np
import pytest
from affwild2_fixtures import make_study_tree

from affectmodel.data.affwild2 import load_affwild2
from affectmodel.data.dataset import ImageLabelDataset, empty_labels
from affectmodel.data.splits import development_split, development_videos, limit_labels, stable_unit
from affectmodel.data.transforms import build_transform
from affectmodel.model import ModelConfig

SMALL = build_transform("none", ModelConfig(input_size=16), train=False)


@pytest.fixture(scope="module")
def study_root(tmp_path_factory):
    return make_study_tree(tmp_path_factory.mktemp("study"), videos=20, frames=3, validation=4)


def test_stable_unit_is_a_fixed_function_of_the_name():
    # a fixed value: Python's hash() would change with PYTHONHASHSEED between processes
    assert stable_unit("video001", "salt") == stable_unit("video001", "salt")
    assert stable_unit("video001", "salt") != stable_unit("video002", "salt")
    assert 0 <= stable_unit("x", "y") < 1


def test_development_videos_deterministic_and_fraction_respected():
    names = [f"video{i:03d}" for i in range(200)]
    dev = development_videos(names, 0.1)
    assert len(dev) == 20 and dev <= set(names)
    assert development_videos(list(reversed(names)), 0.1) == dev  # order does not matter
    assert development_videos(names, 0.25) >= dev                  # a larger fraction adds videos
    assert development_videos(names, 0.0) == set()
    with pytest.raises(ValueError, match="development fraction"):
        development_videos(names, 1.0)


def test_development_split_by_whole_video_and_disjoint_from_validation(study_root):
    train = load_affwild2(study_root, "train", transform=SMALL)
    val = load_affwild2(study_root, "validation", transform=SMALL)
    split = development_split(train, 0.2, validation=val)
    dev_videos = set(split.development.video_names())
    train_videos = set(split.train.video_names())
    assert dev_videos and not dev_videos & train_videos                    # whole videos
    assert len(split.train) + len(split.development) == len(train)
    assert sorted(np.concatenate([split.train_indices, split.development_indices]).tolist()) == list(range(len(train)))
    assert split.stats["development"] == {"videos": len(dev_videos), "frames": len(split.development)}
    assert split.stats["development"]["videos"] == 4                      # 20 % of 20 videos
    assert split.stats["overlap_with_validation"] == {"videos": 0, "frames": 0}
    again = development_split(load_affwild2(study_root, "train", transform=SMALL), 0.2)
    assert again.development_videos == split.development_videos


def test_development_split_reports_overlap_with_validation(study_root, tmp_path):
    train = load_affwild2(study_root, "train", transform=SMALL)
    split = development_split(train, 0.2)
    # a validation set that (wrongly) holds one development video, frame 1 only
    leaked = split.development_videos[0]
    val = ImageLabelDataset([Path("a.jpg")], empty_labels(1), transform=SMALL, videos=[leaked],
                            video_ids=np.zeros(1, dtype=np.int64), frame_numbers=np.ones(1, dtype=np.int64))
    stats = development_split(train, 0.2, validation=val).stats
    assert stats["overlap_with_validation"] == {"videos": 1, "frames": 1}


def test_uni_and_multi_task_runs_hold_out_the_same_videos(study_root):
    multi = development_split(load_affwild2(study_root, "train", tasks="expr,au,va", transform=SMALL), 0.2)
    for task in ("expr", "au", "va"):
        uni_ds = load_affwild2(study_root, "train", tasks=task, transform=SMALL)
        uni = development_split(uni_ds, 0.2)
        task_videos = set(uni_ds.videos)
        assert set(uni.development_videos) == set(multi.development_videos) & task_videos
        # and the same frames: the multi-task dev frames labelled for this task
        labelled = multi.development.valid_masks()[task]
        assert set(uni.development.frame_keys()) == {
            k for k, ok in zip(multi.development.frame_keys(), labelled, strict=True) if ok}


def test_per_image_sets_split_by_image(tmp_path):
    paths = [tmp_path / f"img{i:03d}.jpg" for i in range(100)]
    labels = empty_labels(100)
    labels["expr"][:] = np.arange(100) % 7
    ds = ImageLabelDataset(paths, labels, tasks=("expr",), transform=SMALL, root=tmp_path)
    assert ds.videos[0] == "img000.jpg" and ds.video_ids.tolist() == list(range(100))
    split = development_split(ds, 0.1)
    assert split.stats["development"] == {"videos": 10, "frames": 10}
    assert development_split(ds, 0.1).development_indices.tolist() == split.development_indices.tolist()


# ------------------------------------------------------------------ label budgets

def _labels_seen(selection, task):
    ds = selection.dataset
    keep = ds.valid_masks()[task]
    keys = ds.frame_keys()
    values = ds.labels[task]
    return {keys[i]: values[i].tolist() for i in np.flatnonzero(keep)}


@pytest.mark.parametrize("seed", [0, 3])
def test_limit_labels_multi_task_sees_exactly_the_uni_task_labels(study_root, seed):
    multi_ds = load_affwild2(study_root, "train", tasks="expr,au,va", transform=SMALL)
    multi = limit_labels(multi_ds, "expr,au,va", limit=7, seed=seed)
    for task in ("expr", "au", "va"):
        uni = limit_labels(load_affwild2(study_root, "train", tasks=task, transform=SMALL), task, limit=7, seed=seed)
        seen = _labels_seen(uni, task)
        assert len(seen) == 7
        assert _labels_seen(multi, task) == seen
        assert multi.stats["labels"][task] == 7 and int(multi.masks[task].sum()) == 7
    assert len(multi.dataset) == len(multi.indices) <= 21
    other = limit_labels(multi_ds, "expr,au,va", limit=7, seed=seed + 1)
    assert _labels_seen(other, "au") != _labels_seen(multi, "au")  # the seed matters


def test_limit_labels_none_keeps_everything_and_bad_limit_fails(study_root):
    ds = load_affwild2(study_root, "train", tasks="expr,au", transform=SMALL)
    sel = limit_labels(ds, "expr,au", limit=None, seed=0)
    assert len(sel.dataset) == len(ds)
    assert sel.stats["labels"] == sel.stats["available"] == {t: int(ds.valid_masks()[t].sum()) for t in ("expr", "au")}
    with pytest.raises(ValueError, match="label limit"):
        limit_labels(ds, "expr", limit=0, seed=0)
