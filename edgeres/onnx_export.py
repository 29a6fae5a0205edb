"""ONNX export: opset 17 to 20 (edgeres.options.OPSET_RANGE), dynamic or fixed batch, BatchNorm folded, checker-clean, simplified (onnxslim),
preprocessing metadata stored in the model, and a parity check against PyTorch on real validation images."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from edgeres.errors import EdgeresError
from edgeres.options import OPSET_RANGE

INPUT_NAME, OUTPUT_NAME = "input", "logits"


@dataclass
class ExportConfig:
    opset: int = 17
    dynamic_batch: bool = True
    batch: int = 1  # the batch of a fixed-batch export
    simplify: bool = True
    parity_images: int = 64
    parity_atol: float = 1e-3  # relative to the logit scale: max|Δ| <= atol * max(1, max|logit|)
    parity_min_agreement: float = 99.0


def set_metadata(model_proto, meta: dict) -> None:
    existing = {p.key: p for p in model_proto.metadata_props}
    for k, v in meta.items():
        text = v if isinstance(v, str) else json.dumps(v)
        if k in existing:
            existing[k].value = text
        else:
            p = model_proto.metadata_props.add()
            p.key, p.value = k, text


def edgeres_metadata(meta, pre) -> dict:
    return {"edgeres.classes": list(meta.classes), "edgeres.preprocess": pre.to_dict(), "edgeres.arch": meta.arch,
            "edgeres.sparsity": meta.sparsity or "", "edgeres.source": meta.source_format}


def export_onnx(model, out_path, pre, meta, cfg: ExportConfig | None = None) -> dict:
    """Write ``out_path`` atomically; returns {"opset", "nodes", "batchnorm_left", "simplified"}."""
    import onnx
    import torch

    from edgeres.utils import atomic_path

    cfg = cfg or ExportConfig()
    lo, hi = OPSET_RANGE
    if not lo <= cfg.opset <= hi:
        raise EdgeresError(f"opset {cfg.opset}: edgeres exports opset {lo} to {hi} (TensorRT 8.5 parses up to 17; "
                           f"torch.onnx's exporter writes up to {hi})")
    model = model.eval().cpu()
    dummy = torch.randn(cfg.batch, 3, pre.size, pre.size)
    dynamic = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if cfg.dynamic_batch else None
    with atomic_path(out_path) as tmp:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (dummy,), str(tmp), dynamo=False, opset_version=cfg.opset,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_axes=dynamic,
                              do_constant_folding=True)
        proto = onnx.load(str(tmp))
        simplified = False
        if cfg.simplify:
            import onnxslim

            proto = onnxslim.slim(proto)
            simplified = True
        left = sum(n.op_type == "BatchNormalization" for n in proto.graph.node)
        if left:
            raise EdgeresError(f"{left} BatchNormalization nodes were not folded into convolutions; export in eval mode")
        set_metadata(proto, edgeres_metadata(meta, pre))
        proto.producer_name = "edgeres"
        onnx.checker.check_model(proto, full_check=True)
        onnx.save(proto, str(tmp))
    return {"opset": cfg.opset, "nodes": len(proto.graph.node), "batchnorm_left": left, "simplified": simplified,
            "dynamic_batch": cfg.dynamic_batch}


def parity_check(model, onnx_path, samples, pre, cfg: ExportConfig | None = None, raise_on_fail: bool = True) -> dict:
    """Compare PyTorch and ONNX Runtime logits on up to ``parity_images`` real images (max |Δlogit|, agreement)."""
    import torch

    from edgeres.metrics import agreement, iter_batches, run_padded
    from edgeres.runtimes.ort import OrtRuntime

    cfg = cfg or ExportConfig()
    ref, got = [], []
    with OrtRuntime(onnx_path) as rt, torch.inference_mode():
        bs = rt.fixed_batch or 16
        take = samples[: cfg.parity_images] if samples else []
        if not take:
            rng = np.random.default_rng(0)
            batches = [(rng.standard_normal((bs, 3, pre.size, pre.size)).astype(np.float32), None)]
            source = "random inputs (no images given)"
        else:
            batches = iter_batches(take, pre, bs)
            source = f"{len(take)} validation images"
        for x, _ in batches:
            ref.append(run_padded(lambda b: model(torch.from_numpy(b)).numpy(), x, rt.fixed_batch))
            got.append(run_padded(rt.run, x, rt.fixed_batch))
    ref, got = np.concatenate(ref), np.concatenate(got)
    res = agreement(got, ref)
    scale = max(1.0, float(np.abs(ref).max()))
    res.update(source=source, tolerance=cfg.parity_atol * scale,
               passed=res["max_abs_dlogit"] <= cfg.parity_atol * scale and res["agreement"] >= cfg.parity_min_agreement)
    if raise_on_fail and not res["passed"]:
        raise EdgeresError(f"ONNX export of {onnx_path} does not match PyTorch: max |Δlogit| {res['max_abs_dlogit']:.3g} "
                           f"(tolerance {res['tolerance']:.3g}), top-1 agreement {res['agreement']:.1f}%")
    return res


def export_checked(model, out, pre, meta, cfg: ExportConfig, samples) -> dict:
    """Export, then check parity against PyTorch on ``samples``; a file that does not match is deleted, not left
    behind as if it were good. The info dict gains ``parity``."""
    import os

    info = export_onnx(model, out, pre, meta, cfg)
    try:
        info["parity"] = parity_check(model, out, samples, pre, cfg)
    except EdgeresError:
        os.unlink(out)
        raise
    return info
