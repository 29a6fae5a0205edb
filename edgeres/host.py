"""The machine the figures were measured on (report.json's ``host``): CPU model and instruction sets, cores, memory,
GPUs, CUDA and cuDNN, library versions."""

from __future__ import annotations

import os
import platform


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


# the instruction sets INT8 (and BF16) inference speed depends on: x86, then Arm (a Jetson's dot product and i8mm)
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "amx_bf16", "asimddp", "i8mm")


def cpu_model_and_flags() -> tuple:
    """(CPU model, [the CPU_FLAGS it has]) from /proc/cpuinfo; the platform's name and [] where there is none."""
    cpu, words = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key = line.split(":", 1)[0].strip().lower()
                if key == "model name" and cpu in (platform.processor(), platform.machine()):
                    cpu = line.split(":", 1)[1].strip()
                elif key in ("flags", "features"):  # x86 says flags, Arm says Features
                    words |= set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return cpu, [w for w in CPU_FLAGS if w in words]


def host_info(threads: int | None = None) -> dict:
    """The machine the figures were measured on: CPU model and instruction sets, cores, GPU, library versions."""
    cpu, flags = cpu_model_and_flags()
    try:
        import psutil

        physical, logical = psutil.cpu_count(logical=False), psutil.cpu_count()
        mem_gb = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:  # pragma: no cover
        physical, logical, mem_gb = None, os.cpu_count(), None
    return {
        "cpu": cpu, "cpu_flags": flags, "physical_cores": physical, "logical_cores": logical, "memory_gb": mem_gb, **gpu_info(),
        "os": platform.platform(), "python": platform.python_version(), "threads": threads,
        "versions": {d: _version(d) for d in ("edgeres", "torch", "torchvision", "onnx", "onnxruntime",
                                               "onnxruntime-gpu", "nncf", "torch-pruning", "openvino", "tensorrt",
                                               "pycuda", "cuda-python", "nvidia-dali-cuda120", "nvidia-dali-cuda130")},
    }


def gpu_info() -> dict:
    """``gpu``: the name of the GPU the torch rows ran on (None without one); ``gpus``: every visible GPU with its
    memory and compute capability; ``cuda``/``cudnn``: the versions torch runs with."""
    try:
        import torch
    except ImportError:  # pragma: no cover - core dependency
        return {"gpu": None, "gpus": [], "cuda": None, "cudnn": None}
    if not torch.cuda.is_available():
        return {"gpu": None, "gpus": [], "cuda": torch.version.cuda, "cudnn": None}
    gpus = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        gpus.append({"name": p.name, "memory_gb": round(p.total_memory / 2**30, 1),
                     "capability": f"{p.major}.{p.minor}"})
    return {"gpu": torch.cuda.get_device_name(torch.cuda.current_device()), "gpus": gpus, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version()}
