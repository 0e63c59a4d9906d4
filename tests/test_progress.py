"""Progress output: bars on a terminal only; in a log, one closing line per stage."""
import io
import re

import pytest

from affectmodel.progress import Progress, interactive, progress_iter


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_one_closing_line_and_no_bar():
    log = io.StringIO()
    with Progress(5, "synth", "frame", file=log) as progress:
        for _ in range(5):
            progress.update(1)
    text = log.getvalue()
    assert "\r" not in text and "%|" not in text and "it/s" not in text
    lines = text.splitlines()
    assert len(lines) == 1 and lines[0].startswith("synth: 5 frames in ") and lines[0].endswith(" s")


def test_iterating_counts_items_and_a_single_item_is_singular():
    log = io.StringIO()
    assert list(progress_iter(["a"], "verifying", "shard", file=log)) == ["a"]
    assert log.getvalue().startswith("verifying: 1 shard in ")


def test_disabled_or_failed_stages_write_nothing():
    log = io.StringIO()
    with Progress(3, "caching", "frame", enabled=False, file=log) as progress:
        progress.update(3)
    with pytest.raises(RuntimeError), Progress(3, "caching", "frame", file=log) as progress:
        progress.update(1)
        raise RuntimeError("decode failed")
    assert log.getvalue() == ""


def test_a_terminal_gets_a_bar_and_no_closing_line():
    term = Terminal()
    assert interactive(term) and not interactive(io.StringIO())
    with Progress(4, "synth", "frame", file=term) as progress:
        progress.update(4)
    text = term.getvalue()
    assert "\r" in text and "4/4" in text and "synth: 4 frames in" not in text


def test_the_synthetic_generator_and_the_cache_follow_the_rule(tmp_path, capsys):
    from affectmodel.data.cache import build_frame_cache, default_cache_dir, verify_frame_cache
    from affectmodel.data.synthetic import generate_benchmark

    generate_benchmark(tmp_path / "bench", videos=4, frames=3, seed=0, size=32, progress=True)
    build_frame_cache(tmp_path / "bench", size=32, shard_frames=8, progress=True)
    verify_frame_cache(default_cache_dir(tmp_path / "bench", 32), progress=True)
    err = capsys.readouterr().err  # captured: not a terminal
    assert "\r" not in err and "%|" not in err
    lines = err.splitlines()
    assert any(line.startswith("synth: 12 frames in ") for line in lines), err
    assert any(re.match(r"caching bench: \d+ frames in \d+\.\d s$", line) for line in lines), err
    assert any(line.startswith("verifying: ") and " shard" in line for line in lines), err
