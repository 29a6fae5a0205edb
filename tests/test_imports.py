"""Every module imports with no optional dependency installed (tensorrt, pycuda, cuda-python, openvino)."""

import subprocess
import sys

SCRIPT = r"""
import importlib, importlib.abc, pkgutil, sys

BLOCKED = {"tensorrt", "pycuda", "cuda", "openvino"}

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"blocked for the test: {name}")
        return None

sys.meta_path.insert(0, Block())
import edgeres, edgeres_deploy
names = ["edgeres.calibration"]  # a subpackage mapped from the top-level calibration/ folder
for pkg in (edgeres, edgeres_deploy):
    names.append(pkg.__name__)
    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        names.append(m.name)
for n in names:
    importlib.import_module(n)
assert not BLOCKED & set(m.split(".")[0] for m in sys.modules), "an optional dependency was imported"
heavy = {"tensorrt", "openvino"} & set(sys.modules)
assert not heavy, heavy
assert "calibration" not in sys.modules, "calibration is installed as edgeres.calibration only"
print(len(names))
"""


def test_every_module_imports_without_optional_dependencies():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert int(proc.stdout.strip().splitlines()[-1]) >= 25


def test_runtime_unavailable_reasons_without_optional_dependencies(tmp_path):
    script = SCRIPT.split("import edgeres, edgeres_deploy")[0] + r"""
from edgeres.errors import Unavailable
from edgeres.runtimes import load_runtime
for name in ("tensorrt", "openvino"):
    try:
        load_runtime(name, "x.engine" if name == "tensorrt" else "x.onnx")
    except Unavailable as e:
        print(name, "->", e)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "tensorrt -> tensorrt not importable" in proc.stdout and "python3-libnvinfer" in proc.stdout
    assert "openvino -> openvino not importable" in proc.stdout and "pip install openvino" in proc.stdout


def test_cli_help_without_optional_dependencies():
    script = SCRIPT.split("import edgeres, edgeres_deploy")[0] + "from edgeres.cli import main\nmain(['--help'])\n"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "optimize" in proc.stdout


def test_cli_import_pulls_in_no_torch():
    """`edgeres --help` stays instant: the CLI module imports neither torch nor the numeric stack."""
    script = "import sys, edgeres.cli; heavy = {'torch', 'onnx', 'onnxruntime', 'nncf', 'numpy'} & set(sys.modules); print(sorted(heavy))"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"
