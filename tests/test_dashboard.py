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
from study_fixtures import write_run, write_seeded_study, write_study_runs

from affectmodel import study
from affectmodel.records import read_run, read_runs

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

    # headline: the matched comparison quick/multi vs quick/uni-* (one seed each: figures, no verdict)
    for title, metric, uni in (("Expression", "P_EXPR", "uni-expr"), ("Action units", "P_AU", "uni-au"),
                               ("Valence/arousal", "P_VA", "uni-va")):
        multi = written["quick/multi"][metric]
        cards = [c for c in at.metric if c.label == title and c.value == f"{multi:.3f}"]
        assert cards and cards[0].delta == f"{multi - written['quick/' + uni][metric]:+.3f}"
    # each card's verdict and seeds in a caption under it (wraps; a delta description is cut to the card)
    captions = [c.value for c in at.caption]
    assert captions.count("undecided · 1 seed multi, 1 uni") >= 3
    labels = {m.label for m in at.metric}
    assert {"Parameters", "Training time"} <= labels
    # the ratio comes from study.matched_costs (synthetic: 1 model for 3; Aff-Wild2: 1 matched uni-task run)
    assert {m.delta for m in at.metric if m.label == "Parameters" and m.delta} == {"0.33x", "1.00x"}
    assert {"of 3 uni-task models", "of 1 uni-task models"} <= set(captions)
    # a ratio is not a rise or a fall: no arrow (0.33x parameters is a saving, not an increase)
    from streamlit.proto.Metric_pb2 import Metric
    assert {m.proto.direction for m in at.metric if m.label in ("Parameters", "Training time") and m.delta} == {
        Metric.MetricDirection.NONE}
    assert any(s.value.startswith("Did multi-task learning help?") for s in at.subheader)
    verdicts = [m.value for m in at.markdown if "against one model per task" in m.value]
    assert any(v.count("undecided:") == 3 and "no interval" in v and "instead of 3" in v for v in verdicts)
    assert not any("helped" in v or "hurt" in v for v in verdicts)  # one seed never decides

    # synthetic runs are labelled, and the ABAW reference appears because Aff-Wild2 runs are shown
    assert any("Synthetic benchmark" in w.value for w in at.warning)
    assert any("ABAW" in i.value for i in at.info)

    found = charts(at)
    matched = found["Matched uni-task vs multi-task configuration, per task"]
    assert len(matched) == 2 and max(len(m) for m in matched) == 6  # quick/multi vs its three uni-task runs
    bars = found["Best runs (not a verdict): best uni-task vs best multi-task run"]
    assert len(bars) == 2  # one per data set
    synth_bars = max(bars, key=len)
    assert len(synth_bars) == 6 and set(synth_bars["setting"]) == {"uni-task", "multi-task"}
    aw2_bars = min(bars, key=len)
    assert aw2_bars["baseline"].notna().all()  # reference ticks only where the data set is Aff-Wild2
    assert synth_bars["baseline"].isna().all()
    per_au = found["Per-AU F1"][0]
    assert per_au["label"].nunique() == 12 and per_au["run"].nunique() >= 2
    assert {"Training loss per task", "Validation metric per epoch", "Per-class F1 (expression)"} <= set(found)
    # the factor tab: matched pairs only (multi vs multi-focal: losses; multi vs multi-from-uni: init),
    # no pooled means anywhere
    (factors,) = found["Matched factor comparisons: variant − reference"]
    assert set(factors["comparison"]) == {"losses: expr=focal vs expr=ce", "init: checkpoint vs random"}
    assert not any("Effect of each factor" in str(t) for t in found)
    confusion = [v for t, v in found.items() if t.startswith("Expression confusion matrix")]
    assert confusion and len(confusion[0][0]) == 64
    assert at.get("download_button")


def test_sidebar_filters_change_table_and_headline(monkeypatch, runs_dir, written):
    at = run_app(monkeypatch, runs_dir)
    at.multiselect(key="filter_setting").set_value(["uni-task"]).run()
    assert set(study_frame(at)["run"]) == {k for k, m in written.items() if not m["multi_task"]}
    # only uni-task runs: nothing to compare, and the page says so
    assert not any(m.label == "Expression" for m in at.metric)
    assert any("nothing to compare" in i.value for i in at.info)

    at.multiselect(key="filter_setting").set_value([]).run()
    at.multiselect(key="filter_dataset").set_value(["aff-wild2"]).run()
    table = study_frame(at)
    assert set(table["run"]) == {k for k, m in written.items() if not m["dataset"]["synthetic"]}
    assert not any("Synthetic benchmark" in w.value for w in at.warning)
    bars = charts(at)["Best runs (not a verdict): best uni-task vs best multi-task run"]
    assert len(bars) == 1 and bars[0]["baseline"].notna().all()
    matched = charts(at)["Matched uni-task vs multi-task configuration, per task"]
    assert matched[0]["baseline"].notna().all()

    at.multiselect(key="filter_dataset").set_value(["synthetic-affect"]).run()
    assert at.multiselect(key="filter_option: losses").label == "Losses"  # a title, not the option's name
    at.multiselect(key="filter_option: losses").set_value(["expr=focal, au=bce, va=ccc"]).run()
    assert list(study_frame(at)["run"]) == ["quick/multi-focal"]


def test_run_detail_shows_config_metrics_and_hub_link(monkeypatch, runs_dir, written):
    at = run_app(monkeypatch, runs_dir)
    at.selectbox(key="detail_run").set_value("quick/multi-focal").run()
    assert not at.exception
    links = at.get("link_button")
    assert [link.proto.url for link in links] == ["https://huggingface.co/" + written["quick/multi-focal"]["hub_repo"]]
    detail_metrics = {m.label: m.value for m in at.metric}
    assert detail_metrics["P_MTL"] == f"{written['quick/multi-focal']['P_MTL']:.3f}"
    configs = [json.loads(j.proto.body) for j in at.json]
    assert read_run(runs_dir / "quick" / "multi-focal").config in configs
    # these records carry no data fingerprint: the first screen says so, and so does the run's detail
    assert any("carry no data fingerprint" in w.value for w in at.warning)
    assert any(c.value.startswith("No data fingerprint") for c in at.caption)


def test_empty_or_missing_folder_explains_how_to_make_one(monkeypatch, tmp_path):
    (tmp_path / "empty").mkdir()
    at = run_app(monkeypatch, tmp_path / "empty")
    (info,) = [i.value for i in at.info if "No run records" in i.value]
    assert not at.dataframe and not at.get("vega_lite_chart")

    at = run_app(monkeypatch, tmp_path / "missing")
    (error,) = [e.value for e in at.error if "does not exist" in e.value]
    for text in (info, error):
        # the suite command (preceded by the synthetic-data command of suites/quick.toml), not the dashboard again
        assert "python train.py suite suites/quick.toml --data data/synthetic --out runs/quick" in text
        assert text.index("python -m affectmodel synth") < text.index("python train.py suite")
        assert "streamlit run" not in text


def test_without_arguments_the_dashboard_opens_on_the_shipped_records(monkeypatch, tmp_path):
    """A copy of the dashboard in a repository layout whose results/quick holds a tiny study."""
    source = Path(APP).parent
    (tmp_path / "dashboard").mkdir()
    for name in ("app.py", "charts.py", "__init__.py"):
        (tmp_path / "dashboard" / name).write_text((source / name).read_text())
    write_seeded_study(tmp_path / "results", seeds=(0, 1), suite="quick")
    monkeypatch.delenv("AFFECT_RUNS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # launched from the repository, as the README says
    at = AppTest.from_file(str(tmp_path / "dashboard" / "app.py"), default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    # relative to the working folder: a screenshot shows no local absolute path
    assert at.text_input(key="runs_dir").value == "results/quick"
    assert "quick/multi/seed-1" in set(study_frame(at)["run"])
    at.text_input(key="runs_dir").set_value(str(tmp_path / "elsewhere")).run()  # the sidebar still chooses
    assert any("does not exist" in e.value for e in at.error)


def test_a_runs_folder_outside_the_working_folder_is_shown_whole(monkeypatch, tmp_path):
    write_seeded_study(tmp_path / "runs", seeds=(0,), suite="quick")
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    at = run_app(monkeypatch, tmp_path / "runs" / "quick")
    assert at.text_input(key="runs_dir").value == str((tmp_path / "runs" / "quick").resolve())
    assert "quick/multi/seed-0" in set(study_frame(at)["run"])


def test_seeded_study_shows_intervals_seeds_and_plain_verdicts(monkeypatch, tmp_path):
    write_seeded_study(tmp_path / "gain", multi_gain=0.2)
    at = run_app(monkeypatch, tmp_path / "gain")
    verdicts = [m.value for m in at.markdown if "quick/multi against one model per task" in m.value]
    assert verdicts and verdicts[0].count("helped:") == 3
    (bars,) = charts(at)["Matched uni-task vs multi-task configuration, per task"]
    assert len(bars) == 6 and (bars["low"] < bars["mean"]).all() and (bars["mean"] < bars["high"]).all()
    assert (bars["no_skill"] < bars["low"]).all()  # every side learned; its no-skill level is drawn
    assert (bars.loc[bars["task"].str.contains("P_VA"), "no_skill"] == 0).all()
    assert (bars["seeds"] == 3).all()
    table = next(t.value for t in at.table if "Verdict" in t.value.columns)
    assert (table["Seeds (multi/uni)"].str.startswith("3/")).all()
    assert set(table.loc[table["Uni-task (matched)"] == "unmatched", "Verdict"].str[:9]) == {"unmatched"}
    assert not table.isin(["None", "nan", "NaN"]).any().any()  # a missing figure reads as a dash
    assert at.dataframe and all(df.proto.placeholder == "–" for df in at.dataframe)  # not Streamlit's "None"
    # factor tab: multi-focal vs multi (losses), a difference per task with its interval and verdict in words
    (factor_bars,) = charts(at)["Matched factor comparisons: variant − reference"]
    assert len(factor_bars) == 3 and set(factor_bars["comparison"]) == {"losses: expr=focal vs expr=ce"}
    assert (factor_bars["low"] < factor_bars["diff_mean"]).all()
    assert (factor_bars["diff_mean"] < factor_bars["high"]).all()
    factor_table = next(df.value for df in at.dataframe if "comparison" in df.value.columns)
    report = study.study_report(study.index_runs(read_runs(tmp_path / "gain")[0]))
    assert sorted(factor_table["verdict_text"]) == sorted(f.verdict_text for f in report.factors)
    assert all(v.startswith(("helped", "hurt", "no clear difference")) for v in factor_table["verdict_text"])

    st.cache_data.clear()
    write_seeded_study(tmp_path / "null", multi_gain=0.0)
    at = run_app(monkeypatch, tmp_path / "null")
    verdicts = [m.value for m in at.markdown if "quick/multi against one model per task" in m.value]
    assert verdicts[0].count("no clear difference (") == 3 and "helped" not in verdicts[0]


def test_in_sample_tuned_figures_are_labelled_and_selection_explained(monkeypatch, tmp_path):
    run = write_seeded_study(tmp_path, seeds=(0,))["uni-au"][0]
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["P_AU_tuned_on_validation"] = 0.9
    (run / "metrics.json").write_text(json.dumps(metrics))
    at = run_app(monkeypatch, tmp_path)
    at.selectbox(key="detail_run").set_value("quick/uni-au/seed-0").run()
    labels = {m.label: m.value for m in at.metric}
    assert labels["P_AU tuned on validation (in-sample, optimistic)"] == "0.900"
    assert labels["P_AU"] == f"{metrics['P_AU']:.3f}"
    assert any("development split" in c.value for c in at.caption)


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
    # without a uni-task AU run the AU comparison is unmatched, the others still compare
    assert any(m.label == "Expression" and m.delta for m in at.metric)
    assert any(m.label == "Action units" and not m.delta for m in at.metric)
    assert any(c.value.startswith("unmatched · ") for c in at.caption)


def test_records_used_in_part_are_named_above_the_figures(monkeypatch, tmp_path):
    """An unreadable predictions file (and a seed left out for its NaN figures) changed the intervals
    and verdicts shown without a word."""
    write_seeded_study(tmp_path, seeds=(0, 1, 2))
    garbage = tmp_path / "quick" / "uni-va" / "seed-1" / "val_predictions.npz"
    garbage.write_bytes(b"not a zip file")
    seed2 = tmp_path / "quick" / "uni-va" / "seed-2" / "metrics.json"
    seed2.write_text(json.dumps({**json.loads(seed2.read_text()), "P_VA": float("nan")}))
    at = run_app(monkeypatch, tmp_path)
    warning = next(w.value for w in at.warning if "could only be used in part" in w.value)
    assert f"- {garbage}: not a readable predictions file (not an .npz archive)" in warning
    assert "quick/uni-va is estimated from its seeds' metrics.json figures alone" in warning
    assert "- seed 2 of quick/uni-va is left out of P_VA: its metrics.json holds nan for it" in warning


def test_hub_repositories_are_read_lazily_and_errors_shown(monkeypatch, tmp_path):
    """The Hub reader is replaced by a stand-in module: no network; checks what the app does with its answer."""
    run = write_run(tmp_path / "hubcache", "someone", "affect-multi", tasks="expr,au,va",
                    scores={"P_EXPR": 0.5, "P_AU": 0.6, "P_VA": 0.4}, hub_repo="someone/affect-multi")
    asked = []

    def read_hub_runs(repo_ids):
        asked.append(list(repo_ids))
        return [read_run(run)], ["someone/missing: repository not found"]

    fake = types.ModuleType("affectmodel.hub.results")
    vars(fake)["read_hub_runs"] = read_hub_runs
    monkeypatch.setitem(sys.modules, "affectmodel.hub.results", fake)
    (tmp_path / "runs").mkdir()
    at = run_app(monkeypatch, tmp_path / "runs")
    assert asked == []  # nothing is asked of the Hub until repositories are listed
    at.text_area(key="hub_repos").set_value("someone/affect-multi\nsomeone/missing").run()
    assert asked == [["someone/affect-multi", "someone/missing"]]
    assert list(study_frame(at)["run"]) == ["hub:someone/affect-multi"]
    assert any("repository not found" in w.value for w in at.warning)


def test_factor_tab_compares_temporal_models_with_smoothing(monkeypatch, tmp_path):
    """The temporal suite's records: the factor tab charts each temporal module against smoothing on the
    same trunk, and smoothing against the per-frame model, with intervals and verdicts in words."""
    from study_fixtures import write_temporal_study

    write_temporal_study(tmp_path, kinds=("smooth", "gru"), seeds=(0, 1),
                         skill={"per-frame-expr": 0.4, "smooth-expr": 0.4, "gru-expr": 0.9})
    at = run_app(monkeypatch, tmp_path)
    assert not at.exception, [e.value for e in at.exception]
    (factor_bars,) = charts(at)["Matched factor comparisons: variant − reference"]
    assert set(factor_bars["comparison"]) == {"temporal: gru w16 bidirectional (300 steps) vs smooth w5",
                                              "temporal: smooth w5 vs none"}
    gru = factor_bars[factor_bars["comparison"].str.startswith("temporal: gru")]
    assert (gru["low"] > 0).all()
    factor_table = next(df.value for df in at.dataframe if "comparison" in df.value.columns)
    assert any(v.startswith("helped") for v in factor_table["verdict_text"])
    assert "option: temporal" in study_frame(at).columns


SHIPPED_TEMPORAL = Path(APP).parent.parent / "results" / "temporal"


def test_the_dashboard_opens_the_shipped_temporal_study(monkeypatch):
    """results/temporal (the temporal suite's shipped records, 20 configurations x 3 seeds): no run has a
    collapsed head, and the factor tab shows every temporal comparison with an interval and a verdict."""
    from affectmodel.records import collapsed_heads, run_health

    records = read_runs(SHIPPED_TEMPORAL)[0]
    assert len(records) == 60 and all(run_health(r) is not None and not collapsed_heads(r) for r in records)
    at = run_app(monkeypatch, SHIPPED_TEMPORAL)
    (bars,) = charts(at)["Matched factor comparisons: variant − reference"]
    # smoothing vs per-frame, and gru, causal gru and conv vs smoothing: once per uni-task set, per task for multi
    assert len(bars) == 4 * (1 + 1 + 1 + 3) and (bars["low"] < bars["high"]).all()
    table = next(df.value for df in at.dataframe if "comparison" in df.value.columns)
    assert len(table) == len(bars) and set(table["comparison"].str.split(":").str[0]) == {"temporal"}
    assert all(v.startswith(("helped", "hurt", "no clear difference", "undecided")) for v in table["verdict_text"])
