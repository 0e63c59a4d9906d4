"""Annotation drawing shared by the video writer and the demo: boxes, labels, a valence/arousal marker.

Works on plain face records from :class:`~affectmodel.inference.predictor.Predictor` (optionally
with ``track_id``); uses Pillow only.
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Distinct, readable colours; a track keeps its colour.
PALETTE = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128))


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: fixed bitmap font
        return ImageFont.load_default()


def face_label(record: dict, max_aus: int = 3) -> str:
    """Short caption: ``#id`` (if tracked), top expression and its probability, else the most
    likely active AUs, else valence/arousal."""
    parts = []
    if record.get("track_id") is not None:
        parts.append(f"#{record['track_id']}")
    probs = record.get("expression")
    if probs:
        label = max(probs, key=probs.get)
        parts.append(f"{label} {probs[label]:.2f}")
    elif record.get("aus"):
        active = [au for au, on in record.get("aus_active", {}).items() if on]
        active = sorted(active, key=lambda au: -record["aus"][au])[:max_aus]
        parts.append(" ".join(active) if active else "no AU")
    elif "valence" in record:
        parts.append(f"V {record['valence']:+.2f} A {record['arousal']:+.2f}")
    return " ".join(parts)


def draw_predictions(image: np.ndarray, records: Sequence[dict], line_width: int | None = None) -> np.ndarray:
    """A copy of ``image`` (H, W, 3 uint8 RGB) with each face's box, caption and, when the model
    predicts valence/arousal, a small circumplex marker (x = valence, y = arousal, up = +)."""
    canvas = Image.fromarray(np.ascontiguousarray(image))
    draw = ImageDraw.Draw(canvas)
    h, w = image.shape[:2]
    lw = line_width or max(1, round(min(h, w) / 240))
    font = _font(max(10, round(min(h, w) / 30)))
    for i, rec in enumerate(records):
        if "box" not in rec:
            continue
        colour = PALETTE[(rec.get("track_id", i + 1) - 1) % len(PALETTE)]
        x1, y1, x2, y2 = rec["box"]
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=lw)
        text = face_label(rec)
        if text:
            tx0, ty0, tx1, ty1 = draw.textbbox((0, 0), text, font=font)
            tw, th = tx1 - tx0, ty1 - ty0
            ty = y1 - th - 2 * lw - 2 if y1 - th - 2 * lw - 2 >= 0 else y2 + lw
            draw.rectangle([x1, ty, x1 + tw + 4, ty + th + 4], fill=colour)
            draw.text((x1 + 2 - tx0, ty + 2 - ty0), text, fill=(255, 255, 255), font=font)
        if "valence" in rec and "arousal" in rec:
            _va_marker(draw, (x2 + lw + 2, y1), max(24, round((y2 - y1) / 3)), rec["valence"], rec["arousal"], colour)
    return np.asarray(canvas)


def _va_marker(draw: ImageDraw.ImageDraw, origin: tuple[float, float], size: int, valence: float,
               arousal: float, colour: tuple[int, int, int]) -> None:
    x0, y0 = origin
    draw.rectangle([x0, y0, x0 + size, y0 + size], fill=(255, 255, 255), outline=(80, 80, 80))
    cx, cy = x0 + size / 2, y0 + size / 2
    draw.line([x0, cy, x0 + size, cy], fill=(170, 170, 170))
    draw.line([cx, y0, cx, y0 + size], fill=(170, 170, 170))
    px = cx + float(np.clip(valence, -1, 1)) * size / 2
    py = cy - float(np.clip(arousal, -1, 1)) * size / 2
    r = max(2, size // 10)
    draw.ellipse([px - r, py - r, px + r, py + r], fill=colour, outline=(0, 0, 0))
