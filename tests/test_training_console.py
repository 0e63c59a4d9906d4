"""What a run prints when its output goes to a log (not a terminal): plain lines, no bars."""
import io

import pytest
from _training_data import TinyAffectSet

from affectmodel.training import run_training
from affectmodel.training.config import TrainConfig
from affectmodel.training.console import RunConsole, step_count_note

DATASET = {"name": "tiny-test-set", "synthetic": True}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _run(tmp_path, capsys, n_train=20, **changes):  # 20 in 5 videos: 16 train + 4 development
    values = {"out": str(tmp_path / "run"), "tasks": ["expr", "va"], "image_size": 32, "batch_size": 4,
              "epochs": 2, "device": "cpu", "augment": "none", "threads": 1}
    values.update(changes)
    run_training(TrainConfig(**values), TinyAffectSet(n_train, seed=0), TinyAffectSet(8, seed=1), DATASET)
    return capsys.readouterr()


def _without_warnings(text):
    """The lines of a run's output but its collapse warnings (a tiny test model's heads do collapse:
    affectmodel.health), which are whole lines of their own."""
    return [line for line in text.splitlines() if not line.startswith("warning: ")]


def test_a_log_gets_one_plain_line_per_epoch_and_no_bars(tmp_path, capsys):
    captured = _run(tmp_path, capsys)
    lines = _without_warnings(captured.out)
    assert [line.split(":")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]
    for line in lines:  # the same figures a terminal shows under its bars
        assert "loss" in line and "(expr" in line and "| dev P_EXPR" in line and "| lr" in line
    whole = captured.out + captured.err
    assert "\r" not in whole and "\x1b" not in whole and "\n\n" not in whole
    assert "it/s" not in whole and "step/s" not in whole and "epoch/s" not in whole


def test_an_epoch_shortened_by_max_steps_is_said_once(tmp_path, capsys):
    lines = _without_warnings(_run(tmp_path, capsys, max_steps=6, epochs=3).out)
    # 4 steps per epoch: epoch 2 stops after 2.
    assert lines == [lines[0], "epoch 2: 2 steps (max_steps reached)", lines[2]]
    assert lines[0].startswith("epoch 1/2:") and lines[2].startswith("epoch 2/2:")


def test_a_partial_last_batch_is_said_once(tmp_path, capsys):
    lines = _without_warnings(_run(tmp_path, capsys, n_train=22).out)  # 18 train + 4 development
    notes = [line for line in lines if "partial last batch" in line]
    assert notes == ["epoch 1: 4 steps of 4 images; the last 2 images of each epoch's order are left out "
                     "(partial last batch)"]
    assert len(lines) == 3


def test_step_count_notes():
    assert step_count_note(3, 4, 4, 16, 4, True) is None
    assert step_count_note(1, 1, 1, 3, 4, False)[1] == ("epoch 1: 1 step of 3 images (training set smaller than "
                                                       "the batch size 4)")


def test_a_silent_console_prints_nothing_and_a_terminal_one_closes_its_bars_once(capsys):
    quiet = RunConsole("run", 2, enabled=False)
    quiet.start(0)
    quiet.line("hidden")
    quiet.close()
    assert capsys.readouterr().out == ""
    out = io.StringIO()
    tty = RunConsole("run", 1, interactive=True, out=out)
    tty.start(0)
    tty.start_epoch(1, 2, 0)
    tty.step(0.5)
    tty.end_epoch("epoch 1/1: loss 0.500")
    tty.close()
    tty.close()
    assert tty.epoch_bar is None and "epoch 1/1: loss 0.500" in out.getvalue()
