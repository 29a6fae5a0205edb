"""Evaluation preprocessing in numpy + PIL: resize the short side to size/crop_ratio, centre-crop, normalise.

This is the single definition of eval preprocessing: edgeres uses it on the host for evaluation and calibration,
and the bundle uses it on the device. It reproduces torchvision's ``Resize(int) + CenterCrop + ToTensor + Normalize``
on PIL images (same rounding, same bilinear filter), which a parity test checks.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


@dataclass
class Preprocess:
    size: int = 224
    crop_ratio: float = 0.875
    mean: tuple = field(default=IMAGENET_MEAN)
    std: tuple = field(default=IMAGENET_STD)

    def __post_init__(self):
        self.size = int(self.size)
        self.crop_ratio = float(self.crop_ratio)
        self.mean = tuple(float(m) for m in self.mean)
        self.std = tuple(float(s) for s in self.std)
        if self.size < 8:
            raise ValueError(f"image size {self.size} is too small (need >= 8)")
        if not 0.1 <= self.crop_ratio <= 1.0:
            raise ValueError(f"crop ratio {self.crop_ratio} must be in [0.1, 1.0]")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError("mean and std need three values each, std > 0")

    @property
    def resize_size(self) -> int:
        return int(math.floor(self.size / self.crop_ratio))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocess":
        return cls(**{k: d[k] for k in ("size", "crop_ratio", "mean", "std") if k in d})

    @classmethod
    def from_json(cls, path) -> "Preprocess":
        with open(path) as f:
            return cls.from_dict(json.load(f))

    def resize_crop(self, img: Image.Image) -> Image.Image:
        img = img.convert("RGB")
        if self.crop_ratio >= 1.0:
            return img.resize((self.size, self.size), Image.BILINEAR)
        w, h = img.size
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = self.resize_size, int(self.resize_size * long / short)
        new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
        if (new_w, new_h) != (w, h):
            img = img.resize((new_w, new_h), Image.BILINEAR)
        top = int(round((new_h - self.size) / 2.0))
        left = int(round((new_w - self.size) / 2.0))
        return img.crop((left, top, left + self.size, top + self.size))

    def normalize(self, img: Image.Image) -> np.ndarray:
        arr = np.asarray(img, dtype=np.float32) / np.float32(255.0)
        arr = (arr - np.asarray(self.mean, dtype=np.float32)) / np.asarray(self.std, dtype=np.float32)
        return np.ascontiguousarray(arr.transpose(2, 0, 1))

    def __call__(self, img: Image.Image) -> np.ndarray:
        """PIL image -> float32 CHW array."""
        return self.normalize(self.resize_crop(img))

    def load(self, path) -> np.ndarray:
        with Image.open(path) as img:
            return self(img)


def list_images(folder) -> list:
    """Image files directly in ``folder`` (sorted), by extension."""
    import os

    return sorted(
        os.path.join(folder, n) for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS)
    )


def imagefolder_samples(root) -> tuple[list, list]:
    """(samples, classes) of an ImageFolder root: one sub-folder a class, sorted. samples = [(path, class_index)]."""
    import os

    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
    samples = [(p, i) for i, c in enumerate(classes) for p in list_images(os.path.join(root, c))]
    return samples, classes
