"""The bundle's self-check (edgeres_deploy check) and every edgeres_deploy command against each TensorRT flavour of
the test double (tests/trt_double), in process, on a tiny 32 px model."""

import hashlib
import json
import shutil
import tarfile

import numpy as np
import pytest
import trt_double

from edgeres.bundle import make_bundle
from edgeres.data import Preprocess, resolve_data
from edgeres.stages.engine import build_spec
from edgeres.targets import get_target


@pytest.fixture(scope="module")
def vbundle(tmp_path_factory, tiny_ckpt, tiny_onnx, demo_data):
    import shutil

    import torch

    from edgeres.models import build_model, load_model
    from edgeres.stages.export import export_onnx

    d = tmp_path_factory.mktemp("vbundle")
    lm = load_model(tiny_ckpt)
    pre = Preprocess(size=32)
    shutil.copy(tiny_onnx, d / "m.onnx")
    torch.manual_seed(123)  # another model of the same shape: what a swap would put in
    export_onnx(build_model("resnet18", len(lm.meta.classes)).eval(), d / "other.onnx", pre, lm.meta)
    t = get_target("jetson-orin-nano")
    val = resolve_data(demo_data).val
    res = make_bundle(d / "b.tar.gz", d / "m.onnx", t, pre, lm.meta.classes, spec=build_spec(d / "m.onnx", "x", t, pre),
                      validation=val)
    root = d / "unpacked"
    with tarfile.open(d / "b.tar.gz") as tar:
        tar.extractall(root)
    return {"root": root, "other": d / "other.onnx", "res": res, "val": val, "demo": demo_data}


def _copy(vbundle, tmp_path):
    root = tmp_path / "b"
    shutil.copytree(vbundle["root"], root)
    return root


def _main(root, *args):
    from edgeres_deploy.__main__ import main

    return main(["--bundle", str(root), *map(str, args)])


def test_bundle_carries_validation_and_reference(vbundle):
    root = vbundle["root"]
    manifest = json.loads((root / "manifest.json").read_text())
    assert {"validation/images.npz", "validation/reference.npz", "edgeres_deploy/check.py"} <= set(manifest["files"])
    with np.load(root / "validation/images.npz") as z:
        assert z["images"].shape == (32, 32, 32, 3) and z["images"].dtype == np.uint8
        assert len(set(z["labels"].tolist())) == 10  # stratified: every class
    ref_sha = hashlib.sha256((root / "validation/reference.npz").read_bytes()).hexdigest()
    assert vbundle["res"]["reference_sha256"] == ref_sha


def test_check_passes_with_onnxruntime_and_fails_on_a_swapped_model(vbundle, tmp_path, capsys):
    root = _copy(vbundle, tmp_path)
    ref = vbundle["res"]["reference_sha256"]
    assert _main(root, "check", "--backend", "onnxruntime", "--csv", tmp_path / "dev.csv", "--expect-reference", ref) == 0
    out = capsys.readouterr().out
    assert "PASS onnxruntime" in out and "top-1 agreement 100.0%" in out
    # swap model.onnx for another model of the same shape and re-hash the manifest: verify passes, check fails
    shutil.copy(vbundle["other"], root / "model.onnx")
    m = json.loads((root / "manifest.json").read_text())
    m["files"]["model.onnx"] = hashlib.sha256((root / "model.onnx").read_bytes()).hexdigest()
    (root / "manifest.json").write_text(json.dumps(m))
    assert _main(root, "verify") == 0
    assert _main(root, "check", "--backend", "onnxruntime", "--csv", tmp_path / "bad.csv") == 1
    err = capsys.readouterr().err
    assert "FAIL onnxruntime" in err and "does not compute what the host's model computed" in err
    # ...and a re-made reference (re-hashed too) is refused against the digest the host recorded
    from edgeres_deploy.check import make_validation

    pre = json.loads((root / "preprocess.json").read_text())
    (root / "validation/reference.npz").write_bytes(make_validation(root / "model.onnx", pre, vbundle["val"])["validation/reference.npz"])
    m["files"]["validation/reference.npz"] = hashlib.sha256((root / "validation/reference.npz").read_bytes()).hexdigest()
    (root / "manifest.json").write_text(json.dumps(m))
    assert _main(root, "check", "--backend", "onnxruntime") == 0  # self-consistent forgery...
    assert _main(root, "check", "--backend", "onnxruntime", "--expect-reference", ref) == 1  # ...not the host's
    assert "the reference outputs are not the host's" in capsys.readouterr().err


def test_check_row_merges_into_the_run_report(vbundle, tmp_path):
    from edgeres.report import host_info, merge_run_report, new_row, write_report

    root = _copy(vbundle, tmp_path)
    assert _main(root, "check", "--backend", "onnxruntime", "--csv", tmp_path / "dev.csv") == 0
    run = tmp_path / "run"
    write_report(run, [new_row(stage="baseline", runtime="torch", batch_size=1, top1=50.0)], host_info())
    res = merge_run_report(run, [tmp_path / "dev.csv"])
    row = next(r for r in res["rows"] if r["stage"] == "check")
    assert row["runtime"] == "onnxruntime" and row["agreement"] == 100.0 and row["status"] == "ok"
    assert "self-check vs host reference" in row["note"] and "[measured on the device]" in row["note"]


@pytest.mark.parametrize("flavour", list(trt_double.FLAVOURS))
def test_every_command_on_each_tensorrt_flavour(flavour, vbundle, tmp_path, monkeypatch, capsys):
    """build (+ its first self-check), check, bench, evaluate (default batch 32 > profile max 8), predict; then the
    whole-build-spec freshness of item 4 (--dla-core / --no-fp16 rebuild, same options do not)."""
    import csv

    import edgeres_deploy.trt as T

    trt_double.install(monkeypatch, flavour, dla_cores=2)
    monkeypatch.setattr(T, "on_jetson", lambda: True)
    root = _copy(vbundle, tmp_path)
    assert _main(root, "build") == 0
    out = capsys.readouterr().out
    assert f"TensorRT {trt_double.FLAVOURS[flavour]}" in out and "PASS tensorrt" in out
    side = json.loads((root / "model.engine.json").read_text())
    assert side["build_spec"]["batch"] == [1, 1, 8] and side["tensorrt_version"] == trt_double.FLAVOURS[flavour]
    assert _main(root, "check", "--csv", tmp_path / "dev.csv") == 0
    assert _main(root, "bench", "--batch-size", "1", "8", "16", "--min-time", "0.02", "--min-runs", "2", "--warmup", "1",
                 "--csv", tmp_path / "dev.csv") == 0
    out = capsys.readouterr().out
    assert "batch 16: skipped (the engine's profile allows batches up to 8)" in out and "tensorrt batch 8: p50" in out
    with open(tmp_path / "dev.csv") as f:
        rows = list(csv.DictReader(f))
    bench = [r for r in rows if r["stage"] == "engine"]
    assert {r["batch_size"] for r in bench} == {"1", "8"}
    assert all(r["precision"] == side["precision"] and "GPU compute p50" in r["note"] and float(r["gpu_mem_mb"]) > 0
               for r in bench)
    assert next(r for r in rows if r["stage"] == "check")["status"] == "ok"
    assert _main(root, "evaluate", vbundle["demo"]) == 0  # --batch-size 32 by default
    ev = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert ev["backend"] == "tensorrt" and ev["images"] == len(vbundle["val"])
    img = vbundle["val"][0][0]
    assert _main(root, "predict", img, "--top-k", "2") == 0 and str(img) in capsys.readouterr().out
    # item 4: freshness compares the whole build spec
    assert _main(root, "build") == 0 and "up to date" in capsys.readouterr().out
    assert _main(root, "build", "--dla-core", "1") == 0
    out = capsys.readouterr().out
    assert "up to date" not in out and "built" in out
    side = json.loads((root / "model.engine.json").read_text())
    assert side["dla_core"] == 1 and side["build_spec"]["batch"] == [1, 1, 1]
    assert _main(root, "build", "--dla-core", "1") == 0 and "up to date" in capsys.readouterr().out
    assert _main(root, "build", "--dla-core", "1", "--no-fp16") == 0 and "up to date" not in capsys.readouterr().out
