"""scripts/temporal_comparison.py: matched comparisons of the temporal suite against smoothing."""
import importlib.util
from pathlib import Path

from study_fixtures import write_run

REPO = Path(__file__).resolve().parents[1]


def load_script():
    spec = importlib.util.spec_from_file_location("temporal_comparison", REPO / "scripts" / "temporal_comparison.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_temporal_runs_are_compared_with_smoothing_on_the_same_frames(tmp_path, capsys):
    skills = {"per-frame-va": 0.3, "smooth-va": 0.32, "gru-va": 0.7, "conv-va": 0.3}
    for name, skill in skills.items():
        for seed in (0, 1):
            write_run(tmp_path, "temporal", name, tasks="va", scores={"P_VA": skill}, seed=seed)
    assert load_script().main([str(tmp_path / "temporal"), "--resamples", "200"]) == 0
    lines = {line.split(" | ")[4]: line for line in capsys.readouterr().out.splitlines() if line.startswith("| va")}
    assert set(lines) == {"smoothing vs per-frame", "gru vs smoothing", "conv vs smoothing"}
    assert lines["gru vs smoothing"].endswith("| better |")       # far more skill: the interval excludes 0
    assert "| better |" not in lines["conv vs smoothing"]            # the same skill as the per-frame model
