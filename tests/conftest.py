"""Shared test settings. Tests make all their data themselves; nothing is downloaded."""
import os

# Never reach the network from tests (the Hub code is exercised offline; see tests/test_hub_*).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest
import torch

# Small models on a 2-core machine: fewer threads keeps runs predictable.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def one_torch_thread():
    """Tiny tensors gain nothing from more threads, and on a shared CPU extra threads spin
    (training tests use it through ``pytestmark``)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def call_sizes(monkeypatch):
    """``call_sizes(owner, "method")`` wraps the method (it still runs) and returns a list that gets
    ``len`` of the first argument of every call: how many items each batched call received."""

    def install(owner, name: str) -> list[int]:
        sizes: list[int] = []
        real = getattr(owner, name)

        def wrapper(first, *args, **kwargs):
            sizes.append(len(first))
            return real(first, *args, **kwargs)

        monkeypatch.setattr(owner, name, wrapper)
        return sizes

    return install
