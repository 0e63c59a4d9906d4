"""scripts/temporal_comparison.py: the study's temporal pairs, on all frames and on the frames one
frame cannot explain."""
import importlib.util
from pathlib import Path

import numpy as np
from study_fixtures import write_temporal_study

from affectmodel import study
from affectmodel.data.synthetic_dynamics import DYNAMICS_FOLDER, DynamicNotes
from affectmodel.predictions import Predictions
from affectmodel.records import read_runs
from affectmodel.statistics import ScoredRun, difference

REPO = Path(__file__).resolve().parents[1]


def load_script():
    spec = importlib.util.spec_from_file_location("temporal_comparison", REPO / "scripts" / "temporal_comparison.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _table(text: str, title: str) -> dict[str, str]:
    """The rows of one section, keyed by their comparison cell."""
    section = text.split(f"## {title}")[1].split("## ")[0]
    return {line.split(" | ")[2]: line for line in section.splitlines() if line.startswith("| va |")}


def _notes(root: Path, videos: int = 10, frames: int = 24) -> None:
    """Dynamics notes for the fixture's validation videos: the first half of each video in an episode's
    onset (ambiguous), the rest at its apex."""
    (root / DYNAMICS_FOLDER).mkdir(parents=True)
    phase = np.where(np.arange(frames) < frames // 2, 1, 2)
    off = np.zeros(frames, dtype=bool)
    for i in range(videos):
        notes = DynamicNotes(phase, off, off, off)
        (root / DYNAMICS_FOLDER / f"video{i:02d}.csv").write_text("\n".join(notes.csv_lines()) + "\n")


def test_the_studys_temporal_pairs_on_all_frames_and_on_the_ambiguous_ones(tmp_path, capsys):
    skills = {"per-frame-va": 0.3, "smooth-va": 0.32, "gru-va": 0.8, "conv-va": 0.3}
    write_temporal_study(tmp_path / "runs", kinds=("smooth", "gru", "conv"), tasks=("va",), skill=skills)
    _notes(tmp_path / "data")
    assert load_script().main([str(tmp_path / "runs"), "--resamples", "200", "--data", str(tmp_path / "data")]) == 0
    out = capsys.readouterr().out
    every = _table(out, "All validation frames")
    assert set(every) == {"gru w16 bidirectional (300 steps) vs smooth w5 (gru-va vs smooth-va)",
                          "conv w16 bidirectional (300 steps) vs smooth w5 (conv-va vs smooth-va)",
                          "smooth w5 vs none (smooth-va vs per-frame-va)"}
    gru = every["gru w16 bidirectional (300 steps) vs smooth w5 (gru-va vs smooth-va)"]
    assert gru.endswith("|") and "| helped: +" in gru                      # far more skill: the interval excludes 0
    assert "| helped" not in every["conv w16 bidirectional (300 steps) vs smooth w5 (conv-va vs smooth-va)"]
    # the same verdict texts as the study's own report, for all frames
    records, _ = read_runs(tmp_path / "runs")
    report = study.study_report(study.index_runs(records), resamples=200)
    assert sorted(f"{f.verdict_text} |" for f in report.factors) == sorted(
        line.rsplit(" | ", 1)[1] for line in every.values())
    # the ambiguous frames: the difference is computed on the first half of each video only
    ambiguous = _table(out, "Frames one frame cannot explain")
    assert set(ambiguous) == set(every) and set(_table(out, "The other frames")) == set(every)
    configs = {c.name: c for c in study.group_configurations(study.index_runs(records))}
    first_half = []
    for name in ("gru-va", "smooth-va"):
        runs = study.scored_runs(configs[name])
        assert runs is not None
        predictions = [r.predictions for r in runs]
        assert all(isinstance(p, Predictions) for p in predictions)
        first_half.append([ScoredRun(p.select(p.frame <= 12), r.au_thresholds, r.name)
                           for p, r in zip(predictions, runs, strict=True) if isinstance(p, Predictions)])
    d = difference(first_half[0], first_half[1], "P_VA", 200)
    assert f"{d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}]" in ambiguous[
        "gru w16 bidirectional (300 steps) vs smooth w5 (gru-va vs smooth-va)"]
