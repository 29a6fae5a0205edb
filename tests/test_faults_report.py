"""Hostile input, report family (issue 25 items 3 and 4): device CSVs merged into a run are checked row by row
against the report schema, no CSV edgeres writes can carry a spreadsheet formula, and `optimize` gives the bundle's
manifest pin."""

from __future__ import annotations

import csv
import hashlib
import json
import tarfile

import pytest

from edgeres.report import COLUMNS, new_row, read_csv, rows_to_csv

ROW = {"stage": "engine", "artifact": "model.engine", "runtime": "tensorrt", "device": "Jetson Orin Nano, JetPack 6.2",
       "precision": "int8", "batch_size": "1", "input_size": "32", "latency_p50_ms": "2.5", "latency_p90_ms": "2.6",
       "latency_p99_ms": "2.7", "throughput_ips": "400", "status": "ok", "note": "bench"}


def _device_csv(path, **changes):
    row = {c: "" for c in COLUMNS}
    row.update(ROW, **changes)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerow(row)
    return path


@pytest.fixture
def run(run_copy):
    return run_copy


@pytest.mark.parametrize("changes, says", [
    ({"batch_size": "-4"}, "column batch_size is -4"),
    ({"latency_p50_ms": "-1e308"}, "column latency_p50_ms is -1e+308"),
    ({"latency_p99_ms": "inf"}, "column latency_p99_ms is inf"),
    ({"throughput_ips": "nan"}, "column throughput_ips is nan"),
    ({"top1": "250"}, "column top1 is 250"),
    ({"runtime": "=HYPERLINK(\"http://x\")"}, "runtime '=HYPERLINK"),
    ({"stage": "pwned"}, "stage 'pwned' is not one of"),
    ({"status": "great"}, "status 'great'"),
    ({"latency_p50_ms": "fast"}, "line 2: column latency_p50_ms holds 'fast', not a number"),
    ({"note": "x\x00y"}, "column note holds control characters"),
])
def test_merge_refuses_a_row_outside_the_schema(cli, run, tmp_path, changes, says):
    before = (run / "report.csv").read_bytes(), (run / "report.json").read_bytes()
    dev = _device_csv(tmp_path / "device.csv", **changes)
    proc = cli("report", "--run", run, "--merge", dev)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: cannot merge {dev}: ") and says in proc.stderr
    assert ((run / "report.csv").read_bytes(), (run / "report.json").read_bytes()) == before  # nothing written


def test_merge_takes_a_good_row_and_neutralises_formula_text(cli, run, tmp_path):
    dev = _device_csv(tmp_path / "device.csv", note="=cmd|' /C calc'!A0", device="@SUM(1+1)")
    proc = cli("report", "--run", run, "--merge", dev)
    assert proc.returncode == 0, proc.stderr
    with open(run / "report.csv", newline="") as f:
        eng = [r for r in csv.DictReader(f) if r["stage"] == "engine" and r["runtime"] == "tensorrt"]
    assert eng and eng[0]["note"].startswith("'=cmd") and eng[0]["device"] == "'@SUM(1+1)"
    assert eng[0]["latency_p50_ms"] == "2.5"


def test_every_csv_writer_neutralises_formulas_but_not_numbers(tmp_path):
    import sys
    from pathlib import Path

    from edgeres_deploy.bundle import upsert_csv

    from edgeres.quant.sensitivity import write_sensitivity

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from common import write_csv as bench_csv

    row = new_row(stage="export", runtime="onnxruntime", note="+1 then -2", device="-cpu", top1_delta=-0.5)
    text = rows_to_csv([row])
    assert "'+1 then -2" in text and "'-cpu" in text and ",-0.5," in text
    upsert_csv(tmp_path / "d.csv", {**ROW, "note": "=1+1", "top1_delta": -0.25})
    d = (tmp_path / "d.csv").read_text()
    assert "'=1+1" in d and "-0.25" in d and "'-0.25" not in d
    bench_csv(tmp_path / "b.csv", [{"row": "@attack", "ratio": "-1.5", "x": -2.0}])
    b = (tmp_path / "b.csv").read_text()
    assert "'@attack" in b and ",-1.5," in b and "-2.0" in b
    write_sensitivity([{"rank": 1, "layer": "=/conv1/Conv", "macs": 5, "gain_points": -0.1}], tmp_path / "s.csv")
    s = (tmp_path / "s.csv").read_text()
    assert "'=/conv1/Conv" in s and "-0.1" in s and "'-0.1" not in s


def test_optimize_gives_the_bundles_manifest_pin(pipeline_run):
    with tarfile.open(pipeline_run / "bundle" / "bundle.tar.gz") as tar:
        sha = hashlib.sha256(tar.extractfile("manifest.json").read()).hexdigest()
    assert json.loads((pipeline_run / "report.json").read_text())["bundle"]["manifest_sha256"] == sha
    assert f"manifest sha256 `{sha}`" in (pipeline_run / "summary.md").read_text()
    assert read_csv(pipeline_run / "report.csv")  # still a readable report


def test_optimize_prints_the_manifest_pin(cli, run, tiny_ckpt, demo_data):
    from conftest import PIPELINE_ARGS

    proc = cli("optimize", "--model", tiny_ckpt, "--data", demo_data, "--out", run, *PIPELINE_ARGS)  # all reused
    assert proc.returncode == 0, proc.stderr
    sha = json.loads((run / "report.json").read_text())["bundle"]["manifest_sha256"]
    assert f"manifest sha256 {sha}" in proc.stdout.replace("\n", " ")
