"""The layering of docs/ARCHITECTURE.md, checked on the source: every import in ``affectmodel/``
(module level and inside functions) points to the same or a lower layer, training and inference do
not import each other, and the library never imports the apps or their UI packages."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "affectmodel"

# Lowest first, as drawn in docs/ARCHITECTURE.md ("Layers"). A module belongs to the longest
# prefix listed here.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundations", ("tasks", "images", "io", "locking", "lazy", "runtime", "progress", "provenance", "alignment",
                     "data.layout", "data.marker")),
    ("model", ("model", "model_config", "resnet", "temporal", "losses", "metrics", "records", "predictions",
               "summaries", "health")),
    ("data", ("data",)),
    ("statistics", ("statistics", "scoring")),
    ("model loading", ("hub.loading", "hub.model_index", "initialisation")),
    ("pipelines", ("training", "inference", "study")),
    ("publishing", ("hub",)),
    ("commands", ("cli", "cache_cli", "__main__", "__init__")),
]
# Upward imports the document names as exceptions: the command modules of the pipelines take the
# shared UserError / os_error_message from the command table (no cycle; keeps --help fast).
# The run record names the package version, which lives in the package's __init__ (read from there
# by packaging tools too).
ALLOWED_UPWARD = {
    ("inference.cli", "cli"),
    ("training.cli", "cli"),
    ("training.records_writer", "__init__"),
}
APP_PACKAGES = ("gradio", "streamlit", "demo", "dashboard", "altair")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(module: str) -> int:
    best, best_len = None, -1
    for index, (_name, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    assert best is not None, f"affectmodel.{module} is in no layer: add it to LAYERS and docs/ARCHITECTURE.md"
    return best


def is_module(dotted: str) -> bool:
    path = PACKAGE.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports_of(path: Path) -> list[tuple[str, int]]:
    """(target, line): project modules (relative to affectmodel) and other top-level packages
    (prefixed ``ext:``) imported anywhere in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                name = alias.name
                found.append((name.removeprefix("affectmodel.") if name.startswith("affectmodel.")
                              else f"ext:{name.split('.')[0]}", node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                name = node.module or ""
                if name == "affectmodel" or name.startswith("affectmodel."):
                    base = name.removeprefix("affectmodel").lstrip(".")
                else:
                    found.append((f"ext:{name.split('.')[0]}", node.lineno))
                    continue
            else:
                base_parts = package.split(".") if package else []
                base_parts = base_parts[: len(base_parts) - (node.level - 1)] if node.level > 1 else base_parts
                base = ".".join(p for p in [*base_parts, *(node.module or "").split(".")] if p)
            for alias in node.names:  # `from . import checkpoint` imports a module
                candidate = f"{base}.{alias.name}" if base else alias.name
                found.append((candidate if is_module(candidate) else (base or "__init__"), node.lineno))
    return found


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer():
    for path in SOURCES:
        layer_of(module_name(path))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down(path):
    here = module_name(path)
    wrong = []
    for target, line in imports_of(path):
        if target.startswith("ext:"):
            if target[4:] in APP_PACKAGES:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {target[4:]} (an app or UI package)")
            continue
        if layer_of(target) > layer_of(here) and (here, target) not in ALLOWED_UPWARD:
            wrong.append(f"{path.relative_to(ROOT)}:{line} ({LAYERS[layer_of(here)][0]}) imports affectmodel."
                         f"{target} ({LAYERS[layer_of(target)][0]})")
        pipelines = {here.split(".")[0], target.split(".")[0]}
        if pipelines == {"training", "inference"}:
            wrong.append(f"{path.relative_to(ROOT)}:{line}: training and inference must not import each other")
    assert not wrong, "\n".join(wrong)


def test_the_checker_sees_function_level_and_relative_imports(tmp_path):
    """The walker must resolve what the package actually writes, or the test above proves nothing."""
    trainer = dict(imports_of(PACKAGE / "training" / "trainer.py"))
    assert "records" in trainer and "initialisation" in trainer and "training.checkpoint" in trainer
    space = dict(imports_of(PACKAGE / "hub" / "space.py"))
    assert "training.default_model" in space  # imported inside a function
    assert layer_of("hub.loading") < layer_of("hub.space") and layer_of("data.marker") < layer_of("data.cache")
