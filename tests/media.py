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
