"""Hand-written miniature Aff-Wild2 installations (both annotation layouts) for reader tests."""
from __future__ import annotations

from pathlib import Path

from PIL import Image

from affectmodel.data.layout import MTL_FILES
from affectmodel.tasks import ABAW7, ABAW8, AU_NAMES

EXPR_HEADER = ",".join(ABAW8.labels)
EXPR7_HEADER = ",".join(ABAW7.labels)
AU_HEADER = ",".join(AU_NAMES)
VA_HEADER = "valence,arousal"
NEWER = {"expr": "EXPR_Recognition_Challenge", "au": "AU_Detection_Challenge", "va": "VA_Estimation_Challenge"}
OLDER = {"expr": "EXPR_Set", "au": "AU_Set", "va": "VA_Set"}
SPLITS = {"newer": {"train": "Train_Set", "validation": "Validation_Set"},
          "older": {"train": "Training_Set", "validation": "Validation_Set"}}


def write_image(path: Path, value: int = 128, size: int = 8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), (value, 255 - value, 60)).save(path, format="JPEG")
    return path


def write_images(root: Path, video: str, frames: list[int]) -> None:
    for f in frames:
        write_image(root / "cropped_aligned" / video / f"{f:05d}.jpg", value=(f * 37) % 256)


def write_task_file(root: Path, layout: str, task: str, split: str, video: str, lines: list[str],
                    header: str | None = None, ann_dir: str = "annotations", newline: str = "\n") -> Path:
    folders = NEWER if layout == "newer" else OLDER
    path = root / ann_dir / folders[task] / SPLITS[layout][split] / f"{video}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    header = header or {"expr": EXPR_HEADER, "au": AU_HEADER, "va": VA_HEADER}[task]
    path.write_bytes((newline.join([header, *lines]) + newline).encode())
    return path


def au_line(*on: int, invalid: bool = False) -> str:
    if invalid:
        return ",".join(["-1"] * 12)
    return ",".join("1" if i in on else "0" for i in range(12))


def make_miniature(root: Path, layout: str = "newer") -> Path:
    """Two training videos (one a ``_left`` face) and one validation video.

    train/vidA (5 frames; image 4 absent):  EXPR 0,4,-1,6,7   AU on frames 1-3 (2 invalid)
    train/vid9_left (3 frames):             EXPR only, 1,2,3 (Windows line endings, trailing empty line)
    train/vidB (3 frames, no EXPR/AU file): VA only, frame 2 = -5
    validation/vidV (2 frames):             all three tasks
    """
    write_images(root, "vidA", [1, 2, 3, 5])
    write_images(root, "vid9_left", [1, 2, 3])
    write_images(root, "vidB", [1, 2, 3])
    write_images(root, "vidV", [1, 2])
    write_task_file(root, layout, "expr", "train", "vidA", ["0", "4", "-1", "6", "7"])
    write_task_file(root, layout, "au", "train", "vidA", [au_line(0, 1), au_line(invalid=True), au_line(6, 10)])
    write_task_file(root, layout, "va", "train", "vidB", ["0.5,0.25", "-5,-5", "-0.75,1"])
    path = write_task_file(root, layout, "expr", "train", "vid9_left", ["1", "2", "3"], newline="\r\n")
    path.write_bytes(path.read_bytes() + b"\r\n")
    write_task_file(root, layout, "expr", "validation", "vidV", ["5", "0"])
    write_task_file(root, layout, "au", "validation", "vidV", [au_line(2), au_line(7, 8, 9)])
    write_task_file(root, layout, "va", "validation", "vidV", ["-0.5,0.5", "0.1,-0.1"])
    return root


def write_mtl(root: Path, split: str, rows: list[str], folder: str = "MTL") -> Path:
    path = root / folder / MTL_FILES[split]
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "image,valence,arousal,expression," + AU_HEADER
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def make_study_tree(root: Path, videos: int = 20, frames: int = 3, validation: int = 4) -> Path:
    """``videos`` training videos ``t00``.. (EXPR on even ones, AU on all, VA on every third) and
    ``validation`` validation videos ``v00``.. (all tasks), each with ``frames`` frames, all labelled."""
    for i in range(videos):
        name = f"t{i:02d}"
        write_images(root, name, list(range(1, frames + 1)))
        if i % 2 == 0:
            write_task_file(root, "newer", "expr", "train", name, [str((i + f) % 8) for f in range(frames)])
        write_task_file(root, "newer", "au", "train", name, [au_line(f % 12) for f in range(frames)])
        if i % 3 == 0:
            write_task_file(root, "newer", "va", "train", name, ["0.1,0.2"] * frames)
    for i in range(validation):
        name = f"v{i:02d}"
        write_images(root, name, list(range(1, frames + 1)))
        write_task_file(root, "newer", "expr", "validation", name, ["1"] * frames)
        write_task_file(root, "newer", "au", "validation", name, [au_line(3)] * frames)
        write_task_file(root, "newer", "va", "validation", name, ["0.0,0.0"] * frames)
    return root
