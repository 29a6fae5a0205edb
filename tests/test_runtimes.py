"""The runtime layer: artifact kinds, one lifecycle for every runner (open / run / close, as context managers), one
"cannot run here" (Unavailable -> skipped) apart from real failures (a refused file, a crash, a wrong-shaped output ->
failed, or an error), and TensorRT's engine and device memory released when a runner or a measurement ends (the
TensorRT and CUDA doubles of tests/trt_double count device memory, pinned buffers and live streams/events)."""

import csv

import numpy as np
import pytest

from edgeres.errors import EdgeresError, ModelFileError, Unavailable
from edgeres.runtimes import Runtime, artifact_kind, load_runtime, runtime_class, runtimes_for


def test_artifact_kinds():
    assert runtimes_for("m.pt") == ["torch"] and runtimes_for("m.onnx")[0] == "onnxruntime"
    assert runtimes_for("m.engine") == ["tensorrt"] and artifact_kind("m.plan") == "engine"
    from edgeres.errors import EdgeresError

    with pytest.raises(EdgeresError, match="unknown artifact type"):
        artifact_kind("m.h5")


def test_torch_and_onnxruntime_agree(tiny_ckpt, tiny_onnx):
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    with load_runtime("torch", tiny_ckpt, threads=1) as t, load_runtime("onnxruntime", tiny_onnx, threads=1) as o:
        np.testing.assert_allclose(t.run(x), o.run(x), atol=1e-4)
        assert t.describe()["runtime"] == "torch" and o.describe()["precision"] == "fp32" and o.threads == 1


def test_tensorrt_runtime_says_why_and_the_fix(tmp_path):
    pytest.importorskip("edgeres_deploy.trt")
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed here")
    except ImportError:
        pass
    with pytest.raises(Unavailable, match="tensorrt not importable") as e:
        load_runtime("tensorrt", tmp_path / "m.engine")
    assert "sudo apt-get install -y python3-libnvinfer" in str(e.value) and "pip install tensorrt" in str(e.value)


def test_a_runner_holds_its_session_only_while_open(tiny_onnx):
    """Made cheaply, opened by `with` (or load_runtime), closed at the block's end -- also when the block raises; an
    inner `with` (metrics.run_logits inside measure) leaves it open for the outer one; closing twice is harmless."""
    x = np.zeros((2, 3, 32, 32), np.float32)
    rt = runtime_class("onnxruntime")(tiny_onnx, threads=1)
    assert not rt.is_open and rt.backend is None
    with pytest.raises(RuntimeError, match="not open"):
        rt.run(x)
    with rt:
        backend = rt.backend
        assert rt.is_open and backend.session is not None
        with rt:
            assert rt.run(x).shape == (2, 10)
        assert rt.is_open  # the inner block did not close it
    assert not rt.is_open and rt.backend is None and backend.closed and backend.session is None
    with pytest.raises(RuntimeError, match="not open"):
        rt.run(x)
    rt.close()
    with pytest.raises(ZeroDivisionError):
        with load_runtime("onnxruntime", tiny_onnx, threads=1) as failing:
            raise ZeroDivisionError
    assert not failing.is_open
    opened = load_runtime("onnxruntime", tiny_onnx, threads=1)
    with opened:
        pass
    assert not opened.is_open  # the outermost `with` closes what load_runtime opened
    leaked = load_runtime("onnxruntime", tiny_onnx, threads=1)
    backend = leaked.backend
    with pytest.warns(ResourceWarning, match="never closed: use `with`"):
        del leaked  # as an unclosed file: a warning, and its session released
    assert backend.closed


@pytest.mark.parametrize("name", ["onnxruntime", "openvino"])
def test_a_file_the_runtime_refuses_is_the_same_error_in_every_runtime(name, tmp_path):
    """ONNX Runtime said EdgeresError, OpenVINO RuntimeUnavailable (a skip) for the same unreadable file: now both
    say ModelFileError, with the runtime's reason, through the device backends' ModelLoadError."""
    if name == "openvino":
        pytest.importorskip("openvino")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07 not a model " * 8)
    with pytest.raises(ModelFileError, match=f"{name} cannot (load|compile) .*bad.onnx") as e:
        load_runtime(name, bad, threads=1)
    assert not isinstance(e.value, Unavailable)


class _Fake(Runtime):
    """A runner whose run returns ``out`` (or raises it): what a broken runtime does, for measure()."""

    name, out = "openvino", None

    def _run(self, x):
        if isinstance(self.out, Exception):
            raise self.out
        return self.out


@pytest.mark.parametrize("runtime", ["openvino", "onnxruntime"])
def test_measure_skips_only_what_cannot_run_here(runtime, tiny_onnx, monkeypatch):
    """Unavailable -> `skipped` rows. A real failure -- the runtime refuses the file, crashes, or gives a
    wrong-shaped output -- is never a skip: `failed` rows with the reason for the optional runtime (OpenVINO),
    the error itself for the one the stage depends on (ONNX Runtime)."""
    import edgeres.measure as m
    from edgeres.data import Preprocess

    cfg = m.MeasureConfig(batch_sizes=(1, 8), warmup=1, min_runs=1, max_runs=1, min_time_s=0, memory=False)

    def rows(load):
        monkeypatch.setattr(m, "load_runtime", load)
        return m.measure("quantize", tiny_onnx, runtime, Preprocess(size=32), cfg=cfg, progress=False).rows

    def fake(out):
        return lambda name, artifact, **kw: type("F", (_Fake,), {"out": out})(artifact).open()

    def unavailable(name, artifact, **kw):
        raise Unavailable(f"{name} not importable (No module named {name!r}); fix: pip install {name}")

    assert [(r["status"], r["note"][:20]) for r in rows(unavailable)] == [("skipped", f"{runtime} not importable"[:20])] * 2
    failures = {"refused": ModelFileError(f"{runtime} cannot compile q.onnx: No suitable implementations."),
                "crash": RuntimeError("Exception from src/inference/src/cpp/infer_request.cpp:223"),
                "shape": np.zeros((3,), np.float32)}
    for what, out in failures.items():
        if what == "refused":
            def load(name, artifact, out=out, **kw):
                raise out
        else:
            load = fake(out)
        if runtime == "onnxruntime":
            with pytest.raises((EdgeresError, RuntimeError)):
                rows(load)
            continue
        got = rows(load)
        assert [r["status"] for r in got] == ["failed", "failed"], what
        assert {"refused": "openvino cannot compile q.onnx: No suitable implementations.",
                "crash": "openvino failed on it: RuntimeError: Exception from src/inference",
                "shape": "openvino failed on it: "}[what] in got[0]["note"]
        if what == "shape":
            assert "gave outputs of shape (3,) for a batch of 1" in got[0]["note"]


def test_bench_cli_rows_for_pt_onnx_and_engine(cli, tmp_path, tiny_ckpt, demo_data):
    from edgeres.data import Preprocess
    from edgeres.models import load_model
    from edgeres.onnx_export import export_onnx

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


def test_optional_runtime_that_cannot_compile_is_a_failed_row(tmp_path, tiny_onnx, monkeypatch):
    """OpenVINO refusing a file (as 2026.4 does for some Q/DQ graphs on AMX CPUs: RuntimeError from compile_model) gives
    a `failed` row with OpenVINO's reason, not a skip and not a crash."""
    ov = pytest.importorskip("openvino")
    import edgeres.measure as m
    from edgeres.data import Preprocess

    def refuse(self, *a, **k):
        raise RuntimeError("Exception from src/inference/src/cpp/core.cpp:117:\nNo suitable implementations.")

    monkeypatch.setattr(ov.Core, "compile_model", refuse)
    rows = m.measure("quantize", tiny_onnx, "openvino", Preprocess(size=32),
                     cfg=m.MeasureConfig(batch_sizes=(1, 8), memory=False), progress=False).rows
    assert [r["status"] for r in rows] == ["failed", "failed"]
    assert rows[0]["note"] == f"openvino cannot compile {tiny_onnx}: No suitable implementations."


def _engine(monkeypatch, tmp_path, onnx, cuda: str, flavour: str = "10.3"):
    """An FP16 engine of ``onnx`` built with the TensorRT double (and the CUDA double ``cuda``)."""
    import trt_double
    from edgeres_deploy.trt import BuildSpec, build_engine

    trt_double.install(monkeypatch, flavour, cuda=cuda)
    spec = BuildSpec(onnx=str(onnx), engine=str(tmp_path / "m.engine"), input_shape=(3, 32, 32), int8=False)
    build_engine(spec, log=lambda *a: None)
    return spec.engine


def _held():
    """What the doubles hold: device bytes, pinned buffers, live CUDA streams and events."""
    import gc

    import trt_double
    from trt_double import cuda_doubles

    gc.collect()
    return trt_double.used_bytes(), len(trt_double.PINNED), len(cuda_doubles.LIVE_HANDLES)


@pytest.mark.parametrize("cuda", ["pycuda", "cuda-python"])
def test_tensorrt_runner_releases_the_engine_and_its_device_memory(cuda, monkeypatch, tmp_path, tiny_onnx):
    """TrtRunner.close() was never called (the runner lived until the process ended, held by its exit hook): the host
    runner's `with` now closes it -- I/O buffers, context, engine (its weights), pinned buffers, stream and events."""
    import gc
    import weakref

    engine = _engine(monkeypatch, tmp_path, tiny_onnx, cuda)
    before = _held()
    with load_runtime("tensorrt", engine) as rt:
        assert rt.run(np.zeros((4, 3, 32, 32), np.float32)).shape == (4, 10) and rt.gpu_mem_mb() > 0
        runner = rt.backend
        held = _held()
        assert held[0] > before[0]
        if cuda == "cuda-python":  # one stream and two timing events, page-locked input and output buffers
            assert held[2] == before[2] + 3 and held[1] == before[1] + 2
    assert _held() == before and runner._closed and not hasattr(runner, "engine") and rt.backend is None
    rt.close()
    runner.close()  # twice: nothing to free twice (cudaStreamDestroy on a destroyed stream would fail)
    with pytest.raises(RuntimeError, match="closed"):
        runner.run(np.zeros((1, 3, 32, 32), np.float32))
    gone = weakref.ref(runner)
    del runner
    gc.collect()
    assert gone() is None  # no exit hook keeps a closed runner alive


def test_a_measurement_closes_the_engine_it_opened(monkeypatch, tmp_path, tiny_onnx):
    import edgeres.measure as m
    from edgeres.data import Preprocess

    engine = _engine(monkeypatch, tmp_path, tiny_onnx, "cuda-python")
    before = _held()
    cfg = m.MeasureConfig(batch_sizes=(1, 2), warmup=1, min_runs=2, max_runs=2, min_time_s=0, memory=False)
    rows = m.measure("engine", engine, "tensorrt", Preprocess(size=32), cfg=cfg, progress=False).rows
    assert [r["status"] for r in rows] == ["ok", "ok"] and rows[0]["gpu_mem_mb"] > 0
    assert _held() == before


def test_an_engine_that_does_not_load_leaves_nothing_behind(monkeypatch, tmp_path, tiny_onnx):
    """An engine of another TensorRT: ModelFileError (the runtime refuses the file, not "cannot run here"), and what
    the runner made before it failed -- the stream, the exit hook -- is released."""
    import trt_double

    engine = _engine(monkeypatch, tmp_path, tiny_onnx, "cuda-python", flavour="10.3")
    trt_double.install(monkeypatch, "11", cuda="cuda-python")
    before = _held()
    with pytest.raises(ModelFileError, match="did not deserialize with TensorRT 11"):
        load_runtime("tensorrt", engine)
    assert _held() == before


def test_a_missing_tool_names_its_fix(tiny_onnx, monkeypatch):
    """Optional tools are imported when first needed, through one helper: a missing one says the pip/apt command that
    installs it (device and host alike); onnxruntime-gpu asked for where only the CPU package is installed too."""
    import sys

    import onnxruntime as ort
    from edgeres_deploy.backends import OrtBackend
    from edgeres_deploy.envinfo import import_optional
    from edgeres_deploy.errors import BackendUnavailable, MissingTool

    monkeypatch.setitem(sys.modules, "openvino", None)  # as where it is not installed
    with pytest.raises(MissingTool, match=r"openvino not importable \(.*\); fix: python3 -m pip install openvino") as e:
        import_optional("openvino")
    assert isinstance(e.value, BackendUnavailable) and e.value.tool == "openvino"
    with pytest.raises(Unavailable, match="openvino not importable"):  # the host's one word for it
        load_runtime("openvino", tiny_onnx)
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    with pytest.raises(MissingTool, match="onnxruntime-gpu missing .*fix: python3 -m pip uninstall -y onnxruntime"):
        OrtBackend(tiny_onnx, device="cuda")
    with OrtBackend(tiny_onnx) as backend:  # auto: the CPU, no complaint
        assert backend.device == "cpu" and backend.providers == ["CPUExecutionProvider"]
