"""The engine stage: the TensorRT engine where this host can build one (the library: edgeres.engine_build)."""

from __future__ import annotations

from edgeres.engine_build import run_engine
from edgeres.errors import StageSkipped, Unavailable
from edgeres.stage_names import ENGINE
from edgeres.stages.base import Context, Stage, StageResult


class EngineStage(Stage):
    """The TensorRT engine, where this host can build one (a labelled host proxy for a Jetson); otherwise skipped,
    with the trtexec line to run on the device in engine/trtexec.txt."""

    name = ENGINE
    keys = ("target", "dla_core", "sparsity")
    runtime = "tensorrt"

    def run(self, ctx: Context) -> StageResult:
        from edgeres.utils import write_text_atomic

        t = ctx.target
        if t.runtime != "tensorrt":
            raise StageSkipped(f"target {t.name} runs {t.runtime}: no TensorRT engine")
        d = ctx.stage_dir(self.name)
        engine = d / "model.engine"
        try:
            res = run_engine(ctx.deploy_onnx(), engine, t, ctx.pre, classes=ctx.splits.classes,
                             dla_core=ctx.cfg.dla_core, sparsity=bool(ctx.cfg.sparsity), calib_cache=None, log=ctx.log)
        except (StageSkipped, Unavailable) as e:
            line = e.info["trtexec"]
            write_text_atomic(d / "trtexec.txt", line + "\n")
            raise StageSkipped(f"{e}; on the device: {line}", artifacts={"trtexec": "engine/trtexec.txt"},
                               info={"trtexec": line}) from None
        write_text_atomic(d / "trtexec.txt", res["trtexec"] + "\n")
        rows = ctx.measure(self.name, engine, "tensorrt", note=res["note"])  # a host proxy says so in its rows
        return StageResult(artifacts={"engine": "engine/model.engine", "trtexec": "engine/trtexec.txt"}, rows=rows,
                           info={"sidecar": res["sidecar"], "trtexec": res["trtexec"]})

