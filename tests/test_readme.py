"""The README's commands, as a newcomer types them on a fresh clone.

Every command in a ```bash block of README.md is either run here, verbatim (in the same process
through the command's ``main``, from a working folder that holds the repository's ``demo/`` and
``results/``), or named in :data:`RUN_ELSEWHERE` with the test or CI step that runs it. Commands too
slow for a unit test (drawing the 800-video benchmark, three epochs of training) run verbatim with
options appended that shrink them (argparse keeps the last value of an option), so the command a
newcomer copies is the one that is exercised. The default model is a small random model in a
``$AFFECT_DEFAULT_MODEL_DIR`` run folder: `--model default` finds it exactly as it finds the one
the demo's first launch builds.
"""
from __future__ import annotations

import csv
import json
import os
import re
import shlex
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from media import small_model_dir
from net import free_port

from affectmodel.cli import main as affectmodel_main
from affectmodel.records import DEFAULT_DIR_ENV
from affectmodel.training.cli import main as train_main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_README_LINES = 250
PYTHON = ".venv/bin/python"

# Commands run by another test or by CI, and where.
RUN_ELSEWHERE = {
    "python3.11 -m venv .venv && .venv/bin/pip install -r requirements.txt && .venv/bin/python app.py":
        ".ci/run + tests/test_readme.py::test_the_demo_command_serves_the_page",  # install there, launch here
    "python3.11 -m venv .venv && .venv/bin/pip install -r requirements-dev.txt && .venv/bin/python -m pytest":
        ".ci/run",
    ".venv/bin/streamlit run dashboard/app.py":
        "tests/test_dashboard_browser.py::test_dashboard_on_the_shipped_study_in_chromium",
}
# Options appended to a slow command here (the command itself is run as written).
SHRINK = {
    "synth": ["--videos", "6", "--frames", "8", "--size", "32"],
    "train.py": ["--image-size", "32", "--batch-size", "8", "--max-steps", "2", "--device", "cpu", "--threads", "1"],
}


def readme_commands(text: str | None = None) -> list[str]:
    """Each command line of the README's bash blocks, without its trailing comment."""
    text = README.read_text(encoding="utf-8") if text is None else text
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = re.sub(r"\s+#\s.*$", "", line).strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _argv(command: str) -> list[str]:
    words = shlex.split(command)
    if words[0] != PYTHON:
        raise AssertionError(f"not a {PYTHON} command: {command}")
    return words[1:]


def _run_here(command: str) -> int:
    argv = _argv(command)
    if argv[:2] == ["-m", "affectmodel"]:
        extra = SHRINK.get(argv[2], [])
        return affectmodel_main([*argv[2:], *extra, *(["--no-progress"] if argv[2] == "predict" else [])])
    if argv[0] == "train.py":
        return train_main([*argv[1:], *SHRINK["train.py"]])
    raise AssertionError(f"no way to run this README command here: {command}")


@pytest.fixture
def newcomer(tmp_path, monkeypatch):
    """A working folder like a fresh clone's (the shipped demo/ and results/), with a default model
    in place as the demo's first launch leaves it."""
    for name in ("demo", "results"):
        (tmp_path / name).symlink_to(ROOT / name)
    default = tmp_path / "cache" / "default-model"
    small_model_dir(default, name="model")
    (default / "metrics.json").write_text(json.dumps({"tasks": ["expr", "au", "va"], "P_MTL": 0.0}))
    monkeypatch.setenv(DEFAULT_DIR_ENV, str(default))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; the rest belongs in docs/"


def test_every_readme_command_is_run_by_a_test_or_by_ci():
    commands = readme_commands()
    assert commands, "no bash blocks found in README.md"
    for command in commands:
        if command in RUN_ELSEWHERE:
            for where in RUN_ELSEWHERE[command].split(" + "):
                path, _, test = where.partition("::")
                source = (ROOT / path).read_text(encoding="utf-8")
                assert not test or f"def {test}(" in source, f"{where} (named for {command!r}) does not exist"
        else:
            _argv(command)  # runnable here: a .venv/bin/python command (run by the tests below)
    # The dashboard test opens the shipped study exactly as the README's command does (no --runs).
    assert set(RUN_ELSEWHERE) <= set(commands), "RUN_ELSEWHERE names commands the README no longer has"


def test_ci_runs_the_readme_setup_commands():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    setup = [c for c in readme_commands() if c.startswith("python3.11 -m venv")]
    assert len(setup) == 2
    demo, tests = sorted(setup, key=lambda c: "requirements-dev" in c)
    assert tests in ci.splitlines(), "keep .ci/run's test command equal to the README's"
    install = demo.rsplit(" && ", 1)[0]
    assert install in ci.splitlines(), "CI installs requirements.txt exactly as the README's demo command does"


def test_predict_with_the_default_model_on_the_shipped_files(newcomer, capsys):
    """The README's `predict --model default` commands, verbatim, after the demo's first launch."""
    commands = [c for c in readme_commands() if " predict --model default " in c]
    assert commands and "demo/examples/two_faces.jpg" in commands[0]
    for command in commands:
        assert _run_here(command) == 0, command
    rows = _rows(newcomer / "faces.csv")
    assert [r["face"] for r in rows] == ["1", "2"]  # the two faces of two_faces.jpg, numbered like the API
    assert float(rows[0]["x1"]) < float(rows[1]["x1"])
    assert (newcomer / "clip_annotated.mp4").stat().st_size > 0
    clip = _rows(newcomer / "clip.csv")
    assert clip and {r["track_id"] for r in clip} >= {"1"}
    assert "face(s)" in capsys.readouterr().err


def test_predict_without_out_prints_one_json_line_per_image(newcomer, capsys):
    """What the README says of `predict` without --out."""
    assert affectmodel_main(["predict", "--model", "default", "demo/examples/two_faces.jpg",
                             "demo/examples/astronaut.jpg", "--no-progress"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and [len(json.loads(line)["faces"]) for line in lines] == [2, 1]


def test_default_model_not_built_yet_is_named(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(DEFAULT_DIR_ENV, str(tmp_path / "nothing-here"))
    monkeypatch.chdir(tmp_path)
    assert affectmodel_main(["predict", "--model", "default", str(ROOT / "demo/examples/two_faces.jpg")]) == 2
    err = capsys.readouterr().err
    assert "default model is not built yet" in err and "app.py" in err and "demo.default_model" in err


@pytest.mark.usefixtures("one_torch_thread")
def test_training_commands_in_brief(newcomer, capsys):
    """Draw the benchmark, train, predict with the new run, and read the shipped study: the README's
    training section in order (the first two shrunk by appended options)."""
    start = readme_commands().index(next(c for c in readme_commands() if " synth " in c))
    session = readme_commands()[start:start + 4]
    assert " train.py " in f" {session[1]} " and "runs/mine/multi" in session[2] and " study " in session[3]
    for command in session[:3]:
        assert _run_here(command) == 0, command
    assert (newcomer / "runs/mine/multi/metrics.json").is_file()
    assert len(_rows(newcomer / "mine.csv")) == 2
    capsys.readouterr()
    assert _run_here(session[3]) == 0
    report = capsys.readouterr().out
    assert "quick/multi" in report and "quick/uni-va" in report


def test_headline_results_match_the_shipped_study(capsys):
    """The README's headline table holds the figures `study results/quick --markdown` gives now."""
    text = README.read_text(encoding="utf-8")
    table = re.search(r"<!-- headline-results: begin.*?-->\n(.*?)<!-- headline-results: end -->", text, re.S)
    assert table, "the README lost its marked headline-results table"
    assert affectmodel_main(["study", str(ROOT / "results" / "quick"), "--markdown"]) == 0
    report = capsys.readouterr().out
    rows = [r for r in table.group(1).splitlines() if r.startswith("| quick/")]
    assert rows
    for row in rows:
        config, task, uni, multi, difference, seeds, verdict = [c.strip() for c in row.strip("|").split("|")]
        match = [line for line in report.splitlines()
                 if line.startswith(f"| {config} | {task.split(' (')[0]} |")]
        assert len(match) == 1, row
        for cell in (uni, multi, difference, seeds, verdict):
            assert cell in match[0], f"README headline {cell!r} is not in the study's row: {match[0]}"


def test_the_demo_command_serves_the_page(tmp_path):
    """`.venv/bin/python app.py` as the README's first command ends: the page answers on the port, and
    the server log holds the launch line, not Gradio's own noise."""
    default = tmp_path / "default-model"
    small_model_dir(default, name="model")
    (default / "metrics.json").write_text(json.dumps({"tasks": ["expr", "au", "va"], "P_MTL": 0.0}))
    port = free_port()
    env = {**os.environ, DEFAULT_DIR_ENV: str(default), "GRADIO_SERVER_PORT": str(port), "PYTHONUNBUFFERED": "1"}
    env.pop("AFFECT_MODEL", None)
    log = tmp_path / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline, answered = time.monotonic() + 120, False
            while time.monotonic() < deadline and proc.poll() is None and not answered:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                        answered = r.status == 200 and b"affectmodel" in r.read()
                except OSError:
                    time.sleep(0.5)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=5) as r:
                assert r.status == 200
            # the server answers as soon as it listens; the app prints its "open" line just after
            opened = f"affectmodel demo: open http://127.0.0.1:{port}/"
            while time.monotonic() < deadline and opened not in log.read_text() and proc.poll() is None:
                time.sleep(0.2)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    text = log.read_text()
    assert answered, text
    assert f"model the default demo model (synthetic benchmark, reused) in {default}" in text
    assert f"affectmodel demo: open http://127.0.0.1:{port}/" in text
    for noise in ("startup-events", "share=True", "style.css"):
        assert noise not in text, f"Gradio noise in the server log: {noise!r}\n{text}"
