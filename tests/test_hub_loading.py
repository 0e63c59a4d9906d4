"""Tests for affectmodel.hub.loading: one loader for model folders, run folders and Hub repo ids.

No test reaches the network. Hub downloads run for real against a local fake Hub on 127.0.0.1
(tests/hub_fixtures.py) and a temporary cache; "no network" is a closed loopback port; offline
mode is ``huggingface_hub.constants.HF_HUB_OFFLINE`` patched (it is read at import time).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hub_fixtures import FakeHub, closed_port, folder_files, make_run, no_retry_wait, use_endpoint

import affectmodel
from affectmodel.hub.loading import (
    InvalidModelError,
    MissingFileError,
    ModelSourceError,
    OfflineError,
    RepoNotFoundError,
    SourceNotFoundError,
    WeightsMismatchError,
    load_model,
    model_info,
    resolve_source,
)
from affectmodel.hub.publish import publish_run
from affectmodel.model import AffectModel, CheckpointError, ModelConfig


def _outputs(model: AffectModel, images: torch.Tensor) -> dict[str, torch.Tensor]:
    model.eval()
    with torch.no_grad():
        return model(images)


def _assert_same_weights(a: AffectModel, b: AffectModel) -> None:
    """Same configuration and bit-identical tensors (cheap; used where outputs were checked once)."""
    assert a.config == b.config
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def _assert_same_outputs(a: AffectModel, b: AffectModel, size: int = 32) -> None:
    """Identical predictions on random images, for every task head."""
    images = torch.randn(2, 3, size, size)
    out_a, out_b = _outputs(a, images), _outputs(b, images)
    assert out_a.keys() == out_b.keys() == set(a.tasks)
    for key in out_a:
        assert torch.equal(out_a[key], out_b[key]), key


def _model(tasks=("expr", "au", "va"), seed: int = 1) -> AffectModel:
    torch.manual_seed(seed)
    return AffectModel(ModelConfig(tasks=list(tasks), input_size=32)).eval()


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A run of a known model and its dry-run publish folder (shared: tests only read them)."""
    root = tmp_path_factory.mktemp("published")
    model = _model()
    run = make_run(root, model=model)
    folder = root / "publish"
    publish_run(run, "me/affect-mtl", dry_run_dir=folder)
    return model, run, folder


def test_loads_model_folder_run_folder_and_publish_folder_with_identical_outputs(published):
    """The three local forms give the saved network back exactly (and in eval mode)."""
    model, run, folder = published
    _assert_same_outputs(model, load_model(folder))
    for source in (run, run / "model", folder, str(folder)):
        loaded = load_model(source)
        assert not loaded.training
        assert loaded.tasks == model.tasks
        _assert_same_weights(model, loaded)
    assert resolve_source(run).kind == "run"
    assert resolve_source(folder).kind == "folder"


def test_publish_folder_round_trips_through_from_pretrained(published):
    """The uploaded folder is what PyTorchModelHubMixin.from_pretrained reads (strictly)."""
    model, _, folder = published
    loaded = AffectModel.from_pretrained(str(folder), strict=True)
    _assert_same_outputs(model, loaded)
    _assert_same_weights(model, affectmodel.load_model(folder))  # the package-level wrapper


def test_loads_by_repo_id_then_from_cache_offline(published, tmp_path, monkeypatch):
    """Download from a fake Hub, then load again with the network gone: from the cache, both
    with HF_HUB_OFFLINE and with local_files_only."""
    model, _, folder = published
    cache = tmp_path / "hub-cache"
    with FakeHub({"me/affect-mtl": {"main": folder_files(folder)}}) as hub:
        use_endpoint(monkeypatch, hub.url, cache)
        _assert_same_outputs(model, load_model("me/affect-mtl"))
        assert ("GET", "/me/affect-mtl/resolve/main/model.safetensors") in hub.requests
    assert any(cache.glob("models--me--affect-mtl/snapshots/*/model.safetensors"))

    use_endpoint(monkeypatch, f"http://127.0.0.1:{closed_port()}", cache, offline=True)
    _assert_same_weights(model, load_model("me/affect-mtl"))
    use_endpoint(monkeypatch, f"http://127.0.0.1:{closed_port()}", cache, offline=False)
    _assert_same_weights(model, load_model("me/affect-mtl", local_files_only=True))


def test_revision_selects_the_branch(published, tmp_path, monkeypatch):
    """revision="v2" loads the weights of that branch, not main's."""
    model, _, folder = published
    other = _model(seed=2)
    other_folder = tmp_path / "v2"
    publish_run(make_run(tmp_path / "other", model=other), "me/affect-mtl", dry_run_dir=other_folder)
    repo = {"main": folder_files(folder), "v2": folder_files(other_folder)}
    with FakeHub({"me/affect-mtl": repo}) as hub:
        use_endpoint(monkeypatch, hub.url, tmp_path / "cache")
        _assert_same_weights(other, load_model("me/affect-mtl", revision="v2"))
        _assert_same_weights(model, load_model("me/affect-mtl"))


# ------------------------------------------------------------------ errors

def test_missing_path_that_is_no_repo_id(tmp_path):
    for source in (tmp_path / "nope", str(tmp_path / "nope"), "runs/suite/missing-run", "not a repo"):
        with pytest.raises(SourceNotFoundError, match="does not exist.*not a Hub repository id"):
            load_model(source)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(SourceNotFoundError, match="is a file"):
        load_model(tmp_path / "file.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingFileError, match="neither a model folder"):
        load_model(tmp_path / "empty")


def test_hub_errors_are_specific(published, tmp_path, monkeypatch):
    """Unknown repository, unknown revision, and a repository without weights."""
    _, _, folder = published
    files = folder_files(folder)
    repos = {"me/affect-mtl": {"main": files},
             "me/no-weights": {"main": {"config.json": files["config.json"], "README.md": files["README.md"]}}}
    with FakeHub(repos) as hub:
        use_endpoint(monkeypatch, hub.url, tmp_path / "cache")
        with pytest.raises(RepoNotFoundError, match="me/unknown not found"):
            load_model("me/unknown")
        with pytest.raises(RepoNotFoundError, match="revision 'v9' not found"):
            load_model("me/affect-mtl", revision="v9")
        with pytest.raises(MissingFileError, match="model.safetensors is missing in Hub repository me/no-weights"):
            load_model("me/no-weights")


def test_offline_and_not_cached(tmp_path, monkeypatch):
    """HF_HUB_OFFLINE (patched) or local_files_only with an empty cache: a readable OfflineError."""
    use_endpoint(monkeypatch, f"http://127.0.0.1:{closed_port()}", tmp_path / "cache", offline=True)
    with pytest.raises(OfflineError, match="offline mode .*not in the local cache") as info:
        load_model("me/affect-mtl")
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, CheckpointError)
    use_endpoint(monkeypatch, f"http://127.0.0.1:{closed_port()}", tmp_path / "cache", offline=False)
    with pytest.raises(OfflineError, match="local_files_only=True and config.json .*not in the local cache"):
        load_model("me/affect-mtl", local_files_only=True)


def test_no_network_and_not_cached(tmp_path, monkeypatch):
    """A closed loopback port as the endpoint: "no network", naming the endpoint."""
    port = closed_port()
    use_endpoint(monkeypatch, f"http://127.0.0.1:{port}", tmp_path / "cache")
    no_retry_wait(monkeypatch)
    with pytest.raises(OfflineError, match=f"no network: could not reach http://127.0.0.1:{port}"):
        load_model("me/affect-mtl")


def test_keys_that_do_not_match_the_config(published, tmp_path):
    """Strict loading: extra heads or a different head size are refused with the keys named."""
    _, _, folder = published
    config = json.loads((folder / "config.json").read_text())
    fewer = tmp_path / "fewer-tasks"
    fewer.mkdir()
    (fewer / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    (fewer / "config.json").write_text(json.dumps({**config, "tasks": ["expr"]}))
    with pytest.raises(WeightsMismatchError, match=r"unexpected heads\.au\.bias, heads\.au\.weight"):
        load_model(fewer)
    other_space = tmp_path / "seven-classes"
    other_space.mkdir()
    (other_space / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    (other_space / "config.json").write_text(json.dumps({**config, "expression_space": "abaw7"}))
    with pytest.raises(InvalidModelError, match="field 'labels' for expr does not match"):
        load_model(other_space)  # the stale label list of the old space is caught first
    del config["labels"]
    (other_space / "config.json").write_text(json.dumps({**config, "expression_space": "abaw7"}))
    with pytest.raises(WeightsMismatchError, match=r"heads\.expr\.weight \[8, 512\] \(expected \[7, 512\]\)"):
        load_model(other_space)  # refused from the file's header, before reading any tensor


def test_unreadable_weights_and_configs(published, tmp_path):
    _, _, folder = published
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((folder / "config.json").read_text())
    (broken / "model.safetensors").write_bytes(b"\x00\x01not safetensors")
    with pytest.raises(ModelSourceError, match="cannot read weights"):
        load_model(broken)
    (broken / "config.json").write_text('{"architectures": ["Bert"]}')
    with pytest.raises(ModelSourceError, match="not an affectmodel model config"):
        load_model(broken)
    with pytest.raises(ModelSourceError, match="only applies to Hub repositories"):
        load_model(folder, revision="main")


class _Marker:
    """Unpickling this object would create a file: proof that a loader unpickled it."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_never_unpickles_legacy_bin(published, tmp_path):
    """pytorch_model.bin is read with weights_only=True: tensors load, pickled objects are refused."""
    model, _, folder = published
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "config.json").write_text((folder / "config.json").read_text())
    torch.save(model.state_dict(), legacy / "pytorch_model.bin")
    _assert_same_weights(model, load_model(legacy))

    marker = tmp_path / "unpickled"
    torch.save({"trunk.conv1.weight": _Marker(str(marker))}, legacy / "pytorch_model.bin")
    with pytest.raises(ModelSourceError, match="cannot read weights"):
        load_model(legacy)
    assert not marker.exists()


# ------------------------------------------------------------------ model_info

def test_model_info_for_run_folder_and_hub(published, tmp_path, monkeypatch):
    """Metrics come from metrics.json; without it, from the card's model-index."""
    _, run, folder = published
    expected = {k: v for k, v in json.loads((run / "metrics.json").read_text()).items()
                if k in ("P_EXPR", "P_AU", "P_VA", "P_MTL", "ccc_valence", "ccc_arousal")}
    info = model_info(run)
    assert info["kind"] == "run" and info["tasks"] == ["expr", "au", "va"]
    assert info["synthetic"] is True and info["dataset"] == "synthetic-affect"
    assert info["metrics"] == expected
    assert model_info(folder)["metrics"] == expected

    card_only = tmp_path / "card-only"
    card_only.mkdir()
    for name in ("model.safetensors", "config.json", "README.md"):
        (card_only / name).write_bytes((folder / name).read_bytes())
    info = model_info(card_only)
    assert info["kind"] == "folder" and info["metrics"] == expected and info["synthetic"] is True

    with FakeHub({"me/affect-mtl": {"main": folder_files(folder)}}) as hub:
        use_endpoint(monkeypatch, hub.url, tmp_path / "cache")
        info = model_info("me/affect-mtl")
    assert info["kind"] == "hub" and info["metrics"] == expected and info["hub_repo"] == "me/affect-mtl"
    assert info["card_url"].endswith("/me/affect-mtl")


def test_model_info_offline_with_only_the_model_cached(published, tmp_path, monkeypatch):
    """load_model caches config and weights only; model_info offline then still answers, without
    metrics, instead of failing on the uncached metrics.json."""
    _, _, folder = published
    cache = tmp_path / "cache"
    with FakeHub({"me/affect-mtl": {"main": folder_files(folder)}}) as hub:
        use_endpoint(monkeypatch, hub.url, cache)
        load_model("me/affect-mtl")
    use_endpoint(monkeypatch, f"http://127.0.0.1:{closed_port()}", cache, offline=True)
    info = model_info("me/affect-mtl")
    assert info["kind"] == "hub" and info["tasks"] == ["expr", "au", "va"] and info["metrics"] == {}


# ------------------------------------------------------------------ hostile model folders

HOSTILE_CONFIGS = {  # field -> (value, what the one-line error says)
    "input_size=20000": ("input_size", 20000, r"field 'input_size' must be .* \[16, 1024\], got 20000"),
    "input_size=0": ("input_size", 0, "field 'input_size'"),
    "input_size=-5": ("input_size", -5, "field 'input_size'"),
    "input_size=text": ("input_size", "112", "field 'input_size'"),
    "input_size=true": ("input_size", True, "field 'input_size'"),
    "mean=nan": ("mean", [float("nan"), 0.4, 0.4], "field 'mean': value 0 must be a finite number"),
    "mean=short": ("mean", [0.5], "field 'mean' needs a list of 3 numbers"),
    "std=zeros": ("std", [0, 0, 0], "field 'std': value 0 must be a finite number"),
    "std=inf": ("std", [0.2, float("inf"), 0.2], "field 'std': value 1"),
    "std=text": ("std", "0.2", "field 'std' needs a list of 3 numbers"),
    "au_thresholds=nulls": ("au_thresholds", [None] * 12, "field 'au_thresholds': value 0 .* got None"),
    "au_thresholds=text": ("au_thresholds", ["high"] * 12, "field 'au_thresholds': value 0 .* got 'high'"),
    "au_thresholds=2": ("au_thresholds", [2.0] * 12, r"field 'au_thresholds': value 0 must be .* in \[0, 1\]"),
    "au_thresholds=3 values": ("au_thresholds", [0.5] * 3, "field 'au_thresholds' needs a list of 12"),
    "dropout=1.5": ("dropout", 1.5, "field 'dropout'"),
    "backbone=vit": ("backbone", "vit", "field 'backbone': unknown backbone 'vit'"),
    "tasks=unknown": ("tasks", ["pose"], "unknown task 'pose'"),
    "tasks=empty": ("tasks", [], "at least one task"),
    "tasks=number": ("tasks", 3, "field 'tasks' must be a list"),
    "expression_space=number": ("expression_space", 7, "field 'expression_space'"),
    "labels=renamed": ("labels", {"expr": ["a"] * 8}, "field 'labels' for expr does not match"),
    "labels=text": ("labels", "expr", "field 'labels' must map"),
}


@pytest.fixture(scope="module")
def good_folder(tmp_path_factory):
    from media import small_model_dir

    return small_model_dir(tmp_path_factory.mktemp("good"), input_size=32)


def _hostile_copy(good: Path, dest: Path, **changes) -> Path:
    dest.mkdir()
    (dest / "model.safetensors").write_bytes((good / "model.safetensors").read_bytes())
    config = json.loads((good / "config.json").read_text())
    (dest / "config.json").write_text(json.dumps({**config, **changes}))
    return dest


@pytest.mark.parametrize("case", sorted(HOSTILE_CONFIGS))
def test_every_config_field_is_bounded_with_a_one_line_error(good_folder, tmp_path, case):
    import resource

    field, value, message = HOSTILE_CONFIGS[case]
    folder = _hostile_copy(good_folder, tmp_path / "hostile", **{field: value})
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(InvalidModelError, match=message) as info:
        load_model(folder)
    said = str(info.value)
    assert "\n" not in said and str(folder / "config.json") in said  # names the folder and the field
    # refused before allocating anything large (input_size 20000 once took 23.7 GB)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB


def test_every_loader_validates(good_folder, tmp_path):
    """The library (module and package entry), training initialisation and the predictor share the loader."""
    import affectmodel
    from affectmodel.inference import Predictor
    from affectmodel.initialisation import build_model
    from affectmodel.model import ModelConfig

    folder = _hostile_copy(good_folder, tmp_path / "m", input_size=20000)
    run = tmp_path / "run"
    run.mkdir()
    _hostile_copy(good_folder, run / "model", std=[0, 0, 0])
    for load in (load_model, affectmodel.load_model, lambda f: build_model(ModelConfig(), init=f),
                 lambda f: Predictor(f, detector=None)):
        for source in (folder, run):
            with pytest.raises(InvalidModelError, match="field '(input_size|std)'"):
                load(source)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused(good_folder, tmp_path, bad):
    from safetensors.torch import load_file, save_file

    folder = _hostile_copy(good_folder, tmp_path / "nan")
    state = load_file(str(folder / "model.safetensors"))
    state["heads.expr.bias"][3] = bad
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(InvalidModelError, match=r"not finite: heads\.expr\.bias holds NaN or inf"):
        load_model(folder)


def test_an_oversized_tensor_is_refused_from_the_header(good_folder, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = _hostile_copy(good_folder, tmp_path / "big")
    state = load_file(str(folder / "model.safetensors"))
    state["heads.expr.weight"] = torch.zeros(8, 4096)
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(WeightsMismatchError, match=r"heads\.expr\.weight \[8, 4096\] \(expected \[8, 512\]\)"):
        load_model(folder)


def test_default_names_the_demos_default_model_once_built(tmp_path, monkeypatch):
    """``default`` resolves to the run folder the demo's first launch builds ($AFFECT_DEFAULT_MODEL_DIR
    here); before it is built the error says how to build it; a folder named ``default`` wins."""
    from affectmodel.records import DEFAULT_DIR_ENV

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(DEFAULT_DIR_ENV, str(tmp_path / "cache" / "default-model"))
    with pytest.raises(MissingFileError, match="default model is not built yet.*demo.default_model"):
        resolve_source("default")
    run = make_run(tmp_path, name="built")
    monkeypatch.setenv(DEFAULT_DIR_ENV, str(run))
    assert resolve_source("default") == resolve_source(str(run))
    assert tuple(load_model("default").tasks) == ("expr", "au", "va")
    # built from an older suites/demo.toml: named, never used silently
    from affectmodel.training.default_model import DEFAULT_SUITE

    (run / "suite.toml").write_text(DEFAULT_SUITE.read_text().replace("[suite]", "[suite]\nold_recipe = true", 1))
    with pytest.raises(MissingFileError, match=r"built from an older suites/demo\.toml.*--rebuild"):
        resolve_source("default")
    (run / "suite.toml").write_text(DEFAULT_SUITE.read_text())
    assert resolve_source("default") == resolve_source(str(run))
    local = make_run(tmp_path / "here", name="x", tasks=("au",))
    local.rename(tmp_path / "default")
    assert resolve_source("default").location == "default" and tuple(load_model("default").tasks) == ("au",)
