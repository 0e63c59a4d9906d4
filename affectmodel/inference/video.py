"""Video: read with PyAV, detect and track faces, predict in batches, smooth, annotate.

Everything streams: frames are decoded one at a time, the crops of at most ``buffer_frames``
processed frames (and, for an annotated video, at most ``buffer_bytes`` of frames) wait for a
batched forward pass, results are yielded as soon as they are ready, and the
annotated video is encoded as it goes. Memory therefore does not grow with video length.

Rows are 0-based frame indices of the source video with the frame's time in seconds; only every
``every``-th frame is processed. Faces are detected on the whole frame every ``detect_every``
processed frames; in between (default ``follow=True``) each tracked face is moved by sparse
optical flow from the previous frame (:func:`~affectmodel.inference.tracking.follow_tracks`), and the
whole frame is detected again at once when a face is lost or the frame changed outside the tracked
faces (a face may have entered). The defaults find the same faces per frame as detecting every
frame, in nearly the same places, at about twice its speed (``benchmarks/video_e2e.py``).
"""
from __future__ import annotations

import errno
import os
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import av.container
import av.video.stream
import numpy as np
from PIL import Image

from ..images import ImageLoadError, frame_count, frame_durations, is_image_file, iter_image_frames
from ..model_config import anchor_position
from .draw import draw_predictions
from .faces import Face
from .predictor import Predictor
from .smoothing import TrackSmoother
from .temporal_stream import TemporalStream
from .tracking import IoUTracker, follow_tracks, motion_thumbnail, new_face_possible

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts")
DEFAULT_FPS = Fraction(25)

ProgressCallback = Callable[[float], None]


class VideoLoadError(ValueError):
    """A video could not be read: not a video, no video stream, no frames, or broken data."""


def is_video_file(path: str | os.PathLike) -> bool:
    """True when the file name has a known video suffix (no I/O)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


# ------------------------------------------------------------------ reading

@dataclass(frozen=True)
class VideoInfo:
    path: str
    width: int
    height: int
    fps: float
    frame_count: int | None   # from the container; an estimate for some formats, None if unknown
    duration_s: float | None
    codec: str


@dataclass
class VideoFrame:
    index: int          # 0-based index in the source video
    time_s: float       # presentation time from the start of the stream
    image: np.ndarray   # (H, W, 3) uint8 RGB, display orientation


def _open(path: str | os.PathLike) -> av.container.InputContainer:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video not found: {path}")
    if path.stat().st_size == 0:
        raise VideoLoadError(f"{path}: empty file")
    cut = _iso_media_truncation(path)
    if cut is not None:
        raise VideoLoadError(f"{path}: {cut}")
    try:
        container = av.open(str(path), mode="r")
    except av.FFmpegError as e:
        raise VideoLoadError(f"{path}: not a readable video ({e.strerror or e})") from None
    if not container.streams.video:
        container.close()
        raise VideoLoadError(f"{path}: the file has no video stream")
    return container


# The boxes an MP4 / MOV / 3GP file may start with (ISO base media file format, QuickTime).
_ISO_FIRST_BOXES = {b"ftyp", b"styp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot"}


def _megabytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"


def _iso_media_truncation(path: str | os.PathLike) -> str | None:
    """Why an MP4 / MOV / 3GP file is cut short, or None when it is whole (or not such a file).

    Every top-level box of these files declares its size, so a file cut short (an interrupted
    copy or download) ends inside a box, usually the media data (``mdat``). Only the box headers
    are read, nothing is decoded, so a truncated file is refused before any work is done. FFmpeg
    itself decodes what is there and stops early without an error: an MP4 with its index first
    (``faststart``, as phones write them) of 60 frames, cut at 80 %, gave 18 frames."""
    path = Path(path)
    size = path.stat().st_size
    seen: list[bytes] = []
    with open(path, "rb") as f:
        offset = 0
        while offset + 8 <= size:
            f.seek(offset)
            header = f.read(16)
            box_size, kind = struct.unpack(">I4s", header[:8])
            if box_size == 1 and len(header) == 16:
                box_size = struct.unpack(">Q", header[8:])[0]  # 64-bit size
            elif box_size == 0:
                box_size = size - offset  # the last box runs to the end of the file
            if (not seen and kind not in _ISO_FIRST_BOXES) or box_size < 8 \
                    or not all(32 <= c < 127 for c in kind):
                return None  # not ISO media, or bytes that are not a box: nothing to judge
            seen.append(kind)
            if offset + box_size > size:
                missing = offset + box_size - size
                share = f"at least {int(100 * missing / (offset + box_size))}% of the file is missing"  # rounded down
                name = kind.decode("ascii")
                where = "" if b"moov" in seen else ", before the index ('moov') that players need"
                return (f"truncated file: it ends inside its '{name}' box, {_megabytes(missing)} short "
                        f"({share}){where}; copy or download it again")
            offset += box_size
    if b"moov" in seen and not {b"mdat", b"moof"} & set(seen):
        return "truncated file: its index ('moov') is there but the media data ('mdat') is missing"
    return None


def _rate(stream) -> Fraction:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate > 0:
            return Fraction(rate)
    return DEFAULT_FPS


def _frame_count(stream, container, fps: Fraction) -> int | None:
    if stream.frames:
        return int(stream.frames)
    if stream.duration is not None and stream.time_base is not None:
        return max(1, round(float(stream.duration * stream.time_base * fps)))
    if container.duration:
        return max(1, round(container.duration / av.time_base * float(fps)))
    return None


def is_animated_image(path: str | os.PathLike) -> bool:
    """An image file with more than one frame (animated GIF, WebP or PNG): read as a short video,
    every frame with its own time, by :func:`probe_video` and :func:`iter_frames` (FFmpeg cannot
    decode animated WebP)."""
    return is_image_file(path) and Path(path).is_file() and frame_count(path) > 1


def _animated_frames(path: str | os.PathLike) -> Iterator[tuple[float, np.ndarray]]:
    try:
        yield from iter_image_frames(path)
    except ImageLoadError as e:
        raise VideoLoadError(str(e)) from None


def _probe_animated(path: str | os.PathLike) -> VideoInfo:
    try:
        durations = frame_durations(path)
    except ImageLoadError as e:
        raise VideoLoadError(str(e)) from None
    with Image.open(path) as image:
        width, height, codec = image.width, image.height, (image.format or "image").lower()
    duration = sum(durations)
    return VideoInfo(str(path), width, height, len(durations) / duration, len(durations), round(duration, 6), codec)


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Size, frame rate, frame count and codec from the container (nothing is decoded; an
    animated image is read through once for its frame times)."""
    if is_animated_image(path):
        return _probe_animated(path)
    with _open(path) as container:
        stream = container.streams.video[0]
        fps = _rate(stream)
        count = _frame_count(stream, container, fps)
        duration = (float(stream.duration * stream.time_base)
                    if stream.duration is not None and stream.time_base is not None
                    else (container.duration / av.time_base if container.duration else None))
        return VideoInfo(str(path), stream.codec_context.width, stream.codec_context.height, float(fps),
                         count, duration, stream.codec_context.name)


def iter_frames(path: str | os.PathLike, every: int = 1, max_frames: int | None = None) -> Iterator[VideoFrame]:
    """Decode frames one by one, yielding every ``every``-th (0, k, 2k, ...) as RGB, upright.

    ``max_frames`` stops after that many source frames. Raises :class:`VideoLoadError` when the
    file is not a video, has no frames, or its data is broken, and, after the last frame, when
    the frames end well before the length the container declares (a truncated file: see
    :func:`_frames_shortfall`).
    """
    if every < 1:
        raise ValueError(f"every must be at least 1, got {every}")
    if is_animated_image(path):
        for index, (t, image) in enumerate(_animated_frames(path)):
            if max_frames is not None and index >= max_frames:
                return
            if index % every == 0:
                yield VideoFrame(index, round(t, 6), image)
        return
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame threading: decoding is a large share of the time
        fps = _rate(stream)
        start = (stream.start_time * stream.time_base
                 if stream.start_time is not None and stream.time_base is not None else None)
        index, last_time = -1, 0.0
        try:
            for frame in container.decode(stream):
                index += 1
                if max_frames is not None and index >= max_frames:
                    break
                if frame.time is not None:
                    t = float(frame.time - (start if start is not None else 0))
                else:
                    t = float(index / fps)
                last_time = t
                if index % every:
                    continue  # decoded (needed for the next frames) but not converted
                yield VideoFrame(index, round(t, 6), _upright(frame.to_ndarray(format="rgb24"), frame))
            else:
                shortfall = _frames_shortfall(container, stream, fps, index + 1, last_time) if index >= 0 else None
                if shortfall is not None:
                    raise VideoLoadError(f"{path}: {shortfall}")
        except av.FFmpegError as e:
            raise VideoLoadError(f"{path}: broken video data after {index + 1} frames ({e.strerror or e})") from None
        if index < 0:
            raise VideoLoadError(f"{path}: the video has no frames")
    finally:
        container.close()


def _declared_seconds(container: av.container.InputContainer, stream) -> float | None:
    """The video stream's length as the container declares it, or None where it declares none
    that belongs to the video alone."""
    if stream.duration and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    tag = (stream.metadata or {}).get("DURATION")  # Matroska / WebM: per track, "HH:MM:SS.nnnnnnnnn"
    if tag:
        try:
            hours, minutes, seconds = tag.split(":")
            return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
        except ValueError:
            pass
    if container.duration and len(container.streams) == 1:  # the file's length is the video's
        return container.duration / av.time_base
    return None


def _frames_shortfall(container: av.container.InputContainer, stream, fps: Fraction, decoded: int,
                     last_time: float) -> str | None:
    """Why the ``decoded`` frames (the last at ``last_time`` s) are fewer than the container
    declares, or None. MP4 / MOV files are checked byte by byte before decoding
    (:func:`_iso_media_truncation`) and skipped here: their frame counts include frames that an
    edit list hides. Elsewhere the declared length is the stream's duration or frame count; more
    than two frames and 2 % of it missing means a truncated file. Formats that declare no length
    (MPEG-TS, raw streams) cannot be checked."""
    if any(name in ("mov", "mp4") for name in container.format.name.split(",")):
        return None
    declared = _declared_seconds(container, stream)
    counted = stream.frames / float(fps) if stream.frames else None
    if declared is None and counted is None:
        return None
    declared = max(declared or 0.0, counted or 0.0)
    covered = last_time + 1 / float(fps)
    missing = declared - covered
    if missing <= max(2 / float(fps), 0.02 * declared):
        return None
    of_frames = f" of {stream.frames}" if stream.frames else ""
    return (f"truncated video: {decoded}{of_frames} frames could be decoded, covering {covered:.1f} s of the "
            f"{declared:.1f} s the file declares ({missing / declared:.0%} missing); copy or download it again")


def _upright(image: np.ndarray, frame: av.VideoFrame) -> np.ndarray:
    """Apply the display rotation that phones store as metadata instead of rotating pixels."""
    try:
        rotation = frame.rotation
    except Exception:  # noqa: BLE001 - missing/odd side data: show the pixels as stored
        return image
    turns = round((rotation or 0) / 90) % 4
    return np.ascontiguousarray(np.rot90(image, k=turns)) if turns else image


# ------------------------------------------------------------------ writing

def _video_write_error(error: Exception, path: Path) -> OSError:
    """One line naming the video the user asked for (never the hidden temporary file); a full
    disk says so."""
    errno_ = getattr(error, "errno", None)
    text = str(error)
    if errno_ in (errno.ENOSPC, errno.EDQUOT) or "No space left" in text:
        from ..io import DiskFullError  # the project's one disk-full error
        message = (f"disk full ({os.strerror(errno.ENOSPC)}): cannot write the annotated video {path.name} in "
                   f"{path.parent}; nothing was left behind")
        return DiskFullError(message)
    reason = getattr(error, "strerror", None) or text or error.__class__.__name__
    return OSError(errno_ or errno.EIO, f"cannot write the annotated video: {reason}", str(path))


class AnnotatedVideoWriter:
    """H.264 (libx264, yuv420p, even size) MP4 with the index at the front (``faststart``), so it
    plays in a browser while downloading. Use as a context manager; ``write(rgb)`` per frame.

    The video is written to a hidden temporary file beside ``path`` and renamed on :meth:`close`:
    a failure (full disk, error, interruption) leaves no partial video (:meth:`abort`), and every
    error names ``path``."""

    def __init__(self, path: str | os.PathLike, fps: float | Fraction, crf: int = 23, preset: str = "veryfast"):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise _video_write_error(e, self.path) from None
        self._tmp = self.path.with_name(f".{self.path.stem}.{os.getpid()}.{id(self):x}.tmp{self.path.suffix or '.mp4'}")
        self.fps = Fraction(fps).limit_denominator(1001) if fps and fps > 0 else DEFAULT_FPS
        self.crf, self.preset = crf, preset
        self._container: av.container.OutputContainer | None = None
        self._stream: av.video.stream.VideoStream | None = None
        self._count = 0

    def __enter__(self) -> AnnotatedVideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _start(self, width: int, height: int) -> None:
        try:
            container = av.open(str(self._tmp), mode="w", format="mp4", options={"movflags": "+faststart"})
        except (OSError, av.FFmpegError) as e:
            raise _video_write_error(e, self.path) from None
        self._container = container
        stream = container.add_stream("libx264", rate=self.fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.time_base = 1 / self.fps
        stream.options = {"crf": str(self.crf), "preset": self.preset}
        self._stream = stream
        self._size = (width, height)

    def write(self, image: np.ndarray) -> None:
        h, w = image.shape[:2]
        w2, h2 = w - w % 2, h - h % 2  # yuv420p needs even sides: drop the last odd column/row
        if w2 < 2 or h2 < 2:
            raise ValueError(f"frame of {w}x{h} pixels is too small to encode")
        if self._container is None:
            self._start(w2, h2)
        elif (w2, h2) != self._size:
            raise ValueError(f"frame size changed from {self._size[0]}x{self._size[1]} to {w2}x{h2}")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[:h2, :w2]), format="rgb24")
        frame.pts = self._count
        self._count += 1
        container, stream = self._container, self._stream
        assert container is not None and stream is not None  # _start sets both
        try:
            for packet in stream.encode(frame):
                container.mux(packet)
        except (OSError, av.FFmpegError) as e:
            self.abort()
            raise _video_write_error(e, self.path) from None

    def close(self) -> None:
        """Finish the video and move it into place."""
        container, stream = self._container, self._stream
        if container is None:
            return
        assert stream is not None  # _start sets both
        try:
            for packet in stream.encode():  # flush delayed frames
                container.mux(packet)
            container.close()
            self._container = None
            os.replace(self._tmp, self.path)
        except (OSError, av.FFmpegError) as e:
            self.abort()
            raise _video_write_error(e, self.path) from None

    def abort(self) -> None:
        """Drop the unfinished video: no partial file is left."""
        container, self._container = self._container, None
        if container is not None:
            try:
                container.close()
            except (OSError, av.FFmpegError):
                pass  # the file is being removed anyway
        self._tmp.unlink(missing_ok=True)

    @property
    def frames_written(self) -> int:
        return self._count


# ------------------------------------------------------------------ prediction

@dataclass
class VideoOptions:
    every: int = 1                 # process every k-th source frame
    detect_every: int = 10         # full-frame detection at least every n-th processed frame
    follow: bool = True            # between full detections: move tracked faces by optical flow,
                                   # detect the whole frame when one is lost or something else moved
    smoothing: str | None = None   # None, "mean" or "ema"
    smooth_window: int = 5         # frames (processed frames) for smoothing
    iou_threshold: float = 0.3
    max_missed: int = 2            # detection rounds a track survives without a match
    max_frames: int | None = None  # stop after this many source frames
    # Processed frames gathered into one forward pass: batches of 32 faces cost ~15 % less per face
    # than batches of 8 on CPU (benchmarks/RESULTS.md). Only the crops wait, unless the video is
    # annotated: then the frames wait too, at most buffer_bytes of them (a 4K frame is 25 MB).
    buffer_frames: int = 32
    buffer_bytes: int = 256 * 2**20

    def __post_init__(self) -> None:
        for name in ("every", "detect_every", "smooth_window", "buffer_frames", "buffer_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.smoothing is not None and self.smoothing not in ("mean", "ema"):
            raise ValueError(f"smoothing must be None, 'mean' or 'ema', got {self.smoothing!r}")


@dataclass
class FramePrediction:
    frame: int
    time_s: float
    faces: list[dict] = field(default_factory=list)  # records with "track_id", left to right

    def rows(self) -> list[dict]:
        """Per-face rows: ``frame``, ``time_s``, ``track_id`` then the face record."""
        return [{"frame": self.frame, "time_s": self.time_s, **face} for face in self.faces]


@dataclass
class _Pending:
    index: int
    time_s: float
    image: np.ndarray | None  # kept only for the annotated video
    tracked: list[tuple[int, Face]]
    crops: list[np.ndarray]


def iter_video_predictions(predictor: Predictor, path: str | os.PathLike, options: VideoOptions | None = None,
                           annotate_to: str | os.PathLike | None = None,
                           progress: ProgressCallback | None = None) -> Iterator[FramePrediction]:
    """Predict on a video frame by frame; yields one :class:`FramePrediction` per processed frame
    (also frames without faces). ``annotate_to`` writes an annotated H.264 MP4 alongside;
    ``progress(fraction)`` is called as frames are done (at most about 200 times)."""
    options = options or VideoOptions()
    info = probe_video(path)
    total = info.frame_count
    if options.max_frames is not None:
        total = min(total or options.max_frames, options.max_frames)
    tracker = IoUTracker(options.iou_threshold, options.max_missed)
    smoother = TrackSmoother(options.smoothing, options.smooth_window) if options.smoothing else None
    stream = temporal_stream(predictor)
    model_config = predictor.config
    if model_config.temporal == "smooth" and smoother is None:  # a model that is per-frame + its own smoothing
        smoother = TrackSmoother("mean", model_config.window)
    writer = AnnotatedVideoWriter(annotate_to, Fraction(info.fps).limit_denominator(1001) / options.every) \
        if annotate_to is not None else None
    reporter = _Progress(progress, total)
    pending: list[_Pending] = []
    try:
        # faces are followed only where there is something between full detections
        following = options.follow and options.detect_every > 1
        since_detection, previous, previous_image = 0, None, None
        for frame in iter_frames(path, options.every, options.max_frames):
            thumbnail = motion_thumbnail(frame.image) if following else None
            tracked: list[tuple[int, Face]] | None = None
            if since_detection % options.detect_every:  # no full detection due on this frame
                tracked = tracker.current()
                if thumbnail is not None:
                    if previous_image is None or new_face_possible(previous, thumbnail, frame.image.shape, tracked):
                        tracked = None
                    else:
                        tracked = follow_tracks(previous_image, frame.image, tracked)
                        if tracked is not None:
                            tracker.follow(tracked)
            if tracked is None:  # full-frame detection: scheduled, or a track lost / a new face possible
                tracked = tracker.update(predictor.detect(frame.image))
                if smoother is not None:
                    smoother.retain(tracker.active_ids)
                since_detection = 0
            since_detection += 1
            previous, previous_image = thumbnail, frame.image
            crops = predictor.crops(frame.image, [f for _, f in tracked])
            pending.append(_Pending(frame.index, frame.time_s, frame.image if writer is not None else None,
                                    tracked, crops))
            held = sum(p.image.nbytes for p in pending if p.image is not None)
            if (len(pending) >= options.buffer_frames or held >= options.buffer_bytes
                    or sum(len(p.crops) for p in pending) >= predictor.batch_size):
                yield from _flush(predictor, pending, smoother, writer, reporter, stream)
                pending = []
        yield from _flush(predictor, pending, smoother, writer, reporter, stream, final=True)
    except BaseException:  # also a consumer that stops early: an unfinished video is not kept
        if writer is not None:
            writer.abort()
        raise
    if writer is not None:
        writer.close()
    reporter.done()


def temporal_stream(predictor: Predictor) -> TemporalStream | None:
    """The per-track windows of a temporal model (None for a per-frame one)."""
    if not predictor.temporal:
        return None
    config = predictor.config
    return TemporalStream(config.window, anchor_position(config.window, config.causal))


def _temporal_outputs(predictor: Predictor, pending: list[_Pending], stream: TemporalStream, final: bool
                      ) -> tuple[list[_Pending], dict[str, np.ndarray]]:
    """Trunk features of the pending frames' faces into the stream; the frames it completes and
    their faces' outputs (one batched pass over all their windows)."""
    crops = [c for p in pending for c in p.crops]
    features = predictor.features(crops) if crops else None
    offset = 0
    for p in pending:
        k = len(p.crops)
        rows = features[offset:offset + k] if features is not None else np.zeros((0, 0), np.float32)
        stream.push(p, [track_id for track_id, _ in p.tracked], rows)
        offset += k
    done = stream.ready(final)
    windows = [w for _, w in done if len(w)]
    outputs = predictor.window_outputs(np.concatenate(windows), stream.anchor) if windows else {}
    return [p for p, _ in done], outputs


def _flush(predictor: Predictor, pending: list[_Pending], smoother: TrackSmoother | None,
           writer: AnnotatedVideoWriter | None, reporter: _Progress, stream: TemporalStream | None = None,
           final: bool = False) -> Iterator[FramePrediction]:
    if stream is not None:
        pending, outputs = _temporal_outputs(predictor, pending, stream, final)
    else:
        crops = [c for p in pending for c in p.crops]
        outputs = predictor.forward(crops) if crops else {}
    if not pending:
        return
    offset = 0
    for p in pending:
        k = len(p.crops)
        faces = []
        for j, (track_id, face) in enumerate(p.tracked):
            one = {key: value[offset + j] for key, value in outputs.items()}
            if smoother is not None:
                one = smoother.update(track_id, one)
            record = predictor.to_records({key: value[None] for key, value in one.items()}, [face])[0]
            faces.append({"track_id": track_id, **record})
        offset += k
        if writer is not None and p.image is not None:
            writer.write(draw_predictions(p.image, faces))
        reporter.step(p.index + 1)
        yield FramePrediction(p.index, p.time_s, faces)


class _Progress:
    def __init__(self, callback: ProgressCallback | None, total: int | None):
        self.callback, self.total, self.last = callback, total, -1.0

    def step(self, frames_done: int) -> None:
        if self.callback is None or not self.total:
            return
        fraction = min(1.0, frames_done / self.total)
        if fraction - self.last >= 0.005:
            self.last = fraction
            self.callback(fraction)

    def done(self) -> None:
        if self.callback is not None and self.last < 1.0:
            self.callback(1.0)


def predict_video(predictor: Predictor, path: str | os.PathLike, options: VideoOptions | None = None,
                  annotate_to: str | os.PathLike | None = None,
                  progress: ProgressCallback | None = None) -> list[dict]:
    """All per-face rows of a video (``frame``, ``time_s``, ``track_id``, ``box``, ``score`` and the
    outputs). Rows are small; use :func:`iter_video_predictions` to stream very long videos."""
    return [row for fp in iter_video_predictions(predictor, path, options, annotate_to, progress) for row in fp.rows()]


def write_video_frames(path: str | os.PathLike, frames: Sequence[np.ndarray] | Iterator[np.ndarray],
                       fps: float | Fraction = 25) -> int:
    """Encode RGB frames as H.264 MP4 (helper for tests, demos and examples); returns the count."""
    with AnnotatedVideoWriter(path, fps) as writer:
        for image in frames:
            writer.write(image)
        return writer.frames_written
