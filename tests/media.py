"""Test media made on the fly: a real face photo (scikit-image's astronaut), images with several
faces, faceless images and short videos. Nothing is downloaded."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np


@lru_cache(maxsize=1)
def astronaut() -> np.ndarray:
    """512x512 RGB photo with one frontal face at about x 177-272, y 56-176."""
    from skimage import data

    img = data.astronaut()
    img.setflags(write=False)
    return img


def face_tile(height: int = 120) -> np.ndarray:
    """The astronaut's head and shoulders (face roughly centred), resized to ``height`` rows."""
    tile = astronaut()[20:260, 130:330]  # 240 x 200
    width = round(height * tile.shape[1] / tile.shape[0])
    return cv2.resize(tile, (width, height), interpolation=cv2.INTER_AREA)


def faces_image(n: int, height: int = 120, gap: int = 20, background: int = 128) -> tuple[np.ndarray, list[float]]:
    """``n`` faces side by side on a grey canvas; returns the image and each tile's centre x."""
    tile = face_tile(height)
    th, tw = tile.shape[:2]
    width = max(64, n * tw + (n + 1) * gap)
    canvas = np.full((th + 2 * gap, width, 3), background, np.uint8)
    centres = []
    for i in range(n):
        x = gap + i * (tw + gap)
        canvas[gap:gap + th, x:x + tw] = tile
        centres.append(x + tw / 2)
    return canvas, centres


def noise_image(height: int = 120, width: int = 160, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def gradient_image(height: int = 120, width: int = 160) -> np.ndarray:
    x = np.linspace(0, 255, width, dtype=np.float32)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    return np.stack([np.broadcast_to(x, (height, width)), np.broadcast_to(y, (height, width)),
                     np.full((height, width), 90, np.float32)], axis=2).astype(np.uint8)


def moving_face_frames(n_frames: int, size: tuple[int, int] = (320, 180), step: int = 3, n_faces: int = 1,
                       face_height: int = 110) -> list[np.ndarray]:
    """Frames of ``size`` (width, height) with ``n_faces`` faces drifting right by ``step`` px per frame."""
    width, height = size
    tile = face_tile(face_height)
    th, tw = tile.shape[:2]
    frames = []
    for t in range(n_frames):
        canvas = np.full((height, width, 3), 110, np.uint8)
        for i in range(n_faces):
            x = 5 + i * (tw + 30) + t * step
            y = (height - th) // 2
            if x + tw <= width:
                canvas[y:y + th, x:x + tw] = tile
        frames.append(canvas)
    return frames


def write_video(path: str | Path, frames, fps: int = 10) -> Path:
    """H.264 MP4 of RGB frames (uses the package's own writer)."""
    from affectmodel.inference.video import write_video_frames

    write_video_frames(path, frames, fps)
    return Path(path)


def small_model_dir(tmp_path: Path, tasks=("expr", "au", "va"), input_size: int = 64, name: str = "model",
                    au_thresholds=None) -> Path:
    """A randomly initialised model saved as a model folder (outputs meaningless, schema real)."""
    import torch

    from affectmodel import AffectModel, ModelConfig

    torch.manual_seed(0)
    model = AffectModel(ModelConfig(tasks=list(tasks), input_size=input_size, au_thresholds=au_thresholds))
    return model.save(Path(tmp_path) / name)


def encode_video(path: str | Path, frames, fps: int = 10, codec: str = "libx264", faststart: bool = False,
                 pix_fmt: str = "yuv420p") -> Path:
    """Any container PyAV can write (chosen by the suffix), without the package's writer: an MP4
    written this way keeps its index (``moov``) at the end unless ``faststart``."""
    import av

    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = pix_fmt
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return Path(path)


def cut_file(path: str | Path, fraction: float, name: str | None = None) -> Path:
    """The first ``fraction`` of a file's bytes (an interrupted copy or download)."""
    path = Path(path)
    data = path.read_bytes()
    out = path.with_name(name or f"cut{round(fraction * 100)}_{path.name}")
    out.write_bytes(data[: int(len(data) * fraction)])
    return out


TRUNCATED_VIDEOS = ("cut50_phone.mp4", "cut80_phone.mp4", "cut97_phone.mp4", "cut50_index_last.mp4",
                    "cut80_clip.avi", "cut80_clip.mkv", "cut80_clip.webm")


def truncated_videos(root: str | Path, n_frames: int = 60) -> dict[str, Path]:
    """``TRUNCATED_VIDEOS``: whole ``n_frames`` videos cut short: an MP4 with its index first
    (``+faststart``, as phones and web tools write them: ``phone.mp4``) cut at 50, 80 and 97 %, one
    with its index last cut in half, AVI, Matroska and WebM files cut at 80 %. The whole files stay
    beside the cut ones. Faces drift across 160x96 frames."""
    root = Path(root)
    frames = moving_face_frames(n_frames, size=(160, 96), step=1, face_height=70)
    faststart = write_video(root / "phone.mp4", frames)  # the package's writer: +faststart
    index_last = encode_video(root / "index_last.mp4", frames)
    cuts = [cut_file(faststart, p / 100) for p in (50, 80, 97)] + [cut_file(index_last, 0.5)]
    cuts += [cut_file(encode_video(root / "clip.avi", frames, codec="mpeg4"), 0.8),
             cut_file(encode_video(root / "clip.mkv", frames), 0.8),
             cut_file(encode_video(root / "clip.webm", frames, codec="libvpx"), 0.8)]
    assert tuple(p.name for p in cuts) == TRUNCATED_VIDEOS
    return {p.name: p for p in cuts}


ANIMATION_MS = (100, 100, 200, 100, 0, 100, 100, 300)  # 0: shown for 100 ms, as browsers do
ANIMATION_TIMES = (0.0, 0.1, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8)


def animated_images(root: str | Path) -> dict[str, Path]:
    """The same 8 frames of a face drifting right as an animated GIF, WebP and PNG (APNG), each
    frame shown for ``ANIMATION_MS``."""
    from PIL import Image

    frames = [Image.fromarray(f) for f in moving_face_frames(len(ANIMATION_MS), size=(240, 150), step=4)]
    out = {}
    for suffix in ("gif", "webp", "png"):
        path = Path(root) / f"animated.{suffix}"
        frames[0].save(path, save_all=True, append_images=frames[1:], duration=list(ANIMATION_MS), loop=0)
        out[suffix] = path
    return out
