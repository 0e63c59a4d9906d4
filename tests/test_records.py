"""affectmodel.records: reading run folders, completeness, factors."""
import json

import pytest

from affectmodel.records import (
    HeadHealth,
    RunRecord,
    RunRecordError,
    collapsed_heads,
    find_runs,
    is_complete,
    non_finite_metrics,
    read_run,
    read_runs,
    run_factors,
    run_health,
)


def _run(root, name, tasks=("expr", "au", "va"), **config):
    run = root / "suite" / name
    (run / "model").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"tasks": list(tasks), **config}))
    (run / "metrics.json").write_text(json.dumps({"tasks": list(tasks), "P_EXPR": 0.3,
                                                  "dataset": {"name": "synthetic-affect", "synthetic": True}}))
    (run / "history.csv").write_text("epoch,lr,train_loss,val_P_EXPR\n0,0.001,2.5,0.2\n1,0.0005,2.0,0.3\n")
    return run


def test_read_run_parses_all_three_files(tmp_path):
    run = read_run(_run(tmp_path, "multi"))
    assert run.name == "multi" and run.suite == "suite" and run.synthetic is True
    assert run.tasks == ["expr", "au", "va"] and run.metrics["P_EXPR"] == 0.3
    assert run.history == [{"epoch": 0, "lr": 0.001, "train_loss": 2.5, "val_P_EXPR": 0.2},
                           {"epoch": 1, "lr": 0.0005, "train_loss": 2.0, "val_P_EXPR": 0.3}]


def test_completeness_needs_metrics_and_weights(tmp_path):
    run = _run(tmp_path, "uni", tasks=("au",))
    assert not is_complete(run)
    (run / "model" / "model.safetensors").write_bytes(b"x")
    assert is_complete(run)
    (run / "metrics.json").unlink()
    assert not is_complete(run)


def test_broken_records_are_reported_and_others_still_read(tmp_path):
    _run(tmp_path, "good")
    bad = _run(tmp_path, "bad")
    (bad / "metrics.json").write_text("{not json")
    history = _run(tmp_path, "bad-history")
    (history / "history.csv").write_text("epoch,lr\n0,abc\n")
    records, errors = read_runs(tmp_path)
    assert [r.name for r in records] == ["good"]
    assert len(errors) == 2
    assert any("bad/metrics.json is not valid JSON" in e for e in errors)
    assert any("history.csv:2" in e for e in errors)
    assert find_runs(tmp_path / "missing") == []
    with pytest.raises(RunRecordError, match="config.json is missing"):
        (bad / "config.json").unlink()
        read_run(bad)


def test_symlinked_run_folders_are_found_once(tmp_path):
    """``study`` and the dashboard read a folder of links to run folders (they found none)."""
    _run(tmp_path / "elsewhere", "multi")
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "suite").symlink_to(tmp_path / "elsewhere" / "suite")
    (runs / "loop").symlink_to(runs)
    assert find_runs(runs) == [runs / "suite" / "multi"]
    assert [r.name for r in read_runs(runs)[0]] == ["multi"]


def test_run_factors_describe_the_study_design():
    multi = run_factors({"tasks": ["expr", "au", "va"], "init": "runs/quick/uni-au", "pretrained_from": "uni-au",
                         "augment": "strong", "losses": {"expr": "focal", "au": "bce", "va": "ccc"},
                         "weighting": "uncertainty"})
    assert multi == {"tasks": "expr+au+va", "setting": "multi-task", "init": "checkpoint", "pretraining": "uni-au",
                     "augmentation": "strong", "losses": "expr=focal, au=bce, va=ccc", "weighting": "uncertainty",
                     "temporal": "none"}
    uni = run_factors({"tasks": ["va"], "init": "imagenet", "losses": {"va": "mse"}})
    temporal = run_factors({"tasks": ["au"], "temporal": "gru", "window": 16, "causal": True})
    assert temporal["temporal"] == "gru w16 causal"
    assert run_factors({"tasks": ["au"], "temporal": "smooth", "window": 5, "causal": True})["temporal"] == "smooth w5"
    assert uni["setting"] == "uni-task" and uni["init"] == "imagenet" and uni["weighting"] == "-"
    assert uni["pretraining"] == "none" and uni["augmentation"] == "none"


def test_health_is_read_through_one_accessor_and_absent_in_older_records(tmp_path):
    run = _run(tmp_path, "multi")
    metrics = json.loads((run / "metrics.json").read_text())
    assert run_health(read_run(run)) is None and collapsed_heads(read_run(run)) == []
    metrics["health"] = {"va": {"output_spread": 0.004, "saturated_share": 0.97, "constant_share": 0.0,
                                "collapsed": True},
                         "expr": {"output_spread": 0.3, "saturated_share": 0.0, "constant_share": 0.0,
                                  "collapsed": False},
                         "au": {"output_spread": "n/a", "collapsed": "yes"},  # malformed: read leniently
                         "broken": 3}
    (run / "metrics.json").write_text(json.dumps(metrics))
    health = run_health(read_run(run))
    assert health is not None and set(health) == {"va", "expr", "au"}
    assert health["va"] == HeadHealth(0.004, 0.97, 0.0, True)
    assert health["au"].collapsed is False and health["au"].output_spread != health["au"].output_spread  # NaN
    assert collapsed_heads(read_run(run)) == ["va"]


def test_non_finite_metrics_names_nan_infinite_and_null_figures(tmp_path):
    record = RunRecord(tmp_path, {}, {"P_EXPR": float("nan"), "P_AU": 0.4, "P_VA": None, "P_MTL": float("inf"),
                                      "ccc_valence": True})
    assert non_finite_metrics(record) == ["P_EXPR", "P_VA", "P_MTL", "ccc_valence"]
    assert non_finite_metrics(RunRecord(tmp_path, {}, {"P_AU": 0.4})) == []


def test_data_fingerprint_and_machine_are_read_from_either_file_or_are_absent(tmp_path):
    older = read_run(_run(tmp_path, "older"))
    assert older.data_fingerprint is None and older.machine == {}  # written before records carried them
    run = read_run(_run(tmp_path, "newer", dataset={"fingerprint": {"digest": "c" * 16, "version": 1}},
                        machine={"cpu": "x", "threads": 1}))
    assert run.data_fingerprint == "c" * 16 and run.machine == {"cpu": "x", "threads": 1}   # config.json's
    run.metrics["dataset"]["fingerprint"] = "d" * 16
    run.metrics["machine"] = {"cpu": "y"}
    assert run.data_fingerprint == "d" * 16 and run.machine == {"cpu": "y"}   # metrics.json's wins: where it ended
