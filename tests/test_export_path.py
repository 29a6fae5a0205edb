"""`edgeres export` and `optimize` take one path to the ONNX file: for the same model, data and settings they write
byte-identical files (nothing in the file depends on when or where it was written)."""

from __future__ import annotations

import yaml


def test_export_command_writes_the_optimize_runs_file(cli, pipeline_run, demo_data, tmp_path):
    cfg = yaml.safe_load((pipeline_run / "config.yaml").read_text())
    pruned = pipeline_run / "prune" / "model.pt"  # the export stage's input in that run
    out = tmp_path / "elsewhere" / "model.onnx"
    proc = cli("export", "--model", pruned, "--data", demo_data, "--out", out, "--opset", cfg["opset"])
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == (pipeline_run / "export" / "model.onnx").read_bytes()
