"""Temporal modules (affectmodel.temporal) inside the model, and their config fields."""
import pytest
import torch

from affectmodel.model import AffectModel, ModelConfig
from affectmodel.temporal import TemporalConv, TemporalGRU, anchor_position, build_temporal

F = 32


@pytest.mark.parametrize("kind", ["conv", "gru"])
@pytest.mark.parametrize("causal", [True, False])
def test_a_fresh_module_is_the_identity_and_causal_ones_never_look_ahead(kind, causal):
    module = build_temporal(kind, F, causal)
    assert isinstance(module, (TemporalConv, TemporalGRU))
    z = torch.randn(2, 9, F)
    assert torch.equal(module(z), z)  # zero-initialised output layer: the per-frame model
    torch.nn.init.normal_(module.out.weight)
    later = z.clone()
    later[:, 6:] = torch.randn(2, 3, F)  # change the future of frame 5
    changed = (module(z) - module(later)).abs().amax(dim=2)
    assert bool((changed[:, :6] < 1e-5).all()) == causal
    assert causal or (changed[:, 4:6] > 1e-3).all()  # bidirectional: the frames just before see it
    assert (changed[:, 6:] > 0).all()


def test_build_and_anchor():
    assert build_temporal("none", F, False) is None and build_temporal("smooth", F, True) is None
    assert isinstance(build_temporal("conv", F, True), TemporalConv)
    assert isinstance(build_temporal("gru", F, False), TemporalGRU)
    with pytest.raises(ValueError, match="unknown temporal"):
        build_temporal("lstm", F, False)
    assert anchor_position(16, True) == 15 and anchor_position(16, False) == 8


def test_model_config_fields_are_checked():
    assert ModelConfig(temporal="none", window=9, causal=True).window == 1  # per-frame: no window
    with pytest.raises(ValueError, match="'temporal'"):
        ModelConfig(temporal="lstm")
    with pytest.raises(ValueError, match="'window'"):
        ModelConfig(temporal="gru", window=10_000)
    with pytest.raises(ValueError, match="'causal'"):
        ModelConfig(temporal="gru", window=8, causal="yes")  # type: ignore[arg-type]


def test_temporal_model_reads_windows_and_single_images():
    model = AffectModel(ModelConfig(tasks=["expr", "va"], input_size=32, temporal="gru", window=4)).eval()
    per_frame = AffectModel(ModelConfig(tasks=["expr", "va"], input_size=32)).eval()
    per_frame.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("temporal.")})
    clips = torch.randn(2, 4, 3, 32, 32)
    with torch.no_grad():
        out = model(clips)
        assert out["expr"].shape == (2, 4, 8) and out["va"].shape == (2, 4, 2)
        # untrained temporal module: exactly the per-frame model, frame by frame
        flat = per_frame(clips.flatten(0, 1))
        assert torch.allclose(out["expr"].flatten(0, 1), flat["expr"], atol=1e-5)
        assert model(clips[0])["va"].shape == (4, 2)  # images: each read alone
    assert model.num_parameters() > per_frame.num_parameters()
