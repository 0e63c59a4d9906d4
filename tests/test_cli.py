"""``python -m affectmodel``: the command table and its help."""
import subprocess
import sys
from pathlib import Path

from affectmodel.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, code=None):
    cmd = [sys.executable, "-m", "affectmodel", *args] if code is None else [sys.executable, "-c", code]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_help_lists_every_command():
    res = run_cli("--help")
    assert res.returncode == 0, res.stderr
    for name, (_, help_text) in COMMANDS.items():
        assert name in res.stdout
        assert help_text.split()[0] in res.stdout
    assert COMMANDS.keys() >= {"score"}


def test_no_command_prints_help_and_fails():
    res = run_cli()
    assert res.returncode != 0
    assert "score" in res.stdout + res.stderr


def test_help_does_not_import_torch():
    # Help and the torch-free commands (score) must start fast.
    code = ("import sys\nfrom affectmodel.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "import affectmodel.scoring\nprint('torch' in sys.modules)")
    res = run_cli(code=code)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "False"


def test_subcommand_help():
    res = run_cli("score", "--help")
    assert res.returncode == 0
    assert "--predictions" in res.stdout and "--annotations" in res.stdout and "EXPR" in res.stdout


def test_user_error_is_one_line_exit_2(tmp_path):
    res = run_cli("score", "--task", "VA", "--predictions", str(tmp_path / "missing.csv"),
                  "--annotations", str(tmp_path))
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and res.stderr.startswith("error: ")
