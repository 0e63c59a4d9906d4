"""dashboard/app.py through streamlit.testing.v1.AppTest on run folders written by the tests.

AppTest runs the script in this process, so the runs folder comes from AFFECT_RUNS_DIR (the CLI
`-- --runs DIR` is covered by the browser test). Charts are read as Vega-Lite specs with their data.
"""
from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pandas as pd
import pytest
import streamlit as st
from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df
from streamlit.testing.v1 import AppTest

from affectmodel.records import read_run
from study_fixtures import write_run, write_study_runs

APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")
TIMEOUT = 90  # the first run imports torch/pandas/altair cold


@pytest.fixture(autouse=True)
def _fresh_cache():
    st.cache_data.clear()
    yield
    st.cache_data.clear()


def run_app(monkeypatch, runs_dir) -> AppTest:
    monkeypatch.setenv("AFFECT_RUNS_DIR", str(runs_dir))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def study_frame(at: AppTest) -> pd.DataFrame:
    frames = [df.value for df in at.dataframe if {"run", "P_MTL"} <= set(df.value.columns)]
    assert len(frames) == 1
    return frames[0]


def charts(at: AppTest) -> dict[str, list[pd.DataFrame]]:
    """Chart title -> the data of each chart with that title."""
    out: dict[str, list[pd.DataFrame]] = {}
    for el in at.get("vega_lite_chart"):
        spec = json.loads(el.proto.spec)
        title = spec.get("title")
        title = title.get("text") if isinstance(title, dict) else title
        data = [convert_arrow_bytes_to_pandas_df(d.data.data) for d in el.proto.datasets]
        out.setdefault(title, []).append(pd.concat(data, ignore_index=True) if data else pd.DataFrame())
    return out


@pytest.fixture
def runs_dir(tmp_path):
    write_study_runs(tmp_path / "runs")
    return tmp_path / "runs"


@pytest.fixture
def written(runs_dir):
    return {f"{p.parent.name}/{p.name}": json.loads((p / "metrics.json").read_text())
            for p in (m.parent for m in runs_dir.rglob("metrics.json"))}


def test_first_screen_answers_the_question_with_table_headline_and_charts(monkeypatch, runs_dir, written):
    at = run_app(monkeypatch, runs_dir)
    table = study_frame(at)
    assert sorted(table["run"]) == sorted(written)
    for row in table.itertuples():
        for metric in ("P_EXPR", "P_AU", "P_VA", "P_MTL"):
            value = getattr(row, metric)
            assert value == pytest.approx(written[row.run][metric]) if metric in written[row.run] else pd.isna(value)

    # headline: one card per task with the best multi-task score and its difference from uni-task
    synth = {k: m for k, m in written.items() if m["dataset"]["synthetic"]}
    cards = {m.label: m for m in at.metric}
    for title, metric in (("Expression", "P_EXPR"), ("Action units", "P_AU"), ("Valence/arousal", "P_VA")):
        multi = max(m[metric] for m in synth.values() if m["multi_task"] and metric in m)
        uni = max(m[metric] for m in synth.values() if not m["multi_task"] and metric in m)
        matching = [c for c in at.metric if c.label == title and c.value == f"{multi:.3f}"]
        assert matching and matching[0].delta == f"{multi - uni:+.3f}"
    assert {"Parameters", "Training time"} <= set(cards)
    assert any(s.value.startswith("Did multi-task learning help?") for s in at.subheader)
    verdicts = [m.value for m in at.markdown if "Multi-task learning" in m.value]
    assert any("helped expression" in v and "hurt valence / arousal" in v and "instead of 3" in v for v in verdicts)

    # synthetic runs are labelled, and the ABAW reference appears because Aff-Wild2 runs are shown
    assert any("Synthetic benchmark" in w.value for w in at.warning)
    assert any("ABAW" in i.value for i in at.info)

    found = charts(at)
    bars = found["Best uni-task vs best multi-task model, per task"]
    assert len(bars) == 2  # one per data set
    synth_bars = max(bars, key=len)
    assert len(synth_bars) == 6 and set(synth_bars["setting"]) == {"uni-task", "multi-task"}
    aw2_bars = min(bars, key=len)
    assert aw2_bars["baseline"].notna().all()  # reference ticks only where the data set is Aff-Wild2
    assert synth_bars["baseline"].isna().all()
    per_au = found["Per-AU F1"][0]
    assert per_au["label"].nunique() == 12 and per_au["run"].nunique() >= 2
    assert {"Training loss per task", "Validation metric per epoch", "Per-class F1 (expression)"} <= set(found)
    assert any(t.startswith("Effect of each factor on") for t in found)
    confusion = [v for t, v in found.items() if t.startswith("Expression confusion matrix")]
    assert confusion and len(confusion[0][0]) == 64
    assert at.get("download_button")


def test_sidebar_filters_change_table_and_headline(monkeypatch, runs_dir, written):
    at = run_app(monkeypatch, runs_dir)
    at.multiselect(key="filter_setting").set_value(["uni-task"]).run()
    assert set(study_frame(at)["run"]) == {k for k, m in written.items() if not m["multi_task"]}
    # only uni-task runs: the cards say so instead of showing a difference
    assert all(m.delta == "" for m in at.metric if m.label == "Expression")

    at.multiselect(key="filter_setting").set_value([]).run()
    at.multiselect(key="filter_dataset").set_value(["aff-wild2"]).run()
    table = study_frame(at)
    assert set(table["run"]) == {k for k, m in written.items() if not m["dataset"]["synthetic"]}
    assert not any("Synthetic benchmark" in w.value for w in at.warning)
    bars = charts(at)["Best uni-task vs best multi-task model, per task"]
    assert len(bars) == 1 and bars[0]["baseline"].notna().all()

    at.multiselect(key="filter_dataset").set_value(["synthetic-affect"]).run()
    at.multiselect(key="filter_losses").set_value(["expr=focal, au=bce, va=ccc"]).run()
    assert list(study_frame(at)["run"]) == ["quick/multi-focal"]


def test_run_detail_shows_config_metrics_and_hub_link(monkeypatch, runs_dir, written):
    at = run_app(monkeypatch, runs_dir)
    at.selectbox(key="detail_run").set_value("quick/multi-focal").run()
    assert not at.exception
    links = at.get("link_button")
    assert [l.proto.url for l in links] == ["https://huggingface.co/" + written["quick/multi-focal"]["hub_repo"]]
    detail_metrics = {m.label: m.value for m in at.metric}
    assert detail_metrics["P_MTL"] == f"{written['quick/multi-focal']['P_MTL']:.3f}"
    configs = [json.loads(j.proto.body) for j in at.json]
    assert read_run(runs_dir / "quick" / "multi-focal").config in configs


def test_empty_or_missing_folder_shows_a_message(monkeypatch, tmp_path):
    (tmp_path / "empty").mkdir()
    at = run_app(monkeypatch, tmp_path / "empty")
    assert any("No run records" in i.value for i in at.info)
    assert not at.dataframe and not at.get("vega_lite_chart")

    at = run_app(monkeypatch, tmp_path / "missing")
    assert any("does not exist" in e.value for e in at.error)


def test_malformed_record_is_reported_and_other_runs_still_show(monkeypatch, runs_dir, written):
    broken = runs_dir / "quick" / "uni-au" / "metrics.json"
    broken.write_text('{"P_AU": 0.5,')  # truncated JSON
    (runs_dir / "quick" / "no-config").mkdir()
    (runs_dir / "quick" / "no-config" / "metrics.json").write_text("{}")
    at = run_app(monkeypatch, runs_dir)
    warnings = " ".join(w.value for w in at.warning)
    assert "2 run records could not be read" in warnings
    assert str(broken) in warnings and "not valid JSON" in warnings
    assert "no-config" in warnings and "config.json is missing" in warnings
    assert set(study_frame(at)["run"]) == set(written) - {"quick/uni-au"}
    # without a uni-task AU run the AU card compares nothing, the others still do
    assert any(m.label == "Expression" and m.delta for m in at.metric)


def test_hub_repositories_are_read_lazily_and_errors_shown(monkeypatch, tmp_path):
    """The Hub reader is replaced by a stand-in module: no network; checks what the app does with its answer."""
    run = write_run(tmp_path / "hubcache", "someone", "affect-multi", tasks="expr,au,va",
                    scores={"P_EXPR": 0.5, "P_AU": 0.6, "P_VA": 0.4}, hub_repo="someone/affect-multi")
    asked = []

    def read_hub_runs(repo_ids):
        asked.append(list(repo_ids))
        return [read_run(run)], ["someone/missing: repository not found"]

    fake = types.ModuleType("affectmodel.hub.results")
    fake.read_hub_runs = read_hub_runs
    monkeypatch.setitem(sys.modules, "affectmodel.hub.results", fake)
    (tmp_path / "runs").mkdir()
    at = run_app(monkeypatch, tmp_path / "runs")
    assert asked == []  # nothing is asked of the Hub until repositories are listed
    at.text_area(key="hub_repos").set_value("someone/affect-multi\nsomeone/missing").run()
    assert asked == [["someone/affect-multi", "someone/missing"]]
    assert list(study_frame(at)["run"]) == ["hub:someone/affect-multi"]
    assert any("repository not found" in w.value for w in at.warning)
