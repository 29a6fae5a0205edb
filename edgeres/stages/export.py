"""The export stage: the (pruned) model as an FP32 ONNX file (the library: edgeres.onnx_export)."""

from __future__ import annotations

from edgeres.onnx_export import ExportConfig, export_checked
from edgeres.stage_names import EXPORT, PRUNE
from edgeres.stages.base import Context, Stage, StageResult


class ExportStage(Stage):
    """The (pruned) model as an FP32 ONNX file: BN folded, metadata, parity with PyTorch checked."""

    name = EXPORT
    keys = ("opset",)
    runtime = "onnxruntime"

    def run(self, ctx: Context) -> StageResult:
        from pathlib import Path

        d = ctx.stage_dir(self.name)
        lm = ctx.load(ctx.artifact(PRUNE, "model") or Path(ctx.cfg.model))
        out = d / "model.onnx"
        ecfg = ctx.export_config or ExportConfig(opset=ctx.cfg.opset)
        info = export_checked(lm.model, out, ctx.pre, lm.meta, ecfg, ctx.splits.val if ctx.splits else None)
        if ctx.cfg.sparsity:
            from edgeres.prune.sparsity import check_onnx_2_4

            sp = check_onnx_2_4(out)
            info["sparsity_check"] = {"sparse": len(sp["sparse_layers"]), "dense": sp["dense_layers"]}
        p = info["parity"]
        note = f"parity vs torch: max|dlogit| {p['max_abs_dlogit']:.1e}, agreement {p['agreement']:.1f}%"
        rows = ctx.measure(self.name, out, "onnxruntime", note=note)
        rows += ctx.measure(self.name, out, "openvino", note="fp32 model (OpenVINO picks bf16 on AMX CPUs)")
        return StageResult(artifacts={"onnx": "export/model.onnx"}, rows=rows, info=info)
