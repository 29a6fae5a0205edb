"""The x86-cpu INT8 file: exact graph rules after NNCF (same outputs), every activation uint8, ONNX Runtime fuses it
at least as fully as its own quantize_static, and OpenVINO compiles it (no timing here: see benchmarks/)."""

import collections

import numpy as np
import onnx
import pytest

from edgeres.data import Preprocess
from edgeres.models import ModelMeta, build_model
from edgeres.onnx_export import export_onnx
from edgeres.quant.ptq import quantize_onnx
from edgeres.quant.settings import QuantizeConfig
from edgeres.targets import get_target


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from edgeres.calibration import ArrayDataReader
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    d = tmp_path_factory.mktemp("x86")
    calib = np.random.default_rng(0).standard_normal((4, 3, 64, 64)).astype(np.float32)
    fp = d / "fp.onnx"
    export_onnx(build_model("resnet18", 10).eval(), fp, Preprocess(size=64), ModelMeta(classes=list("abcdefghij")))
    info = quantize_onnx(fp, d / "edgeres.onnx", get_target("x86-cpu"), calib,
                         QuantizeConfig(method="minmax", subset_size=4, bias_correction=False))
    quantize_static(str(fp), str(d / "ort.onnx"), ArrayDataReader(calib, "input"), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
    return {"fp": fp, "edgeres": d / "edgeres.onnx", "ort": d / "ort.onnx", "info": info, "dir": d}


def _ort_ops(path, tmp):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(tmp)
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return collections.Counter(n.op_type for n in onnx.load(str(tmp)).graph.node)


def test_rules_applied_and_activations_are_uint8(files):
    from onnx import TensorProto

    r = files["info"]["x86_rules"]
    assert r["passthrough_requantized"] == 2 and r["relu_folded"] >= 8 and r["activations_to_uint8"] > 0
    m = onnx.load(str(files["edgeres"]))
    inits = {i.name: i for i in m.graph.initializer}
    q_zps = [inits[n.input[2]].data_type for n in m.graph.node if n.op_type == "QuantizeLinear"]
    assert q_zps and all(t == TensorProto.UINT8 for t in q_zps)  # ORT's x86 fast path: u8 activations


def test_rules_are_exact(files, monkeypatch):
    """The graph rules change no output bit; moving the Gemm's bias out (so it runs as QGemm) changes only the float
    summation order."""
    import nncf
    from edgeres.calibration import nncf_dataset

    from edgeres.quant import x86_rules
    from edgeres.quant.settings import nncf_settings
    from edgeres.runtimes.ort import OrtRuntime

    calib = np.random.default_rng(0).standard_normal((4, 3, 64, 64)).astype(np.float32)
    raw = nncf.quantize(onnx.load(str(files["fp"])), nncf_dataset(calib, "input"),
                        **nncf_settings("ort-u8s8", QuantizeConfig(method="minmax", subset_size=4, bias_correction=False)))
    onnx.save(raw, str(files["dir"] / "raw.onnx"))
    x = np.random.default_rng(1).standard_normal((2, 3, 64, 64)).astype(np.float32)
    with OrtRuntime(files["dir"] / "raw.onnx") as rt:
        ref = rt.run(x)

    def ruled(name):
        m = onnx.load(str(files["dir"] / "raw.onnx"))
        counts = x86_rules.apply_x86_rules(m)
        onnx.checker.check_model(m)
        onnx.save(m, str(files["dir"] / name))
        with OrtRuntime(files["dir"] / name) as rt:
            return counts, rt.run(x)

    counts, out = ruled("ruled.onnx")
    assert counts["gemm_bias_split"] == 1
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
    assert np.array_equal(out.argmax(1), ref.argmax(1))
    monkeypatch.setattr(x86_rules, "split_gemm_bias", lambda m: 0)
    counts, out = ruled("exact.onnx")
    assert counts["passthrough_requantized"] == 2 and np.array_equal(out, ref)


def test_ort_fuses_it_like_quantize_static(files, tmp_path):
    ours, peer = _ort_ops(files["edgeres"], tmp_path / "a.onnx"), _ort_ops(files["ort"], tmp_path / "b.onnx")
    for op in ("QLinearConv", "QLinearAdd"):
        assert ours[op] >= peer[op] > 0, (ours, peer)
    assert ours["QGemm"] >= peer["QGemm"] == 1  # the classifier too: no weight dequantized per call
    assert ours["Conv"] == 0 and ours["Gemm"] == 0 and ours["Add"] == 1  # nothing float but the classifier's bias


def test_openvino_compiles_it(files):
    pytest.importorskip("openvino")
    from edgeres.runtimes.openvino_rt import OpenVinoRuntime

    with OpenVinoRuntime(files["edgeres"]) as rt:
        assert rt.run(np.zeros((1, 3, 64, 64), np.float32)).shape == (1, 10) and rt.precision == "int8"


# ------------------------------------------------------------------------------------------------ the faster runtime
def _row(stage, runtime, p50, batch=1, top1=50.0, delta=-0.2, precision="int8"):
    from edgeres.report import new_row

    return new_row(stage=stage, runtime=runtime, latency_p50_ms=p50, batch_size=batch, status="ok", top1=top1,
                   top1_delta=delta, precision=precision, artifact="model_int8.onnx")


def test_recommendation_for_x86_takes_the_faster_runtime():
    from edgeres.recommend import faster_runtime, recommend

    rows = [_row("baseline", "torch", 70.0, delta=0.0, precision="fp32"),
            _row("baseline", "onnxruntime", 49.0, delta=0.0, precision="fp32"),
            _row("quantize", "onnxruntime", 8.6), _row("quantize", "openvino", 6.9),
            _row("quantize", "openvino", 40.0, batch=8)]
    assert faster_runtime(rows) == ("openvino", {"onnxruntime": 8.6, "openvino": 6.9})
    rec = recommend(rows, get_target("x86-cpu"), 1.0)
    assert rec["runtime"] == "openvino" and rec["runtimes_p50_ms"] == {"onnxruntime": 8.6, "openvino": 6.9}
    assert rec["speedup"] == pytest.approx(49.0 / 6.9) and rec["speedup_reference"] == "baseline/onnxruntime"
    rows[3]["latency_p50_ms"] = 9.5
    assert recommend(rows, get_target("x86-cpu"), 1.0)["runtime"] == "onnxruntime"
    # TensorRT targets never recommend an OpenVINO row
    assert recommend(rows, get_target("jetson"), 1.0)["runtime"] != "openvino"


def test_x86_bundle_runs_openvino_without_torch(files, tmp_path):
    """The bundle whose manifest names OpenVINO runs it with --backend auto, torch made unimportable."""
    pytest.importorskip("openvino")
    import subprocess
    import sys
    import tarfile

    from edgeres.bundle import make_bundle

    out = tmp_path / "b.tar.gz"
    make_bundle(out, files["edgeres"], get_target("x86-cpu"), Preprocess(size=64), list("abcdefghij"),
                extra={"backend": "openvino"})
    root = tmp_path / "bundle"
    with tarfile.open(out) as tar:
        tar.extractall(root, filter="data")
    assert (root / "edgeres_deploy" / "openvino_backend.py").exists()
    code = ("import sys; sys.modules['torch'] = None; sys.modules['edgeres'] = None; "
            "from edgeres_deploy.__main__ import main; "
            "sys.exit(main(['bench', '--min-time', '0.1', '--min-runs', '3', '--warmup', '1']))")
    p = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.startswith("openvino batch 1:"), p.stdout
