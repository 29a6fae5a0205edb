"""TensorRT on the device and on the host: build an engine from ONNX, run it, and say the equivalent trtexec line.

Written against the TensorRT Python API of three version families:
  * 8.5 (JetPack 5.1): explicit-batch flag, INT8/FP16 builder flags, implicit INT8 from a calibration cache possible;
  * 10.x (JetPack 6/7): explicit batch is the default; INT8/FP16 flags still work (deprecated), name-based I/O;
  * 11.x (JetPack 7.2+): strongly typed networks only, no INT8/FP16 flags, no implicit calibration: the ONNX's
    Q/DQ nodes and its float types decide each layer's precision.
The name-based I/O API (``num_io_tensors``, ``set_tensor_address``, ``execute_async_v3``) exists from 8.5 on, so
one inference path serves all three.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from edgeres_deploy.bundle import sha256
from edgeres_deploy.cuda_mem import BackendUnavailable, cuda_api


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as e:
        raise BackendUnavailable(f"tensorrt not importable ({e}); on a Jetson it comes with JetPack") from None
    return trt


_NP_OF = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "INT64": np.int64,
          "BOOL": np.bool_, "UINT8": np.uint8}


def np_dtype(trt, dt) -> np.dtype:
    """``trt.nptype(dt)`` as a numpy dtype. TensorRT 8.5's ``nptype`` reads ``np.bool`` on every call
    (python/packaging/tensorrt/__init__.py:166 at 8.5.2), which numpy 1.24-1.26 no longer has (AttributeError,
    NVIDIA/TensorRT#2557; numpy 1.24.4 is what pip installs for JetPack 5's Python 3.8): map by the type's name then."""
    try:
        return np.dtype(trt.nptype(dt))
    except AttributeError:
        name = getattr(dt, "name", str(dt).rsplit(".", 1)[-1])
        if name not in _NP_OF:
            raise TypeError(f"TensorRT type {dt} has no numpy equivalent") from None
        return np.dtype(_NP_OF[name])


def version_family(version: str) -> int:
    """Major version number of a TensorRT version string ('8.5.2.2' -> 8)."""
    return int(str(version).split(".")[0])


@dataclass
class BuildSpec:
    """Everything an engine build needs; the same spec gives the Python build and the trtexec line."""

    onnx: str
    engine: str
    input_name: str = "input"
    input_shape: tuple = (3, 224, 224)  # C, H, W
    batch: tuple = (1, 1, 8)  # min, opt, max of the optimization profile
    int8: bool = True  # Q/DQ explicit quantization (or implicit with calib_cache on TRT 8.x)
    fp16: bool = True  # allow FP16 for layers without Q/DQ (weakly typed TRT 8/10 only)
    dla_core: int | None = None
    sparsity: bool = False
    workspace_mb: int = 1024
    timing_cache: str | None = None
    calib_cache: str | None = None  # implicit INT8 (legacy TRT 8.x) from an FP32 ONNX
    trt_family: int = 10
    dynamic: bool = True  # the ONNX input has a dynamic batch dimension (False: fixed-batch export, no profile)

    def shape(self, b: int) -> tuple:
        return (b, *self.input_shape)

    @property
    def static(self) -> bool:
        return self.batch[0] == self.batch[2]


# what decides an engine's content besides the ONNX and the TensorRT version: a change here means "rebuild"
SPEC_KEYS = ("input_shape", "batch", "int8", "fp16", "dla_core", "sparsity", "workspace_mb", "dynamic")


def spec_key(spec: BuildSpec) -> dict:
    d = asdict(spec)
    return {k: (list(d[k]) if isinstance(d[k], tuple) else d[k]) for k in SPEC_KEYS}


def for_dla(spec: BuildSpec, core: int) -> BuildSpec:
    """The spec on DLA core ``core``: DLA has no dynamic shapes, so the profile becomes static at its opt batch
    (min = opt = max); otherwise every layer would fall back to the GPU."""
    from dataclasses import replace

    b = spec.batch[1]
    return replace(spec, dla_core=core, batch=(b, b, b))


def _shape_arg(spec: BuildSpec, b: int) -> str:
    return f"{spec.input_name}:" + "x".join(str(d) for d in spec.shape(b))


def trtexec_command(spec: BuildSpec) -> list:
    """The trtexec command line equivalent to :func:`build_engine` for the spec's TensorRT family."""
    fam = spec.trt_family
    cmd = ["trtexec", f"--onnx={spec.onnx}", f"--saveEngine={spec.engine}"]
    lo, opt, hi = spec.batch
    if spec.dynamic:  # trtexec refuses explicit shapes for a static (fixed-batch) model (sampleEngines.cpp)
        cmd += [f"--minShapes={_shape_arg(spec, lo)}", f"--optShapes={_shape_arg(spec, opt)}",
                f"--maxShapes={_shape_arg(spec, hi)}"]
    if fam >= 11:
        cmd.append("--stronglyTyped")
        if spec.calib_cache:
            raise ValueError("TensorRT 11 has no implicit INT8 calibration: use the Q/DQ ONNX instead of a calibration cache")
    else:
        if spec.int8:
            cmd.append("--int8")
        if spec.fp16:
            cmd.append("--fp16")
        if spec.calib_cache:
            cmd.append(f"--calib={spec.calib_cache}")
    cmd.append(f"--memPoolSize=workspace:{spec.workspace_mb}" + ("" if fam < 10 else "M"))
    if spec.dla_core is not None:
        cmd += [f"--useDLACore={spec.dla_core}", "--allowGPUFallback"]
    if spec.sparsity:
        cmd.append("--sparsity=enable")
    if spec.timing_cache:
        cmd.append(f"--timingCacheFile={spec.timing_cache}")
    return cmd


def _cache_calibrator(trt, cache_path: str):
    """An IInt8EntropyCalibrator2 that only reads a calibration cache (TRT 8.x implicit INT8, no images needed)."""

    class CacheCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            super().__init__()
            with open(cache_path, "rb") as f:
                self.cache = f.read()

        def get_batch_size(self):
            return 1

        def get_batch(self, names):
            return None

        def read_calibration_cache(self):
            return self.cache

        def write_calibration_cache(self, cache):
            return None

    return CacheCalibrator()


def build_engine(spec: BuildSpec, extra_meta: dict | None = None, log=print) -> dict:
    """Build and write ``spec.engine`` (atomically) plus ``<engine>.json``; returns the sidecar dict."""
    trt = import_tensorrt()
    cuda = cuda_api()
    fam = version_family(trt.__version__)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # TRT 8.x needs the explicit-batch flag; 10.x is explicit batch and (here) weakly typed, so the INT8/FP16 flags
    # apply; 11.x is always strongly typed (its STRONGLY_TYPED flag is deprecated and ignored)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH) if fam < 10 else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    with open(spec.onnx, "rb") as f:
        ok = parser.parse(f.read())
    if not ok:
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {spec.onnx}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, spec.workspace_mb << 20)
    # DLA computes in FP16 or INT8 only: trtexec --useDLACore sets FP16 whenever INT8 is off
    # (samples/common/sampleEngines.cpp:998-1001 at 8.5.2), so a --no-fp16 DLA build is FP16 on the DLA
    fp16 = spec.fp16 or (spec.dla_core is not None and not spec.int8)
    if fam < 11:
        if spec.int8:
            config.set_flag(trt.BuilderFlag.INT8)
            if spec.calib_cache:
                config.int8_calibrator = _cache_calibrator(trt, spec.calib_cache)
        if fp16 and (spec.dla_core is not None or getattr(builder, "platform_has_fast_fp16", True)):
            config.set_flag(trt.BuilderFlag.FP16)  # platform_has_fast_fp16: deprecated in 10.x, gone in 11
    elif spec.calib_cache:
        raise RuntimeError("TensorRT 11 removed implicit INT8 calibration; build from the Q/DQ ONNX")
    if spec.sparsity:
        config.set_flag(trt.BuilderFlag.SPARSE_WEIGHTS)
    if spec.dla_core is not None:
        if not spec.static:
            spec = for_dla(spec, spec.dla_core)
        if builder.num_DLA_cores <= spec.dla_core:
            raise RuntimeError(f"DLA core {spec.dla_core} asked for, this device has {builder.num_DLA_cores}")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = spec.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    inp = network.get_input(0)
    lo, opt, hi = spec.batch
    if -1 in tuple(inp.shape):  # a fixed-batch ONNX has no dynamic dimension and takes no profile
        profile = builder.create_optimization_profile()
        profile.set_shape(inp.name, spec.shape(lo), spec.shape(opt), spec.shape(hi))
        config.add_optimization_profile(profile)
        if fam < 11 and spec.int8 and spec.calib_cache:
            # implicit INT8 with runtime dimensions needs a calibration profile (NvInfer.h setCalibrationProfile);
            # trtexec uses the opt shapes (sampleOptions.cpp:891-893, sampleEngines.cpp:916 at 8.5.2)
            calib = builder.create_optimization_profile()
            calib.set_shape(inp.name, spec.shape(opt), spec.shape(opt), spec.shape(opt))
            config.set_calibration_profile(calib)
    else:
        b = int(next(iter(inp.shape)))
        lo = opt = hi = b
    timing_cache = None
    if spec.timing_cache and os.path.exists(spec.timing_cache):
        with open(spec.timing_cache, "rb") as f:
            cache_bytes = f.read()
        # None when TensorRT cannot read it (another TensorRT, e.g. after a JetPack upgrade: trtexec checks for
        # nullptr too), False from set_timing_cache when it was made on another device (NvInfer.h setTimingCache)
        timing_cache = config.create_timing_cache(cache_bytes) if cache_bytes else None
        if timing_cache is None or not config.set_timing_cache(timing_cache, ignore_mismatch=False):
            log(f"{spec.timing_cache}: timing cache from another TensorRT version or device, not used; "
                "a new one replaces it")
            timing_cache = None
    if timing_cache is None:
        timing_cache = config.create_timing_cache(b"")
        config.set_timing_cache(timing_cache, ignore_mismatch=False)
    t0 = time.time()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT engine build failed (see the TensorRT log above)")
    seconds = time.time() - t0
    _write_atomic(spec.engine, bytes(serialized))
    used_cache = config.get_timing_cache()
    if spec.timing_cache and used_cache is not None:
        _write_atomic(spec.timing_cache, bytes(used_cache.serialize()))
    if fam >= 11:  # strongly typed: the ONNX's Q/DQ nodes and float types decide
        precision = "int8 (Q/DQ layers), others as typed in the ONNX" if spec.int8 else "as typed in the ONNX"
    else:
        precision = "int8" if spec.int8 else ("fp16" if fp16 else "fp32")
        if spec.int8 and fp16:
            precision = "int8+fp16"
    sidecar = {
        "tensorrt_version": trt.__version__,
        "trt_family": fam,
        "device": cuda.device_name(),
        "precision": precision,
        "strongly_typed": fam >= 11,
        "input_name": inp.name,
        "shapes": {"min": list(spec.shape(lo)), "opt": list(spec.shape(opt)), "max": list(spec.shape(hi))},
        "dla_core": spec.dla_core,
        "build_spec": spec_key(spec),
        "sparsity": spec.sparsity,
        "workspace_mb": spec.workspace_mb,
        "onnx": os.path.basename(spec.onnx),
        "onnx_sha256": sha256(spec.onnx),
        "build_seconds": round(seconds, 2),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    sidecar.update(extra_meta or {})
    _write_atomic(spec.engine + ".json", (json.dumps(sidecar, indent=2) + "\n").encode())
    log(f"built {spec.engine} in {seconds:.1f}s (TensorRT {trt.__version__}, {precision})")
    return sidecar


def _write_atomic(path: str, data: bytes) -> None:
    from edgeres_deploy.fsio import write_bytes_atomic

    write_bytes_atomic(path, data)


class TrtRunner:
    """Run a serialized engine: numpy batch in, numpy logits out (one input, one output).

    Batches above the engine's profile maximum are split; input/output dtypes come from the engine; host buffers
    are pinned; ``last_gpu_ms`` is the GPU compute time of the last run (CUDA events around the enqueue, what
    trtexec calls "GPU Compute"), separate from the end-to-end time a caller measures around ``run``.
    """

    def __init__(self, engine_path: str, dla_core: int | None = None):
        import atexit

        trt = import_tensorrt()
        self.trt = trt
        self.cuda = cuda_api()
        self._buffers: dict = {}
        self._host: dict = {}
        self.meta = _sidecar(engine_path)
        if dla_core is None:
            dla_core = self.meta.get("dla_core")
        mem0 = self.cuda.mem_used_mb()
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)  # must outlive the engine
        if dla_core is not None:  # the engine runs on the runtime's DLA core, not on the one it was built for
            self.runtime.DLA_core = int(dla_core)
        with open(engine_path, "rb") as f:
            self.engine = self.runtime.deserialize_cuda_engine(f.read())
        if self.engine is None:
            raise RuntimeError(f"{engine_path} did not deserialize: built for another GPU or TensorRT version? Rebuild it on this device")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.in_dtype = np_dtype(trt, self.engine.get_tensor_dtype(self.inputs[0]))
        self.out_dtype = np_dtype(trt, self.engine.get_tensor_dtype(self.outputs[0]))
        shape = tuple(self.engine.get_tensor_shape(self.inputs[0]))
        self.fixed_batch = shape[0] if shape[0] > 0 else None
        if self.fixed_batch:
            self.min_batch = self.max_batch = self.fixed_batch
        else:  # the profile's [min, opt, max] shapes; a DLA profile is static (min = max)
            lo, _, hi = self.engine.get_tensor_profile_shape(self.inputs[0], 0)
            self.min_batch, self.max_batch = int(next(iter(lo))), int(next(iter(hi)))
        self.last_gpu_ms = None
        self._events = self.cuda.events()
        # device memory this engine holds (weights + activations + I/O), measured around the load
        self.run(np.zeros((self.min_batch, *shape[1:]), np.float32))
        self.gpu_mem_mb = max(0.0, self.cuda.mem_used_mb() - mem0)
        atexit.register(self.close)  # TensorRT objects go before the CUDA context (pycuda.autoprimaryctx pops it at exit)

    def _buffer(self, name: str, nbytes: int):
        buf = self._buffers.get(name)
        if buf is None or buf[1] < nbytes:
            if buf is not None:
                self.cuda.free(buf[0])
            buf = (self.cuda.malloc(nbytes), nbytes)
            self._buffers[name] = buf
        return buf[0]

    def _pinned(self, name: str, shape: tuple, dtype) -> np.ndarray:
        arr = self._host.get(name)
        n = int(np.prod(shape))
        if arr is None or arr.dtype != dtype or arr.size < n:
            if arr is not None:  # cuda-python has no garbage collection of cudaMallocHost memory
                self.cuda.free_pinned(arr)
            arr = self.cuda.pinned_empty(n, dtype)
            self._host[name] = arr
        return arr[:n].reshape(shape)

    def run(self, x: np.ndarray) -> np.ndarray:
        """Logits of ``x``: split into runs of at most the profile's maximum batch; a run below the profile's minimum
        (a static DLA or fixed-batch engine) is padded with its last image and the padding's outputs dropped."""
        x = np.asarray(x)
        if self.min_batch <= len(x) <= self.max_batch:
            return self._run(x)
        gpu = 0.0
        outs = []
        for i in range(0, len(x), self.max_batch):
            chunk = x[i : i + self.max_batch]
            n = len(chunk)
            if n < self.min_batch:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self.min_batch - n, 0)])
            outs.append(self._run(chunk)[:n])
            gpu += self.last_gpu_ms or 0.0
        self.last_gpu_ms = gpu
        return np.concatenate(outs)

    def _run(self, x: np.ndarray) -> np.ndarray:
        name_in, name_out = self.inputs[0], self.outputs[0]
        if not self.context.set_input_shape(name_in, tuple(int(d) for d in x.shape)):
            lo, _, hi = (tuple(s) for s in self.engine.get_tensor_profile_shape(name_in, 0))
            raise ValueError(f"TensorRT refused input shape {tuple(x.shape)} for {name_in!r}: the engine's profile "
                             f"is {lo} .. {hi}")
        h_in = self._pinned(name_in, x.shape, self.in_dtype)
        h_in[...] = x
        d_in = self._buffer(name_in, h_in.nbytes)
        out_shape = tuple(self.context.get_tensor_shape(name_out))
        h_out = self._pinned(name_out, out_shape, self.out_dtype)
        d_out = self._buffer(name_out, h_out.nbytes)
        self.cuda.htod(d_in, h_in)
        self.context.set_tensor_address(name_in, self.cuda.ptr(d_in))
        self.context.set_tensor_address(name_out, self.cuda.ptr(d_out))
        start, end = self._events
        self.cuda.record(start)
        if not self.context.execute_async_v3(self.cuda.stream_handle):
            raise RuntimeError("TensorRT execution failed")
        self.cuda.record(end)
        self.cuda.dtoh(h_out, d_out)
        self.cuda.sync()
        self.last_gpu_ms = self.cuda.elapsed_ms(start, end)
        return h_out.astype(np.float32)

    def sync(self) -> None:
        self.cuda.sync()

    def device_memory_mb(self) -> float:
        """Device memory the loaded engine holds (measured before/after load: weights, activations, I/O)."""
        return self.gpu_mem_mb

    def device_name(self) -> str:
        return self.cuda.device_name()

    def close(self) -> None:
        """Free the buffers, then the context, engine and runtime (in that order), while the CUDA context lives."""
        for buf, _ in self._buffers.values():
            self.cuda.free(buf)
        self._buffers.clear()
        for h in self._host.values():
            self.cuda.free_pinned(h)
        self._host.clear()
        for attr in ("context", "engine", "runtime"):
            if hasattr(self, attr):
                delattr(self, attr)


def _sidecar(engine_path: str) -> dict:
    try:
        with open(str(engine_path) + ".json") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def on_jetson() -> bool:
    """True on a Jetson (L4T writes /etc/nv_tegra_release); the host builds only labelled proxies for a Jetson."""
    return os.path.exists("/etc/nv_tegra_release")


def spec_from_dict(d: dict) -> BuildSpec:
    fields = {k: v for k, v in d.items() if k in BuildSpec.__dataclass_fields__}
    for k in ("input_shape", "batch"):
        if k in fields:
            fields[k] = tuple(fields[k])
    return BuildSpec(**fields)


def spec_to_dict(spec: BuildSpec) -> dict:
    return asdict(spec)


__all__ = ["SPEC_KEYS", "BackendUnavailable", "BuildSpec", "TrtRunner", "build_engine", "field", "for_dla",
           "import_tensorrt", "on_jetson", "spec_from_dict", "spec_key", "spec_to_dict", "trtexec_command",
           "version_family"]
