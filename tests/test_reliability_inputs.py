"""Bad input at every entry point: the predictor, the predict command, the demo endpoints, the data
readers and the score command (issue 10; outcomes listed in docs/RELIABILITY.md).

Every case gets either a specific, readable error that names the file (annotation errors also name
the line) or a correct result. Nothing reaches a user as a traceback: the commands exit with status
2 and one line on stderr; the demo answers with a message, logs no traceback and keeps serving.
All media are made here, small; the model is a small random one (outputs meaningless, schema real).
"""
from __future__ import annotations

import io
import json
import math
import resource
import struct
import subprocess
import sys
import time
import zlib
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from affwild2_fixtures import AU_HEADER, EXPR_HEADER, au_line, make_miniature, write_images, write_mtl, write_task_file
from media import astronaut, face_tile, faces_image, moving_face_frames, small_model_dir, write_video
from net import free_port
from PIL import Image, ImageFile

from affectmodel.cli import main as cli_main
from affectmodel.data.affwild2 import load_affwild2
from affectmodel.data.annotations import AnnotationError, read_mtl_csv, read_task_file, read_task_folder
from affectmodel.inference import (
    ImageLoadError,
    Predictor,
    VideoLoadError,
    iter_video_predictions,
    load_image,
    predict_video,
    probe_video,
)
from affectmodel.tasks import AU_NAMES

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]


# ------------------------------------------------------------------ media

def _encode(array_or_image, fmt: str, **kwargs) -> bytes:
    image = array_or_image if isinstance(array_or_image, Image.Image) else Image.fromarray(array_or_image)
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _damage(data: bytes, start_fraction: float, length: int) -> bytes:
    damaged = bytearray(data)
    start = int(len(damaged) * start_fraction)
    damaged[start:start + length] = bytes(length)
    return bytes(damaged)


def png_bomb(side: int) -> bytes:
    """A valid ``side x side`` bilevel PNG of zeros, compressed row block by row block (encoding it
    with Pillow would first allocate the whole image)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = bytes(1 + (side + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    block = row * 1000
    idat = b"".join(compressor.compress(block) for _ in range(side // 1000))
    idat += compressor.compress(row * (side % 1000)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def face_grid(rows: int = 10, cols: int = 12, height: int = 80, gap: int = 6) -> np.ndarray:
    """``rows x cols`` small face crops on grey: a crowd photo's worth of faces."""
    tile = face_tile(height)
    th, tw = tile.shape[:2]
    canvas = np.full((rows * (th + gap) + gap, cols * (tw + gap) + gap, 3), 128, np.uint8)
    for r in range(rows):
        for c in range(cols):
            y, x = gap + r * (th + gap), gap + c * (tw + gap)
            canvas[y:y + th, x:x + tw] = tile
    return canvas


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad_images")
    face = astronaut()
    jpeg, png = _encode(face, "JPEG", quality=90), _encode(face, "PNG")
    gray16 = np.asarray(Image.fromarray(face).convert("L")).astype(np.uint16) * 257
    files = {
        "empty.jpg": b"",
        "truncated.jpg": jpeg[: len(jpeg) // 2],
        "truncated.png": png[: len(png) // 2],
        "corrupt_data.png": _damage(png, 0.5, 2000),        # zeros inside the compressed stream
        "corrupt_header.jpg": _damage(jpeg, 0.0, 200),      # no JPEG signature left
        "corrupt_middle.jpg": _damage(jpeg, 0.5, 2000),     # JPEG has no checksum: decodes, damaged
        "text_renamed.jpg": b"name,score\nalice,3\n",
        "text_renamed.png": b"just some words\n",
        # 30000 x 30000 bilevel: a 0.1 MB file that would decode to 900 MB
        "bomb.png": png_bomb(30000),
        # 8000 x 8000: under Pillow's own bomb limit, over affectmodel's 50 MP
        "over_pixel_limit.png": _encode(Image.new("L", (8000, 8000)), "PNG"),
        "one_pixel.png": _encode(np.full((1, 1, 3), 200, np.uint8), "PNG"),
        "line_1x20000.png": _encode(np.zeros((1, 20000, 3), np.uint8), "PNG"),
        "line_20000x1.png": _encode(np.zeros((20000, 1, 3), np.uint8), "PNG"),
        "face_strip_30_faces.png": _encode(faces_image(30, height=72)[0], "PNG"),  # about 21:1
        "gray_16bit.png": _encode(Image.fromarray(gray16), "PNG"),
        "cmyk.jpg": _encode(Image.fromarray(face).convert("CMYK"), "JPEG"),
        "grid_120_faces.jpg": _encode(face_grid(), "JPEG", quality=92),
        "no_face.png": _encode(np.tile(np.linspace(0, 255, 160, dtype=np.uint8)[None, :, None], (120, 1, 3)), "PNG"),
    }
    out = {}
    for name, data in files.items():
        (root / name).write_bytes(data)
        out[name] = root / name
    # 16 bits per channel RGB (Pillow cannot write it; OpenCV can)
    cv2.imwrite(str(root / "rgb_16bit.png"), face[:, :, ::-1].astype(np.uint16) * 257)
    out["rgb_16bit.png"] = root / "rgb_16bit.png"
    return out


# name -> expected message (regex) for files that must be refused
IMAGE_ERRORS = {
    "empty.jpg": "empty file",
    "truncated.jpg": "truncated image",
    "truncated.png": "truncated image",
    "corrupt_data.png": "corrupt image data",
    "corrupt_header.jpg": "not an image file",
    "text_renamed.jpg": "not an image file",
    "text_renamed.png": "not an image file",
    "bomb.png": "too large to decode safely",
    "over_pixel_limit.png": "exceeds the limit of 50,000,000",
}
# name -> number of faces expected (None: any number; the point is a result, not an error)
IMAGE_RESULTS = {
    "one_pixel.png": 0,
    "line_1x20000.png": 0,
    "line_20000x1.png": 0,
    "no_face.png": 0,
    "gray_16bit.png": 1,
    "rgb_16bit.png": 1,
    "cmyk.jpg": 1,
    "corrupt_middle.jpg": None,
    "face_strip_30_faces.png": 30,
}


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad_videos")
    clip = write_video(root / "clip.mp4", moving_face_frames(12), fps=10)
    data = clip.read_bytes()
    out = {"clip.mp4": clip}

    def put(name: str, content: bytes) -> None:
        (root / name).write_bytes(content)
        out[name] = root / name

    put("empty.mp4", b"")
    put("text_renamed.mp4", b"this is a text file\n" * 10)
    put("truncated.mp4", data[: len(data) // 2])
    put("corrupt_header.mp4", _damage(data, 0.0, 64))
    put("corrupt_middle.mp4", _damage(data, 0.5, 300))  # H.264 data zeroed: the decoder conceals it
    put("jpeg_renamed.mp4", (REPO / "demo" / "examples" / "face_crop.jpg").read_bytes()
        if (REPO / "demo" / "examples" / "face_crop.jpg").is_file() else _encode(astronaut(), "JPEG"))
    # zero frames: containers that hold a video stream and no frame at all
    for name, fmt, codec in (("zero_frames.avi", "avi", "mpeg4"), ("zero_frames.mkv", "matroska", "libx264")):
        with av.open(str(root / name), "w", format=fmt) as container:
            stream = container.add_stream(codec, rate=10)
            stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
            container.start_encoding()
            for packet in stream.encode():
                container.mux(packet)
        out[name] = root / name
    # variable frame rate: gaps of 40, 100, 250 and 33 ms between frames
    out["vfr.mp4"] = root / "vfr.mp4"
    with av.open(str(out["vfr.mp4"]), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 320, 180, "yuv420p"
        stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
        pts = 0
        for i, frame in enumerate(moving_face_frames(8)):
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video_frame.pts, video_frame.time_base = pts, Fraction(1, 1000)
            for packet in stream.encode(video_frame):
                container.mux(packet)
            pts += VFR_GAPS_MS[i % 4]
        for packet in stream.encode():
            container.mux(packet)
    out["no_faces.mp4"] = write_video(root / "no_faces.mp4", [np.full((96, 128, 3), 90, np.uint8)] * 6, fps=10)
    return out


VFR_GAPS_MS = (40, 100, 250, 33)
VFR_TIMES = [0.0, 0.04, 0.14, 0.39, 0.423, 0.463, 0.563, 0.813]
VIDEO_ERRORS = {
    "empty.mp4": "empty file",
    "text_renamed.mp4": "not a readable video",
    "truncated.mp4": "truncated file",
    "corrupt_header.mp4": "not a readable video",
    "zero_frames.avi": "the video has no frames",
    "zero_frames.mkv": "not a readable video",
}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return small_model_dir(tmp_path_factory.mktemp("model"), input_size=64)


@pytest.fixture(scope="module")
def predictor(model_dir) -> Predictor:
    return Predictor(str(model_dir))


def _check_records(records: list[dict]) -> None:
    for r in records:
        x1, y1, x2, y2 = r["box"]
        assert x1 < x2 and y1 < y2
        assert math.isclose(sum(r["expression"].values()), 1.0, rel_tol=1e-4)
        assert list(r["aus"]) == list(AU_NAMES) and all(0 <= p <= 1 for p in r["aus"].values())
        assert -1 <= r["valence"] <= 1 and -1 <= r["arousal"] <= 1


# ------------------------------------------------------------------ predictor

@pytest.mark.parametrize("name", sorted(IMAGE_ERRORS))
def test_predictor_refuses_bad_images_with_a_reason(predictor, images, name):
    with pytest.raises(ImageLoadError, match=IMAGE_ERRORS[name]) as info:
        predictor.predict_image(images[name])
    assert str(images[name]) in str(info.value)


@pytest.mark.parametrize("name", sorted(IMAGE_RESULTS))
def test_predictor_reads_odd_images_correctly(predictor, images, name):
    records = predictor.predict_image(images[name])
    if IMAGE_RESULTS[name] is not None:
        assert len(records) == IMAGE_RESULTS[name]
    _check_records(records)


def test_odd_images_decode_to_the_right_size_and_content(images):
    face = astronaut().astype(int)
    assert load_image(images["one_pixel.png"]).tolist() == [[[200, 200, 200]]]
    assert load_image(images["line_1x20000.png"]).shape == (1, 20000, 3)
    assert load_image(images["line_20000x1.png"]).shape == (20000, 1, 3)
    gray = np.asarray(Image.fromarray(astronaut()).convert("L")).astype(int)
    assert np.abs(load_image(images["gray_16bit.png"])[:, :, 0] - gray).max() <= 1  # scaled, not clipped
    assert np.abs(load_image(images["rgb_16bit.png"]).astype(int) - face).max() <= 1
    assert np.abs(load_image(images["cmyk.jpg"]).astype(int) - face).mean() < 12
    assert load_image(images["corrupt_middle.jpg"]).shape == (512, 512, 3)


def test_decompression_bomb_is_refused_from_the_header_alone(images, monkeypatch):
    """No pixel is decoded: ImageFile.load (the decoder) is never called, and refusing takes
    milliseconds and no memory, although the file would expand to 900 MB."""
    decoded = []
    real_load = ImageFile.ImageFile.load

    def spy(self, *args, **kwargs):
        decoded.append(self.size)
        return real_load(self, *args, **kwargs)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for name in ("bomb.png", "over_pixel_limit.png"):
        with pytest.raises(ImageLoadError):
            load_image(images[name])
    assert decoded == []
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100 * 1024  # KiB: under 100 MB


@pytest.mark.parametrize("array, message", [
    (np.zeros((0, 0, 3), np.uint8), "unsupported image array shape"),
    (np.zeros((10, 10, 2), np.uint8), "unsupported image array shape"),
    (np.zeros((4, 4, 4, 3), np.uint8), "unsupported image array shape"),
    (np.array([["a", "b"]]), "unsupported image dtype"),
])
def test_bad_arrays_are_refused(predictor, array, message):
    with pytest.raises(ImageLoadError, match=message):
        predictor.predict_image(array)


def test_arrays_with_nan_inf_and_odd_dtypes_are_read(predictor):
    nan = np.full((48, 64, 3), np.nan, np.float32)
    nan[0, 0] = np.inf
    assert predictor.predict_image(nan) == []
    assert predictor.predict_image(np.ones((32, 32), bool)) == []
    records = predictor.predict_crops([np.zeros((1, 1, 3), np.uint8), np.full((3, 900, 3), 255, np.uint8)])
    assert len(records) == 2 and all("expression" in r for r in records)


@pytest.mark.slow
def test_a_crowd_of_120_faces_stays_bounded_in_time_and_memory(predictor, images):
    """Every face is analysed; memory grows by far less than the crops would need if the model
    saw them all at once (forward passes are chunked by batch_size)."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    records = predictor.predict_image(images["grid_120_faces.jpg"])
    seconds = time.perf_counter() - start
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    print(f"\n120-face grid: {len(records)} faces in {seconds:.2f} s, peak RSS +{grown_mb:.0f} MB")
    assert len(records) >= 110
    _check_records(records)
    assert seconds < 60 and grown_mb < 600
    centres = [(r["box"][0] + r["box"][2]) / 2 for r in records]
    assert centres == sorted(centres)  # left to right, as documented


# ------------------------------------------------------------------ videos

@pytest.mark.parametrize("name", sorted(VIDEO_ERRORS))
def test_bad_videos_raise_video_load_error(predictor, videos, name):
    with pytest.raises(VideoLoadError, match=VIDEO_ERRORS[name]) as info:
        predict_video(predictor, videos[name])
    assert str(videos[name]) in str(info.value)


def test_variable_frame_rate_keeps_true_timestamps(predictor, videos, tmp_path):
    rows = predict_video(predictor, videos["vfr.mp4"], annotate_to=tmp_path / "vfr-annotated.mp4")
    assert [r["frame"] for r in rows] == list(range(8))
    assert [r["time_s"] for r in rows] == pytest.approx(VFR_TIMES, abs=1e-3)
    assert probe_video(tmp_path / "vfr-annotated.mp4").frame_count == 8
    _check_records(rows)


def test_video_without_faces_and_damaged_or_odd_inputs_give_results(predictor, videos):
    assert predict_video(predictor, videos["no_faces.mp4"]) == []
    # damaged frame data: decoded with concealment (damaged pixels), every frame still reported
    frames = [fp.frame for fp in iter_video_predictions(predictor, videos["corrupt_middle.mp4"])]
    assert frames == list(range(12))
    # a JPEG named .mp4 is, for FFmpeg, a one-frame video: analysed, not an error
    rows = predict_video(predictor, videos["jpeg_renamed.mp4"])
    assert {r["frame"] for r in rows} <= {0}


# ------------------------------------------------------------------ predict command

def _run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli_main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.mark.parametrize("name", sorted(IMAGE_ERRORS))
def test_predict_command_bad_image_exits_2_with_one_line(capsys, model_dir, images, name):
    code, _, err = _run_cli(capsys, "predict", images[name], "--model", model_dir, "--no-progress")
    _assert_one_line_error(code, err, name)


@pytest.mark.parametrize("name", sorted(VIDEO_ERRORS))
def test_predict_command_bad_video_exits_2_with_one_line(capsys, model_dir, videos, name, tmp_path):
    code, _, err = _run_cli(capsys, "predict", videos[name], "--model", model_dir, "--no-progress",
                            "--out", tmp_path / "out.csv")
    _assert_one_line_error(code, err, name)
    assert not (tmp_path / "out.csv").exists()  # no half-written output
    assert [p.name for p in tmp_path.iterdir()] == []


def test_predict_command_reads_odd_inputs(capsys, model_dir, images, videos, tmp_path):
    out = tmp_path / "odd.json"
    inputs = [images[n] for n in ("one_pixel.png", "line_1x20000.png", "gray_16bit.png", "rgb_16bit.png",
                                  "cmyk.jpg", "corrupt_middle.jpg")] + [videos["vfr.mp4"], videos["no_faces.mp4"]]
    code, _, err = _run_cli(capsys, "predict", *inputs, "--model", model_dir, "--no-progress", "--out", out)
    assert code == 0, err
    results = json.loads(out.read_text())
    faces = {Path(r["source"]).name: len(r["faces"]) for r in results if "frame" not in r}
    assert faces["one_pixel.png"] == 0 and faces["gray_16bit.png"] == 1 and faces["cmyk.jpg"] == 1
    vfr = [r for r in results if Path(r["source"]).name == "vfr.mp4"]
    assert [r["time_s"] for r in vfr] == pytest.approx(VFR_TIMES, abs=1e-3)


def test_predict_command_skips_bad_files_inside_a_folder(capsys, model_dir, images, videos, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in ("empty.jpg", "truncated.png", "text_renamed.jpg", "bomb.png", "cmyk.jpg"):
        (folder / name).write_bytes(images[name].read_bytes())
    for name in ("text_renamed.mp4", "zero_frames.avi"):
        (folder / name).write_bytes(videos[name].read_bytes())
    out = tmp_path / "mixed.csv"
    code, _, err = _run_cli(capsys, "predict", folder, "--model", model_dir, "--no-progress", "--out", out)
    assert code == 0 and "Traceback" not in err
    assert "skipped 6 unreadable file(s)" in err
    assert out.read_text().count("cmyk.jpg") == 1


@pytest.mark.parametrize("where", ["existing folder", "under a file"])
def test_predict_command_unwritable_output_is_one_line(capsys, model_dir, images, tmp_path, where):
    out = tmp_path / "out.csv"
    if where == "existing folder":
        out.mkdir()
    else:
        out = images["cmyk.jpg"] / "out.csv"
    code, _, err = _run_cli(capsys, "predict", images["cmyk.jpg"], "--model", model_dir, "--no-progress",
                            "--out", out)
    _assert_one_line_error(code, err)


def test_predict_command_in_a_real_process_prints_no_traceback(model_dir, images):
    result = subprocess.run([sys.executable, "-m", "affectmodel", "predict", str(images["bomb.png"]),
                             "--model", str(model_dir), "--no-progress"],
                            capture_output=True, text=True, cwd=REPO, timeout=120, check=False)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "bomb.png" in result.stderr and "too large" in result.stderr


# ------------------------------------------------------------------ data readers

EXPR_BODY = ["0", "4", "-1", "6"]


@pytest.mark.parametrize("variant", ["plain", "crlf", "cr", "whitespace", "bom", "trailing blank lines"])
def test_task_files_tolerate_line_endings_and_stray_whitespace(tmp_path, variant):
    text = "\n".join([EXPR_HEADER, *EXPR_BODY]) + "\n"
    if variant == "crlf":
        text = text.replace("\n", "\r\n")
    elif variant == "cr":
        text = text.replace("\n", "\r")
    elif variant == "whitespace":
        text = " " + text.replace(",", " , ").replace("\n", " \t\n")
    elif variant == "bom":
        text = "\ufeff" + text
    elif variant == "trailing blank lines":
        text += "\n  \n\n"
    path = tmp_path / "video.txt"
    path.write_bytes(text.encode())
    assert read_task_file(path, "expr").values.tolist() == [0, 4, -1, 6]


@pytest.mark.parametrize("task, header, lines, line, reason", [
    ("expr", "Neutral,Happy,Sad", ["0"], 1, "wrong header for EXPR annotations"),
    ("expr", "", ["0"], 1, "wrong header"),
    ("au", "AU1,AU2", [au_line(0)], 1, "wrong header for AU annotations"),
    ("va", "arousal,valence", ["0.1,0.2"], 1, "wrong header for VA annotations"),
    ("expr", EXPR_HEADER, ["0", "nan"], 3, "expression value nan is not finite"),
    ("expr", EXPR_HEADER, ["inf"], 2, "expression value inf is not finite"),
    ("va", "valence,arousal", ["0.1,0.2", "0.3,-inf"], 3, "arousal value -inf is not finite"),
    ("va", "valence,arousal", ["NaN,0.2"], 2, "valence value nan is not finite"),
    ("au", AU_HEADER, [au_line(1), ",".join(["nan"] * 12)], 3, "not finite"),
    ("va", "valence,arousal", ["0.1;0.2"], 2, "expected 2 comma-separated values"),
    ("expr", EXPR_HEADER, ["0", "", "1"], 3, "empty line"),
    ("va", "valence,arousal", ["0.1,0.2", "0.3,"], 3, "empty value in column 2"),
])
def test_task_file_errors_name_file_and_line(tmp_path, task, header, lines, line, reason):
    path = tmp_path / "video.txt"
    path.write_text("\r\n".join([header, *lines]) + "\r\n")
    with pytest.raises(AnnotationError, match=reason) as info:
        read_task_file(path, task)
    assert info.value.line == line and str(info.value).startswith(f"{path}:{line}: ")


def test_nan_and_inf_lines_can_be_skipped_as_not_annotated(tmp_path):
    path = tmp_path / "video.txt"
    path.write_text("valence,arousal\n0.5,0.5\nnan,0.1\n0.2,inf\n-0.5,0.25\n")
    ann = read_task_file(path, "va", skip_bad_lines=True)
    assert ann.values.tolist() == [[0.5, 0.5], [-5, -5], [-5, -5], [-0.5, 0.25]]
    assert [m.split(": ", 1)[0] for m in ann.bad_lines] == [f"{path}:3", f"{path}:4"]


def test_a_folder_named_like_an_annotation_file_is_ignored(tmp_path):
    write_task_file(tmp_path, "newer", "expr", "train", "vidA", ["0", "1"])
    folder = tmp_path / "annotations" / "EXPR_Recognition_Challenge" / "Train_Set"
    (folder / "stray.txt").mkdir()
    assert list(read_task_folder(folder, "expr")) == ["vidA"]
    write_images(tmp_path, "vidA", [1, 2])
    assert len(load_affwild2(tmp_path, "train", tasks="expr")) == 2


MTL_ROW = "vid/00001.jpg,0.5,-0.25,4," + au_line(6)


@pytest.mark.parametrize("row, reason", [
    ("vid/00002.jpg,nan,0.1,4," + au_line(6), "valence value nan is not finite"),
    ("vid/00002.jpg,0.1,0.1,inf," + au_line(6), "expression value inf is not finite"),
    ("../../etc/passwd,0.1,0.1,4," + au_line(6), "escapes the image folder"),
    ("/etc/passwd,0.1,0.1,4," + au_line(6), "escapes the image folder"),
    ("C:\\Windows\\x.jpg,0.1,0.1,4," + au_line(6), "escapes the image folder"),
    ("vid\\..\\..\\x.jpg,0.1,0.1,4," + au_line(6), "escapes the image folder"),
    ("vid/00002.jpg,0.1,0.1,4", "expected 16 comma-separated values"),
])
def test_mtl_csv_errors_name_file_and_line(tmp_path, row, reason):
    path = write_mtl(tmp_path, "train", [MTL_ROW, row])
    with pytest.raises(AnnotationError, match=reason) as info:
        read_mtl_csv(path)
    assert str(info.value).startswith(f"{path}:3: ")


def test_mtl_csv_with_windows_line_endings_bom_and_whitespace(tmp_path):
    header = "image,valence,arousal,expression," + AU_HEADER
    text = "\ufeff" + " , ".join(header.split(",")) + "\r\n" + MTL_ROW.replace(",", " ,") + " \r\n\r\n"
    path = tmp_path / "training_set_annotations.txt"
    path.write_bytes(text.encode())
    ann = read_mtl_csv(path)
    assert ann.images == ["vid/00001.jpg"] and ann.expr.tolist() == [4]
    assert ann.va.tolist() == [[0.5, -0.25]] and ann.au[0].tolist() == [float(i == 6) for i in range(12)]


def test_data_reader_and_data_info_command_report_the_bad_line(tmp_path, capsys):
    make_miniature(tmp_path, "newer")
    path = write_task_file(tmp_path, "newer", "va", "train", "vidB", ["0.5,0.25", "nan,0"])
    with pytest.raises(AnnotationError, match="valence value nan is not finite") as info:
        load_affwild2(tmp_path, "train")
    assert str(info.value).startswith(f"{path}:3: ")
    code, _, err = _run_cli(capsys, "data-info", tmp_path)
    _assert_one_line_error(code, err, f"{path}:3:", "not finite")
    code, out, _ = _run_cli(capsys, "data-info", tmp_path, "--skip-bad-lines")
    assert code == 0 and json.loads(out)["bad_lines"] == 1


# ------------------------------------------------------------------ score command

@pytest.fixture
def score_files(tmp_path) -> tuple[Path, Path]:
    annotations = tmp_path / "annotations"
    annotations.mkdir()
    (annotations / "vid.txt").write_text("\n".join([EXPR_HEADER, *EXPR_BODY]) + "\n")
    predictions = tmp_path / "predictions.csv"
    predictions.write_text("image_location," + EXPR_HEADER + "\n"
                           + "".join(f"vid/{i:05d}.jpg,{v}\n" for i, v in enumerate([0, 4, 1, 6], start=1)))
    return predictions, annotations


def _score(capsys, predictions: Path, annotations: Path) -> tuple[int, str, str]:
    return _run_cli(capsys, "score", "--task", "EXPR", "--predictions", predictions, "--annotations", annotations)


@pytest.mark.parametrize("variant", ["crlf", "whitespace", "bom"])
def test_score_tolerates_line_endings_and_whitespace(capsys, score_files, variant):
    predictions, annotations = score_files
    code, out, _ = _score(capsys, predictions, annotations)
    expected = json.loads(out)
    for path in (predictions, annotations / "vid.txt"):
        text = path.read_text()
        text = {"crlf": text.replace("\n", "\r\n"), "whitespace": text.replace(",", " , ").replace("\n", " \n"),
                "bom": "\ufeff" + text}[variant]
        path.write_bytes(text.encode())
    code, out, err = _score(capsys, predictions, annotations)
    assert code == 0, err
    assert json.loads(out) == expected and expected["P_EXPR"] == 3 / 8


@pytest.mark.parametrize("target, text, fragment", [
    ("predictions", "", "predictions.csv:1: empty file"),
    ("predictions", "image,expression\nvid/00001.jpg,0\n", "predictions.csv:1: wrong header"),
    ("predictions", "image_location," + EXPR_HEADER + "\nvid/00001.jpg,nan\n", "predictions.csv:2:"),
    ("predictions", "image_location," + EXPR_HEADER + "\nvid/00001.jpg,inf\n", "predictions.csv:2:"),
    ("predictions", "image_location," + EXPR_HEADER + "\n../00001.jpg\n", "predictions.csv:2:"),
    ("annotations", "", "vid.txt:1: empty file"),
    ("annotations", "Neutral,Happy\n0\n", "vid.txt:1: wrong header"),
    ("annotations", EXPR_HEADER + "\n0\nnan\n", "vid.txt:3: expression value nan is not finite"),
    ("annotations", EXPR_HEADER + "\r\n0\r\n-inf\r\n", "vid.txt:3: expression value -inf is not finite"),
    ("annotations", EXPR_HEADER + "\n0\n1\xe9\n", "vid.txt:3: not UTF-8 text"),
])
def test_score_command_bad_files_exit_2_with_file_and_line(capsys, score_files, target, text, fragment):
    predictions, annotations = score_files
    path = predictions if target == "predictions" else annotations / "vid.txt"
    path.write_bytes(text.encode("latin-1"))
    code, out, err = _score(capsys, predictions, annotations)
    _assert_one_line_error(code, err, fragment)
    assert out == ""


def test_score_command_ignores_a_folder_named_like_an_annotation_file(capsys, score_files):
    predictions, annotations = score_files
    (annotations / "stray.txt").mkdir()
    code, out, err = _score(capsys, predictions, annotations)
    assert code == 0, err
    assert json.loads(out)["n"] == 3


def test_score_command_swapped_arguments(capsys, score_files):
    predictions, annotations = score_files
    code, _, err = _score(capsys, annotations, predictions)
    _assert_one_line_error(code, err, "prediction file not found")


# ------------------------------------------------------------------ demo endpoints

# Only the tests below need gradio: mark them, so that without it the rest of the file still runs.
try:
    import gradio as gr
    import gradio_client
except ImportError:
    gr = gradio_client = None
needs_gradio = pytest.mark.skipif(gr is None, reason="the demo tests need gradio and gradio_client "
                                                     "(pip install -e .[apps])")




@pytest.fixture(scope="module")
def demo_server(tmp_path_factory, model_dir):
    from demo import app as demo_app

    run = tmp_path_factory.mktemp("demo_run") / "run"
    (run / "model").mkdir(parents=True)
    for f in model_dir.iterdir():
        (run / "model" / f.name).write_bytes(f.read_bytes())
    (run / "metrics.json").write_text(json.dumps({"tasks": ["expr", "au", "va"], "dataset": {
        "name": "synthetic-affect", "synthetic": True, "split": "validation"}}))
    demo = demo_app.build_demo(str(run))
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(),
                            quiet=True, **demo_app.launch_options())
    client = gradio_client.Client(url, verbose=False)
    yield client
    client.close()
    demo.close()


def _demo_image(client, path: Path):
    return client.predict(gradio_client.handle_file(str(path)), api_name="/predict_image")


def _demo_still_serves(client, images) -> None:
    *_, result = _demo_image(client, images["cmyk.jpg"])
    result = result if isinstance(result, dict) else json.loads(result)
    assert len(result["faces"]) == 1


@needs_gradio
@pytest.mark.parametrize("name", sorted(IMAGE_ERRORS))
def test_demo_image_endpoint_refuses_bad_images_and_keeps_serving(demo_server, images, name, capfd):
    with pytest.raises(gradio_client.exceptions.AppError) as info:
        _demo_image(demo_server, images[name])
    message = str(info.value)
    assert name in message and "Traceback" not in message and "/tmp" not in message
    assert "pixels exceeds the limit of 25,000,000" in message if name == "over_pixel_limit.png" else True
    _demo_still_serves(demo_server, images)
    assert "Traceback" not in capfd.readouterr().err  # the server logged no crash either


@pytest.mark.parametrize("name", ["one_pixel.png", "line_1x20000.png", "gray_16bit.png", "rgb_16bit.png",
                                  "corrupt_middle.jpg", "no_face.png"])
@needs_gradio
def test_demo_image_endpoint_reads_odd_images(demo_server, images, name, capfd):
    *_, result = _demo_image(demo_server, images[name])
    result = result if isinstance(result, dict) else json.loads(result)
    if IMAGE_RESULTS[name] is not None:
        assert len(result["faces"]) == IMAGE_RESULTS[name]
    if not result["faces"]:
        assert "No face" in result["message"]
    assert "Traceback" not in capfd.readouterr().err


@needs_gradio
@pytest.mark.slow
def test_demo_image_endpoint_handles_a_crowd(demo_server, images):
    start = time.perf_counter()
    _, summary, *_, result = _demo_image(demo_server, images["grid_120_faces.jpg"])
    result = result if isinstance(result, dict) else json.loads(result)
    print(f"\ndemo, 120-face grid: {len(result['faces'])} faces in {time.perf_counter() - start:.1f} s")
    assert len(result["faces"]) >= 110 and f"{len(result['faces'])} faces found" in summary
    # The face selector is filled by a page event from the same result: one choice per face.
    from demo.app import face_choices

    assert len(face_choices(result)["choices"]) == len(result["faces"])


@needs_gradio
@pytest.mark.parametrize("name", [*sorted(VIDEO_ERRORS), "no_faces.mp4"])
def test_demo_video_endpoint_refuses_bad_videos_and_keeps_serving(demo_server, videos, images, name, capfd):
    with pytest.raises(gradio_client.exceptions.AppError) as info:
        demo_server.predict(gradio_client.handle_file(str(videos[name])), 1, 1, api_name="/predict_video")
    message = str(info.value)
    assert name in message and "Traceback" not in message and "/tmp" not in message
    expected = "No face was found" if name == "no_faces.mp4" else VIDEO_ERRORS[name]
    assert re_search(expected, message)
    _demo_still_serves(demo_server, images)
    assert "Traceback" not in capfd.readouterr().err


@needs_gradio
def test_demo_video_endpoint_variable_frame_rate(demo_server, videos):
    import pandas as pd

    _, csv_path, _, *_ = demo_server.predict(gradio_client.handle_file(str(videos["vfr.mp4"])), 1, 1,
                                                   api_name="/predict_video")
    table = pd.read_csv(csv_path)
    assert table["frame"].tolist() == list(range(8))
    assert table["time_s"].tolist() == pytest.approx(VFR_TIMES, abs=1e-3)


@needs_gradio
def test_demo_image_endpoint_refuses_a_video_and_video_endpoint_an_image(demo_server, videos, images):
    with pytest.raises(gradio_client.exceptions.AppError, match="clip.mp4: not an image file"):
        _demo_image(demo_server, videos["clip.mp4"])
    with pytest.raises(gradio_client.exceptions.AppError,
                       match="text_renamed.jpg: (not a readable video|broken video data)"):
        demo_server.predict(gradio_client.handle_file(str(images["text_renamed.jpg"])), 1, 1,
                            api_name="/predict_video")
    _demo_still_serves(demo_server, images)


def re_search(pattern: str, text: str) -> bool:
    import re

    return re.search(pattern, text) is not None
