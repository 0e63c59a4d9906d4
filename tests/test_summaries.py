"""affectmodel.summaries: the per-video summary file a published run carries instead of frame labels."""
from __future__ import annotations

import json

import numpy as np
import pytest
from study_fixtures import simulated_predictions

from affectmodel.statistics import summarise
from affectmodel.summaries import SUMMARY_FILE, SummaryError, load_summary, save_summary, summary_dict

SKILL = {"P_EXPR": 0.5, "P_AU": 0.5, "P_VA": 0.5}


@pytest.fixture
def summary():
    predictions = simulated_predictions(("expr", "au", "va"), SKILL, seed=3, n_videos=6, frames=20)
    return summarise(predictions, [0.4] * 12)


def test_a_summary_reads_back_bit_for_bit(tmp_path, summary):
    back = load_summary(save_summary(tmp_path / SUMMARY_FILE, summary))
    assert back.videos == summary.videos and back.expression_space == "abaw8"
    assert back.frames_any == summary.frames_any and back.au_thresholds == (0.4,) * 12
    for task, ts in summary.tasks.items():
        got = back.tasks[task]
        assert got.fingerprint == ts.fingerprint and np.array_equal(got.frames, ts.frames)
        assert got.statistics.dtype == np.float64 and np.array_equal(got.statistics, ts.statistics)
        assert (got.label_counts is None) == (task != "au")
        if got.label_counts is not None and ts.label_counts is not None:
            assert np.array_equal(got.label_counts, ts.label_counts)
    assert load_summary(tmp_path).videos == summary.videos  # a folder is read through its summary file


def test_the_file_holds_video_totals_only(tmp_path, summary):
    data = json.loads(save_summary(tmp_path / SUMMARY_FILE, summary).read_text())
    assert set(data) == {"format", "version", "about", "expression_space", "videos", "au_thresholds", "frames_any",
                         "tasks"}
    for task, entry in data["tasks"].items():
        # one row per video (6), never one per frame (120)
        assert len(entry["values"]) == len(entry["frames"]) == 6, task
    assert data["tasks"]["va"]["statistics"] == ["n", "sum_prediction", "sum_label", "sum_prediction_squared",
                                                  "sum_label_squared", "sum_product"]
    assert sum(data["tasks"]["expr"]["frames"]) == summary.frames_any["expr"] < 120  # unlabelled frames left out


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(version=2), "version 2"),
    (lambda d: d.update(format="something else"), "not a 'affectmodel per-video validation summary'"),
    (lambda d: d["tasks"]["expr"]["values"].pop(), "expr values has shape"),
    (lambda d: d["tasks"]["au"]["values"][0][0].__setitem__(0, -1), "negative or not whole"),
    (lambda d: d["tasks"]["va"]["values"][0][0].__setitem__(1, float("nan")), "non-finite"),
    (lambda d: d.update(videos=list(reversed(d["videos"]))), "sorted list of distinct names"),
    (lambda d: d["tasks"]["au"].pop("label_counts"), "missing 'label_counts'"),
    (lambda d: d["tasks"]["expr"].update(fingerprint=""), "no fingerprint"),
])
def test_a_malformed_summary_is_refused_naming_the_file(tmp_path, summary, change, message):
    data = summary_dict(summary)
    change(data)
    path = tmp_path / SUMMARY_FILE
    path.write_text(json.dumps(data))
    with pytest.raises(SummaryError, match="val_summary.json") as info:
        load_summary(path)
    assert message in str(info.value)


def test_unreadable_or_missing_files_are_named(tmp_path):
    with pytest.raises(SummaryError, match="no summary file"):
        load_summary(tmp_path / SUMMARY_FILE)
    (tmp_path / SUMMARY_FILE).write_text("{not json")
    with pytest.raises(SummaryError, match="not a readable summary file"):
        load_summary(tmp_path / SUMMARY_FILE)
