import sys

import pytest

from affectmodel.runtime import OPENMP_DEFAULTS, configure_openmp


@pytest.fixture
def torch_not_loaded(monkeypatch):
    monkeypatch.delitem(sys.modules, "torch", raising=False)


def test_sets_the_wait_policy_before_torch_loads(torch_not_loaded):
    env = {"PATH": "/bin"}
    assert configure_openmp(env) == OPENMP_DEFAULTS == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert env == {"PATH": "/bin", "OMP_WAIT_POLICY": "PASSIVE"}


@pytest.mark.parametrize("user", [{"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "0"}])
def test_never_overrides_the_user(torch_not_loaded, user):
    env = dict(user)
    assert configure_openmp(env) == {}
    assert env == user


def test_does_nothing_once_torch_is_loaded(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", sys.modules.get("torch", object()))
    env = {}
    assert configure_openmp(env) == {} and env == {}


def test_the_command_line_entry_point_applies_it_in_a_fresh_process():
    import subprocess

    code = ("import os, sys\n"
            "for key in ('OMP_WAIT_POLICY', 'GOMP_SPINCOUNT'): os.environ.pop(key, None)\n"
            "from affectmodel.cli import main\n"
            "main([])\n"  # prints usage and returns 2: no command module (nor torch) loads
            "print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.stdout.split() == ["PASSIVE", "False"], done.stderr  # set before any torch import
