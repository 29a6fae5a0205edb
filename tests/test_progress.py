"""Logging and progress: -q silences, -v shows library logs, training says nothing when its caller silences it,
and one line per epoch / stage when stderr is not a terminal. The training tests run fit's epoch loop, bar and log
lines with the optimizer steps and the validation pass stubbed out (stub_training): no model is trained."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from edgeres import progress
from edgeres.cli import main
from edgeres.data import Preprocess
from edgeres.train.config import TrainConfig
from edgeres.train.transfer import train_model


@pytest.fixture(autouse=True)
def _restore_logging():
    yield
    progress.setup_logging(0)
    progress._state["configured"] = False
    logging.getLogger("edgeres").setLevel(logging.NOTSET)


@pytest.fixture
def stub_training(monkeypatch):
    """fit without training: each epoch advances the bar by its steps and returns a fixed loss, validation returns
    fixed logits (10 classes, 80% top-1); checkpoints, the CSV and the log lines are written as in a real run."""
    import torch

    from edgeres.train import loop

    calls = []

    def epoch(run, train_dl, epoch, pbar):
        calls.append(epoch)
        pbar.update(run.steps_per_epoch)
        return 0.5, 0.01

    def predict(model, dl, device):
        return torch.eye(10), torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 0, 0])

    monkeypatch.setattr(loop, "_train_epoch", epoch)
    monkeypatch.setattr(loop, "predict_logits", predict)
    return calls


def _train(demo_data, out, progress_on):
    return train_model(demo_data, out, arch="resnet18", pre=Preprocess(size=32), progress=progress_on,
                       cfg=TrainConfig(epochs=2, batch_size=16, max_steps_per_epoch=2))


def test_silenced_training_prints_nothing(tmp_path, demo_data, capsys, caplog, stub_training):
    progress.setup_logging(0)
    caplog.set_level(logging.DEBUG, logger="edgeres")
    _train(demo_data, tmp_path / "m.pt", False)
    out, err = capsys.readouterr()
    assert stub_training == [0, 1] and out == "" and err == ""
    assert all(r.levelno <= logging.DEBUG for r in caplog.records if r.name.startswith("edgeres"))
    assert any("epoch 2/2" in r.getMessage() for r in caplog.records)  # still there for -v


def test_training_logs_one_line_per_epoch_without_a_tty(tmp_path, demo_data, capsys, stub_training):
    progress.setup_logging(0)  # pytest's stderr is not a terminal: no bar, one line an epoch
    _train(demo_data, tmp_path / "m.pt", True)
    out, err = capsys.readouterr()
    epochs = [line for line in err.splitlines() if line.startswith("epoch ")]
    assert [e.split(":")[0] for e in epochs] == ["epoch 1/2", "epoch 2/2"]
    assert epochs[0].startswith("epoch 1/2: loss 0.500  val top-1 80.00%  top-5 100.00%  (best)  [")
    assert "(best)" not in epochs[1] and "ETA" in epochs[0] and "\r" not in err and out == ""


def test_quiet_and_verbose_levels():
    progress.setup_logging(-1)
    assert logging.getLogger("edgeres").getEffectiveLevel() == logging.WARNING and not progress.bars_enabled()
    assert progress.bar(range(3)).disable
    progress.setup_logging(1)
    assert logging.getLogger("edgeres").getEffectiveLevel() == logging.DEBUG
    assert logging.getLogger("torch_pruning").getEffectiveLevel() == logging.INFO
    progress.setup_logging(0)
    assert logging.getLogger("edgeres").getEffectiveLevel() == logging.INFO
    assert logging.getLogger("torch_pruning").getEffectiveLevel() == logging.WARNING


def test_nncf_stdout_only_with_verbose():
    pytest.importorskip("nncf")
    import nncf  # noqa: F401 - installs NNCF's own stdout handler

    handlers = [h for h in logging.getLogger("nncf").handlers if isinstance(h, logging.StreamHandler)]
    progress.setup_logging(0)
    assert handlers and all(h.level == logging.WARNING for h in handlers)
    assert logging.getLogger("nncf").isEnabledFor(logging.INFO)  # the quantize stage still reads its INFO lines
    progress.setup_logging(1)
    assert all(h.level == logging.INFO for h in handlers)


def test_cli_q_silences_and_rejects_q_with_v(tmp_path, demo_data, stub_training):
    runner = CliRunner()
    args = ["train", "--data", str(demo_data), "--out", str(tmp_path / "m.pt"), "--arch", "resnet18", "--image-size",
            "32", "--epochs", "1", "--batch-size", "64"]
    loud = runner.invoke(main, args)
    assert loud.exit_code == 0, loud.output
    assert "epoch 1/1: loss 0.500  val top-1 80.00%" in loud.stderr
    quiet = runner.invoke(main, ["-q", *args[:4], str(tmp_path / "q.pt"), *args[5:]])
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stderr == "" and "best val top-1" in quiet.stdout
    both = runner.invoke(main, ["-q", "-v", "targets"])
    assert both.exit_code == 2 and "exclude each other" in both.output


def _python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, **env))


def test_quantize_prints_no_cuda_home_notice_and_keeps_real_warnings(tmp_path, tiny_onnx):
    """On a CUDA build of torch without a GPU, NNCF's import of torch.utils.cpp_extension logged "No CUDA runtime is
    found, using CUDA_HOME=..." during quantization; that one line is gone, the logger's other warnings stay."""
    import torch

    if torch.cuda.is_available() or not torch.version.cuda:
        pytest.skip("the notice exists only on a CUDA build of torch on a host without a GPU")
    plain = _python("import torch.utils.cpp_extension", CUDA_HOME=str(tmp_path))
    assert progress.CUDA_HOME_NOTICE in plain.stderr  # the cause, reproduced: a toolkit found, no CUDA runtime
    code = f"""
import logging, numpy as np
from edgeres.quant.ptq import quantize_onnx
from edgeres.quant.settings import QuantizeConfig
from edgeres.targets import get_target
x = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
quantize_onnx({str(tiny_onnx)!r}, {str(tmp_path / "q.onnx")!r}, get_target("jetson"), x, QuantizeConfig(subset_size=4))
logging.getLogger("torch.utils.cpp_extension").warning("a real warning")
"""
    res = _python(code, CUDA_HOME=str(tmp_path))
    assert res.returncode == 0, res.stderr[-2000:]
    assert progress.CUDA_HOME_NOTICE not in res.stderr
    assert "a real warning" in res.stderr and (tmp_path / "q.onnx").is_file()
    # the budget search's own PTQ step (what `quantize` and `optimize` run by default) imports NNCF on its own path
    code = f"""
import numpy as np
from edgeres.quant.ptq import load_fp32, ptq
from edgeres.quant.settings import QuantizeConfig
from edgeres.targets import get_target
x = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
model, name = load_fp32({str(tiny_onnx)!r}, get_target("jetson"), x)
ptq(model, get_target("jetson"), x, QuantizeConfig(subset_size=4), name)
"""
    res = _python(code, CUDA_HOME=str(tmp_path))
    assert res.returncode == 0, res.stderr[-2000:]
    assert progress.CUDA_HOME_NOTICE not in res.stderr
