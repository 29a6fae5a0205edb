"""OpenVINO (optional extra ``edgeres[openvino]``): ONNX files on Intel CPUs, through the device's own backend
(edgeres_deploy.openvino_backend) -- the runtime an x86 bundle runs, measured with the same code."""

from __future__ import annotations

from edgeres.runtimes.base import BackendRuntime


class OpenVinoRuntime(BackendRuntime):
    name = "openvino"

    def __init__(self, artifact, device: str = "auto", threads: int | None = None, **_):
        super().__init__(artifact, threads)
        self.backend = None
        self.inference_precision = ""

    def _open(self) -> None:
        from edgeres_deploy.openvino_backend import OpenVinoBackend

        from edgeres.metrics import default_threads

        self.threads = self.threads or default_threads()
        self.backend = OpenVinoBackend(self.artifact, self.threads)
        self.device, self.precision = self.backend.device, self.backend.precision
        self.fixed_batch = self.backend.fixed_batch
        self.inference_precision = self.backend.inference_precision

    def describe(self) -> dict:
        d = super().describe()
        d["inference_precision"] = self.inference_precision
        return d
