"""ResNet-18 uni/multi-task model: outputs, save and the round trip through the model loader (offline)."""
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from affectmodel.hub.loading import load_model
from affectmodel.model import AffectModel, CheckpointError, ModelConfig

SIZE = 32  # small inputs keep the tests fast; the trunk is size-agnostic


def images(n=2):
    return torch.randn(n, 3, SIZE, SIZE)


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


@pytest.mark.parametrize("bound", ["clamp", "tanh"])
def test_va_is_bounded(bound):
    model = AffectModel(ModelConfig(tasks=["va"], va_bound=bound)).eval()
    with torch.no_grad():
        model.heads["va"].weight.mul_(1000)
        model.heads["va"].bias.fill_(50)
        out = model(images(4) * 100)["va"]
    assert out.min() >= -1 and out.max() <= 1
    assert out.abs().max() > 0.99  # saturates, i.e. bounded rather than small by chance


def test_a_clamped_va_output_keeps_its_gradient_at_the_bound_and_tanh_loses_it():
    grads = {}
    for bound in ("clamp", "tanh"):
        model = AffectModel(ModelConfig(tasks=["va"], input_size=SIZE, va_bound=bound)).train()
        with torch.no_grad():
            model.heads["va"].bias.fill_(4.0)  # every output pushed far past +1
        out = model(images(4))["va"]
        assert out.max() <= 1 + 1e-6 and out.min() > 0.99
        out.sum().backward()
        grads[bound] = model.heads["va"].bias.grad
    assert torch.allclose(grads["clamp"], torch.full((2,), 4.0))  # straight through: d out / d bias = 1
    assert grads["tanh"].abs().max() < 0.05  # 1 - tanh(4)^2 is about 0.001 per image


def test_va_bound_defaults_to_tanh_for_older_model_folders_and_is_validated():
    assert ModelConfig().va_bound == "tanh"  # a config.json without the field: trained with tanh
    assert AffectModel({"tasks": ["va"], "input_size": 32}).config.va_bound == "tanh"
    with pytest.raises(ValueError, match="field 'va_bound' must be one of clamp, tanh"):
        ModelConfig(va_bound="sigmoid")


@pytest.mark.parametrize("bound", ["clamp", "tanh"])
def test_heads_run_in_fp32_under_bf16_autocast(bound):
    model = AffectModel(ModelConfig(tasks=["expr", "au", "va"], va_bound=bound)).eval()
    with torch.no_grad():
        model.heads["va"].weight.mul_(20 if bound == "tanh" else 0.5)  # a few units, where bf16 is coarse
        x = images(8)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
            features = model.features(x)
        assert features.dtype == torch.bfloat16  # the trunk does run in bf16
        raw = model.heads["va"](features.float())
        expected = torch.tanh(raw) if bound == "tanh" else raw.clamp(-1, 1)
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
    loaded = load_model(folder).eval()
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
    loaded = load_model(model.save(tmp_path / "m"))
    assert loaded.config.au_thresholds == [0.25] * 12


def test_strict_load_rejects_mismatched_keys(tmp_path):
    folder = AffectModel(ModelConfig(tasks=["expr"])).save(tmp_path / "m")
    # config says two heads, weights hold one
    cfg = json.loads((folder / "config.json").read_text())
    cfg["tasks"] = ["expr", "au"]
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"do not match its config \(tasks expr, au\): missing heads\.au"):
        load_model(folder)
    # an unexpected extra tensor
    folder2 = AffectModel(ModelConfig(tasks=["expr"])).save(tmp_path / "m2")
    state = load_file(str(folder2 / "model.safetensors"))
    state["heads.extra.weight"] = torch.zeros(2, 2)
    save_file(state, str(folder2 / "model.safetensors"))
    with pytest.raises(CheckpointError):
        load_model(folder2)


def test_load_missing_files(tmp_path):
    (tmp_path / "config.json").write_text('{"tasks": ["expr"]}')
    with pytest.raises(CheckpointError, match="has no model.safetensors"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="not an affectmodel model config"):
        load_model(tmp_path)
