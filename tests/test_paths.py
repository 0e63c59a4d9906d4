"""affectmodel.data.paths: image paths kept in a few arrays, read back as the same Paths."""
import pickle
from pathlib import Path

import numpy as np
import pytest

from affectmodel.data.dataset import ImageLabelDataset, empty_labels
from affectmodel.data.paths import PathList


def _paths(videos=50, frames=200):
    return [Path("/data/aff wild2/cropped_aligned") / f"vidé{v}" / f"{f:05d}.jpg"
            for v in range(videos) for f in range(frames)]


def test_paths_come_back_as_given_in_order_and_by_index():
    paths = [*_paths(3, 4), Path("relative.png"), Path("/top.jpg")]
    kept = PathList(paths)
    assert len(kept) == len(paths) and list(kept) == paths and kept == paths
    assert kept[0] == paths[0] and kept[-1] == paths[-1] and kept[1:4] == paths[1:4]
    assert all(isinstance(p, Path) for p in kept)
    with pytest.raises(IndexError):
        kept[len(paths)]
    assert kept != paths[:-1] and kept != [*paths[:-1], Path("/other.jpg")]


def test_a_subset_shares_the_storage_and_picks_the_right_paths():
    paths = _paths(4, 5)
    kept = PathList(paths)
    idx = np.array([19, 0, 7, 7])
    sub = kept.take(idx)
    assert list(sub) == [paths[i] for i in idx]
    assert list(sub.take([3, 0])) == [paths[7], paths[19]]
    assert sub._names is kept._names  # no copy of the names


def test_a_million_frames_take_a_few_bytes_each_not_a_path_object_each():
    """What a forked loader worker would otherwise copy (about 0.3 GB per million Path objects)."""
    kept = PathList(_paths(100, 1000))  # 100,000 frames
    assert kept.nbytes() / len(kept) < 25
    assert len(pickle.dumps(kept)) < 25 * len(kept)  # what a spawned worker receives
    assert pickle.loads(pickle.dumps(kept))[12345] == kept[12345]


def test_data_sets_keep_their_paths_compactly_and_subsets_stay_compact():
    paths = _paths(2, 3)
    ds = ImageLabelDataset(image_paths=paths, labels=empty_labels(len(paths)))
    assert isinstance(ds.image_paths, PathList) and list(ds.image_paths) == paths
    sub = ds.subset([5, 1])
    assert isinstance(sub.image_paths, PathList) and sub.image_paths == [paths[5], paths[1]]
