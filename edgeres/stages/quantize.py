"""The quantize stage: INT8 post-training quantization of the FP32 export in the target's form, held to the INT8
budget (edgeres.quant: NNCF PTQ, the TensorRT and x86 graph rules, the budget search with its fallbacks, QAT)."""

from __future__ import annotations

import numpy as np

from edgeres.errors import StageSkipped
from edgeres.quant.budget import budget_note
from edgeres.quant.run import run_quantize
from edgeres.quant.settings import quantize_settings
from edgeres.stage_names import EXPORT, PRUNE, QUANTIZE
from edgeres.stages.base import Context, Stage, StageResult


class QuantizeStage(Stage):
    """INT8 post-training quantization in the target's form, held to its accuracy budget against the FP32 export
    (other calibration methods, float layers, QAT when over it); measured against the FP32 export."""

    name = QUANTIZE
    keys = ("target", "calib", "calib_size", "calib_method", "quant_max_drop", "seed", "int8_max_drop",
            "int8_fallback", "qat_epochs", "bias_correction")
    runtime = "onnxruntime"

    def run(self, ctx: Context) -> StageResult:
        import os

        from edgeres.calibration import calibration_set_from, select_stratified
        from edgeres.quant.qat import make_qat

        t, cfg = ctx.target, ctx.cfg
        if not t.int8:
            raise StageSkipped(f"{t.name} has no useful INT8 ({', '.join(t.precisions)}): the FP32 export is "
                               "deployed, FP16 engine")
        qc = quantize_settings(cfg)
        command = ctx.quantize_out is not None  # `edgeres quantize`: its own file in and out, its own QAT factory
        out = ctx.quantize_out if command else ctx.stage_dir(self.name) / "model_int8.onnx"
        cs = qat = None
        if ctx.splits is not None:  # the run's data: calibrate on --calib, else a stratified sample of the train split
            cs = (calibration_set_from(cfg.calib, cfg.calib_size, cfg.seed) if cfg.calib else
                  select_stratified(ctx.splits.train or ctx.splits.val, cfg.calib_size, cfg.seed, ctx.splits.classes,
                                    ctx.splits.root))
        if command:
            qat = ctx.quantize_qat
        else:
            qat = make_qat(ctx.artifact(PRUNE, "model") or cfg.model, ctx.splits, out.parent / "qat_work",
                           epochs=cfg.qat_epochs, lr=qc.qat_lr, batch_size=cfg.batch_size, trust_model=cfg.trust_model,
                           log=ctx.log)
        info = run_quantize(ctx.quantize_onnx or ctx.artifact(EXPORT, "onnx"), cfg.calib, t, out, qc,
                            data=cfg.data if ctx.splits is None else None, calib_cache=ctx.calib_cache, seed=cfg.seed,
                            calib_set=cs, pre_overrides=ctx.pre_overrides(), splits=ctx.splits, qat=qat, log=ctx.log)
        info.pop("nncf_log", None)
        if not ctx.measuring:
            return StageResult(info=info)
        note = ("ONNX Runtime as the accuracy proxy for the TensorRT engine (latency of S8 Q/DQ on CPU is not the "
                "engine's)" if t.quant_format == "trt-qdq" else "uint8 activations / int8 weights (ORT x86 fast path)")
        if info.get("budget"):
            note = budget_note(info["budget"]) + "; " + note
        rows = ctx.measure(self.name, out, "onnxruntime", note=note)
        fp32, int8 = ctx.stage_logits(EXPORT, "onnxruntime"), ctx.stage_logits(self.name, "onnxruntime")
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
