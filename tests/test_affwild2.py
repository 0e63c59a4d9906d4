"""Aff-Wild2 reader: layout detection, per-task joins, the multi-task CSV, bad input."""

import json

import numpy as np
import pytest
import torch
from affwild2_fixtures import (
    AU_HEADER,
    EXPR7_HEADER,
    au_line,
    make_miniature,
    write_image,
    write_images,
    write_mtl,
    write_task_file,
)

from affectmodel.data.affwild2 import detect_layout, load_affwild2
from affectmodel.data.annotations import AnnotationError
from affectmodel.data.dataset import ImageReadError
from affectmodel.data.transforms import build_transform
from affectmodel.model import ModelConfig

SMALL = build_transform("none", ModelConfig(input_size=16), train=False)


def rows_by_name(ds):
    return {f"{p.parent.name}/{p.name}": i for i, p in enumerate(ds.image_paths)}


# ------------------------------------------------------------------ layout detection

@pytest.mark.parametrize("layout", ["newer", "older"])
def test_detect_layout_both_layouts(tmp_path, layout):
    make_miniature(tmp_path, layout)
    lay = detect_layout(tmp_path)
    assert lay.layout == layout
    assert lay.images_dir == tmp_path / "cropped_aligned"
    assert set(lay.task_dirs) == {"expr", "au", "va"}
    assert set(lay.task_dirs["expr"]) == {"train", "validation"}
    assert lay.mtl_files == {}


def test_detect_layout_finds_annotations_deeper_and_prefers_forced_layout(tmp_path):
    make_miniature(tmp_path, "newer")
    write_task_file(tmp_path, "older", "expr", "train", "vidA", ["0"], ann_dir="old/ABAW2_annotations")
    assert detect_layout(tmp_path).layout == "newer"
    lay = detect_layout(tmp_path, layout="older")
    assert lay.layout == "older" and set(lay.task_dirs) == {"expr"}
    assert "ABAW2_annotations" in str(lay.task_dirs["expr"]["train"])


def test_detect_layout_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="data folder not found"):
        detect_layout(tmp_path / "nope")
    (tmp_path / "annotations").mkdir()
    with pytest.raises(FileNotFoundError, match="cropped_aligned"):
        detect_layout(tmp_path)
    write_images(tmp_path, "v", [1])
    with pytest.raises(FileNotFoundError, match="no Aff-Wild2 annotations"):
        detect_layout(tmp_path)
    with pytest.raises(ValueError, match="unknown layout"):
        detect_layout(tmp_path, layout="newest")


# ------------------------------------------------------------------ per-task joins

@pytest.mark.parametrize("layout", ["newer", "older"])
def test_per_task_join_both_layouts(tmp_path, layout):
    make_miniature(tmp_path, layout)
    ds = load_affwild2(tmp_path, "train", transform=SMALL)
    assert ds.source == "per-task" and ds.layout == layout
    assert ds.dataset_name == "aff-wild2" and ds.synthetic is False
    rows = rows_by_name(ds)
    # vidA: frame 4 has no image (skipped); frame 3 has no EXPR but a valid AU label (kept)
    assert "vidA/00004.jpg" not in rows
    assert {"vidA/00001.jpg", "vidA/00002.jpg", "vidA/00003.jpg", "vidA/00005.jpg"} <= set(rows)
    a1, a2, a3, a5 = (rows[f"vidA/0000{i}.jpg"] for i in (1, 2, 3, 5))
    assert ds.labels["expr"][[a1, a2, a3, a5]].tolist() == [0, 4, -1, 7]
    np.testing.assert_array_equal(ds.labels["au"][a1], [1, 1] + [0] * 10)
    assert (ds.labels["au"][a2] == -1).all()            # not-annotated code kept
    np.testing.assert_array_equal(ds.labels["au"][a3], [0] * 6 + [1, 0, 0, 0, 1, 0])
    assert (ds.labels["au"][a5] == -1).all()            # AU file has 3 lines only
    assert (ds.labels["va"][[a1, a2, a3, a5]] == -5).all()  # no VA file for vidA
    # VA-only video: frame 2 (-5) has no valid label for any task, so it is dropped
    assert "vidB/00002.jpg" not in rows
    np.testing.assert_allclose(ds.labels["va"][rows["vidB/00001.jpg"]], [0.5, 0.25])
    assert ds.labels["expr"][rows["vidB/00003.jpg"]] == -1
    # _left video with CRLF line endings and a trailing empty line: 3 frames
    assert [ds.labels["expr"][rows[f"vid9_left/0000{i}.jpg"]] for i in (1, 2, 3)] == [1, 2, 3]
    assert len(ds) == 4 + 2 + 3
    assert ds.videos == ["vid9_left", "vidA", "vidB"]
    assert ds.stats["tasks"]["EXPR"] == {"labelled": 6, "invalid": 1, "missing_images": 1}
    assert ds.stats["tasks"]["AU"] == {"labelled": 2, "invalid": 1, "missing_images": 0}
    assert ds.stats["tasks"]["VA"] == {"labelled": 2, "invalid": 1, "missing_images": 0}
    assert ds.stats["frames"] == len(ds) and ds.stats["videos"] == 3


def test_item_contract(tmp_path):
    make_miniature(tmp_path)
    ds = load_affwild2(tmp_path, "validation", transform=SMALL)
    assert len(ds) == 2
    image, targets = ds[1]
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32
    assert set(targets) == {"expr", "au", "va"}
    assert targets["expr"].dtype == torch.int64 and targets["expr"].shape == () and targets["expr"].item() == 0
    assert targets["au"].dtype == torch.float32 and targets["au"].tolist() == [0] * 7 + [1, 1, 1, 0, 0]
    assert targets["va"].dtype == torch.float32 and targets["va"].tolist() == pytest.approx([0.1, -0.1])
    batch = torch.utils.data.default_collate([ds[0], ds[1]])
    assert batch[0].shape == (2, 3, 16, 16) and batch[1]["au"].shape == (2, 12)
    assert ds.frame_numbers.tolist() == [1, 2] and ds.videos == ["vidV"]


def test_task_selection_keeps_only_frames_labelled_for_those_tasks(tmp_path):
    make_miniature(tmp_path)
    ds = load_affwild2(tmp_path, "train", tasks=("va",))
    assert ds.tasks == ("va",)
    assert sorted(rows_by_name(ds)) == ["vidB/00001.jpg", "vidB/00003.jpg"]
    assert (ds.labels["expr"] == -1).all() and (ds.labels["au"] == -1).all()
    expr = load_affwild2(tmp_path, "train", tasks="EXPR")
    assert (expr.labels["expr"] >= 0).all() and len(expr) == 6
    assert expr.class_counts().tolist() == [1, 1, 1, 1, 1, 0, 0, 1]  # Surprise: frame without image


def test_label_counts_for_loss_weights(tmp_path):
    make_miniature(tmp_path)
    ds = load_affwild2(tmp_path, "validation")
    assert ds.class_counts().tolist() == [1, 0, 0, 0, 0, 1, 0, 0]
    pos, neg = ds.au_counts()
    assert pos.tolist() == [0, 0, 1, 0, 0, 0, 0, 1, 1, 1, 0, 0]
    assert (pos + neg == 2).all()
    assert ds.au_positive_counts().tolist() == pos.tolist()


def test_subset_keeps_metadata(tmp_path):
    make_miniature(tmp_path)
    ds = load_affwild2(tmp_path, "train")
    sub = ds.subset([0, 2])
    assert len(sub) == 2 and sub.image_paths == [ds.image_paths[0], ds.image_paths[2]]
    assert sub.frame_numbers.tolist() == ds.frame_numbers[[0, 2]].tolist()
    assert sub.labels["au"].shape == (2, 12) and len(ds) == 9


def test_abaw7_expression_files_are_mapped_to_abaw8(tmp_path):
    write_images(tmp_path, "v", [1, 2])
    write_task_file(tmp_path, "older", "expr", "train", "v", ["6", "4"], header=EXPR7_HEADER)
    ds = load_affwild2(tmp_path, "train", tasks=["expr"])
    assert ds.labels["expr"].tolist() == [6, 4]  # same concepts, same order in ABAW-7 and ABAW-8


def test_split_aliases_and_unknown_values(tmp_path):
    make_miniature(tmp_path)
    assert len(load_affwild2(tmp_path, "val")) == 2
    with pytest.raises(ValueError, match="unknown split"):
        load_affwild2(tmp_path, "test")
    with pytest.raises(ValueError, match="unknown annotation source"):
        load_affwild2(tmp_path, source="csv")
    with pytest.raises(FileNotFoundError, match="multi-task annotation file"):
        load_affwild2(tmp_path, source="mtl")


# ------------------------------------------------------------------ multi-task CSV

def test_mtl_csv_source(tmp_path):
    write_images(tmp_path, "v1", [1, 2, 3])
    write_images(tmp_path, "v2_right", [7])
    write_mtl(tmp_path, "train", [
        "v1/00001.jpg,0.5,-0.5,4," + au_line(6, 3),
        "v1/00002.jpg,-5,-5,-1," + au_line(invalid=True),   # nothing valid: dropped
        "v1/00003.jpg,-5,-5,2," + au_line(invalid=True),
        "v1/00009.jpg,0.1,0.1,1," + au_line(1),             # image absent
        "v2_right/00007.jpg,0.25,0.75,-1," + au_line(),
    ])
    ds = load_affwild2(tmp_path, "train")  # no per-task folders: auto picks the CSV
    assert ds.source == "mtl" and ds.layout is None
    rows = rows_by_name(ds)
    assert sorted(rows) == ["v1/00001.jpg", "v1/00003.jpg", "v2_right/00007.jpg"]
    assert ds.labels["expr"][rows["v1/00003.jpg"]] == 2
    np.testing.assert_allclose(ds.labels["va"][rows["v2_right/00007.jpg"]], [0.25, 0.75])
    assert (ds.labels["au"][rows["v2_right/00007.jpg"]] == 0).all()
    assert ds.stats["tasks"]["EXPR"] == {"labelled": 2, "invalid": 2, "missing_images": 1}
    assert ds.stats["tasks"]["VA"] == {"labelled": 2, "invalid": 2, "missing_images": 1}
    assert ds.stats["videos"] == 2 and ds.stats["frames"] == 3
    assert ds.frame_numbers[rows["v2_right/00007.jpg"]] == 7
    assert ds.videos[ds.video_ids[rows["v2_right/00007.jpg"]]] == "v2_right"


def test_mtl_path_escaping_root_is_rejected(tmp_path):
    write_images(tmp_path, "v1", [1])
    write_image(tmp_path / "secret.jpg")
    write_mtl(tmp_path, "train", ["v1/00001.jpg,0,0,0," + au_line(), "../secret.jpg,0,0,0," + au_line()])
    with pytest.raises(AnnotationError, match=r"training_set_annotations.txt:3: .*escapes"):
        load_affwild2(tmp_path, "train", skip_bad_lines=True)


# ------------------------------------------------------------------ malformed input

BAD_LINES = [
    ("expr", ["0", "x"], 3, "not a number|non-numeric|invalid"),
    ("expr", ["0", "9"], 3, "out of range|range"),
    ("expr", ["0", "1,2"], 3, "values|columns"),
    ("au", [au_line(), "1,0,1"], 3, "values|columns"),
    ("au", [au_line(), au_line().replace("0", "2", 1)], 3, "0 or 1|range|out of"),
    ("va", ["0.5,0.5", "0.5"], 3, "values|columns"),
    ("va", ["1.5,0.2"], 2, "range"),
    ("va", ["0.1,abc"], 2, "not a number|non-numeric|invalid"),
]


@pytest.mark.parametrize("task,lines,line_no,reason", BAD_LINES)
def test_malformed_lines_name_file_and_line(tmp_path, task, lines, line_no, reason):
    write_images(tmp_path, "v", [1, 2, 3])
    path = write_task_file(tmp_path, "newer", task, "train", "v", lines)
    with pytest.raises(AnnotationError, match=reason) as info:
        load_affwild2(tmp_path, "train", tasks=[task])
    assert str(info.value).startswith(f"{path}:{line_no}: ")
    # skipping: counted and reported, the other lines still load
    ds = load_affwild2(tmp_path, "train", tasks=[task], skip_bad_lines=True)
    assert ds.stats["bad_lines"] == 1 and ds.bad_lines[0].startswith(f"{path}:{line_no}: ")
    assert len(ds) == len(lines) - 1


def test_wrong_header_names_file_and_line_1(tmp_path):
    write_images(tmp_path, "v", [1])
    path = write_task_file(tmp_path, "newer", "au", "train", "v", [au_line()], header=AU_HEADER.replace("AU26", "AU27"))
    with pytest.raises(AnnotationError) as info:
        load_affwild2(tmp_path, "train", tasks=["au"], skip_bad_lines=True)
    assert str(info.value).startswith(f"{path}:1: ") and "header" in str(info.value)


def test_corrupt_image_error_names_the_file(tmp_path):
    make_miniature(tmp_path)
    bad = tmp_path / "cropped_aligned" / "vidV" / "00002.jpg"
    bad.write_bytes(b"not a jpeg at all")
    ds = load_affwild2(tmp_path, "validation")
    with pytest.raises(ImageReadError, match=str(bad)):
        ds[1]


# ------------------------------------------------------------------ speed

def test_reads_150k_annotation_lines_joined_with_the_image_listing(tmp_path):
    """50 videos x 1000 frames x 3 tasks = 150k annotation lines, joined with the image listing.
    (Its speed is measured in benchmarks/loading.py, not asserted here.)"""
    videos, frames = 50, 1000
    rng = np.random.default_rng(0)
    # pools of line texts keep writing the files cheap; the reader still parses every line
    au_pool = [",".join(map(str, r)) for r in rng.integers(0, 2, (64, 12))]
    va_pool = [f"{a:.3f},{b:.3f}" for a, b in rng.uniform(-1, 1, (256, 2))]
    for v in range(videos):
        name = f"video{v:03d}"
        folder = tmp_path / "cropped_aligned" / name
        folder.mkdir(parents=True)
        for f in range(1, frames + 1, 10):  # one image in ten exists (empty files: only listed)
            (folder / f"{f:05d}.jpg").touch()
        write_task_file(tmp_path, "newer", "expr", "train", name, [str(x) for x in rng.integers(-1, 8, frames)])
        write_task_file(tmp_path, "newer", "au", "train", name, [au_pool[i] for i in rng.integers(0, 64, frames)])
        write_task_file(tmp_path, "newer", "va", "train", name, [va_pool[i] for i in rng.integers(0, 256, frames)])
    ds = load_affwild2(tmp_path, "train")
    assert len(ds) == videos * frames // 10
    assert ds.stats["tasks"]["AU"]["missing_images"] == videos * frames * 9 // 10


# ------------------------------------------------------------------ leakage guard

def _leaky_tree(tmp_path):
    """The miniature plus vidL: EXPR training and AU validation (a leak), and vid9_right in
    validation while vid9_left is in training (a base-name crossing, not a leak)."""
    make_miniature(tmp_path, "newer")
    write_images(tmp_path, "vidL", [1, 2, 3])
    write_task_file(tmp_path, "newer", "expr", "train", "vidL", ["1", "2", "3"])
    write_task_file(tmp_path, "newer", "au", "validation", "vidL", [au_line(1)] * 3)
    write_images(tmp_path, "vid9_right", [1])
    write_task_file(tmp_path, "newer", "va", "validation", "vid9_right", ["0.1,0.1"])
    return tmp_path


@pytest.mark.parametrize("tasks", ["expr", "expr,au,va", "va"])
def test_video_in_expr_training_and_au_validation_is_excluded_and_counted(tmp_path, tasks):
    root = _leaky_tree(tmp_path)
    ds = load_affwild2(root, "train", tasks=tasks, transform=SMALL)
    assert "vidL" not in {p.parent.name for p in ds.image_paths}
    assert "vidL" not in ds.videos and len(ds.video_ids) == len(ds)
    leak = ds.stats["leakage"]
    assert leak["excluded"] is True and leak["videos"] == 1 and leak["video_names"] == ["vidL"]
    assert set(leak["pairs"]) == {"EXPR_train/AU_validation"}
    # frames are counted over this training set: only an EXPR-reading set holds vidL's frames
    assert leak["pairs"]["EXPR_train/AU_validation"] == {"videos": 1, "frames": 3 if "expr" in tasks else 0}
    assert leak["base_name_crossings"] == {"videos": 1, "video_names": ["vid9_left"]}
    assert "vid9_left" in ds.videos or "expr" not in tasks  # a crossing is reported, not removed
    json.dumps(ds.stats)  # JSON-ready for the run record
    # the validation split is untouched
    val = load_affwild2(root, "validation", transform=SMALL)
    assert "vidL" in val.videos and "leakage" not in val.stats


def test_leaking_videos_kept_on_request_with_a_warning(tmp_path):
    root = _leaky_tree(tmp_path)
    with pytest.warns(UserWarning, match="1 training video.*EXPR_train/AU_validation"):
        ds = load_affwild2(root, "train", tasks="expr", transform=SMALL, exclude_leaking_videos=False)
    assert sum(p.parent.name == "vidL" for p in ds.image_paths) == 3
    assert ds.stats["leakage"]["excluded"] is False and ds.stats["leakage"]["frames"] == 3


def test_same_task_overlap_and_mtl_overlap_are_leaks(tmp_path):
    make_miniature(tmp_path, "newer")
    write_task_file(tmp_path, "newer", "expr", "validation", "vidA", ["0"])  # vidA: EXPR train and validation
    ds = load_affwild2(tmp_path, "train", transform=SMALL)
    assert {"EXPR_train/EXPR_validation"} <= set(ds.stats["leakage"]["pairs"])
    assert "vidA" not in ds.videos
    mtl = tmp_path / "m"
    write_images(mtl, "x", [1, 2])
    write_mtl(mtl, "train", ["x/00001.jpg,0.1,0.1,1," + au_line()])
    write_mtl(mtl, "validation", ["x/00002.jpg,0.1,0.1,1," + au_line()])
    with pytest.warns(UserWarning, match="MTL_train/MTL_validation"):
        kept = load_affwild2(mtl, "train", exclude_leaking_videos=False, transform=SMALL)
    assert len(kept) == 1
    assert len(load_affwild2(mtl, "train", transform=SMALL)) == 0


def test_no_leakage_reported_as_zero(tmp_path):
    make_miniature(tmp_path, "newer")
    leak = load_affwild2(tmp_path, "train", transform=SMALL).stats["leakage"]
    assert leak["videos"] == 0 and leak["pairs"] == {} and leak["frames"] == 0


def test_find_leakage_pairs_and_base_name_crossings():
    from affectmodel.data.affwild2 import find_leakage
    from affectmodel.data.layout import base_video_name
    assert base_video_name("10-60-1280x720_right") == "10-60-1280x720" and base_video_name("x_rightish") == "x_rightish"
    found = find_leakage({"EXPR": {"a", "b_left", "c"}, "AU": {"c"}}, {"AU": {"a"}, "VA": {"b_right", "c"}})
    assert found["pairs"] == {"EXPR_train/AU_validation": ["a"], "EXPR_train/VA_validation": ["c"],
                              "AU_train/VA_validation": ["c"]}
    assert found["videos"] == ["a", "c"] and found["base_name_crossings"] == ["b_left"]
    assert find_leakage({}, {}) == {"pairs": {}, "videos": [], "base_name_crossings": []}
