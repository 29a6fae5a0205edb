"""The report: report.csv (one row per stage, runtime and batch size), report.json (host + rows), report.png, summary.md.

Figures a runtime cannot give are empty cells, never zero.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from edgeres_deploy.metrics import REPORT_COLUMNS, REQUIRED_COLUMNS, safe_cell

from edgeres.stage_names import BASELINE, DEVICE, STAGE_NAMES
from edgeres.utils import write_json_atomic, write_text_atomic

COLUMNS = REPORT_COLUMNS  # docs/design.md §3; defined once, beside the device runtime that writes it too
STATUSES = ("ok", "skipped", "failed")
TEXT_COLUMNS = ("stage", "artifact", "runtime", "device", "precision", "status", "note")
INT_COLUMNS = ("batch_size", "input_size", "params", "macs")
ROW_STAGES = STAGE_NAMES + (DEVICE, "check")  # "check": the bundle's self-check row, written on the device
RUNTIMES = ("torch", "onnxruntime", "openvino", "tensorrt", "edgeres_deploy")
# (low, high) of each number a row may hold; a merged device row outside them is refused, not folded in
_BOUNDS = {"batch_size": (1, 1 << 20), "input_size": (1, 1 << 16), "params": (0, 1e13), "macs": (0, 1e16),
           "top1": (0, 100), "top5": (0, 100), "agreement": (0, 100), "top1_delta": (-100, 100)}
_MAX_FIGURE = 1e9  # latencies (ms), throughput, sizes (MB), memory, power (W), energy (mJ): any larger is no figure
_MAX_TEXT = 4000
_ROUND = {"top1": 3, "top5": 3, "top1_delta": 3, "agreement": 3, "latency_p50_ms": 4, "latency_p90_ms": 4,
          "latency_p99_ms": 4, "throughput_ips": 2, "model_size_mb": 3, "peak_rss_mb": 1, "gpu_mem_mb": 1,
          "power_w": 3, "energy_mj_per_image": 3}


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
    return str(safe_cell(v)) if col in TEXT_COLUMNS else str(v)


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
        return parse_csv(f, path)


def parse_csv(f, name="report.csv") -> list:
    """Rows of report-schema CSV text (an open file or any line iterable). Files from before a column was added
    (power_w, energy_mj_per_image) are read with those cells empty."""
    reader = csv.DictReader(f)
    names = reader.fieldnames or []
    if [c for c in names if c in COLUMNS] != [c for c in COLUMNS if c in names] or not set(REQUIRED_COLUMNS) <= set(names):
        raise ValueError(f"{name} does not have the edgeres report columns")
    rows = []
    for line, raw in enumerate(reader, 2):
        row = {}
        for c in COLUMNS:
            v = raw.get(c) or ""
            try:
                row[c] = None if v == "" else v if c in TEXT_COLUMNS else int(float(v)) if c in INT_COLUMNS \
                    else float(v)
            except (ValueError, OverflowError):
                raise ValueError(f"{name}, line {line}: column {c} holds {v[:40]!r}, not a number") from None
        rows.append(row)
    return rows


def check_row(row: dict, where: str) -> None:
    """ValueError naming ``where`` and the column unless ``row`` is a report row edgeres could have written: a known
    stage, runtime and status, every number finite and within its range, text of sane length."""
    for col, known in (("stage", ROW_STAGES), ("runtime", RUNTIMES), ("status", STATUSES)):
        if row.get(col) not in known:
            raise ValueError(f"{where}: {col} {str(row.get(col))[:40]!r} is not one of {', '.join(known)}")
    for col in COLUMNS:
        v = row.get(col)
        if v is None:
            continue
        if col in TEXT_COLUMNS:
            if len(v) > _MAX_TEXT or any(ord(ch) < 32 and ch != "\t" for ch in v):
                raise ValueError(f"{where}: column {col} holds control characters or over {_MAX_TEXT} characters")
            continue
        lo, hi = _BOUNDS.get(col, (0, _MAX_FIGURE))
        if not (lo <= v <= hi):  # NaN fails both comparisons
            raise ValueError(f"{where}: column {col} is {v!r}, outside {lo:g}..{hi:g}")


def write_csv(path, rows: list) -> None:
    write_text_atomic(path, rows_to_csv(rows))


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
        from edgeres.report_plot import plot

        plot(rows, paths["png"], extra.get("recommendation"), target)
    except Exception as e:  # noqa: BLE001 - a plot must never lose the figures
        paths.pop("png")
        summary_lines = (summary_lines or []) + [f"(plot not written: {e})"]
    from edgeres.report_table import markdown_table

    md = ["# edgeres report", ""] + (summary_lines or []) + ["", "![report](report.png)", "",
          markdown_table(rows, target), "",
          (f"Host: {host.get('cpu')} ({host.get('physical_cores')} cores), GPU: {host.get('gpu') or 'none'}, "
           f"threads {host.get('threads')}."), ""]
    write_text_atomic(paths["summary"], "\n".join(md))
    return paths


def merge(base_rows: list, device_rows: list) -> list:
    """Fold rows measured on a device into a run's rows: a device row replaces the row of the same (stage, runtime,
    batch_size, device), or else the host's row of that stage and runtime that names no device (at that batch size,
    or none: e.g. skipped); other rows are added, so several devices each keep their own rows."""
    key = lambda r: (r["stage"], r["runtime"], r.get("batch_size"), r.get("device") or None)  # noqa: E731
    merged = {key(r): r for r in base_rows}
    order = [key(r) for r in base_rows]
    for r in device_rows:
        k = key(r)
        if k not in merged:
            host = next((q for q in order if q[:2] == k[:2] and q[3] is None and q[2] in (k[2], None)), None)
            if host is not None:
                order[order.index(host)] = k
                del merged[host]
            else:
                order.append(k)
        merged[k] = r
    return [merged[k] for k in order]


def merge_run_report(run_dir, device_csvs: list) -> dict:
    """`edgeres report --merge`: fold device CSVs (same schema) into a run's report and rewrite it."""
    from edgeres.errors import EdgeresError

    batches = []
    for path in device_csvs:
        try:
            dev = read_csv(path)
            for line, r in enumerate(dev, 2):
                check_row(r, f"line {line}")
        except (OSError, ValueError, UnicodeDecodeError, csv.Error) as e:
            raise EdgeresError(f"cannot merge {path}: {e}; fix or remove that row (the device writes it with "
                               "`./run.sh bench --csv FILE`)") from None
        for r in dev:
            r["note"] = ((r.get("note") or "") + " [measured on the device]").strip()
        batches.append((str(path), dev))
    return fold_into_run(run_dir, batches)


def fold_into_run(run_dir, batches: list) -> dict:
    """Fold rows measured on devices (``batches``: [(source, rows)]) into a run's report, accuracy put against its
    baseline, and rewrite the report: recommendation and verdict included (they quote a measured device's latency)."""
    from edgeres.errors import EdgeresError
    from edgeres.host import host_info
    from edgeres.report_table import verdict_lines

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
    base = next((r for r in rows if r["stage"] == BASELINE and r["runtime"] == "torch"), None)
    for _source, dev in batches:
        for r in dev:
            if base and r.get("top1") is not None and r.get("top1_delta") is None and base.get("top1") is not None:
                r["top1_delta"] = r["top1"] - base["top1"]
        rows = merge(rows, dev)
        merged += len(dev)
    extra = {k: v for k, v in doc.items() if k not in ("host", "rows")}
    extra["merged_from"] = list(dict.fromkeys(extra.get("merged_from", []) + [str(s) for s, _ in batches]))
    summary = ["Rows measured on the device are marked in their note."]
    target = (doc.get("target") or {}).get("name")
    if target:
        from edgeres.recommend import recommend
        from edgeres.targets import get_target

        budget = (doc.get("recommendation") or {}).get("budget_points", 1.0)
        extra["recommendation"] = rec = recommend(rows, get_target(target), budget)
        v = verdict_lines(rows, rec, doc["target"], str(run_dir))
        summary = [v[0], "", v[1], "", v[2], "", summary[0]]
    write_report(run_dir, rows, doc.get("host", host_info()), summary, extra=extra)
    return {"rows": rows, "merged": merged, "csv": str(csv_path)}
