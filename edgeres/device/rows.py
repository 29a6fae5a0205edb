"""The device's CSV rows as the run's report rows: the ``device`` cell names the board, JetPack, TensorRT and power
mode; accuracy is put against the host's baseline; and a host row that could only say ``skipped`` for what the device
measured gives way to the device's rows (one engine row per device and batch size)."""

from __future__ import annotations

MEASURED = "[measured on the device]"


def device_rows(rows: list, label: str, build: dict | None = None, base_top1: float | None = None) -> list:
    """Report rows from the device's CSV rows (parsed): ``label`` in the device column, ``top1_delta`` against the
    host's baseline, the build (built or reused, seconds) in the engine rows' note."""
    for r in rows:
        r["device"] = label
        if base_top1 is not None and r.get("top1") is not None and r.get("top1_delta") is None:
            r["top1_delta"] = r["top1"] - base_top1
        extra = []
        if build and r["stage"] == "engine" and r.get("batch_size") in (None, 1):
            extra.append(f"engine {'built' if build['built'] else 'reused (already built there)'} "
                         f"in {build['seconds']:.1f} s")
        r["note"] = "; ".join(x for x in [r.get("note") or "", *extra, MEASURED] if x)
    return rows


def fold(rows: list) -> list:
    """``rows`` without the host rows that device rows stand in for: a host row of a (stage, runtime) that a device
    measured, and whose status is ``skipped`` (no TensorRT here), is dropped; everything else keeps its order."""
    measured = {(r["stage"], r["runtime"]) for r in rows if MEASURED in (r.get("note") or "") and r["status"] == "ok"}
    return [r for r in rows if not (r["status"] == "skipped" and (r["stage"], r["runtime"]) in measured
                                    and MEASURED not in (r.get("note") or ""))]


def device_latency(rows: list) -> list:
    """The engine rows measured on a device at batch 1: what the recommendation and the verdict quote."""
    return [r for r in rows if r["stage"] == "engine" and MEASURED in (r.get("note") or "") and r["status"] == "ok"
            and r.get("latency_p50_ms") is not None and (r.get("batch_size") or 1) == 1]


def device_summary(rows: list) -> list:
    """One line per device: latency at batch 1, throughput at the largest batch, power, energy, the self-check."""
    out = []
    for label in dict.fromkeys(r["device"] for r in rows if MEASURED in (r.get("note") or "") and r.get("device")):
        mine = [r for r in rows if r.get("device") == label and r["status"] in ("ok", "failed")]
        eng = sorted((r for r in mine if r["stage"] == "engine" and r.get("latency_p50_ms") is not None),
                     key=lambda r: r.get("batch_size") or 1)
        parts = []
        if eng:
            b1, top = eng[0], eng[-1]
            parts.append(f"p50 {b1['latency_p50_ms']:.3f} ms, p99 {b1['latency_p99_ms']:.3f} ms at batch "
                         f"{b1.get('batch_size') or 1}")
            parts.append(f"{top['throughput_ips']:.0f} img/s at batch {top.get('batch_size') or 1}")
            if b1.get("power_w") is not None:
                parts.append(f"{b1['power_w']:.1f} W, {b1['energy_mj_per_image']:.2f} mJ/image")
            if b1.get("gpu_mem_mb") is not None:
                parts.append(f"{b1['gpu_mem_mb']:.0f} MB device memory")
        chk = next((r for r in mine if r["stage"] == "check"), None)
        if chk is not None:
            parts.append("self-check vs the host's reference passed" if chk["status"] == "ok"
                         else "self-check vs the host's reference FAILED")
        out.append(f"{label}: " + ", ".join(parts))
    return out
