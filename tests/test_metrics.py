import numpy as np
import pytest

from edgeres.metrics import (
    agreement,
    measure_latency,
    onnx_macs_params,
    per_class_accuracy,
    summarize_latencies,
    topk_accuracy,
    torch_macs_params,
)
from edgeres.report import COLUMNS, merge, new_row, read_csv, rows_to_csv, write_csv


class FakeClock:
    """Each call to fn() advances time by the next duration; the clock reads the accumulated time."""

    def __init__(self, durations):
        self.t, self.durations, self.i = 0.0, list(durations), 0

    def __call__(self):
        return self.t

    def work(self):
        self.t += self.durations[self.i % len(self.durations)]
        self.i += 1


def test_latency_statistics_on_a_fake_clock():
    clock = FakeClock([0.010, 0.020, 0.030, 0.040, 0.100])  # ms: 10 20 30 40 100, repeating
    stats = measure_latency(clock.work, batch_size=4, warmup=5, min_runs=50, max_runs=50, min_time_s=0, clock=clock)
    assert stats.runs == 50
    assert stats.p50_ms == pytest.approx(30.0)
    assert stats.mean_ms == pytest.approx(40.0)
    assert stats.p90_ms == pytest.approx(100.0)
    assert stats.throughput_ips == pytest.approx(4 * 1000 / 40.0)
    # the same fake run gives the same figures: reproducible by construction
    clock2 = FakeClock([0.010, 0.020, 0.030, 0.040, 0.100])
    again = measure_latency(clock2.work, 4, 5, 50, 50, 0, clock=clock2)
    assert again.p50_ms == stats.p50_ms


def test_latency_stops_on_min_time():
    clock = FakeClock([0.5])
    stats = measure_latency(clock.work, warmup=0, min_runs=2, max_runs=100, min_time_s=3.0, clock=clock)
    assert stats.runs == 6  # 6 x 0.5 s reaches 3 s


def test_percentiles_interpolate_like_numpy():
    times = [0.001 * k for k in range(1, 101)]
    s = summarize_latencies(times, 1)
    assert s.p50_ms == pytest.approx(50.5) and s.p99_ms == pytest.approx(99.01)
    with pytest.raises(ValueError):
        summarize_latencies([], 1)


def test_topk_and_agreement():
    logits = np.array([[3, 2, 1], [1, 3, 2], [1, 2, 3], [3, 1, 2]], float)
    targets = np.array([0, 2, 2, 1])
    acc = topk_accuracy(logits, targets, (1, 2, 5))
    assert acc["top1"] == 50.0 and acc["top2"] == 75.0 and acc["top5"] == 100.0
    assert per_class_accuracy(logits, targets, ["a", "b", "c"]) == {"a": 100.0, "b": 0.0, "c": 50.0}
    ag = agreement(logits + 0.1, logits)
    assert ag["agreement"] == 100.0 and ag["max_abs_dlogit"] == pytest.approx(0.1)


def test_onnx_macs_match_torch(tmp_path):
    import torch

    from edgeres.data import Preprocess
    from edgeres.models import ModelMeta, build_model
    from edgeres.onnx_export import export_onnx

    m = build_model("resnet18", 10).eval()
    export_onnx(m, tmp_path / "m.onnx", Preprocess(size=64), ModelMeta(arch="resnet18", classes=list("abcdefghij")))
    macs_onnx, params_onnx = onnx_macs_params(tmp_path / "m.onnx")
    macs_torch, params_torch = torch_macs_params(m, 64)
    assert abs(macs_onnx - macs_torch) / macs_torch < 0.02  # BN/ReLU/pool ops are the only difference
    bn_params = sum(p.numel() for n, p in m.named_parameters() if "bn" in n or "downsample.1" in n)
    assert params_onnx == params_torch - bn_params + sum(
        mod.out_channels for mod in m.modules() if isinstance(mod, torch.nn.Conv2d))  # BN folded into conv biases


def test_report_schema_and_empty_cells(tmp_path):
    assert COLUMNS[:3] == ["stage", "artifact", "runtime"] and COLUMNS[-2:] == ["status", "note"] and len(COLUMNS) == 24
    ok = new_row(stage="export", runtime="onnxruntime", top1=75.123456, latency_p50_ms=1.5, params=10)
    skipped = new_row(stage="engine", runtime="tensorrt", status="skipped", note="tensorrt not importable")
    text = rows_to_csv([ok, skipped])
    lines = text.splitlines()
    assert lines[0] == ",".join(COLUMNS)
    assert lines[2].startswith("engine,,tensorrt,,,,,,,,,,,,,,,,,,,,skipped,tensorrt not importable")
    write_csv(tmp_path / "r.csv", [ok, skipped])
    back = read_csv(tmp_path / "r.csv")
    assert back[0]["top1"] == pytest.approx(75.123) and back[0]["gpu_mem_mb"] is None and back[1]["status"] == "skipped"
    with pytest.raises(ValueError):
        new_row(stage="x", status="maybe")
    with pytest.raises(KeyError):
        new_row(stage="x", speed=1)


def test_merge_device_rows_replaces_skipped_engine():
    host = [new_row(stage="baseline", runtime="torch", top1=70.0),
            new_row(stage="engine", runtime="tensorrt", status="skipped", note="no trt")]
    dev = [new_row(stage="engine", runtime="tensorrt", batch_size=1, latency_p50_ms=0.6, status="ok")]
    merged = merge(host, dev)
    assert [r["status"] for r in merged] == ["ok", "ok"] and merged[1]["latency_p50_ms"] == 0.6
