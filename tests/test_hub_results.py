"""Tests for affectmodel.hub.results: the dashboard reads published runs back from model repos.

Repositories are served by a local fake Hub on 127.0.0.1 (tests/hub_fixtures.py) from folders
that ``publish_run`` wrote in dry-run mode; then the same reads run offline from the cache
(``huggingface_hub.constants.HF_HUB_OFFLINE`` patched). No network is used.
"""
from __future__ import annotations

import json

import pytest
from hub_fixtures import FakeHub, closed_port, folder_files, make_run, use_endpoint

from affectmodel.hub.publish import public_training_config, publish_run
from affectmodel.hub.results import HubRunRecord, read_hub_runs
from affectmodel.records import read_run, run_factors


@pytest.fixture
def repos(tmp_path):
    """Two published runs (multi-task, uni-task), a repo without metrics.json, one with bad JSON."""
    served, runs = {}, {}
    for name, tasks in (("affect-mtl", ("expr", "au", "va")), ("affect-expr", ("expr",))):
        run = make_run(tmp_path / name, name=name, tasks=tasks)
        publish_run(run, f"me/{name}", dry_run_dir=tmp_path / "out" / name)
        served[f"me/{name}"] = {"main": folder_files(tmp_path / "out" / name)}
        runs[f"me/{name}"] = read_run(run)
    weights_only = folder_files(tmp_path / "out" / "affect-mtl")
    served["me/no-metrics"] = {"main": {k: v for k, v in weights_only.items() if k != "metrics.json"}}
    served["me/bad-json"] = {"main": {**weights_only, "metrics.json": b"{not json"}}
    return served, runs


def test_reads_published_runs_then_offline_from_cache(repos, tmp_path, monkeypatch):
    served, runs = repos
    ids = ["me/affect-mtl", "me/affect-expr"]
    with FakeHub(served) as hub:
        use_endpoint(monkeypatch, hub.url, tmp_path / "cache")
        records, errors = read_hub_runs(ids)
    assert errors == []
    for record, repo_id in zip(records, ids, strict=True):
        local = runs[repo_id]
        assert isinstance(record, HubRunRecord)
        assert record.metrics == {**local.metrics, "hub_repo": repo_id}
        # Published configs carry local directories as their last component only (public_training_config).
        assert record.config == public_training_config(local.config)
        assert run_factors(record.config) == run_factors(local.config)
        assert record.history == local.history and len(record.history) == 2
        assert record.name == repo_id.split("/")[1] and record.suite == "hub:me"
        assert record.tasks == local.tasks and record.synthetic is True
        assert (record.path / "metrics.json").is_file()  # the snapshot folder in the Hub cache

    use_endpoint(monkeypatch, f"http://127.0.0.1:{closed_port()}", tmp_path / "cache", offline=True)
    cached, errors = read_hub_runs(ids)
    assert errors == [] and [r.metrics for r in cached] == [r.metrics for r in records]


def test_one_readable_message_per_failing_repo(repos, tmp_path, monkeypatch):
    served, _ = repos
    with FakeHub(served) as hub:
        use_endpoint(monkeypatch, hub.url, tmp_path / "cache")
        records, errors = read_hub_runs(["me/affect-mtl", "me/unknown", "me/no-metrics", "me/bad-json",
                                         "not a repo", "  "])
    assert [r.repo_id for r in records] == ["me/affect-mtl"]
    assert len(errors) == 4
    assert "me/unknown not found" in errors[0]
    assert errors[1].startswith("me/no-metrics: no metrics.json")
    assert errors[2].startswith("me/bad-json: metrics.json is not valid JSON")
    assert "'not a repo' is not a Hub repository id" in errors[3]


def test_offline_and_not_cached_is_reported_per_repo(tmp_path, monkeypatch):
    use_endpoint(monkeypatch, f"http://127.0.0.1:{closed_port()}", tmp_path / "cache", offline=True)
    records, errors = read_hub_runs(["me/affect-mtl"])
    assert records == [] and len(errors) == 1
    assert "offline mode" in errors[0] and "not in the local cache" in errors[0] and "me/affect-mtl" in errors[0]


def test_revision_is_recorded(repos, tmp_path, monkeypatch):
    served, _ = repos
    served["me/affect-mtl"]["v2"] = served["me/affect-mtl"]["main"]
    with FakeHub(served) as hub:
        use_endpoint(monkeypatch, hub.url, tmp_path / "cache")
        records, errors = read_hub_runs(["me/affect-mtl"], revision="v2")
    assert errors == [] and records[0].metrics["hub_revision"] == "v2" and records[0].revision == "v2"
    assert json.loads((records[0].path / "training_config.json").read_text())["tasks"] == ["expr", "au", "va"]
