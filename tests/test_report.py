"""The report read at a glance: the three-line verdict, the table shared by summary.md and the terminal, report.png
with the recommendation, the baseline and the proxy latency said in the plot itself."""

from __future__ import annotations

from PIL import Image

from edgeres.report import new_row, write_report
from edgeres.report_plot import plot
from edgeres.report_table import TABLE, markdown_table, table_cells, table_footnote, verdict_lines
from edgeres.targets import get_target

JETSON = get_target("jetson").to_dict()


def _rows():
    common = {"batch_size": 1, "input_size": 64, "status": "ok"}
    return [
        new_row(stage="baseline", runtime="torch", precision="fp32", top1=90.0, top1_delta=0.0, agreement=100.0,
                latency_p50_ms=20.0, macs=1_300_000_000, model_size_mb=94.0, peak_rss_mb=900.0, **common),
        new_row(stage="baseline", runtime="onnxruntime", precision="fp32", top1=90.0, top1_delta=0.0, agreement=100.0,
                latency_p50_ms=12.0, macs=1_300_000_000, model_size_mb=94.0, peak_rss_mb=400.0, **common),
        new_row(stage="prune", runtime="torch", precision="fp32", top1=89.5, top1_delta=-0.5, agreement=97.0,
                latency_p50_ms=11.0, macs=650_000_000, model_size_mb=47.0, peak_rss_mb=700.0, **common),
        new_row(stage="export", runtime="onnxruntime", precision="fp32", top1=89.5, top1_delta=-0.5, agreement=97.0,
                latency_p50_ms=7.0, macs=650_000_000, model_size_mb=47.0, peak_rss_mb=300.0, **common),
        new_row(stage="quantize", runtime="onnxruntime", precision="int8", top1=89.2, top1_delta=-0.8, agreement=96.0,
                latency_p50_ms=9.0, macs=650_000_000, model_size_mb=12.0, peak_rss_mb=250.0,
                note="ONNX Runtime as the accuracy proxy for the TensorRT engine", **common),
        new_row(stage="engine", runtime="tensorrt", status="skipped", note="tensorrt not importable"),
    ]


REC = {"stage": "quantize", "artifact": "model_int8.onnx", "runtime": "onnxruntime", "precision": "int8", "top1": 89.2,
       "top1_delta": -0.8, "budget_points": 1.0, "speedup": None, "speedup_reference": "baseline/onnxruntime",
       "size_reduction": 94 / 12, "macs_reduction": 2.0, "speedup_note": "measure the engine on the device"}


def test_verdict_is_three_lines_deploy_gain_and_device_step():
    lines = verdict_lines(_rows(), REC, JETSON, "runs/demo")
    assert len(lines) == 3
    assert "Recommended" in lines[0] and "quantize/model_int8.onnx" in lines[0] and "INT8" in lines[0]
    assert "7.8x smaller" in lines[1] and "2.0x fewer MACs" in lines[1] and "-0.80 points" in lines[1]
    assert "90.00%" in lines[1] and "96.0% same predictions" in lines[1]
    assert "faster" not in lines[1]  # a proxy latency is never sold as a speed-up
    assert "./run.sh bench" in lines[2] and "edgeres report --run runs/demo --merge device.csv" in lines[2]
    none = verdict_lines(_rows(), {"artifact": None, "reason": "no artifact within 1.0 points"}, JETSON)
    assert none[0].startswith("**No recommendation:**") and "within 1.0 points" in none[0] and len(none) == 3


def test_terminal_and_markdown_tables_are_the_same_cells():
    rows = _rows()
    md = markdown_table(rows, JETSON).splitlines()
    assert md[0] == "| " + " | ".join(h for _, h in TABLE) + " |"
    for r, line in zip(rows, md[2:]):
        assert line == "| " + " | ".join(table_cells(r, JETSON)) + " |"
    q = dict(zip((h for _, h in TABLE), table_cells(rows[4], JETSON)))
    assert q["p50 ms"] == "9.000*" and q["GMACs"] == "0.650" and q["Δtop-1"] == "-0.80" and q["peak MB"] == "250.0"
    b = dict(zip((h for _, h in TABLE), table_cells(rows[1], JETSON)))
    assert b["p50 ms"] == "12.000"  # FP32 on ORT is not a proxy of anything
    assert "proxy" in table_footnote(rows, JETSON)
    assert table_footnote(rows, get_target("x86").to_dict()) == ""  # on an ORT target the CPU latency is the real one


def test_plot_marks_recommendation_baseline_and_proxy(tmp_path):
    out = tmp_path / "report.png"
    drawn = plot(_rows(), out, REC, JETSON)
    with Image.open(out) as im:
        assert im.size[0] >= 1000 and im.size[1] >= 700
    text = "\n".join(drawn["texts"])
    assert "recommended" in text and "baseline top-1 90.0%" in text
    assert "proxy" in text and "not the Jetson engine's latency" in text
    assert drawn["panels"] == ["accuracy vs latency per runtime", "MACs (G)", "artifact size (MB)",
                               "peak memory, RSS (MB)"]
    assert drawn["bars"]["peak memory, RSS (MB)"][0] == ("baseline\nonnxruntime fp32", 400.0)
    x86 = plot(_rows(), tmp_path / "x.png", None, get_target("x86").to_dict())
    assert "proxy" not in "\n".join(x86["texts"])


def test_write_report_summary_opens_with_the_verdict(tmp_path):
    lines = verdict_lines(_rows(), REC, JETSON, str(tmp_path))
    paths = write_report(tmp_path, _rows(), {"cpu": "test"}, [lines[0], "", lines[1], "", lines[2]],
                         extra={"recommendation": REC, "target": JETSON})
    md = paths["summary"].read_text().splitlines()
    assert md[2].startswith("**Recommended:**") and md[4].startswith("**Gain:**")
    assert md[6].startswith("**Still to measure on the device:**")
    assert paths["png"].exists() and "![report](report.png)" in md
