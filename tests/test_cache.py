"""Frame cache (affectmodel/data/cache.py): same frames, labels and joins as the JPEG path; resumable;
refused when the data changed; corrupt shards named."""
import json
import pickle
import shutil

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from affectmodel.cli import main
from affectmodel.data import cache as cache_mod
from affectmodel.data.affwild2 import load_affwild2
from affectmodel.data.cache import (
    CachedBatches,
    FrameCacheDataset,
    FrameCacheError,
    build_frame_cache,
    default_cache_dir,
    find_frame_cache,
    open_frame_cache,
    passthrough_collate,
    verify_frame_cache,
)
from affectmodel.data.synthetic import generate_benchmark
from affectmodel.data.transforms import build_transform, normalisation
from affectmodel.model import ModelConfig

SIZE = 32  # cache size; the synthetic frames are written at 36 px so the resize path is exercised too


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate_benchmark(root, videos=4, frames=12, size=36, seed=3, overwrite=True, progress=False)
    return root


@pytest.fixture(scope="module")
def built(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("cache") / "c"
    summary = build_frame_cache(data_root, out, size=SIZE, shard_frames=8, progress=False)
    return out, summary


def _config() -> ModelConfig:
    return ModelConfig(input_size=SIZE)


@pytest.mark.parametrize("split,tasks", [("train", ("expr", "au", "va")), ("train", ("expr",)),
                                         ("validation", ("au", "va")), ("val", ("va",))])
def test_same_frames_labels_and_pixels_as_the_jpeg_path(data_root, built, split, tasks):
    out, _ = built
    none = build_transform("none", _config(), False)
    jpeg = load_affwild2(data_root, split=split, tasks=tasks, transform=none)
    cached = open_frame_cache(out, split, tasks=tasks, root=data_root, transform=none)
    assert len(cached) == len(jpeg) > 0
    for k in ("expr", "au", "va"):
        np.testing.assert_array_equal(cached.labels[k], jpeg.labels[k])
        assert cached.labels[k].dtype == jpeg.labels[k].dtype
    np.testing.assert_array_equal(cached.video_ids, jpeg.video_ids)
    np.testing.assert_array_equal(cached.frame_numbers, jpeg.frame_numbers)
    assert cached.videos == jpeg.videos and cached.stats == jpeg.stats and cached.tasks == jpeg.tasks
    assert (cached.dataset_name, cached.synthetic, cached.split, cached.source) == \
        (jpeg.dataset_name, jpeg.synthetic, jpeg.split, jpeg.source)
    assert list(cached.image_paths) == list(jpeg.image_paths)
    np.testing.assert_array_equal(cached.class_counts(), jpeg.class_counts())
    # per item: exactly the JPEG path's tensor and targets
    for i in range(len(jpeg)):
        (xc, tc), (xj, tj) = cached[i], jpeg[i]
        assert torch.equal(xc, xj), i
        assert all(torch.equal(tc[k], tj[k]) for k in tj)
    # whole batch, shuffled: uint8 that normalises to the same tensors
    order = np.random.default_rng(0).permutation(len(jpeg))
    batch = cached.read_batch(order)
    assert batch.dtype == torch.uint8 and batch.shape == (len(order), 3, SIZE, SIZE)
    scale, shift = normalisation(tuple(_config().mean), tuple(_config().std))
    x = batch.float() * torch.from_numpy(scale).view(1, 3, 1, 1) - torch.from_numpy(shift).view(1, 3, 1, 1)
    assert torch.equal(x, torch.stack([jpeg[int(i)][0] for i in order]))
    targets = cached.batch_targets(order)
    for k in ("expr", "au", "va"):
        assert torch.equal(targets[k], torch.stack([jpeg[int(i)][1][k] for i in order]))


def test_augmenting_transform_sees_the_same_image(data_root, tmp_path):
    # Cached at the frames' own size (as cropped_aligned at 112 px), a per-image augmenting
    # transform gets the same PIL image as on the JPEG path, so the same random draws give the same result.
    out = tmp_path / "c"
    build_frame_cache(data_root, out, size=36, splits=["train"], tasks="expr", progress=False)
    strong = build_transform("strong", ModelConfig(input_size=36), True)
    jpeg = load_affwild2(data_root, split="train", tasks="expr", transform=strong)
    cached = open_frame_cache(out, "train", tasks="expr", transform=strong)
    for i in (0, len(jpeg) - 1):
        torch.manual_seed(i)
        a = jpeg[i][0]
        torch.manual_seed(i)
        assert torch.equal(cached[i][0], a)


def test_subset_and_dataloader_batches(built):
    out, _ = built
    ds = open_frame_cache(out, "train")
    sub = ds.subset([5, 1, 3])
    assert isinstance(sub, FrameCacheDataset)
    np.testing.assert_array_equal(sub.labels["expr"], ds.labels["expr"][[5, 1, 3]])
    assert torch.equal(sub.read_batch([0, 1, 2]), ds.read_batch([5, 1, 3]))
    assert sub.image_paths[0] == ds.image_paths[5] and len(sub.image_paths) == 3
    loader = DataLoader(CachedBatches(ds), batch_size=7, shuffle=True, collate_fn=passthrough_collate,
                        generator=torch.Generator().manual_seed(0))
    seen = []
    for images, targets, idx in loader:
        assert images.dtype == torch.uint8 and images.shape[1:] == (3, SIZE, SIZE)
        assert torch.equal(images, ds.read_batch(idx.numpy()))
        assert torch.equal(targets["expr"], torch.from_numpy(ds.labels["expr"][idx.numpy()]))
        seen += idx.tolist()
    assert sorted(seen) == list(range(len(ds)))
    # positions over a subset of rows
    images, targets, pos = next(iter(DataLoader(CachedBatches(ds, [9, 2, 4]), batch_size=3,
                                                collate_fn=passthrough_collate)))
    assert torch.equal(images, ds.read_batch([9, 2, 4])) and pos.tolist() == [0, 1, 2]
    # a plain DataLoader over the data set itself collates per-item tensors, as on the JPEG path
    x, t = next(iter(DataLoader(ds, batch_size=4)))
    assert x.dtype == torch.float32 and x.shape == (4, 3, SIZE, SIZE) and t["expr"].shape == (4,)
    # picklable for DataLoader workers (spawn): memory maps and frame names are reopened there
    again = pickle.loads(pickle.dumps(ds))
    assert torch.equal(again.read_batch([4, 0]), ds.read_batch([4, 0])) and again.image_paths[2] == ds.image_paths[2]


def test_resume_after_interruption_decodes_only_what_is_missing(data_root, built, tmp_path, monkeypatch):
    reference, _ = built
    out = tmp_path / "c"
    real = cache_mod.decode_frame
    calls = {"n": 0}

    def interrupted(path, size):
        calls["n"] += 1
        if calls["n"] > 20:  # two shards of 8 done, the third interrupted
            raise KeyboardInterrupt
        return real(path, size)

    monkeypatch.setattr(cache_mod, "decode_frame", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_frame_cache(data_root, out, size=SIZE, shard_frames=8, progress=False)
    assert not (out / "manifest.json").exists()
    assert not list(out.rglob("*.tmp")), "no half-written file is left"
    with pytest.raises(FrameCacheError, match="incomplete"):
        open_frame_cache(out, "train")

    decoded = []
    def recording_decode(p, s):
        decoded.append(p)
        return real(p, s)

    monkeypatch.setattr(cache_mod, "decode_frame", recording_decode)
    summary = build_frame_cache(data_root, out, size=SIZE, shard_frames=8, progress=False)
    total = sum(summary.frames.values())
    assert summary.shards_skipped == 2 and len(decoded) == total - 16
    for split in ("train", "validation"):
        a, b = open_frame_cache(out, split), open_frame_cache(reference, split)
        assert torch.equal(a.read_batch(np.arange(len(a))), b.read_batch(np.arange(len(b))))
    decoded.clear()
    again = build_frame_cache(data_root, out, size=SIZE, shard_frames=8, progress=False)
    assert again.shards_written == 0 and not decoded


def _copy_data(data_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(data_root, root)
    return root


def test_refused_after_an_annotation_file_changes(data_root, tmp_path):
    root = _copy_data(data_root, tmp_path)
    out = tmp_path / "c"
    build_frame_cache(root, out, size=SIZE, progress=False)
    open_frame_cache(out, "train", root=root)  # unchanged: fine
    ann = min((root / "annotations" / "EXPR_Recognition_Challenge" / "Train_Set").glob("*.txt"))
    lines = ann.read_text().splitlines()
    lines[1] = "3" if lines[1].strip() != "3" else "4"
    ann.write_text("\n".join(lines) + "\n")
    with pytest.raises(FrameCacheError) as e:
        open_frame_cache(out, "train", root=root)
    message = str(e.value)
    assert "\n" not in message and ann.relative_to(root).as_posix() in message and "changed" in message
    assert "python -m affectmodel cache" in message
    open_frame_cache(out, "train")  # no root given: not checked


def test_refused_after_images_change(data_root, tmp_path):
    root = _copy_data(data_root, tmp_path)
    out = tmp_path / "c"
    build_frame_cache(root, out, size=SIZE, progress=False, splits=["train"])
    image = load_affwild2(root, "train").image_paths[3]
    image.unlink()
    with pytest.raises(FrameCacheError, match=f"images in .*{image.parent.name} changed"):
        open_frame_cache(out, "train", root=root)


def test_corrupt_shards_give_clear_errors(built, tmp_path):
    out = tmp_path / "c"
    shutil.copytree(built[0], out)
    shard = out / "train" / "shard-00001.npy"
    data = bytearray(shard.read_bytes())
    # flipped pixels: the header is fine, the checksum is not
    data[-10] ^= 0xFF
    shard.write_bytes(bytes(data))
    open_frame_cache(out, "train")
    with pytest.raises(FrameCacheError, match=r"shard-00001\.npy is corrupt .*CRC"):
        verify_frame_cache(out)
    # truncated
    shard.write_bytes(bytes(data[:-100]))
    with pytest.raises(FrameCacheError, match=r"shard-00001\.npy is corrupt: .*truncated"):
        open_frame_cache(out, "train")
    # not an .npy file at all
    shard.write_bytes(b"garbage" * 10)
    with pytest.raises(FrameCacheError, match=r"shard-00001\.npy is corrupt \(not a valid \.npy"):
        open_frame_cache(out, "train")
    shard.unlink()
    with pytest.raises(FrameCacheError, match=r"shard-00001\.npy is missing"):
        open_frame_cache(out, "train")
    (out / "manifest.json").write_text("{not json")
    with pytest.raises(FrameCacheError, match="not valid JSON"):
        open_frame_cache(out, "train")


def test_options_tasks_and_splits_the_cache_was_not_built_for(data_root, tmp_path):
    out = tmp_path / "c"
    build_frame_cache(data_root, out, size=SIZE, splits=["train"], tasks="expr,va", progress=False)
    assert json.loads((out / "manifest.json").read_text())["tasks"] == ["expr", "va"]
    with pytest.raises(FrameCacheError, match="tasks expr,va, not au"):
        open_frame_cache(out, "train", tasks="au")
    with pytest.raises(FrameCacheError, match="no validation split"):
        open_frame_cache(out, "validation", tasks="expr")
    with pytest.raises(FrameCacheError, match="source='auto', not 'mtl'"):
        open_frame_cache(out, "train", tasks="expr", source="mtl")
    assert len(open_frame_cache(out, "train", tasks="va", source="auto", expression_space="ABAW8")) > 0


def test_cache_command_next_to_the_data(data_root, tmp_path, capsys):
    root = _copy_data(data_root, tmp_path)
    assert find_frame_cache(root, SIZE) is None
    assert main(["cache", str(root), "--size", str(SIZE), "--quiet", "--workers", "2", "--verify"]) == 0
    out = capsys.readouterr().out
    assert find_frame_cache(root, SIZE) == default_cache_dir(root, SIZE)
    assert "on disk" in out and "verified" in out and "train" in out
    # the cache inside the data folder does not disturb the reader
    found = find_frame_cache(root, SIZE)
    assert found is not None
    assert len(load_affwild2(root, "train")) == len(open_frame_cache(found, "train", root=root))
    # a folder that is not a cache is never written into
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    assert main(["cache", str(root), "--out", str(other), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "holds no frame cache" in err
    assert (other / "keep.txt").read_text() == "mine"


def _vm_flags(path):
    """VmFlags of this process's mappings of ``path`` (Linux /proc/self/smaps)."""
    flags, current = [], None
    with open("/proc/self/smaps", encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            if fields and "-" in fields[0] and len(fields) >= 5:  # a mapping's header line
                current = fields[5] if len(fields) > 5 else None
            elif line.startswith("VmFlags:") and current == str(path):
                flags.append(fields[1:])
    return flags


@pytest.mark.skipif(not hasattr(__import__("mmap"), "MADV_RANDOM"), reason="no madvise on this platform")
def test_shards_are_mapped_for_random_access_and_read_the_same_frames(built):
    out, _ = built
    ds = open_frame_cache(out, "train")
    rows = [9, 0, 3, 4, 5, 17]  # three shards of 8, a run of consecutive frames, out of order
    batch = ds.read_batch(rows).numpy()
    shard = out / "train" / "shard-00000.npy"
    flags = _vm_flags(shard)
    assert flags and all("rr" in f for f in flags)  # MADV_RANDOM: no readahead around each fault
    expected = np.concatenate([np.load(p) for p in sorted((out / "train").glob("shard-*.npy"))])
    assert np.array_equal(batch, expected[ds._rows[rows]])


def test_a_cache_larger_than_the_available_memory_is_said_with_the_remedy(built):
    out, summary = built
    manifest = cache_mod.read_manifest(out)
    frames = sum(summary.frames.values())
    assert cache_mod.cache_bytes(manifest) == frames * 3 * SIZE * SIZE
    assert cache_mod.cache_bytes(manifest, ["val"]) == summary.frames["validation"] * 3 * SIZE * SIZE
    need = cache_mod.cache_bytes(manifest)
    assert cache_mod.larger_than_memory(out, available=need) is None
    message = cache_mod.larger_than_memory(out, available=need - 1)
    assert message is not None and "more than the" in message and "local NVMe" in message and str(out) in message
