"""Process-wide CPU settings that an APPLICATION's entry point makes before PyTorch loads.

PyTorch's CPU kernels run on OpenMP (libgomp on Linux), whose idle worker threads spin for a while
after each parallel region. On a small, shared CPU (2 cores, other jobs, or onnxruntime and video
decoding in the same process) the spinning threads take the cores from the threads that have work.
Measured on a busy 2-core machine (``benchmarks/video_e2e.py``, ``benchmarks/RESULTS.md``): a
ResNet-18 forward pass on one face took 77-119 ms with the default spin, 54 ms with a short spin
(``GOMP_SPINCOUNT=10000``) and 21-24 ms with ``OMP_WAIT_POLICY=PASSIVE`` (threads sleep at once);
on an idle machine PASSIVE costs little (13 -> 17 ms for one face, the same for batches of 8).

OpenMP reads these variables once, when PyTorch is imported, so this is for entry points (the
``affectmodel`` command, ``train.py``, the demo), never for library code, and it never overrides
a value the user has set. The library itself changes no process-wide setting.
"""
from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

# Idle OpenMP threads sleep instead of spinning: robust on shared CPUs, nearly free on idle ones.
OPENMP_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE"}
_USER_KEYS = ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")  # any of these set by the user: leave all alone


def configure_openmp(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set :data:`OPENMP_DEFAULTS` in the environment unless the user chose a wait policy or torch
    is already imported (too late to matter); returns what was set."""
    environ = os.environ if environ is None else environ
    if "torch" in sys.modules or any(key in environ for key in _USER_KEYS):
        return {}
    environ.update(OPENMP_DEFAULTS)
    return dict(OPENMP_DEFAULTS)


def available_memory_bytes() -> int | None:
    """Memory the system can still give this process (Linux: ``MemAvailable``), or ``None`` when
    unknown. Used to refuse a forward pass that could not fit before allocating it."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None
