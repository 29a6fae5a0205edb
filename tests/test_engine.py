import json

import numpy as np
import pytest
import trt_double
from edgeres_deploy.trt import BuildSpec, trtexec_command, version_family

from edgeres.data import Preprocess
from edgeres.engine_build import build_spec, run_engine, trtexec_line
from edgeres.errors import EdgeresError, StageSkipped, Unavailable
from edgeres.targets import ALIASES, TARGETS, get_target, list_targets


def test_target_registry():
    names = set(TARGETS)
    assert {"jetson-orin-nano", "jetson-orin-nx", "jetson-agx-orin", "jetson-xavier-nx", "jetson-thor", "jetson-nano",
            "x86-cpu", "cuda-gpu"} <= names
    assert get_target("jetson").name == "jetson-orin-nano" and get_target("JETSON").name == "jetson-orin-nano"
    assert get_target("jetson-orin-nx").dla_cores == 2 and get_target("jetson-agx-orin").dla_cores == 2
    assert get_target("jetson-orin-nano").dla_cores == 0
    assert get_target("jetson-xavier-nx").trt_version.startswith("8.5") and get_target("jetson-xavier-nx").implicit_int8
    assert get_target("jetson-thor").trt_family == 11 and not get_target("jetson-thor").implicit_int8
    assert not get_target("jetson-nano").int8 and get_target("x86-cpu").quant_format == "ort-u8s8"
    assert all(t.quant_format == "trt-qdq" for t in list_targets() if t.runtime == "tensorrt" and t.int8)
    assert set(ALIASES.values()) <= names
    with pytest.raises(EdgeresError, match="valid targets: .*jetson-orin-nano"):
        get_target("jetson-tx9")


def test_targets_cli(cli):
    proc = cli("targets", "--json")
    assert proc.returncode == 0
    assert {t["name"] for t in json.loads(proc.stdout)} == set(TARGETS)


def _spec(fam, **kw):
    base = dict(onnx="m.onnx", engine="m.engine", input_shape=(3, 224, 224), batch=(1, 1, 8), trt_family=fam)
    base.update(kw)
    return BuildSpec(**base)


def test_trtexec_line_per_version_family():
    c8 = trtexec_command(_spec(8, timing_cache="t.cache"))
    assert "--int8" in c8 and "--fp16" in c8 and "--memPoolSize=workspace:1024" in c8
    assert "--minShapes=input:1x3x224x224" in c8 and "--maxShapes=input:8x3x224x224" in c8
    assert "--timingCacheFile=t.cache" in c8
    c10 = trtexec_command(_spec(10, dla_core=1, sparsity=True))
    assert "--memPoolSize=workspace:1024M" in c10 and "--useDLACore=1" in c10 and "--allowGPUFallback" in c10
    assert "--sparsity=enable" in c10 and "--stronglyTyped" not in c10
    c11 = trtexec_command(_spec(11))
    assert "--stronglyTyped" in c11 and "--int8" not in c11 and "--fp16" not in c11
    legacy = trtexec_command(_spec(8, calib_cache="calib.cache"))
    assert "--calib=calib.cache" in legacy
    with pytest.raises(ValueError, match="TensorRT 11 has no implicit INT8"):
        trtexec_command(_spec(11, calib_cache="calib.cache"))
    assert version_family("8.5.2.2") == 8 and version_family("10.3.0") == 10


def test_build_spec_checks_the_profile(tmp_path):
    pre = Preprocess(size=64)
    nx = get_target("jetson-orin-nx")
    s = build_spec("m.onnx", "m.engine", nx, pre, dla_core=1, int8=True)
    assert s.dla_core == 1 and s.workspace_mb == nx.workspace_mb and s.input_shape == (3, 64, 64)
    assert s.batch == (nx.batch,) * 3  # DLA: static shapes
    assert build_spec("m.onnx", "m.engine", nx, pre, int8=True).batch == (1, nx.batch, nx.max_batch)
    with pytest.raises(EdgeresError, match="DLA cores"):
        build_spec("m.onnx", "m.engine", get_target("jetson-orin-nano"), pre, dla_core=0, int8=True)
    with pytest.raises(EdgeresError, match="2:4"):
        build_spec("m.onnx", "m.engine", get_target("jetson-xavier-nx"), pre, sparsity=True, int8=True)
    with pytest.raises(EdgeresError, match="not TensorRT"):
        build_spec("m.onnx", "m.engine", get_target("x86-cpu"), pre, int8=True)
    assert build_spec("m.onnx", "m.engine", nx, pre, fixed_batch=4, int8=True).batch == (4, 4, 4)
    assert "trtexec --onnx=m.onnx" in trtexec_line(s)


def test_engine_stage_skips_with_reason_without_tensorrt(tmp_path, tiny_onnx, cli):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt installed: the build itself is tested by test_trt_build")
    except ImportError:
        pass
    import shutil

    shutil.copy(tiny_onnx, tmp_path / "m.onnx")
    with pytest.raises(Unavailable, match="tensorrt not importable") as e:
        run_engine(tmp_path / "m.onnx", tmp_path / "m.engine", get_target("jetson"), Preprocess(size=32))
    assert e.value.runtime == "tensorrt" and e.value.info["trtexec"].startswith("trtexec --onnx=") and not (tmp_path / "m.engine").exists()
    proc = cli("build-engine", "--onnx", tmp_path / "m.onnx", "--target", "jetson-agx-orin", "--out", tmp_path / "e.engine")
    assert proc.returncode == 0 and "skipped" in proc.stderr and "trtexec --onnx=" in proc.stdout


@pytest.mark.trt
def test_trt_build_and_run(tmp_path, tiny_onnx, demo_data):
    """Runs only where TensorRT and a CUDA device exist (a Jetson, a GPU workstation): real build, real inference."""
    pytest.importorskip("tensorrt")
    import numpy as np
    from edgeres_deploy.trt import TrtRunner

    from edgeres.quant.run import run_quantize
    from edgeres.quant.settings import QuantizeConfig
    from edgeres.runtimes.ort import OrtRuntime

    run_quantize(tiny_onnx, demo_data, get_target("cuda-gpu"), tmp_path / "q.onnx", QuantizeConfig(subset_size=20))
    try:
        run_engine(tmp_path / "q.onnx", tmp_path / "q.engine", get_target("cuda-gpu"), Preprocess(size=32))
    except (StageSkipped, Unavailable) as e:
        pytest.skip(str(e))
    side = json.loads((tmp_path / "q.engine.json").read_text())
    assert side["onnx_sha256"] and side["precision"].startswith("int8")
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with TrtRunner(str(tmp_path / "q.engine")) as trt, OrtRuntime(tmp_path / "q.onnx") as ort:
        got, ref = trt.run(x), ort.run(x)
    assert got.shape == ref.shape and (got.argmax(1) == ref.argmax(1)).mean() >= 0.5


# ------------------------------------------------------------------------------------------------ issue 10, against
# the TensorRT test double (tests/trt_double: 8.5, 10.x, 11.x flavours; ONNX Runtime executes what it "builds")

FLAVOURS = list(trt_double.FLAVOURS)


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory, tiny_ckpt):
    from edgeres.models import load_model
    from edgeres.onnx_export import ExportConfig, export_onnx

    d = tmp_path_factory.mktemp("onnx")
    lm = load_model(tiny_ckpt)
    pre = Preprocess(size=32)
    export_onnx(lm.model, d / "dyn.onnx", pre, lm.meta)
    export_onnx(lm.model, d / "fixed.onnx", pre, lm.meta, ExportConfig(dynamic_batch=False, batch=4))
    return {"dyn": d / "dyn.onnx", "fixed": d / "fixed.onnx", "classes": lm.meta.classes}


def _ort(onnx_path, x):
    import onnxruntime as ort

    s = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def _x(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 3, 32, 32)).astype(np.float32)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_item1_batches_split_to_the_profile_and_refused_shapes_fail(flavour, monkeypatch, tmp_path, onnx_files, demo_data):
    """Item 1: batch 20 (and the host's eval batch 32) runs on a (1, 1, 8) profile; a refused shape says so."""
    trt_double.install(monkeypatch, flavour)
    from edgeres_deploy.trt import TrtRunner

    from edgeres.data import resolve_data
    from edgeres.measure import MeasureConfig, measure

    run_engine(onnx_files["dyn"], tmp_path / "m.engine", get_target("jetson-orin-nano"), Preprocess(size=32))
    r = TrtRunner(str(tmp_path / "m.engine"))
    assert r.max_batch == 8
    x = _x(20)
    np.testing.assert_allclose(r.run(x), _ort(onnx_files["dyn"], x), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match=r"refused input shape \(9, 3, 32, 32\).*\(1, 3, 32, 32\) \.\. \(8, 3, 32, 32\)"):
        r._run(_x(9))
    val = resolve_data(demo_data).val
    m = measure("engine", tmp_path / "m.engine", "tensorrt", Preprocess(size=32), val,
                MeasureConfig(eval_batch=32, min_time_s=0.1, min_runs=2, warmup=1, memory=False), progress=False)
    assert m.rows[0]["status"] == "ok" and m.rows[0]["top1"] is not None and len(m.logits) == len(val)


def test_item2_fixed_batch_trtexec_line_and_dla_line(onnx_files, cli, tmp_path):
    """Item 2 + done-when: no shape flags for a fixed-batch file; --dla-core 0 gives static shapes and DLA flags."""
    pre = Preprocess(size=32)
    s = build_spec(onnx_files["fixed"], "e", get_target("jetson-orin-nano"), pre, fixed_batch=4, int8=False)
    assert "Shapes" not in trtexec_line(s)
    proc = cli("build-engine", "--onnx", onnx_files["fixed"], "--target", "jetson-orin-nano", "--out", tmp_path / "f.engine")
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("trtexec"))
    assert "--minShapes" not in line and "--optShapes" not in line and "--maxShapes" not in line
    proc = cli("build-engine", "--onnx", onnx_files["dyn"], "--target", "jetson-agx-orin", "--dla-core", "0",
               "--out", tmp_path / "d.engine")
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("trtexec"))
    shapes = {a.split("=")[1] for a in line.split() if "Shapes=" in a}
    assert len(shapes) == 1 and "--useDLACore=0" in line and "--allowGPUFallback" in line


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_item3_dla_static_profile_and_runtime_core(flavour, monkeypatch, tmp_path, onnx_files):
    """Item 3: a DLA build has min = opt = max (the double, like DLA, refuses dynamic profiles) and the runner sets
    runtime.DLA_core to the engine's core."""
    import edgeres_deploy.trt as T

    trt_double.install(monkeypatch, flavour, dla_cores=2)
    monkeypatch.setattr(T, "on_jetson", lambda: True)
    nx = get_target("jetson-orin-nx")
    s = build_spec(onnx_files["dyn"], "e", nx, Preprocess(size=32), dla_core=1, int8=False)
    assert s.batch == (nx.batch,) * 3
    if flavour == "11":  # no DLA in TensorRT 11.0-11.3: refused before any build, with the reason
        with pytest.raises(StageSkipped, match="TensorRT 11.0.0.11 has no DLA support"):
            run_engine(onnx_files["dyn"], tmp_path / "m.engine", nx, Preprocess(size=32), dla_core=1)
        assert not (tmp_path / "m.engine").exists()
        return
    res = run_engine(onnx_files["dyn"], tmp_path / "m.engine", nx, Preprocess(size=32), dla_core=1)
    assert res["sidecar"]["dla_core"] == 1 and res["sidecar"]["shapes"]["min"] == res["sidecar"]["shapes"]["max"]
    r = T.TrtRunner(str(tmp_path / "m.engine"))
    assert r.runtime.DLA_core == 1 and r.engine._dla_core_run == 1
    x = _x(3)  # above the static batch: split into runs of the profile's batch
    np.testing.assert_allclose(r.run(x), _ort(onnx_files["dyn"], x), rtol=1e-4, atol=1e-4)
    s4 = T.for_dla(T.BuildSpec(onnx=str(onnx_files["dyn"]), engine=str(tmp_path / "s4.engine"), input_shape=(3, 32, 32),
                               batch=(1, 4, 8), int8=False), 0)
    assert s4.batch == (4, 4, 4)
    T.build_engine(s4, log=lambda *a: None)
    r4 = T.TrtRunner(s4.engine)  # static batch 4: 6 images run as 4 + (2 padded to 4)
    x = _x(6)
    np.testing.assert_allclose(r4.run(x), _ort(onnx_files["dyn"], x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_item5_host_proxy_is_labelled_and_never_fails(flavour, monkeypatch, tmp_path, onnx_files):
    """Item 5: on a host (no /etc/nv_tegra_release, no DLA) a DLA Jetson target builds a labelled host proxy; a
    failing build is `skipped` with TensorRT's reason, never an exception."""
    import edgeres_deploy.trt as T

    from edgeres.runtimes.tensorrt_rt import TensorRTRuntime

    trt_double.install(monkeypatch, flavour, dla_cores=0)
    monkeypatch.setattr(T, "on_jetson", lambda: False)
    res = run_engine(onnx_files["dyn"], tmp_path / "m.engine", get_target("jetson-agx-orin"), Preprocess(size=32), dla_core=0)
    assert "host proxy on Double GPU" in res["note"] and "--useDLACore=0" in res["trtexec"]
    assert res["sidecar"]["device"].startswith("host proxy: Double GPU") and res["sidecar"]["dla_core"] is None
    with TensorRTRuntime(tmp_path / "m.engine") as rt:
        assert "host proxy" in rt.describe()["device"]
    monkeypatch.setattr(T, "on_jetson", lambda: True)  # "on a Jetson" without DLA cores: the build fails
    with pytest.raises(StageSkipped, match="--dla-core 0 refused before building: (this device has no DLA core|TensorRT 11.0.0.11 has no DLA)"):
        run_engine(onnx_files["dyn"], tmp_path / "n.engine", get_target("jetson-agx-orin"), Preprocess(size=32), dla_core=0)


def test_item6_readme_commands_name_only_bundled_files(tmp_path, onnx_files):
    import re
    import tarfile

    from edgeres.bundle import make_bundle

    xavier = get_target("jetson-xavier-nx")
    pre = Preprocess(size=32)
    small = tmp_path / "s.onnx"  # a few-kB model: this test is about the README, not the weights
    _fp16_io_onnx(small)
    spec = build_spec(small, "x", xavier, pre, int8=True)
    (tmp_path / "calib.cache").write_text("TRT-8502-EntropyCalibration2\n")
    for fp32 in (None, small):
        out = tmp_path / f"b{fp32 is None}.tar.gz"
        res = make_bundle(out, small, xavier, pre, onnx_files["classes"], spec=spec,
                          calib_cache=tmp_path / "calib.cache", fp32_onnx=fp32)
        with tarfile.open(out) as tar:
            readme = tar.extractfile("README.md").read().decode()
        named = set(re.findall(r"--(?:onnx|calib)=([^\s`]+)", readme))
        assert named and named <= set(res["files"]), named - set(res["files"])
        assert ("model_fp32.onnx" in readme) == (fp32 is not None)


def test_item7_jetson_nano_is_refused_clearly(cli, onnx_files, tmp_path):
    from edgeres.targets import require_supported

    with pytest.raises(EdgeresError, match="jetson-nano is not supported: JetPack 4.6 ships TensorRT 8.2"):
        require_supported(get_target("jetson-nano"))
    with pytest.raises(EdgeresError, match="not supported"):
        build_spec(onnx_files["dyn"], "e", get_target("nano"), Preprocess(size=32))
    proc = cli("build-engine", "--onnx", onnx_files["dyn"], "--target", "jetson-nano", "--out", tmp_path / "n.engine")
    assert proc.returncode == 1 and "not supported" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "n.engine").exists()
    from edgeres.pipeline import OptimizeConfig, optimize

    with pytest.raises(EdgeresError, match="jetson-nano is not supported"):  # before any stage runs
        optimize(OptimizeConfig(model=str(onnx_files["dyn"]), out=str(tmp_path / "run"), target="jetson-nano"),
                 log=lambda *a: None)
    assert not any((tmp_path / "run").glob("*/stage.json")) and not (tmp_path / "run" / "report.csv").exists()


def test_item8_tegrastats_power_per_board():
    from conftest import ROOT
    from edgeres_deploy.device_stats import input_power, parse_line, rails

    expect = {"nano": (900, "POM_5V_IN"), "orin-nano": (4654, "VDD_IN"), "orin-nx": (12673, "VDD_IN"),
              "xavier-nx": (5079, "VDD_IN"), "xavier-nx-l4t32": (3902, "VDD_IN"), "thor": (19780, "VIN"),
              "thor-3field": (87426, "VIN"), "agx-orin": (3150 + 14312 + 4968, "VDD_GPU_SOC+VDD_CPU_CV+VIN_SYS_5V0"),
              "agx-xavier": (0 + 310 + 931 + 0 + 466 + 1522, "GPU+CPU+SOC+CV+VDDRQ+SYS5V")}
    d = ROOT / "tests" / "fixtures" / "tegrastats"
    for board, (mw, source) in expect.items():
        text = (d / f"{board}.txt").read_text().splitlines()
        assert any(ln.startswith("# source:") for ln in text), board
        line = next(ln for ln in text if not ln.startswith("#"))
        assert input_power(rails(line)) == (mw, source), board
        assert parse_line(line)["power_mw"] == mw
    assert parse_line((d / "nano.txt").read_text().splitlines()[-1])["ram_mb"] == 613


def _fp16_io_onnx(path):
    """A tiny classifier whose input and output are float16 (Cast to float inside)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(1).standard_normal((3, 5)).astype(np.float32), "w")
    nodes = [helper.make_node("Cast", ["input"], ["xf"], to=TensorProto.FLOAT),
             helper.make_node("GlobalAveragePool", ["xf"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("MatMul", ["f", "w"], ["y"]),
             helper.make_node("Cast", ["y"], ["logits"], to=TensorProto.FLOAT16)]
    g = helper.make_graph(nodes, "fp16io", [helper.make_tensor_value_info("input", TensorProto.FLOAT16, ["b", 3, 32, 32])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT16, ["b", 5])], [w])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_item9_io_dtypes_come_from_the_engine(flavour, monkeypatch, tmp_path):
    from edgeres_deploy.trt import BuildSpec, TrtRunner, build_engine

    trt_double.install(monkeypatch, flavour)
    _fp16_io_onnx(tmp_path / "h.onnx")
    build_engine(BuildSpec(onnx=str(tmp_path / "h.onnx"), engine=str(tmp_path / "h.engine"), input_shape=(3, 32, 32),
                           int8=False), log=lambda *a: None)
    r = TrtRunner(str(tmp_path / "h.engine"))
    assert r.in_dtype == np.float16 and r.out_dtype == np.float16
    x = _x(3)
    got = r.run(x)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, _ort(tmp_path / "h.onnx", x.astype(np.float16)).astype(np.float32), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_item12_precision_from_the_sidecar_and_known_risks(flavour, monkeypatch, tmp_path, onnx_files):
    """Item 12 (an FP16 engine reports fp16) and the known risks: buffers freed when they grow and on close,
    gpu_mem_mb measured around the load (weights included), GPU compute time from CUDA events, autoprimaryctx."""
    import sys

    from edgeres_deploy.cuda_mem import cuda_api
    from edgeres_deploy.trt import TrtRunner

    from edgeres.runtimes.tensorrt_rt import TensorRTRuntime

    trt_double.install(monkeypatch, flavour)
    monkeypatch.delitem(sys.modules, "pycuda.autoinit", raising=False)  # the double has no autoinit: must not be needed
    run_engine(onnx_files["dyn"], tmp_path / "m.engine", get_target("cuda-gpu"), Preprocess(size=32))
    expected = "as typed in the ONNX" if flavour == "11" else "fp16"
    with TensorRTRuntime(tmp_path / "m.engine") as rt:
        assert rt.precision == expected
    assert cuda_api().name == "pycuda"
    before = trt_double.used_bytes()
    r = TrtRunner(str(tmp_path / "m.engine"))
    assert r.gpu_mem_mb * 1e6 >= onnx_files["dyn"].stat().st_size  # the weights are in the figure
    n_bufs = len(trt_double.MEMORY)
    r.run(_x(8))  # input/output buffers grow: the old ones are freed, not leaked
    assert len(trt_double.MEMORY) == n_bufs and r.last_gpu_ms is not None and r.last_gpu_ms >= 0
    r.close()
    assert not hasattr(r, "engine") and not r._buffers
    import gc

    gc.collect()
    assert trt_double.used_bytes() <= before


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_review_stale_timing_cache_starts_a_new_one(flavour, monkeypatch, tmp_path, onnx_files):
    """A timing.cache TensorRT cannot read (another TensorRT after a JetPack upgrade: create_timing_cache -> None) or
    made on another device (set_timing_cache -> False) does not break the build: a new cache is written instead."""
    from edgeres_deploy.trt import BuildSpec, TrtRunner, build_engine

    trt_double.install(monkeypatch, flavour)
    for i, stale in enumerate((b"timing cache of another TensorRT", trt_double.timing_cache_blob("Jetson AGX Orin"))):
        cache = tmp_path / f"timing{i}.cache"
        cache.write_bytes(stale)
        spec = BuildSpec(onnx=str(onnx_files["dyn"]), engine=str(tmp_path / f"m{i}.engine"), input_shape=(3, 32, 32),
                         int8=False, timing_cache=str(cache))
        logged = []
        build_engine(spec, log=logged.append)
        assert cache.read_bytes() == trt_double.timing_cache_blob() and any("timing cache" in m for m in logged)
        assert TrtRunner(spec.engine).run(_x(1)).shape[0] == 1


@pytest.mark.parametrize("flavour", ["8.5", "11"])
def test_review_cuda_python_path_frees_what_it_grows(flavour, monkeypatch, tmp_path, onnx_files):
    """The cuda-python path (no pycuda): runs, times with events, and frees the device and page-locked host buffers it
    replaces when a batch grows, and all of them on close."""
    from edgeres_deploy.cuda_mem import cuda_api
    from edgeres_deploy.trt import BuildSpec, TrtRunner, build_engine

    trt_double.install(monkeypatch, flavour, cuda="cuda-python")
    assert cuda_api().name == "cuda-python"
    spec = BuildSpec(onnx=str(onnx_files["dyn"]), engine=str(tmp_path / "m.engine"), input_shape=(3, 32, 32), int8=False)
    assert build_engine(spec, log=lambda *a: None)["device"] == trt_double.DEVICE_NAME
    r = TrtRunner(spec.engine)
    pinned, device = len(trt_double.PINNED), len(trt_double.MEMORY)
    for n in (2, 5, 8):  # each batch is larger: every buffer is replaced
        x = _x(n)
        np.testing.assert_allclose(r.run(x), _ort(onnx_files["dyn"], x), rtol=1e-4, atol=1e-4)
        assert r.last_gpu_ms is not None and r.last_gpu_ms >= 0
    assert len(trt_double.PINNED) == pinned and len(trt_double.MEMORY) == device
    r.close()
    assert len(trt_double.PINNED) == pinned - 2


@pytest.mark.parametrize("flavour", ["10.3"])
def test_review_profile_takes_the_onnx_image_size(flavour, monkeypatch, tmp_path, onnx_files):
    """A preprocess size that is not the ONNX's (e.g. `build-engine --image-size 48` on a 32 px export): TensorRT
    refuses a profile that disagrees with the network's fixed dimensions, so the profile and the trtexec line take the
    ONNX input's own C, H, W."""
    trt_double.install(monkeypatch, flavour)
    res = run_engine(onnx_files["dyn"], tmp_path / "m.engine", get_target("jetson-orin-nano"), Preprocess(size=48))
    assert "--minShapes=input:1x3x32x32" in res["trtexec"] and res["sidecar"]["shapes"]["max"][1:] == [3, 32, 32]


@pytest.mark.parametrize("flavour", ["8.5", "10.3"])
def test_review_implicit_int8_sets_the_calibration_profile(flavour, monkeypatch, tmp_path, onnx_files):
    """Implicit INT8 from a calibration cache (Xavier NX, TensorRT 8.5) on a dynamic-batch ONNX: the calibration
    profile is set to the opt shapes, as NvInfer.h requires and trtexec does."""
    from edgeres_deploy.trt import BuildSpec, build_engine

    trt_double.install(monkeypatch, flavour)
    (tmp_path / "calib.cache").write_text("TRT-8502-EntropyCalibration2\n")
    spec = BuildSpec(onnx=str(onnx_files["dyn"]), engine=str(tmp_path / "m.engine"), input_shape=(3, 32, 32),
                     batch=(1, 4, 8), calib_cache=str(tmp_path / "calib.cache"))
    assert build_engine(spec, log=lambda *a: None)["precision"] == "int8+fp16"


@pytest.mark.parametrize("flavour", ["8.5", "10.3"])
def test_review_dla_without_fp16_builds_fp16_as_trtexec(flavour, monkeypatch, tmp_path, onnx_files):
    """`build --dla-core 0 --no-fp16` of an FP32 ONNX: DLA computes FP16/INT8 only, so FP16 is set as trtexec
    --useDLACore does (the printed trtexec line has no --fp16 and still runs the DLA in FP16)."""
    import edgeres_deploy.trt as T

    trt_double.install(monkeypatch, flavour, dla_cores=2)
    spec = T.for_dla(T.BuildSpec(onnx=str(onnx_files["dyn"]), engine=str(tmp_path / "m.engine"), input_shape=(3, 32, 32),
                                 int8=False, fp16=False), 0)
    side = T.build_engine(spec, log=lambda *a: None)
    assert side["precision"] == "fp16" and side["build_spec"]["fp16"] is False  # the spec as asked: freshness holds
    assert "--fp16" not in T.trtexec_command(spec)
