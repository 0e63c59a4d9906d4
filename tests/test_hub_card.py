"""Tests for affectmodel.hub.card: model cards carry every task metric in model-index (parsed
back by ``huggingface_hub.ModelCard.load``), label spaces from affectmodel.tasks, the training
setup, and the responsible-use sections. Cards are written to local files only (no Hub calls)."""
from __future__ import annotations

import json

import pytest
from hub_fixtures import make_run
from huggingface_hub import ModelCard

from affectmodel.hub.card import build_model_card, eval_results, write_model_card
from affectmodel.hub.model_index import metrics_from_card
from affectmodel.model import AffectModel, ModelConfig
from affectmodel.records import read_run
from affectmodel.tasks import ABAW8, AU_NAMES, VA_NAMES

CARD_NAMES = {"P_EXPR": "P_EXPR", "P_AU": "P_AU", "P_VA": "P_VA", "P_MTL": "P_MTL",
              "ccc_valence": "CCC_valence", "ccc_arousal": "CCC_arousal"}


def _card_and_reloaded(run_dir, tmp_path, repo_id="me/affect"):
    card = build_model_card(read_run(run_dir), repo_id)
    path = write_model_card(card, tmp_path / "card" / "README.md")
    return card, ModelCard.load(path)


def _expected(run_dir) -> dict[str, float]:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {CARD_NAMES[k]: metrics[k] for k in CARD_NAMES if k in metrics}


def test_multi_task_card_round_trips_every_metric(tmp_path):
    """Every task metric of the run is in model-index, and ModelCard.load reads the same values."""
    run = make_run(tmp_path)
    card, reloaded = _card_and_reloaded(run, tmp_path)
    expected = _expected(run)
    assert set(expected) == set(CARD_NAMES.values())  # the fixture has all six
    for c in (card, reloaded):
        got = {r.metric_name: r.metric_value for r in c.data.eval_results}
        assert got == expected
        assert {r.dataset_split for r in c.data.eval_results} == {"validation"}
        assert {r.dataset_type for r in c.data.eval_results} == {"synthetic-affect"}
    assert [(r.task_type, r.dataset_config, r.metric_name) for r in reloaded.data.eval_results] == \
        [(r.task_type, r.dataset_config, r.metric_name) for r in card.data.eval_results]
    assert reloaded.data.library_name == "affectmodel" and reloaded.data.license == "mit"
    values, dataset = metrics_from_card(reloaded)
    assert values == {k: v for k, v in json.loads((run / "metrics.json").read_text()).items() if k in CARD_NAMES}
    assert dataset == {"name": "synthetic-affect", "split": "validation", "synthetic": True}


def test_synthetic_run_says_so_at_the_top(tmp_path):
    card, _ = _card_and_reloaded(make_run(tmp_path), tmp_path)
    first_paragraphs = card.text.strip().split("\n\n")[:2]
    assert first_paragraphs[0] == "# affect"
    assert "synthetic" in first_paragraphs[1].lower() and "not real people" in first_paragraphs[1]
    assert "synthetic-data" in card.data.tags
    assert "not comparable" in card.text


def test_real_data_card_has_no_synthetic_notice(tmp_path):
    card, reloaded = _card_and_reloaded(make_run(tmp_path, synthetic=False), tmp_path)
    assert "synthetic" not in card.text.lower()
    assert "synthetic-data" not in (card.data.tags or [])
    assert {r.dataset_name for r in reloaded.data.eval_results} == {"Aff-Wild2"}
    assert metrics_from_card(reloaded)[1]["synthetic"] is False


def test_uni_task_card(tmp_path):
    """A uni-task expression run: only P_EXPR, labelled uni-task, only the expression outputs."""
    run = make_run(tmp_path, name="expr-only", tasks=("expr",))
    card, reloaded = _card_and_reloaded(run, tmp_path)
    assert [(r.metric_name, r.metric_value) for r in reloaded.data.eval_results] == [("P_EXPR", 0.3125)]
    assert "- Setting: uni-task: trained on expr only" in card.text
    assert "A uni-task facial affect model" in card.text and "trained jointly" not in card.text
    assert "`au`" not in card.text and "`va`" not in card.text


def test_card_documents_labels_input_training_and_use(tmp_path):
    """Label spaces come from affectmodel.tasks; the input size, normalisation, AU thresholds,
    training options, loading code and responsible-use sections are present; local paths are not."""
    thresholds = [round(0.3 + 0.05 * i, 2) for i in range(len(AU_NAMES))]
    model = AffectModel(ModelConfig(input_size=48, au_thresholds=thresholds))
    run = make_run(tmp_path, model=model)
    text = build_model_card(read_run(run), "me/affect-mtl").text
    assert ", ".join(f"{i} {label}" for i, label in enumerate(ABAW8.labels)) in text
    for au, t in zip(AU_NAMES, thresholds, strict=True):
        assert f"{au} " in text and f"(threshold {t:.2f})" in text
    for name in VA_NAMES:
        assert name in text
    assert "48x48" in text and "0.485" in text and "resnet18" in text
    assert '"augment": "light"' in text and '"lr": 0.001' in text and "multi-task" in text
    assert 'load_model("me/affect-mtl")' in text
    for heading in ("## Intended use", "## Limitations", "## Ethical considerations"):
        assert heading in text
    assert "decisions about people" in text and "culture" in text and "uncertain" in text
    assert "/home/someone/private" not in text  # the run's data path stays out of the card


def test_machine_local_options_and_paths_stay_out_of_the_card(tmp_path):
    run = make_run(tmp_path)
    config = json.loads((run / "config.json").read_text())
    config.update(cache="/scratch/someone/frames-112px", workers=7, threads=3, device="cuda:1",
                  dataset={"name": "aff-wild2", "root": "/home/someone/private/data",
                           "frame_cache": "/scratch/someone/frames-112px"})
    (run / "config.json").write_text(json.dumps(config))
    text = build_model_card(read_run(run), "me/affect-mtl").text
    assert "/scratch/someone" not in text and "/home/someone" not in text
    assert '"workers"' not in text and '"threads"' not in text and "cuda:1" not in text
    assert '"name": "aff-wild2"' in text and '"augment": "light"' in text  # the rest is still shown
    assert "No data fingerprint (a record older than data fingerprints)" in text


def test_card_names_the_data_fingerprint_code_and_machine(tmp_path):
    run = make_run(tmp_path)
    config = json.loads((run / "config.json").read_text())
    config.update(code_version="0.1.0+gabc1234", dataset={"name": "synthetic-affect", "fingerprint": {
        "digest": "0123456789abcdef", "version": 1}}, machine={"cpu": "Some CPU", "torch_cpu_capability": "AVX2",
                                                               "threads": 1, "cpu_vector_flags": ["avx2"]})
    (run / "config.json").write_text(json.dumps(config))
    text = build_model_card(read_run(run), "me/affect-mtl").text
    assert "Data fingerprint `0123456789abcdef`" in text and "Code version 0.1.0+gabc1234" in text
    assert "trained on Some CPU · AVX2 · 1 thread" in text
    assert "cpu_vector_flags" not in text  # the full facts stay in the uploaded training_config.json


def test_missing_metrics_are_left_out(tmp_path):
    """Only numeric metrics present in metrics.json become results (no invented zeros)."""
    run = make_run(tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    del metrics["P_AU"], metrics["P_MTL"]
    metrics["ccc_arousal"] = None
    (run / "metrics.json").write_text(json.dumps(metrics))
    names = [r.metric_name for r in eval_results(read_run(run))]
    assert names == ["P_EXPR", "P_VA", "CCC_valence"]


@pytest.mark.parametrize("per_class", ["list", "dict"])
def test_per_class_f1_table(tmp_path, per_class):
    run = make_run(tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    values = [round(0.1 * i, 1) for i in range(len(ABAW8))]
    metrics["per_class_f1"] = values if per_class == "list" else dict(zip(ABAW8.labels, values, strict=True))
    (run / "metrics.json").write_text(json.dumps(metrics))
    text = build_model_card(read_run(run), "me/affect").text
    assert "| " + " | ".join(ABAW8.labels) + " |" in text
    assert "| " + " | ".join(f"{v:.4f}" for v in values) + " |" in text


def test_model_index_reports_the_honest_figures_and_the_card_says_how_they_were_chosen(tmp_path):
    selection = {"split": "development", "videos": 12, "frames": 480}
    run = make_run(tmp_path, predictions=True, extra_metrics={
        "P_AU_tuned_on_validation": 0.99, "P_AU_at_0.5": 0.40, "selection": selection})
    card, reloaded = _card_and_reloaded(run, tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    for c in (card, reloaded):
        got = {r.metric_name: r.metric_value for r in c.data.eval_results}
        assert got["P_AU"] == metrics["P_AU"] and 0.99 not in got.values()
    text = str(reloaded)
    assert "chosen on the development split (12 videos, 480 frames)" in text
    assert "tuned on the validation frames themselves (in-sample, optimistic" in text and "0.9900" in text
    assert "P_AU with every threshold at 0.5: 0.4000" in text
    assert "challenge entries usually tune" in text
    # intervals over validation videos, from the same study functions the dashboard uses
    from affectmodel import study
    est = study.run_estimates(read_run(run))["P_MTL"]
    assert f"{est.low:.3f} to {est.high:.3f}" in text


def test_older_record_card_says_selection_is_unknown(tmp_path):
    card, _ = _card_and_reloaded(make_run(tmp_path), tmp_path)
    assert "does not say where AU thresholds and the best epoch were chosen" in str(card)


def test_card_lists_matched_verdicts_from_the_study_report(tmp_path):
    from study_fixtures import write_seeded_study

    from affectmodel import study
    from affectmodel.records import read_runs
    written = write_seeded_study(tmp_path / "runs", seeds=(0, 1))
    report = study.study_report(study.index_runs(read_runs(tmp_path / "runs")[0]), resamples=100)
    card = build_model_card(read_run(written["multi"][0]), "me/multi", report)
    for c in study.comparisons_of(report, read_run(written["multi"][0])):
        assert c.verdict_text in str(card)
    # and the matched factor comparisons it takes part in (multi-focal vs multi: losses), never a pooled mean
    factors, _ = study.factors_of(report, read_run(written["multi"][0]))
    assert factors and all(f"{f.label} ({f.variant} vs {f.reference}): {f.verdict_text}" in str(card)
                           for f in factors)
    uni = build_model_card(read_run(written["uni-au"][0]), "me/uni-au", report)
    assert "Factor comparisons" not in str(uni)  # uni-au differs from no configuration in one option


def test_a_temporal_models_card_lists_its_comparison_with_smoothing(tmp_path):
    from study_fixtures import write_temporal_study

    from affectmodel import study
    from affectmodel.records import read_runs
    written = write_temporal_study(tmp_path / "runs", kinds=("smooth", "gru-causal"), seeds=(0, 1))
    report = study.study_report(study.index_runs(read_runs(tmp_path / "runs")[0]), resamples=50)
    card = str(build_model_card(read_run(written["gru-causal-expr"][0]), "me/gru-causal", report))
    factors, _ = study.factors_of(report, read_run(written["gru-causal-expr"][0]))
    assert [f.label for f in factors] == ["temporal: gru w16 causal (300 steps) vs smooth w5"]
    assert (f"Expression, temporal: gru w16 causal (300 steps) vs smooth w5 (temporal/gru-causal-expr vs "
            f"temporal/smooth-expr): {factors[0].verdict_text}") in card


def test_card_states_temporal_window_and_causality():
    from affectmodel.hub.card import temporal_text
    from affectmodel.model import ModelConfig

    assert temporal_text(ModelConfig()).startswith("none")
    causal = temporal_text(ModelConfig(temporal="gru", window=16, causal=True))
    assert "16 consecutive frames" in causal and "causal" in causal and "streams" in causal
    both = temporal_text(ModelConfig(temporal="conv", window=8, causal=False))
    assert "bidirectional" in both and "4 frames of delay" in both
    assert "last 5 frames" in temporal_text(ModelConfig(temporal="smooth", window=5, causal=True))
