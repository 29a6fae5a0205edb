"""One INT8 post-training quantization of an FP32 classifier's ONNX file with NNCF (or NNCF's accuracy control),
brought to the target's shipped form."""

from __future__ import annotations

import logging
import re

import numpy as np

from edgeres.errors import EdgeresError
from edgeres.quant.qdq import qdq_summary
from edgeres.quant.ranges import entropy_amax, mse_threshold_bin, set_activation_ranges
from edgeres.quant.scoring import top1_fn
from edgeres.quant.settings import QuantizeConfig, nncf_settings
from edgeres.quant.shipped_form import finalize
from edgeres.quant.trt_rules import force_signed_int8


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def _check_classifier(model, path) -> tuple[str, tuple]:
    if len(model.graph.input) != 1 or len(model.graph.output) != 1:
        raise EdgeresError(f"{path} is not an image classifier: it needs one input and one output "
                           f"(has {len(model.graph.input)} and {len(model.graph.output)})")
    inp = model.graph.input[0]
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
    if len(dims) != 4 or dims[1] != 3:
        raise EdgeresError(f"{path} is not an image classifier: input {inp.name} has shape {dims}, expected [N, 3, H, W]")
    from edgeres.runtimes.ort import check_image_input

    check_image_input(path, dims)  # a sane fixed batch and size
    out_dims = [d.dim_value if d.HasField("dim_value") else None for d in model.graph.output[0].type.tensor_type.shape.dim]
    if len(out_dims) != 2:
        raise EdgeresError(f"{path} is not an image classifier: output shape {out_dims}, expected [N, classes]")
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node):
        raise EdgeresError(f"{path} is already quantized; quantize the FP32 export")
    return inp.name, tuple(dims[1:])


def load_fp32(fp32_path, target, calib_arrays):
    import onnx

    if not target.int8:
        raise EdgeresError(f"target {target.name} has no useful INT8 ({', '.join(target.precisions)} only); "
                           "deploy the FP32/FP16 export instead")
    try:
        model = onnx.load(str(fp32_path))
    except Exception as e:  # noqa: BLE001
        raise EdgeresError(f"{fp32_path} is not a readable ONNX file ({e.__class__.__name__})") from None
    input_name, chw = _check_classifier(model, fp32_path)
    if chw[1:] != (None, None) and tuple(calib_arrays.shape[1:]) != tuple(chw):
        raise EdgeresError(f"calibration images preprocess to {tuple(calib_arrays.shape[1:])} but {fp32_path} takes {chw}; "
                           "use the model's --image-size")
    return model, input_name


def ptq(model, target, calib_arrays, cfg: QuantizeConfig, input_name: str, val=None, capture=None):
    """One NNCF PTQ run (or accuracy control with ``val``=(x, y)), then the target's form. -> (qmodel, info)."""
    import nncf

    from edgeres.progress import import_cpp_extension_quietly, tame_library_logs

    tame_library_logs()  # NNCF's own stdout handler follows -q/-v (its INFO lines only with -v)
    import_cpp_extension_quietly()  # nncf.quantize imports nncf.torch even for an ONNX model

    from edgeres.calibration import nncf_dataset

    kw = nncf_settings(target.quant_format, cfg)
    kw["subset_size"] = min(cfg.subset_size, len(calib_arrays))
    calib = nncf_dataset(calib_arrays, input_name)
    ac = None
    if cfg.nncf_max_drop is not None:
        val_arrays, val_targets = val if val is not None else (None, None)
        if val_arrays is None or len(val_arrays) == 0:
            raise EdgeresError("NNCF's accuracy control (nncf_max_drop) needs validation images (--data)")
        # validated on the shipped form: signed INT8 and the residual-Add rule applied to each candidate
        validate = top1_fn(val_arrays, val_targets, finalize_for=target, cfg=cfg)
        val_ds = nncf.Dataset(list(range(len(val_arrays))), lambda i: {input_name: val_arrays[i : i + 1]})
        qmodel = nncf.quantize_with_accuracy_control(
            model, calib, val_ds, validation_fn=validate, max_drop=cfg.nncf_max_drop / 100.0,
            drop_type=nncf.DropType.ABSOLUTE, preset=kw["preset"], target_device=kw["target_device"],
            subset_size=kw["subset_size"], fast_bias_correction=kw["fast_bias_correction"],
            ignored_scope=kw.get("ignored_scope"), advanced_quantization_parameters=kw["advanced_parameters"])
        ac = _accuracy_control_report(capture.lines if capture else [])
    else:
        qmodel = nncf.quantize(model, calib, **kw)
    signed_mse = cfg.signed_ranges and cfg.method == "histogram" and target.quant_format == "trt-qdq"
    if cfg.method == "entropy" or signed_mse:
        tensors = [q.input[0] for q in qmodel.graph.node if q.op_type == "QuantizeLinear"]
        ranges = entropy_amax(model, tensors, calib_arrays[: kw["subset_size"]], input_name,
                               symmetric=target.quant_format == "trt-qdq",
                               rule=mse_threshold_bin if signed_mse else None)
        if target.quant_format == "trt-qdq":
            force_signed_int8(qmodel)  # the Q outputs' declared type becomes int8 before the new zero-points
        set_activation_ranges(qmodel, ranges, target.quant_format)
    info = finalize(qmodel, target, cfg)
    del qmodel.metadata_props[:]
    qmodel.metadata_props.extend(model.metadata_props)
    from edgeres.onnx_export import set_metadata

    set_metadata(qmodel, {"edgeres.quant_format": target.quant_format, "edgeres.target": target.name,
                          "edgeres.calibration_method": cfg.method})
    info["accuracy_control"] = ac
    return qmodel, info


def quantize_onnx(fp32_path, out_path, target, calib_arrays: np.ndarray, cfg: QuantizeConfig | None = None,
                  val_arrays: np.ndarray | None = None, val_targets: np.ndarray | None = None) -> dict:
    """Quantize ``fp32_path`` for ``target`` with the calibration arrays; write ``out_path`` atomically.

    Returns {"format", "summary", "adds_rewritten", "accuracy_control": {...} or None, "nncf_log": [...]}.
    """
    import onnx

    from edgeres.progress import import_cpp_extension_quietly
    from edgeres.utils import atomic_path

    cfg = cfg or QuantizeConfig()
    import_cpp_extension_quietly()  # nncf.quantize imports nncf.torch even for an ONNX model
    model, input_name = load_fp32(fp32_path, target, calib_arrays)
    capture = _Capture()
    nlog = logging.getLogger("nncf")
    nlog.addHandler(capture)
    try:
        qmodel, info = ptq(model, target, calib_arrays, cfg, input_name, (val_arrays, val_targets), capture)
    finally:
        nlog.removeHandler(capture)
    summary = qdq_summary(qmodel)
    ac = info["accuracy_control"]
    if ac is not None:
        ac["float_layers"] = summary["float_layers"]
    onnx.checker.check_model(qmodel)
    with atomic_path(out_path) as tmp:
        onnx.save(qmodel, str(tmp))
    return {"format": target.quant_format, "summary": summary, "adds_rewritten": info["adds_rewritten"],
            "signed_rewrites": info["signed_rewrites"], "accuracy_control": ac,
            "x86_rules": info["x86_rules"], "nncf_log": capture.lines[-40:]}


def _accuracy_control_report(lines: list) -> dict:
    """What NNCF's accuracy control did: the steps it reverted and the drop after each (the cost of each group)."""
    steps, initial = [], None
    pending = None
    for ln in lines:
        m = re.search(r"Accuracy drop: ([-\d.e]+)", ln)
        if m and initial is None:
            initial = float(m.group(1)) * 100
        m = re.search(r"Reverted (\d+) operations to the floating-point precision:\s*(.*)", ln, re.S)
        if m:
            pending = {"reverted": int(m.group(1)), "operations": [s.strip() for s in m.group(2).split("\n") if s.strip()]}
        m = re.search(r"Accuracy drop with the new quantization scope is ([-\d.e]+)", ln)
        if m and pending is not None:
            pending["drop_after_points"] = float(m.group(1)) * 100
            steps.append(pending)
            pending = None
    return {"initial_drop_points": initial, "steps": steps}
