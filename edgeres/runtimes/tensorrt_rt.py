"""TensorRT native runtime (.engine), through the same code the bundle runs on the device (edgeres_deploy.trt)."""

from __future__ import annotations

import numpy as np

from edgeres.runtimes import Runtime, RuntimeUnavailable


class TensorRTRuntime(Runtime):
    name = "tensorrt"

    def __init__(self, artifact, threads: int | None = None, **_):
        from edgeres_deploy.cuda_mem import BackendUnavailable
        from edgeres_deploy.trt import TrtRunner, import_tensorrt

        try:
            self._trt = import_tensorrt()
            self.runner = TrtRunner(str(artifact))
        except BackendUnavailable as e:
            raise RuntimeUnavailable(str(e)) from None
        meta = self.runner.meta
        self.device = meta.get("device") if meta.get("host_proxy") else "cuda:" + self.runner.device_name()
        self.fixed_batch = self.runner.fixed_batch
        self.precision = meta.get("precision") or "unknown (no sidecar)"
        self.threads = threads

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.runner.run(x)

    def sync(self) -> None:
        self.runner.sync()

    def gpu_mem_mb(self):
        return self.runner.device_memory_mb()

    def version(self) -> str:
        return self._trt.__version__
