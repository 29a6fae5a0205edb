"""The benchmark scripts run (tiny sizes, no timing assertions: the speed goals are read from their CSV)."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(script, *args):
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *map(str, args)], capture_output=True,
                          text=True, timeout=900, cwd=ROOT)


@pytest.mark.slow
def test_bench_runtimes_smoke(tmp_path):
    out = tmp_path / "rt.csv"
    proc = _run("bench_runtimes.py", "--out", out, "--size", "32", "--batches", "1", "--min-time", "0.05", "--calib", "4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader(open(out)))
    names = {r["runtime"] for r in rows}
    assert {"PyTorch eager", "ONNX Runtime", "ONNX Runtime quantize_static", "edgeres x86-cpu INT8 (NNCF)"} <= names
    assert all(r["p50_ms"] and r["speedup_vs_ref"] for r in rows)


def test_bench_prune_smoke(tmp_path):
    out = tmp_path / "p.csv"
    proc = _run("bench_prune.py", "--out", out, "--size", "32", "--min-time", "0.05")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {r["runtime"]: r for r in csv.DictReader(open(out))}
    assert float(rows["ratio 0.3"]["macs_removed"]) >= 0.5
