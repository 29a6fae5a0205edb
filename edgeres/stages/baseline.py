"""The baseline stage: the model as given, in torch and as an FP32 ONNX export in ONNX Runtime — the 'before' of
every figure in the report."""

from __future__ import annotations

import os
from pathlib import Path

from edgeres.stage_names import BASELINE
from edgeres.stages.base import Context, Stage, StageResult


class BaselineStage(Stage):
    name = BASELINE
    keys = ("model", "image_size", "crop_ratio", "mean", "std", "opset")
    runtime = "torch"

    def run(self, ctx: Context) -> StageResult:
        from edgeres.onnx_export import ExportConfig, export_onnx

        d = ctx.stage_dir(self.name)
        lm = ctx.loaded
        rows = ctx.measure(self.name, Path(ctx.cfg.model), "torch", model=lm.model)
        onnx_path = d / "model.onnx"
        export_onnx(lm.model, onnx_path, ctx.pre, lm.meta, ExportConfig(opset=ctx.cfg.opset))
        rows += ctx.measure(self.name, onnx_path, "onnxruntime", note="FP32 export of the unpruned model")
        return StageResult(artifacts={"model": os.path.abspath(ctx.cfg.model), "onnx": "baseline/model.onnx"},
                           rows=rows)
