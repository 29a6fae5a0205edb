"""The report read at a glance: the one table (summary.md and the terminal show the same columns, formatted the same
way, rows measured on a device marked) and the three-line verdict."""

from __future__ import annotations

import math

from edgeres.device.rows import device_summary
from edgeres.stage_names import BASELINE, ENGINE, QUANTIZE


def is_proxy(row: dict, target: dict | None) -> bool:
    """A row whose latency stands in for another runtime's: a TensorRT-form (S8 Q/DQ) INT8 ONNX timed on this CPU."""
    t = target or {}
    return (t.get("runtime") == "tensorrt" and row.get("runtime") != "tensorrt" and row.get("precision") == "int8"
            and not (row.get("note") or "").endswith("[measured on the device]"))


# the one table: summary.md and the terminal show the same columns, formatted the same way
TABLE = (("stage", "stage"), ("runtime", "runtime"), ("precision", "precision"), ("top1", "top-1 %"),
         ("top1_delta", "Δtop-1"), ("agreement", "agree %"), ("latency_p50_ms", "p50 ms"),
         ("throughput_ips", "img/s"), ("macs", "GMACs"), ("model_size_mb", "size MB"), ("peak_rss_mb", "peak MB"),
         ("status", "status"))


def short_device(label: str | None) -> str:
    """'Jetson Orin Nano Engineering Reference Developer Kit Super, JetPack 6.2, ...' -> 'Jetson Orin Nano ... Super'."""
    return (label or "").split(",")[0].replace(" Engineering Reference", "").replace(" Developer Kit", "")


def table_cells(r: dict, target: dict | None = None, devices: list | None = None) -> list:
    """One row of the report table as strings (empty where unknown); a proxy latency is marked with '*', a row
    measured on a device with '@N' after its runtime (``devices``: the labels in order; see table_footnote)."""
    out = []
    for col, _ in TABLE:
        v = r.get(col)
        if col == "runtime" and devices and r.get("device") in devices:
            out.append(f"{v}@{devices.index(r['device']) + 1}")
        elif v is None or (isinstance(v, float) and math.isnan(v)):
            out.append("")
        elif col == "macs":
            out.append(f"{v / 1e9:.3f}")
        elif col in ("top1", "top1_delta", "agreement"):
            out.append(f"{v:+.2f}" if col == "top1_delta" else f"{v:.2f}")
        elif col == "latency_p50_ms":
            out.append(f"{v:.3f}" + ("*" if is_proxy(r, target) else ""))
        elif col in ("throughput_ips", "model_size_mb", "peak_rss_mb"):
            out.append(f"{v:.1f}")
        else:
            out.append(str(v))
    return out


def measured_devices(rows: list) -> list:
    """The devices (their ``device`` labels) that rows were measured on with --device, in order."""
    return list(dict.fromkeys(r["device"] for r in rows if r.get("device") and "[measured on the device]"
                              in (r.get("note") or "")))


def table_footnote(rows: list, target: dict | None = None) -> str:
    lines = [f"@{k} measured on {label}" for k, label in enumerate(measured_devices(rows), 1)]
    if any(is_proxy(r, target) and r.get("latency_p50_ms") is not None for r in rows):
        lines.append("* CPU latency of the TensorRT-form INT8 ONNX on this host: a proxy, not the engine's latency "
                     "(measure on the device).")
    return "\n".join(lines)


def markdown_table(rows: list, target: dict | None = None) -> str:
    lines = ["| " + " | ".join(h for _, h in TABLE) + " |", "|" + "---|" * len(TABLE)]
    devices = measured_devices(rows)
    for r in rows:
        lines.append("| " + " | ".join(c.replace("|", "/") for c in table_cells(r, target, devices)) + " |")
    notes = [f"- {r['stage']} ({r['runtime']}): {r['note']}" for r in rows if r.get("note")]
    foot = table_footnote(rows, target)
    return "\n".join(lines + ([foot] if foot else []) + (["", "Notes:"] + notes if notes else []))


def _ratio(a, b):
    return a / b if a and b else None


def _gain_line(rows: list, rec: dict, base: dict | None) -> str:
    """The verdict's second line: only the gains worth saying (a ratio of 1.0x is no news), then the accuracy."""
    rec_row = next((r for r in rows if r["stage"] == rec["stage"] and r["runtime"] == rec["runtime"]
                    and r["precision"] == rec["precision"] and r["status"] == "ok"), {})
    parts = []
    if (rec.get("size_reduction") or 0) > 1.05:
        parts.append(f"{rec['size_reduction']:.1f}x smaller")
    if (rec.get("macs_reduction") or 0) > 1.05:
        parts.append(f"{rec['macs_reduction']:.1f}x fewer MACs")
    for d in rec.get("device_latency") or []:
        parts.append(f"p50 {d['latency_p50_ms']:.3f} ms on {short_device(d['device'])}")
    if (rec.get("speedup") or 0) > 1.05:
        parts.append(f"{rec['speedup']:.2f}x faster than {rec['speedup_reference']} on this host")
    elif rec.get("speedup") and rec["stage"] != BASELINE:
        parts.append(f"no faster than {rec['speedup_reference']} on this host ({rec['speedup']:.2f}x)")
    if rec["stage"] == BASELINE:
        parts.insert(0, "no optimized artifact stayed within the accuracy budget")
    mem = _ratio((base or {}).get("peak_rss_mb"), rec_row.get("peak_rss_mb"))
    if mem and mem > 1.05:
        parts.append(f"{mem:.1f}x less peak memory")
    acc = f"top-1 {rec['top1']:.2f}% ({rec['top1_delta'] or 0:+.2f} points vs the baseline's " \
          f"{base['top1']:.2f}%; budget {rec['budget_points']:g} point(s))" if base else f"top-1 {rec['top1']:.2f}%"
    if rec_row.get("agreement") is not None:
        acc += f", {rec_row['agreement']:.1f}% same predictions"
    return "**Gain:** " + ", ".join(parts + [acc]) + "."


def _measure_line(rows: list, t: dict, run: str) -> str:
    """The verdict's third line: where the target's own figures were measured, or how to measure them."""
    on_trt = t.get("runtime") == "tensorrt"
    measured = device_summary(rows)
    here = next((r for r in rows if r["stage"] == ENGINE and r["runtime"] == "tensorrt" and r["status"] == "ok"
                 and not str(r.get("device") or "").startswith("host proxy")), None) if not \
        str(t.get("name", "")).startswith("jetson") else None
    if measured:
        return ("**Measured on the device:** " + "; ".join(measured) + ". Built and run there by the bundle itself "
                "(engine and timing cache kept on the device: a re-run builds nothing).")
    if here:
        return (f"**Measured on the target itself:** the TensorRT engine ran on this host's GPU ({here['device']}), "
                f"the {t.get('name')} target. Another GPU model needs its own engine: from the unpacked bundle, "
                "`./run.sh build && ./run.sh bench --csv ../device.csv`, then "
                f"`edgeres report --run {run} --merge device.csv`.")
    if on_trt:
        return ("**Still to measure on the device:** the TensorRT engine's latency, throughput and memory (this host "
                "has no TensorRT: its CPU latency of the INT8 file is only a proxy). On the Jetson: "
                "`mkdir b && tar xzf bundle.tar.gz -C b && cd b && sh install.sh && ./run.sh build && "
                "./run.sh bench --csv ../device.csv`, then here: "
                f"`edgeres report --run {run} --merge device.csv`.")
    return ("**Still to measure on the device:** latency and memory on the target itself if it is not this host: "
            "`./run.sh bench --csv ../device.csv` from the unpacked bundle, then "
            f"`edgeres report --run {run} --merge device.csv`.")


def verdict_lines(rows: list, rec: dict, target: dict | None = None, run_dir: str | None = None) -> list:
    """The summary's first three lines: what to deploy; how much smaller, faster and how accurate; what is still to
    be measured on the device, and how."""
    t = target or {}
    base = next((r for r in rows if r["stage"] == BASELINE and r["runtime"] == "torch" and r["status"] == "ok"), None)
    on_trt = t.get("runtime") == "tensorrt"
    if not rec.get("artifact"):
        first = f"**No recommendation:** {rec.get('reason', 'nothing measured')}; deploy the baseline or raise the budget."
        second = (f"Baseline top-1 {base['top1']:.2f}%." if base and base.get("top1") is not None
                  else "No baseline accuracy was measured.")
    else:
        form = "TensorRT engine built from it on the device" if on_trt and rec["runtime"] != "tensorrt" else rec["runtime"]
        first = (f"**Recommended:** deploy `{rec['stage']}/{rec['artifact']}` ({(rec.get('precision') or '').upper()}, "
                 f"{form}) to {t.get('name', 'the target')}"
                 + ("; bundle: `bundle/bundle.tar.gz`." if rec["stage"] in (QUANTIZE, ENGINE) else "."))
        second = _gain_line(rows, rec, base)
    return [first, second, _measure_line(rows, t, run_dir or "RUN")]
