"""Fault injection, options (issue 25, items 8 and 11): a usage conflict or an option the target cannot use is a usage
error (exit 2) before any work; no numeric option reaches a library unbounded or non-finite, on the host or in the
device runtime. The checks run before any file is read, so the files named here need not exist."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]


def usage_error(res, *needles):
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert "Traceback" not in res.stderr, res.stderr
    for n in needles:
        assert n in res.stderr, (n, res.stderr)


# ------------------------------------------------------------------------------------------------ 11. usage conflicts
@pytest.mark.parametrize("args,needles", [
    (("evaluate", "--model", "m.pt", "--data", "d", "--runtime", "bogus"), ("--runtime", "bogus")),
    (("bench", "--model", "m.onnx", "--runtime", "bogus"), ("--runtime", "bogus")),
    (("build-engine", "--onnx", "m.onnx", "--out", "m.engine", "--target", "jetson-thor", "--dla-core", "0"),
     ("--dla-core", "no DLA core")),
    (("build-engine", "--onnx", "m.onnx", "--out", "m.engine", "--target", "jetson-orin-nx", "--dla-core", "2"),
     ("--dla-core", "2 DLA cores")),
    (("build-engine", "--onnx", "m.onnx", "--out", "m.engine", "--target", "xavier-nx", "--sparsity"),
     ("--sparsity", "2:4")),
    (("build-engine", "--onnx", "m.onnx", "--out", "m.engine", "--target", "x86-cpu"), ("x86-cpu", "not TensorRT")),
    (("build-engine", "--onnx", "m.onnx", "--out", "m.engine", "--target", "raspberry-pi"), ("--target", "unknown")),
    (("prune", "--model", "m.pt", "--out", "p.pt", "--ratio", "0.3", "--target", "xavier-nx", "--sparsity", "2:4"),
     ("--sparsity", "2:4")),
    (("prune", "--model", "m.pt", "--out", "p.pt", "--target-speedup", "2", "--target-latency-ms", "3"),
     ("not both",)),
])
def test_usage_conflicts_are_usage_errors_before_any_work(tmp_path, args, needles):
    """The files named do not exist: a check that ran after reading them would say so (exit 1) instead."""
    usage_error(run_cli(*args, cwd=tmp_path), *needles)


def test_a_runtime_that_cannot_open_the_file_is_a_usage_error(tmp_path, onnx_file):
    usage_error(run_cli("evaluate", "--model", onnx_file, "--data", tmp_path, "--runtime", "torch", cwd=tmp_path),
                "--runtime", "onnxruntime or openvino")


@pytest.fixture
def onnx_file(tmp_path):
    p = tmp_path / "m.onnx"
    p.write_bytes(b"not read: the runtime is refused first")
    return p


@pytest.mark.parametrize("yaml_text,key", [("dla_core: 0\ntarget: jetson-thor\n", "dla_core"),
                                           ("sparsity: '2:4'\ntarget: xavier-nx\n", "sparsity")])
def test_the_config_file_and_the_flags_share_the_target_rule(tmp_path, yaml_text, key):
    from edgeres.config import OptimizeConfig, load_config_file
    from edgeres.errors import ConfigError
    from edgeres.targets import cannot_use, get_target

    (tmp_path / "c.yaml").write_text(yaml_text)
    d = load_config_file(tmp_path / "c.yaml")
    with pytest.raises(ConfigError) as ei:
        OptimizeConfig.from_dict(d)
    assert ei.value.key == key and ei.value.need == cannot_use(get_target(d["target"]), key, d[key])


# ------------------------------------------------------------------------------------------------ 8. bounded numbers
@pytest.mark.parametrize("args,flag", [
    (("train", "--data", "d", "--out", "m.pt", "--seed", str(10**23)), "--seed"),
    (("train", "--data", "d", "--out", "m.pt", "--seed", "-5"), "--seed"),
    (("data", "make-demo", "--out", "dd", "--seed", "-5"), "--seed"),
    (("data", "make-demo", "--out", "dd", "--train-per-class", str(10**9)), "--train-per-class"),
    (("evaluate", "--model", "m.pt", "--data", "d", "--batch-size", str(10**12)), "--batch-size"),
    (("evaluate", "--model", "m.pt", "--data", "d", "--num-classes", str(10**20)), "--num-classes"),
    (("bench", "--model", "m.onnx", "--batch-size", str(10**8)), "--batch-size"),
    (("demo", "--epochs", str(10**9)), "--epochs"),
])
def test_numeric_flags_are_bounded(tmp_path, args, flag):
    usage_error(run_cli(*args, cwd=tmp_path), flag)
    assert not (tmp_path / "dd").exists()


@pytest.mark.parametrize("field,value", [("weight_decay", float("inf")), ("lr", float("nan")),
                                         ("label_smoothing", float("-inf")), ("kd_temperature", float("nan"))])
def test_train_config_refuses_non_finite_numbers_from_python_too(field, value):
    from edgeres.errors import ConfigError
    from edgeres.train.config import TrainConfig

    with pytest.raises(ConfigError, match=field):
        TrainConfig(**{field: value})


@pytest.mark.parametrize("args,flag", [
    (("bench", "--batch-size", str(10**9)), "--batch-size"),
    (("bench", "--threads", str(10**7)), "--threads"),
    (("evaluate", "d", "--batch-size", str(10**9)), "--batch-size"),
    (("predict", "x.png", "--top-k", str(10**9)), "--top-k"),
    (("build", "--dla-core", "99"), "--dla-core"),
    (("bench", "--min-time", "1e300"), "--min-time"),
])
def test_device_runtime_numbers_are_bounded(args, flag, capsys, monkeypatch):
    """The device runtime's own parser (run.sh and python -m edgeres_deploy parse with it, once the launcher has
    verified the bundle): a usage error, exit 2, before any backend is touched."""
    monkeypatch.syspath_prepend(str(ROOT / "deploy"))
    from edgeres_deploy.__main__ import parser

    with pytest.raises(SystemExit) as ei:
        parser().parse_args(list(args))
    err = capsys.readouterr().err
    assert ei.value.code == 2 and flag in err and "Traceback" not in err, err
