"""The ONNX engine opens only a graph that its record vouches for, and answers like PyTorch."""
import json
import shutil

import numpy as np
import onnx
import pytest
from media import astronaut
from onnx import numpy_helper

from affectmodel.hub.loading import load_folder, read_model_config
from affectmodel.inference.export import generated_faces
from affectmodel.inference.onnx_engine import (
    OnnxEngine,
    OnnxMissingError,
    OnnxModelError,
    activate,
    file_sha256,
    session_options,
)
from affectmodel.inference.predictor import preprocess_crops
from affectmodel.inference.torch_engine import TorchEngine


@pytest.fixture
def model_copy(exported_model, tmp_path):
    return shutil.copytree(exported_model, tmp_path / "model")


def _faces(size: int) -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    face = np.ascontiguousarray(astronaut()[40:200, 160:300])  # a real face, resized by the preprocessing
    return [face, *(rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(5))]


def test_fp32_engine_answers_like_pytorch(exported_model):
    config = read_model_config(exported_model)
    batch = preprocess_crops(_faces(config.input_size), config)
    onnx_out = activate(OnnxEngine(exported_model, config).run(batch))
    torch_out = activate(TorchEngine(load_folder(exported_model)).run(batch))
    assert set(onnx_out) == {"expr", "au", "va"}
    for key in onnx_out:
        assert onnx_out[key].shape == torch_out[key].shape
        assert np.abs(onnx_out[key] - torch_out[key]).max() <= 1e-4


def test_int8_engine_is_close_to_pytorch_on_faces(exported_model):
    config = read_model_config(exported_model)
    # faces, like those it was calibrated on (other ones): int8 ranges clip on noise images
    faces = [np.ascontiguousarray(astronaut()[40:200, 160:300]), *generated_faces(8, config.input_size, seed=3)]
    batch = preprocess_crops(faces, config)
    engine = OnnxEngine(exported_model, config, precision="int8")
    assert engine.name == "onnx-int8"
    int8 = activate(engine.run(batch))
    reference = activate(TorchEngine(load_folder(exported_model)).run(batch))
    assert np.abs(int8["va"] - reference["va"]).max() <= 0.05
    assert np.abs(int8["au"] - reference["au"]).max() <= 0.05


def test_the_session_sleeps_between_calls_and_takes_the_thread_count():
    options = session_options(3)
    assert options.intra_op_num_threads == 3 and options.inter_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.get_session_config_entry("session.inter_op.allow_spinning") == "0"
    assert session_options(None).intra_op_num_threads == 0  # onnxruntime's default: one per core


def _rewrite_record(folder, change):
    path = folder / "onnx.json"
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))


def _one_line(error: Exception) -> str:
    text = str(error)
    assert "\n" not in text
    return text


@pytest.mark.parametrize("breakage,message", [
    ("no graph", "has no model.onnx; make one with `python -m affectmodel export"),
    ("no record", "has no onnx.json beside it: it was not checked"),
    ("not listed", "does not list model.onnx"),
    ("graph changed", "is not the graph that was checked at export"),
    ("weights changed", "was exported from other weights than model.safetensors"),
    ("config changed", "does not match config.json: input shape"),
    ("record garbage", "is not valid JSON"),
])
def test_an_unverified_or_mismatched_graph_is_refused_in_one_line(model_copy, breakage, message):
    folder = model_copy
    if breakage == "no graph":
        (folder / "model.onnx").unlink()
    elif breakage == "no record":
        (folder / "onnx.json").unlink()
    elif breakage == "not listed":
        _rewrite_record(folder, lambda r: r["files"].pop("model.onnx"))
    elif breakage == "graph changed":
        with open(folder / "model.onnx", "ab") as f:
            f.write(b"\0")
    elif breakage == "weights changed":
        from safetensors.torch import load_file, save_file
        state = load_file(folder / "model.safetensors")
        state["heads.va.bias"] = state["heads.va.bias"] + 0.5  # retrained after the export
        save_file(state, folder / "model.safetensors")
    elif breakage == "config changed":
        config = json.loads((folder / "config.json").read_text())
        config["input_size"] = 96
        (folder / "config.json").write_text(json.dumps(config))
    elif breakage == "record garbage":
        (folder / "onnx.json").write_text("{not json")
    with pytest.raises(OnnxModelError, match=message) as caught:
        OnnxEngine(folder, read_model_config(folder))
    _one_line(caught.value)
    assert isinstance(caught.value, ValueError)  # command lines print it as one line
    assert isinstance(caught.value, OnnxMissingError) == (breakage == "no graph")


def _replace_graph(folder, edit):
    """Edit model.onnx and re-hash it in the record: a stranger's folder that is consistent with
    itself, so only what the graph computes can give it away."""
    graph = onnx.load(str(folder / "model.onnx"))
    edit(graph)
    onnx.save(graph, str(folder / "model.onnx"))
    digest = file_sha256(folder / "model.onnx")
    _rewrite_record(folder, lambda r: r["files"]["model.onnx"].update(sha256=digest))


def test_a_graph_with_nan_weights_is_refused_when_opened(model_copy):
    def poison(model):
        tensor = next(t for t in model.graph.initializer if numpy_helper.to_array(t).size > 1000)
        values = numpy_helper.to_array(tensor).copy()
        values.flat[0] = np.nan
        tensor.CopyFrom(numpy_helper.from_array(values, tensor.name))

    _replace_graph(model_copy, poison)
    with pytest.raises(OnnxModelError, match="gives NaN or inf .* outputs: its weights are broken"):
        OnnxEngine(model_copy, read_model_config(model_copy))


def test_a_graph_that_computes_other_outputs_than_recorded_is_refused(model_copy):
    _rewrite_record(model_copy, lambda r: r["files"]["model.onnx"]["probe"]["va"][0].__setitem__(0, 0.9))
    with pytest.raises(OnnxModelError, match=r"computes other va outputs on this machine than when it was checked "
                                             r"\(largest difference"):
        OnnxEngine(model_copy, read_model_config(model_copy))


def test_a_graph_with_the_wrong_heads_is_refused(model_copy):
    config = json.loads((model_copy / "config.json").read_text())
    config["tasks"] = ["expr", "va"]
    config.pop("labels", None)
    (model_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(OnnxModelError, match=r"does not match config.json: outputs \['au', 'expr', 'va'\]"):
        OnnxEngine(model_copy, read_model_config(model_copy))
