"""Fault injection: hostile but realistic input and I/O faults against the CLI and the pipeline (issue 15).

Every case expects one clear line on stderr naming the file, exit 1 (2 for a bad flag), no traceback and nothing
half-written. Commands run in-process through click's CliRunner (no torch import per case). File-system faults use
real mounts where the machine allows them (a read-only tmpfs, a full tiny tmpfs; root in a container usually can) and
are skipped with the reason where it does not.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgeres.cli import main

# ------------------------------------------------------------------------------------------------ helpers


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=True)


def fails_cleanly(res, *needles, code=1):
    """Exit ``code``, no traceback (no exception other than the CLI's own exit), every needle on stderr."""
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        import traceback

        raise AssertionError("traceback:\n" + "".join(traceback.format_exception(res.exception)))
    assert res.exit_code == code, (res.exit_code, res.output)
    for n in needles:
        assert n in res.stderr, (n, res.stderr)
    assert "Traceback" not in res.output


def leftovers(folder: Path) -> list:
    return sorted(p.name for p in Path(folder).rglob("*")) if Path(folder).exists() else []


@contextlib.contextmanager
def tmpfs(path: Path, opts: str):
    """A tmpfs mounted at ``path`` with mount options ``opts``; skips the test where mounting is not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (fault injection with a real file system)")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


@pytest.fixture
def readonly_dir(tmp_path):
    """A directory nobody can write into (a read-only mount under root, chmod 555 otherwise)."""
    d = tmp_path / "ro"
    if os.geteuid() != 0:
        d.mkdir()
        d.chmod(0o555)
        yield d
        d.chmod(0o755)
        return
    with tmpfs(d, "ro,size=1m"):
        yield d


@pytest.fixture
def full_dir(tmp_path):
    """A tiny file system filled to the last byte: every write fails with ENOSPC."""
    d = tmp_path / "full"
    with tmpfs(d, "size=256k"):
        with open(d / ".filler", "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
                    f.flush()
            except OSError as e:
                assert e.errno == errno.ENOSPC
        yield d


def png_header_only(path: Path, w: int, h: int) -> Path:
    """A valid PNG signature + IHDR declaring w x h pixels (a decompression bomb's header) and an empty IDAT."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    return path


def tiny_onnx(path: Path, shape, classes: int = 10, meta: dict | None = None) -> Path:
    """A small image classifier built with onnx.helper: Conv -> GlobalAveragePool -> Flatten -> Gemm."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal((classes, 8)).astype(np.float32), "fc")]
    if len(shape) == 4:
        nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                 helper.make_node("GlobalAveragePool", ["c"], ["g"]), helper.make_node("Flatten", ["g"], ["f"]),
                 helper.make_node("Gemm", ["f", "fc"], ["y"], transB=1)]
        out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [shape[0], classes])
    else:  # not an image input at all
        inits = []
        nodes = [helper.make_node("Identity", ["x"], ["y"])]
        out = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))], [out],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for k, v in (meta or {}).items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def onnx32(tmp_path_factory):
    return tiny_onnx(tmp_path_factory.mktemp("onnx") / "fixed32.onnx", [1, 3, 32, 32])


@pytest.fixture
def fake_run(tmp_path, onnx32, demo_data):
    """A finished run directory as `edgeres deploy --run` reads it (x86 target, the export stage only)."""
    import yaml

    r = tmp_path / "run"
    (r / "export").mkdir(parents=True)
    shutil.copy(onnx32, r / "export" / "model.onnx")
    (r / "config.yaml").write_text(yaml.safe_dump({"target": "x86-cpu"}))
    (r / "manifest.json").write_text(json.dumps({"preprocess": {"size": 32}, "data": {"classes": [f"c{i}" for i in range(10)]}}))
    (r / "export" / "stage.json").write_text(json.dumps({"stage": "export", "status": "ok", "artifacts": {"onnx": "export/model.onnx"}}))
    return r


# ------------------------------------------------------------------------------------------------ 3. write faults
def test_json_into_readonly_dir(readonly_dir, tiny_ckpt, demo_data):
    res = run("evaluate", "--model", tiny_ckpt, "--data", demo_data, "--json", readonly_dir / "r.json")
    fails_cleanly(res, str(readonly_dir / "r.json"))
    assert leftovers(readonly_dir) == []


def test_out_below_an_existing_file(tmp_path, tiny_ckpt, demo_data):
    (tmp_path / "file").write_text("x")
    res = run("evaluate", "--model", tiny_ckpt, "--data", demo_data, "--json", tmp_path / "file" / "sub" / "r.json")
    fails_cleanly(res, "file", "Not a directory")


def test_optimize_into_readonly_dir(readonly_dir, tiny_ckpt, demo_data):
    res = run("optimize", "--model", tiny_ckpt, "--data", demo_data, "--out", readonly_dir / "run", "--target", "x86-cpu",
              "--prune", "0", "--no-memory")
    fails_cleanly(res, str(readonly_dir / "run"))
    assert leftovers(readonly_dir) == []


def test_quantize_onto_a_full_disk(full_dir, onnx32, demo_data):
    res = run("quantize", "--onnx", onnx32, "--calib", demo_data / "val", "--target", "x86-cpu", "--out",
              full_dir / "q.onnx", "--calib-size", "4", "--image-size", "32")
    fails_cleanly(res, "No space left", str(full_dir))
    assert leftovers(full_dir) == [".filler"]  # nothing half-written, no temp file


def test_prune_checkpoint_onto_a_full_disk(full_dir, tiny_ckpt, demo_data):
    res = run("prune", "--model", tiny_ckpt, "--data", demo_data, "--out", full_dir / "p.pt", "--ratio", "0.3",
              "--finetune-epochs", "0")
    fails_cleanly(res, "No space left", "p.pt")
    assert leftovers(full_dir) == [".filler"]


def test_deploy_into_readonly_dir(readonly_dir, fake_run):
    res = run("deploy", "--run", fake_run, "--out", readonly_dir / "b.tar.gz")
    fails_cleanly(res, "b.tar.gz")
    assert leftovers(readonly_dir) == []


def test_atomic_write_names_the_path_and_leaves_nothing(full_dir):
    from edgeres.utils import atomic_path, write_json_atomic

    with pytest.raises(OSError) as ei:
        write_json_atomic(full_dir / "big.json", {"x": "y" * 100_000})
    assert ei.value.errno == errno.ENOSPC and ei.value.filename == str(full_dir / "big.json")
    import torch

    with pytest.raises(OSError) as ei, atomic_path(full_dir / "m.pt") as tmp:  # torch's writer: RuntimeError
        torch.save({"w": torch.zeros(100_000)}, tmp)
    assert ei.value.errno == errno.ENOSPC and ei.value.filename == str(full_dir / "m.pt")
    assert leftovers(full_dir) == [".filler"]


# ------------------------------------------------------------------------------------------------ 4. bomb images
@pytest.fixture
def bomb_data(tmp_path, demo_data):
    d = tmp_path / "data"
    shutil.copytree(demo_data, d)
    png_header_only(d / "val" / "circle" / "00001.png", 20000, 20000)
    return d


def test_bomb_image_evaluate(bomb_data, tiny_ckpt):
    fails_cleanly(run("evaluate", "--model", tiny_ckpt, "--data", bomb_data), "00001.png", "decompression bomb")
    ok = run("evaluate", "--model", tiny_ckpt, "--data", bomb_data, "--skip-corrupt")
    assert ok.exit_code == 0, ok.output
    assert "on 60 val images" in ok.stdout  # the bad image is replaced by the next readable one


def test_bomb_image_in_calibration(bomb_data, onnx32, tmp_path):
    res = run("quantize", "--onnx", onnx32, "--calib", bomb_data / "val", "--target", "x86-cpu", "--out",
              tmp_path / "q.onnx", "--calib-size", "60")
    fails_cleanly(res, "00001.png")
    assert not (tmp_path / "q.onnx").exists()


def test_bomb_image_device_preprocess(tmp_path):
    from edgeres_deploy.preprocess import Preprocess

    with pytest.raises(ValueError, match="decompression bomb"):  # edgeres_deploy.preprocess.ImageError
        Preprocess(size=32).load(png_header_only(tmp_path / "b.png", 20000, 20000))


# ------------------------------------------------------------------------------------------------ 5, 11. config values
BAD_YAML = [("target: 7", "target"), ('prune: "abc"', "prune"), ("prune: 2", "prune"), ("calib_size: 0", "calib_size"),
            ("latency_batch_sizes: 7", "latency_batch_sizes"), ("finetune_epochs: -1", "finetune_epochs"),
            ("prune: .nan", "prune"), ("target: nowhere", "target"), ("mean: [1, 2]", "mean"),
            ("measure_memory: maybe", "measure_memory")]


@pytest.mark.parametrize("line,key", BAD_YAML, ids=[b[0] for b in BAD_YAML])
def test_bad_yaml_value_refused_before_any_stage(tmp_path, tiny_ckpt, demo_data, line, key):
    cfg = tmp_path / "edgeres.yaml"
    cfg.write_text(line + "\n")
    res = run("optimize", "--model", tiny_ckpt, "--data", demo_data, "--config", cfg, "--out", tmp_path / "run")
    fails_cleanly(res, str(cfg), key)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flag,value", [("--prune", "nan"), ("--prune", "inf"), ("--prune", "2"), ("--calib-size", "0"),
                                        ("--finetune-epochs", "-1")])
def test_bad_flag_value_is_a_usage_error(tmp_path, tiny_ckpt, demo_data, flag, value):
    res = run("optimize", "--model", tiny_ckpt, "--data", demo_data, flag, value, "--out", tmp_path / "run")
    fails_cleanly(res, flag, code=2)
    assert not (tmp_path / "run").exists()


def test_python_config_checked_too():
    from edgeres.errors import EdgeresError
    from edgeres.pipeline import OptimizeConfig

    with pytest.raises(EdgeresError, match="prune"):
        OptimizeConfig(model="m.pt", prune=2)
    assert OptimizeConfig(model="m.pt", prune=0, latency_batch_sizes=[1, 8]).prune == 0.0


# ------------------------------------------------------------------------------------------------ 6. ONNX shapes / metadata
def test_onnx_one_dimensional_input(tmp_path, demo_data):
    m = tiny_onnx(tmp_path / "flat.onnx", [10])
    fails_cleanly(run("evaluate", "--model", m, "--data", demo_data), "flat.onnx", "[N, 3, H, W]")
    fails_cleanly(run("bench", "--model", m, "--no-memory", "--min-time", "0.1"), "flat.onnx", "[N, 3, H, W]")


def test_onnx_fixed_size_without_metadata(onnx32, demo_data):
    res = run("evaluate", "--model", onnx32, "--data", demo_data)  # the model's 32 px, not the default 224
    assert res.exit_code == 0, res.output
    fails_cleanly(run("evaluate", "--model", onnx32, "--data", demo_data, "--image-size", "64"), "--image-size 32")


def test_onnx_huge_fixed_batch(tmp_path, demo_data):
    m = tiny_onnx(tmp_path / "huge.onnx", [10**9, 3, 32, 32])
    fails_cleanly(run("evaluate", "--model", m, "--data", demo_data), "huge.onnx", "fixed batch of 1000000000")
    fails_cleanly(run("quantize", "--onnx", m, "--calib", demo_data / "val", "--target", "x86-cpu", "--out",
                      tmp_path / "q.onnx", "--calib-size", "4"), "huge.onnx", "fixed batch of 1000000000")
    fails_cleanly(run("bench", "--model", m, "--no-memory", "--min-time", "0.1"), "huge.onnx", "fixed batch")


def test_onnx_classes_metadata_not_json(tmp_path, demo_data):
    m = tiny_onnx(tmp_path / "meta.onnx", [1, 3, 32, 32], meta={"edgeres.classes": "circle,square"})
    fails_cleanly(run("evaluate", "--model", m, "--data", demo_data), "meta.onnx", "edgeres.classes")


def test_engine_sidecar_malformed(tmp_path):
    (tmp_path / "m.engine").write_bytes(b"\0" * 64)
    (tmp_path / "m.engine.json").write_text('{"classes": ["a"')
    fails_cleanly(run("bench", "--model", tmp_path / "m.engine", "--no-memory"), "m.engine.json")
    (tmp_path / "m.engine.json").write_text('{"classes": 3}')
    fails_cleanly(run("bench", "--model", tmp_path / "m.engine", "--no-memory"), "m.engine.json", "classes")


def test_check_onnx_refuses_a_giant_input(tmp_path):
    m = tiny_onnx(tmp_path / "giant.onnx", [1, 3, 200000, 200000])
    res = run("check-onnx", m, "--target", "jetson")
    fails_cleanly(res, "giant.onnx")
    assert "200000x200000" in res.output and "ok for" not in res.stdout


# ------------------------------------------------------------------------------------------------ 7. symlinks in data
@pytest.fixture
def linked_data(tmp_path, demo_data):
    d = tmp_path / "data"  # two classes, a few images: training on it takes a moment
    for split, n in (("train", 4), ("val", 2)):
        for c in ("circle", "square"):
            (d / split / c).mkdir(parents=True)
            for src in sorted((demo_data / split / c).iterdir())[:n]:
                shutil.copy(src, d / split / c / src.name)
    (d / "train" / "circle" / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    loop = d / "train" / "square" / "loop.png"
    loop.symlink_to(loop)
    return d


def test_symlinks_in_data_fingerprint(linked_data):
    from edgeres.data import data_hash, resolve_data

    splits = resolve_data(linked_data)
    assert len(data_hash(splits)) == 64


def test_symlinks_in_data_train(linked_data, tmp_path):
    args = ("train", "--data", linked_data, "--out", tmp_path / "m.pt", "--arch", "resnet18", "--epochs", "1",
            "--image-size", "32", "--batch-size", "8")
    fails_cleanly(run(*args), "--skip-corrupt")
    assert not (tmp_path / "m.pt").exists()
    ok = run(*args, "--skip-corrupt")
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "m.pt").is_file()


# ------------------------------------------------------------------------------------------------ 8. partial weights
def test_weights_of_another_architecture(tmp_path, demo_data):
    import torch

    from edgeres.models import build_model
    from edgeres.train.transfer import load_pretrained

    torch.save(build_model("resnet18", 10).state_dict(), tmp_path / "r18.pth")
    res = run("train", "--data", demo_data, "--out", tmp_path / "m.pt", "--arch", "resnet50", "--weights",
              tmp_path / "r18.pth", "--epochs", "1")
    fails_cleanly(res, "r18.pth", "--partial-weights", "backbone tensors")
    assert not (tmp_path / "m.pt").exists()
    copied, skipped = load_pretrained(build_model("resnet50", 10), tmp_path / "r18.pth", partial=True)
    assert 0 < copied < skipped
    copied, skipped = load_pretrained(build_model("resnet18", 4), tmp_path / "r18.pth")  # same arch, new head: fine
    assert skipped == 2


# ------------------------------------------------------------------------------------------------ 10. SIGKILL mid-write
KILLED_WRITER = """
import sys, time
from edgeres.utils import atomic_path
with atomic_path(sys.argv[1]) as tmp, open(tmp, "wb") as f:
    f.write(b"x" * 1_000_000); f.flush()
    print("writing", flush=True)
    time.sleep(60)
"""


def test_sigkill_during_atomic_write_is_cleaned_next_time(tmp_path):
    from edgeres.utils import write_text_atomic

    final = tmp_path / "run" / "baseline" / "stage.json"
    seen = []
    for _ in range(2):  # two killed writers of the same file: the second removes the first one's temp file
        p = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(final)], stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "writing"
        p.send_signal(signal.SIGKILL)
        p.wait()
        stale = [x.name for x in final.parent.iterdir()]
        assert len(stale) == 1 and stale[0].startswith(".stage.json.") and stale[0] not in seen
        seen += stale
    assert not final.exists()  # never half-written under the final name
    write_text_atomic(final, "{}")  # the next write of the same file removes its dead predecessors' temp files
    assert sorted(x.name for x in final.parent.iterdir()) == ["stage.json"]
    # and a whole run folder is swept at the next start (temp files of other files, deeper down)
    from edgeres.utils import clean_stale_tmp

    p = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path / "run" / "export" / "model.onnx")],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "writing"
    live = clean_stale_tmp(tmp_path / "run", recursive=True)
    assert live == []  # a writer still running keeps its file
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert len(clean_stale_tmp(tmp_path / "run", recursive=True)) == 1
    assert leftovers(tmp_path / "run" / "export") == []


def test_failed_write_leaves_no_temp_file(tmp_path):
    from edgeres.utils import atomic_path

    with pytest.raises(RuntimeError, match="mid-write"), atomic_path(tmp_path / "x.bin") as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("mid-write")
    assert leftovers(tmp_path) == []


# ------------------------------------------------------------------------------------------------ 12. corrupt run state
def test_truncated_stage_json_is_redone(tmp_path, tiny_ckpt):
    from edgeres.pipeline import OptimizeConfig, Pipeline

    p = Pipeline(OptimizeConfig(model=str(tiny_ckpt), out=str(tmp_path / "run")), log=lambda *_: None)
    for text in ('{"stage": "baseline", "inputs_h', "[1, 2]", "\xff\xfe"):
        (tmp_path / "run" / "baseline").mkdir(parents=True, exist_ok=True)
        (tmp_path / "run" / "baseline" / "stage.json").write_text(text)
        assert p._cached("baseline", "h") is None


def test_deploy_with_truncated_stage_json(fake_run, tmp_path):
    (fake_run / "export" / "stage.json").write_text('{"stage": "export", "status": "o')
    fails_cleanly(run("deploy", "--run", fake_run, "--out", tmp_path / "b.tar.gz"), "stage.json", "corrupt")
    assert not (tmp_path / "b.tar.gz").exists()
    (fake_run / "manifest.json").write_text("{")
    fails_cleanly(run("deploy", "--run", fake_run, "--out", tmp_path / "b.tar.gz"), "corrupt")


def test_deploy_of_a_sound_fake_run(fake_run, tmp_path):  # the fixture itself is a valid run: the cases above can fail
    res = run("deploy", "--run", fake_run, "--out", tmp_path / "b.tar.gz")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "b.tar.gz").is_file()


# ------------------------------------------------------------------------------------------------ 13. 16-bit PNG
def test_16bit_png_is_scaled_not_saturated(tmp_path):
    from edgeres_deploy.preprocess import Preprocess
    from PIL import Image

    from edgeres.data.folder import load_rgb

    ramp = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)  # 0 .. 65520
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    rgb = np.asarray(load_rgb(tmp_path / "g16.png"))
    assert rgb.shape == (64, 64, 3)
    assert (rgb == 255).mean() < 0.01
    assert abs(int(rgb[32, 0, 0]) - round(ramp[32, 0] / 257)) <= 1
    x = Preprocess(size=64, crop_ratio=1.0, mean=(0, 0, 0), std=(1, 1, 1)).load(tmp_path / "g16.png")
    assert abs(float(x.mean()) - ramp.mean() / 65535) < 0.01  # the device path too


# ------------------------------------------------------------------------------------------------ also
def test_failed_optimize_leaves_no_run_dir(tmp_path, tiny_ckpt):
    res = run("optimize", "--model", tiny_ckpt, "--data", tmp_path / "nope", "--out", tmp_path / "run")
    fails_cleanly(res, "nope")
    assert not (tmp_path / "run").exists()


def test_os_errors_reading_are_one_line_too(tmp_path, demo_data):
    d = tmp_path / "cfg.yaml"
    d.mkdir()  # a folder where a file is expected
    res = run("optimize", "--model", "x.pt", "--config", d)
    fails_cleanly(res, "cfg.yaml")


def test_atomic_writer_is_standard_library_only():
    """The one atomic writer is shared with the device runtime: no torch, numpy or edgeres behind it."""
    code = ("import sys; before = set(sys.modules); import edgeres_deploy.fsio; "
            "new = {m.split('.')[0] for m in set(sys.modules) - before}; "
            "print(sorted(new - set(sys.stdlib_module_names) - {'edgeres_deploy'}))")
    deploy = Path(__file__).resolve().parents[1] / "deploy"
    proc = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(deploy)!r}); {code}"],
                          capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
