"""Presets shared by training, evaluation and calibration (after torchvision's references/classification).

Eval preprocessing is ``edgeres_deploy.preprocess.Preprocess`` (numpy/PIL), the same code the device runs.
"""

from __future__ import annotations

from edgeres_deploy.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "Preprocess", "eval_transform", "train_transform"]


def eval_transform(pre: Preprocess):
    """PIL image -> torch float tensor CHW, through the shared numpy preprocessing."""
    import torch

    def _t(img):
        return torch.from_numpy(pre(img))

    return _t


def train_transform(pre: Preprocess, rotation: float = 10.0, jitter: float = 0.2, min_scale: float = 0.35):
    """Augmentation for small data: random resized crop, flip, small rotation, colour jitter, normalise.

    ``min_scale`` is the smallest crop area kept (torchvision's reference uses 0.08 on ImageNet; small objects
    anywhere in the frame, as in the demo set, need a larger one so that the crop still holds the object).
    """
    from torchvision import transforms as T

    return T.Compose(
        [
            T.RandomResizedCrop(pre.size, scale=(min_scale, 1.0), antialias=True),
            T.RandomHorizontalFlip(),
            T.RandomRotation(rotation),
            T.ColorJitter(jitter, jitter, jitter),
            T.ToTensor(),
            T.Normalize(pre.mean, pre.std),
        ]
    )
