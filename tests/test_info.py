"""``python -m affectmodel data-info ROOT``: one JSON object describing an installation."""
import json

import pytest
from affwild2_fixtures import au_line, make_miniature, write_images, write_task_file

from affectmodel.cli import main as cli_main
from affectmodel.data.info import data_info
from affectmodel.data.synthetic import generate_benchmark


@pytest.mark.parametrize("layout", ["newer", "older"])
def test_data_info_json(tmp_path, capsys, layout):
    make_miniature(tmp_path, layout)
    assert cli_main(["data-info", str(tmp_path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["layout"] == layout and report["dataset"] == "aff-wild2" and report["synthetic"] is False
    train = report["train"]
    assert train["EXPR"]["labelled"] == 6 and train["EXPR"]["invalid"] == 1 and train["EXPR"]["missing_images"] == 1
    assert train["AU"] == {"labelled": 2, "invalid": 1, "missing_images": 0, "positives": {
        "AU1": 1, "AU2": 1, "AU4": 0, "AU6": 0, "AU7": 0, "AU10": 0, "AU12": 1, "AU15": 0, "AU23": 0,
        "AU24": 0, "AU25": 1, "AU26": 0}}
    assert train["VA"] == {"labelled": 2, "invalid": 1, "missing_images": 0}
    assert train["EXPR"]["class_counts"]["Happiness"] == 1 and train["EXPR"]["class_counts"]["Surprise"] == 0
    assert train["frames"] == 9 and train["videos"] == 3
    assert report["validation"]["frames"] == 2 and report["validation"]["videos"] == 1
    assert report["leakage"]["videos"] == 0 and report["leakage"]["pairs"] == {}


def test_data_info_reports_leaking_videos(tmp_path, capsys):
    make_miniature(tmp_path, "newer")
    write_images(tmp_path, "vidL", [1, 2])
    write_task_file(tmp_path, "newer", "expr", "train", "vidL", ["1", "2"])
    write_task_file(tmp_path, "newer", "au", "validation", "vidL", [au_line(1)] * 2)
    assert cli_main(["data-info", str(tmp_path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["leakage"]["pairs"] == {"EXPR_train/AU_validation": {"videos": 1, "frames": 2}}
    assert report["leakage"]["excluded"] is True
    assert report["train"]["videos"] == 3 and report["train"]["frames"] == 9  # vidL left out, as in training
    with pytest.warns(UserWarning, match="exclude_leaking_videos=False"):
        assert cli_main(["data-info", str(tmp_path), "--keep-leaking-videos"]) == 0
    kept = json.loads(capsys.readouterr().out)
    assert kept["leakage"]["excluded"] is False and kept["train"]["videos"] == 4 and kept["train"]["frames"] == 11


def test_data_info_on_the_synthetic_benchmark(tmp_path):
    summary = generate_benchmark(tmp_path / "s", videos=3, frames=5, size=24, seed=2, progress=False)
    report = data_info(tmp_path / "s")
    assert report["dataset"] == "synthetic-affect" and report["synthetic"] is True
    for split in ("train", "validation"):
        for name, key in (("EXPR", "expr"), ("AU", "au"), ("VA", "va")):
            got = {k: report[split][name][k] for k in ("labelled", "invalid", "missing_images")}
            assert got == summary["counts"][split][key]


def test_data_info_errors_are_one_line(tmp_path, capsys):
    assert cli_main(["data-info", str(tmp_path / "missing")]) == 2
    assert "data folder not found" in capsys.readouterr().err
    make_miniature(tmp_path)
    path = write_task_file(tmp_path, "newer", "va", "train", "vidA", ["0.1,0.2", "oops"])
    assert cli_main(["data-info", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:3:" in err and len(err.strip().splitlines()) == 1
    assert cli_main(["data-info", str(tmp_path), "--skip-bad-lines"]) == 0
    assert json.loads(capsys.readouterr().out)["bad_lines"] == 1
