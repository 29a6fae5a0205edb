"""recommend(), case by case: the budget's edges, the order of stages, the precision a TensorRT target runs, the faster
runtime on x86, nothing within budget, and the rows a device measured (--device). Pure: no model, no file."""

from __future__ import annotations

import pytest

from edgeres.device.rows import MEASURED
from edgeres.recommend import recommend
from edgeres.report import new_row
from edgeres.targets import get_target


def _row(stage, runtime, precision, delta, ms, macs=2e9, mb=45.0, **kw):
    return new_row(stage=stage, runtime=runtime, precision=precision, status=kw.pop("status", "ok"), top1=90.0 + delta,
                   top1_delta=delta, latency_p50_ms=ms, macs=macs, model_size_mb=mb, batch_size=kw.pop("batch", 1),
                   artifact=f"{stage}/{runtime}-{precision}", **kw)


BASE = [_row("baseline", "torch", "fp32", 0.0, 10.0, 4e9, 90.0), _row("baseline", "onnxruntime", "fp32", 0.0, 8.0, 4e9, 90.0)]
PRUNE = _row("prune", "torch", "fp32", -0.5, 6.0)
EXPORT = _row("export", "onnxruntime", "fp32", -0.5, 4.0)
Q_ORT = _row("quantize", "onnxruntime", "int8", -1.0, 2.0, mb=12.0)
Q_OV = _row("quantize", "openvino", "int8", -1.0, 1.5, mb=12.0)
HOST = BASE + [PRUNE, EXPORT, Q_ORT, Q_OV]  # a run on a host without TensorRT: no engine row
ENGINE = _row("engine", "tensorrt", "int8", -0.8, 0.9, mb=12.0)
PROXY = _row("engine", "tensorrt", "int8", -0.1, 3.0, mb=12.0, device="host proxy (GPU here)")
ON_DEVICE = _row("engine", "tensorrt", "int8", -0.3, 0.4, mb=12.0, device="Jetson Orin Nano", note=MEASURED)

CASES = [
    # (id, target, budget, rows, expected (stage, runtime, precision))
    ("x86: INT8 exactly at the budget's edge is within, in the faster runtime", "x86-cpu", 1.0, HOST,
     ("quantize", "openvino", "int8")),
    ("x86: INT8 just over the budget gives the FP32 export", "x86-cpu", 0.99, HOST, ("export", "onnxruntime", "fp32")),
    ("x86: ONNX Runtime when it is the faster runtime", "x86-cpu", 1.0,
     BASE + [EXPORT, Q_ORT, {**Q_OV, "latency_p50_ms": 2.5}], ("quantize", "onnxruntime", "int8")),
    ("x86: the faster runtime compared at the same batch", "x86-cpu", 1.0,
     BASE + [Q_ORT, {**Q_OV, "latency_p50_ms": 1.0, "batch_size": 8}, {**Q_OV, "latency_p50_ms": 2.5}],
     ("quantize", "onnxruntime", "int8")),
    ("x86: a failed row is no candidate", "x86-cpu", 1.0, BASE + [EXPORT, {**Q_ORT, "status": "failed"}],
     ("export", "onnxruntime", "fp32")),
    ("x86: nothing optimized within budget gives the baseline in ONNX Runtime", "x86-cpu", 0.0, HOST,
     ("baseline", "onnxruntime", "fp32")),
    ("x86: a TensorRT row never speaks for x86", "x86-cpu", 1.0, HOST + [ENGINE], ("quantize", "openvino", "int8")),
    ("jetson without an engine row: INT8 first by target precision", "jetson", 1.0, HOST,
     ("quantize", "onnxruntime", "int8")),
    ("jetson: INT8 over budget gives the FP32 export, built FP16", "jetson", 0.5, HOST,
     ("export", "onnxruntime", "fp32")),
    ("jetson: an OpenVINO row never speaks for TensorRT", "jetson", 1.0, BASE + [EXPORT, Q_OV],
     ("export", "onnxruntime", "fp32")),
    ("jetson: an engine row built here comes first", "jetson", 1.0, HOST + [ENGINE], ("engine", "tensorrt", "int8")),
    ("jetson: an engine row over budget gives way to the INT8 file", "jetson", 1.0, HOST + [{**ENGINE, "top1_delta": -1.05}],
     ("quantize", "onnxruntime", "int8")),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_recommend_cases(case):
    _, target, budget, rows, expected = case
    rec = recommend([dict(r) for r in rows], get_target(target), budget)
    assert (rec["stage"], rec["runtime"], rec["precision"]) == expected, rec["decided_by"]
    assert rec["budget_points"] == budget and rec["top1_delta"] >= -budget


def test_tensorrt_target_ranks_by_precision_then_macs_not_host_latency():
    rows = BASE + [EXPORT, {**Q_ORT, "latency_p50_ms": 9.0}]  # INT8 Q/DQ reads slower than FP32 on a host CPU
    rec = recommend(rows, get_target("jetson"), 1.0)
    assert rec["stage"] == "quantize" and "(int8)" in rec["decided_by"] and "host CPU latency not used" in rec["decided_by"]
    assert rec["speedup"] is None and "measure the engine on the device" in rec["speedup_note"]
    rec = recommend(rows, get_target("jetson"), 0.5)
    assert rec["stage"] == "export" and "(fp16)" in rec["decided_by"]
    # two FP32 files: the one with fewer MACs
    small = {**PRUNE, "runtime": "onnxruntime", "macs": 1e9, "top1_delta": -0.2}
    assert recommend(BASE + [EXPORT, small], get_target("jetson"), 0.5)["stage"] == "prune"


def test_target_without_int8_never_gets_the_int8_file():
    rec = recommend(HOST, get_target("jetson-nano"), 1.0)  # FP16/FP32 only: the INT8 file cannot be built there
    assert (rec["stage"], rec["precision"]) == ("export", "fp32") and "(fp16)" in rec["decided_by"]


def test_nothing_optimized_within_budget_gives_the_baseline():
    rows = BASE + [{**r, "top1_delta": -5.0} for r in (PRUNE, EXPORT, Q_ORT, Q_OV)]
    rec = recommend(rows, get_target("x86-cpu"), 1.0)
    assert (rec["stage"], rec["runtime"], rec["speedup"]) == ("baseline", "onnxruntime", 1.0)
    assert (recommend(rows, get_target("jetson"), 1.0)["stage"], rec["top1_delta"]) == ("baseline", 0.0)


@pytest.mark.parametrize("target,rows,reason", [
    ("x86-cpu", [PRUNE, EXPORT], "no baseline measurement"),
    ("x86-cpu", [{**BASE[0], "status": "failed"}, BASE[1], EXPORT], "no baseline measurement"),
    # a TensorRT target with only the torch baseline (no ONNX row within budget): nothing to build an engine from
    ("jetson", [BASE[0]] + [{**r, "top1_delta": -5.0} for r in (EXPORT, Q_ORT)], "no artifact within 1.0 points"),
])
def test_no_recommendation(target, rows, reason):
    rec = recommend(rows, get_target(target), 1.0)
    assert rec["artifact"] is None and reason in rec["reason"]


def test_device_measured_engine_row_comes_before_the_host_proxy():
    rows = HOST + [PROXY, ON_DEVICE]  # the proxy row is first in the report and more accurate
    rec = recommend(rows, get_target("jetson-orin-nano"), 1.0)
    assert (rec["stage"], rec["top1_delta"]) == ("engine", -0.3)
    assert rec["device_latency"] == [{"device": "Jetson Orin Nano", "batch_size": 1, "latency_p50_ms": 0.4,
                                      "latency_p99_ms": None, "throughput_ips": None, "power_w": None,
                                      "energy_mj_per_image": None}]
    assert rec["speedup"] is None and "measured on the device" in rec["decided_by"]  # never against the host's latency
    # the device's rows at batch 8 are not the latency quoted
    rec = recommend(HOST + [{**ON_DEVICE, "batch_size": 8}, ON_DEVICE], get_target("jetson-orin-nano"), 1.0)
    assert [d["batch_size"] for d in rec["device_latency"]] == [1]


def test_figures_against_the_baseline():
    rec = recommend(HOST, get_target("x86-cpu"), 1.0)
    assert rec["speedup"] == pytest.approx(8.0 / 1.5) and rec["speedup_reference"] == "baseline/onnxruntime"
    assert rec["size_reduction"] == pytest.approx(90.0 / 12.0) and rec["macs_reduction"] == pytest.approx(2.0)
    assert rec["runtimes_p50_ms"] == {"onnxruntime": 2.0, "openvino": 1.5}
    rec = recommend(BASE + [PRUNE], get_target("x86-cpu"), 1.0)  # a torch row is set against the torch baseline
    assert rec["stage"] == "prune" and rec["speedup"] == pytest.approx(10.0 / 6.0)
    assert rec["speedup_reference"] == "baseline/torch"
