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
        from edgeres.bundle import bundle_of_run
        from edgeres.report import new_row

        out = ctx.bundle_out or ctx.stage_dir(self.name) / "bundle.tar.gz"
        q = ctx.results.get(QUANTIZE)
        res = bundle_of_run(out, ctx.deploy_onnx(), ctx.target, ctx.pre, ctx.splits.classes,
                            source_run=str(ctx.run_dir.name), quantize_rows=q.rows if q is not None else None,
                            dla_core=ctx.cfg.dla_core, sparsity=bool(ctx.cfg.sparsity),
                            calib_cache=ctx.artifact(QUANTIZE, "calib_cache"), validation=ctx.splits.val,
                            fp32_onnx=ctx.artifact(EXPORT, "onnx"))
        ref = res.get("reference_sha256")
        row = new_row(stage=self.name, artifact="bundle.tar.gz", runtime=self.runtime, input_size=ctx.pre.size,
                      model_size_mb=res["size_mb"], status="ok",
                      note=f"{len(res['files'])} files; on the device: ./run.sh build && ./run.sh bench"
                      + (f" && ./run.sh check --expect-reference {ref}" if ref else ""))
        return StageResult(artifacts={BUNDLE: "bundle/bundle.tar.gz"}, rows=[row],
                           info={"files": len(res["files"]), "reference_sha256": ref,
                                 "manifest_sha256": res["manifest_sha256"]})
