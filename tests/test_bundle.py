import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from edgeres.bundle import make_bundle
from edgeres.data import Preprocess
from edgeres.engine_build import build_spec
from edgeres.targets import get_target

REQUIRED = {"manifest.json", "README.md", "install.sh", "run.sh", "model.onnx", "labels.txt", "preprocess.json", "build.json",
            "edgeres_deploy/__main__.py", "edgeres_deploy/preprocess.py", "edgeres_deploy/trt.py"}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, tiny_ckpt, tiny_onnx, demo_data):
    import shutil

    from edgeres.models import load_model

    d = tmp_path_factory.mktemp("bundle")
    lm = load_model(tiny_ckpt)
    pre = Preprocess(size=32)
    shutil.copy(tiny_onnx, d / "m.onnx")
    t = get_target("jetson-orin-nano")
    res = make_bundle(d / "b.tar.gz", d / "m.onnx", t, pre, lm.meta.classes, spec=build_spec(d / "m.onnx", "x", t, pre))
    root = d / "unpacked"
    with tarfile.open(d / "b.tar.gz") as tar:
        tar.extractall(root)
    return {"tar": d / "b.tar.gz", "root": root, "onnx": d / "m.onnx", "res": res, "classes": lm.meta.classes}


def _run(root, *args, python=sys.executable, env=None, run_sh=False):
    """``python -m edgeres_deploy ARGS`` from the bundle's root, or its ``run.sh`` (PYTHON=python)."""
    e = dict(os.environ if env is None else env)
    e.pop("PYTHONPATH", None)
    e["PYTHON"] = str(python)
    cmd = ["sh", str(Path(root) / "run.sh")] if run_sh else [python, "-m", "edgeres_deploy"]
    return subprocess.run([*map(str, cmd), *map(str, args)], cwd=root, capture_output=True, text=True, timeout=300,
                          env=e, check=False)


def test_bundle_contents_and_manifest(bundle):
    root = bundle["root"]
    names = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    assert REQUIRED <= names
    manifest = json.loads((root / "manifest.json").read_text())
    assert set(manifest["files"]) == names - {"manifest.json"}
    readme = (root / "README.md").read_text()
    assert "JetPack 5" in readme and "JetPack 6 and 7" in readme and "JetPack 7.2.2+" in readme and "--stronglyTyped" in readme
    assert "./run.sh adopt" in readme and "EDGERES_STATE_DIR" in readme and "--system-site-packages" in readme
    assert json.loads((root / "build.json").read_text())["onnx"] == "model.onnx"
    assert (root / "labels.txt").read_text().split() == bundle["classes"]
    assert os.access(root / "install.sh", os.X_OK) and os.access(root / "run.sh", os.X_OK)
    proc = _run(root, "verify")
    assert proc.returncode == 0, proc.stderr


def test_tampered_bundle_is_refused(bundle, tmp_path):
    root = tmp_path / "b"
    shutil.copytree(bundle["root"], root)
    with open(root / "labels.txt", "a") as f:
        f.write("intruder\n")
    proc = _run(root, "verify")
    assert proc.returncode == 1 and "labels.txt: sha256 differs" in proc.stderr
    img = next(Path(bundle["root"]).parent.parent.glob("**/*.png"), None)
    proc = _run(root, "predict", img or "x.png", "--backend", "onnxruntime")
    assert proc.returncode == 1 and "refusing" in proc.stderr
    (root / "model.onnx").unlink()
    assert "model.onnx: missing" in _run(root, "verify").stderr


@pytest.mark.slow
def test_deploy_runtime_without_torch_matches_host(bundle, demo_data, tmp_path):
    """The bundle's runtime, unpacked, in a clean venv without torch (ONNX Runtime backend): same top-1 as the host."""
    from edgeres.evaluate import evaluate_artifact

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    pip = subprocess.run([str(py), "-m", "pip", "install", "-q", "numpy", "pillow", "onnxruntime"], capture_output=True,
                         text=True, timeout=900)
    assert pip.returncode == 0, pip.stderr[-2000:]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    assert subprocess.run([str(py), "-c", "import torch"], capture_output=True, env=env).returncode != 0
    proc = _run(bundle["root"], "evaluate", demo_data, "--backend", "onnxruntime", "--csv", tmp_path / "dev.csv", python=py,
                env=env, run_sh=True)
    assert proc.returncode == 0, proc.stderr
    device = json.loads(proc.stdout.strip().splitlines()[-1])
    host = evaluate_artifact(bundle["onnx"], demo_data, Preprocess(size=32), progress=False)
    assert device["images"] == host["images"] and device["top1"] == pytest.approx(host["top1"])
    img = sorted(Path(demo_data, "val", "circle").glob("*.png"))[0]
    pred = _run(bundle["root"], "predict", img, "--backend", "onnxruntime", "--top-k", "3", python=py, env=env)
    assert pred.returncode == 0 and pred.stdout.count("%") == 3
    bench = _run(bundle["root"], "bench", "--backend", "onnxruntime", "--min-time", "0.2", "--min-runs", "5",
                 "--csv", tmp_path / "dev.csv", python=py, env=env, run_sh=True)
    assert bench.returncode == 0, bench.stderr
    import csv

    rows = list(csv.DictReader(open(tmp_path / "dev.csv")))
    assert len(rows) == 1 and rows[0]["top1"] and rows[0]["latency_p50_ms"]  # evaluate + bench merged into one row


def test_tensorrt_backend_reports_why(bundle):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt installed")
    except ImportError:
        pass
    proc = _run(bundle["root"], "bench", "--backend", "tensorrt")
    assert proc.returncode == 1 and "tensorrt not importable" in proc.stderr


def test_tegrastats_parsing():
    from edgeres_deploy.device_stats import parse_line

    line = "RAM 2345/7620MB (lfb 3x4MB) CPU [12%@1510,off] GR3D_FREQ 45% VDD_IN 5123mW/5000mW VDD_CPU_GPU_CV 1200mW"
    assert parse_line(line) == {"ram_mb": 2345, "power_mw": 5123}


def test_edgeres_deploy_command(cli, tmp_path):
    """`edgeres deploy --run` on a finished run is covered by the pipeline test; a non-run folder is a clear error."""
    proc = cli("deploy", "--run", tmp_path, "--out", tmp_path / "b.tar.gz")
    assert proc.returncode == 1 and "not an edgeres run directory" in proc.stderr
