import io
import resource
import struct
import zlib

import numpy as np
import pytest
from media import ANIMATION_TIMES, animated_images, astronaut
from PIL import Image

from affectmodel.images import (
    DEFAULT_MAX_PIXELS,
    ImageLoadError,
    array_to_rgb,
    frame_count,
    frame_durations,
    iter_image_frames,
    load_image,
)
from affectmodel.inference.faces import create_detector


@pytest.fixture(scope="module")
def detector():
    return create_detector("retinaface")


def _save(image: Image.Image, path, **kwargs):
    image.save(path, **kwargs)
    return path


def test_rgb_png_round_trip_is_exact(tmp_path):
    path = _save(Image.fromarray(astronaut()), tmp_path / "a.png")
    out = load_image(path)
    assert out.dtype == np.uint8 and out.shape == (512, 512, 3)
    assert np.array_equal(out, astronaut())


@pytest.mark.parametrize("mode,fmt", [("L", "png"), ("1", "png"), ("P", "png"), ("CMYK", "jpeg"),
                                      ("RGBA", "png"), ("LA", "png"), ("I;16", "png"), ("I", "tiff"),
                                      ("F", "tiff"), ("YCbCr", "jpeg")])
def test_every_mode_gives_rgb_uint8_close_to_the_source(tmp_path, mode, fmt, detector):
    rgb = astronaut()
    gray = np.asarray(Image.fromarray(rgb).convert("L"))
    if mode == "I;16":
        source = Image.fromarray(gray.astype(np.uint16) * 257)  # full 16-bit range
    elif mode == "I":
        source = Image.fromarray(gray.astype(np.int32) * 257)
    elif mode == "F":
        source = Image.fromarray(gray.astype(np.float32) / 255.0)
    elif mode == "P":
        source = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=256)
    else:
        source = Image.fromarray(rgb).convert(mode)
    path = _save(source, tmp_path / f"img.{fmt}")
    out = load_image(path)
    assert out.shape == (512, 512, 3) and out.dtype == np.uint8
    if mode in ("L", "I;16", "I", "F", "LA"):
        expected = np.repeat(gray[:, :, None], 3, axis=2)
        assert np.abs(out.astype(int) - expected).max() <= 1
    elif mode in ("RGBA", "CMYK", "YCbCr", "P"):
        # JPEG and palette quantisation are lossy; the picture must still be the same picture.
        assert np.abs(out.astype(int) - rgb.astype(int)).mean() < 12
    if mode != "1":  # dithered bilevel is no longer a photo
        assert len(detector.detect(out)) == 1


def test_transparency_is_composited_on_white(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[:4, :, :] = (255, 0, 0, 255)  # opaque red top, fully transparent bottom
    out = load_image(_save(Image.fromarray(rgba, "RGBA"), tmp_path / "t.png"))
    assert out[0, 0].tolist() == [255, 0, 0]
    assert out[7, 7].tolist() == [255, 255, 255]
    # palette image with a transparent index
    pal = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), "P")
    pal.putpalette([0, 0, 255, 0, 255, 0] + [0] * 762)
    pal.info["transparency"] = 1
    out = load_image(_save(pal, tmp_path / "p.png", transparency=1))
    assert out[0, 0].tolist() == [0, 0, 255] and out[0, 1].tolist() == [255, 255, 255]


def test_sixteen_bit_dark_image_is_scaled_not_clipped(tmp_path):
    a = np.full((4, 4), 1000, np.uint16)  # dark in 16 bits: 1000/65535 -> 3 in 8 bits
    out = load_image(_save(Image.fromarray(a), tmp_path / "d.png"))
    assert out[0, 0].tolist() == [3, 3, 3]


@pytest.mark.parametrize("orientation,stored", [(6, lambda a: np.rot90(a, 1)), (8, lambda a: np.rot90(a, -1)),
                                                (3, lambda a: np.rot90(a, 2))])
def test_exif_orientation_is_applied_and_the_face_is_found(tmp_path, detector, orientation, stored):
    rgb = astronaut()
    image = Image.fromarray(np.ascontiguousarray(stored(rgb)))
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = _save(image, tmp_path / "r.jpg", exif=exif.tobytes(), quality=95)
    out = load_image(path)
    assert out.shape == rgb.shape
    assert np.abs(out.astype(int) - rgb.astype(int)).mean() < 4  # upright again (JPEG noise only)
    faces = detector.detect(out)
    assert len(faces) == 1
    x1, y1, x2, y2 = faces[0].box
    assert 150 < (x1 + x2) / 2 < 300 and 60 < (y1 + y2) / 2 < 180  # where the face is in the upright photo


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [10_000, 100_000])
def test_decompression_bomb_is_refused_before_decoding(tmp_path, side):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(side, side))
    assert path.stat().st_size < 200 and side * side > DEFAULT_MAX_PIXELS
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ImageLoadError, match="too large|exceeds the limit"):
        load_image(path)
    # refused from the header: nothing near width x height x 3 bytes was allocated
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100 * 1024  # KiB


def test_pixel_limit_is_configurable(tmp_path):
    path = _save(Image.fromarray(np.zeros((40, 40, 3), np.uint8)), tmp_path / "s.png")
    with pytest.raises(ImageLoadError, match="exceeds the limit of 1,000"):
        load_image(path, max_pixels=1000)
    assert load_image(path, max_pixels=None).shape == (40, 40, 3)


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_truncated_file(tmp_path, fmt):
    buf = io.BytesIO()
    Image.fromarray(astronaut()).save(buf, format=fmt)
    path = tmp_path / f"cut.{fmt}"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageLoadError, match="truncated|corrupt") as e:
        load_image(path)
    assert str(path) in str(e.value)


def test_non_image_empty_and_missing_files(tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a picture\n")
    with pytest.raises(ImageLoadError, match="not an image"):
        load_image(text)
    noise = tmp_path / "noise.png"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    with pytest.raises(ImageLoadError, match="not an image"):
        load_image(noise)
    empty = tmp_path / "empty.png"
    empty.touch()
    with pytest.raises(ImageLoadError, match="empty"):
        load_image(empty)
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "missing.png")
    assert issubclass(ImageLoadError, ValueError)


def test_bytes_file_objects_and_pil_images(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(astronaut()).save(buf, format="png")
    assert np.array_equal(load_image(buf.getvalue()), astronaut())
    buf.seek(0)
    assert np.array_equal(load_image(buf), astronaut())
    assert np.array_equal(load_image(Image.fromarray(astronaut()).convert("L")),
                          np.repeat(np.asarray(Image.fromarray(astronaut()).convert("L"))[:, :, None], 3, 2))
    with pytest.raises(ImageLoadError, match="empty"):
        load_image(b"")


def test_arrays_of_any_dtype_and_channel_count():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert array_to_rgb(gray).shape == (3, 4, 3) and array_to_rgb(gray)[1, 1].tolist() == [5, 5, 5]
    assert array_to_rgb(np.full((2, 2), 0.5, np.float32))[0, 0, 0] == 128
    assert array_to_rgb(np.full((2, 2, 3), 65535, np.uint16))[0, 0, 0] == 255
    assert array_to_rgb(np.ones((2, 2, 1), bool))[0, 0].tolist() == [255, 255, 255]
    rgba = np.zeros((2, 2, 4), np.uint8)
    assert array_to_rgb(rgba)[0, 0].tolist() == [255, 255, 255]  # transparent -> white
    with pytest.raises(ImageLoadError, match="shape"):
        array_to_rgb(np.zeros((2, 2, 5), np.uint8))


@pytest.mark.parametrize("suffix", ["gif", "webp", "png"])
def test_animated_images_give_every_frame_with_its_time(tmp_path, suffix):
    path = animated_images(tmp_path)[suffix]
    assert frame_count(path) == 8
    assert frame_durations(path) == pytest.approx([0.1, 0.1, 0.2, 0.1, 0.1, 0.1, 0.1, 0.3])  # 0 ms shown 100 ms
    frames = list(iter_image_frames(path))
    assert [t for t, _ in frames] == pytest.approx(ANIMATION_TIMES)
    assert all(image.shape == (150, 240, 3) for _, image in frames)
    assert np.abs(frames[0][1].astype(int) - load_image(path).astype(int)).max() == 0  # load_image: frame 1
    assert np.abs(frames[7][1].astype(int) - frames[0][1].astype(int)).mean() > 5     # the face moved


def test_still_and_unreadable_images_count_one_frame(tmp_path):
    Image.fromarray(astronaut()).save(tmp_path / "still.png")
    (tmp_path / "text.gif").write_text("not an image")
    assert frame_count(tmp_path / "still.png") == 1 and frame_count(tmp_path / "text.gif") == 1
    data = animated_images(tmp_path)["gif"].read_bytes()
    (tmp_path / "cut.gif").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match="cut.gif: "):
        list(iter_image_frames(tmp_path / "cut.gif"))
    # an animated bomb: 2 frames of 8000 x 8000 in a 0.1 MB file, refused from the header
    frames = [Image.new("L", (8000, 8000), i) for i in range(2)]
    frames[0].save(tmp_path / "bomb.gif", save_all=True, append_images=frames[1:])
    for read in (frame_durations, lambda p: list(iter_image_frames(p))):
        with pytest.raises(ImageLoadError, match=r"bomb.gif: 8000x8000 = 64,000,000 pixels exceeds the limit"):
            read(tmp_path / "bomb.gif")
