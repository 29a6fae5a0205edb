"""PyTorch eager runtime (CPU; CUDA when present)."""

from __future__ import annotations

import numpy as np

from edgeres.runtimes.base import Runtime, gpu_label


class TorchRuntime(Runtime):
    name = "torch"

    def __init__(self, artifact, device: str = "auto", threads: int | None = None, trust_model: bool = False,
                 model=None, **_):
        super().__init__(artifact, threads)
        self._device, self._trust, self._given = device, trust_model, model
        self.model = None

    def _open(self) -> None:
        import torch

        from edgeres.metrics import default_threads
        from edgeres.models import load_model

        self._torch = torch
        self.threads = self.threads or default_threads()
        torch.set_num_threads(self.threads)
        device = self._device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self._dev = torch.device(device)
        if self._dev.type == "cuda" and self._dev.index is None:  # cuda:N, as the model's tensors say it
            self._dev = torch.device("cuda", torch.cuda.current_device())
        self.device = gpu_label(self._dev.index or 0) if self._dev.type == "cuda" else "cpu"
        model = self._given if self._given is not None else load_model(self.artifact, trust_model=self._trust).model
        self._mem0 = self._others_mb(model)  # what this process holds on the GPU besides this model
        self.model = model.to(self._dev).eval()
        self.reset_peak_memory()

    def _close(self) -> None:
        """Drop the model; one this runner loaded gives its GPU memory back to the driver (a model the caller
        passed in stays the caller's)."""
        self.model = None
        dev = getattr(self, "_dev", None)
        if self._given is None and dev is not None and dev.type == "cuda":
            self._torch.cuda.empty_cache()

    def _others_mb(self, model) -> float:
        if self._dev.type != "cuda":
            return 0.0
        import itertools

        own = sum(t.numel() * t.element_size() for t in itertools.chain(model.parameters(), model.buffers())
                  if t.device == self._dev)  # a model already on this GPU: its weights are its own, not others'
        return (self._torch.cuda.memory_allocated(self._dev) - own) / 1e6

    def _run(self, x: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            return self.model(self._torch.from_numpy(np.ascontiguousarray(x)).to(self._dev)).float().cpu().numpy()

    def sync(self) -> None:
        if self.model is not None and self._dev.type == "cuda":
            self._torch.cuda.synchronize()

    def reset_peak_memory(self) -> None:
        if self._dev.type == "cuda":
            self._torch.cuda.reset_peak_memory_stats(self._dev)

    def gpu_mem_mb(self):
        """Peak GPU memory of this model (weights and activations, ``torch.cuda.max_memory_allocated``) since the last
        :meth:`reset_peak_memory`, less what the process held apart from it when it was loaded (a training run's
        peak before, another stage's tensors)."""
        if self._dev.type != "cuda":
            return None
        return max(0.0, self._torch.cuda.max_memory_allocated(self._dev) / 1e6 - self._mem0)

    def version(self) -> str:
        import torch

        return torch.__version__
