import json

import pytest

from edgeres.data import Preprocess
from edgeres.errors import EdgeresError
from edgeres.stages.engine import build_spec, run_engine, trtexec_line
from edgeres.targets import ALIASES, TARGETS, get_target, list_targets
from edgeres_deploy.trt import BuildSpec, trtexec_command, version_family


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
    assert s.batch == (1, nx.batch, nx.max_batch)
    with pytest.raises(EdgeresError, match="DLA cores"):
        build_spec("m.onnx", "m.engine", get_target("jetson-orin-nano"), pre, dla_core=0, int8=True)
    with pytest.raises(EdgeresError, match="2:4"):
        build_spec("m.onnx", "m.engine", get_target("jetson-xavier-nx"), pre, sparsity=True, int8=True)
    with pytest.raises(EdgeresError, match="not TensorRT"):
        build_spec("m.onnx", "m.engine", get_target("x86-cpu"), pre, int8=True)
    assert build_spec("m.onnx", "m.engine", nx, pre, fixed_batch=4, int8=True).batch == (4, 4, 4)
    assert "trtexec --onnx=m.onnx" in trtexec_line(s)


def test_engine_stage_skips_with_reason_without_tensorrt(tmp_path, tiny_ckpt, cli):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt installed: the build itself is tested by test_trt_build")
    except ImportError:
        pass
    from edgeres.models import load_model
    from edgeres.stages.export import export_onnx

    lm = load_model(tiny_ckpt)
    export_onnx(lm.model, tmp_path / "m.onnx", Preprocess(size=32), lm.meta)
    res = run_engine(tmp_path / "m.onnx", tmp_path / "m.engine", get_target("jetson"), Preprocess(size=32))
    assert res["status"] == "skipped" and "tensorrt not importable" in res["note"]
    assert res["trtexec"].startswith("trtexec --onnx=") and not (tmp_path / "m.engine").exists()
    proc = cli("build-engine", "--onnx", tmp_path / "m.onnx", "--target", "jetson-agx-orin", "--out", tmp_path / "e.engine")
    assert proc.returncode == 0 and "skipped" in proc.stderr and "trtexec --onnx=" in proc.stdout


@pytest.mark.trt
def test_trt_build_and_run(tmp_path, tiny_ckpt, demo_data):
    """Runs only where TensorRT and a CUDA device exist (a Jetson, a GPU workstation): real build, real inference."""
    pytest.importorskip("tensorrt")
    import numpy as np

    from edgeres.models import load_model
    from edgeres.runtimes.ort import OrtRuntime
    from edgeres.stages.export import export_onnx
    from edgeres.stages.quantize import QuantizeConfig, run_quantize
    from edgeres_deploy.trt import TrtRunner

    lm = load_model(tiny_ckpt)
    export_onnx(lm.model, tmp_path / "m.onnx", Preprocess(size=32), lm.meta)
    run_quantize(tmp_path / "m.onnx", demo_data, get_target("cuda-gpu"), tmp_path / "q.onnx", QuantizeConfig(subset_size=20))
    res = run_engine(tmp_path / "q.onnx", tmp_path / "q.engine", get_target("cuda-gpu"), Preprocess(size=32))
    if res["status"] == "skipped":
        pytest.skip(res["note"])
    side = json.loads((tmp_path / "q.engine.json").read_text())
    assert side["onnx_sha256"] and side["precision"].startswith("int8")
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    got = TrtRunner(str(tmp_path / "q.engine")).run(x)
    ref = OrtRuntime(tmp_path / "q.onnx").run(x)
    assert got.shape == ref.shape and (got.argmax(1) == ref.argmax(1)).mean() >= 0.5
