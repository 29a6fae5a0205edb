"""End to end: `optimize` on a tiny configuration — every stage's row, the skipped engine with its reason, resume,
--force, an interrupted run that resumes cleanly, config files, data resolution."""

import json
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import PIPELINE_ARGS, ran_stages

from edgeres.errors import EdgeresError
from edgeres.pipeline import STAGE_NAMES as STAGES
from edgeres.pipeline import OptimizeConfig, _trt_available, optimize
from edgeres.report import COLUMNS, read_csv


def _cfg(model, out, **kw):
    base = dict(model=str(model), out=str(out), target="jetson", prune=0.3, finetune_epochs=1, calib_size=20,
                latency_min_time=0.1, measure_memory=False, batch_size=16)
    base.update(kw)
    return OptimizeConfig(**base)


def test_every_stage_has_a_row(pipeline_run):
    out = pipeline_run
    rows = read_csv(out / "report.csv")
    assert {r["stage"] for r in rows} == set(STAGES)
    by = {(r["stage"], r["runtime"]): r for r in rows}
    for key in (("baseline", "torch"), ("baseline", "onnxruntime"), ("prune", "torch"), ("export", "onnxruntime"),
                ("quantize", "onnxruntime")):
        r = by[key]
        assert r["status"] == "ok" and r["top1"] is not None and r["latency_p50_ms"] is not None, key
        assert r["macs"] and r["params"] and r["model_size_mb"], key
    assert by[("baseline", "torch")]["top1_delta"] == 0.0 and by[("baseline", "torch")]["agreement"] == 100.0
    assert by[("prune", "torch")]["macs"] < 0.6 * by[("baseline", "torch")]["macs"]
    assert by[("quantize", "onnxruntime")]["precision"] == "int8"
    eng = by[("engine", "tensorrt")]
    if _trt_available() == "none":  # the engine stage's own test of this host (it feeds the stage's hash)
        assert eng["status"] == "skipped" and "tensorrt not importable" in eng["note"] and "trtexec --onnx=" in eng["note"]
    else:  # a TensorRT host builds the labelled host proxy of the Jetson's engine
        assert eng["status"] == "ok" and eng["precision"] == "int8" and eng["latency_p50_ms"] > 0, eng
        assert eng["device"].startswith("host proxy") and "host proxy on" in eng["note"]
    assert by[("bundle", "edgeres_deploy")]["status"] == "ok"
    with open(out / "report.csv") as f:
        assert f.readline().strip().split(",") == COLUMNS
    for name in ("report.json", "report.png", "summary.md", "config.yaml", "manifest.json"):
        assert (out / name).exists(), name
    doc = json.loads((out / "report.json").read_text())
    assert doc["host"]["cpu"] and "onnxruntime" in doc["host"]["versions"]
    rec = doc["recommendation"]  # a 100-point budget: the most optimized file the Jetson runs (no engine built here)
    expected = ("engine", "tensorrt") if eng["status"] == "ok" else ("quantize", "onnxruntime")
    assert (rec["stage"], rec["runtime"], rec["precision"]) == (*expected, "int8"), rec
    summary = (out / "summary.md").read_text()
    assert "Recommended" in summary and "No recommendation" not in summary
    for s in STAGES:
        assert (out / s / "stage.json").exists()
    assert (out / "bundle" / "bundle.tar.gz").exists()


def test_resume_redoes_nothing_and_force_redoes_from_stage(pipeline_run, tiny_ckpt, demo_data, cli, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(pipeline_run, out)
    before = {s: (out / s / "stage.json").stat().st_mtime_ns for s in STAGES}

    def again(*extra):
        proc = cli("optimize", "--model", tiny_ckpt, "--data", demo_data, "--out", out, *PIPELINE_ARGS, *extra)
        assert proc.returncode == 0, proc.stderr
        return ran_stages(proc.stderr)

    assert again() == []
    assert {s: (out / s / "stage.json").stat().st_mtime_ns for s in STAGES} == before
    assert again("--force", "quantize") == ["quantize", "engine", "bundle"]
    # a changed option redoes the stage it feeds and what follows
    assert again("--calib-size", "24") == ["quantize", "engine", "bundle"]


def test_deploy_from_run(pipeline_run, cli, tmp_path):
    out = pipeline_run
    proc = cli("deploy", "--run", out, "--out", tmp_path / "b.tar.gz")
    assert proc.returncode == 0, proc.stderr
    import tarfile

    with tarfile.open(tmp_path / "b.tar.gz") as tar:
        assert "manifest.json" in tar.getnames() and "model.onnx" in tar.getnames()


def test_report_merge_folds_device_rows(pipeline_run, cli, tmp_path):
    out = pipeline_run
    run = tmp_path / "run"
    shutil.copytree(out, run)
    dev = tmp_path / "device.csv"
    old_header = [c for c in COLUMNS if c not in ("power_w", "energy_mj_per_image")]  # a CSV of an older bundle
    dev.write_text(",".join(old_header) + "\n" + "engine,model.engine,tensorrt,Orin,int8,1,32,11.0,50.0,,,0.41,0.45,0.5,2400,,,3.1,,12,ok,\n")
    proc = cli("report", "--run", run, "--merge", dev)
    assert proc.returncode == 0, proc.stderr
    rows = read_csv(run / "report.csv")
    eng = [r for r in rows if r["stage"] == "engine"]
    assert len(eng) == 1 and eng[0]["status"] == "ok" and eng[0]["latency_p50_ms"] == 0.41
    assert eng[0]["top1_delta"] is not None and "measured on the device" in eng[0]["note"]


def test_no_data_is_a_clear_error(tmp_path):
    from edgeres.models import ModelMeta, build_model, save_checkpoint

    save_checkpoint(tmp_path / "m.pt", build_model("resnet18", 3), ModelMeta(arch="resnet18", classes=list("abc")))
    with pytest.raises(EdgeresError, match="INT8 calibration need images"):
        optimize(_cfg(tmp_path / "m.pt", tmp_path / "r"), log=lambda *a: None)


def test_config_file_and_cli(cli, tmp_path, tiny_ckpt):
    cfg = tmp_path / "edgeres.yaml"
    cfg.write_text(f"model: {tiny_ckpt}\nprune: 0\ntarget: x86-cpu\ncalib_size: 10\nlatency_min_time: 0.1\nmeasure_memory: false\n")
    proc = cli("optimize", "--config", cfg, "--out", tmp_path / "r")
    assert proc.returncode == 0, proc.stderr[-3000:]
    import yaml

    resolved = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert resolved["prune"] == 0 and resolved["target"] == "x86-cpu"
    rows = read_csv(tmp_path / "r" / "report.csv")
    by = {(r["stage"], r["runtime"]): r for r in rows}
    assert by[("prune", "torch")]["status"] == "skipped" and "--prune 0" in by[("prune", "torch")]["note"]
    assert by[("engine", "tensorrt")]["status"] == "skipped"
    bad = tmp_path / "bad.yaml"
    bad.write_text("modle: x\n")
    proc = cli("optimize", "--config", bad)
    assert proc.returncode == 1 and "unknown config keys" in proc.stderr


@pytest.mark.slow  # ~20 s here: a 20-epoch fine-tuning started in a child process, interrupted, then resumed
def test_interrupted_run_resumes_cleanly(tmp_path, tiny_ckpt):
    out = tmp_path / "r"
    args = [sys.executable, "-m", "edgeres", "optimize", "--model", str(tiny_ckpt), "--out", str(out), "--prune", "0.3",
            "--finetune-epochs", "20", "--calib-size", "20", "--latency-min-time", "0.1", "--no-memory"]
    # a shell's background job inherits SIGINT ignored (and Python then installs no KeyboardInterrupt handler):
    # give the child the default disposition, as an interactive user's Ctrl-C would find it
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    # prune/model.pt appears (atomically) once the channels are pruned: the stage is then in its 20-epoch fine-tuning
    while not (out / "prune" / "model.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err and "Traceback" not in err
    assert (out / "baseline" / "stage.json").exists() and not (out / "prune" / "stage.json").exists()
    assert not [p for p in out.rglob("*.tmp")], "a half-written file was left"
    res = optimize(_cfg(tiny_ckpt, out, finetune_epochs=1, batch_size=32), log=lambda *a: None)
    assert res["ran"] == ["prune", "export", "quantize", "engine", "bundle"]  # the finished baseline is reused
    assert all((out / s / "stage.json").exists() for s in STAGES)


def test_demo_command_tiny(cli, tmp_path):
    """`edgeres demo` end to end, shrunk: data, training, optimize, report (the full-size run is the README's)."""
    out = tmp_path / "demo"
    args = ("demo", "--out", out, "--epochs", "1", "--image-size", "32", "--train-per-class", "4", "--val-per-class", "2",
            "--arch", "resnet18", "--finetune-epochs", "1", "--calib-size", "10", "--latency-min-time", "0.1", "--no-memory")
    proc = cli(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "report:" in proc.stdout and (out / "report.csv").exists() and (out / "model.pt").exists()
    again = cli(*args)
    assert again.returncode == 0 and "trained already" in again.stderr and "unchanged, reused" in again.stderr
