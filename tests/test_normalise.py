"""One normalisation for every path: the numpy preprocessing that feeds both inference engines gives
exactly (bit for bit) the float32 values of training's torch preprocessing."""
import numpy as np
import torch
from media import astronaut
from PIL import Image

from affectmodel.data.batch_augment import augment_batch
from affectmodel.data.normalise import normalisation, normalise_image_into, normalise_into
from affectmodel.data.transforms import preprocess
from affectmodel.inference.align import align_face
from affectmodel.inference.predictor import preprocess_crops
from affectmodel.model_config import ModelConfig


def _crops(size: int) -> list[np.ndarray]:
    """Real face pixels (aligned and a plain cut), noise, and both ends of the range."""
    landmarks = np.array([[200, 100], [250, 100], [225, 130], [205, 155], [245, 155]], np.float32)
    rng = np.random.default_rng(0)
    return [align_face(astronaut(), landmarks, size), np.ascontiguousarray(astronaut()[60:60 + size, 180:180 + size]),
            rng.integers(0, 256, (size, size, 3), dtype=np.uint8), np.zeros((size, size, 3), np.uint8),
            np.full((size, size, 3), 255, np.uint8)]


def test_numpy_preprocessing_equals_the_torch_paths_bit_for_bit():
    config = ModelConfig(input_size=48, mean=[0.5, 0.4, 0.3], std=[0.2, 0.25, 0.3])
    crops = _crops(48)
    ours = preprocess_crops(crops, config)  # (n, S, S, 3) float32: what both engines receive
    assert ours.dtype == np.float32 and ours.shape == (len(crops), 48, 48, 3)
    # training's per-image torch path (PIL -> tensor)
    per_image = torch.stack([preprocess(Image.fromarray(c), config) for c in crops]).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(ours, per_image)
    # training's batched torch path on the device (no augmentation)
    uint8 = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous()
    batched = augment_batch(uint8, "none", config).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(ours, batched)
    # and the definition: (x / 255 - mean) / std
    expected = (np.stack(crops).astype(np.float64) / 255 - config.mean) / config.std
    assert np.abs(ours - expected).max() < 1e-5


def test_normalise_into_works_in_place_with_the_shared_constants():
    x = np.arange(3 * 4, dtype=np.float32).reshape(2, 2, 3) * 20
    out = normalise_into(x, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert out is x
    scale, shift = normalisation((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert np.array_equal(out, np.arange(12, dtype=np.float32).reshape(2, 2, 3) * 20 * scale - shift)


def test_normalise_image_into_equals_normalise_into_bit_for_bit():
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    rng = np.random.default_rng(1)
    for shape in ((112, 112, 3), (7, 5, 3), (1, 1, 3)):
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        batch = np.full((2, *shape), np.nan, np.float32)
        out = normalise_image_into(image, batch[1], mean, std)
        assert np.shares_memory(out, batch) and np.isnan(batch[0]).all()  # written into its slot only
        assert np.array_equal(batch[1], normalise_into(image.astype(np.float32), mean, std))
