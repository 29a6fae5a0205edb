"""Every report figure right on a GPU host, checked here without one: the CUDA-only calls (memory counters, device
names and properties, onnxruntime's provider list) are faked with torch's and onnxruntime's own signatures
(torch/cuda/memory.py: memory_allocated(device=None), max_memory_allocated(device=None),
reset_peak_memory_stats(device=None); torch/cuda/__init__.py: get_device_name(device=None),
get_device_properties(device) -> name, total_memory, major, minor; torch 2.14.1), and no test double produces a
report row."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torchvision

from edgeres.metrics import torch_macs_params


def test_macs_are_counted_on_the_models_device():
    """A model on another device than the CPU got a CPU input, raised, and its row had no MACs (the GPU run's torch
    rows). The meta device stands in for CUDA: same count as on the CPU, no data needed."""
    m = torchvision.models.resnet18(num_classes=10)
    on_cpu = torch_macs_params(m, 64)
    assert on_cpu[0] > 1e8
    assert torch_macs_params(m.to("meta"), 64) == on_cpu


class FakeCudaMemory:
    """torch.cuda's allocator counters, in bytes, for one device."""

    def __init__(self, allocated: float, peak: float):
        self.allocated, self.peak = allocated, peak

    def memory_allocated(self, device=None):
        return self.allocated

    def max_memory_allocated(self, device=None):
        return self.peak

    def reset_peak_memory_stats(self, device=None):
        self.peak = self.allocated

    def alloc(self, nbytes):
        self.allocated += nbytes
        self.peak = max(self.peak, self.allocated)


def _fake_gpu(monkeypatch, mem: FakeCudaMemory, name="NVIDIA H200"):
    for f in ("memory_allocated", "max_memory_allocated", "reset_peak_memory_stats"):
        monkeypatch.setattr(torch.cuda, f, getattr(mem, f))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)


def test_torch_gpu_memory_is_this_models_peak(monkeypatch):
    """gpu_mem_mb was max_memory_allocated since the process started: after `edgeres train` in the same process
    (the demo) the baseline row showed the training's peak. Now: the model's own peak since the last reset, less
    what the process held apart from it."""
    from edgeres.runtimes.torch_rt import TorchRuntime

    mem = FakeCudaMemory(allocated=500e6, peak=9000e6)  # a training's tensors left, and its peak
    _fake_gpu(monkeypatch, mem)
    model = torchvision.models.resnet18(num_classes=10)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    monkeypatch.setattr(model, "to", lambda *a, **k: (mem.alloc(weights) if a and a[0] != torch.contiguous_format
                                                     else None) or model)  # the copy to the GPU, as the allocator sees it
    rt = TorchRuntime("m.pt", device="auto", threads=1, model=model).open()
    assert rt.device == "cuda:NVIDIA H200" and rt._dev == torch.device("cuda", 0)
    assert rt.gpu_mem_mb() == pytest.approx(weights / 1e6)  # weights only: nothing run yet
    mem.alloc(3e9)  # e.g. the MAC count's copy of the model: before the latency run's reset
    rt.reset_peak_memory()
    mem.alloc(-3e9)
    mem.alloc(120e6)  # one batch's activations
    assert rt.gpu_mem_mb() == pytest.approx(3e9 / 1e6 + weights / 1e6)  # the reset kept what was still allocated
    rt.reset_peak_memory()
    mem.alloc(120e6)
    assert rt.gpu_mem_mb() == pytest.approx(weights / 1e6 + 240)
    rt.close()


def test_measure_resets_the_peak_before_each_latency_run(monkeypatch, tmp_path):
    """measure() starts each batch size's GPU memory peak afresh, after the accuracy pass and the MAC count."""
    from edgeres import measure as measure_mod
    from edgeres.data import Preprocess
    from edgeres.runtimes import Runtime

    events = []

    class Recorder(Runtime):
        name, device = "torch", "cuda:NVIDIA H200"

        def _run(self, x):
            events.append(("run", len(x)))
            return np.zeros((len(x), 10), np.float32)

        def reset_peak_memory(self):
            events.append(("reset",))

        def gpu_mem_mb(self):
            events.append(("read",))
            return 42.0

    monkeypatch.setattr(measure_mod, "load_runtime", lambda name, artifact, **k: Recorder(artifact).open())
    cfg = measure_mod.MeasureConfig(batch_sizes=(1, 4), warmup=1, min_runs=2, max_runs=2, min_time_s=0, memory=False)
    m = measure_mod.measure("baseline", tmp_path / "m.engine", "torch", Preprocess(size=32), cfg=cfg, progress=False)
    assert [r["gpu_mem_mb"] for r in m.rows] == [42.0, 42.0]
    for bs in (1, 4):
        i = events.index(("run", bs))
        assert events[i - 1] == ("reset",) and ("read",) in events[i:]


def test_onnxruntime_providers_and_hints():
    from edgeres.runtimes.ort import choose_providers

    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers("auto", gpu, True, True) == (["CUDAExecutionProvider", "CPUExecutionProvider"], "")
    assert choose_providers("cpu", gpu, True, True) == (["CPUExecutionProvider"], "")
    cpu = ["AzureExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers("auto", cpu, False, False) == (["CPUExecutionProvider"], "")  # a CPU host: nothing to say
    providers, hint = choose_providers("auto", cpu, False, True)
    assert providers == ["CPUExecutionProvider"] and "edgeres[gpu]" in hint
    _, hint = choose_providers("auto", cpu, True, True)  # onnxruntime-gpu installed, shadowed by onnxruntime
    assert "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu" in hint


def test_onnxruntime_cuda_asked_without_its_provider_is_unavailable(tiny_onnx):
    import onnxruntime as ort

    from edgeres.errors import Unavailable
    from edgeres.runtimes import load_runtime

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    with pytest.raises(Unavailable, match="no CUDA execution provider"):
        load_runtime("onnxruntime", tiny_onnx, device="cuda")
    with load_runtime("onnxruntime", tiny_onnx, threads=1) as rt:
        assert rt.device == "cpu" and rt.providers == ["CPUExecutionProvider"]


def test_host_info_names_the_gpu(monkeypatch):
    from edgeres.host import host_info

    props = [SimpleNamespace(name="NVIDIA H200", total_memory=141 * 2**30, major=9, minor=0),
             SimpleNamespace(name="NVIDIA L4", total_memory=22 * 2**30, major=8, minor=9)]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props[i])
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=None: props[i or 0].name)
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 92400)
    h = host_info(4)
    assert h["gpu"] == "NVIDIA H200" and h["cudnn"] == 92400
    assert h["gpus"][1] == {"name": "NVIDIA L4", "memory_gb": 22.0, "capability": "8.9"}
    assert "onnxruntime-gpu" in h["versions"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert host_info()["gpu"] is None and host_info()["gpus"] == []


@pytest.mark.parametrize("flavour", ["10.3", "11"])
def test_cuda_gpu_target_builds_and_measures_the_hosts_own_engine(flavour, monkeypatch, tmp_path, tiny_onnx):
    """`cuda-gpu` on a workstation with `pip install tensorrt`: the engine is built for the TensorRT installed here
    (11.x: strongly typed, whatever the profile's nominal 10.13), through edgeres_deploy's build and runner, and is
    labelled as the host's own GPU, not a proxy (TensorRT and the CUDA binding: the test double, tests/trt_double)."""
    import trt_double

    from edgeres.data import Preprocess
    from edgeres.engine_build import run_engine
    from edgeres.report import new_row
    from edgeres.report_table import verdict_lines
    from edgeres.runtimes.tensorrt_rt import TensorRTRuntime
    from edgeres.targets import get_target

    trt_double.install(monkeypatch, flavour)
    target = get_target("cuda-gpu")
    res = run_engine(tiny_onnx, tmp_path / "m.engine", target, Preprocess(size=32))
    assert res["spec"].trt_family == int(flavour.split(".")[0])
    assert ("--stronglyTyped" in res["trtexec"]) == (flavour == "11") and ("--fp16" in res["trtexec"]) == (flavour != "11")
    assert "host_proxy" not in res["sidecar"] and res["sidecar"]["device"] == trt_double.DEVICE_NAME
    assert res["note"] == f"built and measured on this host's {trt_double.DEVICE_NAME}: the cuda-gpu target itself"
    with TensorRTRuntime(tmp_path / "m.engine") as rt:
        assert rt.describe()["device"] == f"cuda:{trt_double.DEVICE_NAME}" and rt.gpu_mem_mb() > 0
        x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
        assert rt.run(x).shape[0] == 2
    row = new_row(stage="engine", runtime="tensorrt", device=rt.device, precision="int8", status="ok")
    third = verdict_lines([row], {"reason": "-"}, target.to_dict(), "runs/x")[2]
    assert third.startswith("**Measured on the target itself:**") and trt_double.DEVICE_NAME in third
    jetson = verdict_lines([dict(row, device="host proxy: X")], {"reason": "-"}, get_target("jetson").to_dict())[2]
    assert jetson.startswith("**Still to measure on the device:**")
