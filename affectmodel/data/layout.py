"""Folder and file names of the Aff-Wild2 layouts, shared by the reader and the synthetic generator.

Torch-free and import-free, so the generator writes exactly what the reader looks for without
either importing the other. The reader also accepts variants (older ``{EXPR,AU,VA}_Set`` folders,
``Training_Set``); the first name of each tuple is the one the challenge's newer layout uses.
"""
from __future__ import annotations

IMAGE_DIRS: tuple[str, ...] = ("cropped_aligned", "cropped")
# Per-task annotation folders of the newer layout (ABAW 3+).
TASK_FOLDERS: dict[str, str] = {"expr": "EXPR_Recognition_Challenge", "au": "AU_Detection_Challenge",
                                "va": "VA_Estimation_Challenge"}
SPLIT_DIRS: dict[str, tuple[str, ...]] = {"train": ("Train_Set", "Training_Set"),
                                          "validation": ("Validation_Set", "Valid_Set")}
# The multi-task CSVs (s-Aff-Wild2), one per split.
MTL_FOLDER = "MTL_Challenge"
MTL_FILES: dict[str, str] = {"train": "training_set_annotations.txt", "validation": "validation_set_annotations.txt"}
# Two faces of one video are annotated as two tracks, ``<video>_left`` and ``<video>_right``.
TRACK_SUFFIXES: tuple[str, ...] = ("_left", "_right")


def base_video_name(video: str) -> str:
    """The video a track belongs to: ``"12-24-1920x1080_left"`` -> ``"12-24-1920x1080"``."""
    for suffix in TRACK_SUFFIXES:
        if video.endswith(suffix):
            return video[: -len(suffix)]
    return video


__all__ = ["IMAGE_DIRS", "MTL_FILES", "MTL_FOLDER", "SPLIT_DIRS", "TASK_FOLDERS", "TRACK_SUFFIXES", "base_video_name"]
