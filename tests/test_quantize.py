import json
import os

import numpy as np
import onnx
import pytest
from edgeres.calibration import (
    CalibrationError,
    activation_scales_from_qdq,
    calibration_set_from,
    hex_to_scale,
    load_manifest,
    read_trt_cache,
    scale_to_hex,
    select_stratified,
    trt_cache_header,
    write_manifest,
)
from PIL import Image

from edgeres.errors import EdgeresError
from edgeres.onnx_check import check_file
from edgeres.quant.run import run_quantize
from edgeres.quant.settings import QuantizeConfig
from edgeres.targets import get_target


@pytest.fixture(scope="module")
def fp32_onnx(tiny_onnx):
    return tiny_onnx  # conftest: exported once per session


@pytest.fixture(scope="module")
def trt_int8(tmp_path_factory, fp32_onnx, demo_data):
    out = tmp_path_factory.mktemp("qt") / "trt.onnx"
    info = run_quantize(fp32_onnx, demo_data, get_target("jetson-orin-nano"), out, QuantizeConfig(subset_size=40), data=demo_data)
    return out, info


def test_trt_int8_passes_check_onnx_and_is_signed(trt_int8):
    out, info = trt_int8
    assert check_file(out, get_target("jetson-orin-nano")) == []
    assert set(info["summary"]["qdq_dtypes"]) == {"int8"} and info["summary"]["nonzero_zero_points"] == 0
    assert info["adds_rewritten"] >= 1  # residual Adds rewritten to TensorRT's Conv+Add fusion placement
    assert abs(info["top1_int8"] - info["top1_fp32"]) <= 10.0  # tiny model; the real check is in the benchmark
    assert os.path.exists(info["manifest"])


def test_add_rule_covers_downsample_blocks(trt_int8):
    """Every residual Add keeps Q/DQ on one input only: the shortcut's, also where the shortcut is a Conv
    (downsample blocks: ResNet18 has three, ResNet50 four); the main branch's Conv output stays unquantized."""
    m = onnx.load(trt_int8[0])
    producer = {o: n for n in m.graph.node for o in n.output}
    adds = [n for n in m.graph.node if n.op_type == "Add"]
    downsample = 0
    for add in adds:
        kinds = [producer[i].op_type for i in add.input]
        assert sorted(kinds) in (["Conv", "DequantizeLinear"], ["Conv", "MaxPool"]), (add.name, kinds)
        if "MaxPool" in kinds:  # the stem's MaxPool reads a DQ: quantized (TensorRT moves the DQ across it)
            assert producer[producer[add.input[kinds.index("MaxPool")]].input[0]].op_type == "DequantizeLinear"
            continue
        dq = producer[add.input[kinds.index("DequantizeLinear")]]
        src = producer.get(producer[dq.input[0]].input[0])
        if src is not None and src.op_type == "Conv":
            downsample += 1
            assert "downsample" in src.name and "downsample" not in producer[add.input[kinds.index("Conv")]].name
    assert downsample == 3


def test_uint8_file_fails_check_onnx(tmp_path, fp32_onnx, demo_data, cli):
    out = tmp_path / "x86.onnx"
    info = run_quantize(fp32_onnx, demo_data, get_target("x86-cpu"), out, QuantizeConfig(subset_size=20))
    assert "uint8" in info["summary"]["qdq_dtypes"]
    violations = check_file(out, get_target("jetson-orin-nano"))
    assert any(v.rule == "int8" and "UINT8" in v.message for v in violations)
    proc = cli("check-onnx", out, "--target", "jetson-orin-nano")
    assert proc.returncode == 1 and "UINT8" in proc.stderr and "Traceback" not in proc.stderr
    assert cli("check-onnx", out, "--target", "x86-cpu").returncode == 0


def test_fp32_file_and_nano_rules(fp32_onnx, trt_int8):
    assert check_file(fp32_onnx, get_target("jetson-nano")) == []
    assert any(v.rule == "precision" for v in check_file(trt_int8[0], get_target("jetson-nano")))


def test_opset_rule(tmp_path, fp32_onnx):
    m = onnx.load(fp32_onnx)
    m.opset_import[0].version = 21
    onnx.save(m, tmp_path / "new.onnx")
    v = check_file(tmp_path / "new.onnx", get_target("jetson-xavier-nx"))
    assert any(x.rule == "opset" for x in v)


def test_legacy_target_writes_calibration_cache(tmp_path, fp32_onnx, demo_data):
    out = tmp_path / "legacy.onnx"
    info = run_quantize(fp32_onnx, demo_data, get_target("jetson-xavier-nx"), out, QuantizeConfig(subset_size=20))
    header, scales = read_trt_cache(info["calib_cache"])
    assert header == "TRT-8502-EntropyCalibration2"
    fp32_names = {o for n in onnx.load(fp32_onnx).graph.node for o in n.output} | {"input"}
    assert scales and set(scales) <= fp32_names  # names of the FP32 ONNX's tensors, as TensorRT sees them
    assert all(s > 0 for s in scales.values())


def test_cache_encoding():
    assert trt_cache_header("8.5.2") == "TRT-8502-EntropyCalibration2"
    # from 10.0 on NV_TENSORRT_VERSION is major*10000 + minor*100 + patch (include/NvInferRuntimeBase.h)
    assert trt_cache_header("10.3.0") == "TRT-100300-EntropyCalibration2"
    assert trt_cache_header("10.13.2") == "TRT-101302-EntropyCalibration2"
    assert trt_cache_header("11.0") == "TRT-110000-EntropyCalibration2"
    assert scale_to_hex(1.0) == "3f800000"
    assert hex_to_scale(scale_to_hex(0.0123)) == pytest.approx(0.0123, rel=1e-6)


def test_activation_scales_convert_uint8_to_symmetric():
    from onnx import TensorProto, helper, numpy_helper

    q = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"])
    g = helper.make_graph([q], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("q", TensorProto.UINT8, [1])],
                          [numpy_helper.from_array(np.array(0.1, np.float32), "s"),
                           numpy_helper.from_array(np.array(0, np.uint8), "z")])
    scales = activation_scales_from_qdq(helper.make_model(g))
    assert scales["x"] == pytest.approx(25.5 / 127)


def test_calibration_set_is_deterministic_stratified_and_audited(tmp_path, demo_data):
    from edgeres.data import Preprocess, resolve_data

    a = calibration_set_from(demo_data, 30, seed=1)
    b = calibration_set_from(demo_data, 30, seed=1)
    assert a.items == b.items and len(a) == 30
    counts = {}
    for _, c in a.items:
        counts[c] = counts.get(c, 0) + 1
    assert set(counts.values()) == {3}  # 10 classes x 3
    train = set(p for p, _ in resolve_data(demo_data).train)
    assert set(a.paths) <= train
    pre = Preprocess(size=32)
    write_manifest(tmp_path / "m.json", a, pre)
    back, pre2 = load_manifest(tmp_path / "m.json")
    assert back.items == a.items and pre2 == pre
    doc = json.loads((tmp_path / "m.json").read_text())
    assert doc["seed"] == 1 and all(len(i["sha256"]) == 64 for i in doc["images"])
    assert select_stratified(resolve_data(demo_data).train, 30, seed=2).items != a.items  # the seed matters


def test_manifest_detects_changed_image(tmp_path):
    for i in range(3):
        Image.new("RGB", (40, 40), (i * 40, 0, 0)).save(tmp_path / f"{i}.png")
    cs = calibration_set_from(tmp_path, 3)
    from edgeres.data import Preprocess

    write_manifest(tmp_path / "m.json", cs, Preprocess(size=32))
    Image.new("RGB", (40, 40), (0, 255, 0)).save(tmp_path / "1.png")
    with pytest.raises(CalibrationError, match="changed"):
        load_manifest(tmp_path / "m.json")


def test_bad_quantize_inputs_leave_no_file(tmp_path, fp32_onnx, demo_data):
    t = get_target("jetson-orin-nano")
    (tmp_path / "empty").mkdir()
    out = tmp_path / "q.onnx"
    with pytest.raises(EdgeresError, match="holds no images"):
        run_quantize(fp32_onnx, tmp_path / "empty", t, out)
    with pytest.raises(EdgeresError, match="preprocess to .* but"):
        run_quantize(fp32_onnx, demo_data, t, out, QuantizeConfig(subset_size=4), pre_overrides={"image_size": 48})
    with pytest.raises(EdgeresError, match="unknown target"):
        get_target("raspberry-pi")
    with pytest.raises(EdgeresError, match="no useful INT8"):
        run_quantize(fp32_onnx, demo_data, get_target("jetson-nano"), out)
    # an ONNX file that is not a classifier
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "relu.onnx")
    with pytest.raises(EdgeresError, match="not an image classifier"):
        run_quantize(tmp_path / "relu.onnx", demo_data, t, out, QuantizeConfig(subset_size=4))
    assert not out.exists() and not list(tmp_path.glob(".q.onnx*"))


def test_quantize_cli_errors(cli, tmp_path, fp32_onnx, demo_data):
    (tmp_path / "empty").mkdir()
    proc = cli("quantize", "--onnx", fp32_onnx, "--calib", tmp_path / "empty", "--target", "jetson", "--out", tmp_path / "q.onnx")
    assert proc.returncode == 1 and "INT8 calibration needs images" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli("quantize", "--onnx", fp32_onnx, "--calib", demo_data, "--target", "mars-rover", "--out", tmp_path / "q.onnx")
    assert proc.returncode == 1 and "valid targets" in proc.stderr
    assert not (tmp_path / "q.onnx").exists()


@pytest.mark.slow
def test_accuracy_aware_mode_reports_kept_layers(tmp_path, fp32_onnx, demo_data):
    out = tmp_path / "ac.onnx"
    info = run_quantize(fp32_onnx, demo_data, get_target("jetson"), out,
                        QuantizeConfig(subset_size=20, nncf_max_drop=0.01), data=demo_data)
    ac = info["accuracy_control"]
    assert ac is not None and "float_layers" in ac and "steps" in ac
    assert check_file(out, get_target("jetson")) == []
