"""ONNX Runtime on the host through the device's own backend (edgeres_deploy.backends.OrtBackend): the CPU, and
CUDA (onnxruntime-gpu) where present and asked for, by the one provider rule both sides use; this module adds what
only the host says -- the hint for a GPU host whose onnxruntime has no CUDA provider, the input checks that name
edgeres's flags -- and the ``cuda:<GPU>`` label of the rows."""

from __future__ import annotations

import logging

import numpy as np

from edgeres.errors import EdgeresError, Unavailable
from edgeres.runtimes.base import BackendRuntime, gpu_label

MAX_FIXED_BATCH = 4096


def check_image_input(artifact, shape) -> None:
    """An image classifier's input is [N, 3, H, W] with a sane fixed batch; else EdgeresError naming the file."""
    shape = list(shape)
    if len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != 3):
        raise EdgeresError(f"{artifact} takes input of shape {shape}; edgeres runs image classifiers with input "
                           "[N, 3, H, W]: re-export the model with that input")
    if isinstance(shape[0], int) and not 1 <= shape[0] <= MAX_FIXED_BATCH:
        raise EdgeresError(f"{artifact} declares a fixed batch of {shape[0]} (more than {MAX_FIXED_BATCH}: it would not fit "
                           "in memory); re-export it with a dynamic or a small batch")
    for s in shape[2:]:
        if isinstance(s, int) and not 1 <= s <= 4096:
            raise EdgeresError(f"{artifact} declares input {shape[2]}x{shape[3]} px; a classifier input is 1 to 4096 px a side")


_said: set = set()


def choose_providers(device: str, available: list, gpu_dist: bool = False, host_gpu: bool = False) -> tuple[list, str]:
    """(execution providers, a hint for the user or ""): the device backend's rule (CUDA first where ``device`` allows
    it and onnxruntime has it, edgeres_deploy.backends.choose_providers), plus what the host says about it.

    ``gpu_dist``: the onnxruntime-gpu distribution is installed; ``host_gpu``: torch sees a CUDA GPU here. A GPU host
    whose onnxruntime has no CUDA provider gets a hint: install onnxruntime-gpu, or remove the CPU package that shadows
    it (both install the same ``onnxruntime`` module; whichever was installed last wins).
    """
    from edgeres_deploy.backends import choose_providers as provider_rule

    providers = provider_rule(device, available)
    hint = ""
    if device in ("auto", "cuda") and "CUDAExecutionProvider" not in providers and (host_gpu or device == "cuda"):
        hint = ("onnxruntime-gpu is installed but the CPU onnxruntime package shadows it: pip uninstall -y onnxruntime "
                "onnxruntime-gpu && pip install onnxruntime-gpu" if gpu_dist else
                "this onnxruntime has no CUDA execution provider: pip install 'edgeres[gpu]' (onnxruntime-gpu) to run "
                "the ONNX rows on the GPU")
    return providers, hint


def _host_gpu() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:  # pragma: no cover - core dependency
        return False


def _has_dist(name: str) -> bool:
    from importlib import metadata

    try:
        metadata.version(name)
        return True
    except metadata.PackageNotFoundError:
        return False


class OrtRuntime(BackendRuntime):
    name = "onnxruntime"

    def __init__(self, artifact, device: str = "auto", threads: int | None = None, providers: list | None = None, **_):
        super().__init__(artifact, threads)
        self._device, self._providers = device, providers
        self.backend = None
        self.providers: list = []

    def _open(self) -> None:
        from edgeres_deploy.backends import OrtBackend
        from edgeres_deploy.envinfo import import_optional

        from edgeres.metrics import default_threads

        self.threads = self.threads or default_threads()
        providers = self._providers or self._choose(import_optional("onnxruntime").get_available_providers())
        self.backend = OrtBackend(self.artifact, self.threads, providers=providers)
        self.providers = self.backend.providers
        self.device = gpu_label() if self.backend.device == "cuda" else "cpu"  # what the session really uses
        self.input_shape = self.backend.input.shape
        check_image_input(self.artifact, self.input_shape)
        self.fixed_batch = self.backend.fixed_batch
        self.precision = self.backend.precision

    def _choose(self, available: list) -> list:
        providers, hint = choose_providers(self._device, available, _has_dist("onnxruntime-gpu"), _host_gpu())
        if hint and self._device == "cuda":
            raise Unavailable(hint)
        if hint and hint not in _said:  # once a process: ONNX rows on the CPU of a GPU host
            _said.add(hint)
            logging.getLogger(__name__).info("ONNX Runtime rows run on the CPU: %s", hint)
        return providers

    def _run(self, x: np.ndarray) -> np.ndarray:
        want = self.input_shape[2:]
        if x.ndim == 4 and any(isinstance(w, int) and w != g for w, g in zip(want, x.shape[2:])):
            raise EdgeresError(f"{self.artifact} takes {want[0]}x{want[1]} px images but the preprocessing gives "
                               f"{x.shape[2]}x{x.shape[3]}; pass --image-size {want[0]}")
        return super()._run(x)

    def describe(self) -> dict:
        d = super().describe()
        d["providers"] = self.providers
        return d
