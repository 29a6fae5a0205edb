"""The recommendation: the most optimized artifact for the target within the accuracy budget, and, on x86, the faster
of ONNX Runtime and OpenVINO to run it in."""

from __future__ import annotations

from edgeres.device.rows import device_latency
from edgeres.stage_names import BASELINE, MOST_OPTIMIZED_FIRST, QUANTIZE

ORDER = MOST_OPTIMIZED_FIRST
# what the recommendation quotes of each device the recommended engine was measured on (--device)
DEVICE_FIGURES = ("device", "batch_size", "latency_p50_ms", "latency_p99_ms", "throughput_ips", "power_w",
                  "energy_mj_per_image")


def faster_runtime(rows: list, stage: str = QUANTIZE) -> tuple:
    """(runtime, {runtime: p50 ms}) of the faster of ONNX Runtime and OpenVINO on ``stage``'s artifact, at the smallest
    batch measured for both; (None, {}) when neither was measured ok."""
    ok = [r for r in rows if r.get("stage") == stage and r.get("status") == "ok" and r.get("latency_p50_ms")
          and r.get("runtime") in ("onnxruntime", "openvino")]
    if not ok:
        return None, {}
    batches = [b for b in sorted({r.get("batch_size") or 1 for r in ok})
               if {r["runtime"] for r in ok if (r.get("batch_size") or 1) == b} == {r["runtime"] for r in ok}]
    b = batches[0] if batches else min(r.get("batch_size") or 1 for r in ok)
    p50 = {r["runtime"]: r["latency_p50_ms"] for r in ok if (r.get("batch_size") or 1) == b}
    return min(p50, key=p50.get), p50


def _candidates(rows: list, target) -> list:
    """The rows measured ok with a top-1, most optimized stage first, in the runtimes that speak for the target."""
    out = []
    for stage in ORDER:
        for r in rows:
            if r["stage"] != stage or r["status"] != "ok" or r["top1"] is None:
                continue
            if target.runtime == "tensorrt" and r["runtime"] not in ("tensorrt", "onnxruntime"):
                continue
            if target.runtime == "onnxruntime" and r["runtime"] not in ("onnxruntime", "openvino", "torch"):
                continue
            out.append(r)
    return out


def _by_target_precision(within: list, target, budget: float) -> tuple:
    """(row, why) for a TensorRT target the host cannot run: ONNX Runtime's CPU latency of a TensorRT-form Q/DQ file
    says nothing of the engine (it reads slower than FP32 here). Ranked by what the target runs: its precision, then
    MACs, then size."""
    rank = {p: i for i, p in enumerate(("int8", "fp16", "fp32"))}
    allowed = [p for p in ("int8", "fp16", "fp32") if p in target.precisions]

    def target_precision(r):  # an FP32 ONNX file is built FP16 on a target that has FP16
        p = r["precision"] or "fp32"
        return "fp16" if p == "fp32" and "fp16" in allowed else p

    runnable = [r for r in within if target_precision(r) in allowed] or within  # no INT8 file for an FP16-only board
    best = min(runnable, key=lambda r: (rank.get(target_precision(r), 9), r.get("macs") or float("inf"),
                                      r.get("model_size_mb") or float("inf")))
    why = (f"within the {budget}-point budget, ranked by the precision {target.name} runs it in "
           f"({target_precision(best)}), then MACs ({(best.get('macs') or 0) / 1e9:.3f} G), then size "
           f"({best.get('model_size_mb') or 0:.1f} MB); host CPU latency not used (TensorRT target, "
           "ONNX Runtime here is only the accuracy proxy)")
    return best, why


def recommend(rows: list, target, budget: float) -> dict:
    """The most optimized artifact for the target whose top-1 is within ``budget`` points of the baseline."""
    base = next((r for r in rows if r["stage"] == BASELINE and r["runtime"] == "torch" and r["status"] == "ok"), None)
    if base is None:
        return {"artifact": None, "reason": "no baseline measurement"}
    base_ort = next((r for r in rows if r["stage"] == BASELINE and r["runtime"] == "onnxruntime" and r["status"] == "ok"), base)
    within = [r for r in _candidates(rows, target) if (r["top1_delta"] or 0.0) >= -budget]
    measured = device_latency(rows)
    if measured:  # within a stage, what the board itself measured (--device) comes before a host's proxy of it
        within.sort(key=lambda r: (ORDER.index(r["stage"]), r not in measured))
    if not within:
        return {"artifact": None, "reason": f"no artifact within {budget} points of the baseline's top-1"}
    best = within[0]
    decided_by = f"the first within the {budget}-point budget in the order {' > '.join(ORDER)}"
    if target.runtime == "tensorrt" and not any(r["runtime"] == "tensorrt" for r in within):
        best, decided_by = _by_target_precision(within, target, budget)
    runtimes = {}
    if target.runtime == "onnxruntime":  # x86: the faster of ONNX Runtime and OpenVINO for the chosen artifact
        fast, runtimes = faster_runtime(within, best["stage"])
        best = next((r for r in within if r["stage"] == best["stage"] and r["runtime"] == fast), best)
        if runtimes:
            decided_by += f"; run in {fast}, the faster runtime for it here"
    ref = base_ort if best["runtime"] in ("onnxruntime", "openvino") else base
    proxy = target.runtime == "tensorrt" and best["runtime"] != "tensorrt"
    on_device = [r for r in device_latency(rows) if (r["stage"], r["runtime"]) == (best["stage"], best["runtime"])]
    speedup = None  # a device's latency is never set against the host's
    if not on_device and not (proxy and best["precision"] == "int8") and best["latency_p50_ms"] and ref["latency_p50_ms"]:
        speedup = ref["latency_p50_ms"] / best["latency_p50_ms"]
    decided_by += "; its latency measured on the device (--device), not on this host" if on_device else ""
    size_base = base_ort.get("model_size_mb") or base.get("model_size_mb")
    return {
        "stage": best["stage"], "artifact": best["artifact"], "runtime": best["runtime"], "precision": best["precision"],
        "top1": best["top1"], "top1_delta": best["top1_delta"], "budget_points": budget,
        "speedup": speedup, "speedup_reference": f"{ref['stage']}/{ref['runtime']}", "runtimes_p50_ms": runtimes,
        "decided_by": decided_by,
        "size_reduction": (size_base / best["model_size_mb"]) if size_base and best.get("model_size_mb") else None,
        "macs_reduction": (base["macs"] / best["macs"]) if base.get("macs") and best.get("macs") else None,
        "speedup_note": ("measure the engine on the device (./run.sh bench); ONNX Runtime on this CPU is "
                         "only the accuracy proxy for TensorRT INT8") if proxy and speedup is None else "",
        "device_latency": [{k: r.get(k) for k in DEVICE_FIGURES} for r in on_device],
    }
