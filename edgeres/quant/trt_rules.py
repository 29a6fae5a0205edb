"""Graph rules for the TensorRT INT8 file (``trt-qdq``), applied after NNCF: every Q/DQ signed INT8 with zero-point 0
(onnx-tensorrt rejects UINT8 QuantizeLinear) and TensorRT's Q/DQ placement for residual Adds (Conv+Add fusion)."""

from __future__ import annotations

import numpy as np

from edgeres.onnx_graph import consumers as _consumers
from edgeres.onnx_graph import producers as _producers
from edgeres.quant.qdq import PASS_THROUGH, drop_unused_initializers


def apply_trt_add_rule(model) -> list:
    """For each Add fed on both sides by Q/DQ, drop the Q/DQ pair on the branch that a Conv produces (the main
    branch's Conv when both are Convs, as in a downsample block).

    That is TensorRT's Q/DQ placement for residual blocks (Conv+Add fusion): the quantized skip input and the Conv
    accumulate into one fused kernel. Returns the names of the Adds changed.
    """
    producer = _producers(model)
    consumers = _consumers(model)
    remove, changed = set(), []
    depth = None
    for add in [n for n in model.graph.node if n.op_type == "Add"]:
        branches = []
        for idx, name in enumerate(add.input):
            dq = producer.get(name)
            # a DQ before MaxPool & co. still quantizes this input (TensorRT moves the DQ across them): a skip
            # branch, never removed
            p = dq
            while p is not None and p.op_type in PASS_THROUGH:
                p = producer.get(p.input[0])
            if p is not dq and p is not None and p.op_type == "DequantizeLinear":
                branches.append((idx, None, None, None))
                continue
            q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
            if q is None or q.op_type != "QuantizeLinear":
                branches = []
                break
            src = producer.get(q.input[0])
            branches.append((idx, dq, q, src))
        if len(branches) != 2:
            continue
        conv_side = [b for b in branches if b[3] is not None and b[3].op_type == "Conv"]
        if not conv_side:
            continue
        if len(conv_side) == 2:
            # a downsample block: the shortcut is a Conv too. The main branch is the deeper Conv (the shortcut Conv
            # reads the block's input, which the main branch's first Conv reads as well); it loses its Q/DQ, the
            # shortcut keeps them, as for the other Adds.
            if depth is None:
                depth = _depths(model)
            conv_side.sort(key=lambda b: depth.get(b[3].output[0], 0), reverse=True)
        idx, dq, q, src = conv_side[0]
        # only if the Q/DQ pair feeds nothing but this Add
        if len(consumers.get(dq.output[0], [])) != 1 or len(consumers.get(q.output[0], [])) != 1:
            continue
        add.input[idx] = q.input[0]
        remove.update((id(dq), id(q)))
        changed.append(add.name)
    keep = [n for n in model.graph.node if id(n) not in remove]
    del model.graph.node[:]
    model.graph.node.extend(keep)
    drop_unused_initializers(model)
    return changed


def _depths(model) -> dict:
    """{tensor: the number of compute nodes (Q/DQ not counted) on the longest path from the graph inputs}."""
    d: dict = {}
    for n in model.graph.node:  # ONNX graphs are topologically sorted
        k = max((d.get(i, 0) for i in n.input), default=0)
        k += 0 if n.op_type in ("QuantizeLinear", "DequantizeLinear") else 1
        for o in n.output:
            d[o] = k
    return d


def force_signed_int8(model) -> int:
    """Rewrite every UINT8 QuantizeLinear/DequantizeLinear to signed INT8 with zero-point 0 (TensorRT's only form).

    A symmetric unsigned quantizer covers [0, 255*s]; the signed one with s' = 255*s/127 covers [-127*s', 127*s'],
    the same upper bound, with one bit less resolution for non-negative tensors (what TensorRT's own calibration
    gives a post-ReLU tensor too). An asymmetric one is widened to amax = max(|lo|, |hi|) of its range.
    Returns the number of Q/DQ nodes rewritten.
    """
    from onnx import TensorProto, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    cache: dict = {}
    changed = 0
    retyped: set = set()
    for n in model.graph.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(n.input) < 3 or n.input[2] not in inits:
            continue
        zp_init = inits[n.input[2]]
        if zp_init.data_type != TensorProto.UINT8:
            continue
        key = (n.input[1], n.input[2])
        if key not in cache:
            s = numpy_helper.to_array(inits[n.input[1]]).astype(np.float32)
            z = numpy_helper.to_array(zp_init).astype(np.float32)
            lo, hi = (0 - z) * s, (255 - z) * s
            new_s = (np.maximum(np.abs(lo), np.abs(hi)) / 127.0).astype(np.float32)
            s_name, z_name = f"{n.input[1]}_s8", f"{n.input[2]}_s8"
            model.graph.initializer.extend([numpy_helper.from_array(new_s, s_name),
                                            numpy_helper.from_array(np.zeros(z.shape, np.int8), z_name)])
            cache[key] = (s_name, z_name)
        n.input[1], n.input[2] = cache[key]
        changed += 1
        if n.op_type == "QuantizeLinear":
            retyped.add(n.output[0])
    for vi in model.graph.value_info:  # the Q outputs' declared type follows the zero-point
        if vi.name in retyped:
            vi.type.tensor_type.elem_type = TensorProto.INT8
    drop_unused_initializers(model)
    return changed
