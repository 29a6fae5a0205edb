"""The training batches, by either path, ready on the training device: what the training loop iterates.

``--pipeline auto`` (the default) takes the GPU path when training on CUDA and the CPU path otherwise:

- ``gpu`` (:mod:`edgeres.data.gpu_pipeline`): workers read files; JPEG decoded by nvJPEG, other formats by PIL in the
  workers; the augmentation as batched tensor ops on the device; a prefetch thread on a side stream;
- ``cpu``: ``ImageDataset`` + ``train_transform`` (PIL decode and augmentation per image in the workers), the batch
  copied to the device (from pinned memory on CUDA);
- ``dali`` (``pip install 'edgeres[dali]'``): NVIDIA DALI's mixed-device decoder and GPU augmentation
  (:mod:`edgeres.data.dali_pipeline`), CUDA only.

All three apply the same :class:`~edgeres.data.transforms.AugmentRecipe` and the evaluation's ``Preprocess``
normalisation. On the CPU (``auto``, no workers asked for) the batches are exactly those of the loader before the GPU
path existed: same transforms, same generator, same draws.
"""

from __future__ import annotations

import os

from edgeres.data.transforms import AugmentRecipe, Preprocess
from edgeres.errors import EdgeresError

PIPELINES = ("auto", "gpu", "cpu", "dali")


def choose_pipeline(mode: str, device) -> str:
    """The path ``mode`` means on ``device``; EdgeresError where it cannot run."""
    if mode not in PIPELINES:
        raise EdgeresError(f"unknown --pipeline {mode!r}; use one of {', '.join(PIPELINES)}")
    if mode == "auto":
        return "gpu" if device.type == "cuda" else "cpu"
    if mode == "dali":
        if device.type != "cuda":
            raise EdgeresError("--pipeline dali decodes and augments on a CUDA GPU; none is used here "
                               "(use --pipeline cpu or gpu)")
        try:
            import nvidia.dali  # noqa: F401
        except ImportError:
            raise EdgeresError("--pipeline dali needs NVIDIA DALI: pip install 'edgeres[dali]'") from None
    return mode


def default_workers(device, local_world: int = 1) -> int:
    """Loader workers when none are asked for: on CUDA the cores this process may use, shared by the processes of
    this node (DDP), one left for the training loop; on the CPU none (the model's own threads use the cores, and the
    augmentation draws stay those of the single-process loader)."""
    if device.type != "cuda":
        return 0
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, local_world) - 1)


class DeviceBatches:
    """A DataLoader's (images, targets) moved to ``device`` in ``memory_format`` (non-blocking from pinned memory)."""

    def __init__(self, loader, device, memory_format):
        self.loader, self.device, self.memory_format = loader, device, memory_format

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        import torch

        nb = self.device.type == "cuda"
        for x, y in self.loader:
            yield (x.to(self.device, memory_format=self.memory_format, non_blocking=nb),
                   torch.as_tensor(y).to(self.device, non_blocking=nb))


def make_train_loader(samples: list, pre: Preprocess, device, *, batch_size: int, pipeline: str = "auto",
                      recipe: AugmentRecipe | None = None, workers: int | None = None, sampler=None, seed: int = 0,
                      drop_last: bool = False, skip_corrupt: bool = False, channels_last: bool = True,
                      local_world: int = 1, shard: tuple = (0, 1)):
    """Training batches on ``device`` (``len()`` batches an epoch); ``sampler`` (DDP) or a shuffle seeded by ``seed``.
    ``shard`` = (rank, world) for the DALI reader, which shards by itself. Returns (batches, path, workers)."""
    import torch
    from torch.utils.data import DataLoader

    from edgeres.data.folder import ImageDataset
    from edgeres.data.transforms import train_transform

    path = choose_pipeline(pipeline, device)
    workers = default_workers(device, local_world) if workers is None else workers
    recipe = recipe or AugmentRecipe()
    if path == "gpu":
        from edgeres.data.gpu_pipeline import gpu_train_loader

        return gpu_train_loader(samples, pre, device, batch_size, recipe, workers, sampler, seed + shard[0],
                                drop_last, skip_corrupt, channels_last), path, workers
    if path == "dali":
        from edgeres.data.dali_pipeline import dali_train_loader

        return dali_train_loader(samples, pre, device, batch_size, recipe, workers, seed, shard, drop_last,
                                 channels_last), path, workers
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    ds = ImageDataset(samples, train_transform(pre, recipe=recipe), skip_corrupt)
    extra = {"persistent_workers": True, "prefetch_factor": 4} if workers > 0 else {}
    dl = DataLoader(ds, batch_size=batch_size, shuffle=sampler is None, sampler=sampler, num_workers=workers,
                    drop_last=drop_last, generator=torch.Generator().manual_seed(seed),
                    pin_memory=device.type == "cuda", **extra)
    return DeviceBatches(dl, device, fmt), path, workers
