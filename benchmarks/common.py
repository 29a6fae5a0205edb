"""Shared by the benchmark scripts: one timing method (edgeres.metrics), one CSV writer, ratios to a reference row."""

from __future__ import annotations

import csv
import os
import platform
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgeres_deploy.metrics import safe_cell  # noqa: E402

from edgeres.metrics import default_threads, measure_latency  # noqa: E402


def time_fn(fn, batch: int, min_time: float) -> dict:
    st = measure_latency(fn, batch, warmup=10, min_runs=30, min_time_s=min_time)
    return {"p50_ms": st.p50_ms, "p90_ms": st.p90_ms, "p99_ms": st.p99_ms, "throughput_ips": st.throughput_ips,
            "runs": st.runs}


def cpu_flags() -> str:
    """The CPU's INT8-relevant instruction sets (INT8 speed-ups depend on them): e.g. 'avx2 avx512_vnni amx_int8'."""
    try:
        with open("/proc/cpuinfo") as f:
            words = set(f.read().split())
    except OSError:
        return ""
    return " ".join(w for w in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "amx_bf16") if w in words)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_rows(path, rows: list, ref_key=("runtime", "PyTorch eager"), ratio_col: str = "speedup_vs_ref") -> None:
    """Write rows with the ratio of each row's p50 latency to the reference row of the same batch size."""
    refs = {r["batch"]: r["p50_ms"] for r in rows if r.get(ref_key[0]) == ref_key[1] and r.get("p50_ms")}
    for r in rows:
        ref = refs.get(r["batch"])
        r[ratio_col] = round(ref / r["p50_ms"], 2) if ref and r.get("p50_ms") else ""
    write_csv(path, rows)


def write_csv(path, rows: list) -> None:
    """Rows as CSV (columns in first-seen order), and the same table in markdown on stdout."""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({k: (round(v, 3) if isinstance(v, float) else safe_cell(v)) for k, v in r.items()})
    print(markdown(rows, cols))
    print(f"\nwrote {path} ({platform.processor() or platform.machine()}, {default_threads()} threads)")


def markdown(rows: list, cols: list) -> str:
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(f"{r.get(c):.3f}" if isinstance(r.get(c), float) else str(r.get(c, "")) for c in cols) + " |")
    return "\n".join(lines)


def scratch_dir(prefix: str) -> Path:
    """A temporary folder for the benchmark's files, removed when the script exits."""
    import atexit
    import shutil
    import tempfile

    d = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, d, ignore_errors=True)
    return d


def random_images(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, size, size)).astype(np.float32)
