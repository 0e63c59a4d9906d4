"""Process-wide CPU settings that an APPLICATION's entry point makes before PyTorch loads.

PyTorch's CPU kernels run on OpenMP (libgomp on Linux), whose idle worker threads spin for a while
after each parallel region. On a small, shared CPU (2 cores, other jobs, or onnxruntime and video
decoding in the same process) the spinning threads take the cores from the threads that have work:
video inference fell from about 95 to 10-25 frames per second on a busy 2-core machine. A short
spin (``GOMP_SPINCOUNT``) keeps the idle-machine speed and most of the busy-machine speed
(measured in ``benchmarks/video_e2e.py``, see ``benchmarks/RESULTS.md``).

OpenMP reads these variables once, when PyTorch is imported, so this is for entry points (the
``affectmodel`` command, ``train.py``, the demo), never for library code, and it never overrides
a value the user has set. The library itself changes no process-wide setting.
"""
from __future__ import annotations

import os
import sys
from typing import MutableMapping

# Spin iterations before an idle OpenMP thread sleeps (libgomp's default is 300,000; about
# 10,000 is a few microseconds: enough to bridge back-to-back regions, short enough not to starve).
OPENMP_DEFAULTS = {"GOMP_SPINCOUNT": "10000"}
_USER_KEYS = ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")  # any of these set by the user: leave all alone


def configure_openmp(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set :data:`OPENMP_DEFAULTS` in the environment unless the user chose a wait policy or torch
    is already imported (too late to matter); returns what was set."""
    environ = os.environ if environ is None else environ
    if "torch" in sys.modules or any(key in environ for key in _USER_KEYS):
        return {}
    environ.update(OPENMP_DEFAULTS)
    return dict(OPENMP_DEFAULTS)
