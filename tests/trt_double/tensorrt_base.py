"""The TensorRT double's version flavours and its network-side classes (logger, network, ONNX parser, optimization
profile, timing cache); rules and sources in tests/trt_double/__init__.py."""

from __future__ import annotations

import enum

import numpy as np

from trt_double import onnx_rules

FLAVOURS = {"8.5": "8.5.2.2", "10.3": "10.3.0.30", "11": "11.0.0.11"}
MAGIC = b"TRTDOUBLE\n"
TIMING_MAGIC = b"TRTDOUBLE-TIMING\n"
DEVICE_NAME = "Double GPU"


def timing_cache_blob(device: str = DEVICE_NAME) -> bytes:
    """A serialized timing cache of the double, as if created on ``device``."""
    return TIMING_MAGIC + device.encode() + b"\n"


def _datatype(major: int):
    # pyFoundationalTypes.cpp:179 (v10.3.0, v11.0) and NvInferRuntimeBase.h enum values; 8.5.2: NvInferRuntimeCommon.h
    members = {"FLOAT": 0, "HALF": 1, "INT8": 2, "INT32": 3, "BOOL": 4, "UINT8": 5}
    if major >= 10:
        members.update(FP8=6, BF16=7, INT64=8, INT4=9)
    if major >= 11:
        members.update(FP4=10, E8M0=11)
    return enum.Enum("DataType", members)


class Flavour:
    """Everything one TensorRT version answers differently."""

    def __init__(self, name: str, dla_cores: int, logs: list):
        self.name, self.version = name, FLAVOURS[name]
        self.major = int(self.version.split(".")[0])
        self.logs = logs
        # no DLA in TensorRT 11.0-11.3 ("Working with DLA", TensorRT 11.4.1 documentation)
        self.dla_cores = 0 if self.major >= 11 else dla_cores
        self.DataType = _datatype(self.major)
        dt = self.DataType
        self.np_of = {dt.FLOAT: np.float32, dt.HALF: np.float16, dt.INT8: np.int8, dt.INT32: np.int32,
                      dt.BOOL: np.bool_, dt.UINT8: np.uint8}
        if self.major >= 10:
            self.np_of[dt.INT64] = np.int64
        flags = ({"EXPLICIT_BATCH": 0} if self.major < 11 else {}) | ({"STRONGLY_TYPED": 1} if self.major >= 10 else {})
        self.NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", flags) if flags else None
        bflags = ["GPU_FALLBACK", "SPARSE_WEIGHTS", "REFIT"] + (["FP16", "INT8"] if self.major < 11 else [])
        self.BuilderFlag = enum.Enum("BuilderFlag", {n: i for i, n in enumerate(bflags)})
        self.MemoryPoolType = enum.Enum("MemoryPoolType", {"WORKSPACE": 0, "DLA_MANAGED_SRAM": 1})
        self.DeviceType = enum.Enum("DeviceType", {"GPU": 0, "DLA": 1})
        self.TensorIOMode = enum.Enum("TensorIOMode", {"NONE": 0, "INPUT": 1, "OUTPUT": 2})
        self.ProfilingVerbosity = enum.Enum("ProfilingVerbosity", {"LAYER_NAMES_ONLY": 0, "NONE": 1, "DETAILED": 2})
        self.LayerInformationFormat = enum.Enum("LayerInformationFormat", {"ONELINE": 0, "JSON": 1})
        self.onnx_to_dt = {1: dt.FLOAT, 10: dt.HALF, 3: dt.INT8, 6: dt.INT32, 9: dt.BOOL, 2: dt.UINT8}
        if self.major >= 10:  # onnx TensorProto.BFLOAT16 = 16, INT64 = 7: types the 10.x parser keeps
            self.onnx_to_dt.update({16: dt.BF16, 7: dt.INT64})

    def log(self, severity: int, msg: str) -> None:
        self.logs.append((severity, msg))

    def nptype(self, trt_type):
        # 8.5.2 builds its mapping with ``bool: np.bool`` (python/packaging/tensorrt/__init__.py:166 at 8.5.2) on every
        # call: numpy 1.24-1.26 has no ``np.bool`` -> AttributeError (NVIDIA/TensorRT#2557). FP8, BF16, INT4 (and FP4,
        # E8M0) have no numpy type: TypeError (python/packaging/bindings_wheel/tensorrt/__init__.py:161-173 at v10.3.0)
        mapping = dict(self.np_of)
        if self.major < 10:
            mapping[self.DataType.BOOL] = np.bool  # the attribute access is the point
        if trt_type in mapping:
            return mapping[trt_type]
        raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")


class Logger:
    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

    def __init__(self, min_severity=1):
        self.min_severity = min_severity

    def log(self, severity, msg):
        self.F.log(severity, msg)


class Tensor:
    def __init__(self, name, shape, dtype):
        self.name, self.shape, self.dtype = name, tuple(shape), dtype


class Network:
    def __init__(self, flags):
        major = self.F.major
        self.flags = flags
        self.explicit_batch = major >= 10 or bool(flags & (1 << 0))
        self.strongly_typed = major >= 11 or (major == 10 and bool(flags & (1 << 1)))
        self.inputs, self.outputs, self.onnx, self.model = [], [], None, None

    @property
    def num_inputs(self):
        return len(self.inputs)

    @property
    def num_outputs(self):
        return len(self.outputs)

    def get_input(self, i):
        return self.inputs[i]

    def get_output(self, i):
        return self.outputs[i]


class ParserError:
    def __init__(self, msg):
        self.msg = msg

    def desc(self):
        return self.msg

    def __str__(self):
        return self.msg


class OnnxParser:
    def __init__(self, network, logger):
        self.network, self.logger, self.errors = network, logger, []

    @property
    def num_errors(self):
        return len(self.errors)

    def get_error(self, i):
        return self.errors[i]

    def parse(self, model, path=None):
        import onnx

        F = self.F
        if not self.network.explicit_batch:
            self.errors.append(ParserError("The ONNX parser only supports networks with an explicit batch dimension"))
            return False
        try:
            m = onnx.load_model_from_string(bytes(model))
        except Exception as e:  # noqa: BLE001
            self.errors.append(ParserError(f"could not parse the ONNX model: {e}"))
            return False
        errors, warnings = onnx_rules.parse_problems(m, F.major)
        for w in warnings:
            F.log(Logger.WARNING, w)
        if errors:
            self.errors += [ParserError(e) for e in errors]
            return False

        def io(v):
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim]
            return Tensor(v.name, dims, F.onnx_to_dt.get(v.type.tensor_type.elem_type, F.DataType.FLOAT))

        inits = {i.name for i in m.graph.initializer}
        self.network.inputs = [io(v) for v in m.graph.input if v.name not in inits]
        self.network.outputs = [io(v) for v in m.graph.output]
        self.network.onnx, self.network.model = bytes(model), m
        return True


class Profile:
    def __init__(self):
        self.shapes = {}

    def set_shape(self, input, min, opt, max):
        lo, mid, hi = (tuple(int(d) for d in s) for s in (min, opt, max))
        if len(lo) != len(hi) or len(mid) != len(hi) or any(not a <= b <= c for a, b, c in zip(lo, mid, hi)):
            raise RuntimeError("Shape provided for max is inconsistent with other shapes.")
        self.shapes[input] = (lo, mid, hi)


class TimingCache:
    def __init__(self, data):
        self.data = bytes(data)

    @property
    def device(self):
        return self.data[len(TIMING_MAGIC):].split(b"\n", 1)[0].decode()

    def serialize(self):
        return self.data
