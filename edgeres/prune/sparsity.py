"""NVIDIA 2:4 sparsity: the two largest of every four weights along the input-channel dimension are kept, which
Ampere-class Jetsons (Orin) run on sparse tensor cores; the masks stay fixed through fine-tuning. Also the check that
an exported ONNX file kept the pattern."""

from __future__ import annotations


def sparse_eligible(module) -> bool:
    """Conv/Linear layers TensorRT can run 2:4-sparse: input channels a multiple of 4 (so not the RGB stem), groups 1."""
    from torch import nn

    if isinstance(module, nn.Conv2d):
        return module.groups == 1 and module.in_channels % 4 == 0 and module.in_channels >= 16
    if isinstance(module, nn.Linear):
        return module.in_features % 4 == 0 and module.in_features >= 16
    return False


def mask_2_4(weight):
    """Mask keeping the 2 largest |w| of each 4 consecutive weights along the input-channel dimension (dim 1)."""
    import torch

    w = weight.detach()
    if w.dim() == 4:
        o, i, kh, kw = w.shape
        g = w.permute(0, 2, 3, 1).reshape(-1, 4)  # groups of 4 input channels at each (out, y, x)
    else:
        o, i = w.shape
        g = w.reshape(-1, 4)
    idx = g.abs().topk(2, dim=1).indices
    m = torch.zeros_like(g).scatter_(1, idx, 1.0)
    if w.dim() == 4:
        return m.reshape(o, kh, kw, i).permute(0, 3, 1, 2).contiguous()
    return m.reshape(o, i)


def apply_2_4(model) -> dict:
    """Apply 2:4 masks to every eligible layer in place; returns {param_name: mask} for fine-tuning."""
    import torch

    masks = {}
    with torch.no_grad():
        for name, m in model.named_modules():
            if sparse_eligible(m):
                mask = mask_2_4(m.weight)
                m.weight.mul_(mask)
                masks[f"{name}.weight"] = mask
    return masks


def is_2_4(array, axis: int = 1) -> bool:
    """True when every group of 4 along ``axis`` (the input-channel axis) has at most 2 non-zeros."""
    import numpy as np

    a = np.moveaxis(np.asarray(array), axis, -1)
    if a.shape[-1] % 4:
        return False
    g = a.reshape(-1, 4)
    return bool(((g != 0).sum(axis=1) <= 2).all())


def check_onnx_2_4(onnx_path) -> dict:
    """Read the exported weights: which Conv/Gemm weights keep the 2:4 pattern (after BN folding)."""
    import onnx
    from onnx import numpy_helper

    from edgeres.metrics import initializer_source

    model = onnx.load(str(onnx_path))
    inits = {i.name: i for i in model.graph.initializer}
    source = initializer_source(model)
    sparse, dense = [], []
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        name = source(node.input[1])
        if name not in inits:
            continue
        w = numpy_helper.to_array(inits[name])
        if w.dtype.kind not in "fi":
            continue
        axis = 1 if node.op_type == "Conv" or (node.op_type == "Gemm" and any(a.name == "transB" and a.i for a in node.attribute)) else 0
        if w.ndim < 2 or w.shape[axis] < 16 or w.shape[axis] % 4:
            continue
        (sparse if is_2_4(w, axis) else dense).append(node.name or name)
    return {"sparse_layers": sparse, "dense_layers": dense}
