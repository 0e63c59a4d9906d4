"""AffectNet-style CSV and folder-per-class readers, with explicit label-space mapping."""
import numpy as np
import pytest
import torch
from affwild2_fixtures import write_image

from affectmodel.data.annotations import AnnotationError
from affectmodel.data.formats import RAFDB_BASIC_FOLDERS, load_affectnet_csv, load_image_folder
from affectmodel.data.transforms import build_transform
from affectmodel.model import ModelConfig
from affectmodel.tasks import ABAW8, AFFECTNET8, label_mapping

SMALL = build_transform("none", ModelConfig(input_size=16), train=False)
HEADER = "subDirectory_filePath,face_x,face_y,expression,valence,arousal"


def write_csv(tmp_path, rows, header=HEADER):
    path = tmp_path / "training.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_affectnet_csv_maps_labels_by_meaning(tmp_path):
    for name in ("a", "b", "c", "d", "e"):
        write_image(tmp_path / "imgs" / f"{name}.jpg")
    path = write_csv(tmp_path, [
        "imgs/a.jpg,0,0,1,0.5,0.25",      # AffectNet Happy -> ABAW-8 Happiness (4)
        "imgs/b.jpg,0,0,6,-0.5,0.5",      # Anger -> 1
        "imgs/c.jpg,0,0,7,-0.2,0.1",      # Contempt: no ABAW-8 class -> not annotated, VA kept
        "imgs/d.jpg,0,0,9,-2,-2",         # Uncertain + no VA: nothing usable, dropped
        "imgs/e.jpg,0,0,0,-2,0.3",        # Neutral, valence not annotated
        "imgs/missing.jpg,0,0,2,0,0",     # image absent: skipped and counted
    ])
    ds = load_affectnet_csv(path, transform=SMALL)
    assert [p.name for p in ds.image_paths] == ["a.jpg", "b.jpg", "c.jpg", "e.jpg"]
    mapping = label_mapping(AFFECTNET8, ABAW8)
    assert ds.labels["expr"].tolist() == [mapping[1], mapping[6], -1, mapping[0]] == [4, 1, -1, 0]
    np.testing.assert_allclose(ds.labels["va"], [[0.5, 0.25], [-0.5, 0.5], [-0.2, 0.1], [-5, 0.3]])
    assert (ds.labels["au"] == -1).all()
    assert ds.stats["missing_images"] == 1 and ds.stats["unmapped_expression"] == 1
    assert ds.tasks == ("expr", "va") and ds.expression_space == "abaw8"
    image, targets = ds[0]
    assert image.shape == (3, 16, 16) and targets["expr"].item() == 4 and targets["au"].shape == (12,)
    # the same file read into the AffectNet-8 space keeps the original indices
    native = load_affectnet_csv(path, expression_space="affectnet8")
    assert native.labels["expr"].tolist() == [1, 6, 7, 0]


def test_affectnet_csv_image_root_and_minimal_columns(tmp_path):
    write_image(tmp_path / "elsewhere" / "x.png")
    path = write_csv(tmp_path, ["x.png,3"], header="image,expression")
    ds = load_affectnet_csv(path, image_root=tmp_path / "elsewhere")
    assert ds.labels["expr"].tolist() == [6] and ds.tasks == ("expr",)  # Surprise
    assert (ds.labels["va"] == -5).all()


BAD = [
    (["a.jpg,0,0,1,0.1"], 2, "expected 6 columns"),
    (["a.jpg,0,0,x,0.1,0.1"], 2, "not a number"),
    (["a.jpg,0,0,12,0.1,0.1"], 2, "out of range"),
    (["a.jpg,0,0,1.5,0.1,0.1"], 2, "out of range"),
    (["a.jpg,0,0,1,0.1,0.1", "a.jpg,0,0,1,1.7,0.1"], 3, "valence 1.7 out of range"),
    (["a.jpg,0,0,1,0.1,nope"], 2, "not numbers"),
    ([",0,0,1,0.1,0.1"], 2, "empty image path"),
]


@pytest.mark.parametrize("rows,line,reason", BAD)
def test_affectnet_csv_bad_lines_name_file_and_line(tmp_path, rows, line, reason):
    write_image(tmp_path / "a.jpg")
    path = write_csv(tmp_path, rows)
    with pytest.raises(AnnotationError, match=reason) as info:
        load_affectnet_csv(path)
    assert str(info.value).startswith(f"{path}:{line}: ")
    ds = load_affectnet_csv(path, skip_bad_lines=True)
    assert ds.stats["bad_lines"] == 1 and ds.bad_lines[0].startswith(f"{path}:{line}: ")
    assert len(ds) == len(rows) - 1


def test_affectnet_csv_header_and_escaping_paths(tmp_path):
    with pytest.raises(AnnotationError, match=r":1: .*image column"):
        load_affectnet_csv(write_csv(tmp_path, ["a.jpg,1"], header="picture,expression"))
    with pytest.raises(AnnotationError, match=r":1: .*together"):
        load_affectnet_csv(write_csv(tmp_path, ["a.jpg,1,0.2"], header="image,expression,valence"))
    path = write_csv(tmp_path, ["../../etc/passwd,0,0,1,0,0"])
    with pytest.raises(AnnotationError, match=r":2: .*escapes"):
        load_affectnet_csv(path, skip_bad_lines=True)
    with pytest.raises(FileNotFoundError):
        load_affectnet_csv(tmp_path / "none.csv")


def test_folder_per_class_fer_names(tmp_path):
    for cls, n in (("angry", 2), ("happy", 3), ("Neutral", 1)):
        for i in range(n):
            write_image(tmp_path / "fer" / cls / f"{i}.png")
    (tmp_path / "fer" / "happy" / "notes.txt").write_text("not an image")
    ds = load_image_folder(tmp_path / "fer", label_space="fer7", transform=SMALL)
    assert len(ds) == 6 and ds.tasks == ("expr",)
    assert sorted(ds.labels["expr"].tolist()) == [0, 1, 1, 4, 4, 4]  # Neutral, Anger x2, Happiness x3
    assert ds.class_counts().tolist() == [1, 2, 0, 0, 3, 0, 0, 0]
    assert (ds.labels["va"] == -5).all() and (ds.labels["au"] == -1).all()
    assert ds[0][1]["expr"].dtype == torch.int64


def test_folder_per_class_rafdb_numbers_and_unmapped_classes(tmp_path):
    for folder in ("1", "4", "7"):
        write_image(tmp_path / "raf" / folder / "x.jpg")
    ds = load_image_folder(tmp_path / "raf", label_space="abaw7", folder_labels=RAFDB_BASIC_FOLDERS)
    assert sorted(ds.labels["expr"].tolist()) == [0, 4, 6]  # Neutral, Happiness, Surprise
    write_image(tmp_path / "an" / "Contempt" / "x.jpg")
    write_image(tmp_path / "an" / "Happy" / "x.jpg")
    ds = load_image_folder(tmp_path / "an", label_space="affectnet8")
    assert ds.labels["expr"].tolist() == [4] and ds.stats["skipped_folders"] == {"Contempt": 1}
    write_image(tmp_path / "bad" / "joyful" / "x.jpg")
    with pytest.raises(ValueError, match="'joyful' is not a class of the fer7"):
        load_image_folder(tmp_path / "bad", label_space="fer7")
    with pytest.raises(FileNotFoundError):
        load_image_folder(tmp_path / "nothing", label_space="fer7")
