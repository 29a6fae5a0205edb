"""OpenVINO backend for x86 CPU bundles (needs numpy and openvino; no torch, no edgeres).

The bundle of an ``x86-cpu`` run records in its manifest (``"backend"``) the runtime that ran the INT8 file faster on
the host, ONNX Runtime or OpenVINO; ``--backend auto`` follows it, and falls back to ONNX Runtime where openvino is
not installed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgeres_deploy.cuda_mem import BackendUnavailable, CpuBackend


class OpenVinoBackend(CpuBackend):
    name = "openvino"

    def __init__(self, root: Path, threads: int | None = None):
        try:
            import openvino as ov
        except ImportError:
            raise BackendUnavailable("openvino not importable (pip install openvino)") from None
        core = ov.Core()
        model = core.read_model(str(Path(root) / "model.onnx"))
        config = {"INFERENCE_NUM_THREADS": int(threads)} if threads else {}
        try:
            self.compiled = core.compile_model(model, "CPU", config)
        except RuntimeError as e:
            raise BackendUnavailable(f"openvino cannot compile model.onnx: {str(e).strip().splitlines()[-1][:200]}") from None
        self.request = self.compiled.create_infer_request()
        shape = model.inputs[0].get_partial_shape()
        self.fixed_batch = shape[0].get_length() if shape[0].is_static else None
        from edgeres_deploy.check import onnx_precision

        self.precision = onnx_precision(Path(root) / "model.onnx")
        self.device = "cpu"
        self.version = ov.get_version()

    def run(self, x):
        self.request.infer({0: np.ascontiguousarray(x, np.float32)})
        return self.request.get_output_tensor(0).data.copy()


def preferred_backend(root: Path) -> str | None:
    """The backend the bundle's manifest recommends (the faster one measured on the host), if any."""
    try:
        return json.loads((Path(root) / "manifest.json").read_text()).get("backend")
    except (OSError, ValueError):
        return None
