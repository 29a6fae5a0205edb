"""A test double of the ``tensorrt`` Python module (8.5, 10.x and 11.x flavours) and of ``pycuda``, for tests only.

It is never importable by the product: it lives under ``tests/`` and is put into ``sys.modules['tensorrt']`` (and
``sys.modules['pycuda*']``) only by the ``trt_double`` fixture in ``tests/conftest_trt.py``. It never produces a
report row of its own: what it builds is the ONNX plus its build spec, and what it runs is that ONNX in ONNX Runtime.

Each rule below names the binding it copies. Sources: NVIDIA/TensorRT ``python/src/infer/pyCore.cpp`` (pyCore),
``python/src/parsers/pyOnnx.cpp`` (pyOnnx), ``python/src/infer/pyInt8.cpp`` (pyInt8) and
``python/packaging/.../tensorrt/__init__.py`` (init) at tags ``8.5.2``, ``v10.3.0`` and ``v11.0``; pycuda's
documented driver API (https://documen.tician.de/pycuda/driver.html); cuda-python's runtime bindings
(``cuda.bindings.runtime``, https://nvidia.github.io/cuda-python/cuda-bindings/latest/module/runtime.html: every call
returns a tuple that starts with the ``cudaError_t``).

Per flavour:
  * ``NetworkDefinitionCreationFlag.EXPLICIT_BATCH``: 8.5 and 10.3 (pyCore ``.value("EXPLICIT_BATCH", ...)``, 10.3
    marks it deprecated); absent in 11.0. ``STRONGLY_TYPED``: 10.3 and 11.0, absent in 8.5. Without EXPLICIT_BATCH an
    8.5 network is implicit-batch and the ONNX parser refuses it (pyOnnx/onnx-tensorrt: "explicit batch required").
    11.0 networks are always strongly typed.
  * ``BuilderFlag.INT8`` / ``FP16``: 8.5 and 10.3; gone in 11.0 (pyCore 11.0 has no ``.value("INT8"``). A strongly
    typed network (10.3 with STRONGLY_TYPED) refuses them at build time. ``GPU_FALLBACK``, ``SPARSE_WEIGHTS``: all.
  * ``IInt8EntropyCalibrator2`` / ``IBuilderConfig.int8_calibrator``: 8.5 and 10.3 (pyInt8.cpp); 11.0 has no
    pyInt8.cpp and no ``int8_calibrator``.
  * ``IBuilderConfig.set_calibration_profile`` / ``get_calibration_profile``: 8.5 and 10.3 (pyCore 8.5.2:1081,
    v10.3.0:1458). Implicit INT8 (an ``int8_calibrator``) on a network with runtime dimensions needs it: "Calibration
    optimization profile must be set if int8 calibration is used to set scales for a network with runtime dimensions"
    (``include/NvInfer.h`` ``setCalibrationProfile`` at 8.5.2); trtexec sets it to the opt shapes
    (``samples/common/sampleOptions.cpp:891-893``, ``sampleEngines.cpp:916`` at 8.5.2). The double fails such a build.
  * ``Builder.platform_has_fast_fp16``: 8.5 and 10.3; absent in 11.0. ``Builder.num_DLA_cores``,
    ``IBuilderConfig.DLA_core``, ``IRuntime.DLA_core`` (read/write, default 0 here): all three.
  * ``IOptimizationProfile.set_shape(input, min, opt, max)`` raises RuntimeError unless min <= opt <= max with one rank
    (pyCore ``opt_profile_set_shape``, ``PY_ASSERT_RUNTIME_ERROR``, 8.5.2 lines 35-43); the build fails (None, error
    logged) when a profile's dimensions disagree with the network input's fixed dimensions (TensorRT checks each
    profile against the network: "Dimension mismatch for tensor ... and profile").
  * ``IExecutionContext.set_input_shape(name, shape) -> bool``: all three (pyCore ``setInputShape`` returns bool);
    the double returns False outside the engine's optimization profile or for a wrong rank, as TensorRT does.
  * ``ICudaEngine.get_tensor_profile_shape(name, profile_index) -> [min, opt, max]``: all three (pyCore lambda).
    ``get_tensor_dtype``, ``get_tensor_mode``, ``get_tensor_shape`` (-1 for dynamic dims), ``num_io_tensors``,
    ``get_tensor_name``: all three. ``device_memory_size``: 8.5 and 10.3; ``device_memory_size_v2``: 10.3 and 11.0.
  * ``IExecutionContext.execute_async_v3(stream_handle) -> bool`` and ``set_tensor_address``: all three.
  * ``nptype(DataType)``: init of all three (float32, float16, int8, int32, bool, uint8; int64 from 10). At 8.5.2 the
    mapping reads ``np.bool`` on every call (``python/packaging/tensorrt/__init__.py:166``; 10.3 and 11.0 use
    ``np.bool_``), so with numpy 1.24-1.26 (the newest numpy for JetPack 5's Python 3.8 is 1.24.4) ``nptype`` raises
    AttributeError for every type (NVIDIA/TensorRT#2557); a test removes ``numpy.bool`` to stand for that numpy.
  * DLA: TensorRT's DLA has no dynamic shapes; a profile with min != max leaves every layer on the GPU (with
    GPU_FALLBACK) or fails the build. The double fails the build in that case (logs an error, returns None) so a test
    sees it. A DLA core >= ``num_DLA_cores`` also fails (``setDLACore`` on a missing core). DLA computes in FP16 or
    INT8 only, so a weakly typed DLA build with neither flag leaves every layer on the GPU: the double fails it too
    (trtexec ``--useDLACore`` sets FP16 whenever ``--int8`` is absent: ``samples/common/sampleEngines.cpp:998-1001``
    at 8.5.2, ``:1143-1146`` at v10.3.0).
  * A deserialized engine runs on ``IRuntime.DLA_core`` (what the runtime was set to), not on the core it was built
    for: the double records ``engine._dla_core_run`` so tests can check the runner sets it.
  * An engine serialized by another TensorRT version does not deserialize (``deserialize_cuda_engine`` -> None).
  * Timing cache: ``IBuilderConfig.create_timing_cache(serialized_timing_cache)`` returns None (nullptr) for a blob it
    cannot read (trtexec checks for it: ``samples/utils/timingCache.cpp:71`` at v10.3.0); ``set_timing_cache(cache,
    ignore_mismatch) -> bool`` (pyCore ``&IBuilderConfig::setTimingCache``) returns False for a cache made on another
    device unless ``ignore_mismatch`` (``include/NvInfer.h`` ``setTimingCache`` doc at 8.5.2 and v10.3.0), and, taking
    a C++ reference, refuses None with TypeError; ``get_timing_cache()`` is None when none was set.
"""

from __future__ import annotations

import enum
import io
import json
import sys
import types

import numpy as np

FLAVOURS = {"8.5": "8.5.2.2", "10.3": "10.3.0.30", "11": "11.0.0.11"}
MAGIC = b"TRTDOUBLE\n"
TIMING_MAGIC = b"TRTDOUBLE-TIMING\n"
DEVICE_NAME = "Double GPU"


def timing_cache_blob(device: str = DEVICE_NAME) -> bytes:
    """A serialized timing cache of the double, as if created on ``device``."""
    return TIMING_MAGIC + device.encode() + b"\n"

# ------------------------------------------------------------------------------------------------ device memory
MEMORY: dict = {}  # address -> np.ndarray(uint8): the double's "device" memory, shared by pycuda and tensorrt doubles
_NEXT = [0x10000]
TOTAL_BYTES = 8 << 30


def _alloc(nbytes: int) -> int:
    addr = _NEXT[0]
    _NEXT[0] += (int(nbytes) + 0xFFF) & ~0xFFF or 0x1000
    MEMORY[addr] = np.zeros(int(nbytes), np.uint8)
    return addr


def used_bytes() -> int:
    return sum(a.nbytes for a in MEMORY.values())


# ------------------------------------------------------------------------------------------------ pycuda
def make_pycuda(device_name: str = DEVICE_NAME) -> dict:
    """``pycuda``, ``pycuda.driver`` and ``pycuda.autoprimaryctx`` (pycuda >= 2021.1) over host memory."""
    drv = types.ModuleType("pycuda.driver")

    class DeviceAllocation:
        def __init__(self, nbytes):
            self.addr = _alloc(nbytes)

        def __int__(self):
            return self.addr

        def free(self):
            MEMORY.pop(self.addr, None)

    class Stream:
        def __init__(self, flags=0):
            self.handle = id(self)

        def synchronize(self):
            pass

    class Event:
        def __init__(self, flags=0):
            self.t = None

        def record(self, stream=None):
            import time

            self.t = time.perf_counter()
            return self

        def synchronize(self):
            return self

        def time_since(self, start):  # ms, as pycuda's Event.time_since
            return (self.t - start.t) * 1000.0

        def time_till(self, end):
            return (end.t - self.t) * 1000.0

    class Device:
        def __init__(self, n=0):
            pass

        def name(self):
            return device_name

    class Context:
        @staticmethod
        def get_device():
            return Device(0)

    def _view(addr, nbytes):
        return MEMORY[int(addr)][:nbytes]

    def _contiguous(a):  # pycuda takes host arrays through the buffer protocol: a strided view is refused
        if not (isinstance(a, np.ndarray) and a.flags.c_contiguous):
            raise TypeError("expected a contiguous host buffer")
        return a

    def memcpy_htod_async(dest, src, stream=None):
        src = _contiguous(src)
        _view(dest, src.nbytes)[:] = src.view(np.uint8).reshape(-1)

    def memcpy_dtoh_async(dest, src, stream=None):
        _contiguous(dest).view(np.uint8).reshape(-1)[:] = _view(src, dest.nbytes)

    def pagelocked_empty(shape, dtype):
        return np.empty(shape, dtype)

    def mem_get_info():
        return TOTAL_BYTES - used_bytes(), TOTAL_BYTES

    def mem_alloc(nbytes):
        return DeviceAllocation(nbytes)

    for f in (DeviceAllocation, Stream, Event, Device, Context, memcpy_htod_async, memcpy_dtoh_async,
              pagelocked_empty, mem_get_info, mem_alloc):
        setattr(drv, f.__name__, f)
    pkg = types.ModuleType("pycuda")
    pkg.__path__ = []
    pkg.driver = drv
    prim = types.ModuleType("pycuda.autoprimaryctx")
    prim.context = Context()
    prim.device = Device(0)
    pkg.autoprimaryctx = prim
    return {"pycuda": pkg, "pycuda.driver": drv, "pycuda.autoprimaryctx": prim}


# ------------------------------------------------------------------------------------------------ cuda-python
PINNED: dict = {}  # address -> ctypes buffer: page-locked host memory handed out by the cuda-python double


def make_cudart(device_name: str = DEVICE_NAME) -> dict:
    """``cuda.bindings.runtime`` (cuda-python >= 12.6; ``cuda.cudart`` before) over host memory. Every call returns a
    tuple whose first item is the ``cudaError_t`` (cuda-python's convention: ``(err,)``, ``(err, value)`` or
    ``(err, free, total)`` for ``cudaMemGetInfo``); freeing an address that is not allocated gives
    ``cudaErrorInvalidValue``, as the CUDA runtime does."""
    import ctypes
    import time

    rt = types.ModuleType("cuda.bindings.runtime")

    class cudaError_t(enum.IntEnum):
        cudaSuccess = 0
        cudaErrorInvalidValue = 1

    class cudaMemcpyKind(enum.IntEnum):
        cudaMemcpyHostToDevice = 1
        cudaMemcpyDeviceToHost = 2

    class _Handle:
        def __init__(self):
            self._h = id(self)

        def __int__(self):
            return self._h

    class cudaStream_t(_Handle):
        pass

    class cudaEvent_t(_Handle):
        t = None

    class cudaDeviceProp:
        name = device_name.encode()

    ok = cudaError_t.cudaSuccess

    def cudaStreamCreate():
        return ok, cudaStream_t()

    def cudaStreamSynchronize(stream):
        return (ok,)

    def cudaMalloc(size):
        return ok, _alloc(size)

    def cudaFree(devPtr):
        return (ok,) if MEMORY.pop(int(devPtr), None) is not None else (cudaError_t.cudaErrorInvalidValue,)

    def cudaMallocHost(size):
        buf = ctypes.create_string_buffer(int(size))
        PINNED[ctypes.addressof(buf)] = buf
        return ok, ctypes.addressof(buf)

    def cudaFreeHost(ptr):
        return (ok,) if PINNED.pop(int(ptr), None) is not None else (cudaError_t.cudaErrorInvalidValue,)

    def cudaMemcpyAsync(dst, src, count, kind, stream):
        if kind == cudaMemcpyKind.cudaMemcpyHostToDevice:
            ctypes.memmove(MEMORY[int(dst)].ctypes.data, int(src), int(count))
        else:
            ctypes.memmove(int(dst), MEMORY[int(src)].ctypes.data, int(count))
        return (ok,)

    def cudaEventCreate():
        return ok, cudaEvent_t()

    def cudaEventRecord(event, stream):
        event.t = time.perf_counter()
        return (ok,)

    def cudaEventSynchronize(event):
        return (ok,)

    def cudaEventElapsedTime(start, end):
        return ok, (end.t - start.t) * 1000.0

    def cudaEventDestroy(event):
        return (ok,)

    def cudaGetDeviceProperties(device):
        return ok, cudaDeviceProp()

    def cudaMemGetInfo():
        return ok, TOTAL_BYTES - used_bytes(), TOTAL_BYTES

    for f in (cudaError_t, cudaMemcpyKind, cudaStream_t, cudaEvent_t, cudaDeviceProp, cudaStreamCreate,
              cudaStreamSynchronize, cudaMalloc, cudaFree, cudaMallocHost, cudaFreeHost, cudaMemcpyAsync, cudaEventCreate,
              cudaEventRecord, cudaEventSynchronize, cudaEventElapsedTime, cudaEventDestroy, cudaGetDeviceProperties,
              cudaMemGetInfo):
        setattr(rt, f.__name__, f)
    cuda = types.ModuleType("cuda")
    cuda.__path__ = []
    bindings = types.ModuleType("cuda.bindings")
    bindings.__path__ = []
    bindings.runtime = rt
    cuda.bindings = bindings
    return {"cuda": cuda, "cuda.bindings": bindings, "cuda.bindings.runtime": rt}


# ------------------------------------------------------------------------------------------------ tensorrt
def make_tensorrt(flavour: str, dla_cores: int = 0, logs: list | None = None) -> types.ModuleType:
    """The ``tensorrt`` module of one flavour ("8.5", "10.3" or "11")."""
    version = FLAVOURS[flavour]
    major = int(version.split(".")[0])
    logs = logs if logs is not None else []
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.__double__ = flavour

    class Logger:
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

        def __init__(self, min_severity=1):
            self.min_severity = min_severity

        def log(self, severity, msg):
            logs.append((severity, msg))

    class DataType(enum.Enum):
        FLOAT = 0
        HALF = 1
        INT8 = 2
        INT32 = 3
        BOOL = 4
        UINT8 = 5
        if major >= 10:
            INT64 = 8  # kINT64 = 8 (include/NvInferRuntimeBase.h at v10.3.0 and v11.0; kINT4 is 9)

    np_of = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8,
             DataType.INT32: np.int32, DataType.BOOL: np.bool_, DataType.UINT8: np.uint8}
    if major >= 10:
        np_of[DataType.INT64] = np.int64

    def nptype(trt_type):
        # 8.5.2 builds its mapping with ``bool: np.bool`` (python/packaging/tensorrt/__init__.py:166 at 8.5.2) on
        # every call: numpy 1.24-1.26 has no ``np.bool`` -> AttributeError (NVIDIA/TensorRT#2557, fixed in 8.6)
        mapping = dict(np_of)
        if major < 10:
            mapping[DataType.BOOL] = np.bool  # the attribute access is the point
        if trt_type in mapping:
            return mapping[trt_type]
        raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")

    onnx_to_dt = {1: DataType.FLOAT, 10: DataType.HALF, 3: DataType.INT8, 6: DataType.INT32, 9: DataType.BOOL,
                  2: DataType.UINT8}

    flags = {}
    if major < 11:
        flags["EXPLICIT_BATCH"] = 0
    if major >= 10:
        flags["STRONGLY_TYPED"] = 1
    NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", flags) if flags else None
    bflags = ["GPU_FALLBACK", "SPARSE_WEIGHTS", "REFIT"] + (["FP16", "INT8"] if major < 11 else [])
    BuilderFlag = enum.Enum("BuilderFlag", {n: i for i, n in enumerate(bflags)})
    MemoryPoolType = enum.Enum("MemoryPoolType", {"WORKSPACE": 0, "DLA_MANAGED_SRAM": 1})
    DeviceType = enum.Enum("DeviceType", {"GPU": 0, "DLA": 1})
    TensorIOMode = enum.Enum("TensorIOMode", {"NONE": 0, "INPUT": 1, "OUTPUT": 2})

    class Tensor:
        def __init__(self, name, shape, dtype):
            self.name, self.shape, self.dtype = name, tuple(shape), dtype

    class Network:
        def __init__(self, flags):
            self.flags = flags
            self.explicit_batch = major >= 10 or bool(flags & (1 << 0))
            self.strongly_typed = major >= 11 or (major == 10 and bool(flags & (1 << 1)))
            self.inputs, self.outputs, self.onnx = [], [], None

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

            if not self.network.explicit_batch:
                self.errors.append(ParserError("The ONNX parser only supports networks with an explicit batch dimension"))
                return False
            try:
                m = onnx.load_model_from_string(bytes(model))
            except Exception as e:  # noqa: BLE001
                self.errors.append(ParserError(f"could not parse the ONNX model: {e}"))
                return False

            def io(v):
                dims = [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim]
                return Tensor(v.name, dims, onnx_to_dt.get(v.type.tensor_type.elem_type, DataType.FLOAT))

            inits = {i.name for i in m.graph.initializer}
            self.network.inputs = [io(v) for v in m.graph.input if v.name not in inits]
            self.network.outputs = [io(v) for v in m.graph.output]
            self.network.onnx = bytes(model)
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

    class Config:
        def __init__(self):
            self.flags, self.profiles, self.pool = set(), [], {}
            self.default_device_type = DeviceType.GPU
            self.DLA_core = -1
            self._cache = None
            if major < 11:
                self.int8_calibrator = None
                self._calib_profile = None

        if major < 11:
            def set_calibration_profile(self, profile):
                self._calib_profile = profile
                return True

            def get_calibration_profile(self):
                return self._calib_profile

        def set_memory_pool_limit(self, pool, size):
            self.pool[pool] = size

        def set_flag(self, flag):
            self.flags.add(flag)

        def get_flag(self, flag):
            return flag in self.flags

        def clear_flag(self, flag):
            self.flags.discard(flag)

        def add_optimization_profile(self, profile):
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def create_timing_cache(self, serialized_timing_cache):
            data = bytes(serialized_timing_cache)
            if not data:
                return TimingCache(timing_cache_blob())
            if not data.startswith(TIMING_MAGIC):  # corrupted, or another TensorRT's format: nullptr -> None
                logs.append((Logger.ERROR, "timing cache: serialization assertion failed (corrupted or other version)"))
                return None
            return TimingCache(data)

        def set_timing_cache(self, cache, ignore_mismatch):
            if not isinstance(cache, TimingCache):  # pybind: ``ITimingCache const&`` accepts no None
                raise TypeError("set_timing_cache(): incompatible function arguments")
            if cache.device != DEVICE_NAME and not ignore_mismatch:
                logs.append((Logger.ERROR, f"timing cache was created on {cache.device}, this is {DEVICE_NAME}"))
                return False
            self._cache = cache
            return True

        def get_timing_cache(self):
            return self._cache

    class Builder:
        def __init__(self, logger):
            self.logger = logger

        num_DLA_cores = dla_cores
        if major < 11:
            platform_has_fast_fp16 = True

        def create_network(self, flags=0):
            if major >= 10 and flags & 1 and major < 11:
                logs.append((Logger.WARNING, "EXPLICIT_BATCH is deprecated"))
            return Network(flags)

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def _fail(self, msg):
            self.logger.log(Logger.ERROR, msg)

        def build_serialized_network(self, network, config):
            if network.onnx is None:
                return self._fail("empty network")
            if network.strongly_typed and major < 11 and ({BuilderFlag.FP16, BuilderFlag.INT8} & config.flags):
                return self._fail("INT8/FP16 builder flags are not allowed on a strongly typed network")
            shapes = {}
            for t in network.inputs:
                prof = config.profiles[0].shapes.get(t.name) if config.profiles else None
                if -1 in t.shape:
                    if prof is None:
                        return self._fail(f"Network has dynamic or shape inputs, but no optimization profile ({t.name})")
                    for lim in prof:
                        if len(lim) != len(t.shape) or any(d not in (-1, p) for d, p in zip(t.shape, lim)):
                            return self._fail(f"{t.name}: profile dimensions {lim} do not match the network's {t.shape}")
                    shapes[t.name] = prof
                else:
                    shapes[t.name] = (t.shape, t.shape, t.shape)
            if (major < 11 and config.int8_calibrator is not None and BuilderFlag.INT8 in config.flags
                    and any(-1 in t.shape for t in network.inputs) and config._calib_profile is None):
                return self._fail("Calibration profile must be set for INT8 calibration of a network with runtime "
                                  "dimensions")
            dla = None
            if config.default_device_type == DeviceType.DLA:
                if not 0 <= config.DLA_core < dla_cores:
                    return self._fail(f"DLA core {config.DLA_core} does not exist ({dla_cores} cores)")
                if any(p[0] != p[2] for p in shapes.values()):
                    return self._fail("DLA does not support dynamic shapes: profile min != max")
                if major < 11 and not {BuilderFlag.FP16, BuilderFlag.INT8} & config.flags:
                    return self._fail("DLA runs FP16 and INT8 only: without either flag every layer falls back to GPU")
                dla = config.DLA_core
            meta = {"version": version, "inputs": [[t.name, list(t.shape), t.dtype.name] for t in network.inputs],
                    "outputs": [[t.name, list(t.shape), t.dtype.name] for t in network.outputs],
                    "profile": {k: [list(s) for s in v] for k, v in shapes.items()}, "dla_core": dla,
                    "flags": sorted(f.name for f in config.flags), "strongly_typed": network.strongly_typed}
            head = json.dumps(meta).encode()
            return memoryview(MAGIC + len(head).to_bytes(8, "little") + head + network.onnx)

    class Engine:
        def __init__(self, meta, onnx_bytes, runtime):
            import onnxruntime as ort

            self.meta = meta
            self._io = [(n, tuple(s), DataType[d], TensorIOMode.INPUT) for n, s, d in meta["inputs"]]
            self._io += [(n, tuple(s), DataType[d], TensorIOMode.OUTPUT) for n, s, d in meta["outputs"]]
            so = ort.SessionOptions()
            so.intra_op_num_threads = 1
            self.session = ort.InferenceSession(onnx_bytes, so, providers=["CPUExecutionProvider"])
            self._dla_core_run = runtime.DLA_core if meta["dla_core"] is not None else None
            self._weights = _alloc(len(onnx_bytes))  # weights live in device memory
            self._size = 1 << 20

        def __del__(self):
            MEMORY.pop(getattr(self, "_weights", None), None)

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

        if major < 11:
            @property
            def device_memory_size(self):
                return self._size
        if major >= 10:
            @property
            def device_memory_size_v2(self):
                return self._size

        def create_execution_context(self):
            return Context(self)

    class Context:
        def __init__(self, engine):
            self.engine, self.shapes, self.addr = engine, {}, {}
            self._scratch = _alloc(engine._size)

        def __del__(self):
            MEMORY.pop(getattr(self, "_scratch", None), None)

        def set_input_shape(self, name, shape):
            shape = tuple(int(d) for d in shape)
            lo, _, hi = self.engine.meta["profile"][name]
            if len(shape) != len(lo) or any(not a <= s <= b for a, s, b in zip(lo, shape, hi)):
                return False
            self.shapes[name] = shape
            return True

        def get_tensor_shape(self, name):
            _, shape, _, mode = self.engine._t(name)
            if mode == TensorIOMode.INPUT:
                return self.shapes.get(name, shape)
            batch = next(iter(self.shapes.values()), (shape[0],))[0]
            return (batch, *shape[1:]) if shape and shape[0] == -1 else shape

        def set_tensor_address(self, name, memory):
            self.addr[name] = int(memory)
            return True

        def execute_async_v3(self, stream_handle):
            feeds = {}
            for n, _shape, dt, mode in self.engine._io:
                if mode != TensorIOMode.INPUT:
                    continue
                if n not in self.shapes or n not in self.addr:
                    return False
                s = self.shapes[n]
                nbytes = int(np.prod(s)) * np.dtype(np_of[dt]).itemsize
                feeds[n] = MEMORY[self.addr[n]][:nbytes].view(np_of[dt]).reshape(s)
            outs = self.engine.session.run(None, feeds)
            for (n, _shape, dt, _mode), val in zip([t for t in self.engine._io if t[3] == TensorIOMode.OUTPUT], outs):
                if n not in self.addr:
                    return False
                val = np.ascontiguousarray(val, np_of[dt])
                MEMORY[self.addr[n]][: val.nbytes] = val.view(np.uint8).reshape(-1)
            return True

    class Runtime:
        def __init__(self, logger):
            self.logger = logger
            self.DLA_core = 0

        num_DLA_cores = dla_cores

        def deserialize_cuda_engine(self, data):
            data = bytes(data)
            if not data.startswith(MAGIC):
                self.logger.log(Logger.ERROR, "not a serialized engine")
                return None
            n = int.from_bytes(data[len(MAGIC):len(MAGIC) + 8], "little")
            meta = json.loads(data[len(MAGIC) + 8:len(MAGIC) + 8 + n])
            if meta["version"] != version:
                self.logger.log(Logger.ERROR, f"engine built by TensorRT {meta['version']}, this is {version}")
                return None
            return Engine(meta, data[len(MAGIC) + 8 + n:], self)

    if major < 11:
        class IInt8EntropyCalibrator2:
            def __init__(self):
                pass

        trt.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2

    for name, obj in dict(Logger=Logger, DataType=DataType, nptype=nptype, BuilderFlag=BuilderFlag,
                          MemoryPoolType=MemoryPoolType, DeviceType=DeviceType, TensorIOMode=TensorIOMode,
                          Builder=Builder, OnnxParser=OnnxParser, Runtime=Runtime).items():
        setattr(trt, name, obj)
    if NetworkDefinitionCreationFlag is not None:
        trt.NetworkDefinitionCreationFlag = NetworkDefinitionCreationFlag
    trt.float32, trt.float16, trt.int8, trt.int32 = DataType.FLOAT, DataType.HALF, DataType.INT8, DataType.INT32
    trt._logs = logs
    return trt


def install(monkeypatch, flavour: str, dla_cores: int = 0, cuda: str = "pycuda") -> types.ModuleType:
    """Put the double into sys.modules (tensorrt + pycuda, or + cuda-python with ``cuda="cuda-python"``: then pycuda
    does not import) for one test; monkeypatch undoes it."""
    trt = make_tensorrt(flavour, dla_cores)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    if cuda == "pycuda":
        mods = make_pycuda()
    else:
        mods = {**make_cudart(), "pycuda": None, "pycuda.autoprimaryctx": None, "pycuda.driver": None}
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    return trt


__all__ = ["DEVICE_NAME", "FLAVOURS", "MEMORY", "PINNED", "install", "io", "make_cudart", "make_pycuda", "make_tensorrt",
           "timing_cache_blob", "used_bytes"]
