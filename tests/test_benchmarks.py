"""Smoke tests of the benchmarks: every family runs at tiny sizes and returns well-formed rows.

No timing is asserted here (targets live in benchmarks/RESULTS.md, measured on purpose)."""
import json
import math
import shutil

import pytest

from benchmarks import (
    common,
    loader_throughput,
    loading,
    model_limit,
    multitask_saving,
    onnx_inference,
    space_install,
    temporal_video,
    training_throughput,
    video_e2e,
)
from benchmarks.run import FAMILIES, render

MODULES = {"model_limit": model_limit, "multitask_saving": multitask_saving, "video_e2e": video_e2e,
           "training_throughput": training_throughput, "loader_throughput": loader_throughput, "loading": loading,
           "onnx_inference": onnx_inference, "space_install": space_install,
           "temporal_video": temporal_video}


def _check_result(result: common.FamilyResult, family: str) -> None:
    assert result.family == family and result.title and result.seconds > 0
    assert result.rows and len({r.name for r in result.rows}) == len(result.rows)
    for row in result.rows:
        assert row.values and all(math.isfinite(v) and v >= 0 for v in row.values), row
        assert row.low <= row.median <= row.high
        d = row.to_dict()
        assert set(d) >= {"name", "median", "min", "max", "n", "unit", "target", "met"}
        assert (d["met"] is None) == (row.target is None)
    assert any(r.target is not None for r in result.rows), "every family holds something against a target"


def test_every_family_has_a_module():
    assert set(FAMILIES) == set(MODULES)
    for module in MODULES.values():
        assert set(module.PARAMS) == set(common.MODES)


@pytest.fixture(scope="module")
def model_limit_tiny() -> common.FamilyResult:
    """One tiny run of the model-limit family, read by the tests below (each run takes seconds)."""
    return model_limit.run("tiny")


@pytest.mark.parametrize("family", ["model_limit", "multitask_saving"])
def test_model_benchmarks_run_tiny(family, request):
    result = request.getfixturevalue("model_limit_tiny") if family == "model_limit" else MODULES[family].run("tiny")
    _check_result(result, family)


def test_model_limit_ratio_is_predictor_over_best_bare_trunk(model_limit_tiny):
    result = model_limit_tiny
    bare = [min(a, b) for a, b in zip(result.rows[2].values, result.rows[3].values, strict=True)]
    predictor = result.row(f"predictor.predict_crops, batch {model_limit.PARAMS['tiny']['batch']}").values
    ratio = result.row(f"predictor / bare trunk, batch {model_limit.PARAMS['tiny']['batch']}").values
    assert ratio == pytest.approx([p / b for p, b in zip(predictor, bare, strict=True)])
    # the predictor as users get it (mirror averaging on) is the target; one read a face is context
    batch = model_limit.PARAMS["tiny"]["batch"]
    single = result.row(f"predictor.predict_crops, mirror averaging off, batch {batch}").values
    single_ratio = result.row(f"predictor / bare trunk, mirror averaging off, batch {batch}")
    assert single_ratio.target is None
    assert single_ratio.values == pytest.approx([p / b for p, b in zip(single, bare, strict=True)])
    assert "mirror" in result.notes[0]


@pytest.mark.slow
def test_video_benchmark_runs_tiny(tmp_path, monkeypatch):
    monkeypatch.setattr(video_e2e, "CACHE_DIR", tmp_path)
    result = video_e2e.run("tiny")
    _check_result(result, "video_e2e")
    # the generated video holds a real face that the default detector finds
    assert "Faces found on 0%" not in result.notes[0]
    # the target rows hold the default predictor (mirror averaging); one read a face is context only
    assert result.row("speed-up of the defaults over detection every frame, mirror averaging off").target is None
    assert result.row("speed-up of the defaults over detection every frame").target is not None
    assert result.row("peak RSS 1.2 s / 0.4 s").values[0] > 0.5


def test_generated_video_has_the_asked_length_and_size(tmp_path):
    from affectmodel.inference import probe_video

    path = video_e2e.make_video(0.4, 160, 90, cache_dir=tmp_path)
    info = probe_video(path)
    assert (info.width, info.height, info.frame_count) == (160, 90, 10)
    assert video_e2e.make_video(0.4, 160, 90, cache_dir=tmp_path) == path  # cached


@pytest.mark.slow
def test_training_benchmark_runs_tiny(tmp_path, monkeypatch):
    monkeypatch.setattr(training_throughput, "CACHE_DIR", tmp_path)
    _check_result(training_throughput.run("tiny"), "training_throughput")


def test_loader_benchmark_runs_tiny(tmp_path, monkeypatch):
    monkeypatch.setattr(training_throughput, "CACHE_DIR", tmp_path)
    monkeypatch.setattr(loader_throughput, "CACHE_DIR", tmp_path)
    _check_result(loader_throughput.run("tiny"), "loader_throughput")


@pytest.mark.slow
def test_loading_benchmark_runs_tiny(tmp_path, monkeypatch):
    monkeypatch.setattr(loading, "CACHE_DIR", tmp_path)
    result = loading.run("tiny")
    _check_result(result, "loading")
    assert result.row("demo cold start: whole fresh process").median >= result.row(
        "demo cold start: build_demo (model load + app)").median
    # what bounds the cold start, read from -X importtime (tiny: from the cold-start process itself)
    assert any("-X importtime" in note and "gradio" in note and "torch " in note for note in result.notes)


def test_onnx_benchmark_runs_tiny(tmp_path, monkeypatch, exported_model):
    """Speed and quality on the session's exported model (the benchmark's own models are a 112 px
    export and the trained default model, minutes to make)."""
    monkeypatch.setattr(onnx_inference, "speed_model", lambda size, cache=None: exported_model)
    monkeypatch.setattr(onnx_inference, "quality_model", lambda cache=None: exported_model)
    monkeypatch.setitem(onnx_inference.PARAMS, "tiny", {**onnx_inference.PARAMS["tiny"], "size": 64})
    result = onnx_inference.run("tiny", cache_dir=tmp_path)
    _check_result(result, "onnx_inference")
    # the ONNX engine gives the torch path's faces
    assert result.row("quality, ONNX fp32: frames and photos with the same faces as torch").median == 1.0
    assert result.row("quality, ONNX fp32: largest valence/arousal difference from torch").median <= 1e-4


def test_space_install_benchmark_runs_tiny():
    _check_result(space_install.run("tiny"), "space_install")


def test_rows_judge_targets_on_the_median():
    assert common.Row("a", [1.0, 1.3, 5.0], "x", ("<=", 1.25)).met is False
    assert common.Row("a", [1.0, 1.2, 5.0], "x", ("<=", 1.25)).met is True
    assert common.Row("b", [30.0, 20.0, 26.0], "fps", (">=", 25.0)).met is True
    assert common.Row("c", [1.0], "ms").met is None
    with pytest.raises(ValueError):
        common.Row("d", [], "ms")
    with pytest.raises(ValueError):
        common.Row("e", [1.0], "ms", ("<", 2.0))


def test_interleaved_runs_variants_round_robin():
    calls = []
    times = common.interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=2, warmup=1)
    assert calls == ["a", "b"] * 3
    assert {k: len(v) for k, v in times.items()} == {"a": 2, "b": 2}


def test_render_lists_targets_and_misses():
    fam = {"family": "model_limit", "title": "Model limit", "rows": [
        common.Row("ratio", [1.5, 1.4], "x", ("<=", 1.25)).to_dict(),
        common.Row("speed", [30.0], "fps", (">=", 25.0)).to_dict(),
        common.Row("context", [3.0], "ms").to_dict()],
        "params": {"batch": 32}, "notes": ["bounded by conv2d"], "seconds": 1.0, "load_before": (1.0, 1.0, 1.0),
        "load_after": (1.0, 1.0, 1.0), "measured_at": "2026-01-01T00:00:00", "command": "python benchmarks/run.py"}
    text = render({"machine": common.machine_description(), "command": "python benchmarks/run.py",
                   "families": {"model_limit": fam}})
    assert "| model_limit | ratio | 1.45x | ≤ 1.25 | NOT met |" in text
    assert "| model_limit | speed | 30.0 fps | ≥ 25.0 fps | met |" in text
    assert "bounded by conv2d" in text and "## Machine" in text


def test_results_md_is_what_the_renderer_writes_from_results_json():
    """RESULTS.md is generated: a hand edit (the GPU section was one) would be lost at the next
    `run.py --only NAME`, which renders the whole file again. Edit the renderer's text instead."""
    import json

    from benchmarks.run import RESULTS_JSON, RESULTS_MD

    assert render(json.loads(RESULTS_JSON.read_text())) == RESULTS_MD.read_text()


def _row(name, median, low, high, unit, target="—", n=3):
    return {"name": name, "median": median, "min": low, "max": high, "n": n, "unit": unit, "target": target,
            "met": None, "note": ""}


def test_compare_judges_each_figure_against_the_earlier_spread():
    from benchmarks.compare import comparison_rows, control_drift, render_comparison

    before = {"rows": [_row("fps", 50, 45, 55, "fps"), _row("time", 10, 9, 11, "ms"), _row("ratio", 1.0, 0.9, 1.1, "x"),
                       _row("speed-up", 2.0, 1.8, 2.2, "x", "≥ 2.00"), _row("gone", 1, 1, 1, "s")]}
    after = {"rows": [_row("fps", 44, 40, 46, "fps"), _row("time", 8, 7, 9, "ms"), _row("ratio", 2.0, 1.9, 2.1, "x"),
                      _row("speed-up", 2.1, 2.0, 2.3, "x", "≥ 2.00"), _row("new", 1, 1, 1, "s")]}
    rows = {r["name"]: r for r in comparison_rows(before, after)}
    assert set(rows) == {"fps", "time", "ratio", "speed-up"}  # only figures both trees report
    assert rows["fps"]["verdict"] == "slower beyond noise"     # 44 fps is below the earlier worst, 45
    assert rows["time"]["verdict"] == "faster beyond noise"    # 8 ms is below the earlier best, 9
    assert rows["ratio"]["verdict"] == "not judged"            # a ratio without a target has no direction
    assert rows["speed-up"]["verdict"] == "within noise"       # a target says which way is better
    assert rows["fps"]["ratio"] == pytest.approx(44 / 50)
    # Two runs of the same code (a control figure) moved 15 %: a 12 % change is within that drift.
    control = ({"rows": [_row("bare trunk, batch 32", 100, 95, 105, "ms")]},
               {"rows": [_row("bare trunk, batch 32", 115, 110, 120, "ms")]})
    drift = control_drift([control, (before, after)])
    assert drift == pytest.approx(0.15)
    assert comparison_rows(*control, drift)[0]["verdict"] == "control"
    assert {r["name"]: r["verdict"] for r in comparison_rows(before, after, drift)}["fps"] == "within noise"
    text = render_comparison({"command": "c", "drift": 0.0, "measured_at": "t", "base": "a" * 40, "head": "b" * 40,
                              "dirty": False,
                              "machine": {"cpu": "cpu", "logical_cores": 2}, "load_before": [0], "load_after": [0],
                              "summary": "s", "families": [{"family": "f", "title": "F", "rows": list(rows.values()),
                                                            "before_seconds": 1, "after_seconds": 1,
                                                            "only_after": ["new"]}]})
    assert "| fps | 50.0 fps (45.0–55.0) | 44.0 fps (40.0–46.0) | 0.88x | slower beyond noise |" in text
    assert "Only in this tree (new figures): new." in text


def test_temporal_video_benchmark_runs_tiny(tmp_path, monkeypatch):
    monkeypatch.setattr(video_e2e, "CACHE_DIR", tmp_path)
    monkeypatch.setattr(temporal_video, "make_video", lambda s, w, h: video_e2e.make_video(s, w, h, cache_dir=tmp_path))
    result = temporal_video.run("tiny")
    _check_result(result, "temporal_video")
    assert "Faces predicted per pass: 0" not in result.notes[0]
    assert len(result.notes[0].split(":")[1].split("(")[0].split(",")) == 1  # every model saw the same faces


def test_onnx_benchmark_remakes_an_export_made_with_other_int8_settings(tmp_path, exported_model):
    assert onnx_inference._exported(exported_model)
    folder = tmp_path / "model"
    shutil.copytree(exported_model, folder)
    record = json.loads((folder / "onnx.json").read_text())
    record["files"]["model.int8.onnx"]["quantisation"]["per_channel"] = False
    (folder / "onnx.json").write_text(json.dumps(record))
    assert not onnx_inference._exported(folder)
    (folder / "onnx.json").unlink()
    assert not onnx_inference._exported(folder)


def test_default_model_check_reads_the_validation_floors_and_real_faces(tmp_path):
    from media import small_model_dir

    from benchmarks import default_model as check

    (tmp_path / "metrics.json").write_text(json.dumps(
        {"P_EXPR": 0.5, "P_AU": 0.6, "ccc_valence": 0.7, "selection": {"scores": {"ccc_arousal": 0.9}}}))
    # the validation figures are the top-level ones; the development split's (selection) are not read
    assert check.validation_figures(tmp_path) == {"ccc_valence": 0.7, "ccc_arousal": None, "P_EXPR": 0.5,
                                                  "P_AU": 0.6}
    report = check.read_real_faces(small_model_dir(tmp_path, input_size=64))
    # the example photos (astronaut, her crop, her and her mirror image, the cameraman) and LFW's faces
    assert report["faces"] >= 90 and report["smiling_faces"] == 4 + len(check.LFW_SMILES)
    assert report["mirror_agreement_averaged"] == 1.0  # by construction: why the network alone is reported
    assert 0 <= report["mirror_agreement_network_alone"] < 1  # an untrained network is not symmetric
    assert sum(report["top_expressions"].values()) == report["faces"] == len(report["per_face"])
    assert report["valence"]["min"] <= report["valence"]["max"] and 0 <= report["arousal"]["saturated_share"] <= 1
