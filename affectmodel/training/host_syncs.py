"""Counting the operations that make the host wait for the GPU, on any device.

On CUDA the host queues kernels and runs ahead; an operation whose result the host needs (a
scalar read such as ``.item()``, ``float(t)``, ``bool(t)``, or an output whose shape depends on
the data, such as boolean-mask indexing or ``nonzero``) waits until the GPU has finished all the
work queued before it. A training step that does that N times stalls the GPU's queue N times.

:class:`HostSyncCounter` counts such operations as they pass through torch's dispatcher, so a CPU
test can show how many a step would make on CUDA. It sees operators, not copies: a tensor moved
to the CPU with ``.cpu()``/``.tolist()`` is not counted (on a CUDA machine,
``torch.cuda.set_sync_debug_mode("warn")`` reports those too; ``benchmarks/gpu.py`` uses it).
"""
from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

# Operators whose result the host must wait for (values read back, or data-dependent output shapes).
SYNCING_OPS = frozenset({"_local_scalar_dense", "nonzero", "masked_select", "is_nonzero", "equal", "unique",
                         "_unique", "_unique2", "unique_consecutive", "unique_dim", "repeat_interleave"})


def _bool_index(args: tuple[Any, ...]) -> bool:
    """``aten.index(self, indices)`` with a boolean mask among the indices (a ``nonzero`` inside)."""
    indices = args[1] if len(args) > 1 else ()
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices or ())


class HostSyncCounter(TorchDispatchMode):
    """``with HostSyncCounter() as syncs: ...`` then ``syncs.total`` and ``syncs.by_op``."""

    def __init__(self) -> None:
        super().__init__()
        self.by_op: Counter[str] = Counter()
        self.counting = True

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Operations in this block are not counted (e.g. an optimizer's CPU-side step counter,
        which a CPU run cannot tell from a device read)."""
        before, self.counting = self.counting, False
        try:
            yield
        finally:
            self.counting = before

    @property
    def total(self) -> int:
        return sum(self.by_op.values())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if not self.counting:
            pass
        elif name in SYNCING_OPS:
            self.by_op[name] += 1
        elif name in ("index", "index_put", "index_put_") and _bool_index(args):
            self.by_op[f"{name} (boolean mask)"] += 1
        return func(*args, **(kwargs or {}))
