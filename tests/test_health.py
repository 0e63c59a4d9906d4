"""Head health: spread, saturated and constant outputs, and the collapse rule."""
import json
import math

import numpy as np
import pytest

from affectmodel.health import (
    CONSTANT_SPREAD,
    FIELDS,
    collapse_warning,
    head_health,
    health_columns,
    health_record,
    health_report,
    health_row,
)
from affectmodel.records import RunRecord, run_health

RNG = np.random.default_rng(0)
VA_NAMES = ["valence", "arousal"]


def _probabilities(n: int, classes: int, scale: float = 1.0) -> np.ndarray:
    logits = RNG.normal(0, scale, size=(n, classes))
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_spread_outputs_are_healthy():
    va = np.clip(RNG.normal(0.1, 0.35, size=(200, 2)), -1, 1)
    check = head_health("va", va, VA_NAMES)
    assert not check.health.collapsed and check.reason == ""
    assert check.health.output_spread == pytest.approx(va.std(axis=0).min())
    assert check.health.saturated_share < 0.05 and check.health.constant_share == 0
    for task, outputs in (("expr", _probabilities(200, 8)), ("au", 1 / (1 + np.exp(-RNG.normal(0, 2, (200, 12)))))):
        assert not head_health(task, outputs).health.collapsed, task


def test_an_arousal_stuck_at_its_bound_is_collapsed():
    # the default model: every arousal output in [0.956, 1.0], valence spread
    va = np.stack([RNG.uniform(-0.8, 0.8, 300), RNG.uniform(0.956, 1.0, 300)], axis=1)
    check = head_health("va", va, VA_NAMES)
    assert check.health.collapsed
    assert check.health.saturated_share == pytest.approx(0.5)  # all arousal values, no valence value
    assert check.health.output_spread < CONSTANT_SPREAD["va"]
    assert "arousal" in check.reason and "valence" not in check.reason


def test_a_unit_at_its_bound_with_some_spread_is_collapsed_too():
    arousal = np.where(np.arange(300) < 210, 0.99, RNG.uniform(-0.5, 0.5, 300))  # spread 0.44, 70 % at +1
    check = head_health("va", np.stack([RNG.uniform(-0.8, 0.8, 300), arousal], axis=1), VA_NAMES)
    assert check.health.collapsed and check.health.constant_share == 0
    assert "arousal at its bound for 70% of frames" in check.reason


def test_constant_outputs_are_collapsed():
    assert head_health("va", np.full((50, 2), 0.3)).health.constant_share == 1.0
    au = 1 / (1 + np.exp(-RNG.normal(0, 2, (100, 12))))
    au[:, 3] = 0.2  # one dead AU unit
    check = head_health("au", au, [f"AU{i}" for i in range(12)])
    assert check.health.collapsed and check.health.constant_share == pytest.approx(1 / 12) and "AU3" in check.reason


def test_one_class_on_top_of_every_frame_is_a_collapsed_expression_head():
    probs = _probabilities(64, 8, scale=0.3)
    probs[:, 2] += 1.0
    probs /= probs.sum(axis=1, keepdims=True)
    check = head_health("expr", probs, [f"class{i}" for i in range(8)])
    assert check.health.collapsed and "class2 on top for all 64 frames" in check.reason
    # too few frames to tell a constant classifier from chance: not judged on the top class
    assert not head_health("expr", probs[:10]).health.collapsed


def test_confident_classifiers_saturate_without_collapsing():
    probs = _probabilities(100, 8, scale=12.0)  # near one-hot, varying classes
    check = head_health("expr", probs)
    assert check.health.saturated_share > 0.5 and not check.health.collapsed


def test_too_few_frames_and_non_finite_outputs():
    few = head_health("va", np.zeros((1, 2)))
    assert math.isnan(few.health.output_spread) and not few.health.collapsed
    bad = head_health("va", np.array([[0.1, np.nan], [0.2, 0.3]]))
    assert bad.health.collapsed and bad.reason == "non-finite outputs"


def test_record_row_and_warning_follow_one_schema():
    outputs = {"expr": _probabilities(40, 8), "va": np.stack([RNG.uniform(-1, 1, 40), np.full(40, 0.99)], axis=1)}
    report = health_report(outputs, ["expr", "va"], {"va": VA_NAMES})
    record = health_record(report)
    assert set(record) == {"expr", "va"} and all(set(v) == set(FIELDS) for v in record.values())
    assert record["va"]["collapsed"] is True and record["expr"]["collapsed"] is False
    json.dumps(record, allow_nan=False)  # metrics.json stays strict JSON
    assert sorted(health_row(report)) == sorted(health_columns(["expr", "va"]))
    assert health_row(report)["dev_va_collapsed"] == 1
    line = collapse_warning(report, "epoch 3") or ""
    assert line.startswith("warning: epoch 3: collapsed head: va (arousal") and "\n" not in line
    assert collapse_warning(health_report({"expr": outputs["expr"]}, ["expr"]), "epoch 3") is None
    # what training writes is what the study reads
    read = run_health(RunRecord(path=None, config={}, metrics={"health": record})) or {}  # type: ignore[arg-type]
    assert read["va"].collapsed and not read["expr"].collapsed
    assert read["va"].output_spread == pytest.approx(record["va"]["output_spread"])


def test_a_nan_figure_is_written_as_null():
    record = health_record(health_report({"va": np.zeros((1, 2))}, ["va"]))
    assert record["va"]["output_spread"] is None and json.dumps(record, allow_nan=False)
