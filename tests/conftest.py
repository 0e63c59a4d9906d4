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
