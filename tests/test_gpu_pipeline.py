"""The GPU input pipeline's code, run on CPU tensors: decode_jpeg on the CPU (libjpeg-turbo) gives PIL's pixels, the
batched augmentation matches torchvision's per-image transforms draw for draw, and the prefetcher delivers, stops and
reports errors. Only nvJPEG and the side CUDA stream need a GPU (benchmarks/gpu_check.sh)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms.v2 import functional as F

from edgeres.data import Preprocess
from edgeres.data.folder import load_rgb
from edgeres.data.gpu_pipeline import (
    BatchAugment,
    EncodedImages,
    collate_encoded,
    crop_box,
    decode_batch,
    gpu_train_loader,
    rotate_batch,
)
from edgeres.data.loaders import choose_pipeline, default_workers, make_train_loader
from edgeres.data.transforms import AugmentRecipe
from edgeres.errors import DataError

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Two classes of images in every kind the pipeline meets: JPEG (colour, grey, CMYK), PNG, a PNG named .jpg."""
    root = tmp_path_factory.mktemp("mixed")
    rng = np.random.default_rng(0)
    samples = []
    for c in range(2):
        d = root / f"class{c}"
        d.mkdir()
        for k in range(5):
            arr = (rng.random((40 + 3 * k, 56 - 2 * k, 3)) * 255).astype(np.uint8)
            img = Image.fromarray(arr)
            name, save = [(f"{k}.jpg", lambda p, i=img: i.save(p, "JPEG", quality=90)),
                          (f"{k}.jpeg", lambda p, i=img: i.convert("L").save(p, "JPEG")),
                          (f"{k}.jpg", lambda p, i=img: i.convert("CMYK").save(p, "JPEG")),
                          (f"{k}.png", lambda p, i=img: i.save(p, "PNG")),
                          (f"{k}.jpg", lambda p, i=img: i.save(p, "PNG"))][k]
            save(d / name)
            samples.append((str(d / name), c))
    return samples


def test_decoded_pixels_are_the_cpu_paths(folder):
    ds = EncodedImages(folder)
    batch = collate_encoded([ds[i] for i in range(len(ds))])
    assert batch.data.dim() == 1 and len(batch.offsets) == len(ds) + 1  # one tensor for the whole batch
    assert [p.dim() for p in batch.payloads()[:5]] == [1, 1, 1, 3, 3]  # JPEG bytes travel; PNG (even named .jpg) decoded
    images, y = decode_batch(batch, CPU)
    assert y.tolist() == [s[1] for s in folder]
    for img, (path, _) in zip(images, folder):
        assert img.dtype == torch.uint8 and img.shape[0] == 3
        assert np.array_equal(img.permute(1, 2, 0).numpy(), np.asarray(load_rgb(path))), path


def test_corrupt_jpeg_is_named_or_skipped(tmp_path, folder):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(open(folder[0][0], "rb").read()[:200])  # a truncated JPEG: starts right, cannot decode
    samples = [folder[0], (str(bad), 1), folder[1]]
    batch = collate_encoded([EncodedImages(samples)[i] for i in range(3)])
    with pytest.raises(DataError, match="bad.jpg"):
        decode_batch(batch, CPU)
    with pytest.warns(UserWarning, match="skipping corrupt image"):
        images, y = decode_batch(batch, CPU, skip_corrupt=True)
    assert len(images) == 2 and y.tolist() == [0, 0]


def test_crop_box_is_torchvisions_draw_for_draw():
    img = torch.zeros(3, 37, 91)  # wide: some draws fall back to the central crop
    for seed in range(20):
        torch.manual_seed(seed)
        ref = T.RandomResizedCrop.get_params(img, [0.35, 1.0], [3 / 4, 4 / 3])
        assert crop_box(37, 91, (0.35, 1.0), (3 / 4, 4 / 3), torch.Generator().manual_seed(seed)) == ref


def test_rotation_is_torchvisions_per_image():
    x = torch.rand(3, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    angles = torch.tensor([7.0, -9.5, 0.0])
    out = rotate_batch(x, angles)
    for k, a in enumerate(angles.tolist()):
        assert torch.equal(out[k], F.rotate(x[k], a, interpolation=F.InterpolationMode.NEAREST))


def test_jitter_is_torchvisions_in_each_images_order():
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    factors = torch.tensor([[0.8, 1.2, 1.0], [1.1, 0.9, 0.85], [1.0, 1.0, 1.2], [0.95, 1.15, 0.8]])
    order = torch.tensor([[0, 1, 2], [2, 1, 0], [1, 0, 2], [2, 0, 1]])
    out = BatchAugment.jitter(x, factors, order)
    ops = (F.adjust_brightness, F.adjust_contrast, F.adjust_saturation)
    for k in range(4):
        ref = x[k]
        for j in order[k].tolist():
            ref = ops[j](ref, factors[k, j].item())
        torch.testing.assert_close(out[k], ref, atol=1e-6, rtol=0)


def test_normalisation_is_the_evaluations():
    """With every random step off, a square image of the training size comes out as Preprocess normalises it."""
    pre = Preprocess(size=24, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    arr = (np.random.default_rng(0).random((24, 24, 3)) * 255).astype(np.uint8)
    aug = BatchAugment(pre, AugmentRecipe(min_scale=1.0, ratio=(1.0, 1.0), flip=0.0, rotation=0.0, jitter=0.0))
    out = aug([torch.from_numpy(arr).permute(2, 0, 1)])
    assert out.is_contiguous(memory_format=torch.channels_last) and out.dtype == torch.float32
    np.testing.assert_allclose(out[0].numpy(), pre.normalize(Image.fromarray(arr)), atol=1e-6)


def test_augmentation_is_seeded_and_varied(folder):
    pre = Preprocess(size=32)
    images, _ = decode_batch(collate_encoded([EncodedImages(folder)[i] for i in range(6)]), CPU)
    a, b, c = (BatchAugment(pre, seed=s)(images) for s in (0, 0, 1))
    assert a.shape == (6, 3, 32, 32) and torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])


def test_loader_delivers_stops_and_raises(tmp_path, folder):
    pre = Preprocess(size=32)
    threads = threading.active_count()
    dl = gpu_train_loader(folder, pre, CPU, batch_size=4, seed=0, drop_last=True)
    batches = list(dl)
    assert len(dl) == len(batches) == 2 and all(x.shape == (4, 3, 32, 32) for x, _ in batches)
    seen = sum((y.tolist() for _, y in batches), [])
    assert len(seen) == 8 and set(seen) == {0, 1}  # 8 of the 10 images (drop_last), both classes, shuffled
    for _ in dl:  # leaving early stops the prefetch thread
        break
    assert threading.active_count() == threads
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff" + b"\0" * 100)
    with pytest.raises(DataError, match="bad.jpg"):
        list(gpu_train_loader([(str(bad), 0)] * 4, pre, CPU, batch_size=2))
    assert threading.active_count() == threads


def test_default_workers():
    assert default_workers(CPU) == 0  # the CPU path's numerics and threads stay as they were
    cores = len(__import__("os").sched_getaffinity(0))
    assert default_workers(torch.device("cuda", 0)) == max(1, cores - 1)
    assert default_workers(torch.device("cuda", 0), local_world=64) == 1


def test_pipeline_choice():
    assert choose_pipeline("auto", CPU) == "cpu" and choose_pipeline("auto", torch.device("cuda", 0)) == "gpu"
    assert choose_pipeline("gpu", CPU) == "gpu"  # the same code on CPU tensors
    with pytest.raises(Exception, match="--pipeline dali decodes and augments on a CUDA GPU"):
        choose_pipeline("dali", CPU)
    with pytest.raises(Exception, match="unknown --pipeline 'fast'"):
        choose_pipeline("fast", CPU)


def test_cpu_path_is_the_loader_of_before(demo_data):
    """On the CPU the default path yields exactly the batches of the loader fit() built before (same dataset, same
    transforms, same generator): `--amp off` training keeps its numerics."""
    from torch.utils.data import DataLoader

    from edgeres.data import ImageDataset, resolve_data, train_transform

    samples = resolve_data(demo_data).train[:24]
    pre = Preprocess(size=32)
    torch.manual_seed(3)
    old = DataLoader(ImageDataset(samples, train_transform(pre, min_scale=0.35)), batch_size=8, shuffle=True,
                     num_workers=0, drop_last=True, generator=torch.Generator().manual_seed(5))
    ref = [(x.to(CPU, memory_format=torch.channels_last), torch.as_tensor(y)) for x, y in old]
    torch.manual_seed(3)
    new, path, workers = make_train_loader(samples, pre, CPU, batch_size=8, seed=5, drop_last=True)
    assert (path, workers, len(new)) == ("cpu", 0, 3)
    for (a, ya), (b, yb) in zip(ref, new):
        assert torch.equal(a, b) and torch.equal(ya, yb) and b.is_contiguous(memory_format=torch.channels_last)


def test_dali_graph_on_the_cpu(tmp_path):
    """The DALI pipeline's graph (edgeres[dali]) built on the CPU: batches, epochs, and with every random step off the
    evaluation's normalisation (a PNG, so that no JPEG decoder difference enters)."""
    pytest.importorskip("nvidia.dali")
    from edgeres.data.dali_pipeline import DaliBatches, build_dali_pipeline

    pre = Preprocess(size=24, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    rng = np.random.default_rng(0)
    arrays, samples = [], []
    for k in range(6):
        arrays.append((rng.random((24, 24, 3)) * 255).astype(np.uint8))
        Image.fromarray(arrays[-1]).save(tmp_path / f"{k}.png")
        samples.append((str(tmp_path / f"{k}.png"), k % 2))
    off = AugmentRecipe(min_scale=1.0, ratio=(1.0, 1.0), flip=0.0, rotation=0.0, jitter=0.0)
    files, labels = [p for p, _ in samples], [c for _, c in samples]
    plain = DaliBatches(build_dali_pipeline(files, labels, pre, off, 3, 1, None, 0, (0, 1)), CPU, 6, 3, (0, 1),
                        True, True)
    got = {}
    for x, y in plain:
        assert x.shape == (3, 3, 24, 24) and x.is_contiguous(memory_format=torch.channels_last) and y.dtype == torch.int64
        for img in x:
            k = min(range(6), key=lambda i: float((img - torch.from_numpy(pre.normalize(Image.fromarray(arrays[i])))).abs().max()))
            got[k] = float((img - torch.from_numpy(pre.normalize(Image.fromarray(arrays[k])))).abs().max())
    assert sorted(got) == list(range(6)) and max(got.values()) < 1e-4
    aug = DaliBatches(build_dali_pipeline(files, labels, pre, AugmentRecipe(), 3, 1, None, 0, (0, 1)), CPU, 6, 3,
                      (0, 1), True, True)
    assert len(aug) == 2 and sum(1 for _ in aug) == 2 and sum(1 for _ in aug) == 2  # a second epoch resets
