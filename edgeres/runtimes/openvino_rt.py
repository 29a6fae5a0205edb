"""OpenVINO (optional extra ``edgeres[openvino]``): runs ONNX files on Intel CPUs."""

from __future__ import annotations

import numpy as np

from edgeres.runtimes import Runtime, RuntimeUnavailable


class OpenVinoRuntime(Runtime):
    name = "openvino"

    def __init__(self, artifact, device: str = "auto", threads: int | None = None, **_):
        try:
            import openvino as ov
        except ImportError:
            raise RuntimeUnavailable("openvino not importable (pip install 'edgeres[openvino]')") from None
        from edgeres.metrics import default_threads
        from edgeres.runtimes.ort import onnx_precision

        self._ov = ov
        self.threads = threads or default_threads()
        core = ov.Core()
        model = core.read_model(str(artifact))
        try:
            self.compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": self.threads})
        except RuntimeError as e:  # a graph its CPU plugin has no kernel for: reported as skipped, with the reason
            raise RuntimeUnavailable(f"openvino cannot compile {artifact}: {str(e).strip().splitlines()[-1][:200]}") from None
        self.request = self.compiled.create_infer_request()
        self.device = "cpu"
        shape = model.inputs[0].get_partial_shape()
        self.fixed_batch = shape[0].get_length() if shape[0].is_static else None
        self.precision = onnx_precision(artifact)
        try:
            hint = str(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
        except Exception:  # noqa: BLE001
            hint = ""
        self.inference_precision = hint

    def run(self, x: np.ndarray) -> np.ndarray:
        self.request.infer({0: np.ascontiguousarray(x, np.float32)})
        return self.request.get_output_tensor(0).data.copy()

    def version(self) -> str:
        return self._ov.get_version()

    def describe(self) -> dict:
        d = super().describe()
        d["inference_precision"] = self.inference_precision
        return d
