"""Data: ImageFolder discovery and splitting, presets shared by training, evaluation and calibration, the demo set."""

from edgeres.data.folder import DataSplits, ImageDataset, data_hash, resolve_data
from edgeres.data.transforms import AugmentRecipe, Preprocess, eval_transform, train_transform

__all__ = [
    "AugmentRecipe",
    "DataSplits",
    "ImageDataset",
    "Preprocess",
    "data_hash",
    "eval_transform",
    "resolve_data",
    "train_transform",
]
