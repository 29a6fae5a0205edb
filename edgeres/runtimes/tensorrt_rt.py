"""TensorRT native runtime (.engine), through the same code the bundle runs on the device (edgeres_deploy.trt)."""

from __future__ import annotations

from edgeres.runtimes.base import BackendRuntime


class TensorRTRuntime(BackendRuntime):
    name = "tensorrt"

    def __init__(self, artifact, threads: int | None = None, **_):
        super().__init__(artifact, threads)
        self._version = ""

    def _open(self) -> None:
        from edgeres_deploy.trt import TrtRunner, import_tensorrt

        self._version = import_tensorrt().__version__
        self.backend = TrtRunner(self.artifact)  # closed by BackendRuntime._close: buffers, context, engine, stream
        meta = self.backend.meta
        self.device = meta.get("device") if meta.get("host_proxy") else "cuda:" + self.backend.device_name()
        self.fixed_batch = self.backend.fixed_batch
        self.precision = meta.get("precision") or "unknown (no sidecar)"

    def sync(self) -> None:
        self.backend.sync()

    def gpu_mem_mb(self):
        return self.backend.device_memory_mb() if self.backend is not None else None

    def version(self) -> str:
        return self._version
