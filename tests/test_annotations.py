"""Aff-Wild2 annotation parsers: per-video task files and the s-Aff-Wild2 multi-task CSV."""

import numpy as np
import pytest

from affectmodel.data.annotations import (
    AnnotationError,
    TaskAnnotations,
    read_mtl_csv,
    read_task_file,
    read_task_folder,
)
from affectmodel.tasks import ABAW7, ABAW8, AFFECTNET8, AU_NAMES, label_mapping

EXPR_HEADER = ",".join(ABAW8.labels)
AU_HEADER = ",".join(AU_NAMES)
VA_HEADER = "valence,arousal"
MTL_HEADER = "image,valence,arousal,expression," + AU_HEADER


def write(path, text, newline="\n"):
    path.write_bytes(text.replace("\n", newline).encode("utf-8"))
    return path


def mtl_row(image, va=(0.1, -0.2), expr=3, au=(0,) * 12):
    return ",".join([image, *map(str, va), str(expr), *map(str, au)])


# ------------------------------------------------------------------ per-task files: good input

@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_expr_file_values_frames_and_line_endings(tmp_path, newline):
    f = write(tmp_path / "vid.txt", EXPR_HEADER + "\n0\n7\n-1\n 4 \n\n\n", newline)
    ann = read_task_file(f, "EXPR")
    assert isinstance(ann, TaskAnnotations)
    assert ann.task == "expr" and ann.expression_space == "abaw8"
    assert ann.values.dtype == np.int64
    np.testing.assert_array_equal(ann.values, [0, 7, -1, 4])  # trailing empty lines are not frames
    np.testing.assert_array_equal(ann.valid_frames(), [True, True, False, True])
    assert ann.bad_lines == []


def test_header_accepts_whitespace_case_and_bom(tmp_path):
    header = "\ufeff valence , AROUSAL \n"
    ann = read_task_file(write(tmp_path / "v.txt", header + "0.5,-0.25\n-5,-5\n"), "va")
    assert ann.values.dtype == np.float32 and ann.values.shape == (2, 2)
    np.testing.assert_allclose(ann.values, [[0.5, -0.25], [-5, -5]])
    np.testing.assert_array_equal(ann.valid_frames(), [True, False])


def test_au_file(tmp_path):
    rows = np.array([[1, 0] * 6, [-1] * 12, [0] * 11 + [1]])
    text = AU_HEADER + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n"
    ann = read_task_file(write(tmp_path / "a.txt", text), "au")
    assert ann.values.dtype == np.float32 and ann.values.shape == (3, 12)
    np.testing.assert_array_equal(ann.values, rows)
    np.testing.assert_array_equal(ann.valid_frames(), [True, False, True])


def test_empty_body_gives_zero_frames(tmp_path):
    ann = read_task_file(write(tmp_path / "a.txt", AU_HEADER + "\n"), "AU")
    assert ann.values.shape == (0, 12)


def test_expression_spaces_map_by_concept(tmp_path):
    eight = write(tmp_path / "e8.txt", EXPR_HEADER + "\n" + "\n".join(map(str, range(-1, 8))) + "\n")
    seven = write(tmp_path / "e7.txt", ",".join(ABAW7.labels) + "\n" + "\n".join(map(str, range(-1, 7))) + "\n")
    # 8-class file read in the 7-class space: "Other" has no counterpart, so it is not annotated
    np.testing.assert_array_equal(read_task_file(eight, "expr", "abaw7").values, [*range(-1, 7), -1])
    # 7-class (ABAW 1-2) file read in the default 8-class space: same indices
    np.testing.assert_array_equal(read_task_file(seven, "expr").values, list(range(-1, 7)))
    # another space: explicit mapping by concept, never positional
    mapping = label_mapping(ABAW8, AFFECTNET8)
    expected = [-1] + [mapping[i] for i in range(8)]
    got = read_task_file(eight, "expr", "affectnet8").values
    np.testing.assert_array_equal(got, expected)
    assert got[1 + ABAW8.index("Happiness")] == AFFECTNET8.index("Happy")


def test_seven_class_file_rejects_label_seven(tmp_path):
    f = write(tmp_path / "e7.txt", ",".join(ABAW7.labels) + "\n1\n7\n")
    with pytest.raises(AnnotationError, match=r"e7\.txt:3: expression label 7 out of range"):
        read_task_file(f, "expr")


def test_read_task_folder(tmp_path):
    write(tmp_path / "b.txt", VA_HEADER + "\n0.1,0.2\n")
    write(tmp_path / "a_left.txt", VA_HEADER + "\n-5,-5\n0,0\n")
    anns = read_task_folder(tmp_path, "va")
    assert list(anns) == ["a_left", "b"]
    assert len(anns["a_left"]) == 2
    with pytest.raises(FileNotFoundError):
        read_task_folder(tmp_path / "missing", "va")


# ------------------------------------------------------------------ per-task files: bad input

@pytest.mark.parametrize("task,text,line,reason", [
    ("expr", "Neutral,Anger\n0\n", 1, "wrong header"),
    ("va", "arousal,valence\n0,0\n", 1, "wrong header"),
    ("au", AU_HEADER + "\n" + "0," * 11 + "0\n" + "0," * 10 + "0\n", 3, "expected 12 comma-separated values, found 11"),
    ("va", VA_HEADER + "\n0.1,0.2\n0.1,abc\n", 3, "non-numeric value 'abc' in column 2"),
    ("va", VA_HEADER + "\n0.1,nan\n", 2, "not finite"),
    ("va", VA_HEADER + "\n0.1,inf\n", 2, "not finite"),
    ("va", VA_HEADER + "\n0.1,0.2\n1.5,0\n", 3, "valence value 1.5 out of range"),
    ("va", VA_HEADER + "\n0.1,0.2\n-2,0\n", 3, "out of range"),
    ("au", AU_HEADER + "\n" + "0," * 11 + "2\n", 2, "AU26 value 2 out of range"),
    ("expr", EXPR_HEADER + "\n0\n8\n", 3, "expression label 8 out of range"),
    ("expr", EXPR_HEADER + "\n0\n-2\n", 3, "out of range"),
    ("expr", EXPR_HEADER + "\n2.5\n", 2, "not an integer"),
    ("expr", EXPR_HEADER + "\n0\n\n1\n", 3, "empty line"),
    ("expr", EXPR_HEADER + "\n1_0\n", 2, "non-numeric"),
    ("expr", "", 1, "empty file"),
])
def test_bad_lines_raise_with_path_and_line(tmp_path, task, text, line, reason):
    f = write(tmp_path / "video_7.txt", text)
    with pytest.raises(AnnotationError) as info:
        read_task_file(f, task)
    msg = str(info.value)
    assert msg.startswith(f"{f}:{line}: "), msg
    assert reason in msg
    assert info.value.line == line and isinstance(info.value, ValueError)


def test_first_bad_line_is_reported(tmp_path):
    # an out-of-range value (line 3) precedes a non-numeric one (line 4)
    f = write(tmp_path / "v.txt", VA_HEADER + "\n0,0\n3,0\nx,0\n")
    with pytest.raises(AnnotationError, match=r"v\.txt:3: "):
        read_task_file(f, "va")


def test_not_utf8_names_line(tmp_path):
    f = tmp_path / "v.txt"
    f.write_bytes(VA_HEADER.encode() + b"\n0,0\n0,\xff\n")
    with pytest.raises(AnnotationError, match=r"v\.txt:3: not UTF-8"):
        read_task_file(f, "va")


def test_skip_bad_lines_keeps_frames_as_invalid(tmp_path):
    f = write(tmp_path / "v.txt", VA_HEADER + "\n0.5,0.5\nx,1\n2,0\n0.1\n\n-0.5,0.25\n")
    ann = read_task_file(f, "va", skip_bad_lines=True)
    np.testing.assert_allclose(ann.values, [[0.5, 0.5]] + [[-5, -5]] * 4 + [[-0.5, 0.25]])
    assert [m.split(": ")[0] for m in ann.bad_lines] == [f"{f}:{n}" for n in (3, 4, 5, 6)]
    fe = write(tmp_path / "e.txt", EXPR_HEADER + "\n3\n9\nfoo\n5\n")
    ann = read_task_file(fe, "expr", skip_bad_lines=True)
    np.testing.assert_array_equal(ann.values, [3, -1, -1, 5])
    assert len(ann.bad_lines) == 2 and "9" in ann.bad_lines[0]
    fa = write(tmp_path / "a.txt", AU_HEADER + "\n" + "1," * 11 + "1\n" + "1," * 11 + "5\n")
    ann = read_task_file(fa, "au", skip_bad_lines=True)
    np.testing.assert_array_equal(ann.values, [[1] * 12, [-1] * 12])


def test_parses_150k_lines(tmp_path):
    """Aff-Wild2-sized input parses correctly (speed: benchmarks/loading.py)."""
    rng = np.random.default_rng(0)
    n_files, n_lines = 30, 5000
    rows = rng.integers(-1, 2, (n_lines, 12))
    text = AU_HEADER + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n"
    for k in range(n_files):
        write(tmp_path / f"v{k}.txt", text)
    anns = read_task_folder(tmp_path, "au")
    assert sum(len(a) for a in anns.values()) == n_files * n_lines
    np.testing.assert_array_equal(anns["v7"].values, rows)


# ------------------------------------------------------------------ multi-task CSV

def test_mtl_csv(tmp_path):
    rows = [mtl_row("vid1/00001.jpg", (0.5, -0.5), 4, (1, 0) * 6),
            mtl_row("vid1/00002.jpg", (-5, -5), -1, (-1,) * 12),
            mtl_row("vid2_left/00010.jpg", (0.0, 1.0), 7, (0,) * 12)]
    f = write(tmp_path / "training_set_annotations.txt", MTL_HEADER + "\n" + "\n".join(rows) + "\n\n", "\r\n")
    m = read_mtl_csv(f)
    assert len(m) == 3
    assert m.images == ["vid1/00001.jpg", "vid1/00002.jpg", "vid2_left/00010.jpg"]
    np.testing.assert_array_equal(m.expr, [4, -1, 7])
    assert m.expr.dtype == np.int64 and m.au.dtype == np.float32 and m.va.dtype == np.float32
    np.testing.assert_array_equal(m.au, [(1, 0) * 6, (-1,) * 12, (0,) * 12])
    np.testing.assert_allclose(m.va, [[0.5, -0.5], [-5, -5], [0, 1]])
    assert m.bad_lines == []


@pytest.mark.parametrize("image", ["../secret/00001.jpg", "/etc/00001.jpg", "vid/../../x.jpg",
                                   "C:\\data\\00001.jpg", "\\\\server\\x.jpg"])
def test_mtl_rejects_path_escape_even_when_skipping(tmp_path, image):
    f = write(tmp_path / "m.csv", MTL_HEADER + "\n" + mtl_row("v/00001.jpg") + "\n" + mtl_row(image) + "\n")
    for skip in (False, True):
        with pytest.raises(AnnotationError, match=r"m\.csv:3: .*escapes"):
            read_mtl_csv(f, skip_bad_lines=skip)


@pytest.mark.parametrize("row,reason", [
    (mtl_row("v/00002.jpg", expr=8), "expression label 8 out of range"),
    (mtl_row("v/00002.jpg", va=(0.1, 7)), "arousal value 7 out of range"),
    (mtl_row("v/00002.jpg", au=(0,) * 11 + (3,)), "AU26 value 3"),
    (mtl_row("v/00002.jpg")[:-2], "expected 16 comma-separated values, found 15"),
    (mtl_row("v/00001.jpg"), "already listed on line 2"),
    (mtl_row("v/00002.jpg").replace("0.1", "zz"), "non-numeric value 'zz' in column 2"),
])
def test_mtl_bad_lines(tmp_path, row, reason):
    f = write(tmp_path / "m.csv", MTL_HEADER + "\n" + mtl_row("v/00001.jpg") + "\n" + row + "\n")
    with pytest.raises(AnnotationError) as info:
        read_mtl_csv(f)
    assert str(info.value).startswith(f"{f}:3: ") and reason in str(info.value)
    m = read_mtl_csv(f, skip_bad_lines=True)
    assert len(m.bad_lines) == 1 and m.bad_lines[0].startswith(f"{f}:3: ")
    assert m.images[0] == "v/00001.jpg" and m.expr[0] == 3
    if "already listed" in reason:
        assert m.images == ["v/00001.jpg"]  # a repeated image is dropped, not duplicated
    else:
        assert m.images == ["v/00001.jpg", "v/00002.jpg"]
        assert m.expr[1] == -1 and (m.au[1] == -1).all() and (m.va[1] == -5).all()


def test_mtl_wrong_header(tmp_path):
    f = write(tmp_path / "m.csv", "image,arousal,valence,expression," + AU_HEADER + "\n")
    with pytest.raises(AnnotationError, match=r"m\.csv:1: wrong header"):
        read_mtl_csv(f)
