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

    def shape(self, b: int) -> tuple:
        return (b, *self.input_shape)


def _shape_arg(spec: BuildSpec, b: int) -> str:
    return f"{spec.input_name}:" + "x".join(str(d) for d in spec.shape(b))


def trtexec_command(spec: BuildSpec) -> list:
    """The trtexec command line equivalent to :func:`build_engine` for the spec's TensorRT family."""
    fam = spec.trt_family
    cmd = ["trtexec", f"--onnx={spec.onnx}", f"--saveEngine={spec.engine}"]
    lo, opt, hi = spec.batch
    cmd += [f"--minShapes={_shape_arg(spec, lo)}", f"--optShapes={_shape_arg(spec, opt)}", f"--maxShapes={_shape_arg(spec, hi)}"]
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
    if fam < 11:
        if spec.int8:
            config.set_flag(trt.BuilderFlag.INT8)
            if spec.calib_cache:
                config.int8_calibrator = _cache_calibrator(trt, spec.calib_cache)
        if spec.fp16 and getattr(builder, "platform_has_fast_fp16", True):  # deprecated in 10.5
            config.set_flag(trt.BuilderFlag.FP16)
    elif spec.calib_cache:
        raise RuntimeError("TensorRT 11 removed implicit INT8 calibration; build from the Q/DQ ONNX")
    if spec.sparsity:
        config.set_flag(trt.BuilderFlag.SPARSE_WEIGHTS)
    if spec.dla_core is not None:
        if builder.num_DLA_cores <= spec.dla_core:
            raise RuntimeError(f"DLA core {spec.dla_core} asked for, this device has {builder.num_DLA_cores}")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = spec.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    profile = builder.create_optimization_profile()
    inp = network.get_input(0)
    lo, opt, hi = spec.batch
    profile.set_shape(inp.name, spec.shape(lo), spec.shape(opt), spec.shape(hi))
    config.add_optimization_profile(profile)
    cache_bytes = b""
    if spec.timing_cache and os.path.exists(spec.timing_cache):
        with open(spec.timing_cache, "rb") as f:
            cache_bytes = f.read()
    timing_cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(timing_cache, ignore_mismatch=False)
    t0 = time.time()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT engine build failed (see the TensorRT log above)")
    seconds = time.time() - t0
    _write_atomic(spec.engine, bytes(serialized))
    if spec.timing_cache:
        _write_atomic(spec.timing_cache, bytes(config.get_timing_cache().serialize()))
    if fam >= 11:  # strongly typed: the ONNX's Q/DQ nodes and float types decide
        precision = "int8 (Q/DQ layers), others as typed in the ONNX" if spec.int8 else "as typed in the ONNX"
    else:
        precision = "int8" if spec.int8 else ("fp16" if spec.fp16 else "fp32")
        if spec.int8 and spec.fp16:
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
    """Run a serialized engine: numpy batch in, numpy logits out (one input, one output)."""

    def __init__(self, engine_path: str):
        trt = import_tensorrt()
        self.trt = trt
        self.cuda = cuda_api()
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)  # must outlive the engine
        with open(engine_path, "rb") as f:
            self.engine = self.runtime.deserialize_cuda_engine(f.read())
        if self.engine is None:
            raise RuntimeError(f"{engine_path} did not deserialize: built for another GPU or TensorRT version? Rebuild it on this device")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        shape = tuple(self.engine.get_tensor_shape(self.inputs[0]))
        self.fixed_batch = shape[0] if shape[0] > 0 else None
        self._buffers: dict = {}

    def _buffer(self, name: str, nbytes: int):
        buf = self._buffers.get(name)
        if buf is None or buf[1] < nbytes:
            buf = (self.cuda.malloc(nbytes), nbytes)
            self._buffers[name] = buf
        return buf[0]

    def run(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        name_in, name_out = self.inputs[0], self.outputs[0]
        self.context.set_input_shape(name_in, tuple(x.shape))
        d_in = self._buffer(name_in, x.nbytes)
        out_shape = tuple(self.context.get_tensor_shape(name_out))
        out_dtype = np.dtype(self.trt.nptype(self.engine.get_tensor_dtype(name_out)))
        out = np.empty(out_shape, dtype=out_dtype)
        d_out = self._buffer(name_out, out.nbytes)
        self.cuda.htod(d_in, x)
        self.context.set_tensor_address(name_in, self.cuda.ptr(d_in))
        self.context.set_tensor_address(name_out, self.cuda.ptr(d_out))
        if not self.context.execute_async_v3(self.cuda.stream_handle):
            raise RuntimeError("TensorRT execution failed")
        self.cuda.dtoh(out, d_out)
        self.cuda.sync()
        return out.astype(np.float32, copy=False)

    def sync(self) -> None:
        self.cuda.sync()

    def device_memory_mb(self) -> float:
        size = getattr(self.engine, "device_memory_size_v2", None)
        if size is None:
            size = self.engine.device_memory_size
        return float(size) / 1e6

    def device_name(self) -> str:
        return self.cuda.device_name()


def spec_from_dict(d: dict) -> BuildSpec:
    fields = {k: v for k, v in d.items() if k in BuildSpec.__dataclass_fields__}
    for k in ("input_shape", "batch"):
        if k in fields:
            fields[k] = tuple(fields[k])
    return BuildSpec(**fields)


def spec_to_dict(spec: BuildSpec) -> dict:
    return asdict(spec)


__all__ = ["BackendUnavailable", "BuildSpec", "TrtRunner", "build_engine", "import_tensorrt", "spec_from_dict",
           "spec_to_dict", "trtexec_command", "version_family", "field"]
