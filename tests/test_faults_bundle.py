"""Fault injection against the deployment bundle and its on-device runtime (issue 15, items 1, 2 and 9).

Each case tampers with an unpacked bundle (or feeds the runtime bad input) the way a hostile but realistic user would,
and checks the runtime's answer: one clear line on stderr, exit 1 (2 for usage), no traceback, and nothing from
outside the manifest ever imported. The model is a three-class ONNX of a few bytes, so every case runs in a second.
Both ways of starting the runtime are covered: the bundle's ``run.sh`` and ``python3 -m edgeres_deploy``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeres.bundle import make_bundle
from edgeres.data import Preprocess
from edgeres.engine_build import build_spec
from edgeres.targets import get_target

CLASSES = ["a", "b", "c"]


def _find_python38():
    """A working Python 3.8 (JetPack 5's), if this machine has one: a pyenv build or the system's."""
    cands = [shutil.which("python3.8"), "/usr/bin/python3.8",
             *map(str, sorted(Path.home().glob(".pyenv/versions/3.8*/bin/python3.8")))]
    for c in cands:
        if c and os.path.isfile(c) and subprocess.run([c, "-c", "import sys; assert sys.version_info[:2] == (3, 8)"],
                                                      capture_output=True, check=False).returncode == 0:
            return c
    return None


PY38 = _find_python38()


def _tiny_onnx(path: Path, n_classes: int) -> None:
    """input [N,3,32,32] -> global average pool -> flatten -> linear: a real classifier ONNX of a few hundred bytes."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((3, n_classes)).astype(np.float32), "w")
    b = numpy_helper.from_array(np.zeros(n_classes, np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["input"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
         helper.make_node("Gemm", ["f", "w", "b"], ["logits"])], "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", n_classes])], [w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    d = tmp_path_factory.mktemp("faults")
    onnx_path = d / "tiny.onnx"
    _tiny_onnx(onnx_path, len(CLASSES))
    t, pre = get_target("jetson-orin-nano"), Preprocess(size=32)
    make_bundle(d / "b.tar.gz", onnx_path, t, pre, CLASSES, spec=build_spec(onnx_path, "x", t, pre))
    root = d / "pristine"
    with tarfile.open(d / "b.tar.gz") as tar:
        tar.extractall(root)
    data = d / "data"
    rng = np.random.default_rng(1)
    for c in CLASSES[:2]:
        (data / c).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (40, 40, 3), np.uint8)).save(data / c / f"{i}.png")
    return {"root": root, "data": data}


@pytest.fixture
def bundle(made, tmp_path) -> Path:
    root = tmp_path / "bundle"
    shutil.copytree(made["root"], root, symlinks=True)
    return root


def deploy(root: Path, *args, how: str = "m", python: str = sys.executable, cwd: Path | None = None):
    """Start the runtime of the bundle at ``root``: ``how="m"`` = ``python -m edgeres_deploy`` from its root,
    ``how="run.sh"`` = ``sh run.sh`` (PYTHON=python)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "VIRTUAL_ENV")}
    env["PYTHON"] = python
    cmd = [python, "-m", "edgeres_deploy"] if how == "m" else ["sh", str(root / "run.sh")]
    return subprocess.run([*cmd, *map(str, args)], cwd=cwd or root, capture_output=True, text=True, timeout=300, env=env,
                          check=False)


def refused(proc, *fragments, rc: int = 1) -> None:
    assert proc.returncode == rc, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    for f in fragments:
        assert f in proc.stderr, (f, proc.stderr)


def rewrite_manifest(root: Path, fn) -> None:
    m = json.loads((root / "manifest.json").read_text())
    (root / "manifest.json").write_text(json.dumps(fn(m)))


HOW = ["m", "run.sh"]


@pytest.fixture(autouse=True)
def _state_dir(tmp_path, monkeypatch):
    """Engine records of these runs in the test's folder (run.sh and -m inherit it), never ~/.local/state."""
    monkeypatch.setenv("EDGERES_STATE_DIR", str(tmp_path / "state"))


# ------------------------------------------------------------------------------------------------ the clean bundle
@pytest.mark.parametrize("how", HOW)
def test_clean_bundle_verifies_and_leaves_nothing_behind(bundle, how):
    before = sorted(p.relative_to(bundle) for p in bundle.rglob("*"))
    for _ in range(2):  # the second run would see a __pycache__ the first one left
        proc = deploy(bundle, "verify", how=how)
        assert proc.returncode == 0, proc.stderr
        assert "match" in proc.stdout
    assert sorted(p.relative_to(bundle) for p in bundle.rglob("*")) == before


def test_run_sh_is_in_the_manifest_and_executable(bundle):
    assert "run.sh" in json.loads((bundle / "manifest.json").read_text())["files"]
    assert os.access(bundle / "run.sh", os.X_OK)
    readme, install = (bundle / "README.md").read_text(), (bundle / "install.sh").read_text()
    assert "./run.sh verify" in readme and "run.sh" in install and "Running it safely" in readme


@pytest.mark.skipif(PY38 is None, reason="no Python 3.8 interpreter here (JetPack 5's Python)")
def test_run_sh_on_python38(bundle):
    """JetPack 5 has Python 3.8 (no -P): the launcher's verification needs only its standard library."""
    assert deploy(bundle, "verify", how="run.sh", python=PY38).returncode == 0
    (bundle / "json.py").write_text(f"open({str(bundle / 'pwned')!r}, 'w').close()\n")
    refused(deploy(bundle, "verify", how="run.sh", python=PY38), "json.py: not listed in manifest.json")
    assert not (bundle / "pwned").exists()


# ------------------------------------------------------------------------------------------------ item 1: tampering
@pytest.mark.parametrize("how", HOW)
def test_forged_pyc_is_refused_not_run(bundle, how):
    """A compiled bundle.py whose header carries the source's mtime and size (so Python would trust it) that skips
    the check: the runtime must neither load it nor accept the bundle it sits in, and must still see the bad model."""
    src = bundle / "edgeres_deploy" / "bundle.py"
    evil = src.read_text() + "\n\ndef verify(root, *a, **k):\n    return []\n\ndef check(root, *a, **k):\n    return load_manifest(root), []\n"
    code = compile(evil, str(src), "exec")
    st = src.stat()
    pyc = importlib.util.cache_from_source(str(src))
    Path(pyc).parent.mkdir(exist_ok=True)
    from importlib._bootstrap_external import _code_to_timestamp_pyc

    Path(pyc).write_bytes(bytes(_code_to_timestamp_pyc(code, st.st_mtime, st.st_size)))
    data = bytearray((bundle / "model.onnx").read_bytes())
    data[-1] ^= 0xFF
    (bundle / "model.onnx").write_bytes(bytes(data))
    proc = deploy(bundle, "verify", how=how)
    refused(proc, "model.onnx: sha256 differs", "__pycache__/bundle.")


@pytest.mark.parametrize("module", ["__init__", "__main__", "bundle", "metrics"])
def test_listed_pyc_is_never_loaded_by_run_sh(bundle, module):
    """Even a forged .pyc that a rewritten manifest lists is inert: run.sh compiles the listed sources, never a cache."""
    from importlib._bootstrap_external import _code_to_timestamp_pyc

    from edgeres_deploy.bundle import sha256

    marker = bundle.parent / "pwned"
    src = bundle / "edgeres_deploy" / f"{module}.py"
    code = compile(src.read_text() + f"\nopen({str(marker)!r}, 'w').close()\n", str(src), "exec")
    st = src.stat()
    pyc = Path(importlib.util.cache_from_source(str(src)))
    pyc.parent.mkdir(exist_ok=True)
    pyc.write_bytes(bytes(_code_to_timestamp_pyc(code, st.st_mtime, st.st_size)))
    rel = pyc.relative_to(bundle).as_posix()
    rewrite_manifest(bundle, lambda m: {**m, "files": {**m["files"], rel: sha256(pyc)}})
    for args in (["verify"], ["--help"]):
        proc = deploy(bundle, *args, how="run.sh")
        assert proc.returncode == 0, proc.stderr
        assert not marker.exists(), f"the compiled {rel} was loaded"


@pytest.mark.parametrize("how", HOW)
def test_extra_module_in_the_package_is_refused(bundle, how):
    (bundle / "edgeres_deploy" / "extra.py").write_text("x = 1\n")
    refused(deploy(bundle, "verify", how=how), "edgeres_deploy/extra.py: not listed in manifest.json")


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("name", ["json.py", "hashlib.py", "numpy.py"])
def test_module_in_the_root_is_never_imported(bundle, how, name):
    """A json.py (or any module name) dropped in the bundle root shadowed the standard library before verification."""
    marker = bundle.parent / "pwned"
    (bundle / name).write_text(f"open({str(marker)!r}, 'w').close()\n")
    proc = deploy(bundle, "verify", how=how)
    assert not marker.exists(), f"{name} in the bundle root was imported"
    refused(proc, f"{name}: not listed in manifest.json")


def test_modified_listed_module_is_refused_before_it_is_imported(bundle):
    """Verification runs before any edgeres_deploy module but the verifier itself is imported."""
    marker = bundle.parent / "pwned"
    with open(bundle / "edgeres_deploy" / "metrics.py", "a") as f:
        f.write(f"\nopen({str(marker)!r}, 'w').close()\n")
    proc = deploy(bundle, "predict", made_image(bundle.parent), "--backend", "onnxruntime", how="run.sh")
    refused(proc, "edgeres_deploy/metrics.py: sha256 differs", "refusing")
    assert not marker.exists()


def made_image(d: Path, name: str = "img.png") -> Path:
    p = d / name
    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(p)
    return p


@pytest.mark.parametrize("how", HOW)
def test_unlisted_data_file_in_the_root_is_refused(bundle, how):
    (bundle / "notes.txt").write_text("x")
    refused(deploy(bundle, "verify", how=how), "notes.txt: not listed in manifest.json")
    (bundle / "notes.txt").unlink()
    (bundle / "model.engine.tmp4242").write_bytes(b"half an engine")
    refused(deploy(bundle, "verify", how=how), "model.engine.tmp4242: not listed", "interrupted `build`")


def test_run_sh_through_a_link_and_from_another_folder(bundle, tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "edgeres-run").symlink_to(bundle / "run.sh")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHON"] = sys.executable
    proc = subprocess.run(["sh", str(tmp_path / "bin" / "edgeres-run"), "verify"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env=env, check=False)
    assert proc.returncode == 0 and str(bundle) in proc.stdout, proc.stderr


@pytest.mark.parametrize("entry", ["../outside.txt", "../../../../../../../../etc/hostname", "/etc/hostname",
                                   "edgeres_deploy/../../outside.txt"])
def test_manifest_path_leaving_the_bundle_is_refused(bundle, entry):
    outside = bundle.parent / "outside.txt"
    outside.write_text("outside\n")
    target = Path(entry) if entry.startswith("/") else bundle / entry
    if not target.is_file():
        pytest.skip(f"{target} does not exist here")
    from edgeres_deploy.bundle import sha256

    rewrite_manifest(bundle, lambda m: {**m, "files": {**m["files"], entry: sha256(target)}})
    proc = deploy(bundle, "verify")
    refused(proc, "leaves the bundle" if not entry.startswith("/") else "absolute path")
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.mark.parametrize("how", HOW)
def test_symlink_out_of_the_bundle_is_refused(bundle, how):
    """labels.txt replaced by a link to an outside file with the same bytes: the sha256 matches, the link is refused."""
    outside = bundle.parent / "labels-outside.txt"
    shutil.copy(bundle / "labels.txt", outside)
    (bundle / "labels.txt").unlink()
    (bundle / "labels.txt").symlink_to(outside)
    refused(deploy(bundle, "verify", how=how), "labels.txt: is a symbolic link")


def test_symlinked_folder_is_refused(bundle):
    real = bundle.parent / "pkg-outside"
    shutil.move(str(bundle / "edgeres_deploy"), real)
    (bundle / "edgeres_deploy").symlink_to(real)
    refused(deploy(bundle, "verify", cwd=bundle.parent, how="run.sh", ), "symbolic link")


@pytest.mark.parametrize("manifest,fragment", [
    ('{"files": ["model.onnx", "labels.txt"]}', "'files' must map"),
    ("[1, 2]", "expected a JSON object"),
    ('"files"', "expected a JSON object"),
    ("{not json", "not valid JSON"),
    ('{"format": "edgeres-bundle", "version": 1, "files": {}}', "'files' is empty"),
    ('{"format": "edgeres-bundle", "version": 1, "files": {"model.onnx": 7}}', "is not a sha256"),
    ('{"format": "edgeres-bundle", "version": 1, "files": {"": "' + "0" * 64 + '"}}', "is empty"),
])
@pytest.mark.parametrize("how", HOW)
def test_malformed_manifest_gives_one_line(bundle, manifest, fragment, how):
    (bundle / "manifest.json").write_text(manifest)
    proc = deploy(bundle, "verify", how=how)
    refused(proc, "manifest.json", fragment)
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


# ------------------------------------------------------------------------------------------------ item 2: --bundle DIR
@pytest.mark.parametrize("how", HOW)
def test_bundle_dir_without_manifest_is_an_error_not_the_current_folder(bundle, tmp_path, how):
    typo = tmp_path / "bundel"
    typo.mkdir()
    for d in (typo, tmp_path / "nowhere"):
        proc = deploy(bundle, "--bundle", d, "verify", how=how)  # run from a good bundle's root
        refused(proc, str(d), "manifest.json")
        assert "match" not in proc.stdout


@pytest.mark.parametrize("how", HOW)
def test_bundle_dir_of_another_bundle_is_verified_too(bundle, made, tmp_path, how):
    other = tmp_path / "other"
    shutil.copytree(made["root"], other)
    for args in (["--bundle", other, "verify"], [f"--bundle={other}", "verify"]):
        proc = deploy(bundle, *args, how=how)
        assert proc.returncode == 0 and str(other) in proc.stdout, proc.stderr
    (other / "labels.txt").write_text("x\n")
    refused(deploy(bundle, "--bundle", other, "verify", how=how), "labels.txt: sha256 differs")
    proc = deploy(bundle, "--bundle", other, "predict", made_image(tmp_path), "--backend", "onnxruntime", how=how)
    refused(proc, "labels.txt: sha256 differs", "refusing")


def test_missing_manifest_is_refused(bundle):
    (bundle / "manifest.json").unlink()
    refused(deploy(bundle, "verify", how="run.sh"), "manifest.json")


# ------------------------------------------------------------------------------------------------ item 9: bad input
@pytest.fixture
def bad_images(tmp_path):
    good = made_image(tmp_path, "good.jpg")
    trunc = tmp_path / "truncated.jpg"
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" * 10)
    return {"good": good, "truncated": trunc, "garbage": garbage}


@pytest.mark.parametrize("which", ["truncated", "garbage"])
def test_predict_corrupt_jpeg(bundle, bad_images, which):
    proc = deploy(bundle, "predict", bad_images["good"], bad_images[which], "--backend", "onnxruntime")
    refused(proc, str(bad_images[which]))
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_predict_folder_and_missing_file(bundle, tmp_path):
    refused(deploy(bundle, "predict", tmp_path, "--backend", "onnxruntime"), str(tmp_path), "folder")
    refused(deploy(bundle, "predict", tmp_path / "nope.jpg", "--backend", "onnxruntime"), "nope.jpg")


def test_predict_good_image_still_works(bundle, bad_images):
    proc = deploy(bundle, "predict", bad_images["good"], "--backend", "onnxruntime", "--top-k", "2", how="run.sh")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("%") == 2


def test_evaluate_with_a_corrupt_image(bundle, made, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(made["data"], data)
    ok = deploy(bundle, "evaluate", data, "--backend", "onnxruntime", how="run.sh")
    assert ok.returncode == 0 and json.loads(ok.stdout.splitlines()[-1])["images"] == 4, ok.stderr
    (data / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    refused(deploy(bundle, "evaluate", data, "--backend", "onnxruntime"), "broken.png")
    refused(deploy(bundle, "evaluate", tmp_path / "nope", "--backend", "onnxruntime"), "nope")


@pytest.mark.parametrize("args", [["bench", "--batch-size", "0"], ["bench", "--batch-size", "1", "-3"],
                                  ["evaluate", "DATA", "--batch-size", "0"], ["bench", "--min-runs", "0"],
                                  ["bench", "--min-time", "nan"], ["predict", "IMG", "--top-k", "0"],
                                  ["bench", "--threads", "0"]])
def test_non_positive_numbers_are_usage_errors(bundle, made, tmp_path, args):
    args = [str(made["data"]) if a == "DATA" else str(made_image(tmp_path)) if a == "IMG" else a for a in args]
    proc = deploy(bundle, *args, "--backend", "onnxruntime")
    refused(proc, rc=2)
    assert "img/s" not in proc.stdout


def test_bench_csv_pointing_at_a_folder(bundle, tmp_path):
    proc = deploy(bundle, "bench", "--backend", "onnxruntime", "--min-time", "0", "--min-runs", "1", "--csv", tmp_path)
    refused(proc, str(tmp_path), "folder")
    assert "img/s" not in proc.stdout  # refused before measuring
    proc = deploy(bundle, "bench", "--backend", "onnxruntime", "--min-time", "0", "--min-runs", "1", "--csv",
                  tmp_path / "no" / "such" / "dir.csv")
    refused(proc, "does not exist")


@pytest.mark.parametrize("content", [b"name,value\n1,2\n", b"\xff\xfe\x00binary"])
def test_csv_that_is_not_a_report_is_refused_before_measuring(bundle, tmp_path, content):
    (tmp_path / "other.csv").write_bytes(content)
    proc = deploy(bundle, "bench", "--backend", "onnxruntime", "--min-time", "0", "--min-runs", "1", "--csv",
                  tmp_path / "other.csv")
    refused(proc, "other.csv")
    assert "img/s" not in proc.stdout and (tmp_path / "other.csv").read_bytes() == content


def test_csv_inside_the_bundle_is_refused(bundle):
    """A CSV written into the bundle would make the next run refuse the bundle (not in the manifest)."""
    proc = deploy(bundle, "bench", "--backend", "onnxruntime", "--min-time", "0", "--min-runs", "1", "--csv", "device.csv")
    refused(proc, "device.csv", "outside the bundle")
    assert not (bundle / "device.csv").exists()


def test_bench_writes_a_csv_outside_the_bundle(bundle, tmp_path):
    proc = deploy(bundle, "bench", "--backend", "onnxruntime", "--min-time", "0", "--min-runs", "2", "--warmup", "0",
                  "--csv", tmp_path / "device.csv", how="run.sh")
    assert proc.returncode == 0, proc.stderr
    assert " 0.0 img/s" not in proc.stdout and "img/s" in proc.stdout
    assert (tmp_path / "device.csv").read_text().count("\n") == 2


# ------------------------------------------------------------------------------------------------ a rewritten manifest
def test_rehashed_manifest_is_refused_when_its_hash_is_pinned(bundle, monkeypatch):
    """Tampered labels plus a manifest rewritten to match: the per-file check cannot see it; the pinned manifest hash
    (EDGERES_MANIFEST_SHA256, printed by `edgeres deploy`) can."""
    from edgeres_deploy.bundle import sha256

    original = sha256(bundle / "manifest.json")
    monkeypatch.setenv("EDGERES_MANIFEST_SHA256", original)
    assert deploy(bundle, "verify", how="run.sh").returncode == 0
    (bundle / "labels.txt").write_text("x\ny\nz\n")
    rewrite_manifest(bundle, lambda m: {**m, "files": {**m["files"], "labels.txt": sha256(bundle / "labels.txt")}})
    for how in HOW:
        proc = deploy(bundle, "verify", how=how)
        refused(proc, "EDGERES_MANIFEST_SHA256", original)
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    monkeypatch.delenv("EDGERES_MANIFEST_SHA256")
    assert deploy(bundle, "verify", how="run.sh").returncode == 0  # unpinned, the rewritten manifest is consistent


def test_install_sh_checks_the_bundle_before_installing_anything(bundle):
    """install.sh runs the (standard-library-only) check first and stops on a tampered bundle, before pip runs."""
    (bundle / "json.py").write_text("raise SystemExit('imported')\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHON"] = sys.executable
    proc = subprocess.run(["sh", str(bundle / "install.sh")], cwd=bundle, capture_output=True, text=True, timeout=300,
                          env=env, check=False)
    refused(proc, "json.py: not listed in manifest.json")
    assert "pip" not in proc.stdout + proc.stderr and "imported" not in proc.stderr


# ------------------------------------------------------------------------------------------------ issue 25, item 12
@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("key,value,words", [("size", 5000, ("size 5000", "8 to 4096")),
                                             ("crop_ratio", 7, ("crop_ratio 7",)),
                                             ("mean", [0.5, "nan", 0.5], ("mean",))])
def test_preprocess_json_out_of_range_names_the_file_and_the_key(bundle, how, key, value, words):
    """A re-hashed preprocess.json (the manifest matches it): refused before any image is read, naming the file and
    the key (size 5000 was taken: every image resized to 5000 px a side)."""
    from edgeres_deploy.bundle import sha256

    pj = bundle / "preprocess.json"
    d = json.loads(pj.read_text())
    d[key] = [float(v) for v in value] if isinstance(value, list) else value
    pj.write_text(json.dumps(d))
    rewrite_manifest(bundle, lambda m: {**m, "files": {**m["files"], "preprocess.json": sha256(pj)}})
    proc = deploy(bundle, "predict", made_image(bundle.parent), "--backend", "onnxruntime", how=how)
    refused(proc, "preprocess.json", *words)


@pytest.mark.parametrize("kind", ["pickle", "npy", "no-logits", "wrong-shape"])
def test_a_reference_of_the_wrong_kind_names_the_file(tmp_path, kind):
    """validation/reference.npz that is not the host's logits: BundleError naming the file, never unpickled."""
    import pickle

    from edgeres_deploy.bundle import BundleError
    from edgeres_deploy.check import REFERENCE, run_check

    (tmp_path / "validation").mkdir()
    (tmp_path / "preprocess.json").write_text(json.dumps(Preprocess(size=32).to_dict()))
    np.savez(tmp_path / "validation" / "images.npz", images=np.zeros((4, 32, 32, 3), np.uint8), labels=np.zeros(4))
    ref = tmp_path / REFERENCE
    if kind == "pickle":
        ref.write_bytes(pickle.dumps({"logits": [1, 2]}))
    elif kind == "npy":
        with open(ref, "wb") as f:
            np.save(f, np.zeros((4, 3), np.float32))
    elif kind == "no-logits":
        with open(ref, "wb") as f:
            np.savez(f, other=np.zeros((4, 3), np.float32))
    else:
        with open(ref, "wb") as f:
            np.savez(f, logits=np.zeros((2, 3), np.int64))
    with pytest.raises(BundleError) as ei:
        run_check(tmp_path, backend=None)
    assert "reference.npz" in str(ei.value) and "edgeres deploy" in str(ei.value), str(ei.value)
