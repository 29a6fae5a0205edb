"""The report: report.csv (one row per stage, runtime and batch size), report.json (host + rows), report.png, summary.md.

Figures a runtime cannot give are empty cells, never zero.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
from pathlib import Path

from edgeres_deploy.metrics import REPORT_COLUMNS

from edgeres.utils import atomic_path, write_json_atomic, write_text_atomic

COLUMNS = REPORT_COLUMNS  # docs/design.md §3; defined once, beside the device runtime that writes it too
STATUSES = ("ok", "skipped", "failed")
_ROUND = {"top1": 3, "top5": 3, "top1_delta": 3, "agreement": 3, "latency_p50_ms": 4, "latency_p90_ms": 4,
          "latency_p99_ms": 4, "throughput_ips": 2, "model_size_mb": 3, "peak_rss_mb": 1, "gpu_mem_mb": 1}


def new_row(**values) -> dict:
    unknown = set(values) - set(COLUMNS)
    if unknown:
        raise KeyError(f"not report columns: {sorted(unknown)}")
    row = {c: None for c in COLUMNS}
    row.update(values)
    if row["status"] is None:
        row["status"] = "ok"
    if row["status"] not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, not {row['status']!r}")
    return row


def _cell(col, v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if v != v:  # NaN: unknown
            return ""
        return f"{round(v, _ROUND.get(col, 4))}"
    return str(v)


def rows_to_csv(rows: list) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow([_cell(c, r.get(c)) for c in COLUMNS])
    return buf.getvalue()


def read_csv(path) -> list:
    """Rows of a report.csv, with numbers parsed and empty cells as None."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != COLUMNS:
            raise ValueError(f"{path} does not have the edgeres report columns")
        rows = []
        for raw in reader:
            row = {}
            for c in COLUMNS:
                v = raw[c]
                if v == "":
                    row[c] = None
                elif c in ("stage", "artifact", "runtime", "device", "precision", "status", "note"):
                    row[c] = v
                elif c in ("batch_size", "input_size", "params", "macs"):
                    row[c] = int(float(v))
                else:
                    row[c] = float(v)
            rows.append(row)
    return rows


def write_csv(path, rows: list) -> None:
    write_text_atomic(path, rows_to_csv(rows))


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def host_info(threads: int | None = None) -> dict:
    """The machine the figures were measured on: CPU model, cores, GPU, library versions."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import psutil

        physical, logical = psutil.cpu_count(logical=False), psutil.cpu_count()
        mem_gb = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:  # pragma: no cover
        physical, logical, mem_gb = None, os.cpu_count(), None
    gpu = None
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:  # pragma: no cover
        pass
    return {
        "cpu": cpu, "physical_cores": physical, "logical_cores": logical, "memory_gb": mem_gb, "gpu": gpu,
        "os": platform.platform(), "python": platform.python_version(), "threads": threads,
        "versions": {d: _version(d) for d in ("edgeres", "torch", "torchvision", "onnx", "onnxruntime", "nncf",
                                               "torch-pruning", "openvino", "tensorrt", "pycuda", "cuda-python")},
    }


def _is_proxy(row: dict, target: dict | None) -> bool:
    """A row whose latency stands in for another runtime's: a TensorRT-form (S8 Q/DQ) INT8 ONNX timed on this CPU."""
    t = target or {}
    return (t.get("runtime") == "tensorrt" and row.get("runtime") != "tensorrt" and row.get("precision") == "int8"
            and not (row.get("note") or "").endswith("[measured on the device]"))


def _label(r: dict) -> str:
    return f"{r['stage']} {r['runtime'] or ''} {r['precision'] or ''}".strip()


def _per_stage(rows: list, col: str, prefer=("onnxruntime", "tensorrt", "torch")) -> list:
    """One (label, value) per stage for ``col``: the row of the deployable runtime when there is one."""
    out = []
    for stage in dict.fromkeys(r["stage"] for r in rows):
        have = [r for r in rows if r["stage"] == stage and r["status"] == "ok" and r.get(col) is not None]
        if have:
            have.sort(key=lambda r: prefer.index(r["runtime"]) if r["runtime"] in prefer else len(prefer))
            out.append((f"{stage}\n{have[0]['runtime']} {have[0]['precision'] or ''}".strip(), have[0][col]))
    return out


def plot(rows: list, path, recommendation: dict | None = None, target: dict | None = None) -> dict:
    """Top: top-1 vs latency p50, one marker per runtime, the baseline as reference, the recommendation marked,
    proxy latencies (TensorRT-form INT8 ONNX timed on this CPU) hollow and said so in the plot.
    Bottom: MACs, artifact size and peak memory per stage.

    Returns what was drawn: {"texts": [...], "panels": [titles], "bars": {title: [(label, value)]}}.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rec = recommendation or {}
    ok = [r for r in rows if r["status"] == "ok" and r.get("latency_p50_ms") is not None and r.get("top1") is not None]
    fig = plt.figure(figsize=(12, 8.2))
    gs = fig.add_gridspec(2, 3, height_ratios=(1.35, 1), hspace=0.55, wspace=0.35)
    ax = fig.add_subplot(gs[0, :])
    markers = {"torch": "o", "onnxruntime": "s", "openvino": "D", "tensorrt": "*", "edgeres_deploy": "P"}
    colours = dict(zip(markers, ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")))
    seen, proxies = set(), []
    base = next((r for r in ok if r["stage"] == "baseline" and r["runtime"] == "torch"), None)
    if base is not None:
        ax.axhline(base["top1"], color="grey", ls="--", lw=1)
        ax.annotate(f"baseline top-1 {base['top1']:.1f}%", (0.005, base["top1"]), xycoords=("axes fraction", "data"),
                    ha="left", va="top", fontsize=8, color="grey", xytext=(0, -3), textcoords="offset points")
    for r in ok:
        rt = r["runtime"] or "?"
        proxy = _is_proxy(r, target)
        kw = {"marker": markers.get(rt, "x"), "s": 90 if rt == "tensorrt" else 55, "zorder": 3,
              "label": rt if rt not in seen else None}
        seen.add(rt)
        c = colours.get(rt, "black")
        if proxy:
            ax.scatter(r["latency_p50_ms"], r["top1"], facecolors="none", edgecolors=c, linewidths=1.6, **kw)
            proxies.append(r)
        else:
            ax.scatter(r["latency_p50_ms"], r["top1"], color=c, **kw)
        near = sum(1 for q in ok[: ok.index(r)] if abs(q["top1"] - r["top1"]) < 0.02 * max(1.0, abs(r["top1"])))
        ax.annotate(f"{r['stage']} {r['precision'] or ''}" + (" (proxy)" if proxy else ""),
                    (r["latency_p50_ms"], r["top1"]), fontsize=8, xytext=(5, 5 - 11 * near), textcoords="offset points")
        if rec.get("artifact") and r["stage"] == rec.get("stage") and rt == rec.get("runtime") \
                and r["precision"] == rec.get("precision"):
            ax.scatter(r["latency_p50_ms"], r["top1"], s=420, facecolors="none", edgecolors="crimson", linewidths=2.2,
                       zorder=4, label="recommended")
            ax.annotate("recommended", (r["latency_p50_ms"], r["top1"]), fontsize=9, color="crimson",
                        fontweight="bold", xytext=(8, -16), textcoords="offset points")
    if ok:  # room below the points for the proxy note, the x axis from 0 so ratios read true
        lo, hi = min(r["top1"] for r in ok), max(r["top1"] for r in ok)
        span = max(hi - lo, 2.0)
        ax.set_ylim(lo - (0.55 if proxies else 0.15) * span, hi + 0.15 * span)
        xs = [r["latency_p50_ms"] for r in ok if r["latency_p50_ms"] > 0]
        if xs and max(xs) / min(xs) > 8:  # runtimes an order of magnitude apart: a log axis keeps each readable
            ax.set_xscale("log")
            ax.set_xlim(min(xs) / 1.5, max(xs) * 1.8)
        else:
            ax.set_xlim(0, max(r["latency_p50_ms"] for r in ok) * 1.12)
    if proxies:
        ax.text(0.01, 0.03, "hollow markers: CPU latency of the TensorRT-form INT8 ONNX (ONNX Runtime on this host) -\n"
                "a proxy only, not the Jetson engine's latency; measure it on the device (./run.sh bench)",
                transform=ax.transAxes, fontsize=8.5, color="darkred", va="bottom",
                bbox={"boxstyle": "round", "fc": "mistyrose", "ec": "darkred", "alpha": 0.9})
    bs = ok[0]["batch_size"] if ok else "?"
    ax.set_xlabel(f"latency p50 on this host (ms, batch {bs}{', log scale' if ax.get_xscale() == 'log' else ''}); "
                  "lower is better")
    ax.set_ylabel("validation top-1 (%)")
    ax.set_title("accuracy vs latency per runtime")
    ax.grid(alpha=0.3)
    if ok:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.005, 1.0), borderaxespad=0)
    bars_drawn = {}
    for k, (col, title, scale) in enumerate((("macs", "MACs (G)", 1e-9), ("model_size_mb", "artifact size (MB)", 1),
                                              ("peak_rss_mb", "peak memory, RSS (MB)", 1))):
        a = fig.add_subplot(gs[1, k])
        data = _per_stage(rows, col)
        bars_drawn[title] = data
        if data:
            bars = a.bar(range(len(data)), [v * scale for _, v in data], color="tab:blue")
            a.bar_label(bars, fmt="%.3g", fontsize=7)
            a.set_xticks(range(len(data)), [lbl for lbl, _ in data], fontsize=7, rotation=30, ha="right")
        else:
            a.text(0.5, 0.5, "not measured", ha="center", va="center", transform=a.transAxes)
            a.set_xticks([])
        a.set_title(title, fontsize=10)
        a.grid(axis="y", alpha=0.3)
    fig.subplots_adjust(left=0.07, right=0.88, top=0.95, bottom=0.13)
    drawn = {"texts": [t.get_text() for a in fig.axes for t in a.texts]
             + [t.get_text() for t in (ax.get_legend().get_texts() if ax.get_legend() else [])],
             "panels": [a.get_title() for a in fig.axes], "bars": bars_drawn}
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return drawn


# the one table: summary.md and the terminal show the same columns, formatted the same way
TABLE = (("stage", "stage"), ("runtime", "runtime"), ("precision", "precision"), ("top1", "top-1 %"),
         ("top1_delta", "Δtop-1"), ("agreement", "agree %"), ("latency_p50_ms", "p50 ms"),
         ("throughput_ips", "img/s"), ("macs", "GMACs"), ("model_size_mb", "size MB"), ("peak_rss_mb", "peak MB"),
         ("status", "status"))


def table_cells(r: dict, target: dict | None = None) -> list:
    """One row of the report table as strings (empty where unknown); a proxy latency is marked with '*'."""
    out = []
    for col, _ in TABLE:
        v = r.get(col)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out.append("")
        elif col == "macs":
            out.append(f"{v / 1e9:.3f}")
        elif col in ("top1", "top1_delta", "agreement"):
            out.append(f"{v:+.2f}" if col == "top1_delta" else f"{v:.2f}")
        elif col == "latency_p50_ms":
            out.append(f"{v:.3f}" + ("*" if _is_proxy(r, target) else ""))
        elif col in ("throughput_ips", "model_size_mb", "peak_rss_mb"):
            out.append(f"{v:.1f}")
        else:
            out.append(str(v))
    return out


def table_footnote(rows: list, target: dict | None = None) -> str:
    if any(_is_proxy(r, target) and r.get("latency_p50_ms") is not None for r in rows):
        return ("* CPU latency of the TensorRT-form INT8 ONNX on this host: a proxy, not the engine's latency "
                "(measure on the device).")
    return ""


def markdown_table(rows: list, target: dict | None = None) -> str:
    lines = ["| " + " | ".join(h for _, h in TABLE) + " |", "|" + "---|" * len(TABLE)]
    for r in rows:
        lines.append("| " + " | ".join(c.replace("|", "/") for c in table_cells(r, target)) + " |")
    notes = [f"- {r['stage']} ({r['runtime']}): {r['note']}" for r in rows if r.get("note")]
    foot = table_footnote(rows, target)
    return "\n".join(lines + ([foot] if foot else []) + (["", "Notes:"] + notes if notes else []))


def _ratio(a, b):
    return a / b if a and b else None


def verdict_lines(rows: list, rec: dict, target: dict | None = None, run_dir: str | None = None) -> list:
    """The summary's first three lines: what to deploy; how much smaller, faster and how accurate; what is still to
    be measured on the device, and how."""
    t = target or {}
    base = next((r for r in rows if r["stage"] == "baseline" and r["runtime"] == "torch" and r["status"] == "ok"), None)
    run = run_dir or "RUN"
    on_trt = t.get("runtime") == "tensorrt"
    if not rec.get("artifact"):
        first = f"**No recommendation:** {rec.get('reason', 'nothing measured')}; deploy the baseline or raise the budget."
        second = (f"Baseline top-1 {base['top1']:.2f}%." if base and base.get("top1") is not None
                  else "No baseline accuracy was measured.")
    else:
        form = "TensorRT engine built from it on the device" if on_trt and rec["runtime"] != "tensorrt" else rec["runtime"]
        first = (f"**Recommended:** deploy `{rec['stage']}/{rec['artifact']}` ({(rec.get('precision') or '').upper()}, "
                 f"{form}) to {t.get('name', 'the target')}"
                 + ("; bundle: `bundle/bundle.tar.gz`." if rec["stage"] in ("quantize", "engine") else "."))
        rec_row = next((r for r in rows if r["stage"] == rec["stage"] and r["runtime"] == rec["runtime"]
                        and r["precision"] == rec["precision"] and r["status"] == "ok"), {})
        parts = []  # only gains worth saying (a ratio of 1.0x is no news)
        if (rec.get("size_reduction") or 0) > 1.05:
            parts.append(f"{rec['size_reduction']:.1f}x smaller")
        if (rec.get("macs_reduction") or 0) > 1.05:
            parts.append(f"{rec['macs_reduction']:.1f}x fewer MACs")
        if (rec.get("speedup") or 0) > 1.05:
            parts.append(f"{rec['speedup']:.2f}x faster than {rec['speedup_reference']} on this host")
        elif rec.get("speedup") and rec["stage"] != "baseline":
            parts.append(f"no faster than {rec['speedup_reference']} on this host ({rec['speedup']:.2f}x)")
        if rec["stage"] == "baseline":
            parts.insert(0, "no optimized artifact stayed within the accuracy budget")
        mem = _ratio((base or {}).get("peak_rss_mb"), rec_row.get("peak_rss_mb"))
        if mem and mem > 1.05:
            parts.append(f"{mem:.1f}x less peak memory")
        acc = f"top-1 {rec['top1']:.2f}% ({rec['top1_delta'] or 0:+.2f} points vs the baseline's " \
              f"{base['top1']:.2f}%; budget {rec['budget_points']:g} point(s))" if base else f"top-1 {rec['top1']:.2f}%"
        if rec_row.get("agreement") is not None:
            acc += f", {rec_row['agreement']:.1f}% same predictions"
        second = "**Gain:** " + ", ".join(parts + [acc]) + "."
    if on_trt:
        third = ("**Still to measure on the device:** the TensorRT engine's latency, throughput and memory (this host "
                 "has no TensorRT: its CPU latency of the INT8 file is only a proxy). On the Jetson: "
                 "`mkdir b && tar xzf bundle.tar.gz -C b && cd b && sh install.sh && ./run.sh build && "
                 "./run.sh bench --csv ../device.csv`, then here: "
                 f"`edgeres report --run {run} --merge device.csv`.")
    else:
        third = ("**Still to measure on the device:** latency and memory on the target itself if it is not this host: "
                 "`./run.sh bench --csv ../device.csv` from the unpacked bundle, then "
                 f"`edgeres report --run {run} --merge device.csv`.")
    return [first, second, third]


def write_report(out_dir, rows: list, host: dict, summary_lines: list | None = None, extra: dict | None = None) -> dict:
    """Write report.csv/json/png and summary.md into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {k: out_dir / f for k, f in (("csv", "report.csv"), ("json", "report.json"), ("png", "report.png"),
                                        ("summary", "summary.md"))}
    write_csv(paths["csv"], rows)
    write_json_atomic(paths["json"], {"host": host, "rows": rows, **(extra or {})})
    extra = extra or {}
    target = extra.get("target")
    try:
        plot(rows, paths["png"], extra.get("recommendation"), target)
    except Exception as e:  # noqa: BLE001 - a plot must never lose the figures
        paths.pop("png")
        summary_lines = (summary_lines or []) + [f"(plot not written: {e})"]
    md = ["# edgeres report", ""] + (summary_lines or []) + ["", "![report](report.png)", "",
          markdown_table(rows, target), "",
          (f"Host: {host.get('cpu')} ({host.get('physical_cores')} cores), GPU: {host.get('gpu') or 'none'}, "
           f"threads {host.get('threads')}."), ""]
    write_text_atomic(paths["summary"], "\n".join(md))
    return paths


def merge(base_rows: list, device_rows: list) -> list:
    """Fold rows measured on the device into a run's rows: a device row replaces the row with the same
    (stage, runtime, batch_size); new ones are added."""
    key = lambda r: (r["stage"], r["runtime"], r.get("batch_size"))  # noqa: E731
    merged = {key(r): r for r in base_rows}
    order = [key(r) for r in base_rows]
    for r in device_rows:
        k = key(r)
        loose = (r["stage"], r["runtime"], None)  # a host row that could not say its batch (e.g. skipped)
        if k not in merged and loose in merged:
            order[order.index(loose)] = k
            del merged[loose]
        elif k not in merged:
            order.append(k)
        merged[k] = r
    return [merged[k] for k in order]


__all__ = ["COLUMNS", "host_info", "merge", "new_row", "read_csv", "rows_to_csv", "write_csv", "write_report", "json"]


def merge_run_report(run_dir, device_csvs: list) -> dict:
    """`edgeres report --merge`: fold device CSVs (same schema) into a run's report and rewrite it."""
    from edgeres.errors import EdgeresError

    run_dir = Path(run_dir)
    csv_path = run_dir / "report.csv"
    if not csv_path.exists():
        raise EdgeresError(f"{run_dir} has no report.csv; run `edgeres optimize` first")
    rows = read_csv(csv_path)
    try:
        doc = json.loads((run_dir / "report.json").read_text())
    except (OSError, ValueError):
        doc = {}
    merged = 0
    for path in device_csvs:
        try:
            dev = read_csv(path)
        except (OSError, ValueError) as e:
            raise EdgeresError(f"cannot merge {path}: {e}") from None
        base = next((r for r in rows if r["stage"] == "baseline" and r["runtime"] == "torch"), None)
        for r in dev:
            if base and r.get("top1") is not None and r.get("top1_delta") is None and base.get("top1") is not None:
                r["top1_delta"] = r["top1"] - base["top1"]
            r["note"] = ((r.get("note") or "") + " [measured on the device]").strip()
        rows = merge(rows, dev)
        merged += len(dev)
    extra = {k: v for k, v in doc.items() if k not in ("host", "rows")}
    extra["merged_from"] = [str(p) for p in device_csvs]
    write_report(run_dir, rows, doc.get("host", host_info()), ["Rows measured on the device are marked in their note."],
                 extra=extra)
    return {"rows": rows, "merged": merged, "csv": str(csv_path)}


# ------------------------------------------------------------------------------------------------ recommendation
def recommend(rows: list, target, budget: float) -> dict:
    """The most optimized artifact for the target whose top-1 is within ``budget`` points of the baseline."""
    base = next((r for r in rows if r["stage"] == "baseline" and r["runtime"] == "torch" and r["status"] == "ok"), None)
    if base is None:
        return {"artifact": None, "reason": "no baseline measurement"}
    base_ort = next((r for r in rows if r["stage"] == "baseline" and r["runtime"] == "onnxruntime" and r["status"] == "ok"), base)
    order = ["engine", "quantize", "export", "prune", "baseline"]
    candidates = []
    for stage in order:
        for r in rows:
            if r["stage"] != stage or r["status"] != "ok" or r["top1"] is None:
                continue
            if target.runtime == "tensorrt" and r["runtime"] not in ("tensorrt", "onnxruntime"):
                continue
            if target.runtime == "onnxruntime" and r["runtime"] not in ("onnxruntime", "openvino", "torch"):
                continue
            candidates.append(r)
    within = [r for r in candidates if (r["top1_delta"] or 0.0) >= -budget]
    if not within:
        return {"artifact": None, "reason": f"no artifact within {budget} points of the baseline's top-1"}
    best = within[0]
    decided_by = f"the first within the {budget}-point budget in the order {' > '.join(order)}"
    if target.runtime == "tensorrt" and not any(r["runtime"] == "tensorrt" for r in within):
        # the host cannot run the target: ONNX Runtime's CPU latency of a TensorRT-form Q/DQ file says nothing of
        # the engine (it reads slower than FP32 here). Rank by what the target runs: its precision, then MACs, size.
        rank = {p: i for i, p in enumerate(("int8", "fp16", "fp32"))}
        allowed = [p for p in ("int8", "fp16", "fp32") if p in target.precisions]

        def target_precision(r):  # an FP32 ONNX file is built FP16 on a target that has FP16
            p = r["precision"] or "fp32"
            return "fp16" if p == "fp32" and "fp16" in allowed else p

        best = min(within, key=lambda r: (rank.get(target_precision(r), 9), r.get("macs") or float("inf"),
                                          r.get("model_size_mb") or float("inf")))
        decided_by = (f"within the {budget}-point budget, ranked by the precision {target.name} runs it in "
                      f"({target_precision(best)}), then MACs ({(best.get('macs') or 0) / 1e9:.3f} G), then size "
                      f"({best.get('model_size_mb') or 0:.1f} MB); host CPU latency not used (TensorRT target, "
                      "ONNX Runtime here is only the accuracy proxy)")
    runtimes = {}
    if target.runtime == "onnxruntime":  # x86: the faster of ONNX Runtime and OpenVINO for the chosen artifact
        from edgeres.stages.x86_int8 import faster_runtime

        fast, runtimes = faster_runtime(within, best["stage"])
        best = next((r for r in within if r["stage"] == best["stage"] and r["runtime"] == fast), best)
        if runtimes:
            decided_by += f"; run in {fast}, the faster runtime for it here"
    ref = base_ort if best["runtime"] in ("onnxruntime", "openvino") else base
    proxy = target.runtime == "tensorrt" and best["runtime"] != "tensorrt"
    speedup = None
    if not (proxy and best["precision"] == "int8") and best["latency_p50_ms"] and ref["latency_p50_ms"]:
        speedup = ref["latency_p50_ms"] / best["latency_p50_ms"]
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
    }


def summary_lines(rows: list, ctx, rec: dict) -> list:
    """summary.md's head: the three-line verdict (verdict_lines), then the run's context."""
    lines = verdict_lines(rows, rec, ctx.target.to_dict(), str(ctx.run_dir))
    lines = [lines[0], "", lines[1], "", lines[2], ""]
    lines += [f"Target: **{ctx.target.name}** ({ctx.target.description}). Data: {ctx.splits.describe()}; "
              f"input {ctx.pre.size} px."]
    if rec.get("decided_by"):
        lines.append(f"Chosen: {rec['decided_by']}.")
    if rec.get("speedup_note"):
        lines.append(f"Speed-up: {rec['speedup_note']}.")
    pr = ctx.results.get("prune")
    if pr is not None and pr.info.get("latency_search"):
        from edgeres.stages.prune_latency import summary

        lines.append(f"Latency target: {summary(pr.info['latency_search'])}.")
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"- {r['stage']} ({r['runtime']}): {r['status']}: {r['note']}")
    return lines
