"""Mixed precision for training (``--amp auto|bf16|fp16|off``): which autocast dtype, and whether a gradient scaler.

``auto`` picks, per device:

- CUDA, compute capability 8.0 and above (Ampere, Hopper, Blackwell): bf16 autocast. bf16 has fp32's exponent range,
  so no loss scaling is needed.
- CUDA 7.x (Volta, Turing): fp16 autocast with a ``GradScaler`` (fp16 overflows and underflows without loss scaling).
  ``torch.cuda.is_bf16_supported()`` says True there too, but through emulation (no bf16 tensor cores), which is slower
  than fp32: capability, not that call, decides.
- CUDA below 7.0 (no tensor cores; fp16 at a fraction of fp32's rate on consumer Pascal): off.
- CPU: bf16 on x86 CPUs with AMX or AVX-512 BF16, otherwise off (fp32), as before ``--amp`` existed.

Weights, optimizer state and BatchNorm statistics stay fp32 in every mode; only the operations autocast lists run in
the lower precision. ``off`` is bit-for-bit the fp32 training of before (``autocast(enabled=False)`` and a disabled
scaler are pass-throughs).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from edgeres.errors import EdgeresError

MODES = ("auto", "bf16", "fp16", "off")


@dataclass(frozen=True)
class AmpPolicy:
    dtype: str | None  # "bf16", "fp16", or None (fp32)
    scaler: bool  # a GradScaler (fp16 only)
    reason: str  # for the log: what was chosen and why

    @property
    def enabled(self) -> bool:
        return self.dtype is not None

    def torch_dtype(self):
        import torch

        return torch.float16 if self.dtype == "fp16" else torch.bfloat16

    def autocast(self, device_type: str):
        import torch

        return torch.autocast(device_type, dtype=self.torch_dtype(), enabled=self.enabled)

    def grad_scaler(self, device_type: str):
        import torch

        return torch.amp.GradScaler(device_type, enabled=self.scaler)


def cpu_has_bf16() -> bool:
    """True on x86 CPUs with native bfloat16 math (AMX or AVX-512 BF16), where bf16 autocast trains faster."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def _gpu(device) -> tuple[str, tuple]:
    import torch

    return torch.cuda.get_device_name(device), tuple(torch.cuda.get_device_capability(device))


def choose_amp(mode: str, device) -> AmpPolicy:
    """The policy for ``mode`` on ``device`` (a torch.device); EdgeresError for a mode the device cannot run."""
    if mode not in MODES:
        raise EdgeresError(f"unknown --amp {mode!r}; use one of {', '.join(MODES)}")
    if mode == "off":
        return AmpPolicy(None, False, "fp32 (--amp off)")
    if device.type == "cuda":
        name, cap = _gpu(device)
        where = f"{name}, sm_{cap[0]}{cap[1]}"
        if mode == "bf16" and cap < (8, 0):
            raise EdgeresError(f"--amp bf16: the {where} has no bfloat16 tensor cores (compute capability 8.0+ has); "
                               "use --amp fp16 or --amp auto")
        if mode == "bf16" or (mode == "auto" and cap >= (8, 0)):
            return AmpPolicy("bf16", False, f"bf16 autocast ({where})")
        if mode == "fp16" or cap >= (7, 0):
            return AmpPolicy("fp16", True, f"fp16 autocast with a gradient scaler ({where})")
        return AmpPolicy(None, False, f"fp32: the {where} has no tensor cores (--amp fp16 forces fp16)")
    if device.type == "cpu":
        if mode == "bf16" or (mode == "auto" and cpu_has_bf16()):
            return AmpPolicy("bf16", False, "bf16 autocast on the CPU" + (" (AMX/AVX-512 BF16)" if mode == "auto" else ""))
        if mode == "fp16":
            return AmpPolicy("fp16", True, "fp16 autocast on the CPU with a gradient scaler")
        return AmpPolicy(None, False, "fp32: this CPU has no native bf16 (AMX/AVX-512 BF16)")
    if mode == "auto":
        return AmpPolicy(None, False, f"fp32 on {device.type}")
    raise EdgeresError(f"--amp {mode} is for CUDA GPUs and CPUs, not {device.type}; use --amp off")


@contextlib.contextmanager
def cuda_speed_flags(device):
    """While training on CUDA: cuDNN autotuning (fixed input sizes) and TF32 matmuls (convolutions use TF32 by
    default); restored afterwards, so inference measured later in the process keeps torch's defaults. No-op on CPU."""
    import torch

    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cudnn.benchmark, torch.get_float32_matmul_precision()
    torch.backends.cudnn.benchmark = True
    torch.set_float32_matmul_precision("high")
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = saved[0]
        torch.set_float32_matmul_precision(saved[1])
