"""The benchmark scripts run (tiny sizes, no timing assertions: the speed goals are read from their CSV)."""

import csv
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _cpu_flags() -> str:
    """What the benchmarks' cpu_flags column must say on this CPU, read here from /proc/cpuinfo on its own."""
    words = set(Path("/proc/cpuinfo").read_text().split()) if Path("/proc/cpuinfo").exists() else set()
    return " ".join(w for w in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "amx_bf16") if w in words)


def _run(script, *args):
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *map(str, args)], capture_output=True,
                          text=True, timeout=900, cwd=ROOT)


@pytest.mark.slow  # 33 CPU-seconds (28 user + 5 system), 68 s wall on the shared 2-core machine: eleven rows, NNCF twice
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
    ov = {"OpenVINO FP32", "OpenVINO + NNCF INT8", "edgeres x86-cpu INT8 unpruned (OpenVINO)"}
    assert names & ov == (ov if importlib.util.find_spec("openvino") else set())  # OpenVINO's rows exactly when it is here
    assert {r["batch"] for r in rows} == {"1", "2"}
    flags = _cpu_flags()
    for r in rows:
        assert float(r["median_ms"]) > 0 and float(r["best_round_ms"]) <= float(r["median_ms"])
        assert r["speedup_vs_eager"] and r["rounds"] == "2" and r["cpu_flags"] == flags
    eager = [r for r in rows if r["row"] == "PyTorch eager"]
    assert all(float(r["speedup_vs_eager"]) == 1.0 for r in eager)
    pruned = next(r for r in rows if r["row"].startswith("edgeres x86-cpu INT8 --target-speedup"))
    assert float(pruned["ratio"]) == 0.5 and pruned["speedup_vs_unpruned_same_runtime"]


@pytest.mark.slow  # 22 CPU-seconds, 43 s wall here; the ratio's MACs are tested fast in test_prune.py
def test_bench_prune_smoke(tmp_path):
    out = tmp_path / "p.csv"
    proc = _run("bench_prune.py", "--out", out, "--size", "32", "--min-time", "0.05")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {r["runtime"]: r for r in csv.DictReader(open(out))}
    assert float(rows["ratio 0.3"]["macs_removed"]) >= 0.5


@pytest.mark.slow
def test_bench_prune_families_smoke(tmp_path):
    out = tmp_path / "f.csv"
    proc = _run("bench_prune_families.py", "--out", out, "--families", "cifar-option-a", "--train-per-class", "3",
                "--val-per-class", "2", "--train-epochs", "1", "--finetune-epochs", "0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = next(csv.DictReader(open(out)))
    assert row["family"] == "cifar-option-a" and float(row["macs_kept"]) <= 0.5 and row["rewritten_shortcuts"] == "2"


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
        assert r["cpu_flags"] == _cpu_flags()
    assert rows["peer (min-max)"]["target"] == "x86-cpu" and rows["peer (min-max)"]["top1_delta_vs_fp32"] != ""


def test_bench_train_gpu_without_a_gpu_says_so():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the benchmark would run")
    proc = _run("bench_train_gpu.py")
    assert proc.returncode == 0 and "no CUDA GPU here" in proc.stdout, proc.stderr[-2000:]


@pytest.mark.slow
def test_bench_train_gpu_smoke_on_cpu(tmp_path):
    """The whole script on a CPU, tiny (slow: four short trainings in subprocesses): the limit rows, `edgeres train`
    per pipeline (the GPU path's code on CPU tensors), ratios to the bf16 limit, the CPU flags."""
    out = tmp_path / "t.csv"
    proc = _run("bench_train_gpu.py", "--device", "cpu", "--images", "40", "--size", "32", "--arch", "resnet18",
                "--batch", "8", "--epochs", "2", "--rounds", "1", "--steps", "2", "--data", tmp_path / "d", "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {r["row"]: r for r in csv.DictReader(open(out))}
    assert set(rows) == {"pure PyTorch, GPU tensors, fp32/TF32", "pure PyTorch, GPU tensors, bf16 autocast",
                         "edgeres train --pipeline gpu (--amp auto)", "edgeres train --pipeline cpu (--amp auto)"}
    assert float(rows["pure PyTorch, GPU tensors, bf16 autocast"]["ratio_to_bf16_limit"]) == 1.0
    assert all(float(r["images_per_s"]) > 0 and r["cpu_flags"] == _cpu_flags() for r in rows.values())
    assert len(list((tmp_path / "d" / "train").rglob("*.jpg"))) == 40


@pytest.mark.slow  # makes a bundle and runs the device flow twice on the loopback Jetson (~1-2 min here)
def test_bench_device_smoke(tmp_path):
    """The ssh overhead of a --device run and of a second run reusing the engine, against the loopback Jetson (one
    tiny round; it says why and exits 0 where the loopback device cannot run)."""
    from loopback_device import unavailable

    out = tmp_path / "d.csv"
    proc = _run("bench_device.py", "--out", out, "--rounds", "1", "--arch", "resnet18", "--size", "32", "--commands", "3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    if unavailable():
        assert "skipped" in proc.stdout
        return
    rows = {r["row"].split(" (")[0]: r for r in csv.DictReader(open(out))}
    first, second = rows["first run"], rows["second run"]
    assert first["engine"] == "built" and second["engine"] == "reused" and float(second["sent_mb"]) == 0
    assert float(first["overhead_s"]) > 0 and first["connections"] == "1" and first["cpu_flags"] == _cpu_flags()
    assert float(rows["one command, shared connection"]["command_ms"]) > 0


@pytest.mark.slow  # about 25 s wall on the shared 2-core machine: one epoch of a ResNet-8 on 60 images, NNCF twice
def test_bench_int8_resnets_smoke(tmp_path):
    """The INT8 table's script: both forms, the budget checked on the validation split and top-1 reported on a
    separate test split, with the paired flips, the noise and the logit error beside the delta."""
    out = tmp_path / "q.csv"
    proc = _run("bench_int8_resnets.py", "--out", out, "--work", tmp_path / "w", "--models", "resnet8", "--epochs", "1",
                "--train-per-class", "6", "--val-per-class", "3", "--test-per-class", "4", "--calib-size", "16")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader(open(out)))
    assert [(r["model"], r["form"]) for r in rows] == [("resnet8", "trt-qdq"), ("resnet8", "ort-u8s8")]
    for r in rows:
        assert r["check_images"] == "30" and r["test_images"] == "40" and r["calibration_images"] == "16"
        lost, gained = int(r["lost"]), int(r["gained"])
        assert float(r["delta"]) == pytest.approx(100 * (gained - lost) / 40, abs=1e-3)
        assert float(r["int8_top1"]) - float(r["fp32_top1"]) == pytest.approx(float(r["delta"]), abs=1e-2)
        assert float(r["noise_1sd"]) == pytest.approx(100 * (lost + gained) ** 0.5 / 40, abs=1e-3)
        assert float(r["logit_nmse"]) >= 0 and r["path"] and r["cpu_flags"] == _cpu_flags()
    assert (tmp_path / "w" / "test4" / "val").is_dir()  # the test split: its own folder, apart from data/val
