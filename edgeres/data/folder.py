"""ImageFolder datasets: ``DIR/train`` + ``DIR/val``, or one class-per-folder root split deterministically by a seed."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgeres_deploy.preprocess import ImageError, imagefolder_samples, open_image

from edgeres.errors import DataError, require_path


def no_split_line(root, split: str = "val") -> str:
    """What to do about a data folder without a ``split`` split: how to lay it out so that edgeres has one."""
    if split == "train":
        return (f"{root} has no training images: put them in {root}/train/CLASS/*.jpg, or give a folder of class folders "
                f"({root}/CLASS/*.jpg), which edgeres splits into train and val by a seed")
    return (f"{root} has no validation images: add {root}/val/CLASS/*.jpg (the same class folders as {root}/train), or "
            f"give a folder of class folders without train/ and val/ ({root}/CLASS/*.jpg), which edgeres splits by a "
            "seed (a fifth for validation; `edgeres train --val-fraction` sets the share)")


@dataclass
class DataSplits:
    root: str
    classes: list
    train: list  # [(path, class_index)]
    val: list

    def describe(self) -> str:
        return f"{self.root}: {len(self.classes)} classes, {len(self.train)} train / {len(self.val)} val images"


def _scan(root: Path, what: str) -> tuple[list, list]:
    require_path(root, "folder", f"{what} folder", "give an ImageFolder root (DIR/train/CLASS/*.jpg, DIR/val/CLASS/*.jpg)",
                 DataError)
    try:
        samples, classes = imagefolder_samples(root)
    except ImageError as e:  # a name with an image extension that is a folder, a named pipe, a device
        raise DataError(str(e)) from None
    if not classes:
        raise DataError(f"{root} has no class sub-folders; expected one folder per class holding its images")
    counts = {c: 0 for c in classes}
    for _, i in samples:
        counts[classes[i]] += 1
    empty = [c for c, n in counts.items() if n == 0]
    if empty:
        raise DataError(f"class folder {root / empty[0]} holds no images (.jpg/.png/...); add images or remove the folder")
    return samples, classes


def resolve_data(root, val_fraction: float = 0.2, seed: int = 0) -> DataSplits:
    """Find train/val splits under ``root``.

    ``root/train`` and ``root/val`` are used as they are; a root whose sub-folders are classes is split per class
    with ``seed`` (the same seed gives the same split on every machine). A ``val``-only root evaluates only.
    """
    root = Path(root)
    require_path(root, "folder", "data folder", "pass --data pointing at an ImageFolder root", DataError)
    train_dir, val_dir = root / "train", root / "val"
    if train_dir.is_dir() or val_dir.is_dir():
        train, classes = _scan(train_dir, "train") if train_dir.is_dir() else ([], None)
        val, vclasses = _scan(val_dir, "val") if val_dir.is_dir() else ([], None)
        if classes is not None and vclasses is not None and classes != vclasses:
            raise DataError(f"{train_dir} and {val_dir} have different class folders; they must match")
        return DataSplits(str(root), classes or vclasses, train, val)
    samples, classes = _scan(root, "data")
    rng = random.Random(seed)
    train, val = [], []
    for ci in range(len(classes)):
        items = sorted(p for p, i in samples if i == ci)
        rng.shuffle(items)
        n_val = max(1, int(round(len(items) * val_fraction))) if len(items) > 1 else 0
        val += [(p, ci) for p in items[:n_val]]
        train += [(p, ci) for p in items[n_val:]]
    return DataSplits(str(root), classes, sorted(train), sorted(val))


def data_hash(splits: DataSplits, hashes=None) -> str:
    """A fingerprint of the data: class names and every file's relative path, class and CONTENT (a blake2b of its
    bytes, cached by path, size and mtime in ``hashes``, an edgeres.data.filehash.FileHashes, so a re-run stays fast)."""
    from edgeres.data.filehash import FileHashes

    hashes = hashes or FileHashes()
    h = hashlib.sha256()
    h.update("\n".join(splits.classes).encode())
    for split in (splits.train, splits.val):
        # a dangling link or a link loop is fingerprinted as "missing"; loading reports or skips it
        for (path, ci), digest in zip(split, hashes.digests([p for p, _ in split])):
            rel = os.path.relpath(path, splits.root)
            h.update(f"{rel}\t{ci}\t{digest}\n".encode())
    return h.hexdigest()


_RUN_SKIPS_CORRUPT = [False]  # a whole run's --skip-corrupt (optimize): every reader of images skips, not stops


@contextlib.contextmanager
def skipping_corrupt(on: bool):
    """Within the block, every reader of images (evaluation, fine-tuning, calibration, export parity) skips an
    unreadable image with a warning, as each command's own --skip-corrupt does (``edgeres optimize --skip-corrupt``)."""
    old = _RUN_SKIPS_CORRUPT[0]
    _RUN_SKIPS_CORRUPT[0] = bool(on) or old
    try:
        yield
    finally:
        _RUN_SKIPS_CORRUPT[0] = old


def skips_corrupt(asked: bool = False) -> bool:
    """Whether a reader skips unreadable images: asked by its caller, or by the run (:func:`skipping_corrupt`)."""
    return bool(asked) or _RUN_SKIPS_CORRUPT[0]


def load_rgb(path: str):
    """Open an image as 8-bit RGB (16-bit scaled, not clipped), or raise DataError naming the file."""
    try:
        return open_image(path)
    except ImageError as e:
        raise DataError(f"cannot read image {e}; delete or replace it, or pass --skip-corrupt") from None


class ImageDataset:
    """A map-style dataset over [(path, class)] with a transform PIL -> tensor/array.

    With ``skip_corrupt`` an unreadable image is reported once and replaced by the next readable one, so a run goes
    on; without it the first unreadable image stops the run with its name.
    """

    def __init__(self, samples: list, transform: Callable, skip_corrupt: bool = False):
        if not samples:
            raise DataError("no images to load (the split is empty)")
        self.samples = list(samples)
        self.transform = transform
        self.skip_corrupt = skips_corrupt(skip_corrupt)
        self._bad: set = set()

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, idx: int):
        for k in range(len(self.samples)):
            path, target = self.samples[(idx + k) % len(self.samples)]
            if path in self._bad:
                continue
            try:
                img = load_rgb(path)
            except DataError as e:
                if not self.skip_corrupt:
                    raise
                self._bad.add(path)
                warnings.warn(f"skipping corrupt image: {e}")
                continue
            return self.transform(img), target
        raise DataError("every image in the split is unreadable")
