"""PyTorch eager runtime (CPU; CUDA when present)."""

from __future__ import annotations

import numpy as np

from edgeres.runtimes import Runtime


class TorchRuntime(Runtime):
    name = "torch"

    def __init__(self, artifact, device: str = "auto", threads: int | None = None, trust_model: bool = False,
                 model=None, **_):
        import torch

        from edgeres.metrics import default_threads
        from edgeres.models import load_model

        self._torch = torch
        self.threads = threads or default_threads()
        torch.set_num_threads(self.threads)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self._dev = torch.device(device)
        self.device = "cuda:" + torch.cuda.get_device_name(self._dev) if self._dev.type == "cuda" else "cpu"
        self.model = (model if model is not None else load_model(artifact, trust_model=trust_model).model).to(self._dev).eval()

    def run(self, x: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            return self.model(self._torch.from_numpy(np.ascontiguousarray(x)).to(self._dev)).float().cpu().numpy()

    def sync(self) -> None:
        if self._dev.type == "cuda":
            self._torch.cuda.synchronize()

    def gpu_mem_mb(self):
        if self._dev.type != "cuda":
            return None
        return self._torch.cuda.max_memory_allocated(self._dev) / 1e6

    def version(self) -> str:
        return self._torch.__version__
