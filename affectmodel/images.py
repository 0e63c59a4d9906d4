"""Safe image loading: any file Pillow reads, any mode, EXIF orientation -> RGB uint8 array.

Untrusted images are checked before they are decoded: the pixel count comes from the header,
so a decompression bomb (a small file that expands to gigabytes) is refused without allocating
it. Truncated, corrupt and non-image files raise :class:`ImageLoadError` with the reason.
"""
from __future__ import annotations

import io
import os
import struct
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# 50 megapixels: larger than any camera photo a user would analyse, far below memory trouble
# (50e6 x 3 bytes = 150 MB for the RGB copy).
DEFAULT_MAX_PIXELS = 50_000_000
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jfif")

ImageSource = str | os.PathLike | bytes | BinaryIO | Image.Image | np.ndarray


class ImageLoadError(ValueError):
    """An image could not be read: not an image, truncated, corrupt, too large or an unusable mode."""


def is_image_file(path: str | os.PathLike) -> bool:
    """True when the file name has a known image suffix (no I/O)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def frame_count(path: str | os.PathLike) -> int:
    """How many frames an image file holds: more than 1 for an animated GIF, WebP or PNG, 1 for a
    still image or a file Pillow cannot open (:func:`load_image` then says why)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return max(1, int(getattr(image, "n_frames", 1)))
    except Exception:  # noqa: BLE001 - unreadable here means "not animated"; load_image reports it
        return 1


# Browsers show frames stored with (almost) no duration for 100 ms; so do we.
MIN_FRAME_MS, DEFAULT_FRAME_MS = 20, 100


def _frame_seconds(image: Image.Image) -> float:
    duration = float(image.info.get("duration") or 0)
    return (duration if duration >= MIN_FRAME_MS else DEFAULT_FRAME_MS) / 1000


def frame_durations(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> list[float]:
    """How long each frame of an image file is shown, in seconds (one entry for a still image).
    Each frame is decoded (Pillow reads a WebP frame's duration only then), after the pixel check
    of :func:`load_image`."""
    try:
        with open(path, "rb") as f, _open_image(f, max_pixels, str(path)) as image:
            out = []
            for index in range(max(1, int(getattr(image, "n_frames", 1)))):
                image.seek(index)
                image.load()
                out.append(_frame_seconds(image))
            return out
    except ImageLoadError:
        raise
    except (OSError, EOFError, SyntaxError, ValueError, struct.error) as e:
        raise ImageLoadError(f"{path}: corrupt image data ({e})") from None


def iter_image_frames(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS
                      ) -> Iterator[tuple[float, np.ndarray]]:
    """``(time in seconds, RGB array)`` for every frame of an (animated) image file, each frame
    shown for its stored duration. Raises :class:`ImageLoadError` like :func:`load_image`."""
    path = Path(path)
    name = str(path)
    with open(path, "rb") as f, _open_image(f, max_pixels, name) as image:
        time_s = 0.0
        for index in range(max(1, int(getattr(image, "n_frames", 1)))):
            try:
                image.seek(index)
                image.load()
                rgb = pil_to_rgb(image)
            except (OSError, EOFError, SyntaxError, ValueError, struct.error) as e:
                raise ImageLoadError(f"{name}: corrupt image data in frame {index + 1} ({e})") from None
            yield time_s, rgb
            time_s += _frame_seconds(image)


def load_image(source: ImageSource, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image into an ``(H, W, 3)`` uint8 RGB array.

    ``source`` is a path, raw bytes, a binary file object, a PIL image or a numpy array.
    EXIF orientation is applied, so a portrait photo stored sideways comes out upright. An
    animated image gives its first frame (:func:`frame_count` says how many it has;
    :func:`iter_image_frames` reads them all).
    Raises :class:`ImageLoadError` for anything that is not a readable image within
    ``max_pixels`` (``None`` = no limit), and ``FileNotFoundError`` for a missing path.
    """
    if isinstance(source, np.ndarray):
        return array_to_rgb(source)
    name = _describe(source)
    if isinstance(source, Image.Image):
        _check_size(source.size, max_pixels, name)
        return pil_to_rgb(_exif_transpose(source))
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"image not found: {path}")
        if path.stat().st_size == 0:
            raise ImageLoadError(f"{path}: empty file")
        with open(path, "rb") as f:
            return _decode(f, max_pixels, name)
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageLoadError(f"{name}: empty data")
        return _decode(io.BytesIO(bytes(source)), max_pixels, name)
    if hasattr(source, "read"):
        return _decode(source, max_pixels, name)
    raise TypeError(f"cannot load an image from {type(source).__name__}")


def _describe(source: object) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return getattr(source, "name", None) or f"<{type(source).__name__}>"


def _open_image(stream: BinaryIO, max_pixels: int | None, name: str) -> Image.Image:
    """The image's header, checked against ``max_pixels`` before anything is decoded."""
    try:
        with warnings.catch_warnings():
            # Pillow warns above its own global limit; ours is checked explicitly below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(stream)  # reads the header only
    except Image.DecompressionBombError as e:
        raise ImageLoadError(f"{name}: image is too large to decode safely ({e})") from None
    except UnidentifiedImageError:
        raise ImageLoadError(f"{name}: not an image file (or a format Pillow cannot read)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageLoadError(f"{name}: corrupt image header ({e})") from None
    try:
        _check_size(image.size, max_pixels, name)
    except ImageLoadError:
        image.close()
        raise
    return image


def _decode(stream: BinaryIO, max_pixels: int | None, name: str) -> np.ndarray:
    with _open_image(stream, max_pixels, name) as image:
        try:
            image.load()  # the full decode happens here: truncation and corruption show up now
        except OSError as e:
            reason = "truncated image" if "truncated" in str(e).lower() else f"corrupt image data ({e})"
            raise ImageLoadError(f"{name}: {reason}") from None
        except (SyntaxError, ValueError, EOFError, struct.error) as e:
            raise ImageLoadError(f"{name}: corrupt image data ({e})") from None
        return pil_to_rgb(_exif_transpose(image))


def _check_size(size: tuple[int, int], max_pixels: int | None, name: str) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageLoadError(f"{name}: image has no pixels ({width}x{height})")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageLoadError(
            f"{name}: {width}x{height} = {width * height:,} pixels exceeds the limit of {max_pixels:,} "
            "(a possible decompression bomb); resize the image or raise max_pixels")


def _exif_transpose(image: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - a malformed EXIF block must not make a good image unreadable
        return image


def pil_to_rgb(image: Image.Image) -> np.ndarray:
    """Convert a PIL image of any mode to an ``(H, W, 3)`` uint8 RGB array.

    16-bit and 32-bit integer images are scaled to 8 bits (not clipped); float images are read
    as 0..1 when their maximum is at most 1, else as 0..255. Transparency is composited onto
    white, so a transparent background does not turn black.
    """
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return array_to_rgb(np.asarray(image))
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    if mode == "RGB":
        return np.asarray(image)
    try:
        return np.asarray(image.convert("RGB"))
    except (ValueError, OSError) as e:
        raise ImageLoadError(f"cannot convert image mode {mode!r} to RGB ({e})") from None


def array_to_rgb(array: np.ndarray) -> np.ndarray:
    """Normalise a numpy image (``HxW``, ``HxWx1``, ``HxWx3``, ``HxWx4``; uint8, uint16, int or
    float) to ``(H, W, 3)`` uint8 RGB."""
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)) or a.size == 0:
        raise ImageLoadError(f"unsupported image array shape {a.shape}; expected HxW, HxWx3 or HxWx4")
    a = _to_uint8(a)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    elif a.shape[2] == 4:
        alpha = a[:, :, 3:4].astype(np.float32) / 255.0
        a = (a[:, :, :3] * alpha + 255.0 * (1.0 - alpha)).round().astype(np.uint8)
    return np.ascontiguousarray(a)


def _to_uint8(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    if np.issubdtype(a.dtype, np.floating):
        finite = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        scale = 255.0 if finite.max(initial=0.0) <= 1.0 else 1.0
        return np.clip(finite * scale, 0, 255).round().astype(np.uint8)
    if a.dtype == np.uint16:
        return (a >> 8).astype(np.uint8)
    if np.issubdtype(a.dtype, np.integer):
        # Wider integers (Pillow's 32-bit "I" mode) carry 8- or 16-bit data: judge by the range.
        if int(a.max(initial=0)) > 255:
            return (np.clip(a, 0, 65535).astype(np.uint32) >> 8).astype(np.uint8)
        return np.clip(a, 0, 255).astype(np.uint8)
    raise ImageLoadError(f"unsupported image dtype {a.dtype}")
