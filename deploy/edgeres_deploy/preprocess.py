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


MIN_SIZE, MAX_SIZE = 8, 4096  # the input side in pixels (edgeres.options: image_size, the same range)


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
        if not MIN_SIZE <= self.size <= MAX_SIZE:  # 10^5 px a side would allocate tens of GB per image
            raise ValueError(f"size {self.size} is out of range: the input side must be {MIN_SIZE} to {MAX_SIZE} pixels")
        if not 0.1 <= self.crop_ratio <= 1.0:
            raise ValueError(f"crop_ratio {self.crop_ratio} is out of range: it must be in [0.1, 1.0]")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0 or \
                not all(math.isfinite(v) for v in self.mean + self.std):
            raise ValueError("mean and std need three finite values each, std > 0")

    @property
    def resize_size(self) -> int:
        return int(math.floor(self.size / self.crop_ratio))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Preprocess:
        return cls(**{k: d[k] for k in ("size", "crop_ratio", "mean", "std") if k in d})

    @classmethod
    def from_json(cls, path) -> Preprocess:
        """From a bundle's preprocess.json, checked before any image is read; ValueError naming the file and key."""
        try:
            with open(path) as f:
                d = json.load(f)
            if not isinstance(d, dict):
                raise ValueError("it must hold a mapping of size, crop_ratio, mean, std")
            return cls.from_dict(d)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{path}: {e}; re-create the bundle with `edgeres deploy`") from None

    def resize_crop(self, img: Image.Image) -> Image.Image:
        img = to_rgb(img)
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
        return self(open_image(path))


def to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB. 16-bit (and 32-bit integer or float) greyscale is scaled to 8 bits, not clipped at 255 as PIL's
    ``convert("RGB")`` does (a 16-bit PNG would turn almost white)."""
    if img.mode in ("RGB",):
        return img
    if img.mode.startswith("I") or img.mode == "F":
        arr = np.asarray(img).astype(np.float64)
        top = float(arr.max()) if arr.size else 0.0
        if img.mode == "F":
            full = 1.0 if top <= 1.0 else 255.0
        else:  # I;16*: 16 bits; I: 16-bit data (PNG) unless it only holds 8-bit values
            full = 65535.0 if img.mode.startswith("I;16") or top > 255 else 255.0
        arr = np.clip(np.rint(arr * (255.0 / full)), 0, 255).astype(np.uint8)
        img = Image.fromarray(arr, "L")
    return img.convert("RGB")


class ImageError(ValueError):
    """An image file that cannot be decoded (corrupt, not an image, or larger than the decompression-bomb limit)."""


def open_image(path) -> Image.Image:
    """Decode an image file as 8-bit RGB, or raise ImageError naming the file and the reason.

    PIL refuses images of more than twice ``Image.MAX_IMAGE_PIXELS`` (a decompression bomb: a tiny file declaring
    e.g. 20000 x 20000 pixels); that is reported as a bad image too, not a traceback.
    """
    from PIL import UnidentifiedImageError

    from edgeres_deploy.fsio import kind_problem, path_kind

    try:
        kind = path_kind(path)
    except OSError:  # a link loop, no permission: PIL's open below reports it as the unreadable image it is
        kind = "file"
    if kind not in ("file", "missing", "folder"):  # a named pipe is never opened: it would block until a writer came
        raise ImageError(kind_problem(path, "file", "image"))
    try:
        with Image.open(path) as img:
            img.load()
            return to_rgb(img)
    except Image.DecompressionBombError as e:
        raise ImageError(f"{path}: {str(e).split(',')[0]} (a possible decompression bomb)") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as e:
        raise ImageError(f"{path}: {type(e).__name__}: {e}") from None


def list_images(folder) -> list:
    """Image files directly in ``folder`` (sorted), by extension. A name with an image extension that is a named pipe,
    a socket or a device raises ImageError naming it: never listed, it is never opened by any reader (one would wait
    forever). A dangling link stays listed: reading it fails as a corrupt image does (--skip-corrupt skips it)."""
    import os

    from edgeres_deploy.fsio import kind_problem, path_kind

    out = []
    with os.scandir(folder) as it:
        for e in it:
            if not e.name.lower().endswith(IMAGE_EXTENSIONS):
                continue
            try:
                special = not e.is_file() and path_kind(e.path) not in ("missing", "file", "folder")
            except OSError:  # a link loop, no permission: reported when it is read (a corrupt image)
                special = False
            if special:
                raise ImageError(f"{kind_problem(e.path, 'file', 'image')}; remove it from {folder}")
            out.append(e.path)
    return sorted(out)


def imagefolder_samples(root) -> tuple[list, list]:
    """(samples, classes) of an ImageFolder root: one sub-folder a class, sorted. samples = [(path, class_index)]."""
    import os

    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
    samples = [(p, i) for i, c in enumerate(classes) for p in list_images(os.path.join(root, c))]
    return samples, classes
