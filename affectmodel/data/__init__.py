"""Data: Aff-Wild2 readers, other common formats, samplers, augmentation presets and the
synthetic affect benchmark.

Every reader returns an :class:`ImageLabelDataset` whose items are
``(image_tensor, {"expr", "au", "va"})`` with -1 / -5 for missing labels; :func:`load_dataset`
detects the format (Aff-Wild2, AffectNet-style CSV, folder per class) and picks the reader.
"""
from ..lazy import lazy_getattr

# Names are imported on first use: the annotation parsers (used by `score` and `data-info`) must not
# pay for importing torch/torchvision.
_EXPORTS = {
    "AffWild2Dataset": ".affwild2", "AffWild2Layout": ".affwild2", "detect_layout": ".affwild2",
    "load_affwild2": ".affwild2", "ImageLabelDataset": ".dataset", "ImageReadError": ".dataset",
    "load_image": ".dataset", "load_affectnet_csv": ".formats", "load_image_folder": ".formats",
    "ClassBalancedSampler": ".samplers", "MultiTaskBatchSampler": ".samplers", "shuffle_sampler": ".samplers",
    "AUGMENT_PRESETS": ".transforms", "build_transform": ".transforms", "preprocess": ".transforms",
    "detect_format": ".registry", "load_dataset": ".registry", "development_split": ".splits",
    "limit_labels": ".splits",
}

__getattr__ = lazy_getattr(__name__, _EXPORTS)


__all__ = [
    "AUGMENT_PRESETS", "AffWild2Dataset", "AffWild2Layout", "ClassBalancedSampler", "ImageLabelDataset",
    "ImageReadError", "MultiTaskBatchSampler", "build_transform", "detect_format", "detect_layout",
    "development_split", "limit_labels", "load_affectnet_csv", "load_affwild2", "load_dataset", "load_image",
    "load_image_folder", "preprocess", "shuffle_sampler",
]
