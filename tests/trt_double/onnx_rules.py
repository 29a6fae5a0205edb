"""What the TensorRT double's ONNX parser refuses, where its DLA builds put each layer, and the engine inspector's JSON.

Parser rules, per flavour (onnx/onnx-tensorrt at branch release/8.5-GA for TensorRT 8.5; release/10.0-GA for 10.x,
the 10.x rules 11.0 keeps):
  * 8.5, opset: "TensorRT 8.5 supports operators up to Opset 17" (docs/operators.md:5 at release/8.5-GA); a model that
    imports a newer default-domain opset fails to parse here (the real parser meets opset-18 operator signatures,
    e.g. ReduceMean's axes as an input, that its importers do not know).
  * 8.5, Q/DQ inputs: ``ASSERT((inputs.size() == 3) && "This version of TensorRT requires 3 inputs for the
    DequantizeLinear operator.")`` (builtin_op_importers.cpp:1193); 10.0 takes 2 (``if (inputs.size() > 2)``,
    onnxOpImporters.cpp:1401).
  * zero-points: ``ASSERT(shiftIsAllZeros(zeroPoint) && "TRT only supports symmetric quantization - zeroPt must be all
    zeros")`` (builtin_op_importers.cpp:1227 at 8.5; onnxOpImporters.cpp:1453 at 10.0).
  * UINT8: 8.5 refuses a UINT8 tensor into Q/DQ, ``CHECK(notInvalidType(inputs.at(0), {"UINT8"}))``
    (builtin_op_importers.cpp:1180); 10.x takes a UINT8 zero-point with a warning, "TensorRT doesn't support
    QuantizeLinear/DequantizeLinear with UINT8 zero_point. TensorRT will use INT8 instead." (onnxOpImporters.cpp:1420).
DLA placement: a DLA build puts the DLA-capable layers into one subgraph (an engine layer ``{ForeignNode[first...
last]}``) framed by "... to nvm" / "... from nvm" / "... copy finish" layers (trtexec's profile of a DLA engine,
NVIDIA/TensorRT#3143); the rest falls back to the GPU. On 8.5 a Q/DQ network runs no layer on the DLA ("DLA doesn't
support QAT yet", NVIDIA/TensorRT#2222). Inspector JSON: ``{"Layers": [...], "Bindings": [...]}``, 11.x ``"I/O
Tensors"`` instead of "Bindings" (TensorRT 11 migration guide, IEngineInspector); DETAILED layers carry "Name",
"LayerType", "Inputs", "Outputs", "TacticValue" (trt-engine-explorer's examples/pytorch/resnet/A100/qat/
resnet-qat.onnx.engine.graph.json at v10.3.0), LAYER_NAMES_ONLY only the names (NVIDIA/TensorRT#4020). That a DLA
subgraph's "LayerType" reads "DLA" is this double's assumption (no public JSON of a DLA engine was found); the
product also counts a layer named ``{ForeignNode[...]}`` of no other type as a DLA layer.
"""

from __future__ import annotations

import json

import numpy as np

MAX_OPSET_85 = 17
DLA_OPS = {"Conv", "Relu", "MaxPool", "AveragePool", "GlobalAveragePool", "BatchNormalization", "Add", "Mul", "Sub",
           "Concat", "Sigmoid", "Tanh", "Clip", "LeakyRelu", "Softmax", "Gemm", "MatMul", "Resize"}
QDQ = ("QuantizeLinear", "DequantizeLinear")


def opset(model) -> int:
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def parse_problems(model, major: int) -> tuple:
    """(errors, warnings) of the flavour's ONNX parser for ``model`` (an onnx ModelProto)."""
    from onnx import TensorProto, numpy_helper

    errors, warnings = [], []
    if major < 10 and opset(model) > MAX_OPSET_85:
        errors.append(f"opset {opset(model)}: TensorRT 8.5 supports operators up to Opset {MAX_OPSET_85}")
    inits = {i.name: i for i in model.graph.initializer}
    uint8_inputs = {v.name for v in model.graph.input if v.type.tensor_type.elem_type == TensorProto.UINT8}
    for n in model.graph.node:
        if n.op_type not in QDQ:
            continue
        name = n.name or n.output[0]
        if major < 10 and (len(n.input) < 3 or not n.input[2]):
            errors.append(f"{name}: This version of TensorRT requires 3 inputs for the DequantizeLinear operator.")
            continue
        if major < 10 and n.input[0] in uint8_inputs:
            errors.append(f"{name}: Found invalid input type of UINT8")
        zp = inits.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None
        if zp is None:
            continue
        values = numpy_helper.to_array(zp)
        if np.any(values != 0):
            errors.append(f"{name}: TRT only supports symmetric quantization - zeroPt must be all zeros")
        elif zp.data_type == TensorProto.UINT8 and major >= 10:
            warnings.append(f"{name}: TensorRT doesn't support QuantizeLinear/DequantizeLinear with UINT8 zero_point. "
                            "TensorRT will use INT8 instead.")
    return errors, warnings


def layer_names(model) -> list:
    return [n.name or f"{n.op_type}_{i}" for i, n in enumerate(model.graph.node) if n.op_type not in QDQ]


def dla_split(model, major: int, dla: bool) -> tuple:
    """(layers on the DLA, layers on the GPU) of a build; every layer on the GPU without DLA, or for a Q/DQ network on
    8.5."""
    nodes = [n for n in model.graph.node if n.op_type not in QDQ]
    has_qdq = any(n.op_type in QDQ for n in model.graph.node)
    names = layer_names(model)
    if not dla or (major < 10 and has_qdq):
        return [], names
    on = [nm for nm, n in zip(names, nodes) if n.op_type in DLA_OPS]
    return on, [nm for nm, n in zip(names, nodes) if n.op_type not in DLA_OPS]


def _tensor(name, shape, fmt):
    return {"Name": name, "Location": "Device", "Dimensions": list(shape), "Format/Datatype": fmt}


def inspector_json(meta: dict, detailed: bool, major: int) -> str:
    """The engine inspector's JSON for an engine of the double (``meta``: what the double's build recorded)."""
    inp, out = meta["inputs"][0], meta["outputs"][0]
    lin = "Row major linear FP32"
    layers = []
    if meta["dla_layers"]:
        sub = "{ForeignNode[" + meta["dla_layers"][0] + "..." + meta["dla_layers"][-1] + "]}"
        layers += [{"Name": f"{inp[0]} to nvm", "LayerType": "Reformat", "Inputs": [_tensor(inp[0], inp[1], lin)],
                    "Outputs": [_tensor(f"{inp[0]} copy", inp[1], "Channel major FP16 format")],
                    "ParameterType": "Reformat", "Origin": "REFORMAT", "TacticValue": "0x0000000000000000"},
                   {"Name": sub, "LayerType": "DLA", "Inputs": [_tensor(f"{inp[0]} copy", inp[1], "FP16")],
                    "Outputs": [_tensor(f"{out[0]} from nvm", out[1], "FP16")], "TacticValue": "0x0000000000000003"},
                   {"Name": f"{out[0]} from nvm", "LayerType": "Reformat", "TacticValue": "0x0000000000000000"},
                   {"Name": f"{inp[0]} copy finish", "LayerType": "FinishNvmRegion", "TacticValue": "0x0000000000000000"}]
    for name in meta["gpu_layers"]:
        layers.append({"Name": name, "LayerType": "CaskConvolution" if "conv" in name.lower() else "PointWise",
                       "Inputs": [], "Outputs": [], "TacticValue": "0x00000000000003e8"})
    if not detailed:
        layers = [layer["Name"] for layer in layers]
    io = [inp[0], out[0]]
    if major >= 11:
        doc = {"Layers": layers, "I/O Tensors": [{"Name": n, "IOMode": m, "Location": "Device"}
                                                 for n, m in zip(io, ("Input", "Output"))]}
    else:
        doc = {"Layers": layers, "Bindings": io}
    return json.dumps(doc)
