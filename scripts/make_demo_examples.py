"""Write the demo's examples into demo/examples/ (run once; the small files are committed).

Two kinds: a real photo (scikit-image's astronaut; scikit-image is only a test dependency, so it
is turned into small files here rather than loaded when the demo starts), and faces from the
synthetic benchmark's renderer, on which the default demo model (trained on that benchmark) gives
meaningful answers:

    python scripts/make_demo_examples.py
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "demo" / "examples"


def make_examples(out_dir: Path = EXAMPLES_DIR) -> list[Path]:
    from skimage import data  # test-only dependency, needed just for this script

    out_dir.mkdir(parents=True, exist_ok=True)
    astronaut = data.astronaut()  # 512x512 RGB portrait (public domain, NASA)
    images = {
        # one face
        "astronaut.jpg": Image.fromarray(astronaut).resize((384, 384), Image.Resampling.LANCZOS),
        # two faces side by side (the second mirrored and darker) for the face selector
        "two_faces.jpg": Image.fromarray(np.concatenate(
            [astronaut, (astronaut[:, ::-1].astype(np.float32) * 0.8).astype(np.uint8)], axis=1)
        ).resize((640, 320), Image.Resampling.LANCZOS),
        # a close crop of the face, as a face-tracking camera would send it
        "face_crop.jpg": Image.fromarray(astronaut[20:240, 120:340]).resize((224, 224), Image.Resampling.LANCZOS),
    }
    images["synthetic_faces.jpg"] = synthetic_faces()
    paths = []
    for name, image in images.items():
        path = out_dir / name
        image.save(path, quality=85, optimize=True)
        paths.append(path)
    paths.append(synthetic_clip(out_dir / "synthetic_clip.mp4"))
    return paths


def synthetic_faces(expressions=("Happiness", "Surprise", "Sadness", "Anger"), size: int = 160,
                    seed: int = 1) -> Image.Image:
    """Four synthetic faces at full intensity, side by side (left to right as named)."""
    from affectmodel.data.synthetic import prototype_intensities
    from affectmodel.data.synthetic_faces import render_face, sample_identity

    rng = np.random.default_rng(seed)
    background = (200, 200, 205)
    tiles = []
    for name in expressions:
        au, hidden = prototype_intensities(name, 1.0, rng)
        face = render_face(au, sample_identity(rng), size, background=background, hidden_au=hidden)
        tiles.append(np.asarray(face.convert("RGB")))
    row = np.concatenate(tiles, axis=1)
    pad = np.full((size // 8, row.shape[1], 3), background, np.uint8)
    return Image.fromarray(np.concatenate([pad, row, pad], axis=0))


def synthetic_clip(path: Path, frames: int = 60, fps: int = 10, size: int = 176, seed: int = 3) -> Path:
    """A 6-second synthetic sequence whose expression changes over time (for the video tab)."""
    from affectmodel.data.synthetic import sample_sequence
    from affectmodel.inference import write_video_frames

    sequence = sample_sequence(frames, np.random.default_rng(seed))
    canvas = (320, 240)
    images = []
    for t in range(len(sequence)):
        frame = np.full((canvas[1], canvas[0], 3), 40, np.uint8)
        face = np.asarray(sequence.render(t, size).convert("RGB"))
        y, x = (canvas[1] - size) // 2, (canvas[0] - size) // 2
        frame[y:y + size, x:x + size] = face
        images.append(frame)
    write_video_frames(path, images, fps=fps)
    return path


if __name__ == "__main__":
    for p in make_examples():
        print(f"wrote {p} ({p.stat().st_size // 1024} KiB)")
