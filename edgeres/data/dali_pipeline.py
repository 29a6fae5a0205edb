"""NVIDIA DALI as the training input pipeline (``--pipeline dali``, ``pip install 'edgeres[dali]'``), CUDA only.

The same :class:`~edgeres.data.transforms.AugmentRecipe` in DALI's operators (DALI 1.40+ and 2.x, ``nvidia.dali.fn``):
``readers.file`` (sharded per DDP rank, shuffled with the seed) -> ``decoders.image_random_crop`` on the ``mixed``
device (nvJPEG, the hardware JPEG decoder where the GPU has one; PNG and others on the CPU) with the recipe's area and
aspect ranges -> ``resize`` to ``pre.size`` (antialiased) -> ``rotate`` (nearest, black corners, same size) ->
``color_twist`` (brightness, contrast, saturation factors in 1 +/- jitter; DALI applies them in one fixed order where
torchvision draws an order per image) -> ``crop_mirror_normalize`` (the flip, and the evaluation's mean and std, CHW
float). Batches arrive on the GPU through ``nvidia.dali.plugin.pytorch.DALIGenericIterator``.
"""

from __future__ import annotations

from edgeres.data.transforms import AugmentRecipe, Preprocess


def build_dali_pipeline(files: list, labels: list, pre: Preprocess, recipe: AugmentRecipe, batch_size: int,
                        threads: int, device_id: int | None, seed: int, shard: tuple):
    """The pipeline on GPU ``device_id`` (decoding on the ``mixed`` device); ``device_id=None`` builds the same graph
    on the CPU only (how it is checked without a GPU)."""
    from nvidia.dali import fn, pipeline_def, types

    @pipeline_def(batch_size=batch_size, num_threads=max(1, threads), device_id=device_id, seed=seed)
    def train_pipe():
        jpegs, label = fn.readers.file(files=files, labels=labels, random_shuffle=True, shard_id=shard[0],
                                       num_shards=shard[1], seed=seed, name="Reader")
        images = fn.decoders.image_random_crop(jpegs, device="cpu" if device_id is None else "mixed",
                                               output_type=types.RGB,
                                               random_area=[recipe.min_scale, 1.0],
                                               random_aspect_ratio=list(recipe.ratio), num_attempts=10)
        images = fn.resize(images, resize_x=pre.size, resize_y=pre.size, interp_type=types.INTERP_LINEAR,
                           antialias=True)
        if recipe.rotation:
            images = fn.rotate(images, angle=fn.random.uniform(range=[-recipe.rotation, recipe.rotation]),
                               keep_size=True, fill_value=0, interp_type=types.INTERP_NN)
        if recipe.jitter:
            lo, hi = max(0.0, 1 - recipe.jitter), 1 + recipe.jitter
            images = fn.color_twist(images, brightness=fn.random.uniform(range=[lo, hi]),
                                    contrast=fn.random.uniform(range=[lo, hi]),
                                    saturation=fn.random.uniform(range=[lo, hi]))
        images = fn.crop_mirror_normalize(images, dtype=types.FLOAT, output_layout="CHW",
                                          mean=[255.0 * m for m in pre.mean], std=[255.0 * s for s in pre.std],
                                          mirror=fn.random.coin_flip(probability=recipe.flip))
        return images, (label if device_id is None else label.gpu())

    return train_pipe()


class DaliBatches:
    """DALIGenericIterator's batches as (images NCHW float on the GPU, int64 targets), ``len()`` batches an epoch."""

    def __init__(self, pipe, device, n_samples: int, batch_size: int, shard: tuple, drop_last: bool,
                 channels_last: bool):
        from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

        pipe.build()
        policy = LastBatchPolicy.DROP if drop_last else LastBatchPolicy.PARTIAL
        self.it = DALIGenericIterator([pipe], ["data", "label"], reader_name="Reader", last_batch_policy=policy,
                                      auto_reset=True)
        per_shard = -(-n_samples // shard[1])
        self.n = per_shard // batch_size if drop_last else -(-per_shard // batch_size)
        self.device, self.channels_last = device, channels_last

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        import torch

        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        for batch in self.it:
            x, y = batch[0]["data"], batch[0]["label"]
            yield x.contiguous(memory_format=fmt), y.view(-1).long()


def dali_train_loader(samples: list, pre: Preprocess, device, batch_size: int, recipe: AugmentRecipe,
                      workers: int, seed: int, shard: tuple, drop_last: bool, channels_last: bool) -> DaliBatches:
    files = [p for p, _ in samples]
    labels = [int(c) for _, c in samples]
    pipe = build_dali_pipeline(files, labels, pre, recipe, batch_size, workers, device.index or 0, seed, shard)
    return DaliBatches(pipe, device, len(samples), batch_size, shard, drop_last, channels_last)
