"""Bad input: one clear line on stderr, exit 1 (2 for usage), no traceback, nothing half-written."""

import torch


def _no_traceback(proc):
    assert "Traceback" not in proc.stderr, proc.stderr


def test_help_works(cli):
    proc = cli("--help")
    assert proc.returncode == 0 and "optimize" in proc.stdout and "train" in proc.stdout


def test_missing_data_folder(cli, tmp_path):
    proc = cli("train", "--data", tmp_path / "nope", "--out", tmp_path / "m.pt", "--epochs", "1")
    assert proc.returncode == 1 and "does not exist" in proc.stderr
    _no_traceback(proc)
    assert not (tmp_path / "m.pt").exists()


def test_pickle_without_trust_flag(cli, tmp_path, demo_data):
    from edgeres.models import build_model

    torch.save(build_model("resnet18", 10), tmp_path / "full.pt")
    proc = cli("evaluate", "--model", tmp_path / "full.pt", "--data", demo_data, "--image-size", "32")
    assert proc.returncode == 1 and "--trust-model" in proc.stderr
    _no_traceback(proc)
    ok = cli("evaluate", "--model", tmp_path / "full.pt", "--data", demo_data, "--image-size", "32", "--trust-model")
    assert ok.returncode == 0, ok.stderr
    assert "top-1" in ok.stdout


def test_corrupt_checkpoint(cli, tmp_path, demo_data):
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    proc = cli("evaluate", "--model", tmp_path / "bad.pt", "--data", demo_data)
    assert proc.returncode == 1 and "bad.pt" in proc.stderr
    _no_traceback(proc)


def test_wrong_class_count(cli, tmp_path, demo_data):
    from edgeres.models import build_model

    torch.save(build_model("resnet18", 4).state_dict(), tmp_path / "four.pth")
    proc = cli("evaluate", "--model", tmp_path / "four.pth", "--data", demo_data, "--image-size", "32")
    assert proc.returncode == 1 and "4 outputs but the data has 10 classes" in proc.stderr
    _no_traceback(proc)


def test_corrupt_image_in_data(cli, tmp_path, demo_data, tiny_ckpt):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(demo_data, data)
    (data / "val" / "circle" / "00000.png").write_bytes(b"broken")
    proc = cli("evaluate", "--model", tiny_ckpt, "--data", data)
    assert proc.returncode == 1 and "00000.png" in proc.stderr and "--skip-corrupt" in proc.stderr
    _no_traceback(proc)
    ok = cli("evaluate", "--model", tiny_ckpt, "--data", data, "--skip-corrupt")
    assert ok.returncode == 0, ok.stderr


def test_usage_error_exit_2(cli):
    proc = cli("evaluate", "--model")
    assert proc.returncode == 2


def test_evaluate_reports_per_class(cli, tiny_ckpt, demo_data, tmp_path):
    proc = cli("evaluate", "--model", tiny_ckpt, "--data", demo_data, "--json", tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr
    import json

    res = json.loads((tmp_path / "r.json").read_text())
    assert res["images"] == 60 and set(res["per_class"]) == set(__import__("edgeres.data.demo", fromlist=["x"]).CLASSES)
    assert 0 <= res["top1"] <= res["top5"] <= 100
