"""The bundle stage: what ships to the device (edgeres.bundle.make_bundle): the model the target runs, the runtime
package, labels, preprocessing, the TensorRT build spec, validation images and the host's reference outputs."""

from __future__ import annotations

from edgeres.stage_names import BUNDLE, EXPORT, QUANTIZE
from edgeres.stages.base import Context, Stage, StageResult


class BundleStage(Stage):
    name = BUNDLE
    keys = ("target",)
    runtime = "edgeres_deploy"

    def run(self, ctx: Context) -> StageResult:
        from edgeres.bundle import make_bundle
        from edgeres.engine_build import onnx_build_spec
        from edgeres.report import new_row

        t = ctx.target
        d = ctx.stage_dir(self.name)
        onnx_path = ctx.deploy_onnx()
        spec = None
        if t.runtime == "tensorrt":
            spec = onnx_build_spec(onnx_path, "model.engine", t, ctx.pre, dla_core=ctx.cfg.dla_core,
                                   sparsity=bool(ctx.cfg.sparsity))
        extra = {"source_run": str(ctx.run_dir.name)}
        if t.runtime == "onnxruntime" and ctx.results.get(QUANTIZE) is not None:  # x86: the faster runtime
            from edgeres.recommend import faster_runtime

            extra["backend"], extra["backend_p50_ms"] = faster_runtime(ctx.results[QUANTIZE].rows)
        res = make_bundle(d / "bundle.tar.gz", onnx_path, t, ctx.pre, ctx.splits.classes, spec=spec,
                          calib_cache=ctx.artifact(QUANTIZE, "calib_cache"), extra=extra,
                          validation=ctx.splits.val, fp32_onnx=ctx.artifact(EXPORT, "onnx"))
        ref = res.get("reference_sha256")
        row = new_row(stage=self.name, artifact="bundle.tar.gz", runtime=self.runtime, input_size=ctx.pre.size,
                      model_size_mb=res["size_mb"], status="ok",
                      note=f"{len(res['files'])} files; on the device: ./run.sh build && ./run.sh bench"
                      + (f" && ./run.sh check --expect-reference {ref}" if ref else ""))
        return StageResult(artifacts={"bundle": "bundle/bundle.tar.gz"}, rows=[row],
                           info={"files": len(res["files"]), "reference_sha256": ref})
