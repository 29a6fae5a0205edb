"""Latency statistics and top-k accuracy in plain numpy: shared by the device runtime and the host (edgeres.metrics)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable, Iterable

import numpy as np

# the report.csv schema (docs/design.md §3): the device writes the same columns the host does. ``power_w`` is the
# board's mean input power while the benchmark ran (tegrastats), ``energy_mj_per_image`` that power divided by the
# throughput (mJ per image); both are empty where tegrastats is absent (any host). Files written before these two
# columns existed are still read (REQUIRED_COLUMNS).
REPORT_COLUMNS = [
    "stage", "artifact", "runtime", "device", "precision", "batch_size", "input_size",
    "top1", "top5", "top1_delta", "agreement",
    "latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "throughput_ips",
    "params", "macs", "model_size_mb", "peak_rss_mb", "gpu_mem_mb", "power_w", "energy_mj_per_image",
    "status", "note",
]
REQUIRED_COLUMNS = [c for c in REPORT_COLUMNS if c not in ("power_w", "energy_mj_per_image")]


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(v):
    """``v`` for a CSV cell that a spreadsheet cannot run: text starting with ``= + - @`` (or a tab or carriage
    return) would be read as a formula by Excel, LibreOffice or Google Sheets when they open the CSV (CSV injection,
    OWASP), so it gets a leading apostrophe; numbers, and text that reads as a number (``-0.5``), are unchanged."""
    if not isinstance(v, str) or not v.startswith(_FORMULA_START):
        return v
    try:
        float(v)
        return v
    except ValueError:
        return "'" + v


def safe_row(row: dict) -> dict:
    """Every cell of ``row`` through :func:`safe_cell`."""
    return {k: safe_cell(v) for k, v in row.items()}


def topk_accuracy(logits: np.ndarray, targets: np.ndarray, ks: Iterable[int] = (1, 5)) -> dict:
    """Top-k accuracy in percent. k larger than the class count counts as the class count."""
    logits, targets = np.asarray(logits), np.asarray(targets)
    if logits.ndim != 2 or len(logits) != len(targets):
        raise ValueError(f"logits {logits.shape} and targets {targets.shape} do not match")
    order = np.argsort(-logits, axis=1)
    out = {}
    for k in ks:
        kk = min(k, logits.shape[1])
        hit = (order[:, :kk] == targets[:, None]).any(axis=1)
        out[f"top{k}"] = float(hit.mean() * 100.0) if len(targets) else float("nan")
    return out


def run_padded(run: Callable[[np.ndarray], np.ndarray], x: np.ndarray, fixed_batch: int | None) -> np.ndarray:
    """``run(x)`` as float32; a short last batch is padded (repeating its last image) for a fixed-batch model and the
    padding's outputs are dropped."""
    n = len(x)
    if fixed_batch and n < fixed_batch:
        x = np.concatenate([x, np.repeat(x[-1:], fixed_batch - n, 0)])
    return np.asarray(run(x), np.float32)[:n]


@dataclass
class LatencyStats:
    batch_size: int
    runs: int
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    std_ms: float
    throughput_ips: float

    def to_dict(self) -> dict:
        return asdict(self)


def summarize_latencies(times_s: list, batch_size: int) -> LatencyStats:
    """Percentiles (linear interpolation, numpy's default) of per-run times in seconds."""
    if not len(times_s):
        raise ValueError("no timed runs")
    ms = np.asarray(times_s, np.float64) * 1000.0
    mean = float(ms.mean())
    return LatencyStats(
        batch_size=int(batch_size), runs=int(ms.size), mean_ms=mean,
        p50_ms=float(np.percentile(ms, 50)), p90_ms=float(np.percentile(ms, 90)), p99_ms=float(np.percentile(ms, 99)),
        std_ms=float(ms.std()), throughput_ips=float(batch_size * 1000.0 / mean) if mean > 0 else float("nan"),
    )


def measure_latency(fn: Callable[[], object], batch_size: int = 1, warmup: int = 10, min_runs: int = 50,
                    max_runs: int = 2000, min_time_s: float = 2.0, clock: Callable[[], float] = time.perf_counter,
                    sync: Callable[[], None] | None = None) -> LatencyStats:
    """Time ``fn`` after ``warmup`` calls: at least ``min_runs`` runs and ``min_time_s`` seconds, at most ``max_runs``.

    ``sync`` (e.g. a CUDA stream synchronise) is called after each run, inside the timed region.
    """
    for _ in range(warmup):
        fn()
        if sync:
            sync()
    times: list = []
    total = 0.0
    while len(times) < max_runs and (len(times) < min_runs or total < min_time_s):
        t0 = clock()
        fn()
        if sync:
            sync()
        dt = clock() - t0
        times.append(dt)
        total += dt
    return summarize_latencies(times, batch_size)


def peak_rss_mb() -> float | None:
    """This process's peak resident memory in MB: VmHWM from /proc (per address space, so a child started from a
    big parent reports its own peak; getrusage's ru_maxrss keeps the parent's high-water mark across exec)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6
    except ImportError:  # pragma: no cover - non-POSIX
        return None
