"""load_dataset: one entry that detects Aff-Wild2, AffectNet-style CSVs and folder-per-class sets."""
import json

import numpy as np
import pytest
from affwild2_fixtures import make_miniature, write_image

from affectmodel.cli import main as cli_main
from affectmodel.data import load_dataset
from affectmodel.data.registry import UnrecognisedDataError, detect_format
from affectmodel.data.transforms import build_transform
from affectmodel.model import ModelConfig
from affectmodel.tasks import ABAW8

SMALL = build_transform("none", ModelConfig(input_size=16), train=False)


def _folders(root, split_dirs, classes, per_class=2):
    for split in split_dirs:
        for c in classes:
            for i in range(per_class):
                write_image(root / split / c / f"{c}_{i}.png")
    return root


def test_fer2013_folders_mapped_by_concept(tmp_path):
    fer = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    _folders(tmp_path, ["train", "test"], fer)
    ds = load_dataset(tmp_path, "train", tasks="expr", transform=SMALL)
    assert ds.stats["format"] == "image-folder" and ds.stats["source_space"] == "fer7"
    assert len(ds) == 14 and ds.tasks == ("expr",)
    happy = [i for i, p in enumerate(ds.image_paths) if p.parent.name == "happy"]
    assert set(ds.labels["expr"][happy]) == {ABAW8.labels.index("Happiness")}
    # per-image set: one one-frame "video" per image
    assert len(ds.videos) == 14 and ds.video_ids.tolist() == list(range(14)) and set(ds.frame_numbers) == {1}
    val = load_dataset(tmp_path, "validation", tasks="expr,au", transform=SMALL)
    assert all(p.parent.parent.name == "test" for p in val.image_paths) and val.tasks == ("expr",)
    assert (val.labels["au"] == -1).all()
    fer7 = load_dataset(tmp_path, "train", tasks="expr", expression_space="fer7", transform=SMALL)
    assert fer7.expression_space == "fer7" and fer7.labels["expr"].max() == 6


def test_rafdb_numbered_folders_inside_a_wrapper(tmp_path):
    _folders(tmp_path / "DATASET", ["train", "test"], [str(i) for i in range(1, 8)], per_class=1)
    ds = load_dataset(tmp_path, "train", tasks="expr", transform=SMALL)
    by_folder = {p.parent.name: int(e) for p, e in zip(ds.image_paths, ds.labels["expr"], strict=True)}
    assert by_folder["4"] == ABAW8.labels.index("Happiness") and by_folder["7"] == ABAW8.labels.index("Neutral")


def test_affectnet_csv_per_split_and_as_a_file(tmp_path):
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        write_image(tmp_path / "img" / name)
    header = "subDirectory_filePath,expression,valence,arousal\n"
    (tmp_path / "training.csv").write_text(header + "img/a.jpg,1,0.5,0.2\nimg/b.jpg,7,-0.1,0.3\n")
    (tmp_path / "validation.csv").write_text(header + "img/c.jpg,0,0,0\n")
    ds = load_dataset(tmp_path, "train", tasks="expr,va", transform=SMALL)
    assert ds.stats["format"] == "affectnet-csv" and len(ds) == 2
    assert ds.labels["expr"].tolist() == [ABAW8.labels.index("Happiness"), -1]  # Contempt: no ABAW-8 class
    np.testing.assert_allclose(ds.labels["va"][0], [0.5, 0.2])
    assert len(load_dataset(tmp_path, "validation", transform=SMALL)) == 1
    only_expr = load_dataset(tmp_path / "training.csv", None, tasks="expr", transform=SMALL)
    assert (only_expr.labels["va"] == -5).all() and only_expr.tasks == ("expr",)
    with pytest.raises(ValueError, match="none of the requested tasks"):
        load_dataset(tmp_path, "train", tasks="au", transform=SMALL)


def test_affwild2_detected_with_the_same_interface(tmp_path):
    make_miniature(tmp_path, "newer")
    ds = load_dataset(tmp_path, "train", tasks="expr,au", transform=SMALL)
    assert ds.stats["format"] == "aff-wild2" and ds.dataset_name == "aff-wild2"
    assert "leakage" in ds.stats and len(ds.video_ids) == len(ds)
    _folders(tmp_path / "fer", ["train"], ["happy"], per_class=1)
    with pytest.raises(ValueError, match="Aff-Wild2 only"):
        load_dataset(tmp_path / "fer", "train", exclude_leaking_videos=False)


def test_unrecognised_folder_lists_what_was_looked_for(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "x.txt").write_text("hi")
    with pytest.raises(UnrecognisedDataError, match="Aff-Wild2.*AffectNet-style CSV.*class folders"):
        load_dataset(tmp_path, "train")
    _folders(tmp_path / "only", ["."], ["happy", "sad"], per_class=1)
    assert detect_format(tmp_path / "only", "train")[0] == "image-folder"
    with pytest.raises(UnrecognisedDataError, match="no validation data.*val"):
        detect_format(tmp_path / "only", "validation")  # never the training images as validation
    with pytest.raises(FileNotFoundError, match="data not found"):
        load_dataset(tmp_path / "missing")
    with pytest.raises(ValueError, match="unknown split"):
        load_dataset(tmp_path, "test")


def test_synthetic_folder_set_from_the_cli_loads_and_is_marked(tmp_path, capsys):
    out = tmp_path / "synth-folders"
    assert cli_main(["synth", "--layout", "folders", "--out", str(out), "--videos", "4", "--frames", "10",
                     "--size", "24", "--every", "2", "--quiet"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["dataset"] == "synthetic-affect-folders" and printed["layout"] == "folders"
    assert {p.name for p in (out / "train").iterdir()} <= set(ABAW8.labels)
    train = load_dataset(out, "train", tasks="expr", transform=SMALL)
    val = load_dataset(out, "validation", tasks="expr", transform=SMALL)
    assert train.synthetic and train.dataset_name == "synthetic-affect-folders"
    assert len(train) + len(val) == 4 * 5 == sum(printed["images"].values())
    # one synthetic identity per video: no face is in both splits
    ident = lambda ds: {p.name.rsplit("_", 1)[0] for p in ds.image_paths}  # noqa: E731
    assert not ident(train) & ident(val)
    for i, p in enumerate(train.image_paths):
        assert ABAW8.labels[train.labels["expr"][i]] == p.parent.name
    assert train[0][0].shape == (3, 16, 16)
