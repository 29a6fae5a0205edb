"""TensorRT native runtime (.engine), through the same code the bundle runs on the device (edgeres_deploy.trt)."""

from __future__ import annotations

import numpy as np

from edgeres.runtimes.base import Runtime


class TensorRTRuntime(Runtime):
    name = "tensorrt"

    def __init__(self, artifact, threads: int | None = None, **_):
        super().__init__(artifact, threads)
        self.runner = None
        self._version = ""

    def _open(self) -> None:
        from edgeres_deploy.trt import TrtRunner, import_tensorrt

        self._version = import_tensorrt().__version__
        self.runner = TrtRunner(self.artifact)
        meta = self.runner.meta
        self.device = meta.get("device") if meta.get("host_proxy") else "cuda:" + self.runner.device_name()
        self.fixed_batch = self.runner.fixed_batch
        self.precision = meta.get("precision") or "unknown (no sidecar)"

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.runner.run(x)

    def _close(self) -> None:
        """The engine's buffers, execution context, engine, runtime, events and stream (TrtRunner.close)."""
        if self.runner is not None:
            self.runner.close()
            self.runner = None

    def sync(self) -> None:
        self.runner.sync()

    def gpu_mem_mb(self):
        return self.runner.device_memory_mb() if self.runner is not None else None

    def version(self) -> str:
        return self._version
