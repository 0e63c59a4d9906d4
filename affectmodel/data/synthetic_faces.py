"""Procedural cartoon faces whose geometry follows the 12 ABAW action-unit intensities.

Part of the synthetic affect benchmark (docs/DATA.md). A face is drawn with Pillow at
``supersample`` times the output size and downsampled (anti-aliasing). Geometry is computed in a
face frame (x right, y down, the head about 1.2 wide), lifted onto a simple ellipsoid head so
that yaw and pitch move the features plausibly, then rolled, scaled and shifted into the image.

AU intensities are in [0, 1] (0 = absent, 1 = maximal), in the order of ``affectmodel.tasks.AU_NAMES``:
AU1 AU2 AU4 AU6 AU7 AU10 AU12 AU15 AU23 AU24 AU25 AU26.
"""
from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from ..alignment import similarity_transform
from ..tasks import AU_NAMES

# Action units that shape real expressions but are not among the 12 labelled ones.
HIDDEN_AUS: tuple[str, ...] = ("AU5", "AU9", "AU17", "AU20")
RGB = tuple[int, int, int]


# ----------------------------------------------------------------------------- parameters

@dataclass(frozen=True)
class FaceParams:
    """Identity (who), pose (where) and appearance of one rendered face (lighting, blur and noise
    are applied afterwards: :class:`ImageNuisance`)."""

    # identity shape
    face_width: float = 0.60       # half-width of the head ellipse
    face_height: float = 0.80      # half-height (top to chin)
    jaw: float = 0.5               # 0 = round chin, 1 = narrow, pointed chin
    eye_spacing: float = 0.24      # distance of each eye centre from the midline
    eye_size: float = 1.0
    eye_height: float = -0.08      # y of the eye centres
    brow_thickness: float = 0.055
    brow_height: float = 0.0       # offset of both brows (negative = higher)
    nose_length: float = 1.0
    mouth_width: float = 1.0
    lip_thickness: float = 1.0
    # appearance
    skin: RGB = (214, 170, 140)
    hair: RGB = (60, 40, 25)
    hair_style: int = 1            # 0 none/shaved, 1 short, 2 long, 3 fringe
    iris: RGB = (80, 55, 35)
    glasses: bool = False
    # pose
    yaw: float = 0.0               # radians, + turns the face to the image's right
    pitch: float = 0.0             # radians, + tilts the chin down
    roll: float = 0.0              # degrees, in-plane rotation
    scale: float = 1.0             # 1.0 = the head fills about 80 % of the crop height
    shift: tuple[float, float] = (0.0, 0.0)  # fraction of the image size


def _lerp(a: Sequence[float], b: Sequence[float], t: float) -> tuple[float, ...]:
    return tuple(float(x + (y - x) * t) for x, y in zip(a, b, strict=True))


def sample_identity(rng: np.random.Generator) -> FaceParams:
    """A random person: head shape, feature sizes, skin tone, hair, eye colour, glasses."""
    tone = rng.uniform(0, 1)
    skin = _lerp((241, 208, 184), (92, 58, 42), tone)
    skin = tuple(int(np.clip(c + rng.normal(0, 6), 0, 255)) for c in skin)
    hair_palette = [(25, 20, 18), (60, 40, 25), (110, 70, 35), (170, 120, 60), (200, 170, 110),
                    (120, 115, 110), (140, 50, 30)]
    hair = hair_palette[int(rng.integers(len(hair_palette)))]
    iris_palette = [(70, 45, 25), (95, 65, 35), (60, 90, 120), (70, 100, 70), (40, 30, 25)]
    return FaceParams(
        face_width=float(rng.uniform(0.52, 0.64)),
        face_height=float(rng.uniform(0.74, 0.84)),
        jaw=float(rng.uniform(0.2, 0.8)),
        eye_spacing=float(rng.uniform(0.21, 0.26)),
        eye_size=float(rng.uniform(0.85, 1.15)),
        eye_height=float(rng.uniform(-0.11, -0.05)),
        brow_thickness=float(rng.uniform(0.045, 0.065)),
        brow_height=float(rng.uniform(-0.03, 0.03)),
        nose_length=float(rng.uniform(0.85, 1.15)),
        mouth_width=float(rng.uniform(0.85, 1.15)),
        lip_thickness=float(rng.uniform(0.7, 1.3)),
        skin=skin,  # type: ignore[arg-type]
        hair=hair,
        hair_style=int(rng.choice(4, p=[0.15, 0.4, 0.3, 0.15])),
        iris=iris_palette[int(rng.integers(len(iris_palette)))],
        glasses=bool(rng.random() < 0.12),
    )


# ----------------------------------------------------------------------------- geometry

def _quad(p0, p1, p2, n: int = 12) -> np.ndarray:
    """Points of the quadratic Bezier curve p0 -> p2 pulled towards p1."""
    t = np.linspace(0, 1, n)[:, None]
    p0, p1, p2 = (np.asarray(p, dtype=np.float64) for p in (p0, p1, p2))
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2


def _through(p0, pm, p2, n: int = 12) -> np.ndarray:
    """Quadratic curve that passes through ``pm`` at its middle."""
    pm = np.asarray(pm, dtype=np.float64)
    ctrl = 2 * pm - 0.5 * (np.asarray(p0, dtype=np.float64) + np.asarray(p2, dtype=np.float64))
    return _quad(p0, ctrl, p2, n)


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 40) -> np.ndarray:
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(a), cy + ry * np.sin(a)], axis=1)


class _Projector:
    """Face frame -> pixel coordinates of the supersampled canvas (pseudo-3D pose), then, when
    ``post`` is given, the 2x3 similarity that frames the face like an aligned crop."""

    def __init__(self, p: FaceParams, canvas: int, post: np.ndarray | None = None):
        self.p = p
        self.post = post
        self.post_scale = float(np.sqrt(abs(np.linalg.det(post[:, :2])))) if post is not None else 1.0
        self.canvas = canvas
        self.cy, self.sy = math.cos(p.yaw), math.sin(p.yaw)
        self.cp, self.sp = math.cos(p.pitch), math.sin(p.pitch)
        r = math.radians(p.roll)
        self.cr, self.sr = math.cos(r), math.sin(r)
        # like an aligned face crop: brows to chin fill most of the image at scale 1 (the top of
        # the head may be cut), so the expression features stay several pixels large at 64 px
        self.unit = canvas * 0.64 * p.scale
        self.centre = (canvas * (0.5 + p.shift[0]), canvas * (0.45 + p.shift[1]))

    def depth(self, pts: np.ndarray) -> np.ndarray:
        p = self.p
        q = 1 - (pts[:, 0] / (p.face_width * 1.05)) ** 2 - (pts[:, 1] / (p.face_height * 1.05)) ** 2
        return 0.55 * np.sqrt(np.clip(q, 0, None))

    def __call__(self, pts, z: np.ndarray | float | None = None) -> list[tuple[float, float]]:
        pts = np.atleast_2d(np.asarray(pts, dtype=np.float64))
        zz = self.depth(pts) if z is None else np.broadcast_to(np.asarray(z, dtype=np.float64), (len(pts),))
        x = pts[:, 0] * self.cy + zz * self.sy
        z2 = -pts[:, 0] * self.sy + zz * self.cy
        y = pts[:, 1] * self.cp - z2 * self.sp
        xr = x * self.cr - y * self.sr
        yr = x * self.sr + y * self.cr
        px = self.centre[0] + xr * self.unit
        py = self.centre[1] + yr * self.unit
        if self.post is not None:
            px, py = (self.post[0, 0] * px + self.post[0, 1] * py + self.post[0, 2],
                      self.post[1, 0] * px + self.post[1, 1] * py + self.post[1, 2])
        return list(zip(px.tolist(), py.tolist(), strict=True))

    def on_surface(self, pts, extra: float = 0.0) -> list[tuple[float, float]]:
        pts = np.atleast_2d(np.asarray(pts, dtype=np.float64))
        return self(pts, self.depth(pts) + extra)

    def length(self, v: float) -> float:
        return v * self.unit * self.post_scale


def _shade(c: Sequence[int], f: float) -> RGB:
    return tuple(int(np.clip(x * f, 0, 255)) for x in c)  # type: ignore[return-value]


def _mix(a: Sequence[int], b: Sequence[int], t: float) -> RGB:
    return tuple(int(np.clip(x + (y - x) * t, 0, 255)) for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


# ----------------------------------------------------------------------------- drawing

def _paste_clipped(canvas: Image.Image, color: Sequence[int], clip_px: list[tuple[float, float]], draw_shape) -> None:
    """Paint ``color`` where the shape drawn by ``draw_shape(draw, offset)`` overlaps the polygon
    ``clip_px`` (masks cover only the polygon's bounding box, which keeps rendering fast)."""
    xs, ys = [x for x, _ in clip_px], [y for _, y in clip_px]
    x0, y0 = max(0, int(min(xs)) - 2), max(0, int(min(ys)) - 2)
    x1, y1 = min(canvas.width, int(max(xs)) + 3), min(canvas.height, int(max(ys)) + 3)
    if x1 <= x0 or y1 <= y0:
        return
    mask = Image.new("L", (x1 - x0, y1 - y0), 0)
    ImageDraw.Draw(mask).polygon([(x - x0, y - y0) for x, y in clip_px], fill=255)
    shape = Image.new("L", mask.size, 0)
    draw_shape(ImageDraw.Draw(shape), (x0, y0))
    canvas.paste(tuple(color), (x0, y0, x1, y1), ImageChops.multiply(mask, shape))


@dataclass(frozen=True)
class _Looks:
    """How a person's face looks at rest, in ways real faces vary and no action unit causes: deep-set
    eyes in shadow, duller eye whites, eyes less wide open than a cartoon's, nasolabial folds. Drawn
    so that a model does not read them as a frown, a squint or a sneer (real neutral faces have
    them)."""

    socket: float      # eye-socket shadow, 0 (none) to 0.55
    sclera: float      # how far the eye whites are dulled towards grey, 0 to 0.6
    openness: float    # resting eye opening, 0.75 to 1.1 of the drawn default
    folds: float       # resting depth of the nasolabial folds, 0.1 to 0.6


def _identity_looks(p: FaceParams) -> _Looks:
    """The :class:`_Looks` of an identity, drawn from a hash of its own fields (not from the
    benchmark's random stream, whose draws, and so every label, stay as they were)."""
    key = repr((p.face_width, p.face_height, p.jaw, p.eye_spacing, p.eye_size, p.eye_height, p.brow_thickness,
                p.brow_height, p.nose_length, p.mouth_width, p.lip_thickness, tuple(p.skin), tuple(p.hair),
                p.hair_style, tuple(p.iris), p.glasses))
    rng = np.random.default_rng(int.from_bytes(hashlib.blake2b(key.encode("ascii"), digest_size=8).digest(), "little"))
    socket, sclera, openness, folds = rng.random(4)
    return _Looks(socket=0.55 * float(socket), sclera=0.6 * float(sclera), openness=0.75 + 0.35 * float(openness),
                  folds=0.1 + 0.5 * float(folds))


def _draw_eye(draw: ImageDraw.ImageDraw, canvas: Image.Image, proj: _Projector, p: FaceParams,
              side: int, au: dict[str, float]) -> None:
    a = au
    looks = _identity_looks(p)
    cx, cy = side * p.eye_spacing, p.eye_height
    w = 0.11 * p.eye_size
    if looks.socket > 0.05:  # the shadow of a deep-set eye, under the brow and around the lids
        draw.polygon(proj.on_surface(_ellipse(cx, cy - 0.01, w * 1.55, 0.075, 24)),
                     fill=_mix(p.skin, _shade(p.skin, 0.7), looks.socket))
    # Upper lid: brow raisers widen the eye (AU1/AU2 come with AU5 in surprise/fear); lid tightener
    # and cheek raiser narrow it from above/below.
    up = 0.04 * p.eye_size * looks.openness * (1 + 0.15 * max(a["AU1"], a["AU2"]) + 0.9 * a["AU5"]
                                               - 0.45 * a["AU7"] - 0.35 * a["AU6"] - 0.2 * a["AU4"])
    low = 0.028 * p.eye_size * looks.openness * (1 + 0.4 * a["AU5"] * (1 - a["AU7"]) - 0.9 * a["AU7"]
                                                 - 0.8 * a["AU6"])
    inner, outer = (cx - side * w, cy), (cx + side * w, cy - 0.006)
    upper = _through(inner, (cx + side * 0.01, cy - 2 * up), outer, 14)
    lower = _through(outer, (cx + side * 0.01, cy + 2 * low), inner, 12)
    eye_poly = np.concatenate([upper, lower[1:-1]])
    eye_px = proj.on_surface(eye_poly, -0.02)
    draw.polygon(eye_px, fill=_mix((245, 242, 236), (185, 175, 165), looks.sclera))
    # iris and pupil clipped to the eye opening
    r = proj.length(0.045 * p.eye_size)
    (ix, iy), = proj.on_surface([(cx + side * 0.004, cy - 0.006)], -0.02)
    _paste_clipped(canvas, p.iris, eye_px,
                   lambda d, o: d.ellipse((ix - r - o[0], iy - r - o[1], ix + r - o[0], iy + r - o[1]), fill=255))
    r2 = r * 0.45
    _paste_clipped(canvas, (15, 12, 10), eye_px,
                   lambda d, o: d.ellipse((ix - r2 - o[0], iy - r2 - o[1], ix + r2 - o[0], iy + r2 - o[1]), fill=255))
    # lid lines: a strong upper lash line, a faint lower lid
    lw = max(1, int(proj.length(0.024)))
    draw.line(proj.on_surface(upper, -0.02), fill=(35, 25, 20), width=lw, joint="curve")
    draw.line(proj.on_surface(lower, -0.02), fill=_shade(p.skin, 0.62), width=max(1, lw // 2), joint="curve")
    # lid crease above the eye, pushed down by the lid tightener / brow lowerer
    crease_h = up * 2 + 0.03 * (1 - 0.6 * a["AU4"]) * (1 + 0.5 * max(a["AU1"], a["AU2"]))
    crease = _through((cx - side * w * 0.8, cy - 0.01), (cx, cy - crease_h), (cx + side * w * 0.9, cy - 0.01), 10)
    draw.line(proj.on_surface(crease), fill=_shade(p.skin, 0.8), width=max(1, lw // 2), joint="curve")
    # crow's feet and the raised lower-lid bag (AU6, AU7)
    if a["AU6"] > 0.05:
        col = _mix(p.skin, _shade(p.skin, 0.55), min(1.0, a["AU6"]))
        for k in (-1, 0, 1):
            x0 = cx + side * (w + 0.02)
            draw.line(proj.on_surface([(x0, cy + 0.015 * k), (x0 + side * 0.06, cy + 0.03 * k - 0.005)]),
                      fill=col, width=max(1, lw // 2))
    bag_t = max(a["AU6"], 0.7 * a["AU7"])
    if bag_t > 0.05:
        bag = _through((cx - side * w * 0.8, cy + 0.03), (cx, cy + 0.065 - 0.04 * bag_t),
                       (cx + side * w * 0.9, cy + 0.03), 10)
        draw.line(proj.on_surface(bag), fill=_mix(p.skin, _shade(p.skin, 0.6), bag_t),
                  width=max(1, lw // 2), joint="curve")


def _draw_brow(draw: ImageDraw.ImageDraw, proj: _Projector, p: FaceParams, side: int, au: dict[str, float]) -> None:
    a = au
    base = p.eye_height - 0.13 + p.brow_height
    # AU1 lifts the inner end, AU2 the outer end, AU4 pulls the whole brow down and inwards
    # (raised brows resist being pulled down: fear's brows are raised *and* drawn together; the
    # hidden nose wrinkler AU9 lowers the inner ends too)
    down = (0.075 * a["AU4"] + 0.03 * a["AU9"]) * (1 - 0.6 * max(a["AU1"], a["AU2"]))
    inner = (side * (0.075 - 0.03 * a["AU4"]), base - 0.12 * a["AU1"] - 0.02 * a["AU2"] + down)
    mid = (side * 0.2, base - 0.035 - 0.05 * a["AU1"] - 0.09 * a["AU2"] + 0.6 * down)
    outer = (side * 0.36, base + 0.005 - 0.015 * a["AU1"] - 0.1 * a["AU2"] + 0.25 * down)
    centre = _through(inner, mid, outer, 14)
    t = np.linspace(1.0, 0.55, len(centre))[:, None] * p.brow_thickness
    # normals of the curve for a tapered thick stroke
    d = np.gradient(centre, axis=0)
    nrm = np.stack([-d[:, 1], d[:, 0]], axis=1)
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True) + 1e-9
    poly = np.concatenate([centre + nrm * t / 2, (centre - nrm * t / 2)[::-1]])
    draw.polygon(proj.on_surface(poly), fill=_shade(p.hair, 0.8) if p.hair_style else (50, 38, 30))


def _draw_wrinkles(draw: ImageDraw.ImageDraw, proj: _Projector, p: FaceParams, au: dict[str, float]) -> None:
    a = au
    lw = max(1, int(proj.length(0.014)))
    base = p.eye_height - 0.13 + p.brow_height
    # horizontal forehead lines: AU1 in the middle, AU2 at the sides
    for k, dy in enumerate((0.1, 0.15, 0.2)):
        y = base - dy - 0.03 * a["AU1"]
        mid_t = a["AU1"] - 0.15 * k
        side_t = a["AU2"] - 0.15 * k
        if mid_t > 0.1:
            draw.line(proj.on_surface(_through((-0.12, y + 0.01), (0, y - 0.012), (0.12, y + 0.01), 8)),
                      fill=_mix(p.skin, _shade(p.skin, 0.65), mid_t), width=lw)
        for s in (-1, 1):
            if side_t > 0.1:
                draw.line(proj.on_surface(_through((s * 0.14, y + 0.01), (s * 0.22, y - 0.01),
                                                   (s * 0.3, y + 0.015), 8)),
                          fill=_mix(p.skin, _shade(p.skin, 0.65), side_t), width=lw)
    # vertical furrows between the brows (AU4)
    if a["AU4"] > 0.1:
        col = _mix(p.skin, _shade(p.skin, 0.55), a["AU4"])
        for s in (-1, 1):
            x = s * 0.028
            draw.line(proj.on_surface([(x, base - 0.02), (x * 1.3, base + 0.07)]), fill=col, width=lw)


def _draw_nose(draw: ImageDraw.ImageDraw, proj: _Projector, p: FaceParams, au: dict[str, float]) -> None:
    a = au
    lw = max(1, int(proj.length(0.016)))
    tip_y = 0.16 * p.nose_length
    wing_y = tip_y + 0.01 - 0.03 * a["AU10"] - 0.015 * a["AU9"]  # AU10/AU9 lift the nose wings
    wing_x = 0.07 + 0.015 * a["AU10"]
    shade = _shade(p.skin, 0.72)
    # bridge on the side away from the light
    bridge = [(0.03, p.eye_height + 0.04), (0.04, tip_y - 0.04)]
    draw.line(proj.on_surface(bridge, 0.05), fill=_shade(p.skin, 0.85), width=lw)
    if a["AU9"] > 0.1:  # nose wrinkler: creases across the bridge
        col = _mix(p.skin, _shade(p.skin, 0.55), a["AU9"])
        for k in range(3):
            y = p.eye_height + 0.03 + 0.03 * k
            draw.line(proj.on_surface(_through((-0.05, y + 0.01), (0, y - 0.006), (0.05, y + 0.01), 6), 0.05),
                      fill=col, width=lw)
    base = _through((-wing_x, wing_y), (0, tip_y + 0.035), (wing_x, wing_y), 10)
    draw.line(proj.on_surface(base, 0.12), fill=shade, width=lw, joint="curve")
    for s in (-1, 1):
        wing = _through((s * wing_x * 0.6, wing_y - 0.05), (s * (wing_x + 0.025), wing_y - 0.015),
                        (s * wing_x, wing_y + 0.012), 8)
        draw.line(proj.on_surface(wing, 0.08), fill=shade, width=lw, joint="curve")
        (nx, ny), = proj.on_surface([(s * 0.035, tip_y + 0.018 - 0.02 * a["AU10"])], 0.1)
        r = proj.length(0.016)
        draw.ellipse((nx - r * 1.3, ny - r * 0.7, nx + r * 1.3, ny + r * 0.7), fill=_shade(p.skin, 0.45))


def _mouth_geometry(p: FaceParams, au: dict[str, float]) -> dict[str, Any]:  # point arrays and scalars
    a = au
    y0 = 0.36 + 0.03 * (p.nose_length - 1) + 0.05 * a["AU26"]
    half = 0.17 * p.mouth_width * (1 + 0.3 * a["AU12"] - 0.18 * a["AU23"] - 0.1 * a["AU24"]
                                   + 0.08 * a["AU15"] + 0.3 * a["AU20"] - 0.1 * a["AU26"] * (1 - a["AU12"]))
    corner_y = y0 - 0.085 * a["AU12"] + 0.075 * a["AU15"] - 0.02 * a["AU10"] + 0.035 * a["AU20"]
    thin = max(0.15, 1 - 0.55 * a["AU23"] - 0.75 * a["AU24"])
    t_up = 0.032 * p.lip_thickness * thin
    t_low = 0.042 * p.lip_thickness * thin
    gap = 0.055 * a["AU25"] + 0.14 * a["AU26"] + 0.035 * a["AU10"] + _smile_parting(a)
    # the upper lip rises with AU10 (more in the middle-lateral part: the disgust "snarl")
    up_raise = 0.045 * a["AU10"]
    # smiles flatten the lip midline into a U, sadness into an arch
    curve = 0.06 * a["AU12"] - 0.045 * a["AU15"] - 0.03 * a["AU17"] - 0.02 * a["AU20"] * a["AU25"]
    left, right = np.array([-half, corner_y]), np.array([half, corner_y])
    mid_y = y0 - curve * 0.15
    upper_in = _through(left, (0, mid_y - 0.5 * gap * 0.35 - up_raise + curve * 0.3), right, 16)
    # the lip stretcher flattens the opening into a wide, tense slit
    lower_in = _through(right, (0, mid_y + gap * (1 - 0.35 * a["AU20"]) + curve * 0.55), left, 16)
    upper_out = np.concatenate([
        _through(left, (-half * 0.45, mid_y - t_up - up_raise * 1.1 - 0.006 + curve * 0.25),
                 (-0.025, mid_y - t_up - up_raise - 0.004), 8),
        _through((-0.025, mid_y - t_up - up_raise - 0.004), (0, mid_y - t_up - up_raise + 0.008),
                 (0.025, mid_y - t_up - up_raise - 0.004), 5)[1:],
        _through((0.025, mid_y - t_up - up_raise - 0.004),
                 (half * 0.45, mid_y - t_up - up_raise * 1.1 - 0.006 + curve * 0.25), right, 8)[1:],
    ])
    lower_out = _through(right, (0, mid_y + gap + t_low + curve * 0.55 + 0.008 - 0.012 * a["AU17"]), left, 16)
    return {"upper_in": upper_in, "lower_in": lower_in, "upper_out": upper_out, "lower_out": lower_out,
            "gap": gap, "half": half, "corner_y": corner_y, "mid_y": mid_y, "thin": thin}


def _smile_parting(a: dict[str, float]) -> float:
    """Extra lip parting of a smile: the lip-corner puller (AU12) stretches parted lips (AU25) wide
    open over the upper teeth, as in a broad real smile (a closed smile stays closed)."""
    return 0.035 * a["AU12"] * min(1.0, 2.0 * a["AU25"])


def _teeth_height(a: dict[str, float], gap: float) -> float:
    """How much of the opening the upper teeth fill: a sliver in an open jaw (surprise, fear), most
    of it in a smile (AU12 pulls the upper lip off the teeth)."""
    return min(gap * 0.95, max(0.0, min(0.045, gap * 0.55 + 0.012) + 0.05 * a["AU12"] * min(1.0, gap / 0.04)))


def _draw_mouth(draw: ImageDraw.ImageDraw, canvas: Image.Image, proj: _Projector, p: FaceParams,
                au: dict[str, float]) -> None:
    a = au
    g = _mouth_geometry(p, au)
    lip = _mix(p.skin, (170, 70, 75), 0.45)
    lw = max(1, int(proj.length(0.022)))
    # nasolabial folds deepen with AU10 / AU12 / AU6
    fold_t = min(1.0, _identity_looks(p).folds + 0.8 * a["AU10"] + 0.6 * a["AU12"] + 0.2 * a["AU6"])
    for s in (-1, 1):
        top = (s * 0.1, 0.13 * p.nose_length + 0.02 - 0.03 * a["AU10"])
        bottom = (s * (g["half"] + 0.04), g["corner_y"] + 0.06 - 0.03 * a["AU12"])
        fold = _through(top, (s * (g["half"] * 0.75 + 0.1), (top[1] + bottom[1]) / 2), bottom, 10)
        draw.line(proj.on_surface(fold), fill=_mix(p.skin, _shade(p.skin, 0.6), fold_t), width=lw, joint="curve")
    # lip-corner marks for the depressor (AU15) and bulges for the pressor (AU24)
    if a["AU15"] > 0.1:
        for s in (-1, 1):
            c = (s * g["half"], g["corner_y"])
            draw.line(proj.on_surface([(c[0] + s * 0.005, c[1] + 0.01), (c[0] + s * 0.02, c[1] + 0.07)]),
                      fill=_mix(p.skin, _shade(p.skin, 0.55), a["AU15"]), width=lw)
    if max(a["AU24"], a["AU23"], a["AU17"]) > 0.1:
        t = max(a["AU24"], 0.6 * a["AU23"], a["AU17"])
        chin = _through((-0.07, g["mid_y"] + 0.1), (0, g["mid_y"] + 0.075), (0.07, g["mid_y"] + 0.1), 8)
        draw.line(proj.on_surface(chin), fill=_mix(p.skin, _shade(p.skin, 0.6), t), width=lw, joint="curve")
    mouth_poly = np.concatenate([g["upper_out"], g["lower_out"][1:-1]])
    draw.polygon(proj.on_surface(mouth_poly, -0.01), fill=lip)
    if g["gap"] > 0.012:
        inner_poly = np.concatenate([g["upper_in"], g["lower_in"][1:-1]])
        inner_px = proj.on_surface(inner_poly, -0.01)
        draw.polygon(inner_px, fill=(55, 20, 25))
        # upper teeth under the upper lip's curve (a smile's teeth follow its upturned corners),
        # clipped to the opening
        th = _teeth_height(a, g["gap"])
        width = 0.75 + 0.15 * a["AU12"]  # a smile bares the teeth nearly to the corners
        lip_edge = g["upper_in"][np.abs(g["upper_in"][:, 0]) <= g["half"] * width]
        band = np.concatenate([lip_edge + np.array([0.0, -0.02]), (lip_edge + np.array([0.0, th + 0.012]))[::-1]])
        teeth = proj.on_surface(band, -0.01)
        _paste_clipped(canvas, (238, 234, 222), inner_px,
                       lambda d, o: d.polygon([(x - o[0], y - o[1]) for x, y in teeth], fill=255))
    # lip line between the lips (closed mouth) or the opening's edge
    draw.line(proj.on_surface(g["upper_in"], -0.01), fill=_shade(lip, 0.5), width=lw, joint="curve")
    if g["thin"] < 0.7:  # pressed/tightened lips: vertical lip lines
        for x in (-0.06, -0.02, 0.02, 0.06):
            draw.line(proj.on_surface([(x, g["mid_y"] - 0.01), (x * 1.05, g["mid_y"] + 0.012)], -0.01),
                      fill=_shade(lip, 0.7), width=max(1, lw // 2))


def _draw_cheeks(draw: ImageDraw.ImageDraw, proj: _Projector, p: FaceParams, au: dict[str, float]) -> None:
    """Cheeks: the cheek raiser (AU6) lifts them into round bulges, lit on top with a shadow under
    them (the look of a real smile's cheeks), besides the flush that was all they had before."""
    cheek_t = au["AU6"]
    for s in (-1, 1):
        cy = 0.12 - 0.06 * cheek_t
        if cheek_t > 0.05:  # the shadow under the raised cheek, then the lit bulge over it
            draw.polygon(proj.on_surface(_ellipse(s * 0.29, cy + 0.035, 0.12, 0.075 + 0.02 * cheek_t, 24)),
                         fill=_mix(p.skin, _shade(p.skin, 0.8), cheek_t))
        draw.polygon(proj.on_surface(_ellipse(s * 0.3, cy, 0.11, 0.07 + 0.02 * cheek_t, 24)),
                     fill=_mix(p.skin, (205, 110, 105), 0.12 + 0.28 * cheek_t))
        if cheek_t > 0.05:
            draw.polygon(proj.on_surface(_ellipse(s * 0.31, cy - 0.02, 0.06, 0.035, 16)),
                         fill=_mix(_mix(p.skin, (205, 110, 105), 0.12 + 0.28 * cheek_t), (255, 240, 230),
                                   0.25 * cheek_t))


def _head_outline(p: FaceParams, au: dict[str, float]) -> np.ndarray:
    jaw_drop = 0.08 * au["AU26"]
    a = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    x = np.cos(a) * p.face_width
    y = np.sin(a)
    lower = y > 0
    # lower half: longer with the jaw drop, narrower towards the chin
    h_low = p.face_height * 0.95 + jaw_drop
    yy = np.where(lower, y * h_low, y * p.face_height)
    squeeze = np.where(lower, 1 - p.jaw * 0.3 * y ** 4, 1.0)
    return np.stack([x * squeeze, yy], axis=1)


# Where RetinaFace puts its five points on these faces, relative to the drawn eye centres, nose
# base and mouth corners (face units; measured on 40 aligned renders of 7 expressions: the detector
# saw the eyes 2.5 px further apart, the nose 4.9 px and the mouth corners 4.8 px higher in a
# 112 px crop, where a face unit is about 68 px).
_DETECTOR_OFFSET = {"eye_x": 0.037, "nose_y": -0.072, "mouth_y": -0.070}


def _landmarks(proj: _Projector, p: FaceParams, au: dict[str, float]) -> np.ndarray:
    """The five points a face detector reports on this face: eye centres, nose tip and mouth corners
    (image left first), in ``proj``'s pixels (5, 2)."""
    g = _mouth_geometry(p, au)
    o = _DETECTOR_OFFSET
    ex = p.eye_spacing + o["eye_x"]
    eyes = proj.on_surface([(-ex, p.eye_height), (ex, p.eye_height)], -0.02)
    nose = proj.on_surface([(0.0, 0.16 * p.nose_length + o["nose_y"])], 0.12)
    mouth = proj.on_surface([(-g["half"], g["corner_y"] + o["mouth_y"]), (g["half"], g["corner_y"] + o["mouth_y"])],
                            -0.01)
    return np.asarray(eyes + nose + mouth, dtype=np.float64)


def _au_dict(au_intensities: Sequence[float] | np.ndarray, hidden_au: dict[str, float] | None) -> dict[str, float]:
    values = np.clip(np.asarray(au_intensities, dtype=np.float64).reshape(-1), 0, 1)
    if values.shape != (len(AU_NAMES),):
        raise ValueError(f"expected {len(AU_NAMES)} AU intensities, got {values.size}")
    unknown = set(hidden_au or {}) - set(HIDDEN_AUS)
    if unknown:
        raise ValueError(f"unknown hidden AUs {sorted(unknown)}; known: {', '.join(HIDDEN_AUS)}")
    au = {name: float(values[i]) for i, name in enumerate(AU_NAMES)}
    au.update({name: float(np.clip((hidden_au or {}).get(name, 0.0), 0, 1)) for name in HIDDEN_AUS})
    return au


def face_landmarks(au_intensities: Sequence[float] | np.ndarray, params: FaceParams | None = None,
                   size: int = 112, framing: np.ndarray | None = None,
                   hidden_au: dict[str, float] | None = None) -> np.ndarray:
    """Where :func:`render_face` puts the eye centres, nose tip and mouth corners (5, 2), in the
    output image's pixels (with ``framing``: a similarity transform onto those points)."""
    p = params or FaceParams()
    au = _au_dict(au_intensities, hidden_au)
    marks = _landmarks(_Projector(p, size), p, au)
    if framing is None:
        return marks
    post = similarity_transform(marks, framing)
    return marks @ post[:, :2].T + post[:, 2]


def _shade_head(canvas: Image.Image, proj: _Projector, p: FaceParams, outline: np.ndarray) -> Image.Image:
    """Soft light on the head as on a real face: an ellipsoid lit from above the camera, brightest on
    the forehead and cheeks, falling off towards the jaw and the sides (drawn faces are flat)."""
    pts = np.asarray(proj(outline, 0.0), dtype=np.float64)
    S = canvas.width
    mask = Image.new("L", canvas.size, 0)
    ImageDraw.Draw(mask).polygon([tuple(q) for q in pts.tolist()], fill=255)
    mask = mask.filter(ImageFilter.GaussianBlur(S / 60))
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    centre, radius = (lo + hi) / 2, np.maximum((hi - lo) / 2, 1.0)
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float64)
    u, v = (xx + 0.5 - centre[0]) / radius[0], (yy + 0.5 - centre[1]) / radius[1]
    z = np.sqrt(np.clip(1.0 - u * u - v * v, 0.0, 1.0))
    light = np.array([0.15 * math.sin(p.yaw), -0.45, 0.88])
    light /= np.linalg.norm(light)
    lit = np.clip(u * light[0] + v * light[1] + z * light[2], 0.0, 1.0)
    factor = (0.6 + 0.4 * lit) / (0.6 + 0.4 * light[2])   # 1 where the surface faces the camera
    weight = np.asarray(mask, dtype=np.float64) / 255.0
    rgb = np.asarray(canvas.convert("RGB"), dtype=np.float64)
    shaded = rgb * (1.0 + weight * (factor - 1.0))[..., None]
    out = Image.fromarray(np.clip(np.rint(shaded), 0, 255).astype(np.uint8))
    if canvas.mode == "RGBA":
        out.putalpha(canvas.getchannel("A"))
    return out


def render_face(au_intensities: Sequence[float] | np.ndarray, params: FaceParams | None = None, size: int = 112,
                background: Image.Image | RGB | None = (128, 128, 128), supersample: int = 3,
                occluder: dict | None = None, hidden_au: dict[str, float] | None = None,
                framing: np.ndarray | None = None) -> Image.Image:
    """Draw one face. ``au_intensities``: 12 values in [0, 1] (``AU_NAMES`` order).

    ``background``: an RGB colour, an image (resized to ``size``), or ``None`` for a transparent
    RGBA result (to composite faces into larger scenes). ``occluder``: optional
    ``{"kind": "hand"|"bar"|"blob", "center": (x, y), "size": s, "angle": deg, "color": rgb}`` in
    fractions of the image, drawn over the face. ``hidden_au``: intensities of action units that
    are not labelled but shape real expressions (``HIDDEN_AUS``: AU5 upper lid raiser, AU9 nose
    wrinkler, AU17 chin raiser, AU20 lip stretcher). ``framing``: five points (5, 2) in output pixels
    onto which the face's eye centres, nose tip and mouth corners are mapped by a similarity
    transform, as a detector's alignment frames a real face (:mod:`affectmodel.alignment`); None: the
    free framing of ``params`` (scale, shift, roll). Returns a ``size`` x ``size`` PIL image.
    """
    au = _au_dict(au_intensities, hidden_au)
    p = params or FaceParams()
    if not p.scale > 0:
        raise ValueError(f"face scale must be positive, got {p.scale}")
    S = size * supersample
    if background is None:
        canvas = Image.new("RGBA", (S, S), (0, 0, 0, 0))
    elif isinstance(background, Image.Image):
        canvas = background.convert("RGB").resize((S, S), Image.Resampling.BILINEAR)
    else:
        canvas = Image.new("RGB", (S, S), tuple(int(c) for c in background))
    post = None
    if framing is not None:
        post = similarity_transform(_landmarks(_Projector(p, S), p, au),
                                    np.asarray(framing, dtype=np.float64) * supersample)
    draw = ImageDraw.Draw(canvas)
    proj = _Projector(p, S, post)

    outline = _head_outline(p, au)
    # neck and shoulders behind the head
    neck = np.array([(-0.2, 0.4), (0.2, 0.4), (0.24, 1.2), (-0.24, 1.2)])
    draw.polygon(proj(neck, 0.0), fill=_shade(p.skin, 0.8))
    shirt = np.array([(-1.3, 1.05), (-0.22, 0.88), (0.22, 0.88), (1.3, 1.05), (1.3, 2.0), (-1.3, 2.0)])
    draw.polygon(proj(shirt, 0.0), fill=_mix(p.hair, (90, 110, 150), 0.6))
    if p.hair_style == 2:  # long hair behind the head
        back = np.concatenate([_ellipse(0, -0.1, p.face_width * 1.25, p.face_height * 1.1, 40)[20:],
                               np.array([(p.face_width * 1.3, 0.7), (-p.face_width * 1.3, 0.7)])])
        draw.polygon(proj(back, -0.2), fill=_shade(p.hair, 0.85))
    for s in (-1, 1):  # ears
        draw.polygon(proj(_ellipse(s * p.face_width * 0.98, p.eye_height + 0.06, 0.07, 0.13, 20), -0.05),
                     fill=_shade(p.skin, 0.9))
    # the silhouette of a turned ellipsoid head stays about as wide as the head is deep
    w, d = p.face_width, 0.55
    widen = math.sqrt(1 + ((d / w) ** 2 - 1) * math.sin(p.yaw) ** 2) / max(1e-6, math.cos(p.yaw))
    draw.polygon(proj(outline * np.array([widen, 1.0]), 0.0), fill=tuple(p.skin))
    _draw_cheeks(draw, proj, p, au)
    if p.hair_style in (1, 2, 3):
        top = _ellipse(0, -0.04, p.face_width * 1.07, p.face_height * 1.03, 60)
        cap = top[top[:, 1] < -0.2]
        hairline_y = -0.5 if p.hair_style != 3 else -0.32
        hairline = _through((-p.face_width * 1.02, -0.22), (0, hairline_y), (p.face_width * 1.02, -0.22), 14)
        cap = cap[np.argsort(np.arctan2(cap[:, 1], cap[:, 0]))]
        outline = np.concatenate([cap[::-1], hairline])
        draw.polygon(proj(outline, 0.3 * proj.depth(outline) + 0.05), fill=tuple(p.hair))
    _draw_wrinkles(draw, proj, p, au)
    for s in (-1, 1):
        _draw_eye(draw, canvas, proj, p, s, au)
        _draw_brow(draw, proj, p, s, au)
    _draw_nose(draw, proj, p, au)
    _draw_mouth(draw, canvas, proj, p, au)
    if p.glasses:
        lw = max(1, int(proj.length(0.014)))
        for s in (-1, 1):
            draw.line(proj.on_surface(_ellipse(s * p.eye_spacing, p.eye_height, 0.15, 0.1, 28), 0.04) +
                      proj.on_surface(_ellipse(s * p.eye_spacing, p.eye_height, 0.15, 0.1, 28)[:1], 0.04),
                      fill=(30, 30, 35), width=lw)
        draw.line(proj.on_surface([(-p.eye_spacing + 0.15, p.eye_height), (p.eye_spacing - 0.15, p.eye_height)], 0.06),
                  fill=(30, 30, 35), width=lw)
    canvas = _shade_head(canvas, proj, p, _head_outline(p, au) * np.array([widen, 1.0]))
    if occluder:
        _draw_occluder(ImageDraw.Draw(canvas), S, occluder, p)
    img = canvas.resize((size, size), Image.Resampling.LANCZOS)
    return img


def _draw_occluder(draw: ImageDraw.ImageDraw, S: int, occ: dict, p: FaceParams) -> None:
    cx, cy = occ.get("center", (0.5, 0.7))
    s = occ.get("size", 0.3) * S
    cx, cy = cx * S, cy * S
    ang = math.radians(occ.get("angle", 0.0))
    kind = occ.get("kind", "blob")
    color = tuple(occ.get("color", _shade(p.skin, 0.95)))

    def rot(pts):
        pts = np.asarray(pts, dtype=np.float64)
        c, s_ = math.cos(ang), math.sin(ang)
        return [(cx + x * c - y * s_, cy + x * s_ + y * c) for x, y in pts]

    if kind == "hand":  # palm and four fingers
        draw.polygon(rot(_ellipse(0, 0.15 * s, 0.32 * s, 0.3 * s, 24)), fill=color)
        for k in range(4):
            x = (-0.27 + 0.18 * k) * s
            draw.polygon(rot([(x - 0.07 * s, 0), (x + 0.07 * s, 0), (x + 0.06 * s, -0.55 * s + 0.05 * s * abs(k - 1.5)),
                              (x - 0.06 * s, -0.55 * s + 0.05 * s * abs(k - 1.5))]), fill=color)
    elif kind == "bar":  # microphone, cup, sign: a rounded bar
        draw.polygon(rot([(-0.6 * s, -0.15 * s), (0.6 * s, -0.15 * s), (0.6 * s, 0.15 * s), (-0.6 * s, 0.15 * s)]),
                     fill=color)
    else:
        draw.polygon(rot(_ellipse(0, 0, 0.5 * s, 0.35 * s, 24)), fill=color)


# ----------------------------------------------------------------------------- image nuisances

@dataclass(frozen=True)
class ImageNuisance:
    """Photometric nuisances applied after rendering (lighting, blur, sensor noise, JPEG)."""

    light_direction: float = 0.0   # radians
    light_strength: float = 0.0    # 0 = flat lighting
    brightness: float = 1.0
    contrast: float = 1.0
    blur: float = 0.0              # Gaussian radius in pixels
    noise: float = 0.0             # std of additive Gaussian noise in 0-255 units
    jpeg_quality: int | None = None


def apply_nuisance(img: Image.Image, n: ImageNuisance, rng: np.random.Generator) -> Image.Image:
    """Lighting gradient, brightness/contrast, blur, noise and JPEG round trip."""
    x = np.asarray(img.convert("RGB"), dtype=np.float32)
    h, w = x.shape[:2]
    if n.light_strength or n.brightness != 1.0 or n.contrast != 1.0:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        g = ((xx / w - 0.5) * math.cos(n.light_direction) + (yy / h - 0.5) * math.sin(n.light_direction)) * 2
        x = x * (n.brightness * (1 + n.light_strength * g))[..., None]
        x = (x - 128) * n.contrast + 128
    if n.noise:
        x = x + rng.normal(0, n.noise, size=x.shape).astype(np.float32)
    out = Image.fromarray(np.clip(x, 0, 255).astype(np.uint8))
    if n.blur > 0.05:
        out = out.filter(ImageFilter.GaussianBlur(n.blur))
    if n.jpeg_quality is not None:
        buf = io.BytesIO()
        out.save(buf, format="JPEG", quality=int(n.jpeg_quality))
        buf.seek(0)
        out = Image.open(buf).convert("RGB")
    return out


def random_background(rng: np.random.Generator, size: int) -> Image.Image:
    """A blurred indoor/outdoor-ish scene: a two-colour gradient with a few large shapes."""
    c1 = rng.integers(20, 235, size=3)
    c2 = np.clip(c1 + rng.integers(-90, 90, size=3), 0, 255)
    t = np.linspace(0, 1, size, dtype=np.float32)
    grad = (c1[None, None, :] * (1 - t)[:, None, None] + c2[None, None, :] * t[:, None, None])
    grad = np.broadcast_to(grad, (size, size, 3)).astype(np.uint8)
    img = Image.fromarray(np.ascontiguousarray(grad))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(1, 5))):
        col = tuple(int(c) for c in rng.integers(0, 255, size=3))
        x0, y0 = rng.uniform(-0.2, 1.0, size=2) * size
        x1, y1 = x0 + rng.uniform(0.1, 0.6) * size, y0 + rng.uniform(0.1, 0.8) * size
        if rng.random() < 0.5:
            draw.rectangle((x0, y0, x1, y1), fill=col)
        else:
            draw.ellipse((x0, y0, x1, y1), fill=col)
    return img.filter(ImageFilter.GaussianBlur(size / 40))


def with_pose(params: FaceParams, **changes) -> FaceParams:
    """A copy of ``params`` with pose/lighting fields changed (identity kept)."""
    return replace(params, **changes)


__all__ = [
    "HIDDEN_AUS",
    "FaceParams",
    "ImageNuisance",
    "apply_nuisance",
    "face_landmarks",
    "random_background",
    "render_face",
    "sample_identity",
    "with_pose",
]
