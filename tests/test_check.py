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
from edgeres.engine_build import build_spec
from edgeres.targets import get_target


@pytest.fixture(scope="module")
def vbundle(tmp_path_factory, tiny_ckpt, tiny_onnx, demo_data):
    import shutil

    import torch

    from edgeres.models import build_model, load_model
    from edgeres.onnx_export import export_onnx

    d = tmp_path_factory.mktemp("vbundle")
    lm = load_model(tiny_ckpt)
    pre = Preprocess(size=32)
    shutil.copy(tiny_onnx, d / "m.onnx")
    torch.manual_seed(123)  # another model of the same shape: what a swap would put in
    export_onnx(build_model("resnet18", len(lm.meta.classes)).eval(), d / "other.onnx", pre, lm.meta)
    export_onnx(lm.model, d / "other48.onnx", Preprocess(size=48), lm.meta)  # the same net for 48 px images
    t = get_target("jetson-orin-nano")
    val = resolve_data(demo_data).val
    res = make_bundle(d / "b.tar.gz", d / "m.onnx", t, pre, lm.meta.classes, spec=build_spec(d / "m.onnx", "x", t, pre),
                      validation=val)
    root = d / "unpacked"
    with tarfile.open(d / "b.tar.gz") as tar:
        tar.extractall(root)
    return {"root": root, "other": d / "other.onnx", "other48": d / "other48.onnx", "res": res, "val": val,
            "demo": demo_data}


def _qdq_onnx(path, n_classes: int) -> None:
    """A small explicitly quantized classifier: input -> Q/DQ (int8, zero-point 0, three inputs) -> Conv -> Relu ->
    global average pool -> Flatten -> MatMul."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(np.array(0.05, np.float32), "s"), numpy_helper.from_array(np.array(0, np.int8), "z"),
             numpy_helper.from_array((rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal((8, n_classes)).astype(np.float32), "fc")]
    nodes = [helper.make_node("QuantizeLinear", ["input", "s", "z"], ["xq"], name="q_in"),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="dq_in"),
             helper.make_node("Conv", ["xd", "w"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu1"),
             helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
             helper.make_node("MatMul", ["f", "fc"], ["logits"], name="fc")]
    g = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 32, 32])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", n_classes])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(path))


@pytest.fixture(scope="module")
def dla_bundle(tmp_path_factory, vbundle):
    """A jetson-agx-orin bundle (2 DLA cores, TensorRT 10.3) of a small Q/DQ classifier, with validation images."""
    d = tmp_path_factory.mktemp("dla")
    classes = json.loads((vbundle["root"] / "build.json").read_text()) and \
        (vbundle["root"] / "labels.txt").read_text().split()
    _qdq_onnx(d / "q.onnx", len(classes))
    t, pre = get_target("jetson-agx-orin"), Preprocess(size=32)
    make_bundle(d / "b.tar.gz", d / "q.onnx", t, pre, classes, spec=build_spec(d / "q.onnx", "x", t, pre),
                validation=vbundle["val"])
    with tarfile.open(d / "b.tar.gz") as tar:
        tar.extractall(d / "unpacked")
    return d / "unpacked"


def _copy(vbundle, tmp_path):
    root = tmp_path / "b"
    tmp_path.mkdir(parents=True, exist_ok=True)
    shutil.copytree(vbundle["root"], root)
    return root


def _main(root, *args):
    from edgeres_deploy.__main__ import main

    return main(["--bundle", str(root), *map(str, args)])


@pytest.fixture(autouse=True)
def _state_dir(tmp_path, monkeypatch):
    """Each test's engine records in its own state folder (never the user's ~/.local/state)."""
    monkeypatch.setenv("EDGERES_STATE_DIR", str(tmp_path / "state"))


@pytest.fixture(scope="module")
def cudart(tmp_path_factory):
    """The C double of libcudart (tests/trt_double/cudart_double.c), compiled once for this module."""
    return trt_double.build_cudart_double(tmp_path_factory.mktemp("cudart"), 13)


# each flavour through another CUDA binding: the ctypes path over the C double of libcudart (what a stock JetPack
# image uses), the pycuda double, the cuda-python double
BINDINGS = {"8.5": "ctypes", "10.3": "pycuda", "11": "cuda-python"}
WHICH = {"ctypes": "libcudart.so.13 via ctypes", "pycuda": "pycuda", "cuda-python": "cuda-python"}


def _install(monkeypatch, flavour, cudart, dla_cores=2, cuda=None):
    import edgeres_deploy.trt as T

    trt = trt_double.install(monkeypatch, flavour, dla_cores=dla_cores, cuda=cuda or BINDINGS[flavour], cudart=cudart)
    monkeypatch.setattr(T, "on_jetson", lambda: True)
    return trt


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
    from edgeres.host import host_info
    from edgeres.report import merge_run_report, new_row, write_report

    root = _copy(vbundle, tmp_path)
    assert _main(root, "check", "--backend", "onnxruntime", "--csv", tmp_path / "dev.csv") == 0
    run = tmp_path / "run"
    write_report(run, [new_row(stage="baseline", runtime="torch", batch_size=1, top1=50.0)], host_info())
    res = merge_run_report(run, [tmp_path / "dev.csv"])
    row = next(r for r in res["rows"] if r["stage"] == "check")
    assert row["runtime"] == "onnxruntime" and row["agreement"] == 100.0 and row["status"] == "ok"
    assert "self-check vs host reference" in row["note"] and "[measured on the device]" in row["note"]


@pytest.mark.parametrize("flavour", list(trt_double.FLAVOURS))
def test_every_command_on_each_tensorrt_flavour(flavour, vbundle, tmp_path, monkeypatch, capsys, cudart):
    """build (+ its first self-check), check, bench, evaluate (default batch 32 > profile max 8), predict; the check
    row names the backend, its version and the CUDA binding; then the whole-build-spec freshness (--dla-core /
    --no-fp16 rebuild, same options do not)."""
    import csv

    _install(monkeypatch, flavour, cudart)
    root = _copy(vbundle, tmp_path)
    assert _main(root, "build") == 0
    out = capsys.readouterr().out
    assert f"TensorRT {trt_double.FLAVOURS[flavour]}" in out and "PASS tensorrt" in out
    side = json.loads((root / "model.engine.json").read_text())
    assert side["build_spec"]["batch"] == [1, 1, 8] and side["tensorrt_version"] == trt_double.FLAVOURS[flavour]
    assert _main(root, "check", "--csv", tmp_path / "dev.csv") == 0
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and f"tensorrt {trt_double.FLAVOURS[flavour]} via {WHICH[BINDINGS[flavour]]}" in line
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
    check = next(r for r in rows if r["stage"] == "check")
    assert check["status"] == "ok" and WHICH[BINDINGS[flavour]] in check["note"] and "GPU only" in check["note"]
    assert _main(root, "evaluate", vbundle["demo"]) == 0  # --batch-size 32 by default
    ev = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert ev["backend"] == "tensorrt" and ev["images"] == len(vbundle["val"])
    img = vbundle["val"][0][0]
    assert _main(root, "predict", img, "--top-k", "2") == 0 and str(img) in capsys.readouterr().out
    assert _main(root, "build") == 0 and "up to date" in capsys.readouterr().out
    if flavour == "11":  # no DLA in TensorRT 11.0-11.3: refused before any build, the engine kept
        before = (root / "model.engine").read_bytes()
        assert _main(root, "build", "--dla-core", "1") == 1
        assert "TensorRT 11.0.0.11 has no DLA support" in capsys.readouterr().err
        assert (root / "model.engine").read_bytes() == before and _main(root, "verify") == 0
        return
    assert _main(root, "build", "--dla-core", "1") == 0
    out = capsys.readouterr().out
    assert "up to date" not in out and "built" in out and "replaced the previous model.engine" in out
    side = json.loads((root / "model.engine.json").read_text())
    assert side["dla_core"] == 1 and side["build_spec"]["batch"] == [1, 1, 1] and side["layers"]["dla"] == 1
    assert _main(root, "build", "--dla-core", "1") == 0 and "up to date" in capsys.readouterr().out
    assert _main(root, "build", "--dla-core", "1", "--no-fp16") == 0 and "up to date" not in capsys.readouterr().out


def test_check_proves_the_engine_or_fails(vbundle, tmp_path, monkeypatch, capsys):
    """A TensorRT bundle's `check` never passes on another runtime: without a usable TensorRT backend it exits 1 with
    one line saying why; with --backend onnxruntime it passes and its row says the engine was not checked."""
    import csv
    import sys

    monkeypatch.setitem(sys.modules, "tensorrt", None)  # no TensorRT here
    root = _copy(vbundle, tmp_path)
    assert _main(root, "check") == 1
    cap = capsys.readouterr()
    assert cap.out == "" and len(cap.err.strip().splitlines()) == 1
    assert "FAIL check: model.engine cannot be run here (tensorrt not importable" in cap.err
    assert "--backend onnxruntime" in cap.err and "PASS" not in cap.err
    assert _main(root, "check", "--backend", "onnxruntime", "--csv", tmp_path / "dev.csv") == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("PASS onnxruntime") and "the engine was NOT checked" in out and "\n" not in out
    row = next(csv.DictReader(open(tmp_path / "dev.csv")))
    assert row["runtime"] == "onnxruntime" and "the engine was NOT checked" in row["note"]


def test_check_without_an_engine_builds_once_and_checks_once(vbundle, tmp_path, monkeypatch, capsys, cudart):
    """One build, one check, one line: `check` on a fresh bundle builds the engine (its line on stderr) and prints
    one PASS line; the built engine is recorded and vouched for."""
    _install(monkeypatch, "10.3", cudart, cuda="ctypes")
    root = _copy(vbundle, tmp_path)
    assert _main(root, "check", "--json") == 0
    cap = capsys.readouterr()
    doc = json.loads(cap.out)
    assert doc["passed"] and doc["backend"].startswith("tensorrt 10.3.0.30 via libcudart.so.13 via ctypes")
    assert cap.err.count("built ") == 1 and "PASS" not in cap.err
    assert _main(root, "check") == 0
    cap = capsys.readouterr()
    assert len(cap.out.strip().splitlines()) == 1 and cap.err == ""  # no second build
    assert _main(root, "verify", "--json") == 0
    v = json.loads(capsys.readouterr().out)
    assert v["ok"] and v["engine_files"] == ["model.engine", "model.engine.json", "timing.cache"]


def test_dla_layers_are_reported_for_agx_orin(dla_bundle, tmp_path, monkeypatch, capsys, cudart):
    """--dla-core 0 on jetson-agx-orin (10.3): the check row says how many engine layers ran on the DLA (from the
    engine inspector); on 8.5 the Q/DQ file runs no layer there and the sidecar says so (dla_core None)."""
    import csv

    _install(monkeypatch, "10.3", cudart, dla_cores=2)
    root = _copy({"root": dla_bundle}, tmp_path)
    assert _main(root, "build", "--dla-core", "0") == 0
    capsys.readouterr()
    assert _main(root, "check", "--csv", tmp_path / "dev.csv") == 0
    row = next(r for r in csv.DictReader(open(tmp_path / "dev.csv")) if r["stage"] == "check")
    assert "DLA core 0: 1 engine layer(s) on the DLA (each a fused subgraph)" in row["note"]
    assert json.loads((root / "model.engine.json").read_text())["dla_core"] == 0
    root85 = _copy({"root": dla_bundle}, tmp_path / "85")
    _install(monkeypatch, "8.5", cudart, dla_cores=2)
    assert _main(root85, "build", "--dla-core", "0") == 0
    cap = capsys.readouterr()
    assert "does not take explicit (Q/DQ) quantization" in cap.out + cap.err
    assert "asked for DLA core 0, but no layer runs on it" in cap.out
    assert json.loads((root85 / "model.engine.json").read_text())["dla_core"] is None


def test_dla_core_refused_on_a_device_without_dla(vbundle, tmp_path, monkeypatch, capsys, cudart):
    """Thor, Orin Nano: no DLA core; refused before any build, nothing written."""
    _install(monkeypatch, "10.3", cudart, dla_cores=0)
    root = _copy(vbundle, tmp_path)
    assert _main(root, "build", "--dla-core", "0") == 1
    assert "refused before building: this device has no DLA core" in capsys.readouterr().err
    assert not (root / "model.engine").exists()


@pytest.mark.parametrize("line,release,jetpack", [
    ("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, DATE: Tue Aug  1 19:57:35 UTC 2023",
     "35.4.1", "5"),
    ("# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8 01:49:37 UTC 2025",
     "36.4.3", "6"),
    ("# R39 (release), REVISION: 2.0, GCID: 1, BOARD: generic, EABI: aarch64, DATE: Mon Jan  1 00:00:00 UTC 2026",
     "39.2.0", "7"),
    ("not a release line", "not a release line", None)])
def test_l4t_release_and_jetpack(tmp_path, line, release, jetpack):
    from edgeres_deploy.envinfo import l4t

    (tmp_path / "nv_tegra_release").write_text(line + "\n")
    assert l4t(str(tmp_path / "nv_tegra_release")) == {"release": release, "jetpack": jetpack}
    assert l4t(str(tmp_path / "absent")) is None


def test_verify_says_which_tensorrt_and_jetpack_it_found(vbundle, tmp_path, monkeypatch, capsys, cudart):
    """verify names the TensorRT and L4T/JetPack found and warns where they differ from the bundle's target profile
    (a jetson-orin-nano bundle, JetPack 6.2 / TensorRT 10.3, on an L4T R35 image with TensorRT 8.5)."""
    from edgeres_deploy import envinfo

    _install(monkeypatch, "8.5", cudart)
    rel = tmp_path / "nv_tegra_release"
    rel.write_text("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, DATE: x\n")
    monkeypatch.setattr(envinfo, "NV_TEGRA_RELEASE", str(rel))
    root = _copy(vbundle, tmp_path)
    assert _main(root, "verify") == 0
    cap = capsys.readouterr()
    assert "found: TensorRT 8.5.2.2, L4T R35.4.1 (JetPack 5.x); made for jetson-orin-nano (JetPack 6.2, TensorRT 10.3)" in cap.out
    assert "warning: the bundle was made for jetson-orin-nano (TensorRT 10.3); this device has TensorRT 8.5.2.2" in cap.err
    assert "this device runs L4T R35.4.1 (JetPack 5.x)" in cap.err
    assert _main(root, "doctor", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ready"] and doc["l4t"] == {"release": "35.4.1", "jetpack": "5"} and doc["tensorrt"] == "8.5.2.2"
    assert next(i for i in doc["items"] if i["name"] == "cuda")["detail"].startswith("libcudart.so.13 via ctypes")
