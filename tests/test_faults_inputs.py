"""Fault injection, inputs (issue 25, items 7, 9, 10 and 12): damaged weights are named, a diverging training run
saves nothing, every path is checked for what it is before it is read (nothing blocks), the first stderr line is
edgeres's own, and error lines name the fix. One line on stderr, exit 1 (2 for usage), no traceback."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

import pytest
from conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]


def one_line(res, *needles, code=1):
    assert res.returncode == code, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr, res.stderr
    for n in needles:
        assert n in res.stderr, (n, res.stderr)


# ------------------------------------------------------------------------------------------------ 7. NaN/Inf weights
def _damaged(src: Path, out: Path, where: str, value: float, state_dict: bool = False) -> Path:
    import torch

    from edgeres.models import load_model, save_checkpoint

    lm = load_model(src)
    with torch.no_grad():
        dict(lm.model.named_parameters(), **dict(lm.model.named_buffers()))[where].view(-1)[0] = value
    if state_dict:
        torch.save(lm.model.state_dict(), out)
    else:
        save_checkpoint(out, lm.model, lm.meta)
    return out


@pytest.mark.parametrize("where,value,state_dict,word", [
    ("layer1.0.conv1.weight", float("nan"), False, "NaN"),
    ("bn1.running_var", float("inf"), False, "Inf"),
    ("fc.bias", float("nan"), True, "NaN"),
])
def test_evaluate_names_the_tensor_that_holds_nan_or_inf(tmp_path, tiny_ckpt, demo_data, where, value, state_dict, word):
    bad = _damaged(tiny_ckpt, tmp_path / ("bad.pth" if state_dict else "bad.pt"), where, value, state_dict)
    res = run_cli("evaluate", "--model", bad, "--data", demo_data, "--image-size", "32", "--json", tmp_path / "r.json")
    one_line(res, where, word, bad.name)
    assert "top-1" not in res.stdout and not (tmp_path / "r.json").exists()


def test_evaluate_names_the_onnx_initializer_that_holds_nan(tmp_path, tiny_onnx, demo_data):
    import numpy as np
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(tiny_onnx))
    i, t = next((i, t) for i, t in enumerate(m.graph.initializer) if numpy_helper.to_array(t).dtype == np.float32
                and numpy_helper.to_array(t).size > 10)
    a = numpy_helper.to_array(t).copy()
    a.flat[0] = np.inf
    m.graph.initializer[i].CopyFrom(numpy_helper.from_array(a, t.name))
    onnx.save(m, str(tmp_path / "bad.onnx"))
    res = run_cli("evaluate", "--model", tmp_path / "bad.onnx", "--data", demo_data)
    one_line(res, "bad.onnx", t.name, "NaN or Inf")
    assert "top-1" not in res.stdout


def test_optimize_blames_the_weights_not_the_export(tmp_path, tiny_ckpt, demo_data):
    bad = _damaged(tiny_ckpt, tmp_path / "bad.pt", "layer1.0.conv1.weight", float("nan"))
    res = run_cli("optimize", "--model", bad, "--data", demo_data, "--target", "x86-cpu", "--out", tmp_path / "run",
                  "--no-memory")
    one_line(res, "layer1.0.conv1.weight", "NaN")
    assert "parity" not in res.stderr


def test_training_that_diverges_stops_and_saves_nothing(tmp_path, demo_data):
    """Finite but huge head weights (3e38, mixed signs): the logits overflow, the loss is NaN from the first step."""
    import torch

    from edgeres.models import build_model

    sd = build_model("resnet18", 10).state_dict()
    sd["fc.weight"] = torch.full_like(sd["fc.weight"], 3e38) * torch.sign(torch.randn_like(sd["fc.weight"]))
    torch.save(sd, tmp_path / "huge.pth")
    out = tmp_path / "m.pt"
    res = run_cli("train", "--data", demo_data, "--out", out, "--arch", "resnet18", "--weights", tmp_path / "huge.pth",
                  "--epochs", "1", "--image-size", "32", "--batch-size", "32")
    one_line(res, "diverged", "nan", "--lr")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["huge.pth"]  # no best, no last, no log


# ------------------------------------------------------------------------------------------------ 9. what a path is
@contextlib.contextmanager
def never_blocks(fifo: Path, after_s: float = 20.0):
    """Bound a test over a named pipe: should anything open ``fifo`` to read and wait, a writer comes after
    ``after_s`` seconds (the reader then sees an empty file) and the test fails instead of hanging."""
    done, rescued = threading.Event(), []

    def rescue():
        if done.wait(after_s):
            return
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO when nobody is reading: nothing blocked
        except OSError:
            return
        rescued.append(True)
        os.close(fd)

    t = threading.Thread(target=rescue, daemon=True)
    t.start()
    try:
        yield
    finally:
        done.set()
        t.join()
        assert not rescued, f"{fifo} was opened for reading and blocked"


@pytest.fixture
def places(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "folder").mkdir()
    (tmp_path / "file.pt").write_bytes(b"PK not read")
    return tmp_path


@pytest.mark.parametrize("args,needles", [
    (("evaluate", "--model", "pipe", "--data", "folder"), ("model file pipe", "named pipe")),
    (("evaluate", "--model", "folder", "--data", "folder"), ("model file folder", "is a folder, not a file")),
    (("train", "--data", "file.pt", "--out", "m.pt"), ("data folder file.pt", "is a file, not a folder")),
    (("bench", "--model", "/dev/null"), ("/dev/null", "character device")),
    (("optimize", "--model", "file.pt", "--config", "pipe"), ("config file pipe", "named pipe")),
    (("optimize", "--model", "pipe", "--target", "x86-cpu", "--out", "run"), ("model file pipe", "named pipe")),
    (("check-onnx", "pipe", "--target", "jetson"), ("ONNX file pipe", "named pipe")),
    (("build-engine", "--onnx", "folder", "--out", "m.engine", "--target", "jetson"), ("ONNX file folder", "folder")),
    (("quantize", "--onnx", "pipe", "--calib", "folder", "--target", "x86-cpu", "--out", "q.onnx"), ("named pipe",)),
    (("train", "--data", "folder", "--out", "m.pt", "--weights", "pipe"), ("model file pipe", "named pipe")),
    (("report", "--run", "folder", "--merge", "pipe"), ("device CSV pipe", "named pipe")),
    (("deploy", "--run", "pipe", "--out", "b.tar.gz"), ("run folder pipe", "named pipe")),
])
def test_every_path_is_checked_for_what_it_is(places, args, needles):
    with never_blocks(places / "pipe"):
        res = run_cli(*args, cwd=places)
    one_line(res, *needles)
    assert "does not exist" not in res.stderr


def test_a_named_pipe_among_the_images_is_named_not_read(tmp_path, demo_data, tiny_ckpt):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(demo_data, data)
    os.mkfifo(data / "val" / "circle" / "pipe.png")
    with never_blocks(data / "val" / "circle" / "pipe.png"):
        res = run_cli("evaluate", "--model", tiny_ckpt, "--data", data)
    one_line(res, "pipe.png", "named pipe")


def test_the_device_runtime_never_waits_on_a_named_pipe(tmp_path, monkeypatch):
    """An image, an image folder and a bundle's manifest that are named pipes: refused, not read."""
    monkeypatch.syspath_prepend(str(ROOT / "deploy"))
    from edgeres_deploy import bundle as B
    from edgeres_deploy.preprocess import ImageError, list_images, open_image

    (tmp_path / "cls").mkdir()
    os.mkfifo(tmp_path / "cls" / "a.jpg")
    with never_blocks(tmp_path / "cls" / "a.jpg"):
        with pytest.raises(ImageError, match="named pipe"):
            open_image(tmp_path / "cls" / "a.jpg")
        with pytest.raises(ImageError, match="a.jpg"):
            list_images(tmp_path / "cls")
    os.mkfifo(tmp_path / "manifest.json")
    with never_blocks(tmp_path / "manifest.json"):
        with pytest.raises(B.BundleError, match="not a regular file"):
            B.load_manifest(tmp_path)
        with pytest.raises(OSError):
            B._sha256_nofollow(tmp_path / "manifest.json")


# ------------------------------------------------------------------------------------------------ 10. first line, pickles
class _Evil:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("how", ["protocol0", "protocol1", "protocol4", "protocol5", "torch.save"])
def test_a_malicious_pickle_is_refused_for_safety_whatever_its_protocol(tmp_path, demo_data, how):
    import pickle

    import torch

    marker, bad = tmp_path / "ran", tmp_path / "evil.pt"
    if how == "torch.save":
        torch.save({"state_dict": _Evil(marker)}, bad)
    else:
        bad.write_bytes(pickle.dumps(_Evil(marker), protocol=int(how[-1])))
    res = run_cli("evaluate", "--model", bad, "--data", demo_data)
    one_line(res, "refused for safety", "--trust-model", "system")
    assert "corrupt" not in res.stderr and "not a model file" not in res.stderr
    assert not marker.exists()


def test_the_first_stderr_line_is_the_error_not_a_library_warning(tmp_path, demo_data):
    """torch warns about the protocol of a protocol-4 pickle before it refuses it: the warning may follow the error
    line, never precede it (a fresh process: a warning already shown in this one would not show again)."""
    import pickle

    from conftest import run_cli_subprocess

    bad = tmp_path / "evil.pt"
    bad.write_bytes(pickle.dumps(_Evil(tmp_path / "ran"), protocol=4))
    res = run_cli_subprocess("evaluate", "--model", bad, "--data", demo_data, timeout=120)
    one_line(res, "refused for safety")
    assert res.stderr.splitlines()[0].startswith("error: "), res.stderr
    assert not (tmp_path / "ran").exists()


# ------------------------------------------------------------------------------------------------ 12. lines name the fix
@pytest.fixture
def train_only(tmp_path, demo_data):
    import shutil

    shutil.copytree(demo_data / "train", tmp_path / "data" / "train")
    return tmp_path / "data"


@pytest.mark.parametrize("command", ["evaluate", "optimize", "train"])
def test_a_data_folder_without_val_says_how_to_split(tmp_path, train_only, tiny_ckpt, command):
    args = {"evaluate": ("evaluate", "--model", tiny_ckpt, "--data", train_only),
            "optimize": ("optimize", "--model", tiny_ckpt, "--data", train_only, "--target", "x86-cpu", "--out",
                         tmp_path / "run"),
            "train": ("train", "--data", train_only, "--out", tmp_path / "m.pt", "--epochs", "1")}[command]
    one_line(run_cli(*args), f"{train_only}/val/CLASS", "splits", "--val-fraction")


@pytest.fixture
def corrupt_data(tmp_path, demo_data):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(demo_data, data)
    (data / "val" / "circle" / "00000.png").write_bytes(b"broken")
    (data / "train" / "ring" / "00001.png").write_bytes(b"broken")
    return data


@pytest.mark.parametrize("command", ["optimize", "prune", "export", "quantize", "bench"])
def test_every_command_that_advertises_skip_corrupt_has_it(command):
    from edgeres.cli import main

    assert "--skip-corrupt" in {o for p in main.commands[command].params for o in p.opts}


def test_optimize_stops_at_a_corrupt_image_naming_the_flag(tmp_path, corrupt_data, tiny_ckpt):
    res = run_cli("optimize", "--model", tiny_ckpt, "--data", corrupt_data, "--target", "x86-cpu", "--out",
                  tmp_path / "run", "--no-memory", "--prune", "0")
    one_line(res, "00000.png", "--skip-corrupt")


def test_export_skip_corrupt_skips(tmp_path, corrupt_data, tiny_ckpt):
    res = run_cli("export", "--model", tiny_ckpt, "--out", tmp_path / "m.onnx", "--data", corrupt_data, "--skip-corrupt")
    assert res.returncode == 0, res.stderr  # (the skip warning goes to pytest's recorder in-process)
    assert (tmp_path / "m.onnx").is_file()


@pytest.mark.slow
def test_optimize_skip_corrupt_runs_to_the_end(tmp_path, corrupt_data, tiny_ckpt):
    res = run_cli("optimize", "--model", tiny_ckpt, "--data", corrupt_data, "--target", "x86-cpu", "--out",
                  tmp_path / "run", "--no-memory", "--prune", "0", "--latency-min-time", "0.1", "--calib-size", "16",
                  "--skip-corrupt")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "run" / "summary.md").is_file()
