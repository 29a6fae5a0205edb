"""The mixed-precision choice per device, with the CUDA capability queries faked (torch/cuda/__init__.py at 2.14.1:
get_device_name(device=None) -> str, get_device_capability(device=None) -> (major, minor))."""

from __future__ import annotations

import pytest
import torch

from edgeres import amp
from edgeres.amp import choose_amp
from edgeres.errors import EdgeresError

CUDA = torch.device("cuda", 0)
CPU = torch.device("cpu")


def _gpu(monkeypatch, name, cap):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: cap)


@pytest.mark.parametrize("name,cap,dtype,scaler", [
    ("NVIDIA H200", (9, 0), "bf16", False),
    ("NVIDIA A100-SXM4-80GB", (8, 0), "bf16", False),
    ("NVIDIA GeForce RTX 4090", (8, 9), "bf16", False),
    ("Tesla V100-SXM2-16GB", (7, 0), "fp16", True),
    ("Tesla T4", (7, 5), "fp16", True),
    ("Tesla P100-PCIE-16GB", (6, 0), None, False),
])
def test_auto_on_cuda_by_capability(monkeypatch, name, cap, dtype, scaler):
    _gpu(monkeypatch, name, cap)
    p = choose_amp("auto", CUDA)
    assert (p.dtype, p.scaler) == (dtype, scaler) and name in p.reason


def test_forced_modes_on_cuda(monkeypatch):
    _gpu(monkeypatch, "Tesla T4", (7, 5))
    with pytest.raises(EdgeresError, match="Tesla T4, sm_75 has no bfloat16 tensor cores.*--amp fp16"):
        choose_amp("bf16", CUDA)
    assert choose_amp("fp16", CUDA).scaler and not choose_amp("off", CUDA).enabled
    _gpu(monkeypatch, "Tesla P100-PCIE-16GB", (6, 0))
    assert choose_amp("fp16", CUDA).dtype == "fp16"  # forced: the user's call
    _gpu(monkeypatch, "NVIDIA H200", (9, 0))
    assert choose_amp("fp16", CUDA) == amp.AmpPolicy("fp16", True, "fp16 autocast with a gradient scaler (NVIDIA H200, sm_90)")


def test_cpu_follows_the_cpu_flags(monkeypatch):
    monkeypatch.setattr(amp, "cpu_has_bf16", lambda: False)
    assert choose_amp("auto", CPU).dtype is None
    monkeypatch.setattr(amp, "cpu_has_bf16", lambda: True)
    assert choose_amp("auto", CPU).dtype == "bf16"
    assert choose_amp("bf16", CPU).dtype == "bf16" and choose_amp("off", CPU).dtype is None
    with pytest.raises(EdgeresError, match="unknown --amp 'half'"):
        choose_amp("half", CPU)


def test_autocast_and_scaler_are_pass_throughs_when_off():
    """`off` must be the fp32 training of before: autocast disabled, and a disabled scaler returns the loss as is and
    steps the optimizer itself."""
    p = choose_amp("off", CPU)
    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 3)
    opt = torch.optim.SGD(lin.parameters(), lr=0.1)
    x = torch.randn(5, 4)
    with p.autocast("cpu"):
        y = lin(x)
    assert y.dtype == torch.float32
    scaler = p.grad_scaler("cpu")
    loss = y.square().mean()
    assert scaler.scale(loss) is loss
    before = lin.weight.detach().clone()
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    assert not torch.equal(before, lin.weight)


def test_bf16_autocast_runs_on_cpu_tensors():
    p = choose_amp("bf16", CPU)
    with p.autocast("cpu"):
        y = torch.nn.Linear(4, 3)(torch.randn(2, 4))
    assert y.dtype == torch.bfloat16


def test_cuda_speed_flags_are_restored(monkeypatch):
    saved = torch.backends.cudnn.benchmark, torch.get_float32_matmul_precision()
    with amp.cuda_speed_flags(CPU):
        assert (torch.backends.cudnn.benchmark, torch.get_float32_matmul_precision()) == saved
    with amp.cuda_speed_flags(CUDA):  # only flags: nothing runs on the device
        assert torch.backends.cudnn.benchmark and torch.get_float32_matmul_precision() == "high"
    assert (torch.backends.cudnn.benchmark, torch.get_float32_matmul_precision()) == saved
