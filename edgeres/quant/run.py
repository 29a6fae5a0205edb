"""`edgeres quantize` on files: choose the calibration set and write its manifest, quantize (within the budget when
one is given), write a TensorRT calibration cache where the target needs one, and measure FP32 vs INT8 top-1."""

from __future__ import annotations

import numpy as np

from edgeres.errors import EdgeresError, require_path
from edgeres.quant.budget import quantize_within_budget
from edgeres.quant.ptq import quantize_onnx
from edgeres.quant.scoring import top1_fn
from edgeres.quant.settings import QuantizeConfig


def onnx_preprocess(onnx_path) -> dict:
    from edgeres.runtimes import artifact_info

    return artifact_info(onnx_path).preprocess


def _arrays(items, pre):
    from edgeres.metrics import iter_batches

    batches = list(iter_batches(items, pre, 64))
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


def held_out_arrays(splits, calib_paths, pre):
    """(x, y) of the validation images that calibration did not use, preprocessed; refused when there are none."""
    import os

    used = {os.path.realpath(p) for p in calib_paths}
    held_out = [it for it in splits.val if os.path.realpath(it[0]) not in used]
    if not held_out:
        raise EdgeresError(f"every validation image of {splits.root} is in the calibration set; the INT8 accuracy must be "
                           "measured on images calibration did not use: calibrate from the train split or another folder")
    return _arrays(held_out, pre)


def _calibration_and_check(calib_dir, cfg, seed, pre, data, splits, calib_set, log):
    """The calibration set, the (x, y) the budget is checked on ((None, None) without any), and where those came
    from: ``--data``'s validation split (less any calibration image), else a stratified slice held out of the
    calibration folder (never calibrated on)."""
    from edgeres.calibration import calibration_set_from, calibration_with_holdout
    from edgeres.data import resolve_data

    if data or splits is not None or calib_set is not None or cfg.int8_max_drop is None:
        cs = calib_set or calibration_set_from(calib_dir, cfg.subset_size, seed)
        if not data and splits is None:
            return cs, None, None, "no validation images given"
        splits = splits if splits is not None else resolve_data(data)
        x, y = held_out_arrays(splits, cs.paths, pre)
        return cs, x, y, f"{len(y)} validation images of {splits.root} not used for calibration"
    cs, check, source = calibration_with_holdout(calib_dir, cfg.subset_size, seed)
    (log or (lambda s: None))(f"INT8 budget check: {source}")
    if check is None:
        return cs, None, None, source
    x, y = _arrays(check, pre)
    return cs, x, y, source


def _cache_and_top1(info: dict, onnx_path, out, target, calib_cache, val_x, val_y) -> None:
    """The TensorRT calibration cache (TensorRT 8.x targets, or when asked) and FP32 vs INT8 top-1, into ``info``."""
    import os

    import onnx

    from edgeres.calibration import activation_scales_from_qdq, write_trt_cache

    qmodel = onnx.load(str(out)) if (calib_cache or target.implicit_int8 or val_x is not None) else None
    if calib_cache or target.implicit_int8:
        path = calib_cache or os.path.join(os.path.dirname(os.path.abspath(out)), "calib.cache")
        write_trt_cache(path, activation_scales_from_qdq(qmodel), trt_version=_trt_cache_version(target))
        info["calib_cache"] = path
    if info.get("budget"):
        info["top1_fp32"], info["top1_int8"] = info["budget"]["top1_fp32"], info["budget"]["top1_int8"]
    elif val_x is not None:
        validate = top1_fn(val_x, val_y)
        info["top1_fp32"] = validate(onnx.load(str(onnx_path))) * 100
        info["top1_int8"] = validate(qmodel) * 100


def run_quantize(onnx_path, calib_dir, target, out, cfg: QuantizeConfig | None = None, data=None, calib_cache=None,
                 seed: int = 0, pre_overrides: dict | None = None, calib_set=None, qat=None, log=None,
                 splits=None) -> dict:
    """`edgeres quantize`: choose the calibration set, write its manifest, quantize, measure FP32 vs INT8 top-1.

    Writes ``out``, ``<out>.calib.json`` (the manifest) and, for TensorRT 8.x targets or when asked,
    a TensorRT calibration cache. Nothing is written under ``out`` unless quantization succeeds.
    """

    from edgeres.calibration import load_arrays, write_manifest
    from edgeres.data.model_inputs import resolve_model_preprocess

    cfg = cfg or QuantizeConfig()
    require_path(onnx_path, "file", "ONNX file")
    if not target.int8:
        raise EdgeresError(f"target {target.name} has no useful INT8 ({', '.join(target.precisions)} only); "
                           "deploy the FP32/FP16 export instead")
    pre = resolve_model_preprocess(onnx_preprocess(onnx_path), pre_overrides)
    cs, val_x, val_y, source = _calibration_and_check(calib_dir, cfg, seed, pre, data, splits, calib_set, log)
    arrays = load_arrays(cs, pre)
    if cfg.int8_max_drop is not None and val_x is not None:
        info = quantize_within_budget(onnx_path, out, target, arrays, val_x, val_y, cfg,
                                      qat=qat(pre) if qat is not None else None, log=log)
        info["budget"]["validation_source"] = source
    else:
        info = quantize_onnx(onnx_path, out, target, arrays, cfg, val_x, val_y)
        if cfg.int8_max_drop is not None:
            info["budget_unchecked"] = source  # no labelled images calibration did not use: plain PTQ, said so
    manifest = f"{out}.calib.json"
    write_manifest(manifest, cs, pre)
    info["manifest"] = manifest
    info["calibration_images"] = len(cs)
    _cache_and_top1(info, onnx_path, out, target, calib_cache, val_x, val_y)
    return info


def _trt_cache_version(target) -> str:
    v = target.trt_version or "8.5"
    return {"8.5": "8.5.2", "8.2": "8.2.1"}.get(v, v + ".0")
