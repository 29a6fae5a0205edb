"""Measurement core: accuracy, latency, memory. Every stage is measured by these functions, the same way.

The statistics are plain functions of recorded samples (a clock can be injected), so they are tested
deterministically; the wall-clock goals themselves live in ``benchmarks/``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np

# one definition for host and device: the bundle's runtime computes the same statistics
from edgeres_deploy.metrics import LatencyStats, measure_latency, run_padded, summarize_latencies, topk_accuracy

__all__ = ["LatencyStats", "agreement", "default_threads", "initializer_source", "iter_batches", "measure_latency", "module_device", "onnx_macs_params",
           "peak_rss_mb", "per_class_accuracy", "run_logits", "run_padded", "summarize_latencies", "topk_accuracy",
           "torch_macs_params"]


# ---------------------------------------------------------------------------------------------------- accuracy
def per_class_accuracy(logits: np.ndarray, targets: np.ndarray, classes: list) -> dict:
    pred = np.asarray(logits).argmax(1)
    targets = np.asarray(targets)
    out = {}
    for i, c in enumerate(classes):
        m = targets == i
        out[c] = float((pred[m] == i).mean() * 100.0) if m.any() else None
    return out


def agreement(logits: np.ndarray, reference: np.ndarray) -> dict:
    """Share (percent) of equal top-1 predictions and the largest absolute logit difference."""
    logits, reference = np.asarray(logits, np.float32), np.asarray(reference, np.float32)
    if logits.shape != reference.shape:
        raise ValueError(f"logits {logits.shape} and reference {reference.shape} differ in shape")
    return {
        "agreement": float((logits.argmax(1) == reference.argmax(1)).mean() * 100.0),
        "max_abs_dlogit": float(np.abs(logits - reference).max()) if logits.size else 0.0,
    }


def iter_batches(samples: list, pre, batch_size: int = 32, skip_corrupt: bool = False):
    """Yield (float32 NCHW array, int64 targets) over [(path, class)] with the shared eval preprocessing."""
    from edgeres.data.folder import ImageDataset

    ds = ImageDataset(samples, pre, skip_corrupt)
    for start in range(0, len(ds), batch_size):
        items = [ds[i] for i in range(start, min(len(ds), start + batch_size))]
        yield np.stack([x for x, _ in items]), np.asarray([y for _, y in items], np.int64)


def run_logits(runtime, samples: list, pre, batch_size: int = 32, progress: str | None = None,
               skip_corrupt: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Logits of a runtime over samples (batched; a fixed-batch artifact gets its batch size). The runtime is used
    inside ``with``: within the caller's own ``with`` it stays open for the caller, else it is closed here."""
    from edgeres.progress import bar

    outs, tgts = [], []
    with runtime:
        bs = runtime.fixed_batch or batch_size
        n_batches = math.ceil(len(samples) / bs)
        for x, y in bar(iter_batches(samples, pre, bs, skip_corrupt), total=n_batches, desc=progress,
                        enabled=progress is not None, unit="batch"):
            outs.append(run_padded(runtime.run, x, runtime.fixed_batch))
            tgts.append(y)
    return np.concatenate(outs), np.concatenate(tgts)


# ---------------------------------------------------------------------------------------------------- latency
def default_threads() -> int:
    """Physical cores: the thread count every runtime is pinned to unless told otherwise."""
    try:
        import psutil

        return psutil.cpu_count(logical=False) or os.cpu_count() or 1
    except ImportError:  # pragma: no cover
        return os.cpu_count() or 1


# ---------------------------------------------------------------------------------------------------- memory
def initializer_source(model):
    """A function: tensor name -> the initializer it comes from through DequantizeLinear/Identity/Cast/Transpose
    (so a Q/DQ weight resolves to its stored tensor), or the name itself."""
    from edgeres.onnx_graph import producers as _producers

    inits = {i.name for i in model.graph.initializer}
    producer = _producers(model)

    def source(name):
        while name not in inits and name in producer and producer[name].op_type in (
                "DequantizeLinear", "Identity", "Cast", "Transpose"):
            name = producer[name].input[0]
        return name

    return source


def onnx_macs_params(path_or_model, batch: int = 1) -> tuple[int, int]:
    """(MACs, params) of an ONNX classifier at batch ``batch``, from the graph: Conv and Gemm/MatMul work.

    Weights are followed through DequantizeLinear, so a Q/DQ INT8 file counts the same work as its FP32 source.
    """
    import onnx
    from onnx import shape_inference

    model = onnx.load(str(path_or_model)) if not isinstance(path_or_model, onnx.ModelProto) else path_or_model
    model = onnx.ModelProto.FromString(model.SerializeToString())  # a copy: the batch is fixed below
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if dims and not dims[0].HasField("dim_value"):
        dims[0].ClearField("dim_param")
        dims[0].dim_value = batch
    model = shape_inference.infer_shapes(model)
    inits = {i.name: i for i in model.graph.initializer}
    shapes = {}
    for vi in list(model.graph.value_info) + list(model.graph.output) + list(model.graph.input):
        shapes[vi.name] = [d.dim_value for d in vi.type.tensor_type.shape.dim]
    weight = initializer_source(model)
    macs, params = 0, 0
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        w = inits.get(weight(node.input[1]))
        if w is None:
            continue
        wshape = list(w.dims)
        params += int(np.prod(wshape))
        if len(node.input) > 2 and node.input[2]:
            b = inits.get(weight(node.input[2]))
            if b is not None:
                params += int(np.prod(list(b.dims)))
        out = shapes.get(node.output[0])
        if not out or 0 in out:
            continue
        if node.op_type == "Conv":
            macs += int(np.prod(out)) * int(np.prod(wshape[1:]))
        else:
            k = wshape[0] if node.op_type == "MatMul" else (wshape[1] if _trans_b(node) else wshape[0])
            macs += int(np.prod(out)) * int(k)
    return macs, params


def _trans_b(node) -> bool:
    return any(a.name == "transB" and a.i == 1 for a in node.attribute)


def module_device(model):
    """The device of a module's first parameter or buffer (CPU for a module that has none)."""
    import itertools

    import torch

    for t in itertools.chain(model.parameters(), model.buffers()):
        return t.device
    return torch.device("cpu")


def torch_macs_params(model, input_size: int, batch: int = 1) -> tuple[int, int]:
    """(MACs, params) of a PyTorch classifier, counted with an input on the model's own device (a CUDA model given a
    CPU input raised, and the torch rows of a GPU host had no MACs)."""
    import torch
    import torch_pruning as tp

    was_training = model.training
    model.eval()
    x = torch.randn(batch, 3, input_size, input_size, device=module_device(model))
    macs, params = tp.utils.count_ops_and_params(model, x)
    if not macs:  # a torch.export program (or TorchScript) has no Conv modules to hook: count its ATen ops instead
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(x)
        macs = counter.get_total_flops() // 2
    model.train(was_training)
    return int(macs), int(params)


def peak_rss_mb(runtime: str, artifact: str, input_shape: tuple, runs: int = 10, threads: int | None = None,
                timeout: float = 600.0, **options) -> float | None:
    """Peak resident memory (MB) of a fresh process that loads ``artifact`` in ``runtime`` and runs it ``runs`` times."""
    spec = {"runtime": runtime, "artifact": str(artifact), "shape": list(input_shape), "runs": runs,
            "threads": threads, "options": options}
    proc = subprocess.run([sys.executable, "-m", "edgeres.runtimes.probe", json.dumps(spec)],
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        return None
    try:
        return float(json.loads(proc.stdout.strip().splitlines()[-1])["peak_rss_mb"])
    except (ValueError, KeyError, IndexError):
        return None
