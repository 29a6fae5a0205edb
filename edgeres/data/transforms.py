"""Presets shared by training, evaluation and calibration (after torchvision's references/classification).

Eval preprocessing is ``edgeres_deploy.preprocess.Preprocess`` (numpy/PIL), the same code the device runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeres_deploy.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "AugmentRecipe", "Preprocess", "eval_transform", "train_transform"]


def eval_transform(pre: Preprocess):
    """PIL image -> torch float tensor CHW, through the shared numpy preprocessing."""
    import torch

    def _t(img):
        return torch.from_numpy(pre(img))

    return _t


@dataclass(frozen=True)
class AugmentRecipe:
    """The training augmentation, one definition for the CPU path (PIL, :func:`train_transform`) and the GPU path
    (batched tensors, ``edgeres.data.gpu_pipeline.BatchAugment``): random resized crop (``min_scale``..1 of the area,
    aspect ``ratio``), horizontal flip, a small rotation (nearest, black corners), colour jitter (brightness, contrast,
    saturation, in a random order per image), then the evaluation's normalisation (``Preprocess.mean``/``std``).

    ``min_scale`` is the smallest crop area kept (torchvision's reference uses 0.08 on ImageNet; small objects
    anywhere in the frame, as in the demo set, need a larger one so that the crop still holds the object).
    """

    min_scale: float = 0.35
    ratio: tuple = (3 / 4, 4 / 3)
    flip: float = 0.5
    rotation: float = 10.0
    jitter: float = 0.2


def train_transform(pre: Preprocess, rotation: float = 10.0, jitter: float = 0.2, min_scale: float = 0.35,
                    recipe: AugmentRecipe | None = None):
    """Augmentation for small data on PIL images (the CPU path): ``recipe``, or one made of the keyword values."""
    from torchvision import transforms as T

    r = recipe or AugmentRecipe(min_scale=min_scale, rotation=rotation, jitter=jitter)
    return T.Compose(
        [
            T.RandomResizedCrop(pre.size, scale=(r.min_scale, 1.0), ratio=r.ratio, antialias=True),
            T.RandomHorizontalFlip(r.flip),
            T.RandomRotation(r.rotation),
            T.ColorJitter(r.jitter, r.jitter, r.jitter),
            T.ToTensor(),
            T.Normalize(pre.mean, pre.std),
        ]
    )
