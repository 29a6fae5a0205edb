"""Mixed precision: chosen layers of a Q/DQ file put back in floating point (FP32, or explicit FP16 casts for
TensorRT 11's strongly typed networks), and each layer's share of the MACs."""

from __future__ import annotations

import numpy as np

from edgeres.onnx_graph import producers as _producers
from edgeres.quant.qdq import PASS_THROUGH, remove_dead


def layer_macs(fp32_model) -> dict:
    """{Conv/Gemm node name: MACs per image} of an FP32 classifier (static H, W), from ONNX shape inference."""
    import onnx

    m = onnx.shape_inference.infer_shapes(fp32_model)
    shapes = {}
    for vi in list(m.graph.value_info) + list(m.graph.output):
        shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else 0 for d in vi.type.tensor_type.shape.dim]
    inits = {i.name: i for i in m.graph.initializer}
    out = {}
    for n in m.graph.node:
        if n.op_type not in ("Conv", "Gemm", "MatMul") or len(n.input) < 2 or n.input[1] not in inits:
            continue
        w = tuple(inits[n.input[1]].dims)
        if n.op_type == "Conv":
            o = shapes.get(n.output[0], [])
            spatial = int(np.prod(o[2:])) if len(o) > 2 and all(o[2:]) else 0
            out[n.name] = int(np.prod(w)) * spatial  # Cout * Cin/groups * kh * kw * Hout * Wout
        else:
            out[n.name] = int(np.prod(w))
    return out


def _float_source(t, producer: dict, layer: str, before: list):
    """The float version of tensor ``t``: read before its Q/DQ; pass-through ops (MaxPool, pooling, Flatten) on the
    way are duplicated on the float path (appended to ``before``; the quantized path stays for other readers)."""
    import copy

    p = producer.get(t)
    if p is None:
        return t
    if p.op_type == "DequantizeLinear":
        q = producer.get(p.input[0])
        return _float_source(q.input[0], producer, layer, before) if q is not None and q.op_type == "QuantizeLinear" else t
    if p.op_type in PASS_THROUGH:
        src = _float_source(p.input[0], producer, layer, before)
        if src == p.input[0]:
            return t
        dup = copy.deepcopy(p)
        dup.name = f"{p.name}_float_{layer}"
        dup.input[0] = src
        dup.output[0] = f"{p.output[0]}_float_{layer}"
        before.append(dup)
        return dup.output[0]
    return t


def _float_weights(m, n, f, f_inits: dict, have: set) -> None:
    """Layer ``n`` of ``m`` reads the FP32 export's weights and bias (those of its node ``f``)."""
    import copy

    for k in range(1, len(n.input)):
        if k < len(f.input) and f.input[k]:
            n.input[k] = f.input[k]
            if f.input[k] in f_inits and f.input[k] not in have:
                m.graph.initializer.append(copy.deepcopy(f_inits[f.input[k]]))
                have.add(f.input[k])


def _as_fp16(m, n, have: set, before: list, after: list) -> None:
    """Layer ``n`` runs in FP16: a Cast to FP16 before it, FP16 copies of its weights, a Cast back to FP32 after it."""
    from onnx import TensorProto, helper, numpy_helper

    cin = f"{n.input[0]}_fp16_{n.name}"
    before.append(helper.make_node("Cast", [n.input[0]], [cin], to=TensorProto.FLOAT16, name=f"{n.name}_cast_in_fp16"))
    n.input[0] = cin
    for k in range(1, len(n.input)):
        name = n.input[k]
        if name in have and f"{name}_fp16" not in have:
            init = next(i for i in m.graph.initializer if i.name == name)
            m.graph.initializer.append(numpy_helper.from_array(
                numpy_helper.to_array(init).astype(np.float16), f"{name}_fp16"))
            have.add(f"{name}_fp16")
        n.input[k] = f"{name}_fp16"
    out = n.output[0]
    n.output[0] = f"{out}_fp16"
    after.append(helper.make_node("Cast", [n.output[0]], [out], to=TensorProto.FLOAT, name=f"{n.name}_cast_out_fp32"))


def keep_float(qmodel, fp32_model, layers, fp16: bool = False):
    """A copy of the Q/DQ model with ``layers`` (node names) in floating point: their weights back to the FP32
    export's, their input read before its Q/DQ (pass-through ops such as MaxPool are duplicated on the float path;
    the Q/DQ stays for other readers). With ``fp16`` the layers run explicitly in FP16: FP16 weights and a Cast on
    each side (TensorRT 11 is strongly typed: a region is FP16 only when the ONNX says so)."""
    import copy

    m = copy.deepcopy(qmodel)
    layers = set(layers)
    if not layers:
        return m
    f_nodes = {n.name: n for n in fp32_model.graph.node}
    f_inits = {i.name: i for i in fp32_model.graph.initializer}
    have = {i.name for i in m.graph.initializer}
    producer = _producers(m)
    new_nodes: dict = {}  # id(node) -> (nodes before, nodes after)
    for n in m.graph.node:
        if n.name not in layers:
            continue
        _float_weights(m, n, f_nodes[n.name], f_inits, have)
        before, after = [], []
        n.input[0] = _float_source(n.input[0], producer, n.name, before)
        if fp16:
            _as_fp16(m, n, have, before, after)
        new_nodes[id(n)] = (before, after)
    nodes = []
    for n in m.graph.node:
        before, after = new_nodes.get(id(n), ([], []))
        nodes += before + [n] + after
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    del m.graph.value_info[:]  # stale for rewired tensors; nothing downstream needs it
    remove_dead(m)
    return m
