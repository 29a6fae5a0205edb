"""INT8 post-training quantization of the ONNX graph with NNCF, per target.

* TensorRT targets (``trt-qdq``): every QuantizeLinear/DequantizeLinear signed INT8, symmetric, zero-point 0; weights
  per-channel (axis 0), activations per-tensor. NNCF's default gives UINT8 to post-ReLU activations, which
  onnx-tensorrt rejects: edgeres forces signed activations in NNCF's configuration. Residual Adds are then rewritten
  to TensorRT's placement rule: the Conv branch of an Add is left unquantized (TensorRT fuses Conv+Add and feeds the
  Add at the Conv's output precision), the skip branch keeps its Q/DQ.
* ``x86-cpu`` (``ort-u8s8``): ONNX Runtime's fast path: uint8 (asymmetric) activations, int8 per-channel weights.

Calibration methods: ``histogram`` (the default: MSE-optimal ranges from histograms), ``nncf-default`` (NNCF's own
range estimator), ``minmax``, ``mean-minmax``, ``percentile``, ``entropy`` (KL thresholds, TensorRT's calibrator,
computed with ONNX Runtime's EntropyCalibrater on NNCF's Q/DQ placement). Fast bias correction is on by default.

The INT8 budget (``int8_max_drop``, points of top-1 against the FP32 export) is always measured on the file that
ships (the target's form: signed Q/DQ and the Add rule applied), on validation images calibration did not use. Over
budget, ``fallback`` is tried in order, stopping at the first that fits: ``methods`` (the other calibration methods,
the best kept), ``float`` (per-layer sensitivity on the shipped form; the most sensitive layers lose their Q/DQ and
run in floating point: FP16 on TensorRT, explicit FP16 casts for TensorRT 11's strongly typed networks, FP32 on x86),
``qat`` (edgeres.stages.qat). ``max_accuracy_drop`` runs NNCF's own accuracy control instead (its validation also
sees the shipped form).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

import numpy as np

from edgeres.errors import EdgeresError, StageSkipped
from edgeres.onnx_graph import consumers as _consumers
from edgeres.onnx_graph import producers as _producers
from edgeres.stages.base import Context, Stage, StageResult

PASS_THROUGH = ("MaxPool", "GlobalAveragePool", "AveragePool", "Flatten", "Reshape", "Identity")
METHODS = ("histogram", "nncf-default", "minmax", "mean-minmax", "percentile", "entropy")
# the calibration methods the budget tries, in order, when the first is over budget (the best one is kept)
BUDGET_METHODS = ("histogram", "percentile", "entropy", "minmax")
# what is tried, in order, when plain PTQ is over the INT8 budget; the first that fits stops the search
FALLBACKS = ("methods", "float", "qat")


@dataclass
class QuantizeConfig:
    method: str = "histogram"  # MSE-optimal ranges: on the demo it kept INT8 top-1 closest to FP32 (benchmarks/)
    subset_size: int = 512
    fast_bias_correction: bool = True
    bias_correction: bool = True
    max_accuracy_drop: float | None = None  # points of top-1
    ignored_nodes: list = field(default_factory=list)
    trt_add_rule: bool = True  # rewrite residual Adds for TensorRT's Conv+Add fusion (trt-qdq only)
    int8_max_drop: float | None = None  # the INT8 budget: points of top-1 vs the FP32 export, on the shipped file
    fallback: tuple = FALLBACKS  # over budget: other calibration methods, float layers (sensitivity), QAT
    methods: tuple = BUDGET_METHODS
    max_float_macs_share: float = 0.5  # the float fallback gives up (QAT next) beyond this share of MACs in float
    sensitivity_images: int = 500  # validation images for the per-layer sensitivity (the budget uses all of them)
    qat_epochs: int = 1
    qat_lr: float = 1e-5


def _range_estimator(method: str):
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    return {
        "minmax": RangeEstimatorParametersSet.MINMAX,
        "mean-minmax": RangeEstimatorParametersSet.MEAN_MINMAX,
        "percentile": RangeEstimatorParametersSet.MEAN_QUANTILE,
        "histogram": RangeEstimatorParametersSet.HISTOGRAM,
        "entropy": RangeEstimatorParametersSet.MINMAX,  # the placement; the ranges are then set by KL (entropy)
    }.get(method)


def nncf_settings(quant_format: str, cfg: QuantizeConfig) -> dict:
    """The keyword arguments for nncf.quantize that give the target's INT8 flavour."""
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters

    if cfg.method not in METHODS:
        raise EdgeresError(f"unknown calibration method {cfg.method!r}; choose one of {', '.join(METHODS)}")
    adv = AdvancedQuantizationParameters(disable_bias_correction=not cfg.bias_correction)
    if quant_format == "trt-qdq":
        # symmetric weights (signed int8, narrow range, per output channel) and symmetric per-tensor activations.
        # NNCF's hardware configs do not let activations be forced signed (signedness_to_force conflicts with every
        # HW config), so post-ReLU activations come out UINT8; force_signed_int8() rewrites them afterwards.
        preset = nncf.QuantizationPreset.PERFORMANCE
        device = nncf.TargetDevice.CPU
    elif quant_format == "ort-u8s8":
        preset = nncf.QuantizationPreset.MIXED  # symmetric int8 weights, asymmetric (uint8) activations
        device = nncf.TargetDevice.CPU
    else:
        raise EdgeresError(f"quantization format {quant_format!r} has no INT8 recipe (this target does not run INT8)")
    est = _range_estimator(cfg.method)
    if est is not None:
        adv.activations_range_estimator_params = est
    kw = dict(preset=preset, target_device=device, subset_size=cfg.subset_size,
              fast_bias_correction=cfg.fast_bias_correction, advanced_parameters=adv)
    if cfg.ignored_nodes:
        kw["ignored_scope"] = nncf.IgnoredScope(names=list(cfg.ignored_nodes))
    return kw


# ------------------------------------------------------------------------------------------------ graph rules
def apply_trt_add_rule(model) -> list:
    """For each Add fed on both sides by Q/DQ, drop the Q/DQ pair on the branch that a Conv produces (the main
    branch's Conv when both are Convs, as in a downsample block).

    That is TensorRT's Q/DQ placement for residual blocks (Conv+Add fusion): the quantized skip input and the Conv
    accumulate into one fused kernel. Returns the names of the Adds changed.
    """
    producer = _producers(model)
    consumers = _consumers(model)
    remove, changed = set(), []
    depth = None
    for add in [n for n in model.graph.node if n.op_type == "Add"]:
        branches = []
        for idx, name in enumerate(add.input):
            dq = producer.get(name)
            # a DQ before MaxPool & co. still quantizes this input (TensorRT moves the DQ across them): a skip
            # branch, never removed
            p = dq
            while p is not None and p.op_type in PASS_THROUGH:
                p = producer.get(p.input[0])
            if p is not dq and p is not None and p.op_type == "DequantizeLinear":
                branches.append((idx, None, None, None))
                continue
            q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
            if q is None or q.op_type != "QuantizeLinear":
                branches = []
                break
            src = producer.get(q.input[0])
            branches.append((idx, dq, q, src))
        if len(branches) != 2:
            continue
        conv_side = [b for b in branches if b[3] is not None and b[3].op_type == "Conv"]
        if not conv_side:
            continue
        if len(conv_side) == 2:
            # a downsample block: the shortcut is a Conv too. The main branch is the deeper Conv (the shortcut Conv
            # reads the block's input, which the main branch's first Conv reads as well); it loses its Q/DQ, the
            # shortcut keeps them, as for the other Adds.
            if depth is None:
                depth = _depths(model)
            conv_side.sort(key=lambda b: depth.get(b[3].output[0], 0), reverse=True)
        idx, dq, q, src = conv_side[0]
        # only if the Q/DQ pair feeds nothing but this Add
        if len(consumers.get(dq.output[0], [])) != 1 or len(consumers.get(q.output[0], [])) != 1:
            continue
        add.input[idx] = q.input[0]
        remove.update((id(dq), id(q)))
        changed.append(add.name)
    keep = [n for n in model.graph.node if id(n) not in remove]
    del model.graph.node[:]
    model.graph.node.extend(keep)
    drop_unused_initializers(model)
    return changed


def _depths(model) -> dict:
    """{tensor: the number of compute nodes (Q/DQ not counted) on the longest path from the graph inputs}."""
    d: dict = {}
    for n in model.graph.node:  # ONNX graphs are topologically sorted
        k = max((d.get(i, 0) for i in n.input), default=0)
        k += 0 if n.op_type in ("QuantizeLinear", "DequantizeLinear") else 1
        for o in n.output:
            d[o] = k
    return d


def force_signed_int8(model) -> int:
    """Rewrite every UINT8 QuantizeLinear/DequantizeLinear to signed INT8 with zero-point 0 (TensorRT's only form).

    A symmetric unsigned quantizer covers [0, 255*s]; the signed one with s' = 255*s/127 covers [-127*s', 127*s'],
    the same upper bound, with one bit less resolution for non-negative tensors (what TensorRT's own calibration
    gives a post-ReLU tensor too). An asymmetric one is widened to amax = max(|lo|, |hi|) of its range.
    Returns the number of Q/DQ nodes rewritten.
    """
    from onnx import TensorProto, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    cache: dict = {}
    changed = 0
    retyped: set = set()
    for n in model.graph.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(n.input) < 3 or n.input[2] not in inits:
            continue
        zp_init = inits[n.input[2]]
        if zp_init.data_type != TensorProto.UINT8:
            continue
        key = (n.input[1], n.input[2])
        if key not in cache:
            s = numpy_helper.to_array(inits[n.input[1]]).astype(np.float32)
            z = numpy_helper.to_array(zp_init).astype(np.float32)
            lo, hi = (0 - z) * s, (255 - z) * s
            new_s = (np.maximum(np.abs(lo), np.abs(hi)) / 127.0).astype(np.float32)
            s_name, z_name = f"{n.input[1]}_s8", f"{n.input[2]}_s8"
            model.graph.initializer.extend([numpy_helper.from_array(new_s, s_name),
                                            numpy_helper.from_array(np.zeros(z.shape, np.int8), z_name)])
            cache[key] = (s_name, z_name)
        n.input[1], n.input[2] = cache[key]
        changed += 1
        if n.op_type == "QuantizeLinear":
            retyped.add(n.output[0])
    for vi in model.graph.value_info:  # the Q outputs' declared type follows the zero-point
        if vi.name in retyped:
            vi.type.tensor_type.elem_type = TensorProto.INT8
    drop_unused_initializers(model)
    return changed


def drop_unused_initializers(model) -> None:
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    keep = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)


def qdq_summary(model) -> dict:
    """Counts of Q/DQ nodes by dtype, zero-points seen, quantized/float Conv layers."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    producer = _producers(model)
    dtypes: dict = {}
    nonzero_zp = 0
    for n in model.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2 and n.input[2] in inits:
            zp = numpy_helper.to_array(inits[n.input[2]])
            dtypes[str(zp.dtype)] = dtypes.get(str(zp.dtype), 0) + 1
            nonzero_zp += int(np.any(zp != 0))
    float_convs, int8_convs = [], []
    for n in model.graph.node:
        if n.op_type in ("Conv", "Gemm", "MatMul"):
            p = producer.get(n.input[0])
            # a DQ before MaxPool/pooling/flatten still feeds the layer INT8 data (TensorRT moves the DQ across them)
            while p is not None and p.op_type in PASS_THROUGH:
                p = producer.get(p.input[0])
            (int8_convs if p is not None and p.op_type == "DequantizeLinear" else float_convs).append(n.name)
    return {"qdq_dtypes": dtypes, "nonzero_zero_points": nonzero_zp, "int8_layers": len(int8_convs),
            "float_layers": float_convs}


# ------------------------------------------------------------------------------------------------ quantize
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


def _logits_fn(val_arrays, batch: int = 32):
    """model -> its logits on ``val_arrays`` in ONNX Runtime (CPU)."""
    import onnxruntime as ort

    from edgeres.metrics import run_padded

    def logits(model) -> np.ndarray:
        so = ort.SessionOptions()
        so.log_severity_level = 3
        sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        fixed = sess.get_inputs()[0].shape[0]
        out = []
        step = fixed if isinstance(fixed, int) else batch
        for i in range(0, len(val_arrays), step):
            x = val_arrays[i : i + step]
            out.append(run_padded(lambda b: sess.run(None, {name: b})[0], x, fixed if isinstance(fixed, int) else None))
        return np.concatenate(out)

    return logits


def _top1_fn(val_arrays, val_targets, batch: int = 32, finalize_for=None, cfg=None):
    """model -> top-1 (fraction) in ONNX Runtime. With ``finalize_for`` (a target) the model is first brought to
    that target's shipped form (signed INT8, residual-Add rule): what NNCF's accuracy control validates is then the
    file that ships, not NNCF's intermediate graph."""
    logits = _logits_fn(val_arrays, batch)

    def validate(model, _items=None) -> float:
        if finalize_for is not None:
            import copy

            model = copy.deepcopy(model)
            finalize(model, finalize_for, cfg or QuantizeConfig())
        return float((logits(model).argmax(1) == val_targets).mean())

    return validate


def finalize(qmodel, target, cfg: QuantizeConfig) -> dict:
    """Bring NNCF's Q/DQ graph to the target's shipped form, in place: signed INT8 and TensorRT's residual-Add
    placement for TensorRT targets; uint8 activations, a quantized MaxPool output and no Relu before a Q for x86
    (edgeres.stages.x86_int8). Returns {"signed_rewrites", "adds_rewritten", "x86_rules"}."""
    signed = force_signed_int8(qmodel) if target.quant_format == "trt-qdq" else 0
    adds = apply_trt_add_rule(qmodel) if target.quant_format == "trt-qdq" and cfg.trt_add_rule else []
    x86_rules = {}
    if target.quant_format == "ort-u8s8":  # exact rewrites: uint8 activations, quantized MaxPool output, no Relu before Q
        from edgeres.stages.x86_int8 import apply_x86_rules

        x86_rules = apply_x86_rules(qmodel)
    return {"signed_rewrites": signed, "adds_rewritten": len(adds), "x86_rules": x86_rules}


def _entropy_amax(model, tensors: list, calib_arrays: np.ndarray, input_name: str, symmetric: bool) -> dict:
    """{tensor: (lo, hi)} by KL-divergence (entropy) calibration, ONNX Runtime's EntropyCalibrater, on the FP32
    model's tensors ``tensors`` (the ones the Q/DQ graph quantizes)."""
    import os
    import tempfile

    import onnx
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    from edgeres.calibration import ArrayDataReader

    with tempfile.TemporaryDirectory(prefix="edgeres-entropy-") as d:
        path = os.path.join(d, "fp32.onnx")
        onnx.save(model, path)
        cal = create_calibrator(path, None, augmented_model_path=os.path.join(d, "aug.onnx"),
                                calibrate_method=CalibrationMethod.Entropy,
                                extra_options={"symmetric": symmetric, "num_bins": 512, "num_quantized_bins": 128})
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):  # ORT prints its progress with print()
            cal.collect_data(ArrayDataReader(calib_arrays, input_name))
            data = cal.compute_data()
    out = {}
    for t in tensors:
        try:
            r = data[t]
        except KeyError:
            continue
        lo, hi = (float(np.asarray(v).reshape(-1)[0]) for v in r.range_value)
        out[t] = (lo, hi)
    return out


def set_activation_ranges(qmodel, ranges: dict, quant_format: str) -> int:
    """Write activation ranges {fp32 tensor: (lo, hi)} into the Q/DQ pairs that quantize those tensors (each pair
    gets its own scale/zero-point initializers). Signed symmetric for TensorRT, uint8 asymmetric for x86."""
    from onnx import numpy_helper

    inits = {i.name: i for i in qmodel.graph.initializer}
    consumers = _consumers(qmodel)
    n = 0
    for q in [x for x in qmodel.graph.node if x.op_type == "QuantizeLinear"]:
        src = q.input[0]
        if src in inits or src not in ranges:
            continue
        lo, hi = ranges[src]
        signed = quant_format == "trt-qdq" or (len(q.input) > 2 and q.input[2] in inits
                                                and numpy_helper.to_array(inits[q.input[2]]).dtype == np.int8)
        if signed:  # the Q keeps its output type: a signed one stays symmetric
            amax = max(abs(lo), abs(hi), 1e-8)
            scale, zp = np.float32(amax / 127.0), np.int8(0)
        else:
            lo, hi = min(lo, 0.0), max(hi, 1e-8)
            scale = np.float32((hi - lo) / 255.0)
            zp = np.uint8(np.clip(round(-lo / scale), 0, 255))
        s_name, z_name = f"{q.output[0]}_scale_set", f"{q.output[0]}_zp_set"
        qmodel.graph.initializer.extend([numpy_helper.from_array(np.asarray(scale), s_name),
                                         numpy_helper.from_array(np.asarray(zp), z_name)])
        for node in [q] + [c for c in consumers.get(q.output[0], []) if c.op_type == "DequantizeLinear"]:
            node.input[1], node.input[2] = s_name, z_name
        n += 1
    drop_unused_initializers(qmodel)
    return n


def _ptq(model, target, calib_arrays, cfg: QuantizeConfig, input_name: str, val=None, capture=None):
    """One NNCF PTQ run (or accuracy control with ``val``=(x, y)), then the target's form. -> (qmodel, info)."""
    import nncf

    from edgeres.progress import tame_library_logs

    tame_library_logs()  # NNCF's own stdout handler follows -q/-v (its INFO lines only with -v)

    from edgeres.calibration import nncf_dataset

    kw = nncf_settings(target.quant_format, cfg)
    kw["subset_size"] = min(cfg.subset_size, len(calib_arrays))
    calib = nncf_dataset(calib_arrays, input_name)
    ac = None
    if cfg.max_accuracy_drop is not None:
        val_arrays, val_targets = val if val is not None else (None, None)
        if val_arrays is None or len(val_arrays) == 0:
            raise EdgeresError("--max-accuracy-drop needs validation images (--data)")
        # validated on the shipped form: signed INT8 and the residual-Add rule applied to each candidate
        validate = _top1_fn(val_arrays, val_targets, finalize_for=target, cfg=cfg)
        val_ds = nncf.Dataset(list(range(len(val_arrays))), lambda i: {input_name: val_arrays[i : i + 1]})
        qmodel = nncf.quantize_with_accuracy_control(
            model, calib, val_ds, validation_fn=validate, max_drop=cfg.max_accuracy_drop / 100.0,
            drop_type=nncf.DropType.ABSOLUTE, preset=kw["preset"], target_device=kw["target_device"],
            subset_size=kw["subset_size"], fast_bias_correction=kw["fast_bias_correction"],
            ignored_scope=kw.get("ignored_scope"), advanced_quantization_parameters=kw["advanced_parameters"])
        ac = _accuracy_control_report(capture.lines if capture else [])
    else:
        qmodel = nncf.quantize(model, calib, **kw)
    if cfg.method == "entropy":
        tensors = [q.input[0] for q in qmodel.graph.node if q.op_type == "QuantizeLinear"]
        ranges = _entropy_amax(model, tensors, calib_arrays[: kw["subset_size"]], input_name,
                               symmetric=target.quant_format == "trt-qdq")
        if target.quant_format == "trt-qdq":
            force_signed_int8(qmodel)  # the Q outputs' declared type becomes int8 before the new zero-points
        set_activation_ranges(qmodel, ranges, target.quant_format)
    info = finalize(qmodel, target, cfg)
    del qmodel.metadata_props[:]
    qmodel.metadata_props.extend(model.metadata_props)
    from edgeres.stages.export import set_metadata

    set_metadata(qmodel, {"edgeres.quant_format": target.quant_format, "edgeres.target": target.name,
                          "edgeres.calibration_method": cfg.method})
    info["accuracy_control"] = ac
    return qmodel, info


def _load_fp32(fp32_path, target, calib_arrays):
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


def quantize_onnx(fp32_path, out_path, target, calib_arrays: np.ndarray, cfg: QuantizeConfig | None = None,
                  val_arrays: np.ndarray | None = None, val_targets: np.ndarray | None = None) -> dict:
    """Quantize ``fp32_path`` for ``target`` with the calibration arrays; write ``out_path`` atomically.

    Returns {"format", "summary", "adds_rewritten", "accuracy_control": {...} or None, "nncf_log": [...]}.
    """
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # nncf imports torch: no CUDA chatter
    import onnx

    from edgeres.utils import atomic_path

    cfg = cfg or QuantizeConfig()
    model, input_name = _load_fp32(fp32_path, target, calib_arrays)
    capture = _Capture()
    nlog = logging.getLogger("nncf")
    nlog.addHandler(capture)
    try:
        qmodel, info = _ptq(model, target, calib_arrays, cfg, input_name, (val_arrays, val_targets), capture)
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


def onnx_preprocess(onnx_path) -> dict:
    from edgeres.runtimes import artifact_info

    return artifact_info(onnx_path).preprocess


def run_quantize(onnx_path, calib_dir, target, out, cfg: QuantizeConfig | None = None, data=None, calib_cache=None,
                 seed: int = 0, pre_overrides: dict | None = None, calib_set=None, qat=None, log=None,
                 splits=None) -> dict:
    """`edgeres quantize`: choose the calibration set, write its manifest, quantize, measure FP32 vs INT8 top-1.

    Writes ``out``, ``<out>.calib.json`` (the manifest) and, for TensorRT 8.x targets or when asked,
    a TensorRT calibration cache. Nothing is written under ``out`` unless quantization succeeds.
    """
    import os
    from pathlib import Path

    import onnx

    from edgeres.calibration import (
        activation_scales_from_qdq,
        calibration_set_from,
        load_arrays,
        write_manifest,
        write_trt_cache,
    )
    from edgeres.data import resolve_data
    from edgeres.metrics import iter_batches
    from edgeres.stages import resolve_model_preprocess

    cfg = cfg or QuantizeConfig()
    if not Path(onnx_path).is_file():
        raise EdgeresError(f"ONNX file {onnx_path} does not exist")
    if not target.int8:
        raise EdgeresError(f"target {target.name} has no useful INT8 ({', '.join(target.precisions)} only); "
                           "deploy the FP32/FP16 export instead")
    pre = resolve_model_preprocess(onnx_preprocess(onnx_path), pre_overrides)
    cs = calib_set or calibration_set_from(calib_dir, cfg.subset_size, seed)
    arrays = load_arrays(cs, pre)
    val_x = val_y = None
    if data or splits is not None:
        splits = splits if splits is not None else resolve_data(data)
        used = {os.path.realpath(p) for p in cs.paths}
        held_out = [it for it in splits.val if os.path.realpath(it[0]) not in used]
        if not held_out:
            raise EdgeresError(f"every validation image of {splits.root} is in the calibration set; the INT8 accuracy must be "
                               "measured on images calibration did not use: calibrate from the train split or another folder")
        batches = list(iter_batches(held_out, pre, 64))
        val_x = np.concatenate([b[0] for b in batches])
        val_y = np.concatenate([b[1] for b in batches])
    if cfg.int8_max_drop is not None:
        info = quantize_within_budget(onnx_path, out, target, arrays, val_x, val_y, cfg,
                                      qat=qat(pre) if qat is not None else None, log=log)
    else:
        info = quantize_onnx(onnx_path, out, target, arrays, cfg, val_x, val_y)
    manifest = f"{out}.calib.json"
    write_manifest(manifest, cs, pre)
    info["manifest"] = manifest
    info["calibration_images"] = len(cs)
    qmodel = onnx.load(str(out)) if (calib_cache or target.implicit_int8 or val_x is not None) else None
    if calib_cache or target.implicit_int8:
        path = calib_cache or os.path.join(os.path.dirname(os.path.abspath(out)), "calib.cache")
        write_trt_cache(path, activation_scales_from_qdq(qmodel), trt_version=_trt_cache_version(target))
        info["calib_cache"] = path
    if info.get("budget"):
        info["top1_fp32"], info["top1_int8"] = info["budget"]["top1_fp32"], info["budget"]["top1_int8"]
    elif val_x is not None:
        validate = _top1_fn(val_x, val_y)
        info["top1_fp32"] = validate(onnx.load(str(onnx_path))) * 100
        info["top1_int8"] = validate(qmodel) * 100
    return info


def _trt_cache_version(target) -> str:
    v = target.trt_version or "8.5"
    return {"8.5": "8.5.2", "8.2": "8.2.1"}.get(v, v + ".0")


# ------------------------------------------------------------------------------------------------ mixed precision
def layer_macs(fp32_model) -> dict:
    """{Conv/Gemm node name: MACs per image} of an FP32 classifier (static H, W), from ONNX shape inference."""
    import onnx

    m = onnx.shape_inference.infer_shapes(fp32_model)
    shapes = {}
    for vi in list(m.graph.value_info) + list(m.graph.output):
        shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else 0 for d in vi.type.tensor_type.shape.dim]
    inits = {i.name: i for i in m.graph.initializer}
    out = {}
    for n in m.graph.node:
        if n.op_type not in ("Conv", "Gemm", "MatMul") or len(n.input) < 2 or n.input[1] not in inits:
            continue
        w = tuple(inits[n.input[1]].dims)
        if n.op_type == "Conv":
            o = shapes.get(n.output[0], [])
            spatial = int(np.prod(o[2:])) if len(o) > 2 and all(o[2:]) else 0
            out[n.name] = int(np.prod(w)) * spatial  # Cout * Cin/groups * kh * kw * Hout * Wout
        else:
            out[n.name] = int(np.prod(w))
    return out


def _int8_layers(qmodel) -> list:
    """Conv/Gemm nodes whose weights are quantized (a DequantizeLinear feeds their weight input)."""
    producer = _producers(qmodel)
    return [n.name for n in qmodel.graph.node if n.op_type in ("Conv", "Gemm", "MatMul") and len(n.input) > 1
            and producer.get(n.input[1]) is not None and producer[n.input[1]].op_type == "DequantizeLinear"]


def _remove_dead(model) -> None:
    outs = {o.name for o in model.graph.output}
    while True:
        used = {i for n in model.graph.node for i in n.input} | outs
        keep = [n for n in model.graph.node if any(o in used for o in n.output)]
        if len(keep) == len(model.graph.node):
            break
        del model.graph.node[:]
        model.graph.node.extend(keep)
    drop_unused_initializers(model)


def keep_float(qmodel, fp32_model, layers, fp16: bool = False):
    """A copy of the Q/DQ model with ``layers`` (node names) in floating point: their weights back to the FP32
    export's, their input read before its Q/DQ (pass-through ops such as MaxPool are duplicated on the float path;
    the Q/DQ stays for other readers). With ``fp16`` the layers run explicitly in FP16: FP16 weights and a Cast on
    each side (TensorRT 11 is strongly typed: a region is FP16 only when the ONNX says so)."""
    import copy

    from onnx import TensorProto, helper, numpy_helper

    m = copy.deepcopy(qmodel)
    layers = set(layers)
    if not layers:
        return m
    f_nodes = {n.name: n for n in fp32_model.graph.node}
    f_inits = {i.name: i for i in fp32_model.graph.initializer}
    have = {i.name for i in m.graph.initializer}
    producer = _producers(m)
    new_nodes: dict = {}  # id(node) -> (nodes before, nodes after)
    for n in m.graph.node:
        if n.name not in layers:
            continue
        f = f_nodes[n.name]
        for k in range(1, len(n.input)):
            if k < len(f.input) and f.input[k]:
                n.input[k] = f.input[k]
                if f.input[k] in f_inits and f.input[k] not in have:
                    m.graph.initializer.append(copy.deepcopy(f_inits[f.input[k]]))
                    have.add(f.input[k])
        before, after = [], []

        def float_source(t, layer=n.name, before=before):
            """The float version of tensor ``t``: read before its Q/DQ; pass-through ops (MaxPool, pooling,
            Flatten) on the way are duplicated on the float path (the quantized path stays for other readers)."""
            p = producer.get(t)
            if p is None:
                return t
            if p.op_type == "DequantizeLinear":
                q = producer.get(p.input[0])
                return float_source(q.input[0]) if q is not None and q.op_type == "QuantizeLinear" else t
            if p.op_type in PASS_THROUGH:
                src = float_source(p.input[0])
                if src == p.input[0]:
                    return t
                dup = copy.deepcopy(p)
                dup.name = f"{p.name}_float_{layer}"
                dup.input[0] = src
                dup.output[0] = f"{p.output[0]}_float_{layer}"
                before.append(dup)
                return dup.output[0]
            return t

        n.input[0] = float_source(n.input[0])
        if fp16:
            cin = f"{n.input[0]}_fp16_{n.name}"
            before.append(helper.make_node("Cast", [n.input[0]], [cin], to=TensorProto.FLOAT16,
                                           name=f"{n.name}_cast_in_fp16"))
            n.input[0] = cin
            for k in range(1, len(n.input)):
                name = n.input[k]
                if name in have and f"{name}_fp16" not in have:
                    init = next(i for i in m.graph.initializer if i.name == name)
                    m.graph.initializer.append(numpy_helper.from_array(
                        numpy_helper.to_array(init).astype(np.float16), f"{name}_fp16"))
                    have.add(f"{name}_fp16")
                n.input[k] = f"{name}_fp16"
            out = n.output[0]
            n.output[0] = f"{out}_fp16"
            after.append(helper.make_node("Cast", [n.output[0]], [out], to=TensorProto.FLOAT, name=f"{n.name}_cast_out_fp32"))
        new_nodes[id(n)] = (before, after)
    nodes = []
    for n in m.graph.node:
        before, after = new_nodes.get(id(n), ([], []))
        nodes += before + [n] + after
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    del m.graph.value_info[:]  # stale for rewired tensors; nothing downstream needs it
    _remove_dead(m)
    return m


class _Scorer:
    """Top-1 and logit MSE of a candidate file against the FP32 export, on held-out validation images."""

    def __init__(self, fp32_model, val_x, val_y):
        self.x, self.y = val_x, val_y
        self.logits = _logits_fn(val_x)
        self.ref = self.logits(fp32_model)
        self.top1_fp32 = float((self.ref.argmax(1) == val_y).mean() * 100)
        self.evals = 0

    def __call__(self, model, idx=None) -> dict:
        self.evals += 1
        if idx is None:
            lg, ref, y = self.logits(model), self.ref, self.y
        else:
            lg, ref, y = _logits_fn(self.x[idx])(model), self.ref[idx], self.y[idx]
        top1 = float((lg.argmax(1) == y).mean() * 100)
        return {"top1": top1, "drop": float((ref.argmax(1) == y).mean() * 100) - top1,
                "mse": float(np.mean((lg - ref) ** 2))}


def sensitivity(qmodel, fp32_model, score: _Scorer, fp16: bool, macs: dict, n_images: int = 500, progress=None) -> list:
    """Per quantized layer, on the shipped form: the top-1 drop vs FP32 of the INT8 file with that layer alone
    kept in floating point (and the logit MSE), with the layer's share of the MACs. Most sensitive first."""
    idx = None
    if len(score.y) > n_images:  # a class-stratified subset keeps it affordable on big validation sets
        idx = np.sort(np.random.default_rng(0).choice(len(score.y), n_images, replace=False))
    base = score(qmodel, idx)
    total = max(1, sum(macs.values()))
    rows = []
    layers = _int8_layers(qmodel)
    for i, name in enumerate(layers):
        r = score(keep_float(qmodel, fp32_model, [name], fp16), idx)
        rows.append({"layer": name, "macs": macs.get(name, 0), "macs_share_pct": round(100 * macs.get(name, 0) / total, 3),
                     "drop_all_int8_points": round(base["drop"], 3), "drop_with_layer_float_points": round(r["drop"], 3),
                     "gain_points": round(base["drop"] - r["drop"], 3), "logit_mse_all_int8": base["mse"],
                     "logit_mse_with_layer_float": r["mse"], "mse_gain": base["mse"] - r["mse"]})
        if progress:
            progress(i + 1, len(layers), name)
    rows.sort(key=lambda r: (-r["gain_points"], -r["mse_gain"]))
    for k, r in enumerate(rows, 1):
        r["rank"] = k
    return rows


def write_sensitivity(rows: list, csv_path, png_path=None) -> None:
    """The sensitivity table as CSV and, when matplotlib is there, a bar plot (gain and MACs share per layer)."""
    import csv

    from edgeres.utils import atomic_path

    if not rows:
        return
    cols = ["rank", "layer", "macs", "macs_share_pct", "drop_all_int8_points", "drop_with_layer_float_points",
            "gain_points", "logit_mse_all_int8", "logit_mse_with_layer_float", "mse_gain", "kept_float"]
    with atomic_path(csv_path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    if png_path is None:
        return
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    top = rows[:30]
    fig, ax = plt.subplots(figsize=(10, 0.28 * len(top) + 1.5))
    ys = np.arange(len(top))[::-1]
    ax.barh(ys, [r["mse_gain"] for r in top], color=["tab:red" if r.get("kept_float") else "tab:blue" for r in top])
    def short(name):  # /layer1/layer1.0/conv1/Conv -> layer1.0/conv1
        parts = name.strip("/").split("/")[:-1]
        keep = [p for i, p in enumerate(parts) if not (i + 1 < len(parts) and parts[i + 1].startswith(p + "."))]
        return "/".join(keep) or name

    ax.set_yticks(ys, [f"{short(r['layer'])} ({r['macs_share_pct']:.1f}% MACs, {r['gain_points']:+.2f} pt)" for r in top],
                  fontsize=7)
    ax.set_xlabel("logit MSE removed when the layer alone is kept float (red: kept float in the shipped file)")
    ax.set_title("INT8 sensitivity per layer (shipped form, held-out images)")
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def _float_steps(n: int) -> list:
    steps, k = [], 1
    while k < n:
        steps.append(k)
        k = k + 1 if k < 4 else int(k * 1.5)
    return steps + [n]


def quantize_within_budget(fp32_path, out_path, target, calib_arrays, val_x, val_y, cfg: QuantizeConfig,
                           qat=None, log=None) -> dict:
    """INT8 within ``cfg.int8_max_drop`` points of the FP32 export, measured on the file that ships.

    Plain PTQ first; over budget, in the order of ``cfg.fallback``, stopping at the first that fits:
    ``methods`` (the other calibration methods, the best kept), ``float`` (per-layer sensitivity on the shipped form,
    the most sensitive layers kept in floating point, FP16 casts for TensorRT 11), ``qat`` (``qat``: a callable
    qmodel -> fine-tuned qmodel, see edgeres.stages.qat). Writes ``out_path``, and the sensitivity table next to it.
    """
    import dataclasses
    import time

    import onnx

    from edgeres.utils import atomic_path

    log = log or (lambda s: None)
    budget = cfg.int8_max_drop
    model, input_name = _load_fp32(fp32_path, target, calib_arrays)
    if val_x is None or len(val_x) == 0:
        raise EdgeresError("the INT8 budget (--int8-max-drop) needs validation images that calibration did not use (--data)")
    fp16 = target.runtime == "tensorrt" and (target.trt_family or 0) >= 11 and "fp16" in target.precisions
    score = _Scorer(model, val_x, val_y)
    attempts, t0 = [], time.time()

    def attempt(path, qm, **extra):
        r = score(qm)
        a = {"path": path, "top1": r["top1"], "drop": r["drop"], "mse": r["mse"], "seconds": round(time.time() - t0, 1),
             **extra}
        attempts.append(a)
        log(f"INT8 {path}: top-1 {r['top1']:.2f}% vs FP32 {score.top1_fp32:.2f}% ({0.0 - r['drop']:+.2f} points, budget "
            f"{budget})")
        return a

    qmodel, info = _ptq(model, target, calib_arrays, cfg, input_name)
    best = best_int8 = (attempt(f"ptq-{cfg.method}", qmodel, method=cfg.method), qmodel)
    def fits(a):
        return a["drop"] <= budget + 1e-9

    sens_rows, chosen_float = [], []
    macs = layer_macs(model)
    for step in cfg.fallback:
        if fits(best[0]):
            break
        if step == "methods":
            for meth in [m for m in cfg.methods if m != cfg.method]:
                qm, _ = _ptq(model, target, calib_arrays, dataclasses.replace(cfg, method=meth), input_name)
                a = attempt(f"ptq-{meth}", qm, method=meth)
                if (a["drop"], a["mse"]) < (best[0]["drop"], best[0]["mse"]):
                    best = best_int8 = (a, qm)
        elif step == "float":
            base_a, base_q = best
            log("INT8 over budget: per-layer sensitivity on the shipped form ...")
            sens_rows = sensitivity(base_q, model, score, fp16, macs, cfg.sensitivity_images,
                                    lambda i, n, name: log(f"  sensitivity {i}/{n} {name}") if i % 10 == 0 or i == n else None)
            total = max(1, sum(macs.values()))
            order = [r["layer"] for r in sens_rows]
            for k in _float_steps(len(order)):
                share = sum(macs.get(x, 0) for x in order[:k]) / total
                if share > cfg.max_float_macs_share:
                    break
                qm = keep_float(base_q, model, order[:k], fp16)
                a = attempt(f"ptq-{base_a.get('method', cfg.method)}+float", qm, method=base_a.get("method"),
                            float_layers=order[:k], float_macs_share=share)
                if (a["drop"], a["mse"]) < (best[0]["drop"], best[0]["mse"]) or fits(a):
                    best = (a, qm)
                    chosen_float = order[:k]
                if fits(a):
                    break
        elif step == "qat":
            if qat is None:
                log("INT8 over budget: QAT skipped (no PyTorch model or training images given)")
                attempts.append({"path": "qat", "skipped": "no PyTorch model or training images"})
                continue
            base, base_q = best_int8  # QAT starts from the best all-INT8 file (no float layers)
            log("INT8 over budget: quantization-aware fine-tuning (FP32 model as teacher) ...")
            try:
                qm, qinfo = qat(base_q)
            except EdgeresError as e:  # e.g. a TorchScript model, no training split: QAT cannot run, say why
                log(f"INT8 over budget: QAT skipped ({e})")
                attempts.append({"path": "qat", "skipped": str(e)})
                continue
            a = attempt("qat", qm, method=base.get("method"), qat=qinfo)
            if (a["drop"], a["mse"]) < (best[0]["drop"], best[0]["mse"]) or fits(a):
                best, chosen_float = (a, qm), []
        elif step not in FALLBACKS and step != "none":
            raise EdgeresError(f"unknown INT8 fallback {step!r}; choose from {', '.join(FALLBACKS)}")
    final_a, qmodel = best
    for r in sens_rows:
        r["kept_float"] = r["layer"] in chosen_float
    total = max(1, sum(macs.values()))
    float_share = sum(macs.get(x, 0) for x in chosen_float) / total
    onnx.checker.check_model(qmodel)
    with atomic_path(out_path) as tmp:
        onnx.save(qmodel, str(tmp))
    paths = {}
    if sens_rows:
        paths = {"sensitivity_csv": f"{out_path}.sensitivity.csv", "sensitivity_png": f"{out_path}.sensitivity.png"}
        write_sensitivity(sens_rows, paths["sensitivity_csv"], paths["sensitivity_png"])
    summary = qdq_summary(qmodel)
    return {"format": target.quant_format, "summary": summary, "adds_rewritten": info["adds_rewritten"],
            "signed_rewrites": info["signed_rewrites"], "accuracy_control": None,
            "budget": {"max_drop_points": budget, "within": fits(final_a), "path": final_a["path"],
                       "method": final_a.get("method"), "top1_fp32": score.top1_fp32, "top1_int8": final_a["top1"],
                       "drop_points": final_a["drop"], "float_layers": chosen_float,
                       "float_macs_share": float_share, "fp16_casts": fp16 and bool(chosen_float),
                       "validation_images": len(val_y), "evaluations": score.evals,
                       "seconds": round(time.time() - t0, 1), "attempts": attempts},
            **paths}


def budget_note(b: dict) -> str:
    """One line for the report: which path produced the file, the layers kept in float and their MACs share."""
    s = (f"INT8 path: {b['path']} ({'within' if b['within'] else 'OVER'} the {b['max_drop_points']}-point budget: "
         f"{0.0 - b['drop_points']:+.2f} points vs FP32 on {b['validation_images']} held-out images)")
    skipped = [f"{a['path']} skipped: {a['skipped']}" for a in b.get("attempts", []) if a.get("skipped")]
    if skipped and not b["within"]:
        s += "; " + "; ".join(skipped)
    if b["float_layers"]:
        prec = "FP16 (explicit casts)" if b.get("fp16_casts") else "float"
        s += (f"; {len(b['float_layers'])} layers kept {prec}, {100 * b['float_macs_share']:.1f}% of MACs not INT8: "
              + ", ".join(b["float_layers"][:6]) + (" ..." if len(b["float_layers"]) > 6 else ""))
    return s


class QuantizeStage(Stage):
    """INT8 post-training quantization in the target's form, held to its accuracy budget against the FP32 export
    (other calibration methods, float layers, QAT when over it); measured against the FP32 export."""

    name = "quantize"
    keys = ("target", "calib", "calib_size", "calib_method", "quant_max_drop", "seed", "int8_max_drop",
            "int8_fallback", "qat_epochs")
    runtime = "onnxruntime"

    def run(self, ctx: Context) -> StageResult:
        import os

        from edgeres.calibration import calibration_set_from, select_stratified
        from edgeres.stages.qat import make_qat

        t, cfg = ctx.target, ctx.cfg
        if not t.int8:
            raise StageSkipped(f"{t.name} has no useful INT8 ({', '.join(t.precisions)}): the FP32 export is "
                               "deployed, FP16 engine")
        d = ctx.stage_dir(self.name)
        if cfg.calib:
            cs = calibration_set_from(cfg.calib, cfg.calib_size, cfg.seed)
        else:
            cs = select_stratified(ctx.splits.train or ctx.splits.val, cfg.calib_size, cfg.seed, ctx.splits.classes,
                                   ctx.splits.root)
        budget = cfg.quant_max_drop if cfg.quant_max_drop is not None else cfg.int8_max_drop  # the old name: an alias
        qc = QuantizeConfig(method=cfg.calib_method, subset_size=cfg.calib_size, int8_max_drop=budget,
                            fallback=tuple(x for x in cfg.int8_fallback if x != "none"), qat_epochs=cfg.qat_epochs)
        out = d / "model_int8.onnx"
        qat = make_qat(ctx.artifact("prune", "model") or cfg.model, ctx.splits, d / "qat_work", epochs=cfg.qat_epochs,
                       lr=qc.qat_lr, batch_size=cfg.batch_size, trust_model=cfg.trust_model, log=ctx.log)
        info = run_quantize(ctx.artifact("export", "onnx"), None, t, out, qc, seed=cfg.seed, calib_set=cs,
                            pre_overrides=ctx.pre_overrides(), splits=ctx.splits, qat=qat, log=ctx.log)
        info.pop("nncf_log", None)
        note = ("ONNX Runtime as the accuracy proxy for the TensorRT engine (latency of S8 Q/DQ on CPU is not the "
                "engine's)" if t.quant_format == "trt-qdq" else "uint8 activations / int8 weights (ORT x86 fast path)")
        if info.get("budget"):
            note = budget_note(info["budget"]) + "; " + note
        rows = ctx.measure(self.name, out, "onnxruntime", note=note)
        fp32, int8 = ctx.stage_logits("export", "onnxruntime"), ctx.stage_logits(self.name, "onnxruntime")
        if fp32 is not None and int8 is not None and fp32.shape == int8.shape:
            from edgeres.metrics import agreement, topk_accuracy

            y = np.asarray([c for _, c in ctx.splits.val])
            vs = {"top1_delta_vs_fp32": topk_accuracy(int8, y, (1,))["top1"] - topk_accuracy(fp32, y, (1,))["top1"],
                  "agreement_vs_fp32": agreement(int8, fp32)["agreement"]}
            info.update(vs)
            for r in rows:
                r["note"] = (f"INT8 vs its FP32 export: {vs['top1_delta_vs_fp32']:+.2f} points, "
                             f"{vs['agreement_vs_fp32']:.1f}% same top-1; " + (r["note"] or ""))
        if t.quant_format == "ort-u8s8":
            rows += ctx.measure(self.name, out, "openvino")
        arts = {"onnx": "quantize/model_int8.onnx", "manifest": "quantize/model_int8.onnx.calib.json"}
        for k in ("sensitivity_csv", "sensitivity_png", "calib_cache"):
            if info.get(k) and os.path.exists(info[k]):
                arts[k] = os.path.relpath(info[k], ctx.run_dir)
        return StageResult(artifacts=arts, rows=rows, info=info)
