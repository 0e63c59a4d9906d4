import shutil
import subprocess
from fractions import Fraction

import av
import numpy as np
import pytest
from media import (
    ANIMATION_TIMES,
    TRUNCATED_VIDEOS,
    animated_images,
    encode_video,
    moving_face_frames,
    small_model_dir,
    truncated_videos,
    write_video,
)

from affectmodel.inference.faces import create_detector
from affectmodel.inference.predictor import Predictor
from affectmodel.inference.smoothing import smooth_series
from affectmodel.inference.video import (
    VideoLoadError,
    VideoOptions,
    iter_frames,
    iter_video_predictions,
    predict_video,
    probe_video,
    write_video_frames,
)

N_FRAMES, FPS = 12, 10


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """12 frames, 10 fps, 320x180, two faces drifting right."""
    return write_video(tmp_path_factory.mktemp("v") / "two_faces.mp4", moving_face_frames(N_FRAMES, n_faces=2), FPS)


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    return Predictor(small_model_dir(tmp_path_factory.mktemp("m"), input_size=64), detector=create_detector())


@pytest.fixture(scope="module")
def raw_rows(clip, predictor):
    return predict_video(predictor, clip)


def test_frame_count_and_timestamps(clip):
    info = probe_video(clip)
    assert (info.width, info.height, info.fps, info.frame_count, info.codec) == (320, 180, 10.0, N_FRAMES, "h264")
    frames = list(iter_frames(clip))
    assert [f.index for f in frames] == list(range(N_FRAMES))
    assert [f.time_s for f in frames] == pytest.approx([i / FPS for i in range(N_FRAMES)])
    assert frames[0].image.shape == (180, 320, 3) and frames[0].image.dtype == np.uint8


def test_every_kth_frame(clip):
    frames = list(iter_frames(clip, every=5))
    assert [f.index for f in frames] == [0, 5, 10]
    assert [f.time_s for f in frames] == pytest.approx([0.0, 0.5, 1.0])
    assert [f.index for f in iter_frames(clip, every=2, max_frames=5)] == [0, 2, 4]


def test_decoded_pixels_match_what_was_written(clip):
    written = moving_face_frames(N_FRAMES, n_faces=2)
    for frame in iter_frames(clip, every=4):
        assert np.abs(frame.image.astype(int) - written[frame.index].astype(int)).mean() < 6  # H.264 loss only


def test_display_rotation_metadata_is_applied(tmp_path):
    path = tmp_path / "rot.mp4"
    image = np.zeros((32, 64, 3), np.uint8)
    image[:, :8] = 255  # white band on the stored left edge
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
        stream.set_display_rotation(90)  # phones store portrait video like this
        for _ in range(2):
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    frame = next(iter_frames(path))
    assert frame.image.shape == (64, 32, 3)  # portrait, as displayed
    assert frame.image[-4:].mean() > 200 and frame.image[:8].mean() < 50  # rotated 90 degrees counter-clockwise


def test_broken_inputs_raise_video_load_error(tmp_path, clip):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    empty = tmp_path / "empty.mp4"
    empty.touch()
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes(clip.read_bytes()[:600])
    no_frames = tmp_path / "zero.mp4"
    with av.open(str(no_frames), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        container.start_encoding()
    audio = tmp_path / "audio.m4a"
    with av.open(str(audio), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in list(stream.encode(frame)) + list(stream.encode()):
            container.mux(packet)
    for path, message in [(text, "not a readable video"), (empty, "empty file"), (truncated, "truncated file"),
                          (no_frames, "no video stream|no frames"), (audio, "no video stream")]:
        with pytest.raises(VideoLoadError, match=message) as e:
            list(iter_frames(path))
        assert str(path) in str(e.value)
    with pytest.raises(FileNotFoundError):
        list(iter_frames(tmp_path / "missing.mp4"))
    assert issubclass(VideoLoadError, ValueError)


@pytest.fixture(scope="module")
def cut_videos(tmp_path_factory):
    return truncated_videos(tmp_path_factory.mktemp("cut"))


@pytest.mark.parametrize("name", TRUNCATED_VIDEOS)
def test_a_truncated_video_is_refused_naming_the_missing_share(cut_videos, name):
    """FFmpeg decodes what a cut file holds and stops without an error (a faststart MP4 cut at
    80 % gave 18 of 60 frames, at 97 % 51); each is refused with the share that is missing."""
    path = cut_videos[name]
    with pytest.raises(VideoLoadError, match=r"truncated (file|video)\b.*\b\d+% (of the file is )?missing") as e:
        list(iter_frames(path))
    assert str(path) in str(e.value)
    if name.endswith(".mp4"):  # MP4: from the box sizes alone, before any frame is decoded
        with pytest.raises(VideoLoadError, match="truncated file"):
            probe_video(path)


@pytest.fixture(scope="module")
def whole_videos(tmp_path_factory, cut_videos):
    """Whole files whose frames and declared lengths disagree for honest reasons."""
    root = tmp_path_factory.mktemp("whole")
    frames = moving_face_frames(30, size=(160, 96), step=1, face_height=70)
    out = {p.name: p for p in next(iter(cut_videos.values())).parent.iterdir() if not p.name.startswith("cut")}
    out["clip.mpg"] = encode_video(root / "clip.mpg", frames, codec="mpeg2video")
    out["clip.ts"] = encode_video(root / "clip.ts", frames)
    for suffix, codec in ((".mkv", "libx264"), (".webm", "libvpx"), (".mp4", "libx264")):
        # variable frame rate, the last frame held for 2 s
        path = root / f"vfr{suffix}"
        with av.open(str(path), "w") as container:
            stream = container.add_stream(codec, rate=25)
            stream.width, stream.height, stream.pix_fmt = 160, 96, "yuv420p"
            stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
            for i, image in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts, frame.time_base = 40 * i + (2000 if i == len(frames) - 1 else 0), Fraction(1, 1000)
                container.mux(stream.encode(frame))
            container.mux(stream.encode())
        out[path.name] = path
    if shutil.which("ffmpeg"):  # an edit list that hides the frames before a cut (ffmpeg -ss with -c copy)
        subprocess.run(["ffmpeg", "-loglevel", "error", "-ss", "1.3", "-i", str(out["phone.mp4"]), "-c", "copy",
                        str(root / "edit_list.mp4")], check=True)
        out["edit_list.mp4"] = root / "edit_list.mp4"
    return out


def test_whole_videos_are_not_called_truncated(whole_videos):
    assert {"phone.mp4", "index_last.mp4", "clip.avi", "clip.webm", "vfr.mkv", "edit_list.mp4"} <= set(whole_videos)
    for name, path in whole_videos.items():
        frames = list(iter_frames(path))
        assert len(frames) >= (30 if name in ("vfr.mkv", "vfr.webm", "vfr.mp4", "clip.mpg", "clip.ts")
                               else 10 if name == "edit_list.mp4" else 60), name


@pytest.mark.parametrize("suffix", ["gif", "webp", "png"])
def test_an_animated_image_is_read_as_a_short_video(tmp_path, predictor, suffix):
    """FFmpeg cannot decode animated WebP ('broken video data after 0 frames'); GIF and WebP were
    cut to their first frame where they were read as images."""
    path = animated_images(tmp_path)[suffix]
    info = probe_video(path)
    assert (info.width, info.height, info.frame_count) == (240, 150, 8) and info.duration_s == pytest.approx(1.1)
    assert [f.time_s for f in iter_frames(path)] == pytest.approx(ANIMATION_TIMES)
    assert [f.index for f in iter_frames(path, every=3)] == [0, 3, 6]
    rows = predict_video(predictor, path)
    assert [r["frame"] for r in rows] == list(range(8)) and {r["track_id"] for r in rows} == {1}


def test_rows_tracks_and_timestamps(raw_rows):
    rows = raw_rows
    assert len(rows) == 2 * N_FRAMES
    assert sorted({r["track_id"] for r in rows}) == [1, 2]  # ids stable across all frames
    for track_id in (1, 2):
        track = [r for r in rows if r["track_id"] == track_id]
        assert [r["frame"] for r in track] == list(range(N_FRAMES))
        assert [r["time_s"] for r in track] == pytest.approx([i / FPS for i in range(N_FRAMES)])
        xs = [r["box"][0] for r in track]
        assert xs[-1] - xs[0] == pytest.approx(3 * (N_FRAMES - 1), abs=6)  # follows the face drifting right
    left, right = (next(r for r in rows if r["track_id"] == t)["box"][0] for t in (1, 2))
    assert left < right
    assert {"expression", "aus", "aus_active", "valence", "arousal", "score"} <= set(rows[0])


class _Counting:
    """The real detector, recording the size of every image it is given."""

    name = "counting"

    def __init__(self, detector):
        self.detector, self.calls = detector, []

    def detect(self, image):
        self.calls.append(image.shape[:2])
        return self.detector.detect(image)


def test_detection_every_n_frames_holds_boxes_in_between_without_follow(clip, predictor):
    counting = _Counting(predictor.detector)
    calls = counting.calls
    counted = Predictor(predictor.model, detector=counting)
    frames = list(iter_video_predictions(counted, clip, VideoOptions(detect_every=4, follow=False)))
    assert len(calls) == 3 and len(frames) == N_FRAMES  # frames 0, 4, 8
    assert all(len(f.faces) == 2 and [x["track_id"] for x in f.faces] == [1, 2] for f in frames)
    # between detections the boxes are held
    assert frames[1].faces[0]["box"] == frames[0].faces[0]["box"] != frames[4].faces[0]["box"]


def test_batched_frames_equal_frame_by_frame(clip, predictor, raw_rows):
    batched = raw_rows[:10]  # default: all 12 frames in one forward pass
    single = predict_video(predictor, clip, VideoOptions(buffer_frames=1, max_frames=5))
    assert len(batched) == len(single) == 10
    for a, b in zip(batched, single, strict=True):
        assert a["box"] == b["box"] and a["track_id"] == b["track_id"]
        assert a["valence"] == pytest.approx(b["valence"], abs=1e-5)
        assert a["aus"] == pytest.approx(b["aus"], abs=1e-5)


def test_frames_wait_for_a_batch_only_up_to_the_memory_cap(clip, predictor, tmp_path, call_sizes):
    """Without annotation only crops wait (one forward pass for the 12 frames); an annotated video
    holds at most buffer_bytes of frames (here one 320x180 frame: a pass per frame)."""
    batches = call_sizes(predictor, "forward")
    plain = list(iter_video_predictions(predictor, clip, VideoOptions()))
    assert batches == [2 * N_FRAMES] and len(plain) == N_FRAMES
    batches.clear()
    one_frame = 320 * 180 * 3
    annotated = list(iter_video_predictions(predictor, clip, VideoOptions(buffer_bytes=one_frame),
                                            annotate_to=tmp_path / "a.mp4"))
    assert batches == [2] * N_FRAMES
    for a, b in zip(annotated, plain, strict=True):  # the same answers, batched or not
        assert [(x["track_id"], x["box"]) for x in a.faces] == [(x["track_id"], x["box"]) for x in b.faces]
        assert [x["valence"] for x in a.faces] == pytest.approx([x["valence"] for x in b.faces], abs=1e-5)
    with pytest.raises(ValueError, match="buffer_bytes"):
        VideoOptions(buffer_bytes=0)


@pytest.mark.parametrize("method", ["mean", "ema"])
def test_smoothing_is_applied_per_track(clip, predictor, raw_rows, method):
    raw = [r for r in raw_rows if r["frame"] < 8]
    smooth = predict_video(predictor, clip, VideoOptions(smoothing=method, smooth_window=3, max_frames=8))
    assert len(smooth) == len(raw) == 16
    for track_id in (1, 2):
        r = [x for x in raw if x["track_id"] == track_id]
        s = [x for x in smooth if x["track_id"] == track_id]
        va = np.array([[x["valence"], x["arousal"]] for x in r])
        assert np.allclose([[x["valence"], x["arousal"]] for x in s], smooth_series(va, method, 3), atol=1e-5)
        expr = np.array([list(x["expression"].values()) for x in r])
        assert np.allclose([list(x["expression"].values()) for x in s], smooth_series(expr, method, 3), atol=1e-5)
        aus = np.array([list(x["aus"].values()) for x in s])
        assert all(x["aus_active"][au] == (x["aus"][au] >= 0.5) for x in s for au in x["aus"])
        assert aus.shape == (len(s), 12)


def test_annotated_video_is_browser_playable_h264(tmp_path, clip, predictor):
    out = tmp_path / "annotated.mp4"
    progress = []
    frames = list(iter_video_predictions(predictor, clip, VideoOptions(every=2), annotate_to=out,
                                         progress=progress.append))
    assert len(frames) == N_FRAMES // 2
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert (stream.codec_context.width, stream.codec_context.height) == (320, 180)
        assert float(stream.average_rate) == pytest.approx(FPS / 2)
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    assert len(decoded) == N_FRAMES // 2
    original = next(iter_frames(clip)).image
    assert np.abs(decoded[0].astype(int) - original.astype(int)).max() > 100  # boxes were drawn
    head = out.read_bytes()[:4096]
    assert head.find(b"moov") != -1 and head.find(b"moov") < max(head.find(b"mdat"), 4096)  # faststart
    assert progress == sorted(progress) and progress[-1] == 1.0 and len(progress) >= 2


def test_odd_frame_sizes_are_encoded_with_even_sides(tmp_path):
    frames = [np.full((181, 321, 3), 40 * i, np.uint8) for i in range(3)]
    path = tmp_path / "odd.mp4"
    assert write_video_frames(path, frames, fps=5) == 3
    info = probe_video(path)
    assert (info.width, info.height, info.frame_count) == (320, 180, 3)


def test_video_without_faces_gives_empty_frames(tmp_path, predictor):
    path = write_video(tmp_path / "empty_scene.mp4", [np.full((90, 160, 3), 100, np.uint8)] * 4, fps=4)
    frames = list(iter_video_predictions(predictor, path))
    assert [f.frame for f in frames] == [0, 1, 2, 3] and all(f.faces == [] for f in frames)
    assert predict_video(predictor, path) == []


def test_options_are_checked():
    with pytest.raises(ValueError, match="every"):
        VideoOptions(every=0)
    with pytest.raises(ValueError, match="smoothing"):
        VideoOptions(smoothing="median")


def _per_frame_counts(predictor, path, options):
    return [len(fp.faces) for fp in iter_video_predictions(predictor, path, options)]


def test_default_follows_faces_between_full_detections(clip, predictor):
    counting = _Counting(predictor.detector)
    frames = list(iter_video_predictions(Predictor(predictor.model, detector=counting), clip))
    full = [i for i, shape in enumerate(counting.calls) if shape == (180, 320)]
    assert len(full) == 2  # frames 0 and 10 of 12 (detect_every 10)
    assert len(counting.calls) == 2  # in between, faces are followed by optical flow, not detected
    assert all(len(f.faces) == 2 and [x["track_id"] for x in f.faces] == [1, 2] for f in frames)
    every = [f.faces[0]["box"][0] for f in iter_video_predictions(predictor, clip, VideoOptions(detect_every=1))]
    followed = [f.faces[0]["box"][0] for f in frames]
    assert np.abs(np.array(followed) - every).max() < 4  # the boxes move with the face, not held


def test_default_detects_again_when_a_face_leaves_or_enters(tmp_path, predictor):
    frames = moving_face_frames(14, n_faces=2)
    leaving = [f if i < 6 else moving_face_frames(14, n_faces=1)[i] for i, f in enumerate(frames)]
    entering = leaving[::-1]
    for name, video in (("leaving", leaving), ("entering", entering)):
        path = write_video(tmp_path / f"{name}.mp4", video, FPS)
        expected = _per_frame_counts(predictor, path, VideoOptions(detect_every=1))
        assert sorted(set(expected)) == [1, 2]
        assert _per_frame_counts(predictor, path, VideoOptions()) == expected, name


def temporal_predictor(tmp_path, base: Predictor, kind: str, causal: bool, trained: bool) -> Predictor:
    """The per-frame test model with a temporal module (zero-initialised, or ``trained``: random
    output weights) over windows of 4 frames."""
    import torch

    from affectmodel import AffectModel, ModelConfig

    config = ModelConfig(tasks=list(base.tasks), input_size=64, temporal=kind, window=4, causal=causal)
    model = AffectModel(config)
    model.load_state_dict(base.model.state_dict(), strict=False)  # trunk and heads of the per-frame model
    if trained and model.temporal is not None:
        torch.nn.init.normal_(model.temporal.out.weight, std=0.05)
    return Predictor(model.save(tmp_path / f"{kind}-{causal}-{trained}"), detector=base.detector)


@pytest.mark.parametrize("causal", [True, False])
def test_temporal_model_gives_a_row_per_frame_and_face(tmp_path, clip, predictor, raw_rows, causal, call_sizes):
    untrained = temporal_predictor(tmp_path, predictor, "gru", causal, trained=False)
    same = predict_video(untrained, clip)
    # a zero-initialised temporal module is the per-frame model: the same rows, frame by frame
    assert [(r["frame"], r["track_id"], r["box"]) for r in same] == [(r["frame"], r["track_id"], r["box"])
                                                                      for r in raw_rows]
    assert np.allclose([r["valence"] for r in same], [r["valence"] for r in raw_rows], atol=1e-4)
    trained = temporal_predictor(tmp_path, predictor, "gru", causal, trained=True)
    windows = call_sizes(trained, "window_outputs")
    rows = predict_video(trained, clip)
    assert [(r["frame"], r["track_id"]) for r in rows] == [(r["frame"], r["track_id"]) for r in raw_rows]
    assert not np.allclose([r["valence"] for r in rows], [r["valence"] for r in raw_rows], atol=1e-4)
    assert sum(windows) == len(rows) and max(windows) > 2  # windows of many faces per forward pass


def test_a_temporal_model_reads_a_video_and_its_mirror_image_alike(tmp_path, predictor):
    trained = temporal_predictor(tmp_path, predictor, "gru", True, trained=True)
    crops = [np.random.default_rng(k).integers(0, 256, (64, 64, 3), dtype=np.uint8) for k in range(4)]
    mirrored = [np.ascontiguousarray(c[:, ::-1]) for c in crops]
    # mirror averaging (the default): each frame's features and its mirror image's ride side by side
    features = trained.features(crops)
    assert features.shape == (4, 2 * trained.model.n_features)
    a = trained.window_outputs(features[None], 3)
    b = trained.window_outputs(trained.features(mirrored)[None], 3)
    for key in a:
        assert np.allclose(a[key], b[key], atol=1e-5), key
    # the network alone reads the two windows differently; the average is the mean of its two readings
    alone = Predictor(trained.model, detector=None, mirror=False)
    plain = alone.window_outputs(alone.features(crops)[None], 3)
    flipped = alone.window_outputs(alone.features(mirrored)[None], 3)
    assert not np.allclose(plain["va"], flipped["va"], atol=1e-4)
    for key in a:
        assert np.allclose(a[key], 0.5 * (plain[key] + flipped[key]), atol=1e-5), key


def test_smooth_model_smooths_its_own_outputs(tmp_path, clip, predictor, raw_rows):
    smooth = temporal_predictor(tmp_path, predictor, "smooth", True, trained=False)
    rows = predict_video(smooth, clip, VideoOptions(max_frames=8))
    raw = [r for r in raw_rows if r["frame"] < 8]
    for track_id in (1, 2):
        va = np.array([[x["valence"], x["arousal"]] for x in raw if x["track_id"] == track_id])
        got = [[x["valence"], x["arousal"]] for x in rows if x["track_id"] == track_id]
        assert np.allclose(got, smooth_series(va, "mean", 4), atol=1e-5)
