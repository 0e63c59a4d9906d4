"""Preprocessing (shared with inference) and augmentation presets."""
import numpy as np
import pytest
import torch
from PIL import Image

from affectmodel.data.transforms import AUGMENT_PRESETS, build_transform, denormalize, preprocess
from affectmodel.model import ModelConfig


def face(w=40, h=30):
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_preprocess_resizes_and_normalises_from_the_config():
    config = ModelConfig(input_size=24, mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])
    white = Image.new("RGB", (50, 30), (255, 255, 255))
    x = preprocess(white, config)
    assert x.shape == (3, 24, 24) and x.dtype == torch.float32
    assert torch.allclose(x, torch.full_like(x, (1 - 0.5) / 0.25))
    grey = preprocess(Image.new("L", (10, 10), 0), config)  # greyscale input becomes RGB
    assert grey.shape == (3, 24, 24) and torch.allclose(grey, torch.full_like(grey, -2.0))
    assert torch.allclose(denormalize(x, config), torch.ones_like(x))


def test_eval_transform_is_preprocess_for_every_preset():
    config = ModelConfig(input_size=32)
    img = face()
    for preset in AUGMENT_PRESETS:
        assert torch.equal(build_transform(preset, config, train=False)(img), preprocess(img, config))
    assert torch.equal(build_transform("none", config, train=True)(img), preprocess(img, config))


@pytest.mark.parametrize("preset", ["light", "strong"])
def test_training_presets_shape_randomness_and_seed_determinism(preset):
    config = ModelConfig(input_size=32)
    t = build_transform(preset, config, train=True)
    img = face()
    torch.manual_seed(1)
    a = t(img)
    torch.manual_seed(1)
    b = t(img)
    outs = [t(img) for _ in range(5)]
    assert a.shape == (3, 32, 32) and a.dtype == torch.float32
    assert torch.equal(a, b)                                   # same seed, same augmentation
    assert any(not torch.equal(a, o) for o in outs)           # and it does augment
    assert all(torch.isfinite(o).all() for o in outs)


def test_light_preset_includes_a_horizontal_flip():
    config = ModelConfig(input_size=16, mean=[0, 0, 0], std=[1, 1, 1])
    half = np.zeros((16, 16, 3), dtype=np.uint8)
    half[:, :8] = 255  # left half white
    t = build_transform("light", config, train=True)
    torch.manual_seed(0)
    left_means = [t(Image.fromarray(half))[:, :, :8].mean().item() for _ in range(30)]
    assert min(left_means) < 0.3 and max(left_means) > 0.7  # flipped and not flipped both occur


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown augmentation preset"):
        build_transform("heavy", ModelConfig(), train=True)
