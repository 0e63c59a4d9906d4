"""The predict command: tables, JSON, annotated videos and the ABAW submission format."""
import csv
import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from media import (
    ANIMATION_TIMES,
    animated_images,
    astronaut,
    face_tile,
    faces_image,
    moving_face_frames,
    noise_image,
    small_model_dir,
    truncated_videos,
    write_video,
)
from PIL import Image

from affectmodel.cli import main
from affectmodel.scoring import read_predictions, score_files
from affectmodel.tasks import ABAW8, AU_NAMES

N_FRAMES = 9


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return small_model_dir(tmp_path_factory.mktemp("m"), input_size=64)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("media")
    folder = root / "photos"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(faces_image(2)[0]).save(folder / "two.png")
    Image.fromarray(noise_image()).save(folder / "sub" / "none.jpg")
    Image.fromarray(astronaut()).save(root / "one.jpg")
    write_video(root / "clip.mp4", moving_face_frames(N_FRAMES), fps=10)
    return root


def _run(*argv):
    return main(["predict", *map(str, argv), "--no-progress"])


def test_csv_for_images_folders_and_videos(tmp_path, model, media, capsys):
    out = tmp_path / "out.csv"
    assert _run("--model", model, media / "one.jpg", media / "photos", media / "clip.mp4", "--out", out) == 0
    rows = list(csv.DictReader(out.open()))
    by_source = {}
    for row in rows:
        by_source.setdefault(row["source"], []).append(row)
    assert len(by_source[str(media / "one.jpg")]) == 1
    assert len(by_source[str(media / "photos" / "two.png")]) == 2
    two = by_source[str(media / "photos" / "two.png")]  # numbered from 1, left to right, like the demo's API
    assert [r["face"] for r in two] == ["1", "2"] and float(two[0]["x1"]) < float(two[1]["x1"])
    assert str(media / "photos" / "sub" / "none.jpg") not in by_source  # no face: no row
    video = by_source[str(media / "clip.mp4")]
    assert [int(r["frame"]) for r in video] == list(range(N_FRAMES))
    assert [float(r["time_s"]) for r in video] == pytest.approx([i / 10 for i in range(N_FRAMES)])
    assert {r["track_id"] for r in video} == {"1"}
    header = list(rows[0])
    assert header[:10] == ["source", "frame", "time_s", "track_id", "face", "x1", "y1", "x2", "y2", "score"]
    assert [f"expr_{x}" for x in ABAW8.labels] == header[11:19]
    assert list(AU_NAMES) == header[19:31] and header[-2:] == ["valence", "arousal"]
    probs = np.array([[float(r[f"expr_{x}"]) for x in ABAW8.labels] for r in rows])
    assert np.allclose(probs.sum(1), 1, atol=1e-4)
    assert "12 face(s) in 3 image(s) and 9 video frame(s)" in capsys.readouterr().err


def test_json_output_and_summary(tmp_path, model, media, capsys):
    out = tmp_path / "out.json"
    assert _run("--model", model, media / "photos", "--out", out) == 0
    data = json.loads(out.read_text())
    faces = {d["source"].split("/")[-1]: d["faces"] for d in data}
    assert len(faces["two.png"]) == 2 and faces["none.jpg"] == []
    assert set(faces["two.png"][0]) == {"face", "box", "score", "expression", "aus", "aus_active", "valence", "arousal"}
    assert [f["face"] for f in faces["two.png"]] == [1, 2]
    assert "2 face(s) in 2 image(s)" in capsys.readouterr().err


def test_json_lines_on_stdout(model, media, capsys):
    threads = torch.get_num_threads()
    try:
        assert _run("--model", model, media / "one.jpg", "--threads", 1) == 0
    finally:
        torch.set_num_threads(threads)  # the command sets the process-wide torch setting
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and len(json.loads(lines[0])["faces"]) == 1


def test_annotated_video_with_every_and_smoothing(tmp_path, model, media):
    out, ann = tmp_path / "v.csv", tmp_path / "ann.mp4"
    assert _run("--model", model, media / "clip.mp4", "--out", out, "--every", 2, "--smooth", 3,
                "--annotate", ann) == 0
    rows = list(csv.DictReader(out.open()))
    assert [int(r["frame"]) for r in rows] == [0, 2, 4, 6, 8]
    with av.open(str(ann)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert sum(1 for _ in container.decode(stream)) == 5


def _annotation(path, header, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(",".join(header) + "\n" + "\n".join(lines) + "\n")


@pytest.mark.parametrize("task", ["EXPR", "AU", "VA"])
def test_abaw_format_round_trips_through_score(tmp_path, model, media, task):
    pred = tmp_path / f"{task}.csv"
    assert _run("--model", model, media / "clip.mp4", "--format", "abaw", "--task", task, "--out", pred,
                "--every", 4) == 0
    values = read_predictions(pred, task)
    assert list(values) == [f"clip/{i:05d}.jpg" for i in range(1, N_FRAMES + 1)]  # every frame, 1-based
    ann = tmp_path / "ann"
    rng = np.random.default_rng(0)
    if task == "EXPR":
        _annotation(ann / "clip.txt", ABAW8.labels, [str(int(v)) for v in rng.integers(0, 8, N_FRAMES)])
        key = "P_EXPR"
    elif task == "AU":
        _annotation(ann / "clip.txt", AU_NAMES, [",".join(map(str, r)) for r in rng.integers(0, 2, (N_FRAMES, 12))])
        key = "P_AU"
    else:
        _annotation(ann / "clip.txt", ("valence", "arousal"),
                    [f"{a:.3f},{b:.3f}" for a, b in rng.uniform(-1, 1, (N_FRAMES, 2))])
        key = "P_VA"
    result = score_files(task, pred, ann)
    assert result["n"] == N_FRAMES and np.isfinite(result[key])
    # frames skipped by --every repeat the last processed frame's prediction
    v = [values[f"clip/{i:05d}.jpg"] for i in range(1, N_FRAMES + 1)]
    assert all(np.array_equal(v[i], v[4 * (i // 4)]) for i in range(N_FRAMES))
    assert main(["score", "--task", task, "--predictions", str(pred), "--annotations", str(ann)]) == 0


def test_abaw_format_for_aligned_frame_folders(tmp_path, model):
    # Aff-Wild2 layout: cropped_aligned/<video>/<frame>.jpg, already aligned: no detection
    video = tmp_path / "cropped_aligned" / "vid_left"
    video.mkdir(parents=True)
    tile = face_tile(112)[:, :112]
    for frame in (1, 2, 4):
        Image.fromarray(tile).save(video / f"{frame:05d}.jpg")
    pred = tmp_path / "au.csv"
    assert _run("--model", model, tmp_path / "cropped_aligned", "--aligned", "--format", "abaw", "--task", "AU",
                "--out", pred) == 0
    values = read_predictions(pred, "AU")
    assert list(values) == ["vid_left/00001.jpg", "vid_left/00002.jpg", "vid_left/00004.jpg"]
    assert all(v.shape == (12,) and set(v.tolist()) <= {0, 1} for v in values.values())


def test_user_errors_exit_2_with_one_line(tmp_path, model, media, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    cases = [
        (["--model", model, bad], "broken.jpg"),
        (["--model", model, media / "clip.mp4", "--format", "abaw", "--task", "EXPR"], "--out FILE.csv"),
        (["--model", model, media / "one.jpg", "--format", "abaw", "--out", tmp_path / "x.csv"], "needs --task"),
        (["--model", model, media / "one.jpg", "--annotate", tmp_path / "a.mp4"], "needs at least one video"),
        (["--model", model, media / "one.jpg", "--out", tmp_path / "x.txt"], ".csv or .json"),
        (["--model", model, tmp_path / "missing.jpg"], "not found"),
        (["--model", model, media / "one.jpg", "--every", 0], "at least 1"),
        (["--model", model, media / "one.jpg", "--threads", 0], "at least 1"),
        # a negative smallest face was accepted (and kept every face, as 0 does)
        (["--model", model, media / "one.jpg", "--min-face", -5], "--min-face must be at least 0 pixels, got -5"),
        (["--model", model, media / "one.jpg", "--detect-max-side", -1], "--detect-max-side must be at least 0"),
    ]
    for argv, message in cases:
        assert _run(*argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err


def test_unreadable_files_in_folders_are_skipped(tmp_path, model, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.fromarray(astronaut()).save(folder / "good.jpg")
    (folder / "bad.png").write_bytes(b"not a png")
    (folder / "bad.mp4").write_bytes(b"not a video")
    out = tmp_path / "o.csv"
    assert _run("--model", model, folder, "--out", out) == 0
    assert len(list(csv.DictReader(out.open()))) == 1
    err = capsys.readouterr().err
    assert "skipped" in err and "bad.png" in err and "bad.mp4" in err and "skipped 2 unreadable" in err
    assert _run("--model", model, folder / "bad.mp4") == 2  # named explicitly: an error
    assert "not a readable video" in capsys.readouterr().err


@pytest.fixture(scope="module")
def cut_videos(tmp_path_factory):
    return truncated_videos(tmp_path_factory.mktemp("cut"))


@pytest.mark.parametrize("name, fmt", [("cut80_phone.mp4", "table"), ("cut50_index_last.mp4", "table"),
                                       ("cut80_clip.avi", "table"), ("cut97_phone.mp4", "abaw"),
                                       ("cut80_clip.mkv", "abaw")])
def test_a_truncated_video_is_one_line_naming_the_missing_share_and_writes_nothing(tmp_path, model, cut_videos,
                                                                                   capsys, name, fmt):
    """It used to give the frames that were there, exit 0 (and, for the challenge format, the
    missing frames filled with copies of the last prediction)."""
    out = tmp_path / "out.csv"
    extra = ["--format", "abaw", "--task", "VA"] if fmt == "abaw" else []
    assert _run("--model", model, cut_videos[name], "--out", out, *extra) == 2
    err = _one_line_error(capsys)
    assert name in err and "truncated" in err and "% " in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_a_truncated_video_in_a_folder_is_skipped_with_its_reason(tmp_path, model, cut_videos, capsys, suffix):
    """Skipped, and none of its rows are left in the output: a video refused after its last frame
    (the WebM) had already written its frames' rows."""
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("a_phone.mp4", "b_cut80_clip.webm", "c_cut80_phone.mp4", "d_phone.mp4"):
        (folder / name).write_bytes(cut_videos["cut80_phone.mp4"].with_name(name[2:]).read_bytes())
    out = tmp_path / f"out{suffix}"
    assert _run("--model", model, folder, "--out", out) == 0
    err = capsys.readouterr().err
    assert "skipped 2 unreadable file(s)" in err
    warnings = sorted(line.split(": ", 2)[1:] for line in err.splitlines() if line.startswith("warning: skipped"))
    assert [(Path(path).name, reason.split(":")[0]) for path, reason in warnings] == [
        ("b_cut80_clip.webm", "truncated video"), ("c_cut80_phone.mp4", "truncated file")]
    rows = list(csv.DictReader(out.open())) if suffix == ".csv" else json.loads(out.read_text())
    assert {Path(row["source"]).name for row in rows} == {"a_phone.mp4", "d_phone.mp4"}
    assert "120 video frame(s)" in err


def test_a_folder_of_symlinked_video_folders_is_read_once_and_loops_are_cut(tmp_path, model, media, capsys):
    """It said 'no images or videos found in this folder'."""
    real = tmp_path / "real" / "video1"
    real.mkdir(parents=True)
    (real / "clip.mp4").write_bytes((media / "clip.mp4").read_bytes())
    links = tmp_path / "links"
    links.mkdir()
    (links / "video1").symlink_to(real)
    (links / "same-again").symlink_to(real)
    (links / "loop").symlink_to(links)
    out = tmp_path / "out.csv"
    assert _run("--model", model, links, "--out", out) == 0
    sources = {row["source"] for row in csv.DictReader(out.open())}
    assert len(sources) == 1 and Path(sources.pop()).name == "clip.mp4"
    assert f"{N_FRAMES} video frame(s)" in capsys.readouterr().err


def test_animated_gif_and_webp_are_short_videos_every_frame_with_its_time(tmp_path, model, capsys):
    """They gave one row: the first frame, as if it were the whole file's answer."""
    files = animated_images(tmp_path)
    out = tmp_path / "out.csv"
    assert _run("--model", model, files["gif"], tmp_path, "--out", out) == 0  # given, and inside a folder
    rows = list(csv.DictReader(out.open()))
    for suffix in ("gif", "webp", "png"):
        mine = [r for r in rows if Path(r["source"]).name == f"animated.{suffix}"]
        times = sorted({float(r["time_s"]) for r in mine})
        assert times == pytest.approx(ANIMATION_TIMES) and len(mine) == 8 * (2 if suffix == "gif" else 1), suffix
    assert "in 0 image(s) and 32 video frame(s)" in capsys.readouterr().err


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


@pytest.mark.skipif(__import__("os").geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folders_are_named(tmp_path, model, media, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert _run("--model", model, media / "one.jpg", "--out", locked / "out.csv") == 2
        err = _one_line_error(capsys)
        assert str(locked / "out.csv") in err and ".tmp" not in err
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


def test_an_unwritable_annotated_video_is_named(tmp_path, model, media, capsys, monkeypatch):
    from affectmodel.inference import video

    real_open = av.open

    def refuse(path, *args, **kwargs):
        if kwargs.get("mode") == "w":
            raise PermissionError(13, "Permission denied", path)  # what a read-only folder gives
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(video.av, "open", refuse)
    out = tmp_path / "a.mp4"
    assert _run("--model", model, media / "clip.mp4", "--annotate", out, "--out", tmp_path / "o.csv") == 2
    err = _one_line_error(capsys)
    assert f"{out}: cannot write the annotated video: Permission denied" in err and ".tmp" not in err
    assert list(tmp_path.iterdir()) == []


class _FullDisk:
    """A PyAV output container whose disk fills after a few packets."""

    def __init__(self, container, packets: int = 2):
        self._container, self._left = container, packets

    def mux(self, packet):
        self._left -= 1
        if self._left < 0:
            raise OSError(28, "No space left on device")
        return self._container.mux(packet)

    def __getattr__(self, name):
        return getattr(self._container, name)


def test_disk_full_while_annotating_is_one_line_and_leaves_no_file(tmp_path, model, media, capsys, monkeypatch):
    from affectmodel.inference import video

    real_open = av.open
    monkeypatch.setattr(video.av, "open", lambda *a, **k: _FullDisk(real_open(*a, **k)) if k.get("mode") == "w"
                        else real_open(*a, **k))
    out = tmp_path / "out"
    assert _run("--model", model, media / "clip.mp4", "--annotate", out / "a.mp4", "--out", out / "rows.csv") == 2
    err = _one_line_error(capsys)
    assert "disk full" in err and "a.mp4" in err and ".tmp" not in err
    assert sorted(p.name for p in out.iterdir()) == []  # neither a partial video nor a partial table


def test_disk_full_while_writing_predictions_is_one_line_and_leaves_no_file(tmp_path, model, media, capsys,
                                                                           monkeypatch):
    from affectmodel.inference import cli as predict_cli

    real = predict_cli.TableWriter.image

    def full(self, source, faces):
        real(self, source, faces)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(predict_cli.TableWriter, "image", full)
    out = tmp_path / "rows.csv"
    assert _run("--model", model, media / "one.jpg", "--out", out) == 2
    err = _one_line_error(capsys)
    assert "disk full" in err.lower() or "No space left on device" in err
    assert (str(out) in err or f"{out.name} in {out.parent}" in err) and ".tmp" not in err
    assert list(tmp_path.iterdir()) == []


def _aligned_frames(root, video: str, frames) -> None:
    folder = root / "cropped_aligned" / video
    folder.mkdir(parents=True)
    tiles = [face_tile(112)[:, :112], np.ascontiguousarray(face_tile(112)[:, :112][:, ::-1])]
    for i, frame in enumerate(frames):
        Image.fromarray(tiles[i % 2]).save(folder / f"{frame:05d}.jpg")


def test_abaw_aligned_with_annotations_writes_every_annotated_frame(tmp_path, model, capsys):
    from affwild2_fixtures import AU_HEADER, au_line

    _aligned_frames(tmp_path, "vid_left", (1, 2, 6))
    annotations = tmp_path / "AU_Validation_Set"
    annotations.mkdir()
    # frames 1-7 annotated except 5 (all -1); frames 3, 4 and 7 have no image
    lines = [au_line(0), au_line(1), au_line(2), au_line(3), au_line(invalid=True), au_line(4), au_line(5)]
    (annotations / "vid_left.txt").write_text("\n".join([AU_HEADER, *lines]) + "\n")
    (annotations / "vid_gone.txt").write_text("\n".join([AU_HEADER, au_line(1), au_line(2)]) + "\n")
    pred = tmp_path / "au.csv"
    assert _run("--model", model, tmp_path / "cropped_aligned", "--aligned", "--format", "abaw", "--task", "AU",
                "--annotations", annotations, "--out", pred) == 0
    values = read_predictions(pred, "AU")
    assert list(values) == [f"vid_left/{f:05d}.jpg" for f in (1, 2, 3, 4, 6, 7)] + ["vid_gone/00001.jpg",
                                                                                     "vid_gone/00002.jpg"]
    own = {f: values[f"vid_left/{f:05d}.jpg"] for f in (1, 2, 6)}
    assert (values["vid_left/00003.jpg"] == own[2]).all()  # nearest in time: 3 -> 2
    assert (values["vid_left/00004.jpg"] == own[2]).all()  # 4 is as near to 2 as to 6: the earlier
    assert (values["vid_left/00007.jpg"] == own[6]).all()
    err = capsys.readouterr().err
    assert "8 annotated frame(s) in 2 video(s), 5 without an image filled with the nearest prediction" in err
    score_files("AU", pred, annotations)  # scorable: no annotated frame is missing


def test_abaw_aligned_with_the_multitask_csv(tmp_path, model, capsys):
    from affwild2_fixtures import au_line, write_mtl

    _aligned_frames(tmp_path, "vidM", (2,))
    mtl = write_mtl(tmp_path, "validation", [f"vidM/0000{f}.jpg,0.1,0.2,3,{au_line(f)}" for f in (1, 2, 3)]
                    + [f"vidM/00004.jpg,-5,-5,-1,{au_line(invalid=True)}"])
    pred = tmp_path / "expr.csv"
    assert _run("--model", model, tmp_path / "cropped_aligned", "--aligned", "--format", "abaw", "--task", "EXPR",
                "--annotations", mtl, "--out", pred) == 0
    assert list(read_predictions(pred, "EXPR")) == [f"vidM/0000{f}.jpg" for f in (1, 2, 3)]  # 4: not annotated
    assert "3 annotated frame(s) in 1 video(s), 2 without an image" in capsys.readouterr().err


@pytest.mark.parametrize("change,message", [
    ({"input_size": 20000}, "field 'input_size' must be a whole number of pixels in [16, 1024], got 20000"),
    ({"au_thresholds": ["high"] * 12}, "field 'au_thresholds': value 0 must be a finite number in [0, 1], got 'high'"),
    ({"std": [0, 0, 0]}, "field 'std': value 0 must be a finite number"),
])
def test_hostile_model_folders_are_one_line_errors(tmp_path, model, media, capsys, change, message):
    hostile = tmp_path / "hostile"
    hostile.mkdir()
    (hostile / "model.safetensors").write_bytes((model / "model.safetensors").read_bytes())
    config = json.loads((model / "config.json").read_text())
    (hostile / "config.json").write_text(json.dumps({**config, **change}))
    assert _run("--model", hostile, media / "one.jpg") == 2
    err = _one_line_error(capsys)
    assert message in err and str(hostile) in err


def test_the_engine_option_picks_what_runs_the_network(exported_model, media, capsys):
    faces = {}
    for engine in ("torch", "onnx", "onnx-int8", "auto"):
        assert _run("--model", exported_model, media / "one.jpg", "--engine", engine, "--threads", "1") == 0
        out, err = capsys.readouterr()
        faces[engine] = json.loads(out.strip().splitlines()[-1])["faces"][0]
        assert f"engine {'onnx' if engine == 'auto' else engine}" in err
    assert faces["onnx"]["valence"] == pytest.approx(faces["torch"]["valence"], abs=1e-4)
    assert faces["onnx"]["expression"] == pytest.approx(faces["torch"]["expression"], abs=1e-4)
    assert faces["onnx-int8"]["valence"] == pytest.approx(faces["torch"]["valence"], abs=0.05)


def test_asking_for_onnx_without_an_exported_graph_is_one_line(model, media, capsys):
    assert _run("--model", model, media / "one.jpg", "--engine", "onnx") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "has no model.onnx; make one with `python -m affectmodel export" in err
    assert "\n" not in err


def test_a_bidirectional_temporal_checkpoint_gives_a_row_per_frame(tmp_path, media):
    from affectmodel import AffectModel, ModelConfig

    torch.manual_seed(0)
    temporal = AffectModel(ModelConfig(input_size=64, temporal="conv", window=6))
    assert temporal.temporal is not None
    torch.nn.init.normal_(temporal.temporal.out.weight, std=0.05)
    folder = temporal.save(tmp_path / "conv")
    out, ann = tmp_path / "t.csv", tmp_path / "t.mp4"
    assert _run("--model", folder, media / "clip.mp4", "--out", out, "--annotate", ann) == 0
    rows = list(csv.DictReader(out.open()))
    assert [int(r["frame"]) for r in rows] == list(range(N_FRAMES))  # the last frames wait, none is lost
    with av.open(str(ann)) as container:
        assert sum(1 for _ in container.decode(container.streams.video[0])) == N_FRAMES


def test_asking_for_onnx_on_a_temporal_model_says_to_use_torch(tmp_path, media, capsys):
    """export refuses temporal models, so the refusal must not send the user to export."""
    from affectmodel import AffectModel, ModelConfig

    folder = AffectModel(ModelConfig(input_size=64, temporal="gru", window=8, causal=True)).save(tmp_path / "gru")
    for engine in ("onnx", "onnx-int8"):
        assert _run("--model", folder, media / "clip.mp4", "--engine", engine) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err
        assert "temporal model (gru w8 causal): ONNX does not cover temporal models" in err
        assert "use --engine torch" in err and "make one with" not in err
    # and the export it would have pointed to refuses the model too
    assert main(["export", str(folder)]) != 0
    assert "temporal model" in capsys.readouterr().err
