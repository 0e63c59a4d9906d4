"""Property-based tests (hypothesis) over the parsers that read untrusted files.

* :func:`affectmodel.images.load_image` gets arbitrary bytes and, more usefully,
  valid PNG / JPEG / GIF / BMP / TIFF / WebP files with bytes flipped, cut or inserted: it either
  returns an ``(H, W, 3)`` uint8 array or raises :class:`ImageLoadError`, nothing else.
* The annotation readers (per-task files, the multi-task CSV) and the prediction-file reader of
  the score command get arbitrary text and text built from the tokens those files are made of
  (numbers, ``nan``, ``inf``, invalid codes, stray commas, whitespace, ``\\r``, BOM, paths with
  ``..``): they either return well-formed arrays or raise :class:`AnnotationError`, whose message
  starts with ``<path>:<line>:``.

Examples stay few (``FUZZ_EXAMPLES``, default 60 per property) so the file runs in seconds; set
``AFFECT_FUZZ_EXAMPLES=5000`` for a long local run.
"""
from __future__ import annotations

import io
import os
import re
import tempfile
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from affectmodel.data.annotations import (  # noqa: E402
    MTL_HEADER,
    AnnotationError,
    read_mtl_csv,
    read_task_file,
)
from affectmodel.images import ImageLoadError, load_image  # noqa: E402
from affectmodel.scoring import prediction_header, read_predictions  # noqa: E402
from affectmodel.tasks import ABAW7, ABAW8, AU_NAMES  # noqa: E402

# Pillow warns (and goes on) about damaged EXIF blocks; that is the behaviour under test, not noise to show.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")
FUZZ_EXAMPLES = int(os.environ.get("AFFECT_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# A small pixel limit keeps a mutated header that claims a huge size from costing time.
MAX_PIXELS = 1_000_000


# ------------------------------------------------------------------ images

@cache
def seed_image(fmt: str) -> bytes:
    """A small, valid, non-trivial image file in ``fmt`` (EXIF included where the format has it)."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)
    image = Image.fromarray(rgb)
    buf = io.BytesIO()
    if fmt == "JPEG":
        exif = Image.Exif()
        exif[0x0112] = 6  # orientation: the EXIF path is exercised too
        image.save(buf, "JPEG", quality=80, exif=exif)
    elif fmt == "PNG16":
        Image.fromarray(rgb[:, :, 0].astype(np.uint16) * 257).save(buf, "PNG")
    elif fmt == "PNGA":
        image.convert("RGBA").save(buf, "PNG")
    elif fmt == "GIF":
        image.save(buf, "GIF", save_all=True, append_images=[image.rotate(90)])
    elif fmt == "CMYK":
        image.convert("CMYK").save(buf, "JPEG")
    else:
        image.save(buf, fmt)
    return buf.getvalue()


SEED_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PNG16", "PNGA", "CMYK")


@st.composite
def mutated_images(draw) -> bytes:
    data = bytearray(seed_image(draw(st.sampled_from(SEED_FORMATS))))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(("flip", "flip", "cut", "insert", "zero")))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[pos] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            data = data[:pos]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "zero":
            data[pos:pos + draw(st.integers(1, 64))] = bytes(min(64, len(data) - pos))
    return bytes(data)


def _check_image_result(result) -> None:
    assert isinstance(result, np.ndarray)
    assert result.dtype == np.uint8 and result.ndim == 3 and result.shape[2] == 3
    assert result.shape[0] * result.shape[1] <= MAX_PIXELS


@FUZZ
@given(st.binary(max_size=512))
def test_arbitrary_bytes_give_an_image_or_image_load_error(data):
    try:
        _check_image_result(load_image(data, max_pixels=MAX_PIXELS))
    except ImageLoadError:
        pass


@FUZZ
@given(mutated_images())
def test_damaged_image_files_give_an_image_or_image_load_error(data):
    try:
        _check_image_result(load_image(data, max_pixels=MAX_PIXELS))
    except ImageLoadError as e:
        assert str(e)  # a reason, never an empty message


@FUZZ
@given(mutated_images())
def test_damaged_image_files_read_from_disk_name_the_file(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "upload.jpg"
        path.write_bytes(data)
        try:
            _check_image_result(load_image(path, max_pixels=MAX_PIXELS))
        except ImageLoadError as e:
            assert "upload.jpg" in str(e)


# ------------------------------------------------------------------ annotation files

NUMBER_TOKENS = ("0", "1", "-1", "-5", "7", "8", "0.5", "-0.25", "1e3", "nan", "NaN", "inf", "-inf", "1_0",
                 "", " ", "x", "0x1", "+1", "1.", ".5", "--1", "\t1", "1\t", "٣")
JUNK = (",", ", ", " ,", "\r", "\ufeff", "\x00", "é", "\"", ";")
AU_HEADER = ",".join(AU_NAMES)
HEADERS = {"expr": (",".join(ABAW8.labels), ",".join(ABAW7.labels)), "au": (AU_HEADER,),
           "va": ("valence,arousal",)}
WIDTH = {"expr": 1, "au": len(AU_NAMES), "va": 2}
LOCATION = re.compile(r"^.+:\d+: .+", re.DOTALL)


@st.composite
def annotation_lines(draw, width: int, first_column=None) -> list[str]:
    """Lines that are mostly well-formed, with wrong widths and junk mixed in."""
    lines = []
    for _ in range(draw(st.integers(0, 12))):
        n = draw(st.sampled_from((width, width, width, width - 1, width + 1, 0)))
        fields = [draw(st.sampled_from(NUMBER_TOKENS)) for _ in range(max(0, n))]
        if first_column is not None:
            fields.insert(0, draw(first_column))
        line = ",".join(fields)
        if draw(st.integers(0, 5)) == 0:
            pos = draw(st.integers(0, len(line)))
            line = line[:pos] + draw(st.sampled_from(JUNK)) + line[pos:]
        lines.append(line)
    return lines


def _join(draw, header: str, lines: list[str]) -> str:
    if draw(st.booleans()):
        header = header.upper() if draw(st.booleans()) else f" {header.replace(',', ' , ')} "
    newline = draw(st.sampled_from(("\n", "\r\n", "\r")))
    text = newline.join([header, *lines]) + draw(st.sampled_from(("", newline, newline * 3, "  \n")))
    return ("\ufeff" if draw(st.booleans()) else "") + text


@st.composite
def task_files(draw) -> tuple[str, str]:
    task = draw(st.sampled_from(("expr", "au", "va")))
    header = draw(st.sampled_from(HEADERS[task] + ("Neutral,Happy", "valence", "")))
    return task, _join(draw, header, draw(annotation_lines(WIDTH[task])))


IMAGE_NAMES = st.sampled_from(("vid/00001.jpg", "vid/00002.jpg", "a_left/00010.jpg", "../etc/passwd",
                               "/abs/1.jpg", "C:\\x\\1.jpg", "vid\\..\\..\\x.jpg", "", " vid/00003.jpg ",
                               "vid/00001.jpg", "ok/..hidden/1.jpg"))


@st.composite
def mtl_files(draw) -> str:
    header = draw(st.sampled_from((",".join(MTL_HEADER), ",".join(MTL_HEADER[:-1]), "image,expression")))
    return _join(draw, header, draw(annotation_lines(len(MTL_HEADER) - 1, first_column=IMAGE_NAMES)))


def _write(tmp: str, text: str, name: str = "video.txt") -> Path:
    path = Path(tmp) / name
    path.write_bytes(text.encode("utf-8", errors="surrogatepass"))
    return path


def _check_error(error: AnnotationError, path: Path) -> None:
    assert str(error).startswith(f"{path}:") and LOCATION.match(str(error)), str(error)
    assert error.line >= 1


@FUZZ
@given(task_files(), st.booleans())
def test_task_files_parse_or_raise_annotation_error(case, skip):
    task, text = case
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(tmp, text)
        try:
            ann = read_task_file(path, task, skip_bad_lines=skip)
        except AnnotationError as e:
            _check_error(e, path)
            return
        values = np.asarray(ann.values)
        assert values.shape[:1] == (len(ann),)
        assert np.isfinite(values).all()  # NaN/inf never reach a data set
        if task == "expr":
            assert values.dtype == np.int64 and ((values >= -1) & (values < 8)).all()
        elif task == "au":
            assert values.shape[1:] == (12,) and np.isin(values, (-1, 0, 1)).all()
        else:
            assert values.shape[1:] == (2,) and (((values >= -1) & (values <= 1)) | (values == -5)).all()


@FUZZ
@given(st.text(max_size=300), st.sampled_from(("expr", "au", "va")))
def test_arbitrary_text_in_task_files(text, task):
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(tmp, text)
        try:
            read_task_file(path, task)
        except AnnotationError as e:
            _check_error(e, path)


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes_in_task_files(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "video.txt"
        path.write_bytes(data)
        try:
            read_task_file(path, "au", skip_bad_lines=True)
        except AnnotationError as e:
            _check_error(e, path)


@FUZZ
@given(mtl_files(), st.booleans())
def test_mtl_csv_parses_or_raises_and_never_escapes_the_image_folder(text, skip):
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(tmp, text, "training_set_annotations.txt")
        try:
            ann = read_mtl_csv(path, skip_bad_lines=skip)
        except AnnotationError as e:
            _check_error(e, path)
            return
        n = len(ann.images)
        assert ann.expr.shape == (n,) and ann.au.shape == (n, 12) and ann.va.shape == (n, 2)
        assert len(set(ann.images)) == n
        root = Path(tmp) / "cropped_aligned"
        for image in ann.images:
            assert image and (root / image.replace("\\", "/")).resolve().is_relative_to(root.resolve()), image
        for values in (ann.expr, ann.au, ann.va):
            assert np.isfinite(values).all()


@FUZZ
@given(st.sampled_from(("expr", "au", "va")), st.data())
def test_prediction_files_parse_or_raise_annotation_error(task, data):
    width = WIDTH[task]
    header = data.draw(st.sampled_from((prediction_header(task), "image_location", "image,x")))
    text = _join(data.draw, header, data.draw(annotation_lines(width, first_column=IMAGE_NAMES)))
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(tmp, text, "predictions.csv")
        try:
            predictions = read_predictions(path, task)
        except AnnotationError as e:
            _check_error(e, path)
            return
        for image, value in predictions.items():
            assert re.fullmatch(r"[^/\\]+/\d+\.jpg", image, re.IGNORECASE)
            assert np.isfinite(np.asarray(value, dtype=float)).all()
