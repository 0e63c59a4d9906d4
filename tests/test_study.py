"""affectmodel.study: the study table and comparisons the dashboard shows, on run folders written here."""
from __future__ import annotations

import io
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from study_fixtures import AFFWILD2, write_run, write_seeded_study, write_study_runs, write_temporal_study

from affectmodel import statistics, study
from affectmodel.records import RunRecord, read_runs
from affectmodel.tasks import ABAW8, ABAW_BASELINES, AU_NAMES


@pytest.fixture
def study_runs(tmp_path):
    paths = write_study_runs(tmp_path)
    records, errors = read_runs(tmp_path)
    assert errors == []
    runs = study.index_runs(records)
    metrics = {f"{p.parent.name}/{p.name}": json.loads((p / "metrics.json").read_text()) for p in paths.values()}
    return runs, metrics


def _best(metrics, metric, multi):
    candidates = {k: m[metric] for k, m in metrics.items()
                  if metric in m and m["multi_task"] == multi and m["dataset"]["synthetic"]}
    run = max(candidates, key=candidates.get)
    return run, candidates[run]


def test_study_table_has_one_row_per_run_with_written_values(study_runs):
    runs, metrics = study_runs
    table = study.study_table(runs)
    assert sorted(table["run"]) == sorted(metrics)
    for row in table.itertuples():
        m = metrics[row.run]
        for col in study.METRIC_COLUMNS:
            assert (getattr(row, col) == pytest.approx(m[col])) if col in m else math.isnan(getattr(row, col))
        assert row.parameters == m["parameters"] and row.train_time_s == m["train_time_s"]
        assert row.setting == ("multi-task" if m["multi_task"] else "uni-task")
        assert row.synthetic == m["dataset"]["synthetic"] and row.dataset == m["dataset"]["name"]
    # factors come from records.run_factors (config.json)
    row = table.set_index("run").loc["quick/multi-from-uni"]
    assert (row["init"], row["pretraining"]) == ("checkpoint", "uni-task backbones")
    assert table.set_index("run").loc["quick/multi-focal", "losses"].startswith("expr=focal")
    # uni-task rows are listed before multi-task rows within a data set
    synthetic = table[table["synthetic"]]
    assert list(synthetic["setting"]) == sorted(synthetic["setting"], key=lambda s: s != "uni-task")


def test_history_reads_development_split_columns_as_development_figures(tmp_path):
    """Current records score each evaluation on the development split (dev_ columns); older ones
    on validation (val_). Both are read, and kept apart."""
    history: list[dict[str, Any]] = [
        {"epoch": 1, "step": 4.0, "train_loss": 0.9, "train_loss_expr": 0.9, "dev_P_EXPR": 0.25, "time_s": 1.5},
        {"epoch": 2, "step": 8.0, "train_loss": 0.7, "train_loss_expr": 0.7, "dev_P_EXPR": 0.5, "time_s": 3.0}]
    long = study.history_long({"new": RunRecord(tmp_path, {}, {}, history)})
    scores = long[long["kind"] == "development"]
    assert list(scores["series"]) == ["P_EXPR", "P_EXPR"] and list(scores["value"]) == [0.25, 0.5]
    assert set(long["kind"]) == {"loss", "development"} and "step" not in set(long["series"])


def test_index_runs_makes_ids_unique_and_marks_hub_runs(study_runs):
    runs, _ = study_runs
    records = list(runs.values())
    again = study.index_runs(records[:2], taken=runs)
    assert all(k.endswith(" #2") for k in again)
    hub = study.index_runs(records[:1], source="hub")
    (key,) = hub
    assert key.startswith("hub:")
    assert study.study_table(hub)["source"].tolist() == ["hub"]


def test_filter_table_and_options(study_runs):
    runs, metrics = study_runs
    table = study.study_table(runs)
    options = study.filter_options(table)
    assert options["setting"] == ["multi-task", "uni-task"]
    assert options["dataset"] == ["aff-wild2", "synthetic-affect"]
    # every training option that varies is a column and a filter, read from the identity (no list of factors)
    assert set(options) == {"dataset", "setting"} | {study.OPTION_PREFIX + k for k in ("tasks", "init", "losses")}
    assert options[study.OPTION_PREFIX + "init"] == ["checkpoint", "imagenet", "random"]
    uni = study.filter_table(table, {"setting": ["uni-task"]})
    assert set(uni["run"]) == {k for k, m in metrics.items() if not m["multi_task"]}
    both = study.filter_table(table, {"setting": ["uni-task"], "dataset": ["aff-wild2"]})
    assert list(both["run"]) == ["affwild2/uni-expr"]
    assert len(study.filter_table(table, {"setting": []})) == len(table)  # empty choice = no filter


def test_best_mask_is_per_dataset_and_per_metric(study_runs):
    runs, metrics = study_runs
    table = study.study_table(runs)
    best = study.best_runs(table)
    for metric in ("P_EXPR", "P_AU", "P_VA", "P_MTL"):
        for synthetic in (True, False):
            scored = {k: m[metric] for k, m in metrics.items()
                      if metric in m and m["dataset"]["synthetic"] == synthetic}
            if scored:
                assert max(scored, key=scored.get) in best[metric]
    mask = study.best_mask(table)
    assert not mask["parameters"].any()  # cost columns are not "best"-highlighted per run
    assert mask["P_EXPR"].sum() == 2  # one per data set


def test_headline_comparison_pairs_best_uni_and_multi_per_task(study_runs):
    runs, metrics = study_runs
    comparison = study.headline_comparison(study.study_table(runs))
    synth = comparison[comparison["dataset"] == "synthetic-affect"].set_index("task")
    assert list(synth.index) == ["expr", "au", "va"]
    for task, metric in study.TASK_METRICS.items():
        uni_run, uni = _best(metrics, metric, multi=False)
        multi_run, multi = _best(metrics, metric, multi=True)
        row = synth.loc[task]
        assert (row["uni_run"], row["multi_run"]) == (uni_run, multi_run)
        assert row["delta"] == pytest.approx(multi - uni)
        assert math.isnan(row["baseline"])  # no ABAW reference for synthetic data
    aw2 = comparison[comparison["dataset"] == "aff-wild2"].set_index("task")
    assert aw2.loc["expr", "baseline"] == ABAW_BASELINES["P_EXPR"]
    assert math.isnan(aw2.loc["au", "uni"]) and math.isnan(aw2.loc["au", "delta"])  # no uni-task AU run


def test_cost_comparison_three_models_against_one(study_runs):
    runs, metrics = study_runs
    cost = study.cost_comparison(study.study_table(runs)).set_index("dataset")
    c = cost.loc["synthetic-affect"]
    uni = [_best(metrics, m, multi=False)[0] for m in ("P_EXPR", "P_AU", "P_VA")]
    assert c["uni_models"] == 3 and c["uni_runs"] == ", ".join(uni)
    assert c["uni_parameters"] == sum(metrics[r]["parameters"] for r in uni)
    assert c["uni_train_time_s"] == sum(metrics[r]["train_time_s"] for r in uni)
    assert c["uni_images_per_second"] == pytest.approx(1 / sum(1 / metrics[r]["images_per_second"] for r in uni))
    shared = max((k for k, m in metrics.items() if m["multi_task"] and m["dataset"]["synthetic"]),
                 key=lambda k: metrics[k]["P_MTL"])
    assert c["multi_run"] == shared and c["multi_P_MTL"] == pytest.approx(metrics[shared]["P_MTL"])
    uni_sum = sum(metrics[r][m] for r, m in zip(uni, ("P_EXPR", "P_AU", "P_VA"), strict=True))
    assert c["uni_P_MTL"] == pytest.approx(uni_sum)


def test_factor_frames_carry_the_matched_figures_not_pooled_means(study_runs):
    """The factor tab's tables come from matched pairs only: older records (one seed, no predictions)
    give figures and no verdict; the pooled per-level means of earlier versions are gone."""
    runs, metrics = study_runs
    report = study.study_report(runs, resamples=50)
    frame = study.factors_frame(report.factors)
    pairs = set(zip(frame["factor"], frame["reference"], frame["variant"], strict=True))
    assert pairs == {("losses", "quick/multi", "quick/multi-focal"),
                     ("init", "quick/multi", "quick/multi-from-uni")}
    focal = frame[(frame["factor"] == "losses") & (frame["task"] == "expr")].iloc[0]
    expected = metrics["quick/multi-focal"]["P_EXPR"] - metrics["quick/multi"]["P_EXPR"]
    assert focal["diff_mean"] == pytest.approx(expected)
    assert focal["verdict"] == "undecided" and focal["seeds"] == "1/1"
    assert not hasattr(study, "factor_effects")
    assert study.interactions_frame([]).empty and list(study.interactions_frame([]).columns)[:3] == [
        "dataset", "synthetic", "factor"]


def test_per_label_history_and_confusion_tables(study_runs):
    runs, metrics = study_runs
    chosen = {k: runs[k] for k in ("quick/uni-expr", "quick/multi")}
    f1 = study.per_label_f1(chosen, "expr")
    assert len(f1) == 2 * len(ABAW8)
    assert f1[f1["run"] == "quick/multi"].set_index("label")["f1"].to_dict() == metrics["quick/multi"]["per_class_f1"]
    au = study.per_label_f1(chosen, "au")
    assert list(au["label"]) == list(AU_NAMES)  # uni-expr has no AU head
    with pytest.raises(ValueError, match="kind"):
        study.per_label_f1(chosen, "va")

    history = study.history_long({"quick/multi": runs["quick/multi"]})
    assert set(history["series"]) == {"total", "expr", "au", "va", "P_EXPR", "P_AU", "P_VA", "P_MTL", "ccc_valence",
                                      "ccc_arousal"}  # the columns training writes (records_writer)
    last = history[(history["series"] == "P_MTL")].sort_values("epoch")["value"].iloc[-1]
    assert last == pytest.approx(metrics["quick/multi"]["P_MTL"], abs=1e-3)

    assert set(history["kind"]) == {"loss", "validation"}  # an older record: val_ columns

    cm = study.confusion_long(runs["quick/multi"])
    written = metrics["quick/multi"]["confusion_matrix"]
    assert len(cm) == 64 and cm["count"].sum() == sum(map(sum, written))
    neutral = cm[cm["true"] == "Neutral"]
    assert neutral["rate"].sum() == pytest.approx(1.0)
    assert neutral.set_index("predicted").loc["Neutral", "count"] == written[0][0]
    assert study.confusion_long(runs["quick/uni-au"]).empty


def test_expression_labels_fall_back_to_the_label_space(tmp_path):
    run = write_run(tmp_path, "s", "r", tasks="expr", scores={"P_EXPR": 0.3})
    (record,), _ = read_runs(tmp_path)
    record.metrics["per_class_f1"] = [0.1] * 7  # a list, not a dict: names from the config's space / size
    assert study.expression_labels(record, 7) == list(ABAW8.labels[:7])
    assert study.per_label_f1({"r": record}, "expr")["label"].tolist() == list(ABAW8.labels[:7])
    assert study.expression_labels(record, 3) == ["class 0", "class 1", "class 2"]
    assert run.is_dir()


def test_csv_export_round_trips(study_runs):
    runs, _ = study_runs
    table = study.filter_table(study.study_table(runs), {"setting": ["multi-task"]})
    back = pd.read_csv(io.BytesIO(study.table_csv(table)))
    assert list(back.columns) == list(table.columns)
    assert back["run"].tolist() == table["run"].tolist()
    assert back["P_MTL"].tolist() == pytest.approx(table["P_MTL"].tolist())


def test_dataset_helpers():
    assert study.is_affwild2("Aff-Wild2") and study.is_affwild2("aff_wild2") and not study.is_affwild2("affectnet")
    assert "synthetic" in study.dataset_label("synthetic-affect", True)
    assert study.dataset_label(AFFWILD2["name"], False) == "aff-wild2"
    assert study.hub_url("o/m") == "https://huggingface.co/o/m" and study.hub_url(None) is None
    assert study.format_count(11_180_000) == "11.2 M" and study.format_duration(150) == "2.5 min"
    assert [study.format_rate(x) for x in (1234.5, 45.67, 1.234, math.nan)] == ["1234", "45.7", "1.23", "n/a"]


def test_cost_of_a_pretrained_shared_model_includes_its_uni_task_pretraining(tmp_path):
    write_run(tmp_path, "s", "uni-expr", tasks="expr", scores={"P_EXPR": 0.40}, train_time_s=100)
    write_run(tmp_path, "s", "uni-au", tasks="au", scores={"P_AU": 0.50}, train_time_s=120)
    write_run(tmp_path, "s", "uni-va", tasks="va", scores={"P_VA": 0.60}, train_time_s=100)
    write_run(tmp_path, "s", "multi", tasks="expr,au,va", scores={"P_EXPR": 0.4, "P_AU": 0.5, "P_VA": 0.5},
              train_time_s=150)
    write_run(tmp_path, "s", "multi-from-uni-au", tasks="expr,au,va", init="runs/s/uni-au",
              pretrained_from="uni-au", scores={"P_EXPR": 0.5, "P_AU": 0.6, "P_VA": 0.6}, train_time_s=150)
    table = study.study_table(study.index_runs(read_runs(tmp_path)[0]))
    c = study.cost_comparison(table).iloc[0]
    assert c["multi_run"].endswith("multi-from-uni-au")
    assert c["multi_pretraining_s"] == 120
    assert c["multi_train_time_s"] == 150 + 120


# ----------------------------------------------------------------------------- matched comparisons

def _report(root, resamples=200):
    records, errors = read_runs(root)
    assert errors == []
    return study.study_report(study.index_runs(records), resamples=resamples)


def test_seed_folders_group_into_configurations_with_budgets(tmp_path):
    written = write_seeded_study(tmp_path, seeds=(0, 1))
    records, _ = read_runs(tmp_path)
    runs = study.index_runs(records)
    assert "quick/multi/seed-1" in runs
    configs = {c.key: c for c in study.group_configurations(runs)}
    assert set(configs) == {f"quick/{name}" for name in written}
    assert configs["quick/multi"].seeds == [0, 1] and configs["quick/multi"].tasks == ("expr", "au", "va")
    assert configs["quick/multi-from-uni-au"].budget_steps == 200
    assert configs["quick/multi-from-uni-au"].init_run == "uni-au"
    assert configs["quick/multi-from-uni-au"].train_time_s() == 60.0 + 50.0


def test_matching_pairs_only_configurations_that_differ_in_the_tasks(tmp_path):
    write_seeded_study(tmp_path, seeds=(0, 1))
    configs = study.group_configurations(study.index_runs(read_runs(tmp_path)[0]))
    by_key = {c.key: c for c in configs}
    matches = study.find_matches(by_key["quick/multi"], configs)
    assert {t: (u.key if u else None) for t, (u, _) in matches.items()} == {
        "expr": "quick/uni-expr", "au": "quick/uni-au", "va": "quick/uni-va"}
    focal = study.find_matches(by_key["quick/multi-focal"], configs)
    assert focal["expr"][0] is None and "only in the tasks" in focal["expr"][1]  # its expression loss differs
    assert focal["au"][0].key == "quick/uni-au"                                  # AU loss is the same
    from_uni = study.find_matches(by_key["quick/multi-from-uni-au"], configs)
    assert all(u is None and "200 steps" in why for u, why in from_uni.values())  # twice the budget


def test_verdict_needs_an_interval_that_excludes_zero_and_two_seeds():
    def interval(mean, low, high, seeds=(3, 3), videos=50):
        return statistics.Interval(mean, low, high, 0.95, seeds, videos, 1000, 0.01, 0.01, 4.0, ((), ()))

    assert study.verdict_of(interval(0.05, 0.01, 0.09), "P_AU")[0] == "helped"
    assert study.verdict_of(interval(-0.05, -0.09, -0.01), "P_AU")[0] == "hurt"
    word, text = study.verdict_of(interval(0.01, -0.02, 0.04), "P_AU")
    assert word == "no clear difference" and text.startswith("no clear difference (-0.020 to +0.040")
    word, text = study.verdict_of(interval(0.05, 0.01, 0.09, seeds=(1, 3)), "P_AU")
    assert word == "undecided" and "one seed" in text   # an interval over videos only never decides


def test_no_true_effect_gives_no_verdict_and_a_large_one_is_found(tmp_path):
    write_seeded_study(tmp_path / "null", multi_gain=0.0)
    write_seeded_study(tmp_path / "gain", multi_gain=0.2)
    null = {c.task: c for c in _report(tmp_path / "null").comparisons if c.multi == "quick/multi"}
    gain = {c.task: c for c in _report(tmp_path / "gain").comparisons if c.multi == "quick/multi"}
    for task in ("expr", "au", "va"):
        assert null[task].verdict == "no clear difference", null[task].verdict_text
        assert gain[task].verdict == "helped", gain[task].verdict_text
        assert gain[task].difference.low > 0 and gain[task].difference.n_seeds == (3, 3)


def test_study_command_json_is_consistent(tmp_path):
    write_seeded_study(tmp_path, multi_gain=0.1)
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-m", "affectmodel", "study", str(tmp_path), "--json", "--resamples",
                           "200"], capture_output=True, text=True, cwd=root, timeout=300, check=False,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["protocol"].startswith("Figures are means over seeds")
    assert len(report["comparisons"]) == 9
    for c in report["comparisons"]:
        assert c["verdict"] in study.VERDICTS
        if c["uni"] is None:
            assert c["verdict"] == "unmatched" and c["difference"] is None and c["reason"]
            continue
        d = c["difference"]
        assert c["n_seeds"] == {"multi": 3, "uni": 3} and d["n_seeds"] == [3, 3]
        assert d["low"] <= d["mean"] <= d["high"]
        excludes = d["low"] > 0 or d["high"] < 0
        expected = ("helped" if d["mean"] > 0 else "hurt") if excludes else "no clear difference"
        assert c["verdict"] == expected
        assert c["multi_estimate"]["low"] <= c["multi_estimate"]["mean"] <= c["multi_estimate"]["high"]
    assert {c["multi"] for c in report["costs"]} >= {"quick/multi"}
    cost = next(c for c in report["costs"] if c["multi"] == "quick/multi")
    assert cost["parameters_ratio"] == pytest.approx(cost["multi_parameters"] / cost["uni_parameters"])


def test_study_command_errors_are_one_line(tmp_path):
    from affectmodel.cli import main
    assert main(["study", str(tmp_path / "missing")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["study", str(tmp_path / "empty")]) == 2


def test_older_records_without_predictions_read_and_never_claim_a_verdict(tmp_path):
    write_study_runs(tmp_path)
    report = _report(tmp_path)
    quick = [c for c in report.comparisons if c.multi == "quick/multi"]
    assert {c.uni for c in quick} == {"quick/uni-expr", "quick/uni-au", "quick/uni-va"}
    assert all(c.verdict == "undecided" for c in quick)   # one seed, no predictions: figures, no verdict
    expr = next(c for c in quick if c.task == "expr")
    assert expr.difference.mean == pytest.approx(0.45 - 0.40)


def test_report_markdown_has_the_table_and_the_verdicts(tmp_path):
    write_seeded_study(tmp_path, seeds=(0, 1))
    report = _report(tmp_path)
    text = study.report_markdown(report)
    assert "| Multi-task configuration | Task |" in text and "synthetic benchmark" in text
    for c in report.comparisons:
        assert c.verdict_text in text
    assert "quick/multi against one model per task" in text and "instead of 3" in text


def test_model_section_that_differs_only_in_the_tasks_still_matches():
    """Training writes the model's config (its heads follow the tasks) into config.json: a multi-task
    run and a uni-task run that differ only in the tasks must still be matched; the network itself is
    compared through the options that build it (image_size here)."""
    from affectmodel.records import RunRecord
    from affectmodel.study import _match_signature

    def record(tasks, input_size=48):
        config = {"tasks": tasks, "augment": "light", "losses": {t: "ce" if t == "expr" else "bce" for t in tasks},
                  "image_size": input_size, "steps": 60,
                  "model": {"tasks": tasks, "input_size": input_size, "backbone": "resnet18"}}
        return RunRecord(Path("runs/s/x/seed-0"), config, {"budget_steps": 60})

    multi, uni = record(["expr", "au"]), record(["expr"])
    assert _match_signature(multi, "expr", False) == _match_signature(uni, "expr", False)
    assert _match_signature(multi, "expr", False) != _match_signature(record(["expr"], input_size=64), "expr", False)


# ----------------------------------------------------------------------------- runs that did not learn

def _va_pair(root, uni_skill, multi_skill=0.6, seeds=(0, 1, 2)):
    for s in seeds:
        write_run(root, "quick", "uni-va", tasks="va", scores={"P_VA": uni_skill}, seed=s, steps=100)
        write_run(root, "quick", "multi", tasks="expr,au,va", scores={"P_EXPR": 0.5, "P_AU": 0.5, "P_VA": multi_skill},
                  seed=s, steps=100)


def _va_comparison(root):
    return next(c for c in _report(root).comparisons if c.task == "va" and c.multi == "quick/multi")


def test_a_side_whose_interval_reaches_its_no_skill_level_gives_no_verdict(tmp_path):
    _va_pair(tmp_path, uni_skill=0.0)  # a uni-task VA network that learned nothing: CCC around 0
    c = _va_comparison(tmp_path)
    assert c.uni_estimate.no_skill == 0.0 and c.uni_estimate.low <= 0.0
    assert c.difference.low > 0  # the interval alone would say "helped"
    assert c.verdict == "undecided" and c.verdict_text.startswith("undecided: quick/uni-va did not learn (P_VA ")
    assert "no-skill level 0.000" in c.verdict_text and c.did_not_learn == [c.verdict_text[len("undecided: "):]]
    # the same figures with a uni-task side that learned: a verdict
    _va_pair(tmp_path / "learned", uni_skill=0.3)
    assert _va_comparison(tmp_path / "learned").verdict == "helped"


def test_a_collapsed_head_or_a_diverged_seed_gives_no_verdict(tmp_path):
    _va_pair(tmp_path, uni_skill=0.3)
    seed1 = tmp_path / "quick" / "uni-va" / "seed-1" / "metrics.json"
    good = json.loads(seed1.read_text())
    healthy = {"output_spread": 0.3, "saturated_share": 0.0, "constant_share": 0.0, "collapsed": False}
    collapsed = {"output_spread": 0.002, "saturated_share": 0.99, "constant_share": 0.0, "collapsed": True}
    seed1.write_text(json.dumps({**good, "health": {"va": collapsed}}))
    c = _va_comparison(tmp_path)
    assert c.verdict == "undecided"
    assert c.verdict_text == "undecided: quick/uni-va did not learn (its valence / arousal head collapsed in seed 1)"
    seed1.write_text(json.dumps({**good, "health": {"va": healthy}}))
    assert _va_comparison(tmp_path).verdict == "helped"
    # an older record of a diverged run: NaN figures (json writes NaN), never a verdict
    seed1.write_text(json.dumps({**good, "P_VA": float("nan")}))
    c = _va_comparison(tmp_path)
    assert c.verdict == "undecided" and "quick/uni-va diverged (P_VA is not a number in seed 1)" in c.verdict_text
    # a collapsed head of another task does not block this task's verdict
    multi0 = tmp_path / "quick" / "multi" / "seed-0" / "metrics.json"
    seed1.write_text(json.dumps(good))
    multi0.write_text(json.dumps({**json.loads(multi0.read_text()), "health": {"au": collapsed, "va": healthy}}))
    report = _report(tmp_path)
    assert next(c for c in report.comparisons if c.task == "va").verdict == "helped"


# ----------------------------------------------------------------------------- records used in part

@pytest.mark.parametrize("content", [b"", b"\x00garbage, not a zip" * 40, "wrong arrays"])
def test_an_unreadable_predictions_file_is_named_with_what_it_changes(tmp_path, content):
    """The comparison used to fall back to seeds-only intervals without a word (wider, and here the
    verdict changed from "helped" to "undecided")."""
    _va_pair(tmp_path, uni_skill=0.3)
    whole = _va_comparison(tmp_path)
    assert whole.verdict == "helped" and _report(tmp_path).warnings == []
    path = tmp_path / "quick" / "uni-va" / "seed-1" / "val_predictions.npz"
    if content == "wrong arrays":
        np.savez(path, something=np.zeros(3))
    else:
        path.write_bytes(content)
    report = _report(tmp_path)
    assert len(report.warnings) == 1
    assert report.warnings[0].startswith(f"{path}: ")
    assert report.warnings[0].endswith("quick/uni-va is estimated from its seeds' metrics.json figures alone "
                                       "(intervals over seeds, not over validation videos)")
    assert {"wrong arrays": "missing array(s) video, frame", b"": "empty file"}.get(
        content, "not a readable predictions file (not an .npz archive)") in report.warnings[0]
    assert "pickle" not in report.warnings[0]
    c = next(c for c in report.comparisons if c.task == "va" and c.multi == "quick/multi")
    assert c.difference.high - c.difference.low > whole.difference.high - whole.difference.low
    assert report.as_dict()["warnings"] == report.warnings


def test_a_published_summary_stands_in_for_the_predictions_and_a_broken_one_is_named(tmp_path):
    """A record without val_predictions.npz but with the per-video summary publish writes (a --dry-run
    folder, a Hub snapshot): the same comparison; an unreadable summary is named like a predictions file."""
    from affectmodel.summaries import SUMMARY_FILE, save_summary

    _va_pair(tmp_path, uni_skill=0.3)
    whole = _va_comparison(tmp_path)
    records = {r.path: r for r in read_runs(tmp_path)[0]}
    for seed in (0, 1, 2):
        run = tmp_path / "quick" / "uni-va" / f"seed-{seed}"
        save_summary(run / SUMMARY_FILE, study.run_summary(records[run]))
        (run / "val_predictions.npz").unlink()
    summed = _va_comparison(tmp_path)
    assert summed.difference.as_dict() == whole.difference.as_dict() and summed.verdict == whole.verdict
    broken = tmp_path / "quick" / "uni-va" / "seed-1" / SUMMARY_FILE
    broken.write_text("{}")
    report = _report(tmp_path)
    assert report.warnings == [f"{broken}: not a valid summary file (not a 'affectmodel per-video validation "
                               "summary' document): quick/uni-va is estimated from its seeds' metrics.json figures "
                               "alone (intervals over seeds, not over validation videos)"]


def test_a_seed_left_out_for_its_nan_metrics_is_named(tmp_path):
    _va_pair(tmp_path, uni_skill=0.3)
    (tmp_path / "quick" / "uni-va" / "seed-0" / "val_predictions.npz").write_bytes(b"")  # figures over seeds
    seed2 = tmp_path / "quick" / "uni-va" / "seed-2" / "metrics.json"
    seed2.write_text(json.dumps({**json.loads(seed2.read_text()), "P_VA": float("nan")}))
    report = _report(tmp_path)
    assert report.warnings[1:] == ["seed 2 of quick/uni-va is left out of P_VA: its metrics.json holds nan for it"]
    assert report.estimates["quick/uni-va"]["P_VA"].n_seeds == (2,)
    # the command says both, on stderr, and --json carries them
    root = Path(__file__).resolve().parents[1]
    for extra in ([], ["--json"]):
        done = subprocess.run([sys.executable, "-m", "affectmodel", "study", str(tmp_path), "--resamples", "50",
                               *extra], capture_output=True, text=True, cwd=root, timeout=300, check=False,
                              env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})
        assert done.returncode == 0, done.stderr
        assert done.stderr.splitlines() == [f"warning: {w}" for w in report.warnings]
        if extra:
            assert json.loads(done.stdout)["warnings"] == report.warnings


def test_expression_and_au_sides_are_held_to_their_own_no_skill_levels(tmp_path):
    """P_AU's no-skill level is far above 0 (every AU on): a model at that level did not learn."""
    for s in (0, 1, 2):
        write_run(tmp_path, "quick", "uni-au", tasks="au", scores={"P_AU": 0.0}, seed=s, steps=100)
        write_run(tmp_path, "quick", "multi", tasks="expr,au,va", scores={"P_EXPR": 0.5, "P_AU": 0.9, "P_VA": 0.5},
                  seed=s, steps=100)
    c = next(c for c in _report(tmp_path).comparisons if c.task == "au")
    assert c.uni_estimate.no_skill > 0.3 and c.uni_estimate.low <= c.uni_estimate.no_skill
    assert c.verdict == "undecided" and "quick/uni-au did not learn (P_AU" in c.verdict_text


# ----------------------------------------------------------------------------- data fingerprints

def _on_data(fingerprint: str | None) -> dict[str, Any]:
    base = {"name": "synthetic-affect", "synthetic": True, "split": "validation"}
    return base if fingerprint is None else {**base, "fingerprint": fingerprint}


def test_seeds_on_different_data_are_never_pooled_or_matched(tmp_path):
    """The seeds of one configuration, or a multi-task and a uni-task configuration, trained on data
    with different fingerprints (another machine rendered the benchmark differently) stay apart,
    and the report names the runs."""
    a, b = "a" * 16, "b" * 16
    for seed, data in ((0, a), (1, a), (2, b)):
        write_run(tmp_path, "quick", "uni-va", tasks="va", scores={"P_VA": 0.5}, seed=seed, dataset=_on_data(data))
        write_run(tmp_path, "quick", "uni-expr", tasks="expr", scores={"P_EXPR": 0.4}, seed=seed, dataset=_on_data(b))
        write_run(tmp_path, "quick", "multi", tasks="expr,au,va", scores={"P_EXPR": 0.4, "P_AU": 0.5, "P_VA": 0.5},
                  seed=seed, dataset=_on_data(a))
    for seed in (0, 1):
        write_run(tmp_path, "quick", "uni-au", tasks="au", scores={"P_AU": 0.5}, seed=seed, dataset=_on_data(None))
    # as training writes them: the data are not part of the configuration id (the fixture hashes them in)
    first = json.loads((tmp_path / "quick" / "uni-va" / "seed-0" / "config.json").read_text())["config_id"]
    other = tmp_path / "quick" / "uni-va" / "seed-2" / "config.json"
    other.write_text(json.dumps({**json.loads(other.read_text()), "config_id": first}))
    report = _report(tmp_path)
    configs = {c.key: c for c in report.configurations}
    uni_va = [c for c in configs.values() if c.name == "uni-va"]
    assert sorted((c.data_fingerprint, c.seeds) for c in uni_va) == [(a, [0, 1]), (b, [2])]
    assert sorted(c.key for c in uni_va) == ["quick/uni-va", "quick/uni-va (data bbbbbbbb)"]
    by_task = {c.task: c for c in report.comparisons if c.multi == "quick/multi"}
    assert by_task["va"].uni is not None and configs[by_task["va"].uni].data_fingerprint == a
    assert by_task["va"].uni_estimate.n_seeds[0] == 2               # only the seeds on the same data
    assert by_task["expr"].verdict == "unmatched" and f"other data (data {b}, not data {a})" in by_task["expr"].reason
    assert by_task["au"].verdict == "unmatched" and "no data fingerprint" in by_task["au"].reason
    notes = report.data_notes
    assert any(n.startswith("quick/uni-va: seeds not pooled") and f"quick/uni-va/seed-2 on data {b}" in n
               and f"quick/uni-va/seed-0, quick/uni-va/seed-1 on data {a}" in n for n in notes), notes
    assert any("2 run records carry no data fingerprint" in n and "quick/uni-au/seed-0" in n for n in notes), notes
    assert all(f"Data: {n}" in study.report_text(report) for n in notes)
    assert report.as_dict()["data_notes"] == notes


def test_records_without_a_fingerprint_still_pool_with_each_other(tmp_path):
    """Older records (no fingerprint) keep working as before, with the caveat said once."""
    write_seeded_study(tmp_path, seeds=(0, 1))
    report = _report(tmp_path)
    assert all(c.data_fingerprint is None for c in report.configurations)
    assert next(c for c in report.configurations if c.key == "quick/multi").seeds == [0, 1]
    assert any(c.uni for c in report.comparisons)
    assert len(report.data_notes) == 1 and "carry no data fingerprint" in report.data_notes[0]
    assert report.data_notes[0] in study.report_markdown(report)


def test_runs_from_two_machines_on_the_same_data_pool_and_match(tmp_path):
    """The machine a run came from is recorded, not part of its configuration: seeds from two
    machines pool (same data) and a multi-task run matches a uni-task run from another machine."""
    for seed in (0, 1):
        for name, tasks, scores in (("uni-va", "va", {"P_VA": 0.5}),
                                    ("multi", "expr,au,va", {"P_EXPR": 0.4, "P_AU": 0.5, "P_VA": 0.5})):
            run = write_run(tmp_path, "quick", name, tasks=tasks, scores=scores, seed=seed,
                            dataset=_on_data("e" * 16))
            config = json.loads((run / "config.json").read_text())
            config["machine"] = {"cpu": f"CPU {name} {seed}", "torch_cpu_capability": ["AVX2", "AVX512"][seed]}
            (run / "config.json").write_text(json.dumps(config))
    report = _report(tmp_path)
    assert {c.key: c.seeds for c in report.configurations} == {"quick/uni-va": [0, 1], "quick/multi": [0, 1]}
    va = next(c for c in report.comparisons if c.task == "va")
    assert va.uni == "quick/uni-va" and report.data_notes == []
# ----------------------------------------------------------------------------- factor comparisons and interactions

def _seeded(root, name, tasks="expr", skill=0.5, seeds=(0, 1, 2), **kw):
    keys = tasks.split(",")
    scores = {study.TASK_METRICS[t]: skill for t in keys} if isinstance(skill, float) else skill
    steps = kw.pop("steps", 100)
    for s in seeds:
        write_run(root, "quick", name, tasks=tasks, scores=scores, seed=s, steps=steps, **kw)


def _configs(root):
    return {c.key: c for c in study.group_configurations(study.index_runs(read_runs(root)[0]))}


def test_a_pair_differing_in_two_factors_is_never_matched(tmp_path):
    _seeded(tmp_path, "uni-expr")
    _seeded(tmp_path, "uni-expr-aug-strong", augment="strong")
    _seeded(tmp_path, "uni-expr-aug-strong-focal", augment="strong", losses={"expr": "focal"})
    _seeded(tmp_path, "uni-expr-focal-long", losses={"expr": "focal"}, steps=200)
    configs = _configs(tmp_path)
    base, strong, both = (configs[f"quick/{n}"] for n in ("uni-expr", "uni-expr-aug-strong",
                                                           "uni-expr-aug-strong-focal"))
    assert study.option_differences(base, strong) == ["augment"]
    assert study.option_differences(base, both) == ["augment", "losses"]
    pairs = {(f, a.key, b.key) for f, a, b in study.factor_pairs(list(configs.values()))}
    assert pairs == {("augment", "quick/uni-expr", "quick/uni-expr-aug-strong"),
                     ("losses", "quick/uni-expr-aug-strong", "quick/uni-expr-aug-strong-focal")}
    report = _report(tmp_path)
    for f in report.factors:
        assert study.option_differences(configs[f.reference], configs[f.variant]) == [f.factor]
    assert not any({f.reference, f.variant} == {"quick/uni-expr", "quick/uni-expr-aug-strong-focal"}
                   for f in report.factors)
    assert report.not_compared == {
        "quick/uni-expr-focal-long": "the nearest, quick/uni-expr, differs in budget_steps and losses"}


def test_a_new_option_becomes_a_table_column_and_filter(tmp_path):
    _seeded(tmp_path, "multi", tasks="expr,au,va", seeds=(0,))
    _seeded(tmp_path, "multi-mixup", tasks="expr,au,va", seeds=(0,), options={"mixup": 0.2})
    table = study.study_table(study.index_runs(read_runs(tmp_path)[0]))
    assert study.varying_options(study.index_runs(read_runs(tmp_path)[0])) == ["mixup"]
    assert dict(zip(table["run"], table[study.OPTION_PREFIX + "mixup"], strict=True)) == {
        "quick/multi/seed-0": "none", "quick/multi-mixup/seed-0": "0.2"}
    assert study.filter_options(table)[study.OPTION_PREFIX + "mixup"] == ["0.2", "none"]


def test_the_temporal_options_are_one_column_and_filter(tmp_path):
    write_temporal_study(tmp_path, kinds=("smooth", "gru-causal"), seeds=(0,))
    table = study.study_table(study.index_runs(read_runs(tmp_path)[0]))
    assert study.varying_options(study.index_runs(read_runs(tmp_path)[0])) == ["temporal"]
    assert study.filter_options(table)[study.OPTION_PREFIX + "temporal"] == [
        "gru w16 causal (300 steps)", "none", "smooth w5"]


def test_factors_are_the_options_of_the_training_identity(tmp_path):
    """An option the study never heard of becomes a factor by being in the identity; options left out
    of the identity (machine settings, sync_bn) never make a comparison or stop one."""
    _seeded(tmp_path, "multi", tasks="expr,au,va", options={"threads": 1, "sync_bn": False})
    _seeded(tmp_path, "multi-mixup", tasks="expr,au,va", options={"mixup": 0.2, "threads": 4, "sync_bn": True})
    _seeded(tmp_path, "multi-mixup-more", tasks="expr,au,va", options={"mixup": 0.4, "cutout": 8})
    _seeded(tmp_path, "multi-cutout", tasks="expr,au,va", options={"mixup": 0.4, "cutout": 16})
    _seeded(tmp_path, "multi-threads", tasks="expr,au,va", options={"threads": 8, "workers": 3, "device": "cuda"})
    configs = _configs(tmp_path)
    assert study.option_differences(configs["quick/multi"], configs["quick/multi-threads"]) == []
    assert study.option_differences(configs["quick/multi"], configs["quick/multi-mixup"]) == ["mixup"]
    pairs = {(f, a.key, b.key) for f, a, b in study.factor_pairs(list(configs.values()))}
    assert pairs == {("mixup", "quick/multi", "quick/multi-mixup"),
                     ("cutout", "quick/multi-cutout", "quick/multi-mixup-more")}  # a tie: the shorter name
    from affectmodel.training.config import TrainConfig, config_id
    from affectmodel.training.identity import BUDGET_OPTIONS, IDENTITY_IGNORED, TEMPORAL_OPTIONS, identity_values
    options = {**TrainConfig(temporal="gru").to_dict(), "config_id": "x", "model": {}, "dataset": {}}
    record = RunRecord(tmp_path, options, {"budget_steps": 10})
    # every identity option of TrainConfig is a factor; the budget options are compared as one
    expected = {f for f in TrainConfig.__dataclass_fields__ if f not in IDENTITY_IGNORED} - BUDGET_OPTIONS
    # the temporal options are one factor, "temporal"; a per-frame run's level is "none"
    folded = expected - set(TEMPORAL_OPTIONS) | {"budget_steps", "temporal"}
    assert set(study.configuration_options(record)) == folded
    per_frame = RunRecord(tmp_path, {**options, "temporal": "none"}, {"budget_steps": 10})
    assert set(study.configuration_options(per_frame)) == folded
    assert study.configuration_options(per_frame)["temporal"] == "none"
    # the same values config_id hashes, under torchrun too (a per-process BatchNorm batch is a factor)
    two = TrainConfig(batch_size=64)
    assert identity_values(two.to_dict(), 2)["batchnorm_batch"] == 32 and config_id(two, world_size=2) != config_id(two)
    ddp = RunRecord(tmp_path, {**two.to_dict(), "world_size": 2}, {"budget_steps": 10})
    assert study.configuration_options(ddp)["batchnorm_batch"] == 32


def test_factor_comparison_intervals_and_verdicts(tmp_path):
    """Two configurations that differ only in augmentation, two seeds each (the shape of the hidden
    check): the study command lists the comparison with its interval and a verdict consistent with it."""
    _seeded(tmp_path / "gain", "multi", tasks="expr,au,va", seeds=(0, 1), skill={"P_EXPR": 0.3, "P_AU": 0.5,
                                                                                  "P_VA": 0.5})
    _seeded(tmp_path / "gain", "multi-aug-strong", tasks="expr,au,va", seeds=(0, 1), augment="strong",
            skill={"P_EXPR": 0.95, "P_AU": 0.5, "P_VA": 0.5})
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-m", "affectmodel", "study", str(tmp_path / "gain"), "--json",
                           "--resamples", "300"], capture_output=True, text=True, cwd=root, timeout=300, check=False,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    rows = {f["task"]: f for f in report["factor_comparisons"]}
    assert set(rows) == {"expr", "au", "va"} and report["interactions"] == []
    for f in rows.values():
        assert (f["factor"], f["reference"], f["variant"]) == ("augment", "quick/multi", "quick/multi-aug-strong")
        assert (f["reference_level"], f["variant_level"]) == ("light", "strong")
        d = f["difference"]
        assert d["n_seeds"] == [2, 2] and d["low"] <= d["mean"] <= d["high"] and f["n_seeds"] == {
            "reference": 2, "variant": 2}
        excludes = d["low"] > 0 or d["high"] < 0
        assert f["verdict"] == (("helped" if d["mean"] > 0 else "hurt") if excludes else "no clear difference")
        assert f["verdict_text"].startswith(f["verdict"])
    assert rows["expr"]["verdict"] == "helped" and rows["expr"]["difference"]["mean"] > 0.2
    # with one seed a side: figures, no verdict; a side that did not learn: no verdict either
    _seeded(tmp_path / "one", "uni-va", tasks="va", seeds=(0,))
    _seeded(tmp_path / "one", "uni-va-mse", tasks="va", seeds=(0,), losses={"va": "mse"}, skill=0.9)
    (one,) = _report(tmp_path / "one").factors
    assert one.verdict == "undecided" and "one seed" in one.verdict_text
    _seeded(tmp_path / "dead", "uni-va", tasks="va", skill=0.0)
    _seeded(tmp_path / "dead", "uni-va-mse", tasks="va", losses={"va": "mse"}, skill=0.6)
    (dead,) = _report(tmp_path / "dead").factors
    assert dead.difference.low > 0 and dead.verdict == "undecided"
    assert dead.verdict_text.startswith("undecided: quick/uni-va did not learn (P_VA")


def test_several_levels_are_each_compared_with_the_suites_baseline(tmp_path):
    for name, aug in (("multi", "light"), ("multi-aug-none", "none"), ("multi-aug-strong", "strong")):
        _seeded(tmp_path, name, tasks="expr,au,va", augment=aug, seeds=(0, 1))
    _seeded(tmp_path, "multi-uncertainty", tasks="expr,au,va", weighting="uncertainty", seeds=(0, 1))
    pairs = [(f, a.key, b.key) for f, a, b in study.factor_pairs(list(_configs(tmp_path).values()))]
    assert pairs == [("augment", "quick/multi", "quick/multi-aug-none"),
                     ("augment", "quick/multi", "quick/multi-aug-strong"),
                     ("weighting", "quick/multi", "quick/multi-uncertainty")]


def test_interaction_is_a_difference_of_matched_differences(tmp_path):
    """multi/uni-expr at light and at strong augmentation: does strong augmentation change the
    multi-task effect on expressions? Only expressions have their four configurations."""
    _seeded(tmp_path, "uni-expr")
    _seeded(tmp_path, "uni-au", tasks="au")
    _seeded(tmp_path, "multi", tasks="expr,au,va")
    _seeded(tmp_path, "uni-expr-aug-strong", augment="strong")
    _seeded(tmp_path, "multi-aug-strong", tasks="expr,au,va", augment="strong",
            skill={"P_EXPR": 0.8, "P_AU": 0.5, "P_VA": 0.5})
    _seeded(tmp_path, "multi-uncertainty", tasks="expr,au,va", weighting="uncertainty")
    report = _report(tmp_path)
    (i,) = report.interactions  # weighting does not concern the uni-task side: no interaction
    assert (i.factor, i.task, i.reference_level, i.variant_level) == ("augment", "expr", "light", "strong")
    assert (i.reference_multi, i.reference_uni, i.variant_multi, i.variant_uni) == (
        "quick/multi", "quick/uni-expr", "quick/multi-aug-strong", "quick/uni-expr-aug-strong")
    assert i.difference.mean == pytest.approx(i.variant_effect.mean - i.reference_effect.mean)
    assert i.difference.n_seeds == (3, 3, 3, 3)
    assert i.verdict == "helped" and i.difference.low > 0
    # the multi-task effect at the reference level is the uni- vs multi-task comparison itself
    main = next(c for c in report.comparisons if c.multi == "quick/multi" and c.task == "expr")
    assert i.reference_effect.mean == pytest.approx(main.difference.mean)
    text = study.report_markdown(report)
    assert "### Factor comparisons" in text and "### Interactions" in text and i.verdict_text in text
    for f in report.factors:
        assert f.verdict_text in text
    console = study.report_text(report)
    assert "multi-task effect × augment: strong vs light" in console


# ------------------------------------------------------------------ the temporal factor

def _pairs(root):
    return {(f, a.name, b.name) for f, a, b in study.factor_pairs(list(_configs(root).values()))}


def test_temporal_runs_differ_from_their_trunk_and_smoothing_in_one_factor(tmp_path):
    """A temporal run is its trunk's configuration plus one factor, "temporal" (kind, window, direction,
    its own steps): each temporal module is compared with smoothing on the same trunk, smoothing with the
    per-frame model, whatever the window, direction and steps."""
    write_temporal_study(tmp_path, tasks=("expr", "multi"))
    configs = _configs(tmp_path)
    gru, smooth, per_frame = (configs[f"temporal/{n}-expr"] for n in ("gru", "smooth", "per-frame"))
    assert study.option_differences(gru, smooth) == ["temporal"]
    assert study.option_differences(gru, per_frame) == ["temporal"]
    assert study.configuration_options(next(iter(gru.runs.values())))["budget_steps"] == 150  # the trunk's
    assert study.factor_level(gru, "temporal") == "gru w16 bidirectional (300 steps)"
    assert study.factor_level(smooth, "temporal") == "smooth w5" and study.factor_level(per_frame, "temporal") == "none"
    expected = set()
    for t in ("expr", "multi"):
        expected |= {("temporal", f"smooth-{t}", f"{k}-{t}") for k in ("gru", "gru-causal", "conv")}
        expected.add(("temporal", f"per-frame-{t}", f"smooth-{t}"))
    assert _pairs(tmp_path) == expected
    # the multi-task effect is measured at each temporal level, and across levels (interactions)
    multi = configs["temporal/gru-multi"]
    assert {t: u.name for t, (u, _) in study.find_matches(multi, list(configs.values())).items() if u} == {
        "expr": "gru-expr"}
    found = {(i.factor, i.variant_level, i.reference_level) for i in study.interactions(list(configs.values()),
                                                                                        resamples=20)}
    assert ("temporal", "conv w16 bidirectional (300 steps)", "smooth w5") in found


def test_a_temporal_pair_that_differs_in_anything_else_is_never_matched(tmp_path):
    """Two trunks that differ in augmentation: a GRU on one is never compared with smoothing on the other
    (two factors), but each GRU is compared with smoothing on its own trunk, and the two GRUs with each
    other on the augmentation of their trunks. Options the temporal module was trained with that its
    trunk was not (a learning rate) belong to its temporal level."""
    write_temporal_study(tmp_path, kinds=("smooth", "gru"), options={"gru-expr": {"lr": 0.003}})
    strong = {"augment": "strong"}
    write_temporal_study(tmp_path, kinds=("smooth", "gru"), suffix="-strong",
                         options={f"{n}-expr-strong": strong for n in ("per-frame", "smooth", "gru")})
    configs = _configs(tmp_path)
    assert study.option_differences(configs["temporal/gru-expr-strong"], configs["temporal/smooth-expr"]) == [
        "augment", "temporal"]
    assert study.factor_level(configs["temporal/gru-expr"], "temporal") == "gru w16 bidirectional (300 steps, lr=0.003)"
    pairs = _pairs(tmp_path)
    assert pairs == {
        ("temporal", "per-frame-expr", "smooth-expr"), ("temporal", "smooth-expr", "gru-expr"),
        ("temporal", "per-frame-expr-strong", "smooth-expr-strong"),
        ("temporal", "smooth-expr-strong", "gru-expr-strong"),
        ("augment", "per-frame-expr", "per-frame-expr-strong"), ("augment", "smooth-expr", "smooth-expr-strong")}
    # gru-expr (lr 0.003 for its module) and gru-expr-strong differ in augment and in temporal: no pair
    for f in _report(tmp_path, resamples=20).factors:
        assert study.option_differences(configs[f.reference], configs[f.variant]) == [f.factor]


def test_a_temporal_module_on_another_tasks_trunk_is_not_its_own_trunks_comparison(tmp_path):
    """Expressions read over time from the multi-task trunk differ from the uni-task expression runs in
    the trunk's tasks (trunk_tasks) as well: compared with smoothing on that same trunk only."""
    from affectmodel.training.identity import TRUNK_TASKS, fold_temporal

    trunk = {"tasks": ["expr", "au", "va"], "init": "random", "budget_steps": 150, "lr": 0.001,
             "losses": {"expr": "ce", "au": "bce", "va": "ccc"}}
    own = {"tasks": ["expr"], "init": "run:per-frame-multi", "budget_steps": 450, "lr": 0.001,
           "losses": {"expr": "ce"}, "temporal": "gru", "window": 16, "causal": True}
    folded = fold_temporal(own, 300, trunk)
    assert folded[TRUNK_TASKS] == ["expr", "au", "va"] and folded["init"] == "random"
    assert folded["temporal"] == "gru w16 causal (300 steps)"  # the expression loss is the trunk's: no recipe


def test_temporal_verdicts_in_the_study_command(tmp_path):
    """A GRU far better than smoothing is 'helped' with its interval; a convolution as good as smoothing
    gets no verdict of its own; the per-frame model is the reference of smoothing."""
    write_temporal_study(tmp_path, kinds=("smooth", "gru", "conv"), seeds=(0, 1),
                         skill={"per-frame-expr": 0.4, "smooth-expr": 0.4, "gru-expr": 0.9, "conv-expr": 0.4})
    out = subprocess.run([sys.executable, "-m", "affectmodel", "study", str(tmp_path), "--json"],
                         capture_output=True, text=True, check=True).stdout
    factors = {(f["variant"], f["reference"]): f for f in json.loads(out)["factor_comparisons"]}
    gru = factors[("temporal/gru-expr", "temporal/smooth-expr")]
    assert gru["factor"] == "temporal" and gru["verdict"] == "helped" and gru["difference"]["low"] > 0
    assert gru["variant_level"] == "gru w16 bidirectional (300 steps)" and gru["reference_level"] == "smooth w5"
    assert factors[("temporal/conv-expr", "temporal/smooth-expr")]["verdict"] != "helped"
    assert ("temporal/smooth-expr", "temporal/per-frame-expr") in factors
    text = subprocess.run([sys.executable, "-m", "affectmodel", "study", str(tmp_path)],
                          capture_output=True, text=True, check=True).stdout
    assert "temporal: gru w16 bidirectional (300 steps) vs smooth w5" in text
