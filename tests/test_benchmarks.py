"""The benchmark scripts run (tiny sizes, no timing assertions: the speed goals are read from their CSV)."""

import csv
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(script, *args):
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *map(str, args)], capture_output=True,
                          text=True, timeout=900, cwd=ROOT)


def test_bench_runtimes_smoke(tmp_path):
    """Every row of the side-by-side run, interleaved rounds, ratios and CPU flags in the CSV (tiny sizes; the
    --target-speedup row reuses a given ratio here: the search itself is tested in test_prune_latency.py)."""
    out = tmp_path / "rt.csv"
    proc = _run("bench_runtimes.py", "--out", out, "--arch", "resnet18", "--size", "32", "--batches", "1", "2",
                "--rounds", "2", "--runs", "1", "--calib", "2", "--speedup-ratio", "0.5")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader(open(out)))
    names = {r["row"] for r in rows}
    assert {"PyTorch eager", "ONNX Runtime FP32", "ONNX Runtime quantize_static INT8",
            "edgeres x86-cpu INT8 unpruned (ONNX Runtime)", "edgeres x86-cpu INT8 ratio 0.3 (ONNX Runtime)",
            "edgeres x86-cpu INT8 --target-speedup 2 (ONNX Runtime)"} <= names
    try:
        import openvino  # noqa: F401

        assert {"OpenVINO FP32", "OpenVINO + NNCF INT8", "edgeres x86-cpu INT8 unpruned (OpenVINO)"} <= names
    except ImportError:
        pass
    assert {r["batch"] for r in rows} == {"1", "2"}
    for r in rows:
        assert float(r["median_ms"]) > 0 and float(r["best_round_ms"]) <= float(r["median_ms"])
        assert r["speedup_vs_eager"] and r["rounds"] == "2" and "avx" in r["cpu_flags"] or r["cpu_flags"] == ""
    eager = [r for r in rows if r["row"] == "PyTorch eager"]
    assert all(float(r["speedup_vs_eager"]) == 1.0 for r in eager)
    pruned = next(r for r in rows if r["row"].startswith("edgeres x86-cpu INT8 --target-speedup"))
    assert float(pruned["ratio"]) == 0.5 and pruned["speedup_vs_unpruned_same_runtime"]


def test_bench_prune_smoke(tmp_path):
    out = tmp_path / "p.csv"
    proc = _run("bench_prune.py", "--out", out, "--size", "32", "--min-time", "0.05")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {r["runtime"]: r for r in csv.DictReader(open(out))}
    assert float(rows["ratio 0.3"]["macs_removed"]) >= 0.5


def test_bench_quantize_peer_smoke(tmp_path, tiny_ckpt, demo_data):
    """edgeres's x86 INT8 file and ONNX Runtime's quantize_static side by side on the same calibration images, with
    top-1 and the CPU flags in each row (tiny model; the accuracy comparison is read from the CSV of a real run)."""
    out = tmp_path / "q.csv"
    proc = _run("bench_quantize.py", "--model", tiny_ckpt, "--data", demo_data, "--out", out, "--targets", "x86-cpu",
                "--methods", "minmax", "--paths", "ptq", "peer", "--calib-size", "8", "--min-time", "0.05")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {r["path"]: r for r in csv.DictReader(open(out))}
    assert {"ptq-minmax", "peer (min-max)"} <= set(rows)
    for r in rows.values():
        assert 0 <= float(r["top1"]) <= 100 and float(r["p50_ms"]) > 0 and 0 <= float(r["agree_vs_fp32_pct"]) <= 100
    assert rows["peer (min-max)"]["target"] == "x86-cpu" and rows["peer (min-max)"]["top1_delta_vs_fp32"] != ""
