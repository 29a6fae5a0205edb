"""The flags come from the option table (edgeres.options): a bad value, a non-finite number, a value beyond what the
machine can do, or two flags that exclude each other is a usage error (exit 2) before any work; a deprecated spelling
works and says so once."""

from __future__ import annotations

import pytest
from conftest import run_cli

from edgeres import cli_options, options
from edgeres.options import MAX_THREADS


@pytest.mark.parametrize("args,flag", [
    (("optimize", "--model", "m.pt", "--prune", "nan"), "--prune"),
    (("optimize", "--model", "m.pt", "--threads", str(MAX_THREADS + 1)), "--threads"),
    (("optimize", "--model", "m.pt", "--int8-max-drop", "inf"), "--int8-max-drop"),
    (("optimize", "--model", "m.pt", "--int8-fallback", "methods,bogus"), "--int8-fallback"),
    (("optimize", "--model", "m.pt", "--mean", "0.5,nan,0.5"), "--mean"),
    (("export", "--model", "m.pt", "--out", "m.onnx", "--opset", "23"), "--opset"),
    (("prune", "--model", "m.pt", "--out", "p.pt", "--ratio", "inf"), "--ratio"),
    (("prune", "--model", "m.pt", "--out", "p.pt", "--lr", "nan"), "--lr"),
    (("train", "--data", "d", "--out", "m.pt", "--lr", "nan"), "--lr"),
    (("train", "--data", "d", "--out", "m.pt", "--weight-decay", "inf"), "--weight-decay"),
    (("bench", "--model", "m.onnx", "--threads", "1000000"), "--threads"),
    (("quantize", "--onnx", "m.onnx", "--calib", "d", "--target", "jetson", "--out", "q.onnx", "--qat-epochs", "9"),
     "--qat-epochs"),
])
def test_bad_flag_values_are_usage_errors(tmp_path, args, flag):
    res = run_cli(*args, cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert flag in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize("extra,words", [
    (("--target-speedup", "2", "--target-latency-ms", "5"), "--target-latency-ms or --target-speedup"),
    (("--prune", "0.2", "--target-speedup", "2"), "--prune or --target-speedup"),
    (("--quant-max-drop", "0.2", "--int8-max-drop", "0.3"), "--quant-max-drop or --int8-max-drop"),
])
def test_flags_that_exclude_each_other(tmp_path, extra, words):
    res = run_cli("optimize", "--model", "m.pt", *extra, cwd=tmp_path)
    assert res.returncode == 2 and words in res.stderr, res.stderr


def test_a_conflict_in_the_config_file_names_the_file(tmp_path):
    (tmp_path / "c.yaml").write_text("target_speedup: 2\ntarget_latency_ms: 5\n")
    res = run_cli("optimize", "--model", "m.pt", "--config", "c.yaml", cwd=tmp_path)
    assert res.returncode == 1 and "c.yaml" in res.stderr and "not both" in res.stderr, res.stderr


def test_an_option_the_target_cannot_use(tmp_path):
    (tmp_path / "c.yaml").write_text("dla_core: 0\n")
    res = run_cli("optimize", "--model", "m.pt", "--target", "x86-cpu", "--config", "c.yaml", cwd=tmp_path)
    assert res.returncode == 1 and "dla_core" in res.stderr and "DLA" in res.stderr, res.stderr


def test_a_non_utf8_config_file_is_one_line(tmp_path):
    (tmp_path / "c.yaml").write_bytes(b"prune: 0.2\n\xff\xfe\x00junk\n")
    res = run_cli("optimize", "--model", "m.pt", "--config", "c.yaml", cwd=tmp_path)
    assert res.returncode == 1 and "UTF-8" in res.stderr and "Traceback" not in res.stderr, res.stderr


def test_deprecated_spellings_work_and_warn_once(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(cli_options, "_warned", set())
    monkeypatch.setattr(options, "_warned", set())
    res = run_cli("quantize", "--onnx", "missing.onnx", "--calib", ".", "--target", "jetson", "--out", "q.onnx",
                  "--max-accuracy-drop", "0.5", "--data", ".", cwd=tmp_path)
    assert res.returncode == 1 and "missing.onnx" in res.stderr  # it ran (and stopped at the missing file)
    assert res.stderr.count("--max-accuracy-drop is deprecated: use --int8-max-drop") == 1
    from edgeres.config import OptimizeConfig

    with caplog.at_level("WARNING", logger="edgeres"):
        assert OptimizeConfig(quant_max_drop=0.2).int8_max_drop == 0.2
        assert OptimizeConfig(quant_max_drop=0.2).int8_max_drop == 0.2
    assert sum("quant_max_drop" in r.getMessage() for r in caplog.records) == 1


def test_every_flag_of_the_table_exists_on_its_commands():
    from edgeres.cli import main

    for o in options.OPTIONS:
        for command in o.commands:
            params = {p.name: p for p in main.commands[command].params}
            assert o.key in params, (command, o.key)
            assert o.flag_for(command) in params[o.key].opts, (command, o.key, params[o.key].opts)
