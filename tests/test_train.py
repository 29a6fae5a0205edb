import csv
import os
import shutil
import subprocess
import sys

import pytest

from edgeres.data import Preprocess
from edgeres.models import load_model
from edgeres.train.config import TrainConfig
from edgeres.train.transfer import train_model


@pytest.mark.slow
def test_short_training_beats_chance(tmp_path):
    """ResNet18, 48 px, on a small demo set: validation top-1 must rise well above chance (10%)."""
    from edgeres.data.demo import make_demo

    data = make_demo(tmp_path / "data", train_per_class=60, val_per_class=15, progress=False)
    out = tmp_path / "m.pt"
    res = train_model(data, out, arch="resnet18", pre=Preprocess(size=48),
                      cfg=TrainConfig(epochs=8, batch_size=32, lr=2e-3, min_scale=0.7), progress=False)
    assert res["best_top1"] > 20.0, res["history"]
    with open(out.with_name("m.log.csv")) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8 and {"epoch", "train_loss", "val_top1"} <= set(rows[0])
    meta = load_model(out).meta
    assert meta.arch == "resnet18" and len(meta.classes) == 10 and meta.preprocess["size"] == 48 and meta.data_hash


def test_resume_continues_from_last(tmp_path, demo_data):
    out = tmp_path / "m.pt"
    cfg = TrainConfig(epochs=1, batch_size=16, max_steps_per_epoch=2)
    train_model(demo_data, out, arch="resnet18", pre=Preprocess(size=32), cfg=cfg, progress=False)
    cfg2 = TrainConfig(epochs=2, batch_size=16, max_steps_per_epoch=2)
    res = train_model(demo_data, out, arch="resnet18", pre=Preprocess(size=32), cfg=cfg2, resume=True, progress=False)
    assert [h["epoch"] for h in res["history"]] == [1, 2]


def test_freeze_backbone_trains_only_head(tmp_path, demo_data, tiny_ckpt):
    import torch

    out = tmp_path / "frozen.pt"
    train_model(demo_data, out, arch="resnet18", pre=Preprocess(size=32), weights=tiny_ckpt,
                cfg=TrainConfig(epochs=1, batch_size=16, max_steps_per_epoch=2, freeze_backbone=True), progress=False)
    before, after = load_model(tiny_ckpt).model.state_dict(), load_model(out).model.state_dict()
    assert torch.equal(before["layer1.0.conv1.weight"], after["layer1.0.conv1.weight"])
    assert torch.equal(before["bn1.running_mean"], after["bn1.running_mean"])
    assert not torch.equal(before["fc.weight"], after["fc.weight"])


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path, demo_data):
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")
    assert torchrun, "torchrun not found next to the interpreter"
    out = tmp_path / "ddp.pt"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([torchrun, "--standalone", "--nproc-per-node", "2", "-m", "edgeres", "train", "--data",
                           str(demo_data), "--out", str(out), "--arch", "resnet18", "--image-size", "32", "--epochs", "1",
                           "--batch-size", "8"], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.exists() and out.with_name("ddp.log.csv").exists()
    assert "best val top-1" in proc.stdout
    assert load_model(out).meta.num_classes == 10


def test_amp_and_channels_last_options(tmp_path, demo_data):
    import torch

    from edgeres.amp import choose_amp, cpu_has_bf16
    from edgeres.errors import EdgeresError

    assert choose_amp("off", torch.device("cpu")).enabled is False
    assert choose_amp("bf16", torch.device("cpu")).enabled is True
    assert choose_amp("auto", torch.device("cpu")).enabled is cpu_has_bf16()
    with pytest.raises(EdgeresError, match="unknown --amp"):
        train_model(demo_data, tmp_path / "x.pt", arch="resnet18", pre=Preprocess(size=32), progress=False,
                    cfg=TrainConfig(epochs=1, batch_size=16, max_steps_per_epoch=1, amp="fp8"))
    out = tmp_path / "m.pt"
    res = train_model(demo_data, out, arch="resnet18", pre=Preprocess(size=32), progress=False,
                      cfg=TrainConfig(epochs=1, batch_size=16, max_steps_per_epoch=2, amp="bf16", channels_last=True))
    assert res["history"][0]["train_loss"] > 0
    w = load_model(out).model.conv1.weight
    assert w.dtype == torch.float32 and w.is_contiguous()  # the checkpoint is plain FP32, NCHW
