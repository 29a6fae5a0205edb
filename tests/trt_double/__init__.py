"""A test double of the ``tensorrt`` Python module (8.5, 10.x and 11.x flavours) and of the CUDA bindings (pycuda,
cuda-python, and the CUDA runtime library itself as a small C library), for tests only.

It is never importable by the product: it lives under ``tests/`` and is put into ``sys.modules['tensorrt']`` (and
``sys.modules['pycuda*']``) only by :func:`install`, or into a throwaway interpreter's site-packages by the bundle
tests (tests/test_first_run.py). It never produces a report row of its own: what it builds is the ONNX plus its build
spec, and what it runs is that ONNX in ONNX Runtime, on the bytes at the device addresses it is handed.

Modules: tensorrt_double.py (the module per flavour), tensorrt_base.py / tensorrt_build.py / tensorrt_run.py (its
classes), onnx_rules.py (what its ONNX parser refuses, where DLA builds put layers, the engine inspector's JSON, with
their sources), cuda_doubles.py (pycuda and cuda-python doubles; the C double's build), cudart_double.c (libcudart),
memory.py (their shared "device" memory).

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
    ``IBuilderConfig.DLA_core``, ``IRuntime.DLA_core``: all three; ``IRuntime.DLA_core`` defaults to -1 ("assigned
    DLA core or -1 for DLA not present or unset", include/NvInferRuntime.h:660 at 8.5.2, :1409 at v10.3.0, :1885 at
    v11.0). The 11.0 flavour has no DLA (num_DLA_cores 0): "DLA was unavailable in TensorRT 11.0 through 11.3"
    (TensorRT 11.4.1 documentation, "Working with DLA").
  * ``DataType``: FLOAT 0, HALF 1, INT8 2, INT32 3, BOOL 4, UINT8 5 (8.5.2 include/NvInferRuntimeCommon.h:119-145);
    10.3 adds FP8 6, BF16 7, INT64 8, INT4 9 (include/NvInferRuntimeBase.h at v10.3.0; bound in
    python/src/infer/pyFoundationalTypes.cpp:179); 11.0 adds FP4 10, E8M0 11. ``nptype`` has no numpy type for FP8,
    BF16, INT4, FP4, E8M0 and raises TypeError (python/packaging/bindings_wheel/tensorrt/__init__.py:151-173 at
    v10.3.0, :172-194 at v11.0).
  * The ONNX parser's rules per flavour (opset cap and three-input Q/DQ on 8.5, zero-points, UINT8): onnx_rules.py.
  * DLA: on 8.5 a Q/DQ network runs no layer on the DLA (NVIDIA/TensorRT#2222); without GPU_FALLBACK such a build
    fails. The engine records which layers went where and ``create_engine_inspector()`` reports it
    (``get_engine_information(LayerInformationFormat.JSON)``; pyCore.cpp 8.5.2:951/:1171, v10.3.0:1270/:1133), as
    names only unless the config's ``profiling_verbosity`` is DETAILED (default LAYER_NAMES_ONLY,
    include/NvInfer.h:9091 at v10.3.0); its JSON is modelled on the real one in onnx_rules.py.
  * Device memory: execute_async_v3 reads and writes the addresses it was given; one that is not device memory of
    the CUDA double in use (a host pointer, a freed buffer) fails the execution, as a GPU faults on it.
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

import io
import sys
import types

from trt_double.cuda_doubles import DEVICE_NAME, PINNED, build_cudart_double, make_cudart, make_pycuda
from trt_double.memory import C_DOUBLE_ENV, MEMORY, used_bytes
from trt_double.tensorrt_base import FLAVOURS, MAGIC, timing_cache_blob
from trt_double.tensorrt_double import make_tensorrt


def install(monkeypatch, flavour: str, dla_cores: int = 0, cuda: str = "pycuda", cudart=None) -> types.ModuleType:
    """Put the double into sys.modules for one test (monkeypatch undoes it): tensorrt plus ``cuda`` = "pycuda" (the
    pycuda double), "cuda-python" (the cuda-python double; pycuda does not import) or "ctypes" (neither imports: the
    product reaches the CUDA runtime library ``cudart``, the compiled C double, through ctypes)."""
    trt = make_tensorrt(flavour, dla_cores)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    none = {"pycuda": None, "pycuda.autoprimaryctx": None, "pycuda.driver": None}
    if cuda == "pycuda":
        mods = make_pycuda()
    elif cuda == "cuda-python":
        mods = {**make_cudart(), **none}
    else:
        import edgeres_deploy.cudart as cudart_mod

        mods = {**none, "cuda": None, "cuda.bindings": None, "cuda.bindings.runtime": None, "cuda.cudart": None}
        monkeypatch.setenv(C_DOUBLE_ENV, str(cudart))
        monkeypatch.setattr(cudart_mod, "candidates", lambda: [str(cudart)])
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    return trt

__all__ = ["C_DOUBLE_ENV", "DEVICE_NAME", "FLAVOURS", "MAGIC", "MEMORY", "PINNED", "build_cudart_double", "install",
           "io", "make_cudart", "make_pycuda", "make_tensorrt", "timing_cache_blob", "used_bytes"]
