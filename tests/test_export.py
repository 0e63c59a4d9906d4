"""``python -m affectmodel export``: the graphs, their check against PyTorch, and what is refused.

The session's ``exported_model`` fixture runs the real exporter once (fp32 and int8). The tests
here that need another export swap in that already exported graph for the slow tracing step
(``export_fp32``), so that what they test (the check, the install, the record) runs for real in
seconds."""
import json
import shutil

import numpy as np
import pytest
from media import small_model_dir

from affectmodel.cli import main
from affectmodel.inference import export
from affectmodel.inference.engines import open_engine
from affectmodel.inference.onnx_engine import OnnxModelError
from affectmodel.locking import run_folder_lock


def test_the_export_writes_checked_graphs_and_their_figures(exported_model):
    record = json.loads((exported_model / "onnx.json").read_text())
    assert record["format"] == 1 and record["outputs"] == {"expr": 8, "au": 12, "va": 2}
    assert record["input"]["shape"] == ["batch", 3, 64, 64]
    fp32, int8 = record["files"]["model.onnx"], record["files"]["model.int8.onnx"]
    assert fp32["check"]["faces"] == export.CHECK_FACES
    assert max(fp32["check"]["max_abs_diff"].values()) <= 1e-4
    assert fp32["check"]["top_expression_agreement"] == 1.0
    assert int8["precision"] == "int8" and int8["calibration"].startswith(f"{export.CALIBRATION_FACES} generated")
    assert int8["check"]["max_abs_diff"]["va"] <= 0.05
    assert int8["quantisation"] == export.INT8_DEFAULT.to_dict() and "quantisation" not in fp32
    assert (exported_model / "model.int8.onnx").stat().st_size < 0.4 * (exported_model / "model.onnx").stat().st_size
    assert not [p for p in exported_model.iterdir() if p.name.startswith(".")]  # no work files left


def test_the_batch_size_is_dynamic(exported_model):
    engine = open_engine(exported_model, "onnx")
    for n in (1, 3, 40):
        out = engine.run(np.zeros((n, 64, 64, 3), np.float32))
        assert {k: v.shape for k, v in out.items()} == {"expr": (n, 8), "au": (n, 12), "va": (n, 2)}


def _reuse_graph(source):
    """An ``export_fp32`` that writes ``source``'s already exported graph instead of tracing."""
    def fake(model, path):
        shutil.copyfile(source / "model.onnx", path)
    return fake


def test_a_graph_that_does_not_match_pytorch_is_not_installed(exported_model, tmp_path, monkeypatch):
    other = small_model_dir(tmp_path, input_size=64, name="other")  # same shapes, other weights
    import torch
    from safetensors.torch import load_file, save_file
    state = load_file(other / "model.safetensors")
    save_file({k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v for k, v in state.items()},
              other / "model.safetensors")
    monkeypatch.setattr(export, "export_fp32", _reuse_graph(exported_model))
    with pytest.raises(export.ExportError, match=r"the exported graph does not match PyTorch \(expr differs by .* > "
                                                 r"0.0001.*\); nothing was installed"):
        export.export_onnx(other, log=lambda text: None)
    assert sorted(p.name for p in other.iterdir()) == ["README.md", "config.json", "model.safetensors"]


def test_an_int8_graph_that_fails_its_check_is_not_installed_but_fp32_is(exported_model, tmp_path, monkeypatch,
                                                                         capsys):
    folder = tmp_path / "m"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copyfile(exported_model / name, folder / name)
    monkeypatch.setattr(export, "export_fp32", _reuse_graph(exported_model))
    monkeypatch.setattr(export, "quantize_int8",
                        lambda fp32, out, *args: shutil.copyfile(exported_model / "model.int8.onnx", out))
    monkeypatch.setattr(export, "INT8_MIN_AGREEMENT", 1.01)  # the real criterion, made unreachable
    assert main(["export", str(folder), "--int8"]) == 2
    err = capsys.readouterr().err
    assert "error: the int8 graph is not close enough to PyTorch (same top expression on only" in err
    assert "it was not installed (the fp32 graph was checked: fp32 vs torch on 96 generated faces" in err
    assert not (folder / "model.int8.onnx").exists()
    assert open_engine(folder).name == "onnx"  # the fp32 graph is installed and verified
    with pytest.raises(OnnxModelError, match="has no model.int8.onnx"):
        open_engine(folder, "onnx-int8")


def test_the_command_states_the_figures(exported_model, tmp_path, monkeypatch, capsys):
    folder = shutil.copytree(exported_model, tmp_path / "run" / "model")
    (folder / "model.int8.onnx").unlink()
    monkeypatch.setattr(export, "export_fp32", _reuse_graph(exported_model))
    assert main(["export", str(tmp_path / "run"), "--format", "onnx"]) == 0  # a run folder: its model/
    out = capsys.readouterr().out
    assert f"wrote {folder / 'model.onnx'} (42.8 MiB): fp32 vs torch on 96 generated faces: largest difference " \
           "expr" in out
    assert "same top expression on 100.0%" in out and "recorded the checks in" in out
    record = json.loads((folder / "onnx.json").read_text())
    assert set(record["files"]) == {"model.onnx"}


def test_re_exporting_after_retraining_drops_the_stale_int8_graph(exported_model, tmp_path, monkeypatch):
    folder = shutil.copytree(exported_model, tmp_path / "m")
    # "retrained": other weights whose fp32 graph we take from a real export of them
    monkeypatch.setattr(export, "export_fp32", _reuse_graph(exported_model))
    record = json.loads((folder / "onnx.json").read_text())
    record["files"]["model.int8.onnx"]["weights_sha256"] = "0" * 64  # exported from earlier weights
    (folder / "onnx.json").write_text(json.dumps(record))
    export.export_onnx(folder, log=lambda text: None)
    assert set(json.loads((folder / "onnx.json").read_text())["files"]) == {"model.onnx"}
    assert not (folder / "model.int8.onnx").exists()


def test_what_export_refuses(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(export.ExportError, match="needs a local model folder or run folder"):
        export.export_onnx("someone/model")
    folder = small_model_dir(tmp_path)
    with pytest.raises(export.ExportError, match="--calibration .*: no such folder"):
        export.export_onnx(folder, int8=True, calibration=tmp_path / "missing")
    with run_folder_lock(folder, purpose="train"), pytest.raises(OSError, match="is being written by"):
        export.export_onnx(folder)
    from affectmodel import AffectModel, ModelConfig
    temporal = AffectModel(ModelConfig(input_size=32, temporal="gru", window=8)).save(tmp_path / "gru")
    with pytest.raises(export.ExportError, match="a gru temporal model reads windows of frames"):
        export.export_onnx(temporal)


def test_compare_applies_the_criteria():
    reference = {"expr": np.eye(8, dtype=np.float32)[np.arange(20) % 8], "va": np.zeros((20, 2), np.float32)}
    near = {"expr": reference["expr"] + 5e-5, "va": reference["va"] - 5e-5}
    assert export.compare("fp32", near, reference).passed
    far = {"expr": reference["expr"] + 2e-4, "va": reference["va"]}
    assert export.compare("fp32", far, reference).failures == ["expr differs by 0.0002 > 0.0001"]
    one_wrong = {"expr": reference["expr"].copy(), "va": reference["va"] + 0.04}
    one_wrong["expr"][0] = np.roll(one_wrong["expr"][0], 1)
    result = export.compare("int8", one_wrong, reference)
    assert result.top_expression_agreement == pytest.approx(0.95) and result.passed
    one_wrong["expr"][1] = np.roll(one_wrong["expr"][1], 1)
    one_wrong["va"][3, 1] = 0.06
    assert export.compare("int8", one_wrong, reference).failures == [
        "same top expression on only 90.0% of faces (< 95%)", "valence/arousal differ by up to 0.060 (> 0.05)"]
    nan = {"expr": reference["expr"] * np.nan, "va": reference["va"]}
    assert "expr outputs hold NaN or inf" in export.compare("fp32", nan, reference).failures


def test_calibration_images_give_face_crops(tmp_path, capsys):
    from media import astronaut, noise_image
    from PIL import Image

    folder = tmp_path / "calibration"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(astronaut()[40:140, 160:260]).save(folder / "crop.png")      # a crop: used as it is
    Image.fromarray(astronaut()).save(folder / "sub" / "photo.jpg")              # a photo: its face, aligned
    Image.fromarray(noise_image(300, 400)).save(folder / "no_face.png")          # a photo without a face
    (folder / "broken.jpg").write_bytes(b"not an image")
    crops = export.image_crops(folder, size=64)
    assert [c.shape for c in crops] == [(100, 100, 3), (64, 64, 3)]
    assert "calibration image skipped" in capsys.readouterr().err
    (folder / "crop.png").unlink()
    (folder / "sub" / "photo.jpg").unlink()
    with pytest.raises(export.ExportError, match="no face crops or faces in its images"):
        export.image_crops(folder, size=64)


def test_int8_settings_name_the_nodes_left_in_float(exported_model):
    import onnx

    graph = onnx.load(str(exported_model / "model.onnx")).graph
    shapes = {t.name: list(t.dims) for t in graph.initializer}
    by_name = {n.name: n for n in graph.node}
    heads = export.float_nodes(graph, ("heads",))
    assert len(heads) == 3 and {by_name[n].op_type for n in heads} <= {"Gemm", "MatMul"}
    (first,) = export.float_nodes(graph, ("first_conv",))
    assert by_name[first].input[0] == "images" and shapes[by_name[first].input[1]] == [64, 3, 7, 7]
    last = export.float_nodes(graph, ("last_block",))  # ResNet-18's layer4: four 3x3 convs and a 1x1 downsample
    assert sorted(shapes[by_name[n].input[1]][1:] for n in last) == [[256, 1, 1], [256, 3, 3]] + [[512, 3, 3]] * 3
    assert set(export.float_nodes(graph, ("heads", "first_conv"))) == {*heads, first}
    with pytest.raises(ValueError, match="unknown keep_float"):
        export.float_nodes(graph, ("heads", "everything"))


def test_quantize_int8_follows_its_settings(exported_model, tmp_path):
    """A non-default setting reaches the graph: the first convolution kept in float reads the float
    input directly (no QuantizeLinear of ``images``) with float weights."""
    import dataclasses

    import onnx

    from affectmodel.model_config import ModelConfig

    config = ModelConfig(**{k: v for k, v in json.loads((exported_model / "config.json").read_text()).items()
                            if k in ModelConfig.__dataclass_fields__})
    faces = export.generated_faces(8, 64, 1)
    graphs = {}
    for name, settings in (("default", export.INT8_DEFAULT),
                           ("first", dataclasses.replace(export.INT8_DEFAULT, keep_float=("heads", "first_conv")))):
        work = tmp_path / name
        work.mkdir()
        export.quantize_int8(exported_model / "model.onnx", work / "int8.onnx", faces, config, work, settings)
        graphs[name] = onnx.load(str(work / "int8.onnx")).graph
    readers = {name: [n.op_type for n in g.node if "images" in n.input and n.op_type != "Shape"]
               for name, g in graphs.items()}
    assert readers == {"default": ["QuantizeLinear"], "first": ["Conv"]}
    first_conv = next(n for n in graphs["first"].node if n.op_type == "Conv" and n.input[0] == "images")
    assert first_conv.input[1] in {t.name for t in graphs["first"].initializer}  # a float weight, not dequantised
    with pytest.raises(ValueError, match="unknown int8 settings"):
        export.quantize_int8(exported_model / "model.onnx", tmp_path / "x.onnx", faces, config, tmp_path,
                             dataclasses.replace(export.INT8_DEFAULT, method="guess"))
