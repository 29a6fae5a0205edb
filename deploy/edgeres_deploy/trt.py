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

from edgeres_deploy.bundle import sha256
from edgeres_deploy.cuda_mem import BackendUnavailable, cuda_device_name
from edgeres_deploy.trt_api import (
    dla_problem,
    import_tensorrt,
    inspect_engine,
    np_dtype,
    placement_text,
    version_family,
)
from edgeres_deploy.trt_run import TrtRunner


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


def build_engine(spec: BuildSpec, extra_meta: dict | None = None, log=print, reuse_cache: bool = True,
                 seed_cache: str | None = None) -> dict:
    """Build and write ``spec.engine`` (atomically) plus ``<engine>.json``; returns the sidecar dict.

    The timing cache starts from ``seed_cache`` when given (e.g. one shared by boards of the same kind), else from
    ``spec.timing_cache`` unless ``reuse_cache`` is False (``build --rebuild`` over files this device did not write);
    the build's cache is written to ``spec.timing_cache``."""
    trt = import_tensorrt()
    device = cuda_device_name()
    fam = version_family(trt.__version__)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    spec = _check_dla(trt, builder, spec, log)
    network, _parser = _parse(trt, builder, logger, spec, fam)  # the parser must outlive the build
    config = _configure(trt, builder, spec, fam)
    lo, opt, hi = _profile(builder, config, network, spec, fam)
    _set_timing_cache(config, seed_cache or (spec.timing_cache if reuse_cache else None), log)
    t0 = time.time()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT engine build failed (see the TensorRT log above)")
    seconds = time.time() - t0
    _write_atomic(spec.engine, bytes(serialized))
    used_cache = config.get_timing_cache()
    if spec.timing_cache and used_cache is not None:
        _write_atomic(spec.timing_cache, bytes(used_cache.serialize()))
    where = _placement(trt, serialized, spec)
    sidecar = _sidecar_of(trt, spec, fam, device, network.get_input(0).name, (lo, opt, hi), where)
    sidecar.update(build_seconds=round(seconds, 2), **(extra_meta or {}))
    _write_atomic(spec.engine + ".json", (json.dumps(sidecar, indent=2) + "\n").encode())
    log(f"built {spec.engine} in {seconds:.1f}s (TensorRT {trt.__version__}, {sidecar['precision']}); "
        f"{sidecar['placement_note']}")
    return sidecar


def _check_dla(trt, builder, spec: BuildSpec, log) -> BuildSpec:
    """Refuse (ValueError) a DLA core where no layer can run on one, warn where most will fall back; before any build."""
    if spec.dla_core is None:
        return spec
    severity, why = dla_problem(trt.__version__, int(builder.num_DLA_cores), qdq=spec.int8 and not spec.calib_cache)
    if severity == "refuse":
        raise ValueError(f"--dla-core {spec.dla_core} refused before building: {why}; build without --dla-core")
    if builder.num_DLA_cores <= spec.dla_core:
        raise ValueError(f"DLA core {spec.dla_core} asked for, this device has {builder.num_DLA_cores} "
                         f"(0..{builder.num_DLA_cores - 1})")
    if severity == "warn":
        log(f"warning: {why}")
    return spec if spec.static else for_dla(spec, spec.dla_core)


def _parse(trt, builder, logger, spec: BuildSpec, fam: int) -> tuple:
    # TRT 8.x needs the explicit-batch flag; 10.x is explicit batch and (here) weakly typed, so the INT8/FP16 flags
    # apply; 11.x is always strongly typed (its STRONGLY_TYPED flag is deprecated and ignored)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH) if fam < 10 else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    with open(spec.onnx, "rb") as f:
        ok = parser.parse(f.read())
    if not ok:
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT {trt.__version__} could not parse {os.path.basename(spec.onnx)}: {errors}")
    return network, parser


def _configure(trt, builder, spec: BuildSpec, fam: int):
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, spec.workspace_mb << 20)
    # layer types and names in the engine inspector's JSON: where each layer runs (DLA or GPU) is reported from it
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
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
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = spec.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    return config


def _profile(builder, config, network, spec: BuildSpec, fam: int) -> tuple:
    """The optimization profile of a dynamic-batch input; (min, opt, max) batch the engine takes."""
    inp = network.get_input(0)
    lo, opt, hi = spec.batch
    if -1 not in tuple(inp.shape):  # a fixed-batch ONNX has no dynamic dimension and takes no profile
        b = int(next(iter(inp.shape)))
        return b, b, b
    profile = builder.create_optimization_profile()
    profile.set_shape(inp.name, spec.shape(lo), spec.shape(opt), spec.shape(hi))
    config.add_optimization_profile(profile)
    if fam < 11 and spec.int8 and spec.calib_cache:
        # implicit INT8 with runtime dimensions needs a calibration profile (NvInfer.h setCalibrationProfile);
        # trtexec uses the opt shapes (sampleOptions.cpp:891-893, sampleEngines.cpp:916 at 8.5.2)
        calib = builder.create_optimization_profile()
        calib.set_shape(inp.name, spec.shape(opt), spec.shape(opt), spec.shape(opt))
        config.set_calibration_profile(calib)
    return lo, opt, hi


def _set_timing_cache(config, source: str | None, log) -> None:
    timing_cache = None
    if source and os.path.exists(source):
        with open(source, "rb") as f:
            cache_bytes = f.read()
        # None when TensorRT cannot read it (another TensorRT, e.g. after a JetPack upgrade: trtexec checks for
        # nullptr too), False from set_timing_cache when it was made on another device (NvInfer.h setTimingCache)
        timing_cache = config.create_timing_cache(cache_bytes) if cache_bytes else None
        if timing_cache is None or not config.set_timing_cache(timing_cache, ignore_mismatch=False):
            log(f"{source}: timing cache from another TensorRT version or device, not used; a new one replaces it")
            timing_cache = None
    if timing_cache is None:
        timing_cache = config.create_timing_cache(b"")
        config.set_timing_cache(timing_cache, ignore_mismatch=False)


def _placement(trt, serialized, spec: BuildSpec) -> dict | None:
    """Where the built engine's layers run, from the engine inspector (DLA builds only: a GPU build runs on the GPU)."""
    if spec.dla_core is None:
        return None
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    runtime.DLA_core = int(spec.dla_core)
    engine = runtime.deserialize_cuda_engine(bytes(serialized))
    return inspect_engine(trt, engine) if engine is not None else None


def _precision(spec: BuildSpec, fam: int) -> str:
    if fam >= 11:  # strongly typed: the ONNX's Q/DQ nodes and float types decide
        return "int8 (Q/DQ layers), others as typed in the ONNX" if spec.int8 else "as typed in the ONNX"
    fp16 = spec.fp16 or (spec.dla_core is not None and not spec.int8)
    if spec.int8:
        return "int8+fp16" if fp16 else "int8"
    return "fp16" if fp16 else "fp32"


def _sidecar_of(trt, spec: BuildSpec, fam: int, device: str, input_name: str, batch: tuple, where) -> dict:
    """The sidecar's fields; ``dla_core`` is what the engine really uses (None when every layer fell back to the GPU)."""
    lo, opt, hi = batch
    dla_core = spec.dla_core if spec.dla_core is None or where is None or where["dla"] else None
    return {
        "tensorrt_version": trt.__version__, "trt_family": fam, "device": device, "precision": _precision(spec, fam),
        "strongly_typed": fam >= 11, "input_name": input_name,
        "shapes": {"min": list(spec.shape(lo)), "opt": list(spec.shape(opt)), "max": list(spec.shape(hi))},
        "dla_core": dla_core, "dla_requested": spec.dla_core, "layers": where,
        "placement_note": placement_text(where, spec.dla_core) if spec.dla_core is not None else "GPU only",
        "build_spec": spec_key(spec), "sparsity": spec.sparsity, "workspace_mb": spec.workspace_mb,
        "onnx": os.path.basename(spec.onnx), "onnx_sha256": sha256(spec.onnx), "built_externally": False,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }

def _write_atomic(path: str, data: bytes) -> None:
    from edgeres_deploy.fsio import write_bytes_atomic

    write_bytes_atomic(path, data)


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
           "import_tensorrt", "np_dtype", "on_jetson", "spec_from_dict", "spec_key", "spec_to_dict", "trtexec_command",
           "version_family"]
