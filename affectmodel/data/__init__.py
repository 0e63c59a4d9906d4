"""Data: Aff-Wild2 readers, other common formats, samplers, augmentation presets and the
synthetic affect benchmark.

Every reader returns an :class:`ImageLabelDataset` whose items are
``(image_tensor, {"expr", "au", "va"})`` with -1 / -5 for missing labels.
"""
from .affwild2 import AffWild2Dataset, AffWild2Layout, detect_layout, load_affwild2
from .dataset import ImageLabelDataset, ImageReadError, load_image
from .formats import load_affectnet_csv, load_image_folder
from .samplers import ClassBalancedSampler, MultiTaskBatchSampler, shuffle_sampler
from .transforms import AUGMENT_PRESETS, build_transform, preprocess

__all__ = [
    "AUGMENT_PRESETS", "AffWild2Dataset", "AffWild2Layout", "ClassBalancedSampler", "ImageLabelDataset",
    "ImageReadError", "MultiTaskBatchSampler", "build_transform", "detect_layout", "load_affectnet_csv",
    "load_affwild2", "load_image", "load_image_folder", "preprocess", "shuffle_sampler",
]
