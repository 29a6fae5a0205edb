"""The training input pipeline that feeds a GPU: JPEG decoded by nvJPEG and augmented as batched tensors on the device.

The CPU path (``ImageDataset`` + ``train_transform``: PIL decode and augmentation one image at a time in the workers)
kept a GPU busy about a quarter of the time. Here the workers only read files:

- a JPEG travels as its bytes; ``torchvision.io.decode_jpeg(list, device="cuda")`` decodes the whole batch with
  nvJPEG on the GPU (on a CPU device the same call decodes with libjpeg-turbo, the same pixels as PIL);
- PNG and every other format (and a ``.jpg`` that is not a JPEG) is decoded in the worker by the CPU path's own
  decoder (``load_rgb``: PIL, 16-bit scaled), then sent to the device as uint8;
- a batch nvJPEG refuses (CMYK, a corrupt file) is decoded image by image, each one falling back to PIL, so a bad file
  is named (or skipped with ``--skip-corrupt``) as on the CPU path;
- :class:`BatchAugment` applies :class:`~edgeres.data.transforms.AugmentRecipe` to the batch on the device (the random
  draws are made on the CPU from a seeded generator: the same crops, flips, angles and factors on any device), then
  the evaluation's normalisation (the same ``Preprocess`` mean and std as evaluation and the device);
- a batch crosses from a worker as one :class:`EncodedBatch` (a few tensors, not one per image);
- :class:`DevicePrefetcher` prepares batch k+1 on a side CUDA stream in a thread while the model trains on batch k.

Everything but nvJPEG and the side stream runs on CPU tensors too, which is how the tests check it.
"""

from __future__ import annotations

import math
import queue
import threading
import warnings
from contextlib import nullcontext
from typing import NamedTuple

import numpy as np

from edgeres.data.folder import load_rgb, skips_corrupt
from edgeres.data.transforms import AugmentRecipe, Preprocess
from edgeres.errors import DataError

JPEG_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".jfif")
JPEG_MAGIC = b"\xff\xd8\xff"
GRAY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale (v2/functional/_color.py at 0.29.1)


def is_jpeg_name(path: str) -> bool:
    return str(path).lower().endswith(JPEG_EXTENSIONS)


class EncodedImages:
    """A map-style dataset: (payload, target, path), where payload is a JPEG file's bytes (1-D uint8 tensor) or, for
    any other image, the decoded uint8 CHW tensor. With ``skip_corrupt`` an unreadable non-JPEG file is replaced by
    the next readable one (as ``ImageDataset`` does); a corrupt JPEG is found, and skipped, at decode time."""

    def __init__(self, samples: list, skip_corrupt: bool = False):
        if not samples:
            raise DataError("no images to load (the split is empty)")
        self.samples = list(samples)
        self.skip_corrupt = skips_corrupt(skip_corrupt)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, idx: int):
        import torch

        for k in range(len(self.samples)):
            path, target = self.samples[(idx + k) % len(self.samples)]
            if is_jpeg_name(path):
                data = _read(path)
                if data[:3] == JPEG_MAGIC:
                    return torch.frombuffer(bytearray(data), dtype=torch.uint8), target, path
            try:  # not a JPEG (or unreadable): the CPU path's decoder, and its message
                arr = np.asarray(load_rgb(path))
            except DataError as e:
                if not self.skip_corrupt:
                    raise
                warnings.warn(f"skipping corrupt image: {e}")
                continue
            return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous(), target, path
        raise DataError("every image in the split is unreadable")


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


class EncodedBatch(NamedTuple):
    """A batch packed into one byte tensor: a worker hands the main process a few tensors per batch, not one per
    image (each tensor crossing a process is a file descriptor: hundreds per batch exhaust the open-file limit)."""

    data: object  # uint8, every payload back to back
    offsets: object  # int64 [n + 1]: payload i is data[offsets[i]:offsets[i + 1]]
    shapes: object  # int64 [n, 3]: the decoded CHW shape, or zeros for JPEG bytes
    targets: object  # int64 [n]
    paths: list

    def payloads(self) -> list:
        out = []
        for i in range(len(self.paths)):
            p = self.data[int(self.offsets[i]) : int(self.offsets[i + 1])]
            c, h, w = (int(v) for v in self.shapes[i])
            out.append(p.view(c, h, w) if c else p)
        return out


def collate_encoded(batch: list) -> EncodedBatch:
    """[(payload, target, path)] -> one EncodedBatch (payloads differ in size and kind)."""
    import torch

    payloads = [b[0] for b in batch]
    sizes = torch.as_tensor([0] + [p.numel() for p in payloads], dtype=torch.int64)
    shapes = torch.as_tensor([list(p.shape) if p.dim() == 3 else [0, 0, 0] for p in payloads], dtype=torch.int64)
    return EncodedBatch(torch.cat([p.reshape(-1) for p in payloads]), sizes.cumsum(0), shapes,
                        torch.as_tensor([b[1] for b in batch], dtype=torch.int64), [b[2] for b in batch])


def _decode_one(data, path: str, device, skip_corrupt: bool):
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    try:
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
    except RuntimeError:  # nvJPEG / libjpeg refused it (CMYK, a truncated file...): the CPU path's decoder decides
        try:
            arr = np.asarray(load_rgb(path))
        except DataError as e:
            if not skip_corrupt:
                raise
            warnings.warn(f"skipping corrupt image: {e}")
            return None
        return torch.from_numpy(arr.copy()).permute(2, 0, 1).to(device)


def decode_batch(batch: EncodedBatch, device, skip_corrupt: bool = False) -> tuple[list, object]:
    """([uint8 CHW tensors on ``device``], targets on ``device``): JPEG bytes decoded together (nvJPEG on CUDA), the
    rest copied over. Images that cannot be decoded are skipped (with ``skip_corrupt``) or raise DataError."""
    from torchvision.io import ImageReadMode, decode_jpeg

    payloads, targets, paths = batch.payloads(), batch.targets, batch.paths
    out = [None] * len(payloads)
    jpegs = [i for i, p in enumerate(payloads) if p.dim() == 1]
    if jpegs:
        try:
            decoded = decode_jpeg([payloads[i] for i in jpegs], mode=ImageReadMode.RGB, device=device)
        except RuntimeError:  # one bad file fails the whole batched call: decode one by one
            decoded = [_decode_one(payloads[i], paths[i], device, skips_corrupt(skip_corrupt)) for i in jpegs]
        for i, img in zip(jpegs, decoded):
            out[i] = img
    for i, p in enumerate(payloads):
        if p.dim() == 3:
            out[i] = p.to(device, non_blocking=True)
    keep = [i for i, img in enumerate(out) if img is not None]
    targets = targets.to(device, non_blocking=True)
    if len(keep) < len(out):
        if not keep:
            raise DataError(f"every image of a batch is unreadable (e.g. {paths[0]})")
        import torch

        targets = targets[torch.as_tensor(keep, device=device)]
    return [out[i] for i in keep], targets


def crop_box(height: int, width: int, scale: tuple, ratio: tuple, gen) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a random resized crop: torchvision's ``RandomResizedCrop.get_params``
    (transforms/transforms.py at 0.29.1), drawing from ``gen`` instead of the global generator."""
    import torch

    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1], generator=gen).item()
        aspect = math.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1], generator=gen).item())
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            i = int(torch.randint(0, height - h + 1, (1,), generator=gen).item())
            j = int(torch.randint(0, width - w + 1, (1,), generator=gen).item())
            return i, j, h, w
    in_ratio = width / height  # fallback: the central crop within the ratio range
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def _blend(x, other, factor):
    return (factor * x + (1.0 - factor) * other).clamp_(0.0, 1.0)


def _gray(x):
    r, g, b = x.unbind(1)
    return (GRAY[0] * r + GRAY[1] * g + GRAY[2] * b).unsqueeze(1)


def rotate_batch(x, degrees):
    """Rotate each square image of an NCHW batch by its own angle (degrees, counter-clockwise, as torchvision's
    ``rotate``) about its centre: nearest neighbour, zeros outside, output the same size."""
    import torch
    import torch.nn.functional as F

    rad = torch.deg2rad(degrees.to(x.device, x.dtype))
    cos, sin = torch.cos(rad), torch.sin(rad)
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


class BatchAugment:
    """``recipe`` on a batch of uint8 CHW images of any sizes on one device -> float32 NCHW, normalised with ``pre``.

    Per image: the random resized crop (resized with antialiasing to ``pre.size``), the flip, the rotation angle, the
    three jitter factors and their order. All random draws come from a CPU generator seeded with ``seed``.
    """

    def __init__(self, pre: Preprocess, recipe: AugmentRecipe | None = None, seed: int = 0, channels_last: bool = True):
        import torch

        self.pre, self.recipe = pre, recipe or AugmentRecipe()
        self.gen = torch.Generator().manual_seed(seed)
        self.channels_last = channels_last
        self._norm: dict = {}

    def crops(self, images: list):
        """Each image's crop resized to ``pre.size`` (float, 0..1), stacked."""
        import torch
        import torch.nn.functional as F

        s, r = self.pre.size, self.recipe
        out = torch.empty((len(images), 3, s, s), dtype=torch.float32, device=images[0].device)
        for k, img in enumerate(images):
            top, left, h, w = crop_box(img.shape[-2], img.shape[-1], (r.min_scale, 1.0), r.ratio, self.gen)
            crop = img[:, top : top + h, left : left + w].unsqueeze(0).float()
            out[k] = F.interpolate(crop, size=(s, s), mode="bilinear", align_corners=False, antialias=True)[0]
        return out.div_(255.0).clamp_(0.0, 1.0)

    def draws(self, n: int) -> dict:
        """The per-image random values after the crop: flip mask, angle, jitter factors and order (CPU tensors)."""
        import torch

        r, g = self.recipe, self.gen
        factors = torch.empty((n, 3)).uniform_(max(0.0, 1 - r.jitter), 1 + r.jitter, generator=g)
        return {"flip": torch.rand(n, generator=g) < r.flip,
                "angle": torch.empty(n).uniform_(-r.rotation, r.rotation, generator=g),
                "factors": factors, "order": torch.stack([torch.randperm(3, generator=g) for _ in range(n)])}

    def __call__(self, images: list):
        import torch

        x = self.crops(images)
        d = {k: v.to(x.device, non_blocking=True) for k, v in self.draws(len(images)).items()}
        x = torch.where(d["flip"].view(-1, 1, 1, 1), x.flip(-1), x)
        if self.recipe.rotation:
            x = rotate_batch(x, d["angle"])
        if self.recipe.jitter:
            x = self.jitter(x, d["factors"], d["order"])
        mean, std = self._mean_std(x.device)
        x = (x - mean) / std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    @staticmethod
    def jitter(x, factors, order):
        """Brightness, contrast, saturation (torchvision's adjust_* on float images), each image in its own order."""
        import torch

        ops = (lambda x, f: _blend(x, torch.zeros_like(x), f),
               lambda x, f: _blend(x, _gray(x).mean(dim=(1, 2, 3), keepdim=True), f),
               lambda x, f: _blend(x, _gray(x), f))
        for step in range(3):
            for j, op in enumerate(ops):
                sel = (order[:, step] == j).view(-1, 1, 1, 1)
                x = torch.where(sel, op(x, factors[:, j].view(-1, 1, 1, 1)), x)
        return x

    def _mean_std(self, device):
        import torch

        if device not in self._norm:
            self._norm[device] = (torch.tensor(self.pre.mean, device=device).view(1, 3, 1, 1),
                                  torch.tensor(self.pre.std, device=device).view(1, 3, 1, 1))
        return self._norm[device]


_END = object()


class DevicePrefetcher:
    """Iterate ``loader`` (batches of ``collate_encoded``) as (images, targets) ready on ``device``.

    A thread decodes and augments the next ``depth`` batches while the caller trains on the current one; on CUDA it
    works on its own stream, and the caller's stream waits for each batch's event (the tensors are marked as used by
    the caller's stream, so the caching allocator does not hand their memory back early). Breaking out of the loop
    stops the thread. An error in the thread (an unreadable image) is raised in the caller.
    """

    def __init__(self, loader, augment: BatchAugment, device, skip_corrupt: bool = False, depth: int = 2):
        self.loader, self.augment, self.device = loader, augment, device
        self.skip_corrupt, self.depth = skip_corrupt, depth

    def __len__(self) -> int:
        return len(self.loader)

    def _prepare(self, batch: EncodedBatch):
        images, targets = decode_batch(batch, self.device, self.skip_corrupt)
        return self.augment(images), targets

    def _work(self, q: queue.Queue, stop: threading.Event) -> None:
        import torch

        cuda = self.device.type == "cuda"
        if cuda:  # a new thread starts on device 0: a DDP rank on cuda:N decodes and allocates on its own GPU
            torch.cuda.set_device(self.device)
        stream = torch.cuda.Stream(self.device) if cuda else None
        try:
            with torch.no_grad():  # never inference_mode: the batches go through autograd afterwards
                for batch in self.loader:
                    if stop.is_set():
                        return
                    with torch.cuda.stream(stream) if cuda else nullcontext():
                        x, y = self._prepare(batch)
                        event = torch.cuda.Event() if cuda else None
                        if cuda:
                            event.record(stream)
                    if not _put(q, (x, y, event), stop):
                        return
            _put(q, _END, stop)
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            _put(q, e, stop)

    def __iter__(self):
        import torch

        q: queue.Queue = queue.Queue(maxsize=self.depth)
        stop = threading.Event()
        worker = threading.Thread(target=self._work, args=(q, stop), daemon=True, name="edgeres-prefetch")
        worker.start()
        try:
            while True:
                item = q.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                x, y, event = item
                if event is not None:
                    current = torch.cuda.current_stream(self.device)
                    current.wait_event(event)
                    x.record_stream(current)
                    y.record_stream(current)
                yield x, y
        finally:
            stop.set()
            while worker.is_alive():
                try:
                    q.get(timeout=0.05)
                except queue.Empty:
                    pass
            worker.join()


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def gpu_train_loader(samples: list, pre: Preprocess, device, batch_size: int, recipe: AugmentRecipe | None = None,
                     workers: int = 0, sampler=None, seed: int = 0, drop_last: bool = False,
                     skip_corrupt: bool = False, channels_last: bool = True) -> DevicePrefetcher:
    """The GPU path's training batches: workers read files (pinned, 4 batches ahead each), the device decodes and
    augments (see the module's docstring). ``seed`` orders the shuffle and draws the augmentation."""
    import torch
    from torch.utils.data import DataLoader

    dl = DataLoader(EncodedImages(samples, skip_corrupt), batch_size=batch_size, shuffle=sampler is None,
                    sampler=sampler, num_workers=workers, collate_fn=collate_encoded,
                    pin_memory=device.type == "cuda", drop_last=drop_last,
                    generator=torch.Generator().manual_seed(seed), persistent_workers=workers > 0,
                    prefetch_factor=4 if workers > 0 else None)
    return DevicePrefetcher(dl, BatchAugment(pre, recipe, seed, channels_last), device, skip_corrupt)
