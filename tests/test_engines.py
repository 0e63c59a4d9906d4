"""One predictor, two engines: the automatic choice, explicit requests, the same answers, and an
inference path that runs without torch."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from media import astronaut, moving_face_frames, small_model_dir, write_video

from affectmodel import AffectModel, ModelConfig
from affectmodel.inference import Predictor, VideoOptions, predict_video
from affectmodel.inference.engines import ENGINES, open_engine
from affectmodel.inference.onnx_engine import OnnxModelError

ROOT = Path(__file__).resolve().parents[1]


def test_auto_uses_a_verified_graph_and_torch_otherwise(exported_model, tmp_path):
    assert open_engine(exported_model).name == "onnx"
    assert open_engine(str(exported_model), "onnx-int8").name == "onnx-int8"
    assert open_engine(exported_model, "torch").name == "torch"
    plain = small_model_dir(tmp_path)
    assert open_engine(plain).name == "torch"  # nothing exported: no warning, just torch
    run = tmp_path / "run"
    shutil.copytree(exported_model, run / "model")
    assert open_engine(run).name == "onnx"  # a run folder's model/
    assert ENGINES == ("auto", "torch", "onnx", "onnx-int8")


def test_auto_warns_about_a_graph_that_fails_its_check_and_uses_torch(exported_model, tmp_path):
    folder = shutil.copytree(exported_model, tmp_path / "m")
    with open(folder / "model.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.warns(UserWarning, match="is not the graph that was checked at export.*; using the torch engine"):
        engine = open_engine(folder)
    assert engine.name == "torch"
    with pytest.raises(OnnxModelError, match="is not the graph that was checked"):
        open_engine(folder, "onnx")


def test_explicit_onnx_without_a_graph_is_refused_in_one_line(tmp_path):
    folder = small_model_dir(tmp_path)
    with pytest.raises(OnnxModelError, match=r"has no model.onnx; make one with `python -m affectmodel export"):
        open_engine(folder, "onnx")
    with pytest.raises(OnnxModelError, match=r"has no model.int8.onnx; .* export .* --int8"):
        Predictor(folder, detector=None, engine="onnx-int8")
    with pytest.raises(ValueError, match="a model object runs on the torch engine"):
        open_engine(AffectModel(ModelConfig(input_size=32)), "onnx")
    with pytest.raises(ValueError, match="runs on the CPU only"):
        open_engine(folder, "onnx", device="cuda")
    with pytest.raises(ValueError, match="unknown engine 'tensorrt'"):
        open_engine(folder, "tensorrt")


def test_both_engines_give_the_same_records(exported_model):
    torch_predictor = Predictor(exported_model, engine="torch")
    onnx_predictor = Predictor(exported_model, detector=torch_predictor.detector)
    assert (torch_predictor.engine_name, onnx_predictor.engine_name) == ("torch", "onnx")
    assert onnx_predictor.model is None and torch_predictor.model is not None
    a, b = torch_predictor.predict_image(astronaut()), onnx_predictor.predict_image(astronaut())
    assert len(a) == len(b) == 1
    assert a[0]["box"] == b[0]["box"] and a[0]["aus_active"] == b[0]["aus_active"]
    for key in ("expression", "aus"):
        assert a[0][key] == pytest.approx(b[0][key], abs=1e-4)
    assert (a[0]["valence"], a[0]["arousal"]) == pytest.approx((b[0]["valence"], b[0]["arousal"]), abs=1e-4)
    # the stored AU thresholds come from config.json on both engines
    assert list(onnx_predictor.au_thresholds) == pytest.approx([0.3] * 6 + [0.7] * 6)


def test_video_rows_are_the_same_on_both_engines(exported_model, tmp_path):
    clip = write_video(tmp_path / "clip.mp4", moving_face_frames(12, n_faces=2))
    options = VideoOptions(smoothing="mean", smooth_window=3)
    torch_predictor = Predictor(exported_model, engine="torch")
    rows = {name: predict_video(Predictor(exported_model, detector=torch_predictor.detector, engine=name), clip,
                                options)
            for name in ("torch", "onnx")}
    assert len(rows["torch"]) == len(rows["onnx"]) == 24
    for r, o in zip(rows["torch"], rows["onnx"], strict=True):
        assert (r["frame"], r["track_id"], r["box"]) == (o["frame"], o["track_id"], o["box"])
        assert np.allclose([r["valence"], r["arousal"]], [o["valence"], o["arousal"]], atol=1e-4)
        assert np.allclose(list(r["expression"].values()), list(o["expression"].values()), atol=1e-4)


# A child process in which torch and torchvision cannot be imported (as in the torch-free Space).
NO_TORCH = """
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision"):
            raise ImportError(f"No module named {name!r} (blocked)", name=name)
sys.meta_path.insert(0, Blocker())
"""


def _run_without_torch(code: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", NO_TORCH + code, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def test_images_crops_and_video_run_without_torch(exported_model, tmp_path):
    clip = write_video(tmp_path / "clip.mp4", moving_face_frames(6))
    image = tmp_path / "face.png"
    from PIL import Image
    Image.fromarray(astronaut()).save(image)
    code = """
import json, sys
from affectmodel.inference import Predictor, predict_video
predictor = Predictor(sys.argv[1])
faces = predictor.predict_image(sys.argv[2])
crops = predictor.predict_crops([sys.argv[2]])
rows = predict_video(predictor, sys.argv[3], annotate_to=sys.argv[4])
assert "torch" not in sys.modules
print(json.dumps({"engine": predictor.engine_name, "faces": len(faces), "valence": faces[0]["valence"],
                  "crops": len(crops), "rows": len(rows)}))
"""
    done = _run_without_torch(code, str(exported_model), str(image), str(clip), str(tmp_path / "out.mp4"))
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["engine"] == "onnx" and result["faces"] == 1 and result["crops"] == 1 and result["rows"] == 6
    assert (tmp_path / "out.mp4").stat().st_size > 0
    expected = Predictor(exported_model, engine="torch").predict_image(astronaut())[0]["valence"]
    assert result["valence"] == pytest.approx(expected, abs=1e-4)


def test_without_torch_a_folder_that_needs_it_says_so_in_one_line(tmp_path):
    folder = small_model_dir(tmp_path)
    done = _run_without_torch("""
import sys
from affectmodel.inference import Predictor
try:
    Predictor(sys.argv[1], detector=None)
except ValueError as e:
    print(e)
""", str(folder))
    assert done.returncode == 0, done.stderr[-2000:]
    line = done.stdout.strip()
    assert "\n" not in line and "has no model.onnx" in line and "PyTorch is not installed" in line


def test_a_hub_model_with_a_graph_runs_on_onnx_without_downloading_the_weights(exported_model, tmp_path,
                                                                               monkeypatch):
    """A Hub repository served from 127.0.0.1 (hub_fixtures.FakeHub): the automatic choice downloads
    config.json, onnx.json and model.onnx, and the weights only when PyTorch must run."""
    from hub_fixtures import FakeHub, folder_files, use_endpoint

    files = folder_files(exported_model)
    with FakeHub({"me/affect-onnx": {"main": files}}) as hub:
        use_endpoint(monkeypatch, hub.url, tmp_path / "cache")
        predictor = Predictor("me/affect-onnx", detector=None)
        fetched = {path.rsplit("/", 1)[-1] for method, path in hub.requests if method == "GET"}
        assert predictor.engine_name == "onnx"
        assert fetched == {"config.json", "onnx.json", "model.onnx"}
        face = predictor.predict_crops([np.ascontiguousarray(astronaut()[40:200, 160:300])])[0]
        assert Predictor("me/affect-onnx", detector=None, engine="torch").predict_crops(
            [np.ascontiguousarray(astronaut()[40:200, 160:300])])[0]["valence"] == pytest.approx(face["valence"],
                                                                                                abs=1e-4)
