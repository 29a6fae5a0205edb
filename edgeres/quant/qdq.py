"""Small reads and clean-ups of a Q/DQ ONNX graph shared by the quantization modules: the summary of its quantizers,
the layers that run INT8, unused initializers and dead nodes."""

from __future__ import annotations

import numpy as np

from edgeres.onnx_graph import producers as _producers

PASS_THROUGH = ("MaxPool", "GlobalAveragePool", "AveragePool", "Flatten", "Reshape", "Identity")


def drop_unused_initializers(model) -> None:
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    keep = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)


def qdq_summary(model) -> dict:
    """Counts of Q/DQ nodes by dtype, zero-points seen, quantized/float Conv layers."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    producer = _producers(model)
    dtypes: dict = {}
    nonzero_zp = 0
    for n in model.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2 and n.input[2] in inits:
            zp = numpy_helper.to_array(inits[n.input[2]])
            dtypes[str(zp.dtype)] = dtypes.get(str(zp.dtype), 0) + 1
            nonzero_zp += int(np.any(zp != 0))
    float_convs, int8_convs = [], []
    for n in model.graph.node:
        if n.op_type in ("Conv", "Gemm", "MatMul"):
            p = producer.get(n.input[0])
            # a DQ before MaxPool/pooling/flatten still feeds the layer INT8 data (TensorRT moves the DQ across them)
            while p is not None and p.op_type in PASS_THROUGH:
                p = producer.get(p.input[0])
            (int8_convs if p is not None and p.op_type == "DequantizeLinear" else float_convs).append(n.name)
    return {"qdq_dtypes": dtypes, "nonzero_zero_points": nonzero_zp, "int8_layers": len(int8_convs),
            "float_layers": float_convs}


def int8_layers(qmodel) -> list:
    """Conv/Gemm nodes whose weights are quantized (a DequantizeLinear feeds their weight input)."""
    producer = _producers(qmodel)
    return [n.name for n in qmodel.graph.node if n.op_type in ("Conv", "Gemm", "MatMul") and len(n.input) > 1
            and producer.get(n.input[1]) is not None and producer[n.input[1]].op_type == "DequantizeLinear"]


def remove_dead(model) -> None:
    outs = {o.name for o in model.graph.output}
    while True:
        used = {i for n in model.graph.node for i in n.input} | outs
        keep = [n for n in model.graph.node if any(o in used for o in n.output)]
        if len(keep) == len(model.graph.node):
            break
        del model.graph.node[:]
        model.graph.node.extend(keep)
    drop_unused_initializers(model)
