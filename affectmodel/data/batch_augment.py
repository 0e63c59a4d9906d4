"""Augmentation presets on whole batches: uint8 (B, 3, S, S) on any device -> normalised float.

The per-image presets of :mod:`affectmodel.data.transforms` (PIL + torchvision, one image at a
time) cost up to ~2.7 ms per image with ``strong``; here the same presets run as a few tensor
operations over the batch, on the training device, so the data loader only copies uint8 frames
(e.g. from :mod:`affectmodel.data.cache`). Same meaning and distributions, per sample:

* ``none``: normalisation only, ``x * (1 / (255 std)) - mean / std`` — the same float32
  arithmetic as :func:`~affectmodel.data.transforms.preprocess`, so equal to the per-image path.
* ``light``: RandomResizedCrop(scale 0.85-1, ratio 0.95-1.05; same integer crop boxes, same
  10-attempt rule and central fallback) and a horizontal flip with p = 0.5.
* ``strong``: ``light``, then with p = 0.8 colour jitter (brightness, contrast, saturation 0.7-1.3,
  hue ±0.03 quantised as PIL does to whole 1/255 steps, applied in a random order per sample,
  clipped after each step; contrast blends with the image's mean grey level), a rotation of
  U(-10°, 10°) about the centre with black corners, greyscale with p = 0.05, and after
  normalisation random erasing (p = 0.25, area 2-12 %, aspect 0.5-2) with 0 (the mean colour).

Crop + flip is one bilinear resampling per sample (``grid_sample``), the rotation a second one
after the colour jitter, in the per-image path's order (one combined resampling would be measurably
sharper than PIL's resize then rotate); colour work is in float without PIL's rounding to uint8
between steps (PIL truncates in its blends, so its colour jitter comes out about 0.5 grey level
darker per operation). These differ from the per-image path by interpolation and rounding detail
only (``tests/test_batch_augment.py`` checks the operations with equal parameters
and the output distributions against the per-image presets). The input must already be at the
model's input size (build the frame cache with ``--size`` = the model's input size).

Random parameters are drawn on the CPU from a ``torch.Generator`` (one per batch, e.g.
:func:`batch_generator` of seed, epoch and step), so a batch is augmented the same way on any device.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .normalise import normalisation
from .transforms import AUGMENT_PRESETS, PreprocessConfig

CROP_SCALE, CROP_RATIO = (0.85, 1.0), (0.95, 1.05)
FLIP_P = 0.5
JITTER_P, JITTER = 0.8, (0.3, 0.3, 0.3, 0.03)   # brightness, contrast, saturation, hue
ROTATION_DEGREES = 10.0
GRAY_P = 0.05
ERASE_P, ERASE_SCALE, ERASE_RATIO = 0.25, (0.02, 0.12), (0.5, 2.0)
_ATTEMPTS = 10
_GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601-2 luma, as PIL's convert("L")


@dataclass
class AugmentParams:
    """Per-sample parameters of one batch (CPU tensors, B rows)."""

    crop: torch.Tensor       # (B, 4) float: top, left, height, width of the crop in source pixels
    flip: torch.Tensor       # (B,) bool
    angle: torch.Tensor      # (B,) float degrees, counter-clockwise (0: no rotation)
    jitter: torch.Tensor     # (B,) bool: colour jitter applied
    factors: torch.Tensor    # (B, 4) float: brightness, contrast, saturation, hue shift (fraction of a turn)
    order: torch.Tensor      # (B, 4) int64: permutation of the four jitter operations
    gray: torch.Tensor       # (B,) bool
    erase: torch.Tensor      # (B,) bool
    erase_box: torch.Tensor  # (B, 4) int64: top, left, height, width in output pixels

    def take(self, rows: torch.Tensor) -> AugmentParams:
        """The parameters of samples ``rows``, in that order."""
        return AugmentParams(**{k: getattr(self, k)[rows] for k in self.__dataclass_fields__})

    @classmethod
    def identity(cls, batch: int, height: int, width: int) -> AugmentParams:
        zeros = torch.zeros(batch, dtype=torch.bool)
        return cls(crop=torch.tensor([[0.0, 0.0, height, width]]).repeat(batch, 1), flip=zeros.clone(),
                   angle=torch.zeros(batch), jitter=zeros.clone(),
                   factors=torch.tensor([[1.0, 1.0, 1.0, 0.0]]).repeat(batch, 1),
                   order=torch.arange(4).repeat(batch, 1), gray=zeros.clone(), erase=zeros.clone(),
                   erase_box=torch.zeros(batch, 4, dtype=torch.int64))


def batch_generator(seed: int, epoch: int, step: int) -> torch.Generator:
    """A CPU generator for one batch, seeded from (seed, epoch, step): the same batch gets the
    same augmentation whatever the device, worker count or resume point."""
    return torch.Generator().manual_seed(((seed * 1_000_003 + epoch) * 1_000_003 + step) % (2**63))


def _uniform(n: int, shape: tuple[int, ...], low: float, high: float, g: torch.Generator) -> torch.Tensor:
    return torch.rand((n, *shape), generator=g, dtype=torch.float64) * (high - low) + low


def _randint_below(upper: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Per element, a uniform integer in [0, upper)."""
    return (torch.rand(upper.shape, generator=g, dtype=torch.float64) * upper).floor().clamp(max=upper - 1).long()


def _first_valid(values: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(value of the first valid attempt, any valid) per row of (B, attempts)."""
    first = torch.argmax(valid.int(), dim=1)
    return values.gather(1, first[:, None])[:, 0], valid.any(dim=1)


def _sample_crop(n: int, height: int, width: int, g: torch.Generator) -> torch.Tensor:
    """torchvision's RandomResizedCrop.make_params, vectorised: (B, 4) top, left, h, w."""
    area = height * width
    target = area * _uniform(n, (_ATTEMPTS,), *CROP_SCALE, g)
    aspect = torch.exp(_uniform(n, (_ATTEMPTS,), math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]), g))
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    valid = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    w, ok = _first_valid(w, valid)
    h, _ = _first_valid(h, valid)
    in_ratio = width / height  # central-crop fallback, as torchvision
    if in_ratio < min(CROP_RATIO):
        fw, fh = width, round(width / min(CROP_RATIO))
    elif in_ratio > max(CROP_RATIO):
        fw, fh = round(height * max(CROP_RATIO)), height
    else:
        fw, fh = width, height
    w = torch.where(ok, w, torch.full_like(w, fw))
    h = torch.where(ok, h, torch.full_like(h, fh))
    top = _randint_below(height - h + 1, g).double()
    left = _randint_below(width - w + 1, g).double()
    top = torch.where(ok, top, torch.full_like(top, (height - fh) // 2))
    left = torch.where(ok, left, torch.full_like(left, (width - fw) // 2))
    return torch.stack([top, left, h, w], dim=1).float()


def _sample_erase(n: int, size: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision's RandomErasing.make_params, vectorised: ((B, 4) box, found)."""
    area = size * size
    target = area * _uniform(n, (_ATTEMPTS,), *ERASE_SCALE, g)
    aspect = torch.exp(_uniform(n, (_ATTEMPTS,), math.log(ERASE_RATIO[0]), math.log(ERASE_RATIO[1]), g))
    h = torch.round(torch.sqrt(target * aspect))
    w = torch.round(torch.sqrt(target / aspect))
    valid = (h < size) & (w < size)
    h, found = _first_valid(h, valid)
    w, _ = _first_valid(w, valid)
    h, w = torch.where(found, h, 0).long(), torch.where(found, w, 0).long()
    top, left = _randint_below(size - h + 1, g), _randint_below(size - w + 1, g)
    return torch.stack([top, left, h, w], dim=1), found


def sample_params(preset: str, batch: int, height: int, width: int, generator: torch.Generator | None = None
                  ) -> AugmentParams:
    """Per-sample random parameters of ``preset`` for a batch of ``batch`` images of height x width."""
    if preset not in AUGMENT_PRESETS:
        raise ValueError(f"unknown augmentation preset {preset!r}; choose from {', '.join(AUGMENT_PRESETS)}")
    g = generator if generator is not None else torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,))))
    params = AugmentParams.identity(batch, height, width)
    if preset == "none":
        return params
    params.crop = _sample_crop(batch, height, width, g)
    params.flip = torch.rand(batch, generator=g) < FLIP_P
    if preset == "light":
        return params
    b, c, s, hue = JITTER
    params.jitter = torch.rand(batch, generator=g) < JITTER_P
    factors = torch.stack([_uniform(batch, (), 1 - b, 1 + b, g), _uniform(batch, (), 1 - c, 1 + c, g),
                           _uniform(batch, (), 1 - s, 1 + s, g), _uniform(batch, (), -hue, hue, g)], dim=1)
    # PIL shifts the uint8 hue channel by int(hue * 255) (truncated), i.e. whole 1/255 turns.
    factors[:, 3] = torch.trunc(factors[:, 3] * 255) / 255
    params.factors = factors.float()
    params.order = torch.argsort(torch.rand(batch, 4, generator=g), dim=1)
    params.angle = _uniform(batch, (), -ROTATION_DEGREES, ROTATION_DEGREES, g).float()
    params.gray = torch.rand(batch, generator=g) < GRAY_P
    params.erase_box, found = _sample_erase(batch, height, g)
    params.erase = (torch.rand(batch, generator=g) < ERASE_P) & found
    return params


# ------------------------------------------------------------------ the operations

def _gray(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) luma of (B, 3, H, W)."""
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return r * _GRAY_WEIGHTS[0] + g * _GRAY_WEIGHTS[1] + b * _GRAY_WEIGHTS[2]


def _brightness(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return (x * f.view(-1, 1, 1, 1)).clamp_(0, 255)


def _contrast(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    mean = torch.floor(_gray(x).mean(dim=(1, 2, 3), keepdim=True) + 0.5)  # PIL: int(mean + 0.5)
    f = f.view(-1, 1, 1, 1)
    return (mean + f * (x - mean)).clamp_(0, 255)


def _saturation(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    gray = _gray(x)
    return (gray + f.view(-1, 1, 1, 1) * (x - gray)).clamp_(0, 255)


def _hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the HSV hue by ``shift`` turns (V and S kept), as PIL's HSV round trip does."""
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    maxc = torch.maximum(torch.maximum(r, g), b)
    chroma = maxc - torch.minimum(torch.minimum(r, g), b)
    is_r, is_g = maxc == r, maxc == g
    # hue in sextants: (g - b) / C from red, 2 + (b - r) / C from green, 4 + (r - g) / C from blue
    h6 = torch.where(is_r, g - b, torch.where(is_g, b - r, r - g)).div_(chroma.clamp_min(1e-6))
    h6 += torch.where(is_r, 0.0, torch.where(is_g, 2.0, 4.0))
    h6 = torch.remainder(h6.add_(6.0 * shift.view(-1, 1, 1, 1)), 6.0)
    # HSV -> RGB: channel = V - C * clamp(min(k, 4 - k), 0, 1), k = (n + H') mod 6, n = 5, 3, 1
    # (a grey pixel has C = 0 and stays as it is)
    n = (5.0 - 2.0 * torch.arange(3, device=x.device, dtype=x.dtype)).view(1, 3, 1, 1)  # 5, 3, 1; no host copy
    k = torch.remainder(n + h6, 6.0)
    return maxc - chroma * torch.minimum(k, 4.0 - k).clamp_(0, 1)


_JITTER_OPS = (_brightness, _contrast, _saturation, _hue)


def _affine_thetas(params: AugmentParams, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(crop + flip, rotation) maps, (B, 2, 3) each: normalised output coordinates
    (align_corners=False) -> normalised source coordinates, as ``F.affine_grid`` takes them."""
    top, left, h, w = params.crop.double().unbind(1)
    fx = torch.where(params.flip, -1.0, 1.0).double()
    zero = torch.zeros_like(h)
    crop_flip = torch.stack([torch.stack([fx * w / width, zero, (2 * left + w) / width - 1], 1),
                             torch.stack([zero, h / height, (2 * top + h) / height - 1], 1)], 1)
    a = torch.deg2rad(params.angle.double())
    cos, sin = torch.cos(a), torch.sin(a)
    # output -> source of the rotation about the centre (y down: a counter-clockwise turn on screen)
    rotation = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    return crop_flip.float(), rotation.float()


def _grid(theta: torch.Tensor, size: int) -> torch.Tensor:
    """``F.affine_grid(theta, (B, C, size, size), align_corners=False)`` as a few broadcast
    multiply-adds (several times cheaper on a CPU than affine_grid's batched matmul); ``theta`` on
    the images' device."""
    base = (torch.arange(size, device=theta.device, dtype=torch.float32) * 2 + 1) / size - 1
    grid = torch.empty(len(theta), size, size, 2, device=theta.device)
    for axis in (0, 1):
        a, b, c = (theta[:, axis, k].view(-1, 1, 1) for k in range(3))
        # a * x + b * y + c over the (y, x) plane
        torch.add(a * base.view(1, 1, size), b * base.view(1, size, 1) + c, out=grid[..., axis])
    return grid


def apply_params(images: torch.Tensor, params: AugmentParams, config: PreprocessConfig) -> torch.Tensor:
    """Augment and normalise ``images`` (uint8 (B, 3, S, S), any device) with explicit parameters."""
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected a uint8 batch (B, 3, H, W), got {images.dtype} {tuple(images.shape)}")
    size = int(config.input_size)
    if tuple(images.shape[2:]) != (size, size):
        raise ValueError(f"images are {images.shape[2]}x{images.shape[3]} px, the model takes {size}x{size}: build "
                         f"the frame cache with --size {size}")
    perm = None
    if params.jitter.any():
        # Samples with the same jitter order side by side, so each operation runs on contiguous
        # slices (the uint8 input is permuted, then the float output put back in order).
        perm = torch.argsort(_order_key(params), stable=True)
        params = params.take(perm)
    height, width = size, size
    rotated = bool((params.angle != 0).any())
    geometric = rotated or bool(params.flip.any()) or \
        bool((params.crop != torch.tensor([0.0, 0.0, height, width])).any())
    scale, shift = normalisation(tuple(config.mean), tuple(config.std))
    host = {"scale": torch.from_numpy(scale).view(1, 3, 1, 1), "shift": torch.from_numpy(shift).view(1, 3, 1, 1)}
    if geometric:
        host["theta"], host["theta_rot"] = _affine_thetas(params, height, width)
    if params.jitter.any():
        host["factors"] = params.factors
    if params.gray.any():
        host["gray_rows"] = torch.nonzero(params.gray).flatten()
    if params.erase.any():
        host["erase_box"], host["erase"] = params.erase_box, params.erase
    if perm is not None:
        host["perm"], host["inverse"] = perm, torch.argsort(perm)
    dev = _on_device(host, images.device)
    if perm is not None:
        images = images[dev["perm"]]
    x = _apply(images, params, dev, size, rotated, geometric)
    return x if perm is None else x[dev["inverse"]]


def _on_device(tensors: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Small CPU tensors -> ``device`` in one non-blocking copy from pinned memory (one transfer per
    batch, and the host does not wait for the device's queue as a copy per tensor would make it)."""
    if device.type == "cpu":
        return tensors
    buffer = torch.cat([t.reshape(-1).to(torch.float32) for t in tensors.values()])  # ints here are < 2**24
    if device.type == "cuda":
        buffer = buffer.pin_memory()
    buffer = buffer.to(device, non_blocking=True)
    out, start = {}, 0
    for key, t in tensors.items():
        out[key] = buffer[start:start + t.numel()].view(t.shape).to(t.dtype)
        start += t.numel()
    return out


def _order_key(params: AugmentParams) -> torch.Tensor:
    """0 for samples without jitter, else 1 + the order of the four operations as a base-4 number."""
    return torch.where(params.jitter, (params.order * torch.tensor([64, 16, 4, 1])).sum(1) + 1, 0)


def _jitter_segments(params: AugmentParams) -> list[tuple[int, int, list[int]]]:
    """(start, stop, operation order) of the runs of jittered samples with one order (sorted batch)."""
    key = _order_key(params).tolist()
    segments, start = [], 0
    for i in range(1, len(key) + 1):
        if i == len(key) or key[i] != key[start]:
            if key[start]:
                segments.append((start, i, params.order[start].tolist()))
            start = i
    return segments


def _apply(images: torch.Tensor, params: AugmentParams, dev: dict[str, torch.Tensor], size: int, rotated: bool,
           geometric: bool) -> torch.Tensor:
    """The operations; ``params`` (CPU) steer, ``dev`` holds what the arithmetic needs on the device."""
    scale, shift = dev["scale"], dev["shift"]
    if not (params.jitter.any() or params.gray.any() or rotated):
        # Normalise first ("none": exactly preprocess's float32 arithmetic; uint8 * float32 converts
        # and multiplies in one pass). Bilinear resampling is linear with weights summing to 1, so
        # resampling the normalised image is the same as normalising the resampled one.
        x = torch.mul(images, scale).sub_(shift)
        if geometric:
            x = F.grid_sample(x, _grid(dev["theta"], size), mode="bilinear", padding_mode="border",
                              align_corners=False)
        return _erase(x, params, dev, size)
    x = images.float()
    if geometric:
        x = F.grid_sample(x, _grid(dev["theta"], size), mode="bilinear", padding_mode="border", align_corners=False)
    if params.jitter.any():
        factors = dev["factors"]
        for start, stop, order in _jitter_segments(params):
            part = x[start:stop]
            for op_id in order:
                part = _JITTER_OPS[op_id](part, factors[start:stop, op_id])
            x[start:stop] = part
    if rotated:
        # A second resampling, as on the per-image path (crop, flip and jitter, then rotate): one
        # combined resampling would come out measurably sharper. PIL's rotation: black where the
        # source point falls outside the frame (a hard edge), edge pixels repeated just inside it.
        grid = _grid(dev["theta_rot"], size)
        inside = (grid.abs() <= 1).all(dim=-1).unsqueeze(1)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False).mul_(inside)
    if params.gray.any():
        rows = dev["gray_rows"]
        x[rows] = _gray(x[rows]).expand(-1, 3, -1, -1)
    x = x.mul_(scale).sub_(shift)
    return _erase(x, params, dev, size)


def _erase(x: torch.Tensor, params: AugmentParams, dev: dict[str, torch.Tensor], size: int) -> torch.Tensor:
    """Random erasing on the normalised batch: the box set to 0 (the mean colour)."""
    if params.erase.any():
        box = dev["erase_box"]
        ar = torch.arange(size, device=x.device)
        in_rows = (ar >= box[:, 0:1]) & (ar < box[:, 0:1] + box[:, 2:3])
        in_cols = (ar >= box[:, 1:2]) & (ar < box[:, 1:2] + box[:, 3:4])
        region = in_rows[:, :, None] & in_cols[:, None, :] & dev["erase"][:, None, None]
        x = x.masked_fill_(region[:, None], 0.0)
    return x


class BatchAugment:
    """``augment(uint8 batch, generator)`` -> normalised float batch, for one preset and model config.

    ``train=False`` (evaluation) always normalises only, like ``build_transform(..., train=False)``.
    """

    def __init__(self, preset: str, config: PreprocessConfig, train: bool = True):
        if preset not in AUGMENT_PRESETS:
            raise ValueError(f"unknown augmentation preset {preset!r}; choose from {', '.join(AUGMENT_PRESETS)}")
        self.preset = preset if train else "none"
        self.config = config

    def params(self, images: torch.Tensor, generator: torch.Generator | int | None = None) -> AugmentParams:
        if isinstance(generator, int):
            generator = torch.Generator().manual_seed(generator)
        return sample_params(self.preset, images.shape[0], images.shape[2], images.shape[3], generator)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | int | None = None) -> torch.Tensor:
        return apply_params(images, self.params(images, generator), self.config)


def augment_batch(images: torch.Tensor, preset: str, config: PreprocessConfig,
                  generator: torch.Generator | int | None = None) -> torch.Tensor:
    """Function form of :class:`BatchAugment` (training presets)."""
    return BatchAugment(preset, config, train=True)(images, generator)


__all__ = ["AugmentParams", "BatchAugment", "apply_params", "augment_batch", "batch_generator", "sample_params"]
