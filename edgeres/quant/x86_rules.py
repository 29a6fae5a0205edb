"""Graph rules for the ``x86-cpu`` INT8 file (``ort-u8s8``), applied after NNCF: rewrites that let ONNX Runtime and
OpenVINO run more of the network in INT8. All but ``split_gemm_bias`` are exact (the outputs do not change by a bit);
that one changes only the float summation order of the classifier's bias.

* ``requantize_passthrough``: NNCF quantizes a MaxPool's input but not its output, so the layers after the stem's MaxPool
  (ResNet's ``layer1.0.conv1``, its downsample and the first residual Add) took float input and ran in FP32 in ONNX
  Runtime; OpenVINO's CPU plugin refused to compile that graph at all ("No suitable implementations"). The max of
  values on a quantization grid is on that grid, so a Q/DQ pair with the *input's* scale and zero-point after the
  MaxPool changes no value and gives the consumers INT8 input — the placement ONNX Runtime's own ``quantize_static``
  uses (MaxPool's input and output share their quantization parameters). The same holds for the head's Flatten
  (and a Reshape): without a Q/DQ after it, the classifier's Gemm had float input, so ONNX Runtime ran it in FP32 and
  dequantized its 2048x1000 int8 weight on every call (about 1 ms of ResNet50's 9 at batch 1); after it, the Gemm
  fuses into QGemm as in ``quantize_static``.
* ``fold_relu_into_quantize``: a Relu between an op and a uint8 quantizer with zero-point 0 is a no-op (the
  quantizer clamps negatives to 0), and it split the residual ``Add -> Q`` pattern; OpenVINO's CPU plugin could not
  compile NNCF's ``Add -> Relu -> Q`` residual blocks either.
* ``split_gemm_bias``: the classifier's float bias moved into an Add after the Gemm, so ONNX Runtime fuses the Gemm
  into QGemm (it wants every Gemm input dequantized, the bias included).
* ``activations_to_uint8``: int8 activations become uint8 with zero-point + 128 (same values), ONNX Runtime's x86
  fast path.
"""

from __future__ import annotations

from edgeres.onnx_graph import consumers as _consumers
from edgeres.onnx_graph import producers as _producers

PASSTHROUGH_OPS = ("MaxPool", "Flatten", "Reshape")  # ops whose outputs are some of their input's values, unchanged


def requantize_passthrough(model) -> int:
    """After every MaxPool / Flatten / Reshape fed by a DequantizeLinear with a per-tensor scale and not followed by
    one, add Q/DQ with the input's parameters (exact: the output's values are input values, already on the grid).

    Returns the number of ops given a quantized output.
    """
    import numpy as np
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}

    def per_tensor(scale: str) -> bool:
        return scale in inits and np.prod(numpy_helper.to_array(inits[scale]).shape, dtype=int) == 1

    producer, consumers = _producers(model), _consumers(model)
    graph_outputs = {o.name for o in model.graph.output}
    changed = 0
    new_nodes = []
    for n in model.graph.node:
        new_nodes.append(n)
        if n.op_type not in PASSTHROUGH_OPS or len(n.output) != 1:
            continue
        dq = producer.get(n.input[0])
        if dq is None or dq.op_type != "DequantizeLinear" or len(dq.input) < 3 or not per_tensor(dq.input[1]):
            continue
        out = n.output[0]
        users = consumers.get(out, [])
        if not users or out in graph_outputs or any(u.op_type == "QuantizeLinear" for u in users):
            continue
        scale, zp = dq.input[1], dq.input[2]
        q_out, dq_out = f"{out}_q8", f"{out}_dq8"
        new_nodes.append(helper.make_node("QuantizeLinear", [out, scale, zp], [q_out], name=f"{n.name or out}_requant_q"))
        new_nodes.append(helper.make_node("DequantizeLinear", [q_out, scale, zp], [dq_out], name=f"{n.name or out}_requant_dq"))
        for u in users:
            for i, name in enumerate(u.input):
                if name == out:
                    u.input[i] = dq_out
        changed += 1
    if changed:
        del model.graph.node[:]
        model.graph.node.extend(new_nodes)
    return changed


def fold_relu_into_quantize(model) -> int:
    """Drop every Relu whose output feeds only uint8 QuantizeLinear nodes with zero-point 0.

    Such a quantizer already maps every negative value to 0 (uint8 saturation at the zero-point), so
    Q(Relu(x)) == Q(x) exactly; without the Relu between them, an Add and its quantizer form the QLinearAdd-style
    pattern both runtimes fuse (ONNX Runtime's ``quantize_static`` quantizes the Add's output the same way).
    Returns the number of Relus removed.
    """
    import numpy as np
    from onnx import TensorProto, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    consumers = _consumers(model)
    graph_outputs = {o.name for o in model.graph.output}

    def zero_uint8(q) -> bool:
        if len(q.input) < 3 or q.input[2] not in inits or inits[q.input[2]].data_type != TensorProto.UINT8:
            return False
        return bool(np.all(numpy_helper.to_array(inits[q.input[2]]) == 0))

    drop = []
    for n in model.graph.node:
        if n.op_type != "Relu" or n.output[0] in graph_outputs:
            continue
        users = consumers.get(n.output[0], [])
        if not users or not all(u.op_type == "QuantizeLinear" and u.input[0] == n.output[0] and zero_uint8(u) for u in users):
            continue
        for u in users:
            u.input[0] = n.input[0]
        drop.append(id(n))
    if drop:
        keep = [n for n in model.graph.node if id(n) not in set(drop)]
        del model.graph.node[:]
        model.graph.node.extend(keep)
    return len(drop)


def split_gemm_bias(model) -> int:
    """Move a float bias out of every Gemm whose two inputs come from DequantizeLinear into an Add after it.

    ONNX Runtime fuses DQ -> Gemm into QGemm only when *every* input is dequantized (its Gemm selector counts the bias
    as an input and wants it int32; ``quantize_static`` quantizes the bias for that). Moving the float bias into its
    own Add keeps it float — a 1000-element add — and lets the Gemm fuse into QGemm with float output, instead of
    running in FP32 and dequantizing the int8 weight on every call. Same values up to float summation order.
    Returns the number of Gemms split.
    """
    from onnx import helper

    producer = _producers(model)
    inits = {i.name for i in model.graph.initializer}
    changed = 0
    new_nodes = []
    for n in model.graph.node:
        new_nodes.append(n)
        if n.op_type != "Gemm" or len(n.input) < 3 or not n.input[2] or n.input[2] not in inits:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        if attrs.get("beta", 1.0) != 1.0 or not all(
                getattr(producer.get(i), "op_type", None) == "DequantizeLinear" for i in n.input[:2]):
            continue
        bias, out = n.input[2], n.output[0]
        del n.input[2]
        n.output[0] = f"{out}_nobias"
        new_nodes.append(helper.make_node("Add", [n.output[0], bias], [out], name=f"{n.name or out}_bias"))
        changed += 1
    if changed:
        del model.graph.node[:]
        model.graph.node.extend(new_nodes)
    return changed


def activations_to_uint8(model) -> int:
    """Rewrite int8 activation Q/DQ pairs (not weights: those are initializers) to uint8 with zero-point + 128.

    q_u8 = q_s8 + 128 for every value, so the dequantized tensor is identical; ONNX Runtime's x86 fast path is
    uint8 activations with int8 weights (VNNI), and NNCF's MIXED preset gives the signed network input int8.
    Returns the number of Q/DQ nodes rewritten.
    """
    import numpy as np
    from onnx import TensorProto, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    quantized_by_q = {n.output[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    done: dict = {}
    changed = 0
    for n in model.graph.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(n.input) < 3 or n.input[2] not in inits:
            continue
        if n.op_type == "DequantizeLinear" and n.input[0] not in quantized_by_q:
            continue  # a weight's DQ (int8 initializer): keep signed
        zp = inits[n.input[2]]
        if zp.data_type != TensorProto.INT8:
            continue
        if n.input[2] not in done:
            z = numpy_helper.to_array(zp).astype(np.int16) + 128
            name = f"{n.input[2]}_u8"
            model.graph.initializer.append(numpy_helper.from_array(z.astype(np.uint8), name))
            done[n.input[2]] = name
        n.input[2] = done[n.input[2]]
        changed += 1
    retyped = {n.output[0] for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[2] in done.values()}
    for vi in model.graph.value_info:
        if vi.name in retyped:
            vi.type.tensor_type.elem_type = TensorProto.UINT8
    used = {i for n in model.graph.node for i in n.input}
    keep = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    return changed


def apply_x86_rules(model) -> dict:
    """Every x86 rule, in order; returns {rule: count}."""
    return {"passthrough_requantized": requantize_passthrough(model), "relu_folded": fold_relu_into_quantize(model),
            "gemm_bias_split": split_gemm_bias(model),
            "activations_to_uint8": activations_to_uint8(model)}
