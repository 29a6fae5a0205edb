"""What each TensorRT release accepts and reports, against the test double's 8.5, 10.3 and 11 flavours (issue 21):
the bundle's trtexec line, check-onnx's zero-point rule, the ONNX parser's rules, DataTypes and nptype, DLA per release
and the engine inspector's JSON (sources in tests/trt_double/onnx_rules.py and __init__.py)."""

import json

import numpy as np
import pytest
import trt_double

from edgeres.data import Preprocess
from edgeres.engine_build import run_engine
from edgeres.errors import Unavailable
from edgeres.targets import get_target


def _qdq_2in_onnx(path, opset: int = 13, zero_point=None, zp_dtype=np.int8, uint8_input: bool = False):
    """A small Q/DQ classifier; ``zero_point`` None: Q/DQ with two inputs (no zero-point, the ONNX default)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(np.array(0.05, np.float32), "s"),
             numpy_helper.from_array((rng.standard_normal((4, 3, 3, 3)) * 0.3).astype(np.float32), "w")]
    qin = ["input", "s"]
    if zero_point is not None:
        inits.append(numpy_helper.from_array(np.array(zero_point, zp_dtype), "z"))
        qin.append("z")
    first = "x" if uint8_input else "input"
    nodes = [helper.make_node("QuantizeLinear", ["input", *qin[1:]], ["xq"], name="q"),
             helper.make_node("DequantizeLinear", ["xq", *qin[1:]], ["xd"], name="dq"),
             helper.make_node("Conv", ["xd", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("GlobalAveragePool", ["c"], ["p"], name="pool"),
             helper.make_node("Flatten", ["p"], ["logits"], name="flatten")]
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 32, 32])]
    if uint8_input:  # a DequantizeLinear reading a uint8 graph input (what 8.5's parser refuses)
        inputs = [helper.make_tensor_value_info("input", TensorProto.UINT8, ["N", 3, 32, 32])]
        nodes = [helper.make_node("DequantizeLinear", ["input", *qin[1:]], ["xd"], name="dq"), *nodes[2:]]
    del first
    g = helper.make_graph(nodes, "qdq", inputs, [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])],
                          inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.save(m, str(path))


def test_issue21_item5_trtexec_line_names_the_bundle_files(tmp_path, tiny_onnx):
    """The engine stage's line (engine/trtexec.txt, the report note) is run in the unpacked bundle on the device: it
    names model.onnx, model.engine, timing.cache, never the host's paths or model_int8.onnx."""
    import shutil

    host = tmp_path / "run" / "quantize"
    host.mkdir(parents=True)
    shutil.copy(tiny_onnx, host / "model_int8.onnx")
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt installed: the build runs instead of printing the line")
    except ImportError:
        pass
    with pytest.raises(Unavailable) as e:
        run_engine(host / "model_int8.onnx", tmp_path / "run" / "engine" / "model.engine", get_target("jetson-agx-orin"),
                   Preprocess(size=32), dla_core=0)
    line = e.value.info["trtexec"]
    assert line.startswith("trtexec --onnx=model.onnx --saveEngine=model.engine ")
    assert "--timingCacheFile=timing.cache" in line and "--useDLACore=0" in line
    assert str(tmp_path) not in line and "model_int8" not in line


@pytest.mark.parametrize("target,flagged", [("jetson-xavier-nx", True), ("jetson-orin-nano", False), ("jetson-thor", False)])
def test_issue21_item6_qdq_without_zero_point(tmp_path, target, flagged):
    """check-onnx flags a Q/DQ without its zero-point input for TensorRT 8.5 (whose parser asserts three inputs), not
    for 10.x/11; the 8.5 double's parser refuses the file the same way."""
    from edgeres.onnx_check import check_file

    _qdq_2in_onnx(tmp_path / "q.onnx")
    found = [v for v in check_file(tmp_path / "q.onnx", get_target(target)) if v.rule == "zero-point"]
    assert bool(found) == flagged
    if flagged:
        assert "requires three inputs" in str(found[0]) and found[0].severity == "error"


def test_issue21_item7_parser_rules_per_flavour(tmp_path):
    """The double's ONNX parser: opset cap and three-input Q/DQ on 8.5; non-zero zero-points refused by all; a UINT8
    zero-point is taken with a warning on 10.x; a UINT8 tensor into Q/DQ refused on 8.5 (sources: onnx_rules.py)."""
    cases = {"two_inputs": dict(), "opset18": dict(zero_point=0, opset=18), "nonzero": dict(zero_point=3),
             "uint8_zp": dict(zero_point=0, zp_dtype=np.uint8), "uint8_input": dict(zero_point=0, zp_dtype=np.uint8,
                                                                                   uint8_input=True)}
    expect = {"8.5": {"two_inputs": "requires 3 inputs", "opset18": "up to Opset 17", "nonzero": "zeroPt must be all zeros",
                      "uint8_zp": None, "uint8_input": "invalid input type of UINT8"},
              "10.3": {"two_inputs": None, "opset18": None, "nonzero": "zeroPt must be all zeros", "uint8_zp": None,
                       "uint8_input": None}}
    for flavour, want in expect.items():
        trt = trt_double.make_tensorrt(flavour)
        for name, kw in cases.items():
            _qdq_2in_onnx(tmp_path / f"{name}.onnx", **kw)
            logger = trt.Logger()
            net = trt.Builder(logger).create_network(1 if flavour == "8.5" else 0)
            parser = trt.OnnxParser(net, logger)
            ok = parser.parse((tmp_path / f"{name}.onnx").read_bytes())
            errors = " ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            assert ok == (want[name] is None), (flavour, name, errors)
            if want[name]:
                assert want[name] in errors, (flavour, name, errors)
        warned = [m for _, m in trt._logs if "UINT8 zero_point" in m]
        assert bool(warned) == (flavour == "10.3")


def test_issue21_item7_types_dla_and_runtime_defaults():
    """DataType per release (FP8/BF16/INT4 from 10, FP4/E8M0 in 11) and nptype's TypeError for them; no DLA in the
    11.0 flavour; IRuntime.DLA_core defaults to -1."""
    t85, t10, t11 = (trt_double.make_tensorrt(f, dla_cores=2) for f in ("8.5", "10.3", "11"))
    assert not hasattr(t85.DataType, "BF16") and t10.DataType.BF16.value == 7 and t10.DataType.FP8.value == 6
    assert t10.DataType.INT4.value == 9 and not hasattr(t10.DataType, "FP4") and t11.DataType.FP4.value == 10
    for t in (t10, t11):
        for name in ("FP8", "BF16", "INT4"):
            with pytest.raises(TypeError, match="Could not resolve TensorRT datatype"):
                t.nptype(getattr(t.DataType, name))
    assert t85.Builder.num_DLA_cores == 2 and t10.Builder.num_DLA_cores == 2 and t11.Builder.num_DLA_cores == 0
    assert all(t.Runtime(t.Logger()).DLA_core == -1 for t in (t85, t10, t11))


def test_issue21_item8_np_dtype_raises_type_error_naming_the_type(monkeypatch, tmp_path):
    """An engine with BF16 inputs: the real nptype raises TypeError (not AttributeError): the runner says which type
    numpy lacks, in one line."""
    import onnx
    from edgeres_deploy.trt import BuildSpec, TrtRunner, build_engine
    from edgeres_deploy.trt_api import np_dtype
    from onnx import TensorProto, helper

    trt = trt_double.install(monkeypatch, "10.3")
    with pytest.raises(TypeError, match="TensorRT type BF16, which has no numpy type"):
        np_dtype(trt, trt.DataType.BF16)
    g = helper.make_graph([helper.make_node("Cast", ["input"], ["x"], to=TensorProto.FLOAT),
                           helper.make_node("GlobalAveragePool", ["x"], ["p"]), helper.make_node("Flatten", ["p"], ["logits"])],
                          "bf16", [helper.make_tensor_value_info("input", TensorProto.BFLOAT16, ["N", 3, 32, 32])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "b.onnx"))
    build_engine(BuildSpec(onnx=str(tmp_path / "b.onnx"), engine=str(tmp_path / "b.engine"), input_shape=(3, 32, 32),
                           int8=False), log=lambda *a: None)
    with pytest.raises(TypeError, match="BF16, which has no numpy type"):
        TrtRunner(str(tmp_path / "b.engine"))


@pytest.mark.parametrize("flavour,dla_layers", [("8.5", 0), ("10.3", 1)])
def test_issue21_item7_dla_refuses_qdq_on_85_and_the_inspector_tells(flavour, dla_layers, monkeypatch, tmp_path):
    """A Q/DQ network on DLA core 0: 8.5 runs no layer there (the build warns first, the sidecar's dla_core is None),
    10.3 runs the DLA-capable layers as one subgraph; without GPU fallback the 8.5 build fails."""
    import edgeres_deploy.trt as T
    from edgeres_deploy.trt_api import placement

    trt = trt_double.install(monkeypatch, flavour, dla_cores=2)
    _qdq_2in_onnx(tmp_path / "q.onnx", zero_point=0)
    spec = T.for_dla(T.BuildSpec(onnx=str(tmp_path / "q.onnx"), engine=str(tmp_path / "q.engine"),
                                 input_shape=(3, 32, 32), int8=True), 0)
    logged = []
    side = T.build_engine(spec, log=logged.append)
    assert side["layers"]["dla"] == dla_layers and side["dla_requested"] == 0
    assert side["dla_core"] == (0 if dla_layers else None)
    assert any("does not take explicit (Q/DQ) quantization" in m for m in logged) == (flavour == "8.5")
    r = T.TrtRunner(spec.engine)
    info = r.engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON)
    doc = json.loads(info)
    assert set(doc) == {"Layers", "Bindings"} and all(isinstance(layer, dict) for layer in doc["Layers"])
    assert placement(info) == r.placement and r.placement["detailed"]
    if flavour == "8.5":  # no GPU fallback: the DLA build of a Q/DQ network fails
        logger = trt.Logger()
        b = trt.Builder(logger)
        net = b.create_network(1)
        assert trt.OnnxParser(net, logger).parse((tmp_path / "q.onnx").read_bytes())
        cfg = b.create_builder_config()
        cfg.default_device_type, cfg.DLA_core = trt.DeviceType.DLA, 0
        cfg.set_flag(trt.BuilderFlag.INT8)
        prof = b.create_optimization_profile()
        prof.set_shape("input", (1, 3, 32, 32), (1, 3, 32, 32), (1, 3, 32, 32))
        cfg.add_optimization_profile(prof)
        assert b.build_serialized_network(net, cfg) is None


def test_issue21_inspector_json_shapes_per_release():
    """LAYER_NAMES_ONLY gives names, DETAILED objects; 11.x says "I/O Tensors" instead of "Bindings"; the product
    counts a {ForeignNode[...]} as one DLA layer, nvm copies as neither, by type when it has them."""
    from edgeres_deploy.trt_api import placement, placement_text
    from trt_double import onnx_rules

    meta = {"inputs": [["input", [1, 3, 32, 32], "FLOAT"]], "outputs": [["logits", [1, 4], "FLOAT"]],
            "dla_layers": ["conv", "pool"], "gpu_layers": ["flatten"]}
    names = json.loads(onnx_rules.inspector_json(meta, False, 10))
    assert all(isinstance(n, str) for n in names["Layers"]) and names["Bindings"] == ["input", "logits"]
    assert "I/O Tensors" in json.loads(onnx_rules.inspector_json(meta, True, 11))
    for detailed in (False, True):
        p = placement(onnx_rules.inspector_json(meta, detailed, 10))
        assert (p["dla"], p["gpu"], p["nvm"], p["detailed"]) == (1, 1, 3, detailed)
    p = placement(json.dumps({"Layers": [{"Name": "{ForeignNode[a...b]}", "LayerType": "Myelin"}]}))
    assert p["dla"] == 0 and p["gpu"] == 1  # a Myelin subgraph on the GPU is no DLA layer
    assert "no layer runs on it" in placement_text({"dla": 0, "gpu": 3, "nvm": 0, "detailed": True}, 1)


def test_double_flavours_follow_the_bindings():
    """The double's surface per release (pyCore.cpp / pyInt8.cpp at 8.5.2, v10.3.0, v11.0): what the product may use."""
    t85, t10, t11 = (trt_double.make_tensorrt(f) for f in ("8.5", "10.3", "11"))
    assert hasattr(t85.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH") and not hasattr(t85.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
    assert hasattr(t10.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH") and hasattr(t10.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
    assert not hasattr(t11.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH")
    assert hasattr(t85.BuilderFlag, "INT8") and hasattr(t10.BuilderFlag, "FP16") and not hasattr(t11.BuilderFlag, "INT8")
    assert hasattr(t85, "IInt8EntropyCalibrator2") and not hasattr(t11, "IInt8EntropyCalibrator2")
    assert hasattr(t10.Builder, "platform_has_fast_fp16") and not hasattr(t11.Builder, "platform_has_fast_fp16")
    assert t10.DataType.INT64.value == 8 and not hasattr(t85.DataType, "INT64")  # NvInferRuntimeBase.h kINT64 = 8
    # an 8.5 network without EXPLICIT_BATCH is implicit-batch: the ONNX parser refuses it
    net = t85.Builder(t85.Logger()).create_network(0)
    assert not t85.OnnxParser(net, t85.Logger()).parse(b"")


def test_review_nptype_of_85_with_numpy_124(monkeypatch, tmp_path):
    """TensorRT 8.5.2's ``trt.nptype`` reads ``np.bool`` (gone in numpy 1.24-1.26, what pip gives JetPack 5's Python
    3.8): the runner still takes the engine's dtypes (trt_double docstring cites the source line)."""
    import onnxruntime as ort
    from edgeres_deploy.trt import BuildSpec, TrtRunner, build_engine
    from test_faults_bundle import _tiny_onnx

    _tiny_onnx(tmp_path / "m.onnx", 3)
    trt = trt_double.install(monkeypatch, "8.5")
    np_bool = np.bool
    monkeypatch.delattr(np, "bool")  # numpy 1.24-1.26
    with pytest.raises(AttributeError):
        trt.nptype(trt.DataType.FLOAT)
    build_engine(BuildSpec(onnx=str(tmp_path / "m.onnx"), engine=str(tmp_path / "m.engine"), input_shape=(3, 32, 32),
                           int8=False), log=lambda *a: None)
    r = TrtRunner(str(tmp_path / "m.engine"))
    assert r.in_dtype == np.float32 and r.out_dtype == np.float32
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    got = r.run(x)
    np.bool = np_bool  # numpy 2's own testing helpers need it back
    ref = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_dla_core_on_thor_is_refused_before_any_build(cli, tmp_path):
    """jetson-thor has no DLA: --dla-core 0 is refused by the build spec (the engine stage) before any build, with the
    reason; on build-engine it is a usage error (exit 2) before the ONNX file is read, and nothing is written."""
    from test_faults_bundle import _tiny_onnx

    from edgeres.engine_build import build_spec
    from edgeres.errors import EdgeresError

    _tiny_onnx(tmp_path / "m.onnx", 3)
    with pytest.raises(EdgeresError, match="refused for target jetson-thor .*no DLA core"):
        build_spec(tmp_path / "m.onnx", "e", get_target("jetson-thor"), Preprocess(size=32), dla_core=0)
    proc = cli("build-engine", "--onnx", tmp_path / "m.onnx", "--target", "jetson-thor", "--dla-core", "0",
               "--out", tmp_path / "t.engine")
    assert proc.returncode == 2 and "--dla-core 0: target jetson-thor has no DLA core" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "t.engine").exists()
    assert build_spec(tmp_path / "m.onnx", "e", get_target("jetson-agx-orin"), Preprocess(size=32), dla_core=0).dla_core == 0
