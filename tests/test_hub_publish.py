"""Tests for affectmodel.hub.publish (the ``publish`` command).

Nothing is uploaded anywhere. Dry runs are checked file by file. The upload itself is tested by
replacing ``HfApi.create_repo`` / ``create_branch`` / ``upload_folder`` with recorders (monkeypatch)
and asserting on what they receive: repo id, repo type, privacy, branch, the folder's contents and
that exactly one commit is made. Hub refusals and "no network" use a fake Hub and a closed port on
127.0.0.1; offline mode patches ``huggingface_hub.constants.HF_HUB_OFFLINE``. ``HF_TOKEN`` is set to
a sentinel that must never appear in files, output or error messages.
"""
from __future__ import annotations

import json
import types

import pytest
import torch
from hub_fixtures import SENTINEL_TOKEN, FakeHub, closed_port, make_run, no_retry_wait, use_endpoint
from huggingface_hub import HfApi, ModelCard
from huggingface_hub.errors import HfHubHTTPError
from safetensors import safe_open

from affectmodel import cli, load_model
from affectmodel.hub import publish
from affectmodel.hub.publish import PublishError, publish_run
from affectmodel.model import AffectModel, ModelConfig

PUBLISHED_FILES = ["README.md", "config.json", "history.csv", "metrics.json", "model.safetensors",
                   "training_config.json"]


@pytest.fixture
def token(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SENTINEL_TOKEN)
    return SENTINEL_TOKEN


class Recorder:
    """Replaces HfApi's create_repo/create_branch/upload_folder; keeps the calls and the uploaded
    folder's contents at the moment of the commit."""

    def __init__(self, monkeypatch, fail_with: Exception | None = None):
        self.calls: list[tuple[str, dict]] = []
        self.uploaded: dict[str, bytes] = {}
        recorder = self

        def create_repo(api, repo_id, **kwargs):
            recorder.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))
            if fail_with is not None:
                raise fail_with

        def create_branch(api, repo_id, **kwargs):
            recorder.calls.append(("create_branch", {"repo_id": repo_id, **kwargs}))

        def upload_folder(api, **kwargs):
            recorder.calls.append(("upload_folder", kwargs))
            from pathlib import Path
            folder = Path(kwargs["folder_path"])
            recorder.uploaded = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
            return types.SimpleNamespace(commit_url=f"https://hub.example/{kwargs['repo_id']}/commit/0123abcd")

        monkeypatch.setattr(HfApi, "create_repo", create_repo)
        monkeypatch.setattr(HfApi, "create_branch", create_branch)
        monkeypatch.setattr(HfApi, "upload_folder", upload_folder)

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


def _all_text(folder) -> str:
    return "".join(p.read_bytes().decode("latin-1") for p in folder.rglob("*") if p.is_file())


# ------------------------------------------------------------------ dry run

def test_dry_run_writes_the_folder_and_uploads_nothing(tmp_path, monkeypatch):
    """File list, safetensors header, configs, metrics and card; no HfApi call; the run's own
    metrics.json is not marked as published."""
    recorder = Recorder(monkeypatch)
    run = make_run(tmp_path)
    before = (run / "metrics.json").read_text()
    result = publish_run(run, "me/affect-mtl", dry_run_dir=tmp_path / "out")
    folder = tmp_path / "out"
    assert result.uploaded is False and recorder.calls == []
    assert sorted(p.name for p in folder.iterdir()) == PUBLISHED_FILES == result.files
    assert (run / "metrics.json").read_text() == before

    model = load_model(run / "model")
    with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
        assert set(f.keys()) == set(model.state_dict())
        assert torch.equal(f.get_tensor("heads.expr.weight"), model.state_dict()["heads.expr.weight"])
    assert json.loads((folder / "config.json").read_text()) == json.loads((run / "model" / "config.json").read_text())
    training = json.loads((folder / "training_config.json").read_text())
    original = json.loads((run / "config.json").read_text())
    # Local directories are reduced to their last component; everything else is published as is.
    assert training["data"] == "data" and training["out"] == run.name
    assert "/home/someone" not in (folder / "training_config.json").read_text()
    assert {k: v for k, v in training.items() if k not in ("data", "out")} == \
        {k: v for k, v in original.items() if k not in ("data", "out")}
    assert (folder / "history.csv").read_bytes() == (run / "history.csv").read_bytes()
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics == {**json.loads(before), "hub_repo": "me/affect-mtl"}

    card = ModelCard.load(folder / "README.md")
    got = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert got == {"P_EXPR": metrics["P_EXPR"], "P_AU": metrics["P_AU"], "P_VA": metrics["P_VA"],
                   "P_MTL": metrics["P_MTL"], "CCC_valence": metrics["ccc_valence"],
                   "CCC_arousal": metrics["ccc_arousal"]}


def test_dry_run_can_be_repeated_but_never_overwrites_other_files(tmp_path):
    run = make_run(tmp_path)
    out = tmp_path / "out"
    publish_run(run, "me/affect", dry_run_dir=out)
    publish_run(run, "me/affect", dry_run_dir=out)  # same files: replaced
    assert sorted(p.name for p in out.iterdir()) == PUBLISHED_FILES
    other = tmp_path / "precious"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(PublishError, match="holds other files \\(notes.txt\\)"):
        publish_run(run, "me/affect", dry_run_dir=other)
    assert [p.name for p in other.iterdir()] == ["notes.txt"]


def test_interrupted_publish_leaves_nothing_half_written(tmp_path, monkeypatch):
    """A failure (here Ctrl-C while copying history.csv) removes the partial folder."""
    run = make_run(tmp_path)
    real_copy = publish.shutil.copyfile

    def copy_then_interrupt(src, dst, *args, **kwargs):
        if str(src).endswith("history.csv"):
            raise KeyboardInterrupt
        return real_copy(src, dst, *args, **kwargs)

    monkeypatch.setattr(publish.shutil, "copyfile", copy_then_interrupt)
    parent = tmp_path / "staging"
    parent.mkdir()
    with pytest.raises(KeyboardInterrupt):
        publish_run(run, "me/affect", dry_run_dir=parent / "out")
    assert list(parent.iterdir()) == []


# ------------------------------------------------------------------ upload (HfApi replaced)

def test_upload_creates_repo_and_makes_one_commit(tmp_path, monkeypatch, token):
    """HfApi.create_repo/upload_folder are recorders: one create_repo (exist_ok, private as asked),
    exactly one upload_folder of the assembled folder, then hub_repo is recorded in the run."""
    recorder = Recorder(monkeypatch)
    run = make_run(tmp_path)
    result = publish_run(run, "me/affect-mtl", private=True)
    assert recorder.names() == ["create_repo", "upload_folder"]
    create = recorder.calls[0][1]
    assert create["repo_id"] == "me/affect-mtl" and create["repo_type"] == "model"
    assert create["private"] is True and create["exist_ok"] is True
    upload = recorder.calls[1][1]
    assert upload["repo_id"] == "me/affect-mtl" and upload["repo_type"] == "model" and upload["revision"] is None
    assert sorted(recorder.uploaded) == PUBLISHED_FILES
    assert recorder.uploaded["model.safetensors"] == (run / "model" / "model.safetensors").read_bytes()
    assert result.uploaded and result.commit_url.endswith("/commit/0123abcd")
    assert json.loads((run / "metrics.json").read_text())["hub_repo"] == "me/affect-mtl"
    assert not any(token in v.decode("latin-1") for v in recorder.uploaded.values())
    assert "token" not in create and "token" not in upload  # taken from HF_TOKEN by huggingface_hub


def test_upload_to_a_branch(tmp_path, monkeypatch):
    recorder = Recorder(monkeypatch)
    run = make_run(tmp_path)
    publish_run(run, "me/affect-mtl", revision="ablation-1")
    assert recorder.names() == ["create_repo", "create_branch", "upload_folder"]
    assert recorder.calls[1][1]["branch"] == "ablation-1" and recorder.calls[1][1]["exist_ok"] is True
    assert recorder.calls[2][1]["revision"] == "ablation-1"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["hub_repo"] == "me/affect-mtl" and metrics["hub_revision"] == "ablation-1"


def test_failed_upload_does_not_mark_the_run_and_hides_the_token(tmp_path, monkeypatch, token, capsys):
    """The Hub's error text echoes the token: the error message and CLI output do not."""
    import httpx2
    response = httpx2.Response(500, request=httpx2.Request("POST", "https://hub.example/api/repos/create"))
    Recorder(monkeypatch, fail_with=HfHubHTTPError(f"500 Server Error: bad token {token}", response=response))
    run = make_run(tmp_path)
    before = (run / "metrics.json").read_text()
    with pytest.raises(PublishError) as info:
        publish_run(run, "me/affect-mtl")
    assert "HTTP 500" in str(info.value) and token not in str(info.value) and "***" in str(info.value)
    assert (run / "metrics.json").read_text() == before
    assert cli.main(["publish", str(run), "--repo", "me/affect-mtl"]) == 2
    out = capsys.readouterr()
    assert "error: the Hub refused to create the repository me/affect-mtl (HTTP 500)" in out.err
    assert token not in out.out + out.err


# ------------------------------------------------------------------ real HfApi, no network

def test_refused_credentials_are_explained_without_the_token(tmp_path, monkeypatch, token):
    """A fake Hub answers 401 and echoes the Authorization header: the message says to log in."""
    run = make_run(tmp_path)
    with FakeHub({}) as hub:
        use_endpoint(monkeypatch, hub.url, tmp_path / "cache")
        with pytest.raises(PublishError, match="HTTP 401.*hf auth login.*HF_TOKEN") as info:
            publish_run(run, "me/affect-mtl")
        assert ("POST", "/api/repos/create") in hub.requests
        hub.post_status = 400
        with pytest.raises(PublishError, match="HTTP 400") as info400:
            publish_run(run, "me/affect-mtl")
    for message in (str(info.value), str(info400.value)):
        assert token not in message


def test_offline_and_no_network(tmp_path, monkeypatch, token):
    """HF_HUB_OFFLINE (patched) and a closed loopback port: readable errors, nothing recorded."""
    run = make_run(tmp_path)
    before = (run / "metrics.json").read_text()
    use_endpoint(monkeypatch, f"http://127.0.0.1:{closed_port()}", tmp_path / "cache", offline=True)
    with pytest.raises(PublishError, match="offline mode is on .*--dry-run"):
        publish_run(run, "me/affect-mtl")
    port = closed_port()
    use_endpoint(monkeypatch, f"http://127.0.0.1:{port}", tmp_path / "cache", offline=False)
    no_retry_wait(monkeypatch)
    with pytest.raises(PublishError, match=f"could not reach the Hub at http://127.0.0.1:{port}") as info:
        publish_run(run, "me/affect-mtl")
    assert token not in str(info.value)
    assert (run / "metrics.json").read_text() == before


# ------------------------------------------------------------------ input errors and the command

def test_bad_input_is_refused_before_any_upload(tmp_path, monkeypatch):
    recorder = Recorder(monkeypatch)
    run = make_run(tmp_path)
    with pytest.raises(PublishError, match="not a Hub repository id of the form OWNER/NAME"):
        publish_run(run, "just-a-name")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        publish_run(tmp_path / "missing", "me/x")
    # weights that do not fit the saved config are never published
    config = json.loads((run / "model" / "config.json").read_text())
    (run / "model" / "config.json").write_text(json.dumps({**config, "tasks": ["expr"]}))
    with pytest.raises(ValueError, match="do not match its config"):
        publish_run(run, "me/x")
    (run / "model" / "model.safetensors").unlink()
    with pytest.raises(PublishError, match="run is incomplete"):
        publish_run(run, "me/x")
    assert recorder.calls == []


def test_cli_dry_run_prints_listing_and_no_token(tmp_path, monkeypatch, capsys, token):
    run = make_run(tmp_path)
    out = tmp_path / "dry"
    assert cli.main(["publish", str(run), "--repo", "me/affect-mtl", "--dry-run", str(out)]) == 0
    printed = capsys.readouterr()
    assert "nothing was uploaded" in printed.out
    for name in PUBLISHED_FILES:
        assert f"  {name}" in printed.out
    assert token not in printed.out + printed.err
    assert token not in _all_text(out)
    uni = make_run(tmp_path / "uni", tasks=("va",), model=AffectModel(ModelConfig(tasks=["va"], input_size=32)))
    assert cli.main(["publish", str(uni), "--repo", "me/x", "--dry-run", str(tmp_path / "uni-dry")]) == 0


# ------------------------------------------------------------------ ONNX

def test_a_verified_onnx_graph_is_published_and_a_stale_one_is_not(tmp_path, exported_model):
    import shutil

    run = make_run(tmp_path, input_size=64)
    for name in ("model.safetensors", "config.json", "model.onnx", "model.int8.onnx", "onnx.json"):
        shutil.copyfile(exported_model / name, run / "model" / name)
    result = publish_run(run, "me/affect-mtl", dry_run_dir=tmp_path / "out")
    assert sorted(result.files) == sorted([*PUBLISHED_FILES, "model.int8.onnx", "model.onnx", "onnx.json"])
    # the published folder itself runs on ONNX Runtime (the record's hashes hold for the copies)
    from affectmodel.inference.engines import open_engine
    assert open_engine(tmp_path / "out", "onnx-int8").name == "onnx-int8"
    with open(run / "model" / "model.onnx", "ab") as f:  # changed after its check: not published
        f.write(b"\0")
    result = publish_run(run, "me/affect-mtl", dry_run_dir=tmp_path / "out2")
    assert sorted(result.files) == sorted([*PUBLISHED_FILES, "model.int8.onnx", "onnx.json"])


def test_publish_onnx_exports_a_run_without_a_graph(tmp_path, exported_model, monkeypatch, capsys):
    import shutil

    from affectmodel.inference import export

    run = make_run(tmp_path, input_size=64)
    for name in ("model.safetensors", "config.json"):
        shutil.copyfile(exported_model / name, run / "model" / name)
    # the slow tracing replaced by the same weights' exported graph; the check runs for real
    monkeypatch.setattr(export, "export_fp32", lambda model, path: shutil.copyfile(exported_model / "model.onnx", path))
    assert cli.main(["publish", str(run), "--repo", "me/affect-mtl", "--dry-run", str(tmp_path / "out"),
                     "--onnx"]) == 0
    assert "model.onnx" in capsys.readouterr().out
    assert (run / "model" / "model.onnx").is_file()  # exported into the run, reused next time
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([*PUBLISHED_FILES, "model.onnx",
                                                                           "onnx.json"])


def test_a_published_suite_keeps_its_intervals_over_videos(tmp_path, monkeypatch):
    """A 2-seed uni/multi suite published with --dry-run and read back by `study` (and from a Hub
    repository, as the dashboard reads it): the same intervals over videos as from the run folders,
    from per-video sums; no val_predictions.npz is published."""
    import shutil

    from hub_fixtures import folder_files
    from study_fixtures import write_run

    from affectmodel import study
    from affectmodel.hub.results import read_hub_runs
    from affectmodel.records import read_runs

    runs = tmp_path / "runs"
    skill = {"P_EXPR": 0.5, "P_AU": 0.5, "P_VA": 0.5}
    suite = {"multi": ("expr,au,va", skill), "uni-va": ("va", {"P_VA": 0.5})}
    published = {}
    for name, (tasks, scores) in suite.items():
        weights = None
        for seed in (0, 1):
            run = write_run(runs, "quick", name, tasks=tasks, scores=scores, seed=seed, steps=100)
            if weights is None:  # one small model per configuration (publish loads it strictly)
                weights = AffectModel(ModelConfig(tasks=tasks.split(","), input_size=32)).save(run / "model")
            else:
                shutil.copytree(weights, run / "model")
            out = tmp_path / "published" / "quick" / name / f"seed-{seed}"
            assert cli.main(["publish", str(run), "--repo", f"me/{name}-{seed}", "--dry-run", str(out)]) == 0
            published[f"me/{name}-{seed}"] = out
    files = sorted(p.name for p in (tmp_path / "published").rglob("*") if p.is_file())
    assert "val_predictions.npz" not in files and files.count("val_summary.json") == 4
    card = (published["me/multi-0"] / "README.md").read_text()
    assert "val_summary.json" in card and "not published" in card and "frame" in card

    def comparisons(records, **kw) -> dict:
        report = study.study_report(study.index_runs(records, **kw))
        return {(c.multi.split("/")[-1], c.task): c for c in report.comparisons}

    local = comparisons(read_runs(runs)[0])
    dry = comparisons(read_runs(tmp_path / "published")[0])
    served = {repo: {"main": folder_files(folder)} for repo, folder in published.items()}
    with FakeHub(served) as hub:
        use_endpoint(monkeypatch, hub.url, tmp_path / "hub-cache")
        records, errors = read_hub_runs(list(served))
    assert errors == []
    hub = comparisons(records, source="hub")
    assert set(local) == set(dry) == set(hub) == {("multi", "expr"), ("multi", "au"), ("multi", "va")}
    for key, c in local.items():
        for other in (dry[key], hub[key]):
            for side in ("multi_estimate", "uni_estimate", "difference"):
                mine, theirs = getattr(c, side), getattr(other, side)
                assert (mine is None) == (theirs is None), (key, side)
                if mine is not None:
                    assert theirs.as_dict() == mine.as_dict(), (key, side)
            assert other.verdict_text == c.verdict_text
    va = local[("multi", "va")].difference
    assert va.n_videos == 10 and va.video_se > 0 and va.n_seeds == (2, 2)  # intervals over videos, not seeds only
    # and the `study` command on the published folders prints the run folders' figures
    assert cli.main(["study", str(tmp_path / "published"), "--json"]) == 0
