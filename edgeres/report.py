"""The report: report.csv (one row per stage, runtime and batch size), report.json (host + rows), report.png, summary.md.

Figures a runtime cannot give are empty cells, never zero.
"""

from __future__ import annotations

import csv
import io
import json
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


def plot(rows: list, path) -> None:
    """Accuracy vs latency per stage (left) and artifact size (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r["status"] == "ok" and r.get("latency_p50_ms") is not None and r.get("top1") is not None]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for r in ok:
        ax1.scatter(r["latency_p50_ms"], r["top1"], s=40)
        ax1.annotate(f"{r['stage']}\n{r['runtime']} {r['precision']}", (r["latency_p50_ms"], r["top1"]), fontsize=7,
                     xytext=(4, 4), textcoords="offset points")
    ax1.set_xlabel("latency p50 (ms, batch %s)" % (ok[0]["batch_size"] if ok else "?"))
    ax1.set_ylabel("top-1 (%)")
    ax1.set_title("accuracy vs latency")
    ax1.grid(alpha=0.3)
    sized = {}
    for r in rows:
        if r.get("model_size_mb") is not None and r["stage"] not in sized:
            sized[r["stage"]] = r["model_size_mb"]
    ax2.bar(list(sized), list(sized.values()), color="tab:blue")
    ax2.set_ylabel("artifact size (MB)")
    ax2.set_title("size per stage")
    ax2.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def markdown_table(rows: list, cols=("stage", "runtime", "precision", "batch_size", "top1", "top1_delta", "agreement",
                                     "latency_p50_ms", "throughput_ips", "macs", "model_size_mb", "peak_rss_mb",
                                     "status", "note")) -> str:
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c)
            if c == "macs" and v is not None:
                v = f"{v / 1e9:.3f} G"
            cells.append(_cell(c, v) if not isinstance(v, str) else v.replace("|", "/"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(out_dir, rows: list, host: dict, summary_lines: list | None = None, extra: dict | None = None) -> dict:
    """Write report.csv/json/png and summary.md into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {k: out_dir / f for k, f in (("csv", "report.csv"), ("json", "report.json"), ("png", "report.png"),
                                        ("summary", "summary.md"))}
    write_csv(paths["csv"], rows)
    write_json_atomic(paths["json"], {"host": host, "rows": rows, **(extra or {})})
    try:
        plot(rows, paths["png"])
    except Exception as e:  # noqa: BLE001 - a plot must never lose the figures
        paths.pop("png")
        summary_lines = (summary_lines or []) + [f"(plot not written: {e})"]
    md = ["# edgeres report", ""] + (summary_lines or []) + ["", markdown_table(rows), "",
          f"Host: {host.get('cpu')} ({host.get('physical_cores')} cores), GPU: {host.get('gpu') or 'none'}, "
          f"threads {host.get('threads')}.", ""]
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
