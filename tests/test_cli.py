"""``python -m affectmodel``: the command table and its help."""
import subprocess
import sys
from pathlib import Path

import pytest

from affectmodel.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, code=None):
    cmd = [sys.executable, "-m", "affectmodel", *args] if code is None else [sys.executable, "-c", code]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


def test_help_lists_every_command():
    res = run_cli("--help")
    assert res.returncode == 0, res.stderr
    for name, (_, help_text) in COMMANDS.items():
        assert name in res.stdout
        assert help_text.split()[0] in res.stdout
    assert COMMANDS.keys() >= {"score"}


def test_no_command_prints_help():
    res = run_cli()
    assert all(name in res.stdout + res.stderr for name in COMMANDS)


def test_help_does_not_import_torch():
    # Command modules are imported only when their command runs: help must start fast.
    code = ("import sys\nfrom affectmodel.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)")
    res = run_cli(code=code)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "False"


def test_subcommand_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(["score", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--predictions" in out and "--annotations" in out and "EXPR" in out


def test_user_error_is_one_line_exit_2(tmp_path, capsys):
    rc = main(["score", "--task", "VA", "--predictions", str(tmp_path / "missing.csv"),
               "--annotations", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.strip().count("\n") == 0 and err.startswith("error: ") and "missing.csv" in err
