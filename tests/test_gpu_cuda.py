"""The GPU paths on a real CUDA device (skipped without one; benchmarks/gpu_check.sh runs them on a GPU host):
nvJPEG against the CPU decoder, the batched augmentation on CUDA against the same code on CPU tensors, the prefetcher's
side stream, mixed precision in fit(), and the report figures of a torch row measured on the GPU."""

from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available())")]

CUDA = torch.device("cuda", 0)


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory):
    import numpy as np

    from edgeres.data.demo import render

    root = tmp_path_factory.mktemp("jpegs")
    samples = []
    for k in range(12):
        p = root / f"c{k % 2}" / f"{k}.jpg"
        p.parent.mkdir(exist_ok=True)
        render(k % 10, np.random.default_rng(k), 96 + 8 * k).save(p, "JPEG", quality=90)
        samples.append((str(p), k % 2))
    return samples


def _batch(samples):
    from edgeres.data.gpu_pipeline import EncodedImages, collate_encoded

    ds = EncodedImages(samples)
    return collate_encoded([ds[i] for i in range(len(ds))])


def test_nvjpeg_decodes_the_cpu_decoders_pixels(jpegs):
    from edgeres.data.gpu_pipeline import decode_batch

    gpu, y = decode_batch(_batch(jpegs), CUDA)
    cpu, _ = decode_batch(_batch(jpegs), torch.device("cpu"))
    assert y.device.type == "cuda" and all(g.device.type == "cuda" for g in gpu)
    for g, c in zip(gpu, cpu):
        assert g.shape == c.shape
        d = (g.cpu().int() - c.int()).abs()
        assert d.float().mean() < 1.0 and d.max() <= 16  # IDCT and upsampling differ by a few levels at most


def test_augmentation_on_cuda_is_the_cpu_codes(jpegs):
    from edgeres.data import Preprocess
    from edgeres.data.gpu_pipeline import BatchAugment, decode_batch

    cpu, _ = decode_batch(_batch(jpegs), torch.device("cpu"))
    a = BatchAugment(Preprocess(size=64), seed=3)([c.to(CUDA) for c in cpu])
    b = BatchAugment(Preprocess(size=64), seed=3)(cpu)
    assert a.device.type == "cuda" and a.is_contiguous(memory_format=torch.channels_last)
    assert (a.cpu() - b).abs().mean() < 1e-3  # same draws; only float rounding of the resize differs


def test_prefetcher_on_a_side_stream(jpegs):
    from edgeres.data import Preprocess
    from edgeres.data.gpu_pipeline import gpu_train_loader

    dl = gpu_train_loader(jpegs, Preprocess(size=64), CUDA, batch_size=4, workers=2, drop_last=True)
    sums = [float(x.float().sum()) for x, y in dl]  # used on the default stream right away
    assert len(sums) == 3 and all(s == s for s in sums)


@pytest.mark.parametrize("amp", ["auto", "fp16", "off"])
def test_fit_on_cuda_with_each_precision(tmp_path, demo_data, amp):
    from edgeres.data import Preprocess
    from edgeres.train.config import TrainConfig
    from edgeres.train.transfer import train_model

    res = train_model(demo_data, tmp_path / "m.pt", arch="resnet18", pre=Preprocess(size=32), progress=False,
                      cfg=TrainConfig(epochs=2, batch_size=16, max_steps_per_epoch=3, amp=amp))
    assert res["history"][-1]["train_images_per_s"] > 0 and res["best_top1"] >= 0


def test_torch_row_on_cuda_has_macs_memory_and_the_gpus_name(tiny_ckpt, demo_data):
    from edgeres.data import Preprocess, resolve_data
    from edgeres.measure import MeasureConfig, measure

    m = measure("baseline", tiny_ckpt, "torch", Preprocess(size=32), resolve_data(demo_data).val,
                MeasureConfig(batch_sizes=(1, 8), min_time_s=0.2, memory=False), progress=False)
    name = torch.cuda.get_device_name(0)
    for r in m.rows:
        assert r["device"] == f"cuda:{name}" and r["macs"] and r["macs"] > 1e6
        total = torch.cuda.get_device_properties(0).total_memory / 1e6
        assert 0 < r["gpu_mem_mb"] < total
    assert m.rows[1]["gpu_mem_mb"] >= m.rows[0]["gpu_mem_mb"]  # batch 8 holds more activations than batch 1


def test_onnxruntime_rows_say_their_device(tiny_onnx):
    import onnxruntime as ort

    from edgeres.runtimes import load_runtime

    with load_runtime("onnxruntime", tiny_onnx) as rt:
        if "CUDAExecutionProvider" in ort.get_available_providers():
            assert rt.device == f"cuda:{torch.cuda.get_device_name(0)}" and rt.providers[0] == "CUDAExecutionProvider"
        else:
            assert rt.device == "cpu"
