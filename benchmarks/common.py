"""Shared pieces of the benchmarks: repeated, interleaved timing; result rows with their target;
the machine description; memory and profile helpers.

Each benchmark family is one module with ``run(mode) -> FamilyResult``; ``mode`` is ``"full"``
(the published figures), ``"quick"`` (smaller sizes, to check that everything runs) or ``"tiny"``
(the smoke test in ``tests/test_benchmarks.py``). Comparisons are timed in ONE process, with the
variants interleaved round-robin, so that a busy neighbour slows all of them alike and the ratios
hold even when absolute times do not.
"""
from __future__ import annotations

import cProfile
import io
import math
import os
import platform
import pstats
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

MODES = ("full", "quick", "tiny")
ROOT = Path(__file__).resolve().parents[1]
# Generated inputs (videos, synthetic data) are deterministic: cache them between runs.
CACHE_DIR = Path(tempfile.gettempdir()) / "affectmodel-benchmarks"


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"unknown benchmark mode {mode!r}; choose from {', '.join(MODES)}")
    return mode


# ------------------------------------------------------------------ results

@dataclass
class Row:
    """One figure: the values of the repeated runs, its unit and the target it is held against.

    ``target`` is ``(op, bound)`` with op one of ``<=``/``>=``, or ``None`` for a figure that is
    reported for context only.
    """

    name: str
    values: list[float]
    unit: str
    target: tuple[str, float] | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if not self.values:
            raise ValueError(f"row {self.name!r} has no measured values")
        if self.target is not None and self.target[0] not in ("<=", ">="):
            raise ValueError(f"target of {self.name!r} must use <= or >=, got {self.target[0]!r}")

    @property
    def median(self) -> float:
        return float(statistics.median(self.values))

    @property
    def low(self) -> float:
        return float(min(self.values))

    @property
    def high(self) -> float:
        return float(max(self.values))

    @property
    def met(self) -> bool | None:
        """Judged on the median; ``None`` when the row has no target."""
        if self.target is None:
            return None
        op, bound = self.target
        return self.median <= bound if op == "<=" else self.median >= bound

    def target_text(self) -> str:
        if self.target is None:
            return "—"
        op, bound = self.target
        return f"{'≤' if op == '<=' else '≥'} {fmt(bound)}{'' if self.unit in ('x', '') else ' ' + self.unit}"

    def to_dict(self) -> dict:
        return {"name": self.name, "median": self.median, "min": self.low, "max": self.high, "n": len(self.values),
                "unit": self.unit, "target": self.target_text(), "met": self.met, "note": self.note}


@dataclass
class FamilyResult:
    """The rows of one benchmark family, its parameters and notes (what bounds a missed target)."""

    family: str
    title: str
    rows: list[Row]
    params: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def row(self, name: str) -> Row:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(name)


def fmt(value: float) -> str:
    """Three significant figures without exponent noise (0.0123, 1.23, 123, 1234)."""
    if value == 0 or math.isnan(value):
        return str(value)
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


# ------------------------------------------------------------------ timing

def interleaved(variants: Mapping[str, Callable[[], object]], repeats: int, warmup: int = 1
                ) -> dict[str, list[float]]:
    """Seconds per call of each variant, run round-robin ``repeats`` times after ``warmup`` rounds."""
    for _ in range(warmup):
        for fn in variants.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def ratios(numerator: list[float], denominator: list[float]) -> list[float]:
    """Per-repeat ratios of paired measurements (same round of an interleaved run)."""
    return [a / b for a, b in zip(numerator, denominator, strict=True)]


# ------------------------------------------------------------------ machine, memory, profiles

def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def load_average() -> tuple[float, float, float] | None:
    try:
        return tuple(round(x, 2) for x in os.getloadavg())  # type: ignore[return-value]
    except OSError:
        return None


def machine_description() -> dict:
    """CPU, cores, RAM, library versions and thread settings of this process."""
    import torch

    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for module in ("torchvision", "onnxruntime", "av", "cv2", "numpy"):
        try:
            versions[module] = __import__(module).__version__
        except Exception:  # noqa: BLE001 - a missing optional library is reported as such
            versions[module] = "not installed"
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": _cpu_model(), "logical_cores": os.cpu_count(), "usable_cores": affinity, "ram_gib": _ram_gib(),
        "os": platform.platform(), "versions": versions,
        "torch_threads": torch.get_num_threads(), "torch_interop_threads": torch.get_num_interop_threads(),
        "env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "GOMP_SPINCOUNT", "OMP_WAIT_POLICY")
                if k in os.environ},
    }


def rss_mib() -> float:
    """Current resident memory of this process (MiB)."""
    return _status_kib("VmRSS") / 1024


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (MiB)."""
    return _status_kib("VmHWM") / 1024


def _status_kib(key: str) -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return float(line.split()[1])
    except OSError:
        pass
    import resource  # fallback: peak only, but better than nothing

    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def profile_top(fn: Callable[[], object], entries: int = 12, sort: str = "tottime") -> str:
    """cProfile of one call of ``fn``: the top ``entries`` functions by ``sort`` as text."""
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        fn()
    finally:
        profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(sort)
    stats.print_stats(entries)
    lines = out.getvalue().splitlines()
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls")), 0)
    return "\n".join(line.rstrip() for line in lines[start:] if line.strip())
