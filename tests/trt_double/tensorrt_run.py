"""The TensorRT double's runtime side: Runtime, ICudaEngine, IExecutionContext and the engine inspector (rules and
sources in tests/trt_double/__init__.py). What an engine runs is its ONNX, in ONNX Runtime, on the bytes at the
device addresses it is given."""

from __future__ import annotations

import json

import numpy as np

from trt_double import onnx_rules
from trt_double.memory import device_alloc, device_free, device_view
from trt_double.tensorrt_base import MAGIC, Logger


class Engine:
    def __init__(self, meta, onnx_bytes, runtime):
        import onnxruntime as ort

        F = self.F
        self.meta = meta
        self._io = [(n, tuple(s), F.DataType[d], F.TensorIOMode.INPUT) for n, s, d in meta["inputs"]]
        self._io += [(n, tuple(s), F.DataType[d], F.TensorIOMode.OUTPUT) for n, s, d in meta["outputs"]]
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        self.session = ort.InferenceSession(onnx_bytes, so, providers=["CPUExecutionProvider"])
        self._dla_core_run = runtime.DLA_core if meta["dla_core"] is not None else None
        self._weights = device_alloc(len(onnx_bytes))  # weights live in device memory
        self._size = 1 << 20
        self.profiling_verbosity = F.ProfilingVerbosity[meta.get("verbosity", "LAYER_NAMES_ONLY")]

    def __del__(self):
        device_free(getattr(self, "_weights", None))

    @property
    def num_io_tensors(self):
        return len(self._io)

    def _t(self, name):
        for t in self._io:
            if t[0] == name:
                return t
        raise KeyError(name)

    def get_tensor_name(self, i):
        return self._io[i][0]

    def get_tensor_mode(self, name):
        return self._t(name)[3]

    def get_tensor_shape(self, name):
        return self._t(name)[1]

    def get_tensor_dtype(self, name):
        return self._t(name)[2]

    def get_tensor_profile_shape(self, name, profile_index):
        if profile_index != 0 or name not in self.meta["profile"]:
            return []
        return [tuple(s) for s in self.meta["profile"][name]]

    def create_execution_context(self):
        return Context(self)

    def create_engine_inspector(self):  # ICudaEngine::createEngineInspector (pyCore 8.5.2:951, v10.3.0:1270)
        return EngineInspector(self)


def device_memory_size(self):  # ICudaEngine: 8.5 and 10.3
    return self._size


class EngineInspector:
    """IEngineInspector: the engine's layers as JSON, in the detail its ProfilingVerbosity allows."""

    def __init__(self, engine):
        self.engine, self.execution_context, self.error_recorder = engine, None, None

    def get_engine_information(self, format):
        e = self.engine
        if e.profiling_verbosity.name == "NONE":
            return json.dumps({"Layers": []})
        return onnx_rules.inspector_json(e.meta, e.profiling_verbosity.name == "DETAILED", e.F.major)

    def get_layer_information(self, layer_index, format):
        layers = json.loads(self.get_engine_information(format))["Layers"]
        return json.dumps(layers[layer_index]) if 0 <= layer_index < len(layers) else ""


class Context:
    def __init__(self, engine):
        self.engine, self.shapes, self.addr = engine, {}, {}
        self._scratch = device_alloc(engine._size)

    def __del__(self):
        device_free(getattr(self, "_scratch", None))

    def set_input_shape(self, name, shape):
        shape = tuple(int(d) for d in shape)
        lo, _, hi = self.engine.meta["profile"][name]
        if len(shape) != len(lo) or any(not a <= s <= b for a, s, b in zip(lo, shape, hi)):
            return False
        self.shapes[name] = shape
        return True

    def get_tensor_shape(self, name):
        _, shape, _, mode = self.engine._t(name)
        if mode == self.engine.F.TensorIOMode.INPUT:
            return self.shapes.get(name, shape)
        batch = next(iter(self.shapes.values()), (shape[0],))[0]
        return (batch, *shape[1:]) if shape and shape[0] == -1 else shape

    def set_tensor_address(self, name, memory):
        self.addr[name] = int(memory)
        return True

    def _illegal(self, name, nbytes):
        self.engine.F.log(Logger.ERROR, f"{name}: address {self.addr.get(name)} is not {nbytes} bytes of device memory "
                                        "(cudaErrorIllegalAddress)")
        return False

    def execute_async_v3(self, stream_handle):
        F, io = self.engine.F, self.engine._io
        feeds = {}
        for n, _shape, dt, mode in io:
            if mode != F.TensorIOMode.INPUT:
                continue
            if n not in self.shapes or n not in self.addr:
                return False
            s = self.shapes[n]
            nbytes = int(np.prod(s)) * np.dtype(F.np_of[dt]).itemsize
            view = device_view(self.addr[n], nbytes)
            if view is None:
                return self._illegal(n, nbytes)
            feeds[n] = view.view(F.np_of[dt]).reshape(s).copy()
        outs = self.engine.session.run(None, feeds)
        for (n, _shape, dt, _mode), val in zip([t for t in io if t[3] == F.TensorIOMode.OUTPUT], outs):
            if n not in self.addr:
                return False
            val = np.ascontiguousarray(val, F.np_of[dt])
            view = device_view(self.addr[n], val.nbytes)
            if view is None:
                return self._illegal(n, val.nbytes)
            view[:] = val.view(np.uint8).reshape(-1)
        return True


class Runtime:
    def __init__(self, logger):
        self.logger = logger
        self.DLA_core = -1  # "assigned DLA core or -1 for DLA not present or unset" (NvInferRuntime.h:660 at 8.5.2)

    def deserialize_cuda_engine(self, data):
        data = bytes(data)
        if not data.startswith(MAGIC):
            self.logger.log(Logger.ERROR, "not a serialized engine")
            return None
        n = int.from_bytes(data[len(MAGIC):len(MAGIC) + 8], "little")
        meta = json.loads(data[len(MAGIC) + 8:len(MAGIC) + 8 + n])
        if meta["version"] != self.F.version:
            self.logger.log(Logger.ERROR, f"engine built by TensorRT {meta['version']}, this is {self.F.version}")
            return None
        return self.F.Engine(meta, data[len(MAGIC) + 8 + n:], self)
