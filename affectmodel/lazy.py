"""Lazy exports for package ``__init__`` modules: a name is imported on first use.

Packages use it so that ``import affectmodel`` (and the torch-free commands such as ``score``)
do not pay for importing torch, OpenCV or PyAV until a name that needs them is touched.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` for ``package`` that resolves ``exports``
    (name -> module, relative to ``package``, e.g. ``".model"`` or ``"..images"``) on first use."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module, package), name)

    return __getattr__


__all__ = ["lazy_getattr"]
