"""Batch augmentation (affectmodel/data/batch_augment.py) against the per-image presets of
affectmodel/data/transforms.py: 'none' exactly, each operation with equal parameters, the parameter
distributions, and the output distributions.

Tolerances: with equal parameters the two paths differ by PIL's rounding to uint8 after each step
(up to 0.5 per step) and bilinear edge conventions, so mean absolute differences are held below 1 grey
level (0-255). Distributions are compared with two-sample Kolmogorov-Smirnov tests at alpha = 0.001
on fixed seeds (the draws are deterministic, so a pass is not luck on a rerun); rates with a
binomial bound of 4 standard deviations. With 400 images per side the output test detects a flip
rate of 0, rotations of ±3° instead of ±10° and crops of 70 % instead of 85 % (checked by hand);
smaller or rarer effects (a contrast range of ±0.1 instead of ±0.3, greyscale 5 %, hue ±0.03) are
held by the per-operation and parameter tests instead. At 400 samples one seed in a few dozen lands near
alpha for the per-image contrast even between two runs of the per-image preset itself, so the seeds
are fixed.
"""
import numpy as np
import pytest
import torch
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as TF
from PIL import Image

from affectmodel.data.batch_augment import (
    AugmentParams,
    BatchAugment,
    apply_params,
    augment_batch,
    batch_generator,
    sample_params,
)
from affectmodel.data.transforms import build_transform, preprocess
from affectmodel.model import ModelConfig

S = 48
CONFIG = ModelConfig(input_size=S)
STD255 = 255 * np.asarray(CONFIG.std, dtype=np.float32).reshape(3, 1, 1)
ALPHA = 0.001


def ks_2samp_pvalue(a, b) -> float:
    """Two-sample Kolmogorov-Smirnov test, asymptotic p-value (Stephens' correction); ties are
    handled by evaluating both empirical CDFs at every observed value (conservative for discrete data)."""
    a, b = np.sort(np.asarray(a, dtype=np.float64)), np.sort(np.asarray(b, dtype=np.float64))
    values = np.concatenate([a, b])
    d = np.max(np.abs(np.searchsorted(a, values, "right") / len(a) - np.searchsorted(b, values, "right") / len(b)))
    en = np.sqrt(len(a) * len(b) / (len(a) + len(b)))
    lam = (en + 0.12 + 0.11 / en) * d
    if lam < 0.3:  # Q_KS(0.3) > 0.99999; the series converges slowly below
        return 1.0
    j = np.arange(1, 101)
    return float(np.clip(2 * np.sum((-1.0) ** (j - 1) * np.exp(-2 * j**2 * lam**2)), 0, 1))


def _image(seed: int = 0) -> np.ndarray:
    """Structured test image (H, W, 3): bright left half, colour gradients, a saturated patch."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32)
    img = np.stack([60 + 3 * xx, 40 + 3 * yy, 100 + 1.5 * (xx - yy)], -1)
    img[:, : S // 2] += 60
    img[8:20, 28:40] = [230, 40, 60]
    img += rng.normal(0, 6, img.shape)
    return img.clip(0, 255).astype(np.uint8)


def _u8(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack([im.transpose(2, 0, 1) for im in images]).copy())


def _grey_levels(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|a - b| of two normalised images in 0-255 units, per pixel."""
    return (a - b).abs() * torch.from_numpy(STD255)


def test_none_equals_the_per_image_path_exactly():
    images = [np.random.default_rng(i).integers(0, 256, (S, S, 3), dtype=np.uint8) for i in range(5)]
    expected = torch.stack([preprocess(Image.fromarray(im), CONFIG) for im in images])
    assert torch.equal(BatchAugment("none", CONFIG)(_u8(images), 0), expected)
    # evaluation never augments, whatever the preset
    assert torch.equal(BatchAugment("strong", CONFIG, train=False)(_u8(images), 0), expected)


def test_deterministic_for_a_seed_and_different_across_seeds():
    x = _u8([_image(i) for i in range(6)])
    for preset in ("light", "strong"):
        a = augment_batch(x, preset, CONFIG, batch_generator(1, 2, 3))
        b = augment_batch(x, preset, CONFIG, batch_generator(1, 2, 3))
        c = augment_batch(x, preset, CONFIG, batch_generator(1, 2, 4))
        assert a.dtype == torch.float32 and a.shape == (6, 3, S, S)
        assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(BatchAugment("strong", CONFIG)(x, 7), BatchAugment("strong", CONFIG)(x, 7))


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="uint8"):
        BatchAugment("light", CONFIG)(torch.zeros(2, 3, S, S))
    with pytest.raises(ValueError, match="--size 48"):
        BatchAugment("light", CONFIG)(torch.zeros(2, 3, S + 2, S + 2, dtype=torch.uint8))
    with pytest.raises(ValueError, match="unknown augmentation preset"):
        BatchAugment("heavy", CONFIG)


def _params(**changes) -> AugmentParams:
    p = AugmentParams.identity(1, S, S)
    for k, v in changes.items():
        setattr(p, k, v)
    return p


@pytest.mark.parametrize("crop,flip,angle", [((3, 4, 42, 44), False, 0.0), ((3, 4, 42, 44), True, 0.0),
                                             ((0, 0, S, S), False, 8.0), ((2, 1, 45, 46), True, -7.0)])
def test_geometry_with_equal_parameters_matches_torchvision(crop, flip, angle):
    img = _image()
    p = _params(crop=torch.tensor([crop], dtype=torch.float32), flip=torch.tensor([flip]),
                angle=torch.tensor([angle]))
    ours = apply_params(_u8([img]), p, CONFIG)[0]
    im = TF.resized_crop(Image.fromarray(img), *crop, [S, S], antialias=True)
    if flip:
        im = TF.hflip(im)
    if angle:
        im = TF.rotate(im, angle, interpolation=T.InterpolationMode.BILINEAR)
    diff = _grey_levels(ours, preprocess(im, CONFIG))
    assert float(diff.mean()) < 1.0, float(diff.mean())
    # the rotated frame's black corners are where PIL puts them
    if angle:
        black = (preprocess(im, CONFIG) == preprocess(Image.new("RGB", (S, S)), CONFIG)).all(0)
        ours_black = (ours == preprocess(Image.new("RGB", (S, S)), CONFIG)).all(0)
        assert black.sum() > 20 and float((black != ours_black).float().mean()) < 0.03


@pytest.mark.parametrize("op,factor", [("brightness", 1.25), ("brightness", 0.7), ("contrast", 0.75),
                                       ("contrast", 1.3), ("saturation", 1.3), ("saturation", 0.7),
                                       ("hue", 5 / 255), ("hue", -7 / 255)])
def test_each_colour_operation_matches_pil(op, factor):
    img = _image()
    index = ("brightness", "contrast", "saturation", "hue").index(op)
    factors = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    factors[0, index] = factor
    order = torch.tensor([[index] + [i for i in range(4) if i != index]])
    ours = apply_params(_u8([img]), _params(jitter=torch.tensor([True]), factors=factors, order=order), CONFIG)[0]
    theirs = preprocess(getattr(TF, f"adjust_{op}")(Image.fromarray(img), factor), CONFIG)
    assert float(_grey_levels(ours, theirs).mean()) < 1.0


def test_greyscale_and_erasing_match_torchvision():
    img = _image()
    ours = apply_params(_u8([img]), _params(gray=torch.tensor([True])), CONFIG)[0]
    theirs = preprocess(TF.rgb_to_grayscale(Image.fromarray(img), 3), CONFIG)
    assert float(_grey_levels(ours, theirs).mean()) < 1.0
    box = torch.tensor([[5, 7, 10, 6]])
    ours = apply_params(_u8([img]), _params(erase=torch.tensor([True]), erase_box=box), CONFIG)[0]
    theirs = TF.erase(preprocess(Image.fromarray(img), CONFIG), 5, 7, 10, 6, torch.tensor(0.0))
    assert torch.equal(ours, theirs)


def test_parameter_distributions_match_torchvision():
    n = 3000
    x = torch.zeros(3, S, S)
    torch.manual_seed(0)
    rrc = T.RandomResizedCrop(S, scale=(0.85, 1.0), ratio=(0.95, 1.05))
    tv_crop = np.array([[d[k] for k in ("top", "left", "height", "width")] for d in (rrc.make_params([x]) for _ in range(n))])
    erasing = T.RandomErasing(p=1.0, scale=(0.02, 0.12), ratio=(0.5, 2.0), value=0)
    tv_erase = np.array([[d[k] for k in ("i", "j", "h", "w")] for d in (erasing.make_params([x]) for _ in range(n))])
    jitter = T.ColorJitter(0.3, 0.3, 0.3, 0.03)
    tv_jit = [jitter.make_params([x]) for _ in range(n)]
    p = sample_params("strong", n, S, S, torch.Generator().manual_seed(1))
    for k in range(4):
        assert ks_2samp_pvalue(p.crop[:, k].numpy(), tv_crop[:, k]) > ALPHA, ("crop", k)
        found = p.erase_box[:, 2] > 0
        assert ks_2samp_pvalue(p.erase_box[found, k].numpy(), tv_erase[:, k]) > ALPHA, ("erase", k)
    for k, name in enumerate(("brightness_factor", "contrast_factor", "saturation_factor")):
        assert ks_2samp_pvalue(p.factors[:, k].numpy(), [d[name] for d in tv_jit]) > ALPHA, name
    pil_steps = np.trunc(np.array([d["hue_factor"] for d in tv_jit]) * 255)  # PIL shifts by whole 1/255 steps
    assert ks_2samp_pvalue(np.round(p.factors[:, 3].numpy() * 255), pil_steps) > ALPHA
    # order: each operation first equally often (torch.randperm(4) in torchvision)
    first = np.bincount(p.order[:, 0].numpy(), minlength=4) / n
    assert np.all(np.abs(first - 0.25) < 4 * np.sqrt(0.25 * 0.75 / n))
    assert ks_2samp_pvalue(p.angle.numpy(), np.random.default_rng(0).uniform(-10, 10, n)) > ALPHA
    for rate, expected in ((p.flip, 0.5), (p.jitter, 0.8), (p.gray, 0.05), (p.erase, 0.25)):
        assert abs(float(rate.float().mean()) - expected) < 4 * np.sqrt(expected * (1 - expected) / n)


def _summaries(batch: torch.Tensor) -> dict[str, np.ndarray]:
    """Per image: brightness, contrast, colour balance, left-right asymmetry (flip and crop), black share."""
    x = (batch * torch.from_numpy(STD255) + torch.tensor(CONFIG.mean).view(3, 1, 1) * 255).numpy()
    gray = x.mean(1)
    return {"mean": gray.mean((1, 2)), "std": gray.std((1, 2)), "red_minus_blue": (x[:, 0] - x[:, 2]).mean((1, 2)),
            "left_minus_right": gray[:, :, : S // 2].mean((1, 2)) - gray[:, :, S // 2:].mean((1, 2)),
            "top_minus_bottom": gray[:, : S // 2].mean((1, 2)) - gray[:, S // 2:].mean((1, 2)),
            "near_black": (x.max(1) < 3).mean((1, 2))}


@pytest.mark.parametrize("preset", ["light", "strong"])
def test_output_distributions_match_the_per_image_preset(preset):
    n = 400
    img = _image()
    per_image = build_transform(preset, CONFIG, True)
    ref = []
    for i in range(n):
        torch.manual_seed(10_000 + i)
        ref.append(per_image(Image.fromarray(img)))
    ours = BatchAugment(preset, CONFIG)(_u8([img] * n), torch.Generator().manual_seed(0))
    a, b = _summaries(torch.stack(ref)), _summaries(ours)
    for key in a:
        if preset == "light" and key == "near_black":
            continue
        pvalue = ks_2samp_pvalue(a[key], b[key])
        assert pvalue > ALPHA, (key, pvalue, float(a[key].mean()), float(b[key].mean()))


def test_device_path_never_reads_device_data_back():
    """On a device, parameters go over in one packed copy and nothing is read back to the host:
    the 'meta' device (shapes only, no data) runs every preset."""
    x = _u8([_image(i) for i in range(8)]).to("meta")
    for preset in ("none", "light", "strong"):
        y = BatchAugment(preset, CONFIG)(x, 3)
        assert y.device.type == "meta" and y.shape == (8, 3, S, S) and y.dtype == torch.float32
