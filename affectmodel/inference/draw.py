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
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: fixed bitmap font
        return ImageFont.load_default()


def face_label(record: dict, max_aus: int = 3) -> str:
    """Short caption: ``#id`` (the track in a video, else the face number of an image when the
    record has one), top expression and its probability, else the most likely active AUs, else
    valence/arousal."""
    parts = []
    number = record.get("track_id", record.get("face"))
    if number is not None:
        parts.append(f"#{number}")
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
    predicts valence/arousal, a small circumplex marker (x = valence, y = arousal, up = +).

    Captions and markers stay inside the image: a caption above the box (below it when there is no
    room), shifted left at the right edge; the marker right of the box, else left of it, else inside
    its top-right corner."""
    canvas = Image.fromarray(np.ascontiguousarray(image))
    draw = ImageDraw.Draw(canvas)
    h, w = image.shape[:2]
    lw = line_width or max(1, round(min(h, w) / 240))
    font = _font(max(10, round(min(h, w) / 30)))
    for i, rec in enumerate(records):
        if "box" not in rec:
            continue
        colour = PALETTE[(rec.get("track_id", rec.get("face", i + 1)) - 1) % len(PALETTE)]
        x1, y1, x2, y2 = rec["box"]
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=lw)
        text = _fitting(draw, face_label(rec), font, w - 5)
        if text:
            tx0, ty0, tx1, ty1 = draw.textbbox((0, 0), text, font=font)
            tw, th = tx1 - tx0, ty1 - ty0
            ty = y1 - th - 2 * lw - 2 if y1 - th - 2 * lw - 2 >= 0 else min(y2 + lw, h - th - 4)
            tx = _inside(x1, tw + 4, w)
            draw.rectangle([tx, ty, tx + tw + 4, ty + th + 4], fill=colour)
            draw.text((tx + 2 - tx0, ty + 2 - ty0), text, fill=(255, 255, 255), font=font)
        if "valence" in rec and "arousal" in rec:
            size = min(max(24, round((y2 - y1) / 3)), w, h)
            if x2 + lw + 2 + size <= w:
                mx = x2 + lw + 2
            elif x1 - lw - 2 - size >= 0:
                mx = x1 - lw - 2 - size
            else:
                mx = _inside(x2 - lw - size, size, w)
            _va_marker(draw, (mx, _inside(y1, size, h)), size, rec["valence"], rec["arousal"], colour)
    return np.asarray(canvas)


def _fitting(draw: ImageDraw.ImageDraw, text: str, font, width: float) -> str:
    """``text``, cut short with an ellipsis where it is wider than ``width`` pixels (a tiny image)."""
    if not text or draw.textlength(text, font=font) <= width:
        return text
    while len(text) > 1 and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text.rstrip() + "…"


def _inside(start: float, length: float, limit: int) -> float:
    """``start`` moved so that ``[start, start + length]`` lies within ``[0, limit - 1]`` (at 0 when longer)."""
    return max(0.0, min(float(start), limit - 1 - length))


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
