"""ResNet-18 uni/multi-task model: outputs, save/load, initialisation (all offline)."""
import json
import urllib.error

import pytest
import torch
import torchvision
from safetensors.torch import load_file, save_file

from affectmodel.model import AffectModel, CheckpointError, ModelConfig, build_model

SIZE = 32  # small inputs keep the tests fast; the trunk is size-agnostic


def images(n=2):
    return torch.randn(n, 3, SIZE, SIZE)


def trunk_equal(a: AffectModel, b: AffectModel) -> bool:
    sa, sb = a.trunk.state_dict(), b.trunk.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("tasks,shapes", [
    (["expr"], {"expr": (3, 8)}),
    (["au"], {"au": (3, 12)}),
    (["va"], {"va": (3, 2)}),
    (["expr", "au", "va"], {"expr": (3, 8), "au": (3, 12), "va": (3, 2)}),
    (["va", "AU"], {"au": (3, 12), "va": (3, 2)}),
])
def test_output_shapes(tasks, shapes):
    model = AffectModel(ModelConfig(tasks=tasks)).eval()
    with torch.no_grad():
        out = model(images(3))
    assert {k: tuple(v.shape) for k, v in out.items()} == shapes
    assert model.tasks == tuple(shapes)


def test_expression_space_sets_head_size():
    model = AffectModel(ModelConfig(tasks=["expr"], expression_space="abaw7")).eval()
    assert model(images(1))["expr"].shape == (1, 7)
    assert model.config.labels["expr"][-1] == "Surprise"


def test_va_is_bounded():
    model = AffectModel(ModelConfig(tasks=["va"])).eval()
    with torch.no_grad():
        model.heads["va"].weight.mul_(1000)
        model.heads["va"].bias.fill_(50)
        out = model(images(4) * 100)["va"]
    assert out.min() >= -1 and out.max() <= 1
    assert out.abs().max() > 0.99  # saturates, i.e. bounded by tanh rather than small by chance


def test_heads_run_in_fp32_under_bf16_autocast():
    model = AffectModel(ModelConfig(tasks=["expr", "au", "va"])).eval()
    with torch.no_grad():
        model.heads["va"].weight.mul_(20)  # pre-activations of a few units, where bf16 tanh is coarse
        x = images(8)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
            features = model.features(x)
        assert features.dtype == torch.bfloat16  # the trunk does run in bf16
        expected = torch.tanh(model.heads["va"](features.float()))
    assert all(v.dtype == torch.float32 for v in out.values())
    assert torch.allclose(out["va"], expected, atol=1e-6, rtol=0)
    assert not torch.equal(out["va"], out["va"].bfloat16().float())  # finer than bf16's steps


def test_config_validation():
    with pytest.raises(ValueError, match="backbone"):
        ModelConfig(backbone="vit")
    with pytest.raises(ValueError, match="au_thresholds"):
        ModelConfig(au_thresholds=[0.5] * 3)
    with pytest.raises(ValueError):
        ModelConfig(tasks=[])


def test_save_load_round_trip(tmp_path):
    config = ModelConfig(tasks=["expr", "au", "va"], dropout=0.2, au_thresholds=[0.3 + 0.02 * i for i in range(12)])
    model = AffectModel(config).eval()
    folder = model.save(tmp_path / "m")
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    saved = json.loads((folder / "config.json").read_text())
    assert saved["tasks"] == ["expr", "au", "va"] and saved["labels"]["au"][0] == "AU1"
    loaded = AffectModel.load(folder).eval()
    assert isinstance(loaded, AffectModel)
    assert loaded.config.au_thresholds == pytest.approx(config.au_thresholds)
    torch.testing.assert_close(loaded.au_thresholds(), model.au_thresholds())
    assert loaded.config.dropout == 0.2 and loaded.tasks == model.tasks
    x = images(2)
    with torch.no_grad():
        a, b = model(x), loaded(x)
    for k in a:
        assert torch.equal(a[k], b[k])


def test_thresholds_changed_after_construction_are_saved(tmp_path):
    model = AffectModel(ModelConfig(tasks=["au"]))
    model.config.au_thresholds = [0.25] * 12
    loaded = AffectModel.load(model.save(tmp_path / "m"))
    assert loaded.config.au_thresholds == [0.25] * 12


def test_strict_load_rejects_mismatched_keys(tmp_path):
    folder = AffectModel(ModelConfig(tasks=["expr"])).save(tmp_path / "m")
    # config says two heads, weights hold one
    cfg = json.loads((folder / "config.json").read_text())
    cfg["tasks"] = ["expr", "au"]
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"do not match its config \(tasks expr, au\): missing heads\.au"):
        AffectModel.load(folder)
    # an unexpected extra tensor
    folder2 = AffectModel(ModelConfig(tasks=["expr"])).save(tmp_path / "m2")
    state = load_file(str(folder2 / "model.safetensors"))
    state["heads.extra.weight"] = torch.zeros(2, 2)
    save_file(state, str(folder2 / "model.safetensors"))
    with pytest.raises(CheckpointError):
        AffectModel.load(folder2)


def test_load_missing_files(tmp_path):
    (tmp_path / "config.json").write_text('{"tasks": ["expr"]}')
    with pytest.raises(CheckpointError, match="has no model.safetensors"):
        AffectModel.load(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="not an affectmodel model config"):
        AffectModel.load(tmp_path)


def _torchvision_state():
    torch.manual_seed(123)
    return torchvision.models.resnet18(weights=None).state_dict()


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_init_from_weights_file(tmp_path, suffix):
    state = _torchvision_state()
    path = tmp_path / f"resnet18{suffix}"
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)  # a plain state dict: loads with weights_only=True
    model = build_model(ModelConfig(tasks=["expr", "va"]), init=path)
    trunk = model.trunk.state_dict()
    assert all(torch.equal(trunk[k], state[k]) for k in trunk)
    assert not trunk_equal(model, build_model(ModelConfig(tasks=["expr", "va"])))


def test_weights_file_with_pickled_objects_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": torchvision.models.resnet18(weights=None)}, path)  # needs full unpickling
    with pytest.raises(CheckpointError, match="cannot read weights"):
        build_model(ModelConfig(tasks=["au"]), init=path)


def test_init_from_incompatible_or_missing_file(tmp_path):
    state = _torchvision_state()
    partial = {k: v for k, v in state.items() if not k.startswith("layer4")}
    save_file({k: v.contiguous() for k, v in partial.items()}, str(tmp_path / "partial.safetensors"))
    with pytest.raises(CheckpointError, match="do not fit"):
        build_model(ModelConfig(tasks=["au"]), init=tmp_path / "partial.safetensors")
    with pytest.raises(CheckpointError, match="not found"):
        build_model(ModelConfig(tasks=["au"]), init=tmp_path / "nope.safetensors")


def test_uni_to_multi_task_backbone_transfer(tmp_path):
    uni = AffectModel(ModelConfig(tasks=["expr"]))
    folder = uni.save(tmp_path / "run" / "model")
    for source in (folder, tmp_path / "run"):  # a model folder or a run folder
        multi = build_model(ModelConfig(tasks=["expr", "au", "va"]), init=source)
        assert trunk_equal(uni, multi)
        assert not torch.equal(uni.heads["expr"].weight, multi.heads["expr"].weight)
        assert set(multi.heads) == {"expr", "au", "va"}


def test_imagenet_offline_explains_how_to_supply_weights(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(CheckpointError) as info:
        build_model(ModelConfig(tasks=["expr"]), init="imagenet")
    msg = str(info.value)
    assert "could not be downloaded" in msg and "--init" in msg
    filename = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]
    assert filename in msg and str(tmp_path / "hub" / "checkpoints") in msg

    # Following the advice: a file placed in the hub cache is used without any download.
    state = _torchvision_state()
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True, exist_ok=True)
    torch.save(state, tmp_path / "hub" / "checkpoints" / filename)
    model = build_model(ModelConfig(tasks=["expr"]), init="imagenet")
    assert torch.equal(model.trunk.conv1.weight, state["conv1.weight"])
