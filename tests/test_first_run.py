"""The first run on a stock Jetson image, as shipped: `sh install.sh`, then `./run.sh build | check | bench | evaluate`
in throwaway interpreters, on each TensorRT flavour of the test double (tests/trt_double), through the ctypes CUDA
path over the C double of libcudart (tests/trt_double/cudart_double.c, found by the dynamic loader as
libcudart.so.13 on LD_LIBRARY_PATH, the way JetPack's own library is found): no pip, no pycuda, no cuda-python.

The interpreters are venvs made without pip whose site-packages hold only what a stock JetPack image has for Python
(numpy and pillow: JetPack's python3-numpy and python3-pil; here links to this venv's) plus the doubles, and ONNX
Runtime, which the TensorRT double runs engines with. The engine records go to each test's own state folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import trt_double
from PIL import Image

from edgeres.bundle import make_bundle
from edgeres.data import Preprocess
from edgeres.engine_build import build_spec
from edgeres.targets import get_target

SITE = Path(np.__file__).parents[1]  # this venv's site-packages
JETPACK_PYTHON = ["numpy", "numpy.libs", "PIL", "pillow.libs"]  # what JetPack's python3-numpy / python3-pil give
DOUBLE_NEEDS = ["onnx", "onnxruntime", "google", "typing_extensions.py", "ml_dtypes", "flatbuffers", "packaging"]
CLASSES = ["a", "b", "c"]
TENSORRT_STUB = """import os, sys
from trt_double.tensorrt_double import make_tensorrt  # the test double, never the product's
sys.modules[__name__] = make_tensorrt(os.environ["EDGERES_TEST_TRT_FLAVOUR"], int(os.environ.get("EDGERES_TEST_DLA", "0")))
"""


def _venv(path: Path, packages: list, tensorrt: bool) -> Path:
    """A venv without pip holding only ``packages`` (links into this venv) and, with ``tensorrt``, the double."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120)
    site = next(path.glob("lib/python3*/site-packages"))
    for name in packages:
        if (SITE / name).exists():
            (site / name).symlink_to(SITE / name)
    if tensorrt:
        (site / "trt_double").symlink_to(Path(trt_double.__file__).parent)
        (site / "tensorrt").mkdir()
        (site / "tensorrt" / "__init__.py").write_text(TENSORRT_STUB)
    return path / "bin" / "python"


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A jetson-orin-nano bundle of a three-class ONNX with validation images, the C libcudart double, and the
    interpreters."""
    from test_faults_bundle import _tiny_onnx

    d = tmp_path_factory.mktemp("first_run")
    rng = np.random.default_rng(0)
    samples = []
    for c, name in enumerate(CLASSES):
        (d / "data" / name).mkdir(parents=True)
        for i in range(4):
            p = d / "data" / name / f"{i}.png"
            Image.fromarray(rng.integers(0, 255, (40, 40, 3), np.uint8)).save(p)
            samples.append((p, c))
    _tiny_onnx(d / "tiny.onnx", len(CLASSES))
    t, pre = get_target("jetson-orin-nano"), Preprocess(size=32)
    make_bundle(d / "b.tar.gz", d / "tiny.onnx", t, pre, CLASSES, spec=build_spec(d / "tiny.onnx", "x", t, pre),
                validation=samples)
    with tarfile.open(d / "b.tar.gz") as tar:
        tar.extractall(d / "pristine")
    cudart = trt_double.build_cudart_double(d / "lib", 13)
    return {"root": d / "pristine", "data": d / "data", "cudart": cudart,
            "jetpack": _venv(d / "jetpack", JETPACK_PYTHON + DOUBLE_NEEDS, tensorrt=True),
            "no_numpy": _venv(d / "no_numpy", ["PIL", "pillow.libs"], tensorrt=False)}


@pytest.fixture
def bundle(made, tmp_path) -> Path:
    root = tmp_path / "bundle"
    shutil.copytree(made["root"], root)
    return root


def _env(made, tmp_path, python, flavour="10.3") -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "EDGERES_"))}
    env.update(PYTHON=str(python), EDGERES_VENV=str(tmp_path / "venv"), EDGERES_STATE_DIR=str(tmp_path / "state"),
               LD_LIBRARY_PATH=str(made["cudart"].parent), EDGERES_TEST_TRT_FLAVOUR=flavour,
               EDGERES_TEST_CUDART_DOUBLE=str(made["cudart"]))
    return env


def _sh(root: Path, script: str, *args, env: dict, timeout: int = 300):
    return subprocess.run(["sh", str(root / script), *map(str, args)], cwd=root.parent, capture_output=True, text=True,
                          env=env, timeout=timeout, check=False)


def test_install_sh_on_a_python_with_numpy_and_pillow_but_no_pip(made, bundle, tmp_path):
    """Nothing to install, nothing to compile: install.sh ends ready, through the ctypes CUDA path."""
    py, env = made["jetpack"], _env(made, tmp_path, made["jetpack"])
    for module in ("pip", "pycuda", "cuda"):
        assert subprocess.run([py, "-c", f"import {module}"], capture_output=True, env=env).returncode != 0, module
    proc = _sh(bundle, "install.sh", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "all 33 files match" in out or "files match manifest.json" in out
    assert "ok       tensorrt: 10.3.0.30" in out and "libcudart.so.13 via ctypes (CUDA runtime 13.0), device Double GPU" in out
    assert "MISSING" not in out and out.strip().splitlines()[-1].startswith("ready:")
    assert not (tmp_path / "venv").exists()  # nothing needed installing: no venv made


@pytest.mark.parametrize("flavour", list(trt_double.FLAVOURS))
def test_first_run_build_check_bench_evaluate(made, bundle, tmp_path, flavour):
    """The launcher as shipped (run.sh) on each TensorRT flavour through the ctypes backend: one build, one check,
    bench and evaluate rows naming the CUDA binding; the engine recorded and vouched for by verify."""
    env = _env(made, tmp_path, made["jetpack"], flavour)
    csv = tmp_path / "device.csv"
    proc = _sh(bundle, "run.sh", "build", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"(TensorRT {trt_double.FLAVOURS[flavour]}" in proc.stdout and proc.stdout.count("PASS tensorrt") == 1
    assert "via libcudart.so.13 via ctypes (CUDA runtime 13.0)" in proc.stdout
    proc = _sh(bundle, "run.sh", "check", "--csv", csv, "--json", env=env)
    assert proc.returncode == 0 and json.loads(proc.stdout)["passed"], proc.stderr
    proc = _sh(bundle, "run.sh", "bench", "--batch-size", "1", "4", "--min-time", "0.02", "--min-runs", "3",
               "--warmup", "1", "--csv", csv, env=env)
    assert proc.returncode == 0 and "tensorrt batch 4: p50" in proc.stdout, proc.stderr
    proc = _sh(bundle, "run.sh", "evaluate", made["data"], "--csv", csv, env=env)
    assert proc.returncode == 0 and json.loads(proc.stdout.splitlines()[-1])["images"] == 12, proc.stderr
    import csv as csvmod

    rows = list(csvmod.DictReader(open(csv)))
    check = next(r for r in rows if r["stage"] == "check")
    assert check["status"] == "ok" and "libcudart.so.13 via ctypes" in check["note"]
    assert check["runtime"] == "tensorrt" and f"tensorrt {trt_double.FLAVOURS[flavour]}" in check["note"]
    assert {r["batch_size"] for r in rows if r["stage"] == "engine"} == {"1", "4"}
    proc = _sh(bundle, "run.sh", "verify", env=env)
    assert proc.returncode == 0 and "built on this device" in proc.stdout, proc.stderr


def test_install_sh_reports_a_missing_numpy_with_its_fix_and_finishes(made, bundle, tmp_path):
    """A Python without numpy, offline: install.sh does every step, ends with one line per missing piece and the
    exact command that fixes it, exit 1; nothing is installed anywhere."""
    env = _env(made, tmp_path, made["no_numpy"])
    proc = _sh(bundle, "install.sh", "--offline", env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert any("files match manifest.json" in ln for ln in lines)  # verified first
    missing = [ln for ln in lines if ln.startswith("MISSING")]
    assert any("numpy" in ln and "fix: sudo apt-get install -y python3-numpy" in ln for ln in missing)
    assert any("tensorrt" in ln and "python3-libnvinfer" in ln for ln in missing)
    assert all("-> fix: " in ln for ln in missing) and "Traceback" not in proc.stderr
    assert lines[-1].startswith("not ready:") and not (tmp_path / "venv").exists()
    doc = json.loads(_sh(bundle, "run.sh", "doctor", "--json", env=env).stdout)
    assert not doc["ready"] and {i["name"] for i in doc["items"] if not i["ok"] and i["needed"]} >= {"numpy", "tensorrt"}


def _python38():
    from test_faults_bundle import PY38

    return PY38


@pytest.mark.slow  # creating a venv with pip (ensurepip) on Python 3.8 takes ~10 s
@pytest.mark.skipif(_python38() is None, reason="no Python 3.8 interpreter here (JetPack 5's Python)")
def test_install_sh_makes_a_system_site_packages_venv_where_it_must_install(made, bundle, tmp_path):
    """Python 3.8 (JetPack 5's) without numpy and pillow: install.sh makes a venv with --system-site-packages (PEP
    668-safe: nothing goes into the system Python), tries pip there (from an empty wheel folder: fails), never stops
    half-way, and ends with the fixes; the launcher and doctor run on 3.8."""
    env = _env(made, tmp_path, _python38())
    (tmp_path / "wheels").mkdir()
    proc = _sh(bundle, "install.sh", "--wheels", tmp_path / "wheels", env=env, timeout=600)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    cfg = (tmp_path / "venv" / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = true" in cfg
    out = proc.stdout
    assert "note: pip could not install numpy pillow" in out
    assert "ok       python: 3.8" in out and "MISSING  numpy" in out and "MISSING  pillow" in out
    assert out.strip().splitlines()[-1].startswith("not ready:")
