"""What an ONNX file computes in: its operator types and tensor element types, read from the protobuf itself.

One reader for the host and the device (the device has no ``onnx`` package; standard library only, Python 3.8+):
the file's fields are walked with the protobuf wire format, never its bytes searched (a node name or a metadata value
that says "DequantizeLinear" is not a Q/DQ node), and the tensors' contents are skipped by length, not read.

Sources: the protobuf encoding guide (protobuf.dev/programming-guides/encoding: a field's key is a varint
``(number << 3) | wire_type``; wire types 0 varint, 1 fixed 8 bytes, 2 length-delimited, 5 fixed 4 bytes; 3 and 4
are proto2 groups, which onnx.proto does not use) and onnx/onnx.proto (field numbers, as in onnx 1.17-1.23):
ModelProto graph 7, functions 25; GraphProto node 1, initializer 5, sparse_initializer 15; FunctionProto node 7;
NodeProto op_type 4, attribute 5; AttributeProto t 5, g 6, tensors 10, graphs 11, sparse_tensor 22, sparse_tensors
23; SparseTensorProto values 1; TensorProto data_type 2 (TensorProto.DataType: FLOAT16 10, BFLOAT16 16).
"""

from __future__ import annotations

import mmap
from pathlib import Path

# which fields of each message hold which message; everything else is skipped
_SCHEMA = {
    "model": {7: "graph", 25: "function"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "function": {7: "node"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor"},
    "tensor": {},
}
NODE_OP_TYPE, TENSOR_DATA_TYPE = 4, 2
FLOAT16, BFLOAT16 = 10, 16
INT8_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul",
                      "ConvInteger", "MatMulInteger"})


def _varint(buf, i: int) -> tuple:
    value, shift = 0, 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7
        if shift > 63:
            raise ValueError("malformed varint")


def _fields(buf, start: int, end: int):
    """(field number, wire type, value): an int for a varint, (start, end) of a length-delimited field's bytes."""
    i = start
    while i < end:
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
            yield number, wire, value
            continue
        if wire == 2:
            n, i = _varint(buf, i)
            value, i = (i, i + n), i + n
        elif wire in (1, 5):
            value, i = None, i + (8 if wire == 1 else 4)
        else:
            raise ValueError(f"wire type {wire} (not used by ONNX)")
        if i > end:
            raise ValueError("truncated")
        if value is not None:
            yield number, wire, value


def _walk(buf, start: int, end: int, kind: str, ops: set, dtypes: set) -> None:
    children = _SCHEMA[kind]
    for number, wire, value in _fields(buf, start, end):
        if wire == 2 and number in children:
            _walk(buf, value[0], value[1], children[number], ops, dtypes)
        elif kind == "node" and number == NODE_OP_TYPE and wire == 2:
            ops.add(bytes(buf[value[0]:value[1]]).decode("utf-8", "replace"))
        elif kind == "tensor" and number == TENSOR_DATA_TYPE and wire == 0:
            dtypes.add(value)


def onnx_contents(path) -> tuple:
    """(operator types, tensor element types of its initializers and constants) of an ONNX file, subgraphs and model
    functions included; ValueError naming the file when it is not an ONNX model."""
    ops: set = set()
    dtypes: set = set()
    with open(str(path), "rb") as f:
        if Path(str(path)).stat().st_size == 0:
            raise ValueError(f"{path} is empty: not an ONNX model")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            try:
                _walk(buf, 0, len(buf), "model", ops, dtypes)
            except (ValueError, IndexError) as e:
                raise ValueError(f"{path} is not a readable ONNX model ({e or 'truncated'})") from None
    return ops, dtypes


def onnx_precision(path) -> str:
    """"int8" for a quantized graph (Q/DQ or integer operators), "fp16" / "bf16" when such weights appear, else
    "fp32": the precision column of every report row of an ONNX file, on the host and on the device."""
    ops, dtypes = onnx_contents(path)
    if ops & INT8_OPS:
        return "int8"
    if FLOAT16 in dtypes:
        return "fp16"
    if BFLOAT16 in dtypes:
        return "bf16"
    return "fp32"
