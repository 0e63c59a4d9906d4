"""Security (issue 10): untrusted checkpoints never unpickle, uploads are size-limited and live in
a temporary folder that is cleaned, annotation paths cannot leave the data root, the Hub token
never shows, and the demo listens on 127.0.0.1 unless told otherwise. See docs/RELIABILITY.md.
"""
from __future__ import annotations

import ast
import json
import logging
import os
import pickle
import traceback
from pathlib import Path

import pytest
import torch
from affwild2_fixtures import au_line, make_miniature, write_images, write_mtl
from hub_fixtures import SENTINEL_TOKEN, FakeHub, make_run, use_endpoint
from net import free_port

from affectmodel import load_model
from affectmodel.data.affwild2 import load_affwild2
from affectmodel.data.annotations import AnnotationError
from affectmodel.hub.loading import ModelSourceError
from affectmodel.hub.publish import PublishError, publish_run
from affectmodel.inference import Predictor
from affectmodel.initialisation import build_model
from affectmodel.model import AffectModel, CheckpointError, ModelConfig
from affectmodel.training import checkpoint as ckpt
from affectmodel.training.cli import main as train_main

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.filterwarnings("ignore:Detected pickle protocol"),  # the malicious files use protocol 5
              pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]


# ------------------------------------------------------------------ pickles

class Payload:
    """Unpickling this runs ``os.system``: the marker file appears only if a loader executed it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _malicious(path: Path, marker: Path, wrap=lambda p: p) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        torch.save(wrap(Payload(marker)), f, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    return path


def test_the_payload_really_executes_when_unpickled(tmp_path):
    """Guard for the tests below: the file is a working exploit."""
    marker = tmp_path / "pwned"
    path = _malicious(tmp_path / "evil.pt", marker)
    torch.load(path, weights_only=False)  # what a careless loader would do
    assert marker.exists()


@pytest.mark.parametrize("wrap", [lambda p: p, lambda p: {"state_dict": {"fc.weight": p}}],
                         ids=["bare", "inside a state dict"])
def test_malicious_legacy_weights_in_a_model_folder_are_refused(tmp_path, wrap):
    marker = tmp_path / "pwned"
    folder = tmp_path / "model"
    AffectModel(ModelConfig(input_size=32)).save(folder)
    (folder / "model.safetensors").unlink()
    _malicious(folder / "pytorch_model.bin", marker, wrap)
    with pytest.raises(ModelSourceError, match="cannot read weights"):
        load_model(folder)
    with pytest.raises(ModelSourceError):
        Predictor(str(folder), detector=None)
    assert not marker.exists()


def test_a_pickle_named_model_safetensors_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    folder = tmp_path / "model"
    AffectModel(ModelConfig(input_size=32)).save(folder)
    _malicious(folder / "model.safetensors", marker)
    with pytest.raises(ModelSourceError, match="cannot read weights") as info:
        load_model(folder)
    assert isinstance(info.value, CheckpointError)  # what callers of the older API catch
    assert not marker.exists()


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    from affectmodel.data.synthetic import generate_benchmark

    root = tmp_path_factory.mktemp("bench")
    generate_benchmark(root, videos=2, frames=4, seed=0, size=32, progress=False)
    return root


def _train(argv: list[str]) -> int:
    before = torch.get_num_threads()
    try:
        return train_main(argv)
    finally:
        torch.set_num_threads(before)


def test_malicious_init_weights_are_refused(tmp_path, bench, capsys):
    marker = tmp_path / "pwned"
    evil = _malicious(tmp_path / "resnet18.pth", marker)
    with pytest.raises(CheckpointError, match="cannot read weights"):
        build_model(ModelConfig(input_size=32), init=str(evil))
    assert _train(["--data", str(bench), "--out", str(tmp_path / "run"), "--init", str(evil), "--image-size", "32",
                   "--device", "cpu", "--dev-fraction", "0"]) == 2  # the tiny set has too few videos to hold out
    err = capsys.readouterr().err
    assert "cannot read weights" in err and "Traceback" not in err
    assert not marker.exists()


def test_malicious_training_checkpoint_is_refused_on_resume(tmp_path, bench, capsys):
    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    _malicious(ckpt.checkpoint_path(run), marker, lambda p: {"module": p, "state": {"step": 1}})
    config = {"data": str(bench), "out": str(run), "image_size": 32, "batch_size": 4, "device": "cpu",
              "dev_fraction": 0.0, "va_bound": "clamp", "warmup": 0.1}  # today's defaults: only the checkpoint is wrong
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        ckpt.load_checkpoint(ckpt.checkpoint_path(run))
    code = _train(["--data", str(bench), "--out", str(run), "--image-size", "32", "--batch-size", "4",
                   "--device", "cpu", "--dev-fraction", "0", "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and "cannot read checkpoint" in err
    assert not marker.exists()


def test_every_torch_load_in_the_library_is_weights_only():
    """A static check, so that a later change cannot add an unpickling load unnoticed."""
    calls = []
    for path in (REPO / "affectmodel").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load" \
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch":
                weights_only = [k for k in node.keywords if k.arg == "weights_only"]
                calls.append((f"{path.name}:{node.lineno}", bool(weights_only) and isinstance(
                    weights_only[0].value, ast.Constant) and weights_only[0].value.value is True))
            if isinstance(node, ast.Attribute) and node.attr in ("loads", "load") and isinstance(node.value, ast.Name) \
                    and node.value.id in ("pickle", "dill", "joblib"):
                calls.append((f"{path.name}:{node.lineno} ({node.value.id})", False))
    assert calls, "expected torch.load calls (legacy weights, checkpoints)"
    assert [c for c, ok in calls if not ok] == []


# ------------------------------------------------------------------ annotation paths

def test_mtl_paths_cannot_leave_the_image_folder(tmp_path):
    secret = tmp_path / "secret" / "00001.jpg"  # a real file outside the data root
    write_images(tmp_path / "outside", "x", [1])
    secret.parent.mkdir()
    secret.write_bytes((tmp_path / "outside" / "cropped_aligned" / "x" / "00001.jpg").read_bytes())
    root = tmp_path / "mtl_only"
    write_images(root, "vidA", [1, 2])
    row = ",0.1,0.2,3," + au_line(1)
    for escape in ("../../secret/00001.jpg", str(secret), "vidA/../../../secret/00001.jpg",
                   "vidA\\..\\..\\..\\secret\\00001.jpg"):
        write_mtl(root, "train", ["vidA/00001.jpg" + row, escape + row])
        for skip in (False, True):  # skipping bad lines never lets such a path through
            with pytest.raises(AnnotationError, match="escapes the image folder"):
                load_affwild2(root, "train", source="mtl", skip_bad_lines=skip)
    write_mtl(root, "train", ["vidA/00001.jpg" + row, "vidA/00002.jpg" + row])
    ds = load_affwild2(root, "train", source="mtl")
    images_dir = (root / "cropped_aligned").resolve()
    assert len(ds) == 2 and all(Path(p).resolve().is_relative_to(images_dir) for p in ds.image_paths)


def test_per_task_files_name_only_plain_video_folders(tmp_path):
    make_miniature(tmp_path, "newer")
    ds = load_affwild2(tmp_path, "train")
    images_dir = (tmp_path / "cropped_aligned").resolve()
    assert len(ds) and all(Path(p).resolve().is_relative_to(images_dir) for p in ds.image_paths)
    folder = tmp_path / "annotations" / "EXPR_Recognition_Challenge" / "Train_Set"
    (folder / "..txt").write_text("Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n0\n")
    with pytest.raises(ValueError, match="not a plain folder name"):
        load_affwild2(tmp_path, "train")


# ------------------------------------------------------------------ Hub token

def _everything_said(error: BaseException) -> str:
    return "".join(traceback.format_exception(error))


def test_the_token_never_appears_in_errors_logs_output_or_files(tmp_path, monkeypatch, caplog, capfd):
    """A fake Hub refuses and echoes the Authorization header back; with every logger at DEBUG the
    token shows in no message, traceback, log record, console output or written file."""
    monkeypatch.setenv("HF_TOKEN", SENTINEL_TOKEN)
    run = make_run(tmp_path)
    caplog.set_level(logging.DEBUG)
    from huggingface_hub.utils import logging as hf_logging
    hf_logging.set_verbosity_debug()
    errors = []
    try:
        with FakeHub({}) as hub:
            use_endpoint(monkeypatch, hub.url, tmp_path / "cache")
            for status in (401, 403, 400, 500):
                hub.post_status = status
                with pytest.raises(PublishError) as info:
                    publish_run(run, "me/affect-mtl")
                errors.append(info.value)
            with pytest.raises(ModelSourceError) as info:
                load_model("me/not-there")
            errors.append(info.value)
            from affectmodel.cli import main
            assert main(["publish", str(run), "--repo", "me/affect-mtl"]) == 2
            assert main(["publish", str(run), "--repo", "me/affect-mtl", "--dry-run", str(tmp_path / "dry")]) == 0
            assert main(["publish-space", "--repo", "me/affect-demo", "--model", "me/affect-mtl", "--dry-run",
                         str(tmp_path / "space")]) == 0
            assert any(method == "POST" for method, _ in hub.requests)  # the token was really sent
    finally:
        hf_logging.set_verbosity_warning()
    said = "".join(_everything_said(e) for e in errors)
    out = capfd.readouterr()
    said += caplog.text + out.out + out.err
    said += "".join(p.read_bytes().decode("latin-1") for p in tmp_path.rglob("*") if p.is_file())
    assert SENTINEL_TOKEN not in said
    assert SENTINEL_TOKEN[4:20] not in said  # not even a part of it
    assert "HTTP 401" in said and "hf auth login" in said


# ------------------------------------------------------------------ demo

# Only the tests below need gradio: mark them, so that without it the rest of the file still runs.
try:
    import gradio as gr
    import gradio_client
except ImportError:
    gr = gradio_client = None
needs_gradio = pytest.mark.skipif(gr is None, reason="the demo tests need gradio and gradio_client "
                                                     "(pip install -e .[apps])")




@pytest.fixture
def demo_run(tmp_path) -> Path:
    run = tmp_path / "run"
    AffectModel(ModelConfig(input_size=64)).save(run / "model")
    (run / "metrics.json").write_text(json.dumps({"tasks": ["expr", "au", "va"], "dataset": {
        "name": "synthetic-affect", "synthetic": True, "split": "validation"}}))
    return run


@needs_gradio
def test_demo_binds_to_loopback_unless_told_otherwise(monkeypatch, demo_run):
    from demo import app as demo_app

    launched = []
    def fake_launch(self, **kwargs):  # returns what Blocks.launch returns: (app, local URL, share URL)
        launched.append(kwargs)
        return None, f"http://{kwargs['server_name']}:{kwargs['server_port']}/", None

    monkeypatch.setattr(gr.Blocks, "launch", fake_launch)
    monkeypatch.setattr(gr.Blocks, "block_thread", lambda self: None)
    for name in ("SPACE_ID", "GRADIO_SERVER_NAME", "GRADIO_SERVER_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert demo_app.main(["--model", str(demo_run)]) == 0
    assert launched[-1]["server_name"] == "127.0.0.1" and launched[-1]["share"] is False
    assert launched[-1]["max_file_size"] == demo_app.MAX_FILE_SIZE == "50mb"
    assert demo_app.main(["--model", str(demo_run), "--host", "0.0.0.0"]) == 0
    assert launched[-1]["server_name"] == "0.0.0.0"  # only when asked


@needs_gradio
@pytest.mark.slow
def test_uploads_are_size_limited_and_live_in_a_temp_folder_that_is_cleaned(tmp_path, monkeypatch, demo_run):
    from media import astronaut, moving_face_frames, write_video
    from PIL import Image

    from demo import app as demo_app

    cache = tmp_path / "gradio-temp"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))
    image = tmp_path / "face.jpg"
    Image.fromarray(astronaut()).save(image)
    video = write_video(tmp_path / "clip.mp4", moving_face_frames(6), fps=10)
    too_big = tmp_path / "big.jpg"
    with open(too_big, "wb") as f:  # 51 MB, mostly a hole: cheap to make
        f.write(b"\xff\xd8")
        f.truncate(51 * 1024 * 1024)
    demo = demo_app.build_demo(str(demo_run))
    assert demo.delete_cache == (1800, 3600)  # while running: files older than an hour, every 30 min
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(),
                            quiet=True, **demo_app.launch_options())
    client = gradio_client.Client(url, verbose=False)
    try:
        with pytest.raises(Exception, match="maximum file size"):
            client.predict(gradio_client.handle_file(str(too_big)), api_name="/predict_image")
        client.predict(gradio_client.handle_file(str(image)), api_name="/predict_image")
        client.predict(gradio_client.handle_file(str(video)), 1, 1, api_name="/predict_video")
        during = [p for p in cache.rglob("*") if p.is_file()]
        names = {p.name for p in during}
        assert any(n.endswith(".jpg") for n in names) and any(n.endswith(".mp4") for n in names)
        assert any(n.endswith("-predictions.csv") for n in names)  # outputs are written there too
        assert not any(p.stat().st_size > 50 * 1024 * 1024 for p in during)  # the big upload was not kept
    finally:
        client.close()
        demo.close()
    # every upload and output is deleted; only the app's own example files stay cached
    examples = {p.name for p in demo_app.EXAMPLES_DIR.iterdir()}
    left = sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file() and p.name not in examples)
    assert left == [], left
