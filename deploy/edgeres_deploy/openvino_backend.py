"""OpenVINO backend for x86 CPU bundles (needs numpy and openvino; no torch, no edgeres).

The bundle of an ``x86-cpu`` run records in its manifest (``"backend"``) the runtime that ran the INT8 file faster on
the host, ONNX Runtime or OpenVINO; ``--backend auto`` follows it, and falls back to ONNX Runtime where openvino is
not installed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgeres_deploy.cuda_mem import CpuBackend
from edgeres_deploy.errors import ModelLoadError, first_line


class OpenVinoBackend(CpuBackend):
    """An ONNX file compiled for OpenVINO's CPU plugin. ``inference_precision``: the precision its CPU plugin chose
    (INFERENCE_PRECISION_HINT: f32, or bf16 on CPUs with AMX/AVX512-BF16)."""

    name = "openvino"

    def __init__(self, model, threads: int | None = None):
        from edgeres_deploy.envinfo import import_optional

        ov = import_optional("openvino")
        core = ov.Core()
        config = {"INFERENCE_NUM_THREADS": int(threads)} if threads else {}
        try:
            net = core.read_model(str(model))
            self.compiled = core.compile_model(net, "CPU", config)
        except RuntimeError as e:  # a file it cannot read, a graph its CPU plugin has no kernel for
            raise ModelLoadError(f"openvino cannot compile {model}: {first_line(e, last=True, limit=200)}") from None
        self.request = self.compiled.create_infer_request()
        shape = net.inputs[0].get_partial_shape()
        self.fixed_batch = shape[0].get_length() if shape[0].is_static else None
        from edgeres_deploy.onnx_info import onnx_precision

        self.precision = onnx_precision(model)
        self.device = "cpu"
        self.version = ov.get_version()
        self.binding = "CPU plugin"
        try:
            self.inference_precision = str(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
        except Exception:  # noqa: BLE001 - a property this OpenVINO does not report
            self.inference_precision = ""

    def run(self, x):
        self.request.infer({0: np.ascontiguousarray(x, np.float32)})
        return self.request.get_output_tensor(0).data.copy()

    def _release(self) -> None:
        self.request = self.compiled = None


def preferred_backend(root: Path) -> str | None:
    """The backend the bundle's manifest recommends (the faster one measured on the host), if any."""
    try:
        return json.loads((Path(root) / "manifest.json").read_text()).get("backend")
    except (OSError, ValueError):
        return None
