"""Parsers for Aff-Wild2 annotation files (formats: docs/DATA.md).

* Per-video task files (EXPR / AU / VA): line 1 a header, line i+1 = frame i (1-based).
* The s-Aff-Wild2 multi-task CSV: ``image,valence,arousal,expression,AU1,...,AU26``.

Both are parsed with numpy in one pass (150k lines in well under a second); only when that
fast path finds a problem are the offending lines parsed one by one, to name the exact line.
Every problem is an :class:`AnnotationError` whose message starts with ``"<path>:<line>: "``.
With ``skip_bad_lines=True`` a bad line is kept as "not annotated" (-1 / -5) and its message
is recorded in ``bad_lines`` instead, so that one broken line does not discard a whole video.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..metrics import valid_au, valid_rows, valid_va
from ..tasks import (
    ABAW7,
    ABAW8,
    AU_NAMES,
    AU_TASK,
    VA_NAMES,
    VA_TASK,
    LabelSpace,
    get_label_space,
    get_task,
    label_mapping,
)

# Aff-Wild2 EXPR files come in the 8-class (ABAW 3+) or the 7-class (ABAW 1-2) label space;
# the file's header says which, and values are mapped by concept into the requested space.
EXPR_FILE_SPACES: tuple[LabelSpace, ...] = (ABAW8, ABAW7)
MTL_HEADER: tuple[str, ...] = ("image", *VA_NAMES, "expression", *AU_NAMES)
_MTL_VA, _MTL_EXPR, _MTL_AU = slice(0, 2), 2, slice(3, 3 + len(AU_NAMES))  # numeric columns


class AnnotationError(ValueError):
    """A malformed annotation file; the message starts with ``"<path>:<line>: "``."""

    def __init__(self, path: str | os.PathLike, line: int, reason: str):
        self.path, self.line, self.reason = str(path), line, reason
        super().__init__(f"{self.path}:{line}: {reason}")


@dataclass
class TaskAnnotations:
    """One per-video annotation file. ``values[i]`` belongs to frame ``i + 1``.

    ``values``: expr int64 (n,), au float32 (n, 12), va float32 (n, 2); invalid codes kept.
    """

    path: Path
    task: str                       # task key: "expr", "au" or "va"
    values: np.ndarray
    bad_lines: list[str] = field(default_factory=list)
    expression_space: str | None = None  # expr only: label space of ``values``

    def __len__(self) -> int:
        return len(self.values)

    def valid_frames(self) -> np.ndarray:
        """Bool (n,): frames with at least one valid label for this task."""
        return _valid_rows(self.task, self.values, self.expression_space)


@dataclass
class MTLAnnotations:
    """The s-Aff-Wild2 multi-task CSV; row i describes ``images[i]`` ("<video>/<frame>.jpg")."""

    path: Path
    images: list[str]
    expr: np.ndarray                # int64 (n,), -1 = not annotated
    au: np.ndarray                  # float32 (n, 12), -1 = not annotated
    va: np.ndarray                  # float32 (n, 2), -5 = not annotated
    bad_lines: list[str] = field(default_factory=list)
    expression_space: str = ABAW8.name

    def __len__(self) -> int:
        return len(self.images)


# ------------------------------------------------------------------ public readers

def read_task_file(path: str | os.PathLike, task: str, expression_space: str | LabelSpace = "abaw8",
                   skip_bad_lines: bool = False) -> TaskAnnotations:
    """Read one per-video EXPR / AU / VA annotation file (task key or challenge name)."""
    path = Path(path)
    spec = get_task(task, expression_space)
    lines = read_text_lines(path)
    if not lines:
        raise AnnotationError(path, 1, f"empty file; expected the header {','.join(spec.annotation_header)!r}")
    header = split_header(lines[0])
    body = lines[1:]
    bad: list[str] = []

    if spec.key == "expr":
        target_space = get_label_space(expression_space)
        file_space = next((s for s in EXPR_FILE_SPACES if header == _lower(s.labels)), None)
        if file_space is None:
            raise AnnotationError(path, 1, _header_reason(lines[0], [ABAW8.labels, ABAW7.labels], "EXPR"))
        arr = _parse_numeric(path, body, 1, skip_bad_lines, bad,
                             lambda rows: _expr_problems(rows[:, 0], len(file_space)),
                             invalid_row=np.array([-1.0]))
        values = _map_expression(arr[:, 0], file_space, target_space)
        return TaskAnnotations(path, "expr", values, bad, target_space.name)

    if header != _lower(spec.annotation_header):
        raise AnnotationError(path, 1, _header_reason(lines[0], [spec.annotation_header], spec.challenge_name))
    if spec.key == "au":
        arr = _parse_numeric(path, body, len(AU_NAMES), skip_bad_lines, bad, _au_problems,
                             invalid_row=np.full(len(AU_NAMES), float(AU_TASK.invalid_code)))
    else:
        arr = _parse_numeric(path, body, len(VA_NAMES), skip_bad_lines, bad, _va_problems,
                             invalid_row=np.full(len(VA_NAMES), float(VA_TASK.invalid_code)))
    return TaskAnnotations(path, spec.key, arr.astype(np.float32), bad)


def read_task_folder(folder: str | os.PathLike, task: str, expression_space: str | LabelSpace = "abaw8",
                     skip_bad_lines: bool = False) -> dict[str, TaskAnnotations]:
    """Read every ``<video>.txt`` of a per-task annotation folder; keys are video names, sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"annotation folder not found: {folder}")
    files = sorted(p for p in folder.glob("*.txt") if p.is_file())  # not a stray folder named x.txt
    if not files:
        raise FileNotFoundError(f"no <video>.txt annotation files in {folder}")
    return {f.stem: read_task_file(f, task, expression_space, skip_bad_lines) for f in files}


def read_mtl_csv(path: str | os.PathLike, skip_bad_lines: bool = False,
                 expression_space: str | LabelSpace = "abaw8") -> MTLAnnotations:
    """Read the s-Aff-Wild2 multi-task annotation CSV.

    Image paths that are absolute or contain ``..`` always raise, even with ``skip_bad_lines``:
    they point outside the image folder and signal a corrupted or hostile file.
    """
    path = Path(path)
    target_space = get_label_space(expression_space)
    lines = read_text_lines(path)
    if not lines:
        raise AnnotationError(path, 1, f"empty file; expected the header {','.join(MTL_HEADER)!r}")
    if split_header(lines[0]) != _lower(MTL_HEADER):
        raise AnnotationError(path, 1, _header_reason(lines[0], [MTL_HEADER], "multi-task"))
    body = lines[1:]
    ncols = len(MTL_HEADER)
    bad: list[str] = []

    images, numeric_lines, tokens, reasons = split_first_column(body, ncols)
    drop: set[int] = set()  # skipped rows that cannot be kept: no image, or a repeated one
    for i, img in enumerate(images):
        if not img:
            reasons.setdefault(i, "empty image path")
            drop.add(i)
        elif (reason := _image_problem(img)) is not None:
            raise AnnotationError(path, i + 2, reason)
    if len(set(images)) != len(images):
        first_line: dict[str, int] = {}
        for i, img in enumerate(images):
            first = first_line.setdefault(img, i)
            if img and first != i:
                reasons.setdefault(i, f"image {img!r} already listed on line {first + 2}")
                drop.add(i)

    invalid_row = np.array([-5.0, -5.0, -1.0] + [-1.0] * len(AU_NAMES))
    arr = parse_number_rows(path, tokens, numeric_lines, ncols - 1, skip_bad_lines, bad, _mtl_problems,
                            invalid_row, column_offset=1, extra_reasons=reasons)
    if drop:
        keep = [i for i in range(len(images)) if i not in drop]
        images = [images[i] for i in keep]
        arr = arr[keep]
    expr = _map_expression(arr[:, _MTL_EXPR], ABAW8, target_space)
    return MTLAnnotations(path, images, expr, arr[:, _MTL_AU].astype(np.float32),
                          arr[:, _MTL_VA].astype(np.float32), bad, target_space.name)


# ------------------------------------------------------------------ reading and headers

def read_text_lines(path: Path) -> list[str]:
    """Lines without line endings; BOM and trailing blank lines removed."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise AnnotationError(path, line, "not UTF-8 text") from None
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def _lower(labels) -> tuple[str, ...]:
    return tuple(s.lower() for s in labels)


def split_header(line: str) -> tuple[str, ...]:
    return tuple(f.strip().lower() for f in line.split(","))


def _header_reason(found: str, expected: list[tuple[str, ...]], what: str) -> str:
    options = " or ".join(repr(",".join(e)) for e in expected)
    return f"wrong header for {what} annotations: found {found.strip()!r}, expected {options}"


def _image_problem(img: str) -> str | None:
    # plain string checks: this runs once per row of a 150k-row file
    if ".." in img or img[0] in "/\\" or ":" in img:
        norm = img.replace("\\", "/")
        if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":") or ".." in norm.split("/"):
            return f"image path {img!r} escapes the image folder (absolute or contains '..')"
    return None


def _report(path: Path, line: int, reason: str, skip: bool, bad: list[str]) -> None:
    if not skip:
        raise AnnotationError(path, line, reason)
    bad.append(f"{path}:{line}: {reason}")


# ------------------------------------------------------------------ numeric parsing

def split_first_column(body: list[str], ncols: int
                       ) -> tuple[list[str], list[str], list[str] | None, dict[int, str]]:
    """Split CSV lines of ``ncols`` columns into (first column, stripped), the rest of each line,
    all numeric tokens at once (None when some line has the wrong column count) and
    {line index: reason} for lines with the wrong column count."""
    reasons: dict[int, str] = {}
    if all(line.count(",") == ncols - 1 for line in body):
        tokens = ",".join(body).split(",") if body else []
        keys = [t.strip() for t in tokens[0::ncols]]
        del tokens[0::ncols]
    else:
        tokens = None
        for i, line in enumerate(body):
            if not line.strip():
                reasons[i] = f"empty line (expected {ncols} comma-separated values)"
            elif line.count(",") != ncols - 1:
                reasons[i] = f"expected {ncols} comma-separated values, found {line.count(',') + 1}"
        keys = [line.partition(",")[0].strip() for line in body]
    rest = [line.partition(",")[2] for line in body]
    return keys, rest, tokens, reasons


def _parse_numeric(path: Path, lines: list[str], ncols: int, skip: bool, bad: list[str], problems,
                   invalid_row: np.ndarray, column_offset: int = 0,
                   extra_reasons: dict[int, str] | None = None) -> np.ndarray:
    """Parse ``lines`` (list index k = file line k + 2) of ``ncols`` comma-separated numbers each."""
    tokens = None
    if all(line.count(",") == ncols - 1 for line in lines):
        tokens = ",".join(lines).split(",") if lines else []
    return parse_number_rows(path, tokens, lines, ncols, skip, bad, problems, invalid_row, column_offset,
                             extra_reasons)


def parse_number_rows(path: Path, tokens: list[str] | None, numeric_lines: list[str], ncols: int,
                      skip: bool, bad: list[str], problems, invalid_row: np.ndarray, column_offset: int = 0,
                      extra_reasons: dict[int, str] | None = None) -> np.ndarray:
    """Parse ``numeric_lines`` (index k = file line k + 2) into a float64 array (n, ncols).

    ``tokens``: all values split at once (fast path), or None to parse line by line.
    ``problems(arr) -> {row: reason}`` checks values; bad rows (and ``extra_reasons`` rows) are
    reported in file order: the first raises :class:`AnnotationError` unless ``skip``, in which
    case each message goes to ``bad`` and the row becomes ``invalid_row``.
    ``column_offset``: columns before ``numeric_lines`` in the file, for messages.
    """
    n = len(numeric_lines)
    if n == 0:
        return np.zeros((0, ncols))
    arr = None
    # numpy, like float(), accepts "1_0": rule that out before trusting the fast path
    if tokens is not None and "_" not in "".join(tokens):
        try:
            arr = np.array(tokens, dtype=np.float64).reshape(n, ncols)
        except ValueError:
            arr = None
    reasons: dict[int, str] = dict(extra_reasons or {})
    if arr is None:
        arr = np.empty((n, ncols))
        for i, line in enumerate(numeric_lines):
            row, reason = _parse_line(line, ncols, column_offset)
            if reason is not None:
                reasons.setdefault(i, reason)
                row = invalid_row
            arr[i] = row
    for i, reason in problems(arr).items():
        reasons.setdefault(i, reason)
    for i in sorted(reasons):  # in file order, so that without skipping the first bad line raises
        _report(path, i + 2, reasons[i], skip, bad)
        arr[i] = invalid_row
    return arr


def _parse_line(line: str, ncols: int, column_offset: int) -> tuple[np.ndarray | None, str | None]:
    """``line``: the numbers of one file line, after its first ``column_offset`` columns (a
    blank ``line`` is then an empty value, not an empty line: ``video/00001.jpg,``)."""
    if not line.strip() and not column_offset:
        return None, f"empty line (expected {ncols} comma-separated values)"
    fields = line.split(",")
    if len(fields) != ncols:
        return None, f"expected {ncols + column_offset} comma-separated values, found {len(fields) + column_offset}"
    row = np.empty(ncols)
    for j, f in enumerate(fields):
        s = f.strip()
        if not s:
            return None, f"empty value in column {j + 1 + column_offset} (expected a number)"
        try:
            if "_" in s:
                raise ValueError
            row[j] = float(s)
        except ValueError:
            return None, f"non-numeric value {s!r} in column {j + 1 + column_offset}"
    return row, None


# ------------------------------------------------------------------ value checks
# Each returns {row index: reason} for rows with a non-finite or out-of-range value.

def _nonfinite(arr: np.ndarray, names: tuple[str, ...]) -> dict[int, str]:
    out: dict[int, str] = {}
    rows, cols = np.nonzero(~np.isfinite(arr))
    for i, j in zip(rows.tolist(), cols.tolist(), strict=True):
        out.setdefault(i, f"{names[j]} value {float(arr[i, j])} is not finite")
    return out


def _expr_problems(values: np.ndarray, num_classes: int) -> dict[int, str]:
    out = _nonfinite(values[:, None], ("expression",))
    ok = np.isfinite(values)
    integral = ok & (values == np.round(np.where(ok, values, 0)))
    in_range = integral & (values >= -1) & (values < num_classes)
    for i in np.nonzero(~in_range)[0].tolist():
        if i not in out:
            v = values[i]
            shown = int(v) if integral[i] else v
            out[i] = (f"expression label {shown} out of range (expected 0..{num_classes - 1}, "
                      f"or -1 for not annotated)" if integral[i]
                      else f"expression label {shown} is not an integer")
    return out


def _column_problems(arr: np.ndarray, names: tuple[str, ...], valid: Callable[[np.ndarray], np.ndarray],
                     invalid_code: float, expected: str) -> dict[int, str]:
    """Per row, the first value that is neither a valid label (metrics' rule) nor the task's
    "not annotated" code."""
    out = _nonfinite(arr, names)
    rows, cols = np.nonzero(~(valid(arr) | (arr == invalid_code)))
    for i, j in zip(rows.tolist(), cols.tolist(), strict=True):
        out.setdefault(i, f"{names[j]} value {_fmt(arr[i, j])} out of range (expected {expected}, "
                          f"or {_fmt(invalid_code)} for not annotated)")
    return out


def _au_problems(arr: np.ndarray) -> dict[int, str]:
    return _column_problems(arr, AU_NAMES, valid_au, AU_TASK.invalid_code, "0 or 1")


def _va_problems(arr: np.ndarray) -> dict[int, str]:
    return _column_problems(arr, VA_NAMES, valid_va, VA_TASK.invalid_code, "-1..1")


def _mtl_problems(arr: np.ndarray) -> dict[int, str]:
    out = _va_problems(arr[:, _MTL_VA])
    for part in (_expr_problems(arr[:, _MTL_EXPR], len(ABAW8)), _au_problems(arr[:, _MTL_AU])):
        for i, reason in part.items():
            out.setdefault(i, reason)
    return out


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def _map_expression(values: np.ndarray, source: LabelSpace, target: LabelSpace) -> np.ndarray:
    """Class indices of ``source`` -> ``target`` by concept; -1 stays -1 (not annotated)."""
    idx = values.astype(np.int64)
    if source.name == target.name:
        return idx
    lut = np.array([label_mapping(source, target)[i] for i in range(len(source))] + [-1], dtype=np.int64)
    return lut[np.where(idx >= 0, idx, len(source))]


def _valid_rows(task: str, values: np.ndarray, expression_space: str | None) -> np.ndarray:
    return valid_rows(task, values, len(get_label_space(expression_space or ABAW8)))


__all__ = [
    "EXPR_FILE_SPACES",
    "MTL_HEADER",
    "AnnotationError",
    "MTLAnnotations",
    "TaskAnnotations",
    "parse_number_rows",
    "read_mtl_csv",
    "read_task_file",
    "read_task_folder",
    "read_text_lines",
    "split_first_column",
    "split_header",
]
