"""Fault injection, inputs (issue 25, items 7, 9, 10 and 12): damaged weights are named, a diverging training run
saves nothing, every path is checked for what it is before it is read (nothing blocks), the first stderr line is
edgeres's own, and error lines name the fix. One line on stderr, exit 1 (2 for usage), no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_cli


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
