"""Trunk initialisation (affectmodel/initialisation.py): weights files, model and run folders,
ImageNet offline (nothing is downloaded)."""
import urllib.error

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from affectmodel.initialisation import build_model
from affectmodel.model import AffectModel, CheckpointError, ModelConfig


def trunk_equal(a: AffectModel, b: AffectModel) -> bool:
    sa, sb = a.trunk.state_dict(), b.trunk.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


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
