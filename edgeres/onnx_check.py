"""`edgeres check-onnx FILE --target T`: lint an ONNX file against a target's rules, naming each violation's node.

Rules for TensorRT targets: Q/DQ signed INT8 with zero-point 0 (onnx-tensorrt rejects UINT8), weights per-channel on
axis 0, activations per-tensor, opset and operators within what that TensorRT version's ONNX parser supports, an
image input [N, 3, H, W] with static H, W, and a batch the profile allows. For x86-cpu: uint8 activations (the ONNX
Runtime fast path). For targets without INT8 (Jetson Nano): no Q/DQ at all. Mixed files (INT8 with layers kept
float) pass for TensorRT 8.5/10 (the engine builds the float layers in FP16) and 11 (strongly typed: FP16 layers must
be explicit FP16 in the ONNX; an FP32 one is a warning).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeres.errors import EdgeresError
from edgeres.onnx_graph import consumers as _consumers
from edgeres.onnx_graph import producers as _producers

# the highest ONNX opset each TensorRT family's parser accepts
MAX_OPSET = {8: 17, 10: 20, 11: 22}
# ONNX operators onnx-tensorrt parses (the subset a CNN classifier can contain; from the parser's operator list)
TRT_OPS = {
    "Abs", "Add", "ArgMax", "ArgMin", "AveragePool", "BatchNormalization", "Cast", "Ceil", "Clip", "Concat", "Constant",
    "ConstantOfShape", "Conv", "ConvTranspose", "DequantizeLinear", "Div", "Dropout", "Elu", "Equal", "Erf", "Exp",
    "Expand", "Flatten", "Floor", "Gather", "Gemm", "GlobalAveragePool", "GlobalMaxPool", "HardSigmoid", "HardSwish",
    "Identity", "InstanceNormalization", "LeakyRelu", "Log", "LogSoftmax", "MatMul", "Max", "MaxPool", "Mean", "Min",
    "Mul", "Neg", "Pad", "Pow", "PRelu", "QuantizeLinear", "Reciprocal", "ReduceMax", "ReduceMean", "ReduceMin",
    "ReduceSum", "Relu", "Reshape", "Resize", "Selu", "Shape", "Sigmoid", "Slice", "Softmax", "Softplus", "Split",
    "Sqrt", "Squeeze", "Sub", "Sum", "Tanh", "Tile", "TopK", "Transpose", "Unsqueeze", "Where",
}
TRT_OPS_ADDED = {10: {"LayerNormalization", "GroupNormalization"}, 11: {"LayerNormalization", "GroupNormalization"}}


@dataclass
class Violation:
    node: str
    rule: str
    message: str
    severity: str = "error"  # or "warning"

    def __str__(self) -> str:
        return f"{self.severity}: {self.node}: [{self.rule}] {self.message}"


def _array(inits, name):
    from onnx import numpy_helper

    return numpy_helper.to_array(inits[name]) if name in inits else None


def check_model(model, target) -> list:
    """Violations of ``target``'s rules in an ONNX ModelProto (empty list: clean)."""

    out: list = []
    inits = {i.name: i for i in model.graph.initializer}
    producer, consumers = _producers(model), _consumers(model)
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)

    out += _check_io(model, target)
    if target.quant_format == "none" and qdq:
        out.append(Violation(qdq[0].name or qdq[0].output[0], "precision",
                             f"{target.name} has no useful INT8 ({', '.join(target.precisions)}): deploy an FP32/FP16 file, "
                             f"not a Q/DQ one ({len(qdq)} Q/DQ nodes)"))

    if target.runtime == "tensorrt":
        fam = target.trt_family or 10
        max_opset = MAX_OPSET.get(fam, MAX_OPSET[min(MAX_OPSET, key=lambda k: abs(k - fam))])
        if opset > max_opset:
            out.append(Violation("graph", "opset", f"opset {opset} > {max_opset}, the newest TensorRT {target.trt_version} parses; "
                                               f"re-export with --opset {max_opset}"))
        allowed = TRT_OPS | TRT_OPS_ADDED.get(fam, set())
        for n in model.graph.node:
            if n.domain not in ("", "ai.onnx"):
                out.append(Violation(n.name or n.op_type, "op", f"custom-domain op {n.domain}::{n.op_type} needs a TensorRT plugin"))
            elif n.op_type not in allowed:
                out.append(Violation(n.name or n.op_type, "op", f"{n.op_type} is not parsed by TensorRT {target.trt_version}"))
        if target.quant_format == "trt-qdq":
            out += _check_trt_qdq(model, qdq, inits, producer, consumers, fam)
            if qdq and fam >= 11:
                out += _check_strongly_typed_float(model, inits, producer, target)
    elif target.quant_format == "ort-u8s8":
        for n in qdq:
            if n.op_type != "QuantizeLinear" or n.input[0] in inits or len(n.input) < 3:
                continue
            feeds_conv = any(u.op_type == "Conv" and u.input[0] == dq.output[0]
                             for dq in consumers.get(n.output[0], []) if dq.op_type == "DequantizeLinear"
                             for u in consumers.get(dq.output[0], []))
            if not feeds_conv:
                continue
            zp = _array(inits, n.input[2])
            if zp is not None and zp.dtype == np.int8:
                out.append(Violation(n.name or n.output[0], "u8-activations",
                                     "int8 activations: ONNX Runtime's fast x86 path wants uint8 activations (S8S8 runs "
                                     "no faster than FP32 here); quantize with --target x86-cpu", "warning"))
    return out


def _check_io(model, target) -> list:
    """One image input [N, 3, H, W] with static H, W of a sane size, float, and a batch the target's profile allows."""
    from onnx import TensorProto

    if len(model.graph.input) != 1:
        return [Violation("graph", "io", f"expected one image input, found {len(model.graph.input)}")]
    out = []
    inp = model.graph.input[0]
    dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in inp.type.tensor_type.shape.dim]
    if len(dims) != 4 or dims[1] != 3:
        out.append(Violation(inp.name, "shape", f"input shape {dims}: expected [N, 3, H, W]"))
    elif not all(isinstance(d, int) for d in dims[2:]):
        out.append(Violation(inp.name, "shape", f"input H, W must be static for an engine profile, got {dims[2:]}"))
    elif max(dims[2:]) > MAX_SIDE or min(dims[2:]) < 1:
        out.append(Violation(inp.name, "shape", f"input {dims[2]}x{dims[3]} px: a classifier input is 1 to {MAX_SIDE} px a side "
                             "(one image alone would not fit in a device's memory)"))
    elif isinstance(dims[0], int) and dims[0] > target.max_batch:
        out.append(Violation(inp.name, "profile", f"fixed batch {dims[0]} exceeds the target's max batch {target.max_batch}"))
    if inp.type.tensor_type.elem_type not in (TensorProto.FLOAT, TensorProto.FLOAT16):
        out.append(Violation(inp.name, "dtype", "input must be float32 or float16"))
    return out


def _check_trt_qdq(model, qdq, inits, producer, consumers, fam: int = 10) -> list:
    out = []
    for n in qdq:
        name = n.name or n.output[0]
        if len(n.input) < 3 or not n.input[2]:
            # no zero-point input means uint8 with zero point 0 in ONNX; TensorRT 8.5's parser asserts three inputs
            # ("This version of TensorRT requires 3 inputs for the DequantizeLinear operator.", onnx-tensorrt
            # builtin_op_importers.cpp:1193 at release/8.5-GA); 10.x takes two (onnxOpImporters.cpp:1401 at 10.0-GA)
            if fam < 10:
                out.append(Violation(name, "zero-point", f"{n.op_type} has no zero-point input: TensorRT 8.5's ONNX "
                                                         "parser requires three inputs; add an int8 zero-point of 0 "
                                                         "(edgeres quantize writes it)"))
            continue
        zp = _array(inits, n.input[2])
        if zp is None:
            out.append(Violation(name, "zero-point", "zero-point is not a constant initializer"))
            continue
        if zp.dtype != np.int8:
            out.append(Violation(name, "int8", f"{n.op_type} is {zp.dtype.name.upper()}: TensorRT needs signed INT8 "
                                               "(onnx-tensorrt rejects UINT8); quantize with a TensorRT target"))
        if np.any(zp != 0):
            out.append(Violation(name, "zero-point", "zero-point must be 0 (TensorRT quantization is symmetric)"))
        scale = _array(inits, n.input[1])
        if scale is not None and np.any(scale <= 0):
            out.append(Violation(name, "scale", "scale must be positive"))
        if n.op_type != "DequantizeLinear" or scale is None:
            continue
        src_is_weight = n.input[0] in inits or (n.input[0] in producer and producer[n.input[0]].op_type == "QuantizeLinear"
                                                and producer[n.input[0]].input[0] in inits)
        users = consumers.get(n.output[0], [])
        feeds_weight = any(u.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul") and len(u.input) > 1 and u.input[1] == n.output[0]
                           for u in users)
        axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
        w = _array(inits, n.input[0]) if n.input[0] in inits else None
        rank = w.ndim if w is not None else 4
        axis = axis + rank if axis < 0 else axis
        if src_is_weight and feeds_weight:
            if scale.size > 1 and axis != 0:
                out.append(Violation(name, "per-channel", f"weight scales on axis {axis}: TensorRT wants axis 0 (output channels)"))
        elif scale.size != 1:
            out.append(Violation(name, "per-tensor", f"activation quantized per-channel ({scale.size} scales): TensorRT wants per-tensor"))
    return out


def _check_strongly_typed_float(model, inits, producer, target) -> list:
    """TensorRT 11 networks are strongly typed (no FP16 builder flag): a layer of a mixed INT8 file that is neither
    quantized nor cast to FP16 in the ONNX runs in FP32. Legal, but slow: warn, naming the layer."""
    from onnx import TensorProto

    out = []
    for n in model.graph.node:
        if n.op_type not in ("Conv", "ConvTranspose", "Gemm", "MatMul") or len(n.input) < 2:
            continue
        w = inits.get(n.input[1])
        if w is not None and w.data_type == TensorProto.FLOAT:
            out.append(Violation(n.name or n.output[0], "strongly-typed",
                                 f"float layer with FP32 weights runs in FP32 on TensorRT {target.trt_version} (strongly "
                                 "typed: no FP16 builder flag); cast it to FP16 in the ONNX (edgeres quantize for this "
                                 "target does)", "warning"))
    return out


MAX_SIDE = 4096  # the largest --image-size edgeres accepts


def check_file(path, target) -> list:
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as e:  # noqa: BLE001
        raise EdgeresError(f"{path} is not a readable ONNX file ({e.__class__.__name__})") from None
    return check_model(model, target)
