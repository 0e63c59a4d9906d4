"""docs/RELIABILITY.md stays tied to the tests: every table row names a test that exists.

The test names are collected by parsing the test files with ``ast`` (no pytest run), so this is
fast and fails as soon as a test named in the document is renamed or removed. Rows inside an HTML
comment (``<!-- ... -->``, e.g. cases still being wired on another branch) are ignored.
"""
from __future__ import annotations

import ast
import re
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "RELIABILITY.md"
# tests/test_x.py::test_name, tests/test_x.py::TestClass::test_name; a [param] suffix is allowed
TEST_REF = re.compile(r"(tests/[\w/]+\.py)::((?:Test\w+::)?test\w*)(?:\[[^\]\s]*\])?")
SEPARATOR_ROW = re.compile(r"^\|[\s:|-]+\|$")


def visible_text(markdown: str) -> str:
    """The document without its HTML comments (what a reader sees and what is checked)."""
    return re.sub(r"<!--.*?-->", "", markdown, flags=re.DOTALL)


def table_rows(markdown: str) -> list[tuple[int, str]]:
    """(line number, text) of every table body row: the header and separator rows are skipped."""
    rows: list[tuple[int, str]] = []
    previous_was_table = False
    lines = visible_text(markdown).splitlines()
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        is_table = stripped.startswith("|")
        if is_table and previous_was_table and not SEPARATOR_ROW.match(stripped):
            header_follows = number < len(lines) and SEPARATOR_ROW.match(lines[number].strip() or "x")
            if not header_follows:
                rows.append((number, stripped))
        previous_was_table = is_table
    return rows


@lru_cache(maxsize=None)
def names_in_test_file(path: str, root: Path = ROOT) -> frozenset[str]:
    """Names pytest would collect from a test file: module-level ``test*`` functions and
    ``Test*::test*`` methods (found by parsing, not importing)."""
    file = root / path
    if not file.is_file():
        return frozenset()
    tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            names.update(f"{node.name}::{item.name}" for item in node.body
                         if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
                         and item.name.startswith("test"))
    return frozenset(names)


def missing_tests(markdown: str) -> list[str]:
    """Every test reference in the visible text whose file or function does not exist."""
    return sorted({f"{path}::{name}" for path, name in TEST_REF.findall(visible_text(markdown))
                   if name not in names_in_test_file(path)})


def missing_files(markdown: str) -> list[str]:
    """Test files and modules named in the visible text (``tests/x.py``, ``affectmodel/x.py``...)
    that do not exist."""
    named = set(re.findall(r"\b((?:tests|affectmodel|scripts|demo)/[\w/]+\.py)\b", visible_text(markdown)))
    return sorted(path for path in named if not (ROOT / path).is_file())


def rows_without_a_test(markdown: str) -> list[str]:
    return [f"line {number}: {row[:80]}" for number, row in table_rows(markdown) if not TEST_REF.search(row)]


# ------------------------------------------------------------------ the document itself

def test_every_row_of_the_reliability_document_names_a_test():
    markdown = DOC.read_text(encoding="utf-8")
    assert len(table_rows(markdown)) > 50  # the tables were found at all
    assert rows_without_a_test(markdown) == []


def test_every_test_named_in_the_reliability_document_exists():
    markdown = DOC.read_text(encoding="utf-8")
    assert len(TEST_REF.findall(visible_text(markdown))) > 50
    assert missing_tests(markdown) == []
    assert missing_files(markdown) == []


# ------------------------------------------------------------------ the checker catches what it should

SAMPLE = """\
| Case | Outcome | Test |
|---|---|---|
| empty file | refused | `tests/test_reliability_doc.py::test_every_row_of_the_reliability_document_names_a_test` |
| two cases | refused | `tests/test_io.py::test_unserialisable_value_is_a_type_error[x]` |
{extra}
<!-- pending on another branch:
| a case still being wired | one line | TODO tests/test_nowhere.py::test_nothing |
-->
"""


@pytest.mark.parametrize("extra, missing, unnamed", [
    ("", [], []),
    ("| a row naming no test | refused | - |", [], ["line 5"]),
    ("| renamed test | refused | `tests/test_io.py::test_that_was_renamed` |",
     ["tests/test_io.py::test_that_was_renamed"], []),
    ("| wrong file | refused | `tests/test_nothing_here.py::test_x` |", ["tests/test_nothing_here.py::test_x"], []),
])
def test_the_checker_finds_rows_without_tests_and_tests_that_do_not_exist(extra, missing, unnamed):
    markdown = SAMPLE.format(extra=extra)
    assert missing_tests(markdown) == missing
    assert [r.split(":")[0] for r in rows_without_a_test(markdown)] == unnamed
    assert len(table_rows(markdown)) == 2 + bool(extra)  # header, separator and commented rows skipped
    assert missing_files(markdown) == sorted({m.split("::")[0] for m in missing if "nothing_here" in m})


def test_functions_and_class_methods_are_collected_helpers_are_not(tmp_path):
    test_file = tmp_path / "tests" / "test_sample.py"
    test_file.parent.mkdir()
    test_file.write_text("class TestThing:\n    def test_a(self):\n        pass\n\n"
                         "def helper():\n    pass\n\nasync def test_b():\n    pass\n")
    assert names_in_test_file("tests/test_sample.py", tmp_path) == frozenset({"TestThing::test_a", "test_b"})
    assert names_in_test_file("tests/test_absent.py", tmp_path) == frozenset()
