"""INT8 within a budget on the file that ships: the check sees the shipped form, held-out images, the calibration
methods, per-layer sensitivity with float/FP16 fallback layers (check-onnx for TensorRT 8.5, 10, 11), QAT end to end,
the recommendation for a TensorRT target, the CLI options."""

import csv

import numpy as np
import onnx
import pytest

from edgeres.onnx_check import check_file, check_model
from edgeres.quant import budget, scoring
from edgeres.quant.budget import budget_note, quantize_within_budget
from edgeres.quant.float_layers import keep_float
from edgeres.quant.ptq import ptq
from edgeres.quant.qdq import int8_layers, qdq_summary
from edgeres.quant.run import run_quantize
from edgeres.quant.settings import QuantizeConfig
from edgeres.targets import get_target


@pytest.fixture(scope="module")
def fp32_onnx(tiny_onnx):
    return tiny_onnx  # conftest: exported once per session


@pytest.fixture(scope="module")
def arrays(demo_data):
    from edgeres.calibration import calibration_set_from, load_arrays

    from edgeres.data import Preprocess, resolve_data
    from edgeres.metrics import iter_batches

    pre = Preprocess(size=32)
    calib = load_arrays(calibration_set_from(demo_data, 20), pre)
    batches = list(iter_batches(resolve_data(demo_data).val, pre, 64))
    return pre, calib, np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


def _spy(monkeypatch):
    """Record the Q/DQ dtypes and residual-Add inputs of every model the budget scores."""
    seen = []
    real = scoring.logits_fn

    def logits_fn(x, batch=32):
        f = real(x, batch)

        def run(model):
            s = qdq_summary(model)
            producer = {o: n for n in model.graph.node for o in n.output}
            both_dq = sum(all(producer[i].op_type == "DequantizeLinear" for i in n.input)
                          for n in model.graph.node if n.op_type == "Add")
            seen.append((dict(s["qdq_dtypes"]), both_dq))
            return f(model)

        return run

    monkeypatch.setattr(scoring, "logits_fn", logits_fn)
    return seen


def test_budget_is_checked_on_the_shipped_form(monkeypatch, tmp_path, fp32_onnx, arrays):
    """Every candidate the budget measures is signed INT8 with the Add rule applied (NNCF's raw graph has UINT8
    post-ReLU activations and Q/DQ on both inputs of each Add); so does NNCF's accuracy control's validation."""
    _pre, calib, vx, vy = arrays
    seen = _spy(monkeypatch)
    t = get_target("jetson-orin-nano")
    cfg = QuantizeConfig(subset_size=20, int8_max_drop=-1000.0, fallback=("methods",), methods=("histogram", "minmax"))
    info = quantize_within_budget(fp32_onnx, tmp_path / "q.onnx", t, calib, vx, vy, cfg)
    scored = [s for s in seen if s[0]]  # the FP32 reference has no Q/DQ
    assert len(scored) == 2 and all(set(d) == {"int8"} and both == 0 for d, both in scored)
    b = info["budget"]
    assert [a["path"] for a in b["attempts"]] == ["ptq-histogram", "ptq-minmax"] and not b["within"]
    # the raw NNCF graph is UINT8 / Q/DQ on both Add inputs; the accuracy-control validator finalizes it first
    import nncf
    from edgeres.calibration import nncf_dataset

    from edgeres.quant.settings import nncf_settings

    model = onnx.load(fp32_onnx)
    raw = nncf.quantize(model, nncf_dataset(calib, "input"), **nncf_settings("trt-qdq", QuantizeConfig(subset_size=20)))
    assert "uint8" in qdq_summary(raw)["qdq_dtypes"]
    seen.clear()
    scoring.top1_fn(vx, vy, finalize_for=t)(raw)
    assert seen[-1] == ({"int8": seen[-1][0]["int8"]}, 0)
    assert "uint8" in qdq_summary(raw)["qdq_dtypes"]  # validated on a copy: the candidate itself is untouched


def test_budget_uses_images_calibration_did_not_use(tmp_path, fp32_onnx, demo_data):
    """Calibrating from the validation folder itself: the budget is measured only on the images left out."""
    import os

    from edgeres.calibration import calibration_set_from

    from edgeres.data import resolve_data

    val = [p for p, _ in resolve_data(demo_data).val]
    used = set(calibration_set_from(demo_data / "val", 40).paths)
    overlap = len({os.path.realpath(p) for p in val} & {os.path.realpath(p) for p in used})
    assert overlap > 0
    info = run_quantize(fp32_onnx, demo_data / "val", get_target("jetson"), tmp_path / "q.onnx",
                        QuantizeConfig(subset_size=40, int8_max_drop=100.0), data=demo_data)
    assert info["budget"]["validation_images"] == len(val) - overlap and info["budget"]["within"]


@pytest.fixture(scope="module")
def float_fallback(tmp_path_factory, fp32_onnx, arrays):
    _pre, calib, vx, vy = arrays
    d = tmp_path_factory.mktemp("fb")
    cfg = QuantizeConfig(subset_size=20, int8_max_drop=-1000.0, fallback=("float",), max_float_macs_share=0.12,
                         sensitivity_images=30)
    out = {}
    # Never within budget; over budget even with the layers kept float, the search keeps that file only if it beats
    # the all-INT8 one, which on this near-chance model is a coin toss: here it always does, as these tests check
    # the mixed file and its report, not the choice.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(budget._Search, "better", lambda self, a: True)
        for name in ("jetson-thor", "jetson-orin-nano"):
            out[name] = (d / f"{name}.onnx", quantize_within_budget(fp32_onnx, d / f"{name}.onnx", get_target(name),
                                                                       calib, vx, vy, cfg))
    return out


def test_float_fallback_reports_layers_and_passes_check_onnx(float_fallback, fp32_onnx):
    path, info = float_fallback["jetson-thor"]
    b = info["budget"]
    assert b["path"] == "ptq-histogram+float" and b["float_layers"] and 0 < b["float_macs_share"] <= 0.12
    assert b["fp16_casts"]  # TensorRT 11 is strongly typed: the float layers are explicit FP16 in the ONNX
    m = onnx.load(path)
    names = {n.name: n for n in m.graph.node}
    inits = {i.name: i for i in m.graph.initializer}
    for layer in b["float_layers"]:
        n = names[layer]
        assert inits[n.input[1]].data_type == onnx.TensorProto.FLOAT16
        assert any(c.op_type == "Cast" and c.output[0] == n.input[0] for c in m.graph.node)
    assert len(qdq_summary(m)["float_layers"]) >= len(b["float_layers"])
    note = budget_note(b)
    assert b["float_layers"][0] in note and "% of MACs" in note and "FP16" in note
    # the sensitivity table: every INT8 layer, its MACs share, the kept ones marked
    with open(info["sensitivity_csv"]) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 21  # ResNet18: 20 Conv + the fc Gemm
    assert {r["layer"] for r in rows if r["kept_float"] == "True"} == set(b["float_layers"])
    assert abs(sum(float(r["macs_share_pct"]) for r in rows) - 100) < 1.0
    with open(info["sensitivity_png"], "rb") as f:
        assert f.read(8).startswith(b"\x89PNG")
    # the mixed file passes check-onnx for each TensorRT family
    for t in ("jetson-xavier-nx", "jetson-orin-nano", "jetson-thor"):
        assert check_file(path, get_target(t)) == [], t


def test_trt10_mixed_file_warns_on_trt11_only(float_fallback):
    path, info = float_fallback["jetson-orin-nano"]
    assert info["budget"]["float_layers"] and not info["budget"]["fp16_casts"]
    for t in ("jetson-xavier-nx", "jetson-orin-nano"):
        assert check_file(path, get_target(t)) == [], t
    v = check_file(path, get_target("jetson-thor"))
    assert v and all(x.rule == "strongly-typed" and x.severity == "warning" for x in v)
    assert {x.node for x in v} == set(info["budget"]["float_layers"])


def test_keep_float_restores_fp32_layers(fp32_onnx, arrays):
    """Every layer kept float: FP32 weights again, no layer reads a DequantizeLinear (directly or through MaxPool &
    co.); what Q/DQ remain only feed the residual Adds' skip inputs; the file still runs."""
    _pre, calib, vx, _vy = arrays
    model = onnx.load(fp32_onnx)
    t = get_target("jetson-orin-nano")
    qm, _ = ptq(model, t, calib, QuantizeConfig(subset_size=20), "input")
    fl = keep_float(qm, model, int8_layers(qm))
    onnx.checker.check_model(fl)
    assert int8_layers(fl) == [] and qdq_summary(fl)["int8_layers"] == 0
    f_inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in fl.graph.initializer}
    for n in fl.graph.node:
        if n.op_type in ("Conv", "Gemm"):
            assert np.array_equal(inits[n.input[1]], f_inits[n.input[1]])
    users = {}
    for n in fl.graph.node:
        for i in n.input:
            users.setdefault(i, []).append(n.op_type)
    for n in fl.graph.node:
        if n.op_type == "DequantizeLinear":
            assert set(users[n.output[0]]) <= {"Add", "MaxPool"}, users[n.output[0]]
    assert scoring.logits_fn(vx[:4])(fl).shape == (4, 10)


def test_qat_end_to_end(tmp_path, fp32_onnx, tiny_ckpt, demo_data, arrays):
    """QAT on a tiny model: the PyTorch fake-quant mirrors the file's quantizers and biases (no learning: the
    written-back file gives the PTQ file's logits), then fine-tuning writes learned weights/scales into a file that passes check-onnx
    and is within budget; the budget loop runs it when PTQ is over budget."""
    from edgeres.data import resolve_data
    from edgeres.quant.qat import make_qat

    pre, calib, vx, _vy = arrays
    splits = resolve_data(demo_data)
    t = get_target("jetson-orin-nano")
    model = onnx.load(fp32_onnx)
    qm, _ = ptq(model, t, calib, QuantizeConfig(subset_size=20), "input")
    frozen, finfo = make_qat(tiny_ckpt, splits, tmp_path / "w0", lr=0.0, batch_size=16, max_steps=1)(pre)(qm)
    assert finfo["layers"] == len(int8_layers(qm)) and finfo["activation_quantizers"] >= 20
    a, b = scoring.logits_fn(vx)(qm), scoring.logits_fn(vx)(frozen)
    # starts from PTQ (biases included): equal up to an int8 weight re-rounded here and there
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.98 and np.abs(a - b).max() <= 0.01 * np.abs(a).max()
    cfg = QuantizeConfig(subset_size=20, int8_max_drop=-1000.0, fallback=("qat",))
    qat = make_qat(tiny_ckpt, splits, tmp_path / "w", lr=1e-5, batch_size=16, max_steps=2)
    info = run_quantize(fp32_onnx, demo_data, t, tmp_path / "q.onnx", cfg, data=demo_data, qat=qat)
    att = {x["path"]: x for x in info["budget"]["attempts"]}
    assert "qat" in att and att["qat"]["qat"]["layers"] == finfo["layers"]
    budget = 5.0  # points, on 60 held-out images of a 32 px model trained for 3 steps
    assert att["qat"]["drop"] <= budget
    # the QAT file itself, in the target's form
    qfile, _ = qat(pre)(qm)
    assert check_model(qfile, t) == []
    assert set(qdq_summary(qfile)["qdq_dtypes"]) == {"int8"}
    assert not list((tmp_path / "w").glob("qat*.pt"))


def test_qat_writes_back_into_the_x86_form(tmp_path, fp32_onnx, tiny_ckpt, demo_data, arrays):
    """On the x86 file (the classifier's bias moved into an Add so the Gemm runs as QGemm) QAT writes the fine-tuned
    bias into that Add; frozen (lr 0) it predicts as the PTQ file."""
    from edgeres.data import resolve_data
    from edgeres.quant.qat import make_qat

    pre, calib, vx, _vy = arrays
    qm, info = ptq(onnx.load(fp32_onnx), get_target("x86-cpu"), calib, QuantizeConfig(subset_size=20), "input")
    assert info["x86_rules"]["gemm_bias_split"] == 1
    frozen, finfo = make_qat(tiny_ckpt, resolve_data(demo_data), tmp_path / "w", lr=0.0, batch_size=16, max_steps=1)(pre)(qm)
    assert finfo["layers"] == len(int8_layers(qm))
    gemm = next(n for n in frozen.graph.node if n.op_type == "Gemm")
    add = next(n for n in frozen.graph.node if gemm.output[0] in n.input)
    assert add.op_type == "Add" and any(i.endswith("_qat_b") for i in add.input)
    a, b = scoring.logits_fn(vx)(qm), scoring.logits_fn(vx)(frozen)
    # starts from PTQ (biases included): equal up to an int8 weight re-rounded here and there
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.98 and np.abs(a - b).max() <= 0.01 * np.abs(a).max()


def test_recommend_for_tensorrt_ranks_by_target_precision_not_host_latency():
    from edgeres.recommend import recommend
    from edgeres.report import new_row

    def row(stage, runtime, precision, top1, ms, macs, mb):
        return new_row(stage=stage, runtime=runtime, precision=precision, status="ok", top1=top1,
                       top1_delta=top1 - 90.0, latency_p50_ms=ms, macs=macs, model_size_mb=mb)

    rows = [row("baseline", "torch", "fp32", 90.0, 5.0, 4e9, 90), row("baseline", "onnxruntime", "fp32", 90.0, 4.0, 4e9, 90),
            row("export", "onnxruntime", "fp32", 89.8, 2.0, 2e9, 45),
            row("quantize", "onnxruntime", "int8", 89.6, 6.0, 2e9, 12)]  # slower on this CPU than FP32
    rec = recommend(rows, get_target("jetson"), 1.0)
    assert rec["stage"] == "quantize" and rec["precision"] == "int8"
    assert "precision" in rec["decided_by"] and "MACs" in rec["decided_by"] and "latency not used" in rec["decided_by"]
    rec = recommend(rows, get_target("jetson"), 0.3)  # the INT8 file is over this budget: FP32 export (FP16 engine)
    assert rec["stage"] == "export" and "fp16" in rec["decided_by"]
    assert recommend(rows, get_target("x86-cpu"), 1.0)["decided_by"].startswith("the first within")


def test_cli_options(cli, tmp_path, fp32_onnx, demo_data):
    proc = cli("quantize", "--onnx", fp32_onnx, "--calib", demo_data, "--target", "jetson", "--out", tmp_path / "q.onnx",
               "--int8-max-drop", "0.5", "--fallback", "methods,magic", "--data", demo_data)
    assert proc.returncode == 2 and "magic" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "q.onnx").exists()
    helptext = cli("optimize", "--help").stdout
    assert "--int8-max-drop" in helptext and "EXPORT" in helptext and "BASELINE" in helptext
    from edgeres.pipeline import OptimizeConfig

    assert OptimizeConfig().int8_max_drop == 0.5 and OptimizeConfig().int8_fallback == ["methods", "float", "qat"]


def test_quantize_command_keeps_the_stage_budget_by_default(cli, tmp_path, fp32_onnx, demo_data):
    """`edgeres quantize` without a budget flag and without --data: the optimize stage's budget (0.5 point), measured
    on a stratified slice held out of the calibration folder and never calibrated on; one line says the measured
    drop and the path taken."""
    import json
    import re

    from edgeres.calibration import calibration_with_holdout

    from edgeres.cli_stages import quantize_cmd
    from edgeres.pipeline import OptimizeConfig

    default = next(p.default for p in quantize_cmd.params if p.name == "int8_max_drop")
    assert default == OptimizeConfig().int8_max_drop == 0.5
    out = tmp_path / "q.onnx"
    proc = cli("quantize", "--onnx", fp32_onnx, "--calib", demo_data / "val", "--target", "jetson-orin-nano",
               "--out", out, "--calib-size", "20", "--fallback", "none")
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("top-1 FP32"))
    m = re.search(r"\(([+-]\d+\.\d\d) points, ONNX Runtime\); INT8 path: plain PTQ \(histogram calibration\), "
                  r"(within|OVER) the 0.5-point budget: ([+-]\d+\.\d\d) points vs FP32 on (\d+) images held out of "
                  r".*stratified slice per class folder, not used for calibration", line)
    assert m and m.group(1) == m.group(3), line
    assert "INT8 budget check" in proc.stderr
    # the slice: every class, none of it in the calibration manifest
    cs, check, _ = calibration_with_holdout(demo_data / "val", 20, 0)
    assert len(check) == int(m.group(4)) and len({c for _, c in check}) == 10
    manifest = json.loads((tmp_path / "q.onnx.calib.json").read_text())
    calibrated = {str(demo_data / "val" / im["path"]) for im in manifest["images"]}
    assert calibrated == set(cs.paths) and not calibrated & {p for p, _ in check}


def test_holdout_per_calibration_folder_layout(tmp_path, demo_data):
    from edgeres.calibration import calibration_with_holdout

    cs, check, source = calibration_with_holdout(demo_data, 20, 0)  # train/ + val/: calibrate on train, check on val
    assert len(check) == 60 and all("/val/" in p for p, _ in check) and all("/train/" in p for p in cs.paths)
    assert "calibration used" in source
    cs, check, _ = calibration_with_holdout(demo_data / "train", 100, 0)  # 120 images: a fifth held out, per class
    assert len(check) == 20 and sorted({c for _, c in check}) == list(range(10)) and len(cs) == 100
    assert not set(cs.paths) & {p for p, _ in check}
    flat = tmp_path / "flat"
    flat.mkdir()
    import shutil

    for p in list((demo_data / "val" / "circle").iterdir())[:3]:
        shutil.copy(p, flat / p.name)
    cs, check, source = calibration_with_holdout(flat, 20, 0)  # no class folders: no labels, no check
    assert check is None and len(cs) == 3 and "cannot be checked" in source


def test_path_label_says_which_path_was_taken():
    from edgeres.quant.budget import path_label

    att = [{"path": "ptq-histogram"}, {"path": "ptq-percentile"}]
    b = {"path": "ptq-histogram", "method": "histogram", "attempts": att[:1], "float_layers": []}
    assert path_label(b) == "plain PTQ (histogram calibration)"
    b.update(path="ptq-percentile", method="percentile", attempts=att)
    assert path_label(b).startswith("calibration method percentile")
    b.update(path="ptq-percentile+float", float_layers=["conv1", "fc"], fp16_casts=True)
    assert path_label(b) == "2 layers kept FP16 (percentile calibration)"
    b.update(path="qat")
    assert path_label(b).startswith("QAT")


def test_int8_max_drop_none_on_the_command_line():
    from edgeres.cli_options import _Checked
    from edgeres.options import BY_KEY

    assert _Checked(BY_KEY["int8_max_drop"]).convert("none", None, None) is None
    assert _Checked(BY_KEY["int8_max_drop"]).convert("0.3", None, None) == 0.3


def test_float_fallback_tries_the_largest_set_once_when_it_cannot_fit(float_fallback):
    """Over budget even with every layer the MACs share allows kept float: one full evaluation, not one per step."""
    b = float_fallback["jetson-orin-nano"][1]["budget"]
    assert [a["path"] for a in b["attempts"]].count("ptq-histogram+float") == 1
    assert b["evaluations"] == 1 + 1 + 1 + 21  # FP32 reference aside: PTQ, the kmax file, sensitivity base + 21 layers


@pytest.mark.parametrize("n", [1, 2, 3, 7, 21, 64, 161])
def test_smallest_fitting_layer_count_by_bisection(n):
    """The float fallback's search: the smallest k that fits, in at most 1 + ceil(log2 n) full evaluations."""
    import math

    from edgeres.quant.budget import smallest_fitting

    for need in range(1, n + 2):  # need = n + 1: nothing fits
        calls = []
        k = smallest_fitting(n, lambda k: calls.append(k) or k >= need)
        assert k == (need if need <= n else None)
        assert len(calls) <= 1 + math.ceil(math.log2(n)) and calls[0] == n


def test_sensitivity_subset_is_stratified():
    import numpy as np

    from edgeres.quant.sensitivity import stratified_subset

    y = np.repeat(np.arange(10), [100] * 9 + [5])  # one small class
    idx = stratified_subset(y, 256)
    assert len(idx) == 256 and len(set(idx.tolist())) == 256 and list(idx) == sorted(idx)
    counts = np.bincount(y[idx], minlength=10)
    assert counts[9] == 5 and counts[:9].min() >= 27 and counts[:9].max() <= 28
    assert stratified_subset(y[:200], 256) is None
