"""Write the demo's example images into demo/examples/ (run once; the JPEGs are committed).

scikit-image is only a test dependency, so its sample photo is turned into small files here
rather than loaded when the demo starts:

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
        "astronaut.jpg": Image.fromarray(astronaut).resize((384, 384), Image.LANCZOS),
        # two faces side by side (the second mirrored and darker) for the face selector
        "two_faces.jpg": Image.fromarray(np.concatenate(
            [astronaut, (astronaut[:, ::-1].astype(np.float32) * 0.8).astype(np.uint8)], axis=1)
        ).resize((640, 320), Image.LANCZOS),
        # a close crop of the face, as a face-tracking camera would send it
        "face_crop.jpg": Image.fromarray(astronaut[20:240, 120:340]).resize((224, 224), Image.LANCZOS),
    }
    paths = []
    for name, image in images.items():
        path = out_dir / name
        image.save(path, quality=85, optimize=True)
        paths.append(path)
    return paths


if __name__ == "__main__":
    for p in make_examples():
        print(f"wrote {p} ({p.stat().st_size // 1024} KiB)")
