"""The runtimes a bundle runs on: TensorRT (its engine), ONNX Runtime and OpenVINO (its model.onnx).

Each backend says what it is (``name``, ``version``, ``binding`` -- the CUDA path for TensorRT), where it runs
(``device``) and at which precision, and runs a float32 NCHW batch to logits.
"""

from __future__ import annotations

import sys
from pathlib import Path

from edgeres_deploy import bundle as B
from edgeres_deploy.cuda_mem import Backend, BackendUnavailable, CpuBackend
from edgeres_deploy.errors import ModelLoadError, first_line

GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


def choose_providers(device: str, available) -> list:
    """ONNX Runtime's execution providers for ``device`` ("auto", "cuda" or "cpu"): CUDA first where the device
    allows it and this onnxruntime has it (onnxruntime-gpu), the CPU always last. The one rule, host and device."""
    cuda = device in ("auto", "cuda") and "CUDAExecutionProvider" in available
    return (["CUDAExecutionProvider"] if cuda else []) + ["CPUExecutionProvider"]


class OrtBackend(CpuBackend):
    """An ONNX file in ONNX Runtime. ``device``: see :func:`choose_providers`; ``providers``: exactly these (e.g.
    TensorRT's execution provider), BackendUnavailable where this onnxruntime lacks one."""

    name = "onnxruntime"

    def __init__(self, model, threads: int | None = None, device: str = "auto", providers: list | None = None):
        from edgeres_deploy.envinfo import import_optional

        ort = import_optional("onnxruntime")
        import numpy as np

        self._np = np
        so = ort.SessionOptions()
        so.log_severity_level = 3  # errors only: no initializer-cleanup chatter
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            so.intra_op_num_threads = int(threads)
        self.available = list(ort.get_available_providers())
        if device == "cuda" and not providers and "CUDAExecutionProvider" not in self.available:
            from edgeres_deploy.envinfo import FIXES
            from edgeres_deploy.errors import MissingTool

            raise MissingTool("onnxruntime-gpu", f"this onnxruntime has no CUDAExecutionProvider, only "
                              f"{', '.join(self.available)}", " ".join(FIXES["onnxruntime-gpu"].split()), "missing")
        providers = list(providers) if providers else choose_providers(device, self.available)
        missing = [p for p in providers if p not in self.available]
        if missing:
            raise BackendUnavailable(f"onnxruntime has no {', '.join(missing)} here (available: "
                                     f"{', '.join(self.available)})")
        try:
            self.session = ort.InferenceSession(str(model), so, providers=providers)
        except Exception as e:  # noqa: BLE001 - onnxruntime's own exception types: the file is not loadable
            raise ModelLoadError(f"onnxruntime cannot load {model}: {first_line(e)}") from None
        self.input = self.session.get_inputs()[0]
        self.fixed_batch = self.input.shape[0] if isinstance(self.input.shape[0], int) else None
        self.providers = self.session.get_providers()  # what the session really uses
        self.device = "cuda" if self.providers[0] in GPU_PROVIDERS else "cpu"
        self.version = ort.__version__
        self.binding = self.providers[0]
        from edgeres_deploy.onnx_info import onnx_precision

        self.precision = onnx_precision(model)

    def run(self, x):
        return self.session.run(None, {self.input.name: self._np.ascontiguousarray(x, self._np.float32)})[0]

    def _release(self) -> None:
        self.session = None  # the session's arenas (and CUDA memory) go with it


class TrtBackend(Backend):
    """The bundle's engine. Missing, it is built first (default options, recorded); present, it is used as it is --
    an engine built with other options is kept -- unless it was made by another TensorRT (refused, with the fix)."""

    name = "tensorrt"

    def __init__(self, root: Path, build_if_missing: bool = True):
        from edgeres_deploy import device_build as D
        from edgeres_deploy.trt import TrtRunner, import_tensorrt

        trt = import_tensorrt()
        engine = root / "model.engine"
        if not engine.is_file():
            if not build_if_missing:
                raise BackendUnavailable("model.engine not built yet: run `./run.sh build`")
            spec, settings = D.wanted_spec(root, trt=trt)
            D.build(root, spec, settings, log=lambda m: print(m, file=sys.stderr))
        else:
            why = D.stale_reason(root, trt.__version__)
            if why:
                raise B.BundleError(f"model.engine cannot run here: {why}; `./run.sh build --rebuild` builds it for "
                                    "this device (or `./run.sh check --backend onnxruntime` checks model.onnx)")
        self.runner = TrtRunner(str(engine))
        self.fixed_batch = self.runner.fixed_batch
        self.max_batch = self.runner.max_batch
        self.device = self.runner.device_name()
        self.version = trt.__version__
        self.binding = self.runner.binding
        self.precision = self.runner.meta.get("precision") or "unknown"

    @property
    def last_gpu_ms(self):
        return self.runner.last_gpu_ms

    def placement_note(self) -> str:
        from edgeres_deploy.trt_api import placement_text

        return placement_text(self.runner.placement, self.runner.dla_core)

    def run(self, x):
        return self.runner.run(x)

    def sync(self):
        self.runner.sync()

    def gpu_mem_mb(self):
        return self.runner.device_memory_mb()

    def _release(self) -> None:
        self.runner.close()


def make_backend(name: str, root: Path, threads: int | None = None, fallback: bool = True):
    """The backend ``name`` ("auto": the bundle's own runtime), to use as ``with make_backend(...) as backend``.
    ``fallback``: where TensorRT cannot run, ONNX Runtime on model.onnx (said on stderr); never for `check`, which
    must prove the runtime that ships."""
    from edgeres_deploy.openvino_backend import OpenVinoBackend, preferred_backend

    onnx = Path(root) / "model.onnx"
    if name == "openvino":
        return OpenVinoBackend(onnx, threads)
    if name == "auto" and preferred_backend(root) == "openvino":  # x86 bundles: the faster runtime on the host
        try:
            return OpenVinoBackend(onnx, threads)
        except (BackendUnavailable, ModelLoadError) as e:
            print(f"openvino backend unavailable ({e}); using onnxruntime", file=sys.stderr)
            return OrtBackend(onnx, threads)
    if name == "onnxruntime" or (name == "auto" and not B.build_settings(root)):
        return OrtBackend(onnx, threads)
    if name == "tensorrt" or not fallback:
        return TrtBackend(root)
    try:
        return TrtBackend(root)
    except BackendUnavailable as e:
        print(f"tensorrt backend unavailable ({e}); using onnxruntime on model.onnx", file=sys.stderr)
        return OrtBackend(onnx, threads)
