"""The Gradio demo end to end: launched in-process, called through gradio_client like any API user.

A small random model (in a run folder marked as trained on the synthetic benchmark) keeps this
fast; faces come from scikit-image's astronaut photo, videos are written with PyAV.
"""
from __future__ import annotations

import io
import itertools
import json
import math
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

gr = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")
skimage_data = pytest.importorskip("skimage.data")

from media import animated_images, truncated_videos  # noqa: E402
from net import free_port  # noqa: E402

from affectmodel.inference import probe_video, write_video_frames  # noqa: E402
from affectmodel.model import AffectModel, ModelConfig  # noqa: E402
from affectmodel.tasks import ABAW8, AU_NAMES  # noqa: E402
from demo import app as demo_app  # noqa: E402
from demo import charts, default_model  # noqa: E402

# Gradio's queue calls pandas options that pandas 3 deprecates; not ours to fix.
pytestmark = [pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]

Client, handle_file = gradio_client.Client, gradio_client.handle_file
AppError = gradio_client.exceptions.AppError




def make_run_folder(root: Path, synthetic: bool = True) -> Path:
    """A run folder (model/ + metrics.json) holding a small random model."""
    torch.manual_seed(0)
    run = root / "run"
    AffectModel(ModelConfig(input_size=64)).save(run / "model")
    metrics = {"tasks": ["expr", "au", "va"], "P_EXPR": 0.41, "P_AU": 0.52, "P_VA": 0.33, "P_MTL": 1.26,
               "dataset": {"name": "synthetic-affect" if synthetic else "aff-wild2", "synthetic": synthetic,
                           "split": "validation"}}
    (run / "metrics.json").write_text(json.dumps(metrics))
    return run


def astronaut(size: int = 256) -> np.ndarray:
    return np.asarray(Image.fromarray(skimage_data.astronaut()).resize((size, size)))


def face_video(path: Path, frames: int = 25, fps: int = 10, with_face: bool = True) -> Path:
    face = astronaut(160)
    images = []
    for i in range(frames):
        frame = np.full((200, 320, 3), 50, np.uint8)
        if with_face:
            x = 10 + 6 * i
            frame[20:180, x:x + 160] = face
        images.append(frame)
    write_video_frames(path, images, fps=fps)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("demo_files")
    a = astronaut(320)
    two = np.concatenate([a, (a[:, ::-1] * 0.85).astype(np.uint8)], axis=1)
    out = {"one": root / "one_face.jpg", "two": root / "two_faces.jpg", "none": root / "no_face.png",
           "text": root / "notes.txt", "truncated": root / "truncated.jpg", "huge": root / "huge.png",
           "fake_video": root / "clip.mp4"}
    Image.fromarray(a).save(out["one"])
    Image.fromarray(two).save(out["two"])
    gradient = np.tile(np.linspace(0, 255, 200, dtype=np.uint8)[None, :, None], (150, 1, 3))
    Image.fromarray(gradient).save(out["none"])
    out["text"].write_text("this is not an image\n")
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG")
    out["truncated"].write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    Image.new("L", (6000, 6000)).save(out["huge"])  # 36 MP: over the demo's 25 MP, yet a tiny file
    out["fake_video"].write_text("not a video either\n")
    out["video"] = face_video(root / "face.mp4")
    out["blank_video"] = face_video(root / "blank.mp4", frames=10, with_face=False)
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    run = make_run_folder(tmp_path_factory.mktemp("demo_model"))
    demo = demo_app.build_demo(str(run), queue_size=1)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_port=free_port(), quiet=True,
                            **demo_app.launch_options(max_file_size="2mb"))
    client = Client(url, verbose=False)
    yield demo, client
    client.close()
    demo.close()


def read_json(value):
    return value if isinstance(value, dict) else json.loads(value)


# ------------------------------------------------------------------ image endpoint

def test_predict_image_returns_every_face_with_all_outputs(server, files):
    _, client = server
    start = time.perf_counter()
    outputs = client.predict(handle_file(str(files["two"])), api_name="/predict_image")
    assert not any(isinstance(o, dict) and "__type__" in o for o in outputs)  # data, never Gradio update dicts
    annotated, summary, label, aus_plot, va_plot, result = outputs
    elapsed = time.perf_counter() - start
    print(f"\n/predict_image round trip: {elapsed:.2f} s")
    result = read_json(result)
    faces = result["faces"]
    assert len(faces) == 2
    width, height = result["image_size"]
    assert (width, height) == (640, 320)
    for face in faces:
        x1, y1, x2, y2 = face["box"]
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
        assert list(face["expression"]) == list(ABAW8.labels)
        assert math.isclose(sum(face["expression"].values()), 1.0, rel_tol=1e-4)
        assert list(face["aus"]) == list(AU_NAMES)
        assert all(0.0 <= p <= 1.0 for p in face["aus"].values())
        assert -1.0 <= face["valence"] <= 1.0 and -1.0 <= face["arousal"] <= 1.0
    assert faces[0]["box"][0] < 320 <= faces[1]["box"][0]  # left face first
    # the annotated image is a real image of the same size, with boxes drawn on it
    drawn = np.asarray(Image.open(annotated).convert("RGB"))
    assert drawn.shape == (320, 640, 3)
    original = np.asarray(Image.open(files["two"]).convert("RGB")).astype(int)
    assert np.abs(drawn.astype(int) - original).mean() > 1.0
    top = max(faces[0]["expression"], key=faces[0]["expression"].get)
    assert read_json(label)["label"] == top
    assert "2 faces found" in summary
    assert [f["face"] for f in faces] == [1, 2]
    au_spec = json.loads(read_json(aus_plot)["plot"])
    assert "AU12 · lip corner puller" in json.dumps(au_spec, ensure_ascii=False)
    va_spec = json.dumps(json.loads(read_json(va_plot)["plot"]))
    assert "Face 1" in va_spec and "Face 2" in va_spec


def test_select_face_shows_that_faces_numbers(server, files):
    _, client = server
    *_, result = client.predict(handle_file(str(files["two"])), api_name="/predict_image")
    result = read_json(result)
    label, aus_plot, _ = client.predict("Face 2", result, api_name="/select_face")  # a new session: any name
    second = result["faces"][1]["expression"]
    label = read_json(label)
    assert label["label"] == max(second, key=second.get)
    confidences = {c["label"]: c["confidence"] for c in label["confidences"]}
    assert confidences == pytest.approx(second, abs=1e-6)
    assert "Face 2" in read_json(aus_plot)["plot"]


def test_image_without_a_face_says_so(server, files):
    _, client = server
    annotated, summary, _label, _, _, result = client.predict(
        handle_file(str(files["none"])), api_name="/predict_image")
    result = read_json(result)
    assert result["faces"] == []
    assert "No face" in result["message"]
    assert "No face found" in summary
    assert annotated is not None  # the input is still shown


@pytest.mark.parametrize("name, expected", [
    ("text", "not an image file"),
    ("truncated", "truncated"),
    ("huge", "exceeds the limit"),
])
def test_bad_images_give_readable_errors_and_the_app_keeps_serving(server, files, name, expected):
    _, client = server
    with pytest.raises(AppError) as excinfo:
        client.predict(handle_file(str(files[name])), api_name="/predict_image")
    message = str(excinfo.value)
    assert expected in message
    assert files[name].name in message and "/tmp" not in message  # named as the user knows it
    *_, result = client.predict(handle_file(str(files["one"])), api_name="/predict_image")
    assert len(read_json(result)["faces"]) == 1


def test_uploads_over_the_size_limit_are_refused(server, tmp_path):
    _, client = server
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff\xd8" + bytes(3_000_000))
    with pytest.raises(Exception, match="maximum file size"):
        client.predict(handle_file(str(big)), api_name="/predict_image")


# ------------------------------------------------------------------ video endpoint

def test_predict_video_gives_csv_annotated_h264_and_timelines(server, files):
    _, client = server
    start = time.perf_counter()
    outputs = client.predict(handle_file(str(files["video"])), 1, 3, api_name="/predict_video")
    assert not any(isinstance(o, dict) and "__type__" in o for o in outputs)
    video, csv_path, summary, va_plot, expr_plot = outputs
    print(f"\n/predict_video round trip (25 frames): {time.perf_counter() - start:.2f} s")
    table = pd.read_csv(csv_path)
    assert len(table) == 25 and table["frame"].tolist() == list(range(25))
    assert table["track_id"].nunique() == 1
    assert {"time_s", "x1", "y1", "x2", "y2", "valence", "arousal", "expression"} <= set(table.columns)
    assert [f"expr_{label}" for label in ABAW8.labels] == [c for c in table.columns if c.startswith("expr_")]
    assert set(AU_NAMES) <= set(table.columns)
    assert table["time_s"].is_monotonic_increasing and table["time_s"].iloc[-1] == pytest.approx(2.4, abs=0.05)
    assert table["x1"].iloc[-1] > table["x1"].iloc[0] + 100  # the box follows the moving face
    path = video["video"] if isinstance(video, dict) else video
    info = probe_video(path)
    assert info.codec == "h264" and info.frame_count == 25
    assert "1 face track" in summary and "every frame" in summary
    assert "Face #1" in read_json(va_plot)["plot"] and "Happiness" in read_json(expr_plot)["plot"]


def test_every_kth_frame_option(server, files):
    _, client = server
    _, csv_path, summary, *_ = client.predict(handle_file(str(files["video"])), 5, 1, api_name="/predict_video")
    assert pd.read_csv(csv_path)["frame"].tolist() == [0, 5, 10, 15, 20]
    assert "every 5th frame" in summary and "no smoothing" in summary


def test_each_face_track_gets_its_own_timelines(server, files, tmp_path):
    _, client = server
    face = astronaut(150)
    frames = []
    for _ in range(6):
        frame = np.full((180, 400, 3), 50, np.uint8)
        frame[15:165, 10:160], frame[15:165, 240:390] = face, face[:, ::-1]
        frames.append(frame)
    two = tmp_path / "two.mp4"
    write_video_frames(two, frames, fps=5)
    _, csv_path, summary, va_plot, _ = client.predict(handle_file(str(two)), 1, 1, api_name="/predict_video")
    assert "2 face tracks" in summary
    assert "Face #1" in read_json(va_plot)["plot"]
    va_plot, expr_plot = client.predict("Face #2", handle_file(csv_path), api_name="/select_track")
    assert "Face #2" in read_json(va_plot)["plot"] and "Face #2" in read_json(expr_plot)["plot"]
    table = pd.read_csv(csv_path)
    second = table[table["track_id"] == 2]
    assert len(second) == 6 and (second["x1"] > 200).all()


def test_bad_videos_give_readable_errors(server, files, monkeypatch):
    _, client = server
    with pytest.raises(AppError, match="clip.mp4: not a readable video"):
        client.predict(handle_file(str(files["fake_video"])), api_name="/predict_video")
    with pytest.raises(AppError, match="No face was found in blank.mp4"):
        client.predict(handle_file(str(files["blank_video"])), api_name="/predict_video")
    monkeypatch.setattr(demo_app, "MAX_VIDEO_SECONDS", 1.0)
    with pytest.raises(AppError, match="up to 1 s"):
        client.predict(handle_file(str(files["video"])), api_name="/predict_video")
    monkeypatch.undo()
    _, csv_path, *_ = client.predict(handle_file(str(files["video"])), 5, 1, api_name="/predict_video")
    assert len(pd.read_csv(csv_path)) == 5


@pytest.mark.parametrize("name", ["cut80_phone.mp4", "cut50_index_last.mp4", "cut80_clip.avi"])
def test_a_truncated_video_gets_a_message_naming_the_missing_share(server, tmp_path, capfd, name):
    """It used to be analysed as far as it went, with no word about the frames that were missing."""
    _, client = server
    with pytest.raises(AppError, match=rf"{re.escape(name)}: truncated (file|video)\b.*\d+% (of the file is )?missing"):
        client.predict(handle_file(str(truncated_videos(tmp_path)[name])), 1, 1, api_name="/predict_video")
    assert "Traceback" not in capfd.readouterr().err


def test_an_animated_image_says_first_frame_of_n_and_the_video_tab_reads_every_frame(server, tmp_path, caplog):
    """An animated GIF or WebP was cut to its first frame without a word."""
    caplog.set_level("INFO", logger="affectmodel.demo")  # demo.app's main() logs at INFO
    _, client = server
    for suffix, path in animated_images(tmp_path).items():
        _, summary, *_, result = client.predict(handle_file(str(path)), api_name="/predict_image")
        note = "First frame of 8 analysed (an animated image); the Video tab analyses every frame."
        assert read_json(result)["message"] == note and note in summary and len(read_json(result)["faces"]) == 1
        _, csv_path, *_ = client.predict(handle_file(str(path)), 1, 1, api_name="/predict_video")
        assert sorted(pd.read_csv(csv_path)["frame"]) == list(range(8)), suffix
    logged = [r.getMessage() for r in caplog.records if r.name == "affectmodel.demo"]
    assert logged.count("predict_image on animated.gif: first frame of 8 analysed") == 1


def test_full_queue_answers_busy(server, files):
    """queue_size=1: one video runs, one waits, further requests are refused, not piled up."""
    _, client = server
    jobs = [client.submit(handle_file(str(files["video"])), 1, 1, api_name="/predict_video") for _ in range(4)]
    outcomes = []
    for job in jobs:
        try:
            job.result(timeout=120)
            outcomes.append("ok")
        except Exception as e:  # noqa: BLE001 - the refusal type is gradio_client's business
            outcomes.append("busy" if "full" in str(e).lower() else f"error: {e}")
    assert outcomes.count("ok") >= 1 and outcomes.count("busy") >= 1, outcomes
    assert all(o in ("ok", "busy") for o in outcomes), outcomes


# ------------------------------------------------------------------ webcam, page, configuration

def test_webcam_frame_endpoint_updates_label_and_charts(server):
    demo, _ = server
    handler = next(f.fn for f in demo.fns.values() if f.api_name == "predict_webcam_frame")
    label, aus, va, status = handler(astronaut(320))
    assert set(label) == set(ABAW8.labels)
    assert "per frame" in status
    assert aus is not None and va is not None
    _, _, _, status = handler(np.zeros((240, 320, 3), np.uint8))
    assert status == "No face in view."


def test_synthetic_model_is_flagged_on_the_first_screen_and_in_about(server):
    demo, _ = server
    html = [b.value for b in demo.blocks.values() if isinstance(b, gr.HTML)]
    assert any("not meaningful" in str(v) for v in html)
    about = " ".join(str(b.value) for b in demo.blocks.values() if isinstance(b, gr.Markdown))
    assert "synthetic-affect" in about and "P_MTL" in about and "lip corner puller" in about
    assert "decisions about people" in about


def test_api_names_and_concurrency(server):
    demo, client = server
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/predict_image", "/predict_video", "/select_face", "/select_track",
            "/predict_webcam_frame"} <= set(endpoints)
    limits = {f.api_name: f.concurrency_limit for f in demo.fns.values()}
    assert limits["predict_image"] == demo_app.CONCURRENCY["image"]
    assert limits["predict_video"] == 1


def test_api_has_no_auto_generated_names(server):
    _, client = server
    api = client.view_api(print_info=False, return_format="dict")
    for name, endpoint in api["named_endpoints"].items():
        for item in endpoint["parameters"] + endpoint["returns"]:
            label = item.get("parameter_name") or item.get("label") or ""
            assert label and not label.startswith("value_"), (name, item)
    returns = [r["label"] for r in api["named_endpoints"]["/predict_image"]["returns"]]
    assert returns[-1] == "Predictions"
    text = client.view_api(print_info=False, return_format="str")
    assert "value_" not in text
    assert "-> (detected_faces, summary, expression, action_units, valence_and_arousal, predictions)" in text
    # no internal class names, no empty Literal[] types; whole numbers typed as int
    assert "Literal[]" not in text and "mixin" not in text.lower() and "Choice" not in text
    video = api["named_endpoints"]["/predict_video"]["parameters"]
    assert [(p["parameter_name"], p["python_type"]["type"]) for p in video[1:]] == [
        ("every", "int"), ("smoothing_window", "int")]
    face = api["named_endpoints"]["/select_face"]["parameters"][0]
    assert face["python_type"]["type"] == "str" and "Face 1" in json.dumps(face)
    assert face["component"] == "Radio"


def test_predictions_follow_the_documented_schema(server, files):
    jsonschema = pytest.importorskip("jsonschema")
    demo, client = server
    *_, result = client.predict(handle_file(str(files["two"])), api_name="/predict_image")
    jsonschema.validate(read_json(result), demo_app.PREDICTIONS_SCHEMA)
    about = " ".join(str(b.value) for b in demo.blocks.values() if isinstance(b, gr.Markdown))
    assert 'api_name="/predict_image"' in about and 'api_name="/predict_video"' in about
    assert '"aus_active"' in about  # the schema is shown


def test_api_doc_shows_the_api_guide_of_the_about_tab():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "API.md").read_text(encoding="utf-8")
    assert json.dumps(demo_app.PREDICTIONS_SCHEMA, indent=1) in doc
    body = demo_app.API_GUIDE.split("\n", 1)[1].strip()
    assert body in doc


# ------------------------------------------------------------------ fuzzing the endpoints

def _encode(path: Path, frames: list[np.ndarray], codec: str, pix_fmt: str, size=(32, 32)) -> Path:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=10)
        stream.height, stream.width = frames[0].shape[:2] if frames else size
        stream.pix_fmt = pix_fmt
        if not frames:
            out.start_encoding()  # header only: a container with zero frames
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())
    return path


def _noise(height: int, width: int, n: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (height, width, 3), dtype=np.uint8) for _ in range(n)]


@pytest.fixture(scope="module")
def odd_files(tmp_path_factory) -> dict[str, Path]:
    """Files of odd sizes, codecs and containers (a few KB each)."""
    root = tmp_path_factory.mktemp("odd")
    good = _encode(root / "good.mp4", _noise(64, 64, 12), "mpeg4", "yuv420p")
    data = good.read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 3])
    (root / "header_only.mp4").write_bytes(data[:64])
    (root / "empty.mp4").write_bytes(b"")
    (root / "empty.png").write_bytes(b"")
    (root / "random.jpg").write_bytes(bytes(range(256)) * 8)
    Image.new("RGB", (1, 1), (1, 2, 3)).save(root / "one.png")
    Image.new("L", (20000, 1), 128).save(root / "line.png")
    Image.new("L", (1, 20000), 128).save(root / "column.png")
    Image.new("RGB", (80, 60), (9, 9, 9)).save(root / "really_png.jpg", format="PNG")
    Image.new("RGBA", (50, 50), (0, 0, 0, 0)).save(root / "transparent.png")
    Image.new("I;16", (40, 30), 40000).save(root / "sixteen.png")
    Image.new("CMYK", (40, 30)).save(root / "cmyk.jpg")
    gif = [Image.new("P", (30, 30), i) for i in range(3)]
    gif[0].save(root / "anim.gif", save_all=True, append_images=gif[1:])
    Image.new("RGB", (64, 64), (200, 10, 10)).save(root / "picture.mp4", format="PNG")
    return {
        "one_px_wide.mp4": _encode(root / "one_px_wide.mp4", _noise(48, 1), "libx264", "yuv444p"),
        "one_by_one.avi": _encode(root / "one_by_one.avi", _noise(1, 1), "mjpeg", "yuvj444p"),
        "two_px_wide.mp4": _encode(root / "two_px_wide.mp4", _noise(64, 2), "libx264", "yuv444p"),
        "zero_frames.mp4": _encode(root / "zero_frames.mp4", [], "mpeg4", "yuv420p"),
        "mjpeg.avi": _encode(root / "mjpeg.avi", _noise(40, 56, 4), "mjpeg", "yuvj420p"),
        **{p.name: p for p in root.iterdir() if p.name != "good.mp4"},
        "good.mp4": good,
    }


VIDEO_FUZZ = {  # file -> what the answer must say (a face-free file that reads fine: "No face")
    "one_px_wide.mp4": "1x48 pixels: too small", "one_by_one.avi": "1x1 pixels: too small",
    "two_px_wide.mp4": "2x64 pixels: too small", "zero_frames.mp4": "no video stream",
    "truncated.mp4": "truncated file", "header_only.mp4": "truncated file",
    "empty.mp4": "empty file", "mjpeg.avi": "No face", "picture.mp4": "No face",
    "random.jpg": "not a readable video",
}
IMAGE_FUZZ = {  # file -> error text, or None: a readable image without a face
    "one.png": None, "line.png": None, "column.png": None, "really_png.jpg": None, "transparent.png": None,
    "sixteen.png": None, "cmyk.jpg": None, "anim.gif": None, "empty.png": "empty file",
    "random.jpg": "not an image file", "good.mp4": "not an image file",
}


def test_fuzzed_files_get_a_message_never_a_traceback(server, odd_files, capfd):
    _, client = server
    answers = {}
    for name, expected in VIDEO_FUZZ.items():
        with pytest.raises(AppError) as excinfo:
            client.predict(handle_file(str(odd_files[name])), api_name="/predict_video")
        answers["video " + name] = str(excinfo.value)
        assert expected in str(excinfo.value), (name, str(excinfo.value))
    for name, expected in IMAGE_FUZZ.items():
        if expected is None:
            *_, result = client.predict(handle_file(str(odd_files[name])), api_name="/predict_image")
            assert read_json(result)["faces"] == [] and "No face" in read_json(result)["message"], name
        else:
            with pytest.raises(AppError, match=expected):
                client.predict(handle_file(str(odd_files[name])), api_name="/predict_image")
    for args, endpoint, expected in [
            (("Face 9", {"faces": []}), "/select_face", "'Face 9' is not a face of these predictions"),
            (("Face #1", handle_file(str(odd_files["one.png"]))), "/select_track", "one.png is not a predictions CSV"),
            ((handle_file(str(odd_files["good.mp4"])), -5, 1e9), "/predict_video", "minimum value"),
    ]:
        try:
            client.predict(*args, api_name=endpoint)
        except AppError as e:
            assert re.search(expected, str(e)) and "upstream" not in str(e), (endpoint, str(e))
    assert all("upstream" not in a and "/tmp" not in a for a in answers.values()), answers
    log = capfd.readouterr()
    assert "Traceback" not in log.out + log.err
    *_, result = client.predict(handle_file(str(files_one_face(odd_files))), api_name="/predict_image")
    assert len(read_json(result)["faces"]) == 1  # and the app keeps serving


def files_one_face(odd_files) -> Path:
    path = odd_files["good.mp4"].with_name("face.jpg")
    Image.fromarray(astronaut(320)).save(path)
    return path


# ------------------------------------------------------------------ URL inputs (loopback only)

@pytest.mark.parametrize("url, reason", [
    ("http://127.0.0.1:9/face.jpg", "127.0.0.1 is a local or private address, which the demo never fetches from"),
    ("http://localhost:9/face.jpg", "localhost is this server itself, which the demo never fetches from"),
    ("http://[::1]:9/clip.mp4", "::1 is a local or private address"),
])
def test_a_url_that_cannot_be_fetched_gets_a_message_and_no_traceback(server, files, capfd, caplog, url, reason):
    """It gave Gradio's generic "The upstream Gradio app has raised an exception" and logged a
    traceback for each call. Nothing leaves this machine: these addresses are refused before any
    network call (Gradio's own check would first ask a public DNS service)."""
    _, client = server
    for args, endpoint in (((handle_file(url),), "/predict_image"), ((handle_file(url), 1, 1), "/predict_video"),
                           ((None, handle_file(url)), "/select_track")):
        with pytest.raises(AppError) as excinfo:
            client.predict(*args, api_name=endpoint)
        assert str(excinfo.value).startswith(f"Could not fetch {url}: {reason}"), (endpoint, str(excinfo.value))
    log = capfd.readouterr()
    assert "Traceback" not in log.out + log.err
    logged = [r for r in caplog.records if r.name == "affectmodel.demo"]
    assert len(logged) == 3 and all(r.getMessage().startswith(f"URL input not fetched: {url}: {reason}")
                                    and r.exc_info is None for r in logged)  # one line per call
    *_, result = client.predict(handle_file(str(files["one"])), api_name="/predict_image")
    assert len(read_json(result)["faces"]) == 1  # and the app keeps serving


@pytest.fixture
def web_files(tmp_path):
    """A plain HTTP server on 127.0.0.1 serving a face photo, a file over the test server's 2 MB
    limit, and nothing else (404)."""
    import http.server
    import threading

    Image.fromarray(astronaut(320)).save(tmp_path / "face.jpg")
    (tmp_path / "big.jpg").write_bytes(b"\xff" * 3_000_000)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_fetched_urls_keep_the_upload_limit_and_name_http_errors(server, web_files, monkeypatch, capfd):
    """Gradio's own download with its request-forgery check switched off for this loopback server
    (its transport hook, and our address check): a URL that works is analysed; a 404, a closed port
    and a file over the upload limit each get their reason."""
    import httpx
    from gradio import processing_utils

    monkeypatch.setattr(processing_utils, "async_transport", httpx.AsyncHTTPTransport())
    monkeypatch.setattr(demo_app, "_refused_address", lambda host: None)
    _, client = server
    *_, result = client.predict(handle_file(f"{web_files}/face.jpg"), api_name="/predict_image")
    assert len(read_json(result)["faces"]) == 1
    for url, reason in [(f"{web_files}/missing.jpg", "the server answered HTTP 404"),
                        (f"{web_files}/big.jpg", "the file is 3.0 MB, over this demo's limit of 2 MB for any file"),
                        (f"http://127.0.0.1:{free_port()}/face.jpg", "could not connect (")]:
        with pytest.raises(AppError) as excinfo:
            client.predict(handle_file(url), api_name="/predict_image")
        assert str(excinfo.value).startswith(f"Could not fetch {url}: {reason}"), str(excinfo.value)
    log = capfd.readouterr()
    assert "Traceback" not in log.out + log.err


def test_unexpected_failures_become_messages(server, files, monkeypatch, capfd):
    _, client = server

    def broken(*args, **kwargs):
        raise RuntimeError("decoder exploded")

    monkeypatch.setattr(demo_app, "predict_video", broken)
    with pytest.raises(AppError, match="Could not analyse face.mp4: decoder exploded"):
        client.predict(handle_file(str(files["video"])), 5, 1, api_name="/predict_video")
    assert "Traceback" not in capfd.readouterr().err


# ------------------------------------------------------------------ a model that cannot be loaded

@pytest.mark.parametrize("kind", ["unreachable_hub_id", "broken_folder"])
def test_a_model_that_cannot_be_loaded_leaves_the_app_up_with_a_message(kind, tmp_path, monkeypatch, files):
    if kind == "unreachable_hub_id":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no network here either way; offline fails at once
        from huggingface_hub import constants
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
        source, why = "nobody/unreachable-model", "not in the local cache"
    else:
        source = str(make_run_folder(tmp_path))
        (Path(source) / "model" / "model.safetensors").write_bytes(b"not safetensors")
        why = "model.safetensors"
    monkeypatch.setenv(default_model.MODEL_ENV, source)
    loaded = demo_app.try_load_demo_model(None)
    assert isinstance(loaded, demo_app.ModelFailure) and why in loaded.reason
    line = demo_app.launch_line(loaded)
    assert "NO MODEL" in line and "AFFECT_MODEL" in line and source in line and "\n" not in line
    demo = demo_app.build_demo(loaded)
    html = " ".join(str(b.value) for b in demo.blocks.values() if isinstance(b, gr.HTML))
    assert "No model loaded" in html and "AFFECT_MODEL" in html
    _, url, _ = demo.launch(prevent_thread_lock=True, server_port=free_port(), quiet=True,
                            **demo_app.launch_options())
    try:
        client = Client(url, verbose=False)
        with pytest.raises(AppError, match="AFFECT_MODEL") as excinfo:
            client.predict(handle_file(str(files["one"])), api_name="/predict_image")
        assert source in str(excinfo.value)
        with pytest.raises(AppError, match="could not be loaded"):
            client.predict(handle_file(str(files["video"])), api_name="/predict_video")
        assert "value_" not in client.view_api(print_info=False, return_format="str")
        client.close()
    finally:
        demo.close()


def test_main_keeps_the_app_up_when_the_environment_names_a_bad_model(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv(default_model.MODEL_ENV, str(tmp_path / "nowhere"))
    launched = {}

    def fake_launch(self, **kwargs):
        launched.update(kwargs)
        return None, f"http://127.0.0.1:{kwargs['server_port']}/", None

    monkeypatch.setattr(gr.Blocks, "launch", fake_launch)
    monkeypatch.setattr(gr.Blocks, "block_thread", lambda self: None)
    assert demo_app.main(["--port", "7999"]) == 0
    assert launched["server_port"] == 7999
    out = capsys.readouterr().out
    assert out.count("NO MODEL") == 1 and "nowhere" in out
    assert "affectmodel demo: open http://127.0.0.1:7999/" in out and launched["quiet"] is True


def test_real_training_data_shows_no_banner(tmp_path):
    info = {"synthetic": False, "dataset": "aff-wild2"}
    assert demo_app.synthetic_banner(info) == ""
    assert "not meaningful" in demo_app.synthetic_banner({"synthetic": True, "dataset": "synthetic-affect"})


def test_main_rejects_a_missing_model_in_one_line(capsys, tmp_path):
    assert demo_app.main(["--model", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "nowhere" in err and "\n" not in err


def test_the_engine_comes_from_the_option_then_the_environment_and_is_shown(monkeypatch, exported_model, tmp_path,
                                                                           capsys):
    monkeypatch.delenv("AFFECT_ENGINE", raising=False)
    auto = demo_app.load_demo_model(str(exported_model))
    assert auto.info["engine"] == "onnx" and "(engine onnx)" in demo_app.launch_line(auto)
    assert "ONNX Runtime, `model.onnx`" in demo_app.about_markdown(auto.info, auto.predictor)
    monkeypatch.setenv("AFFECT_ENGINE", "onnx-int8")
    int8 = demo_app.load_demo_model(str(exported_model))
    assert int8.predictor.engine_name == "onnx-int8"
    assert "int8 `model.int8.onnx`" in demo_app.about_markdown(int8.info, int8.predictor)
    assert demo_app.load_demo_model(str(exported_model), engine="torch").info["engine"] == "torch"
    # asked for by name and impossible: one line at the command line, exit 2 (nothing is launched)
    monkeypatch.delenv("AFFECT_ENGINE")
    plain = tmp_path / "plain"
    plain.mkdir()
    for name in ("config.json", "model.safetensors"):
        (plain / name).write_bytes((exported_model / name).read_bytes())
    assert demo_app.main(["--model", str(plain), "--engine", "onnx"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "has no model.onnx" in err and "\n" not in err


def test_binds_localhost_unless_on_a_space(monkeypatch):
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    assert demo_app.default_host() == "127.0.0.1"
    assert demo_app.parse_args([]).share is False
    monkeypatch.setenv("SPACE_ID", "someone/affect-demo")
    assert demo_app.default_host() == "0.0.0.0"


# ------------------------------------------------------------------ charts

def test_au_chart_marks_active_units_against_their_thresholds():
    spec = charts.au_chart({"AU1": 0.7, "AU12": 0.2}, {"AU1": 0.8, "AU12": 0.1}).to_dict()
    rows = next(iter(spec["datasets"].values()))
    states = {r["au"].split(" ")[0]: (r["state"], r["threshold"]) for r in rows}
    assert states == {"AU1": ("inactive", 0.8), "AU12": ("active", 0.1)}
    assert [layer["mark"]["type"] for layer in spec["layer"]] == ["bar", "tick"]


def test_circumplex_has_unit_circle_named_quadrants_and_points():
    spec = charts.circumplex_chart([("Face 1", 0.5, -0.25)]).to_dict()
    data = list(spec["datasets"].values())
    circle = max(data, key=len)
    assert all(math.isclose(r["valence"] ** 2 + r["arousal"] ** 2, 1.0, rel_tol=1e-9) for r in circle)
    names = {r["name"] for d in data for r in d if "name" in r}
    assert names == {q[2] for q in charts.QUADRANTS}
    assert [{"face": "Face 1", "valence": 0.5, "arousal": -0.25, "label_valence": 0.5, "label_arousal": -0.25}] in data
    text = json.dumps(spec)
    assert "valence" in text and "arousal" in text and "pleasant" in text and "activated" in text


def test_every_chart_is_titled_before_it_holds_a_result(server):
    demo, _ = server
    titles = []
    for block in demo.blocks.values():
        if isinstance(block, gr.Plot):
            title = json.loads(block.value["plot"])["title"]
            titles.append(title["text"] if isinstance(title, dict) else title)
    assert len(titles) == 6 and all(titles)
    assert {"Action units", "Valence / arousal", "Valence and arousal over time"} <= set(titles)


def test_circumplex_names_of_faces_at_one_point_do_not_overlap():
    points = [("Face 1", 0.3, 0.3), ("Face 2", 0.3, 0.3), ("Face 3", 0.31, 0.29), ("Face 4", -0.5, 0.5)]
    spec = charts.circumplex_chart(points).to_dict()
    rows = next(d for d in spec["datasets"].values() if d and "label_arousal" in d[0])
    labels = {r["face"]: (r["label_valence"], r["label_arousal"]) for r in rows}
    assert labels["Face 4"] == (-0.5, 0.5) and labels["Face 1"] == (0.3, 0.3)  # alone or first: at the point
    for a, b in itertools.combinations(labels.values(), 2):
        assert abs(a[0] - b[0]) >= charts.LABEL_WIDTH or abs(a[1] - b[1]) >= charts.LABEL_HEIGHT - 1e-9
    assert {(r["valence"], r["arousal"]) for r in rows} == {(v, a) for _, v, a in points}  # points stay put


# ------------------------------------------------------------------ default model

def test_model_source_prefers_argument_then_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(default_model.MODEL_ENV, "someone/affect-model")
    assert default_model.resolve_model_source("runs/x") == "runs/x"
    assert default_model.resolve_model_source(None) == "someone/affect-model"


def test_model_choice_says_where_the_model_lives_and_whether_it_was_built(monkeypatch, tmp_path):
    run = make_run_folder(tmp_path)
    monkeypatch.delenv(default_model.MODEL_ENV, raising=False)
    monkeypatch.setenv(default_model.DEFAULT_DIR_ENV, str(run))
    choice = default_model.choose_model(None)
    assert choice.origin == "default" and choice.built is False
    assert f"reused) in {run}" in choice.describe() and "--rebuild" in choice.describe()
    loaded = demo_app.try_load_demo_model(None)
    assert str(run) in demo_app.launch_line(loaded) and "reused" in demo_app.launch_line(loaded)
    monkeypatch.setenv(default_model.MODEL_ENV, str(run))
    assert "(from $AFFECT_MODEL)" in default_model.choose_model(None).describe()


def test_webcam_reads_a_causal_temporal_model_over_the_last_frames_of_the_face(tmp_path):
    torch.manual_seed(0)
    model = AffectModel(ModelConfig(input_size=64, temporal="gru", window=4, causal=True))
    assert model.temporal is not None
    torch.nn.init.normal_(model.temporal.out.weight, std=0.05)
    demo = demo_app.build_demo(str(model.save(tmp_path / "causal")))
    handler = next(f.fn for f in demo.fns.values() if f.api_name == "predict_webcam_frame")
    assert handler is not None
    face = astronaut(320)
    darker = (face * 0.6).astype(np.uint8)  # another frame of the face (darker), in the same place
    assert "over the last 4 frames" in handler(face)[3]
    after_face = handler(darker)  # window: face, face, face, darker
    assert handler(np.zeros((240, 320, 3), np.uint8))[3] == "No face in view."  # the window starts afresh
    alone = handler(darker)  # window: darker only
    assert after_face[0] != alone[0]  # the same frame reads differently after other frames
    assert handler(darker)[0] == alone[0]  # a window of one repeated frame is that frame's window
