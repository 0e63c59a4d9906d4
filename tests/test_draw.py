"""affectmodel.inference.draw: captions and the valence/arousal marker stay inside the image."""
from __future__ import annotations

import numpy as np
import pytest

from affectmodel.inference.draw import PALETTE, draw_predictions, face_label

WHITE = (255, 255, 255)


def _record(box, **extra):
    probs = {"Neutral": 0.1, "Happiness": 0.9}
    return {"box": box, "score": 0.99, "expression": probs, "valence": 0.5, "arousal": -0.25, **extra}


def _count(image: np.ndarray, colour, rows=slice(None)) -> int:
    return int(np.all(image[rows] == colour, axis=-1).sum())


def _drawn(width: int, box, height: int = 120, **extra) -> np.ndarray:
    canvas = np.full((height, width, 3), 90, np.uint8)
    return draw_predictions(canvas, [_record(box, **extra)])


@pytest.mark.parametrize("width, box", [
    (200, [150, 40, 199, 100]),   # at the right edge: the marker goes left of the box, the caption shifts left
    (120, [2, 40, 118, 100]),     # the box spans the image: the marker goes inside its corner
    (200, [0, 40, 40, 100]),      # at the left edge
])
def test_caption_and_marker_are_whole_inside_the_image(width, box):
    reference = _drawn(600, [300, 40, 349, 100])  # the same face with room all round
    # box width and height as in the reference where possible: the marker size follows the box height
    edge = _drawn(width, box)
    # the marker: a white square; every one of its white pixels is drawn
    assert _count(edge, WHITE, slice(40, None)) == _count(reference, WHITE, slice(40, None)) > 0
    # the caption: a filled label above the box, all of it (its background around the text)
    above = slice(0, 40 - 1)
    assert _count(edge, PALETTE[0], above) == _count(reference, PALETTE[0], above) > 0


def test_caption_goes_below_a_box_at_the_top_and_stays_in_the_image():
    edge = _drawn(200, [120, 0, 199, 60], height=80)
    reference = _drawn(600, [300, 0, 379, 60], height=80)
    below = slice(61, None)
    assert _count(edge, PALETTE[0], below) == _count(reference, PALETTE[0], below) > 0


def test_a_caption_wider_than_the_image_is_cut_short_with_an_ellipsis():
    from PIL import Image, ImageDraw

    from affectmodel.inference.draw import _fitting, _font

    draw, font = ImageDraw.Draw(Image.new("RGB", (40, 40))), _font(10)
    assert _fitting(draw, "#1 Happiness 0.90", font, 200) == "#1 Happiness 0.90"
    cut = _fitting(draw, "#1 Happiness 0.90", font, 35)
    assert cut.endswith("…") and cut.startswith("#1") and draw.textlength(cut, font=font) <= 35
    drawn = _drawn(40, [2, 20, 38, 60], height=70)
    assert np.all(drawn[:19] == PALETTE[0], axis=-1).any()  # the cut caption is drawn


def test_captions_carry_the_face_number_or_the_track():
    assert face_label(_record([0, 0, 1, 1], face=2)).startswith("#2 Happiness 0.90")
    assert face_label(_record([0, 0, 1, 1], face=2, track_id=7)).startswith("#7 ")
    assert face_label(_record([0, 0, 1, 1])) == "Happiness 0.90"
