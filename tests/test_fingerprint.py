"""The data fingerprint (affectmodel/data/fingerprint.py): same data, same digest; any change to
annotations, the image listing or the image bytes, another digest; the parts that changed named."""
from __future__ import annotations

import json
import shutil

import pytest
from PIL import Image

from affectmodel.data.fingerprint import data_fingerprint, fingerprint_change, generator_facts
from affectmodel.data.marker import MARKER_FILE
from affectmodel.data.synthetic import generate_benchmark


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("fp") / "bench"
    generate_benchmark(root, videos=4, frames=3, size=24, seed=0, progress=False)
    return root


@pytest.fixture
def copy(bench, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(bench, target)
    return target


def _first_image(root):
    return sorted((root / "cropped_aligned").rglob("*.jpg"))[0]


def test_same_data_same_digest_and_parts(bench, copy):
    a, b = data_fingerprint(bench), data_fingerprint(copy)
    assert a == b  # relative paths only: the folder's location does not count
    assert len(a["digest"]) == 16 and a["format"] == "aff-wild2"
    n_images = len(list((bench / "cropped_aligned").rglob("*.jpg")))
    assert a["images"]["files"] == n_images and a["pixels"]["files"] == n_images  # a small set: every file read
    assert a["annotations"]["files"] == len(list((bench / "annotations").rglob("*.txt")))


def test_regenerating_with_the_same_seed_gives_the_same_digest(bench, tmp_path):
    generate_benchmark(tmp_path / "again", videos=4, frames=3, size=24, seed=0, progress=False)
    generate_benchmark(tmp_path / "other", videos=4, frames=3, size=24, seed=1, progress=False)
    assert data_fingerprint(tmp_path / "again")["digest"] == data_fingerprint(bench)["digest"]
    assert data_fingerprint(tmp_path / "other")["digest"] != data_fingerprint(bench)["digest"]


def test_other_pixels_under_the_same_names_change_the_digest(bench, copy):
    image = _first_image(copy)
    Image.new("RGB", (24, 24), (10, 20, 30)).save(image, format="JPEG")  # re-rendered frame, same name
    old, new = data_fingerprint(bench), data_fingerprint(copy)
    assert new["digest"] != old["digest"]
    assert new["images"] == old["images"] and new["annotations"] == old["annotations"]
    assert fingerprint_change(old, new) == "image bytes"


def test_listing_and_annotations_count(bench, copy):
    image = _first_image(copy)
    image.rename(image.with_name("99999.jpg"))
    assert fingerprint_change(data_fingerprint(bench), data_fingerprint(copy)) == "image listing, image bytes"
    shutil.rmtree(copy)
    shutil.copytree(bench, copy)
    annotation = sorted((copy / "annotations").rglob("*.txt"))[0]
    annotation.write_text(annotation.read_text() + "0\n")
    assert fingerprint_change(data_fingerprint(bench), data_fingerprint(copy)) == "annotation files"


def test_the_marker_and_hidden_folders_do_not_count(bench, copy):
    """The marker records the generating machine's libraries (not the data); a frame cache lives in
    a hidden folder next to the data."""
    marker = json.loads((copy / MARKER_FILE).read_text())
    marker["libraries"] = {"pillow": "elsewhere"}
    (copy / MARKER_FILE).write_text(json.dumps(marker))
    (copy / ".affectmodel-cache").mkdir()
    Image.new("RGB", (8, 8)).save(copy / ".affectmodel-cache" / "x.jpg")
    assert data_fingerprint(copy)["digest"] == data_fingerprint(bench)["digest"]


def test_folder_per_class_and_csv_sets(tmp_path):
    folders = tmp_path / "folders"
    for label, colour in (("happy", (200, 150, 0)), ("sad", (0, 0, 200))):
        (folders / "train" / label).mkdir(parents=True)
        Image.new("RGB", (8, 8), colour).save(folders / "train" / label / "a.png")
    first = data_fingerprint(folders)
    assert first["format"] == "files" and first["images"]["files"] == 2 and first["annotations"]["files"] == 0
    (folders / "train" / "sad" / "a.png").rename(folders / "train" / "happy" / "b.png")  # a relabelled image
    assert data_fingerprint(folders)["digest"] != first["digest"]
    csv = tmp_path / "set" / "training.csv"
    csv.parent.mkdir()
    Image.new("RGB", (8, 8)).save(csv.parent / "img.png")
    csv.write_text("image,expression\nimg.png,1\n")
    as_file, as_folder = data_fingerprint(csv), data_fingerprint(csv.parent)
    assert as_file["annotations"]["files"] == 1 and as_file["images"]["files"] == 1
    assert as_folder["digest"] == as_file["digest"]
    csv.write_text("image,expression\nimg.png,2\n")
    assert data_fingerprint(csv)["digest"] != as_file["digest"]


def test_missing_data_and_generator_facts(bench, tmp_path):
    with pytest.raises(FileNotFoundError, match="data not found"):
        data_fingerprint(tmp_path / "nothing")
    facts = generator_facts(bench)
    assert facts is not None and facts["generator"] == "affectmodel.data.synthetic"
    assert facts["config"]["seed"] == 0 and facts["libraries"]["pillow"] == Image.__version__
    assert generator_facts(tmp_path) is None
