"""Shared fixtures: small demo data and tiny models, made once per session (no downloads)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> Path:
    """The embedded demo set, small: 10 classes x (12 train, 6 val), 72 px."""
    from edgeres.data.demo import make_demo

    return make_demo(tmp_path_factory.mktemp("demo") / "data", train_per_class=12, val_per_class=6, progress=False)


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory, demo_data) -> Path:
    """An edgeres checkpoint of a ResNet18 for the demo classes, 32 px, trained for a few steps."""
    from edgeres.data import Preprocess
    from edgeres.train.config import TrainConfig
    from edgeres.train.transfer import train_model

    out = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    train_model(demo_data, out, arch="resnet18", pre=Preprocess(size=32),
                cfg=TrainConfig(epochs=1, batch_size=16, max_steps_per_epoch=3), progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory, tiny_ckpt) -> Path:
    """``tiny_ckpt`` exported once to FP32 ONNX (32 px, dynamic batch): read-only, shared by every test that needs it."""
    from edgeres.data import Preprocess
    from edgeres.models import load_model
    from edgeres.onnx_export import export_onnx

    lm = load_model(tiny_ckpt)
    path = tmp_path_factory.mktemp("tiny_onnx") / "m.onnx"
    export_onnx(lm.model, path, Preprocess(size=32), lm.meta)
    return path


@pytest.fixture(scope="session")
def r50_ckpt(tmp_path_factory, demo_data) -> Path:
    """An (untrained) ResNet50 edgeres checkpoint for the demo classes at 32 px."""
    import torch

    from edgeres.data import Preprocess, data_hash, resolve_data
    from edgeres.models import ModelMeta, build_model, save_checkpoint

    torch.manual_seed(0)
    splits = resolve_data(demo_data)
    out = tmp_path_factory.mktemp("r50") / "r50.pt"
    meta = ModelMeta(arch="resnet50", classes=splits.classes, preprocess=Preprocess(size=32).to_dict(),
                     data_hash=data_hash(splits), data_root=str(demo_data))
    model = build_model("resnet50", len(splits.classes))
    save_checkpoint(out, model, meta)
    return out


def run_cli(*args, cwd=None, env=None, timeout=600):
    """Run `edgeres ARGS` in this process with click's CliRunner (no new interpreter importing torch each time).

    Returns a CompletedProcess (text). An exception that escapes the command is rendered as the traceback a user would
    see on stderr, so tests that assert "no traceback" can still fail.
    """
    import traceback

    from click.testing import CliRunner

    from edgeres.cli import main

    old = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        res = CliRunner().invoke(main, [str(a) for a in args], env=env, catch_exceptions=True)
    finally:
        os.chdir(old)
    stderr = res.stderr
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        stderr += "Traceback (most recent call last):\n" + "".join(traceback.format_exception(res.exception))
    return subprocess.CompletedProcess(["edgeres", *map(str, args)], res.exit_code, res.stdout, stderr)


def run_cli_subprocess(*args, cwd=None, env=None, timeout=600):
    """Run `python -m edgeres ARGS` in a child process: for what needs a real process (signals, import isolation)."""
    e = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "edgeres", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=e, timeout=timeout)


@pytest.fixture
def cli():
    return run_cli


# ------------------------------------------------------------------------------------------------ the loopback Jetson
@pytest.fixture(scope="session")
def device_image(tmp_path_factory):
    """Keys and the remote Python of the loopback Jetson (tests/loopback_device.py); skips where it cannot run."""
    from loopback_device import DeviceImage, unavailable

    why = unavailable()
    if why:
        pytest.skip(why)
    return DeviceImage(tmp_path_factory.mktemp("device-image"))


@pytest.fixture(scope="session")
def jetson(device_image, tmp_path_factory):
    """A loopback Orin Nano (JetPack 6.2) for the whole session: sshd on 127.0.0.1, stopped at the end."""
    from loopback_device import LoopbackDevice

    dev = LoopbackDevice(device_image, tmp_path_factory.mktemp("jetson")).start()
    yield dev
    dev.stop()


@pytest.fixture
def make_device(device_image, tmp_path):
    """``make_device(board="orin-nano", python=True, cache_limit_kb=None)``: a fresh loopback device for one test."""
    from loopback_device import LoopbackDevice

    made = []

    def make(board="orin-nano", **kw):
        dev = LoopbackDevice(device_image, tmp_path / f"device{len(made)}", board=board, **kw).start()
        made.append(dev)
        return dev

    yield make
    for dev in made:
        dev.stop()


DEVICE_FAST = ("--target", "jetson-orin-nano", "--prune", "0.3", "--finetune-epochs", "0", "--int8-fallback", "none",
               "--max-accuracy-drop", "100",  # the tiny model is near chance: its INT8 row must not fall out of budget
               "--calib-size", "16", "--latency-min-time", "0.1", "--no-memory")
PIPELINE_ARGS = DEVICE_FAST  # the settings of the shared run (pipeline_run): re-running with them reuses every stage


def ran_stages(stderr: str) -> list:
    """The stages a CLI `optimize` ran (not reused), in order, from its "[i/n] NAME ..." lines."""
    import re

    return re.findall(r"^\[\d+/\d+\] (\w+) \.\.\.$", stderr, re.M)


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory, tiny_ckpt, demo_data):
    """ONE finished `optimize` run (every host stage, pruning 0.3 without fine-tuning, fast settings PIPELINE_ARGS),
    shared by every test file that needs a run folder: read it, or copy it (shutil.copytree) before changing it."""
    out = tmp_path_factory.mktemp("pipeline-run") / "run"
    proc = run_cli("optimize", "--model", tiny_ckpt, "--data", demo_data, "--out", out, *PIPELINE_ARGS)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture
def run_copy(pipeline_run, tmp_path):
    """A copy of the shared run (``tmp_path/run``) for a test that changes it."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(pipeline_run, out)
    return out


@pytest.fixture(scope="session")
def device_host_run(pipeline_run):
    """The shared run (`optimize --target jetson-orin-nano` without --device): the --device tests copy it, and only
    the device stage runs."""
    return pipeline_run
