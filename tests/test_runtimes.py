import csv

import numpy as np
import pytest

from edgeres.runtimes import RuntimeUnavailable, artifact_kind, load_runtime, runtimes_for


def test_artifact_kinds():
    assert runtimes_for("m.pt") == ["torch"] and runtimes_for("m.onnx")[0] == "onnxruntime"
    assert runtimes_for("m.engine") == ["tensorrt"] and artifact_kind("m.plan") == "engine"
    from edgeres.errors import EdgeresError

    with pytest.raises(EdgeresError, match="unknown artifact type"):
        artifact_kind("m.h5")


def test_torch_and_onnxruntime_agree(tmp_path, tiny_ckpt):
    from edgeres.data import Preprocess
    from edgeres.models import load_model
    from edgeres.stages.export import export_onnx

    lm = load_model(tiny_ckpt)
    export_onnx(lm.model, tmp_path / "m.onnx", Preprocess(size=32), lm.meta)
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    t = load_runtime("torch", tiny_ckpt, threads=1)
    o = load_runtime("onnxruntime", tmp_path / "m.onnx", threads=1)
    np.testing.assert_allclose(t.run(x), o.run(x), atol=1e-4)
    assert t.describe()["runtime"] == "torch" and o.describe()["precision"] == "fp32" and o.threads == 1


def test_tensorrt_runtime_says_why(tmp_path):
    pytest.importorskip("edgeres_deploy.trt")
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed here")
    except ImportError:
        pass
    with pytest.raises(RuntimeUnavailable, match="tensorrt not importable"):
        load_runtime("tensorrt", tmp_path / "m.engine")


def test_bench_cli_rows_for_pt_onnx_and_engine(cli, tmp_path, tiny_ckpt, demo_data):
    from edgeres.data import Preprocess
    from edgeres.models import load_model
    from edgeres.stages.export import export_onnx

    lm = load_model(tiny_ckpt)
    export_onnx(lm.model, tmp_path / "m.onnx", Preprocess(size=32), lm.meta)
    (tmp_path / "m.engine").write_bytes(b"not an engine: tensorrt is absent here anyway")
    for art, runtime in ((tiny_ckpt, "torch"), (tmp_path / "m.onnx", "onnxruntime")):
        out = tmp_path / f"{runtime}.csv"
        proc = cli("bench", "--model", art, "--data", demo_data, "--csv", out, "--min-time", "0.2", "--runtime", runtime)
        assert proc.returncode == 0, proc.stderr
        row = list(csv.DictReader(open(out)))[0]
        for col in ("top1", "top5", "latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "throughput_ips", "params",
                    "macs", "model_size_mb", "peak_rss_mb", "device", "precision"):
            assert row[col] != "", (runtime, col)
        assert row["status"] == "ok" and row["gpu_mem_mb"] == ""  # no GPU here: empty, never zero
    out = tmp_path / "engine.csv"
    proc = cli("bench", "--model", tmp_path / "m.engine", "--csv", out, "--image-size", "32")
    assert proc.returncode == 0, proc.stderr
    row = list(csv.DictReader(open(out)))[0]
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        assert row["status"] == "skipped" and "tensorrt not importable" in row["note"]
        assert row["latency_p50_ms"] == ""


def test_optional_runtime_that_cannot_compile_is_a_failed_row(tmp_path, monkeypatch):
    """OpenVINO refusing a file (as 2026.4 does for some Q/DQ graphs on AMX CPUs) gives a `failed` row, not a crash."""
    import edgeres.measure as m
    from edgeres.data import Preprocess

    def refuse(name, artifact, **kw):
        raise RuntimeError("Exception from src/inference/src/cpp/core.cpp:117:\nNo suitable implementations.")

    monkeypatch.setattr(m, "load_runtime", refuse)
    rows = m.measure("quantize", tmp_path / "q.onnx", "openvino", Preprocess(size=32), cfg=m.MeasureConfig(batch_sizes=(1, 8))).rows
    assert [r["status"] for r in rows] == ["failed", "failed"]
    assert rows[0]["note"].startswith("openvino cannot load it: Exception from src/inference")
    with pytest.raises(RuntimeError):
        m.measure("quantize", tmp_path / "q.onnx", "onnxruntime", Preprocess(size=32))
