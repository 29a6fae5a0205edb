"""The device stage (with ``--device``): the run's bundle on each of the user's own Jetsons, over ssh. Shipped, built
there (engine and timing cache kept on the device), checked against the host's reference outputs, benchmarked
(batch 1 and the profile's max batch, power and energy per image from tegrastats) and evaluated on the validation
split; its rows are the report's engine rows (edgeres.device)."""

from __future__ import annotations

from edgeres.stage_names import BUNDLE, DEVICE
from edgeres.stages.base import Context, Stage, StageResult


class DeviceStage(Stage):
    name = DEVICE
    keys = ("target", "device")
    runtime = "tensorrt"

    def run(self, ctx: Context) -> StageResult:
        from edgeres.device.measure import measure_bundle, summary_line

        bundle = ctx.artifact(BUNDLE, "bundle")
        ref = ctx.results[BUNDLE].info.get("reference_sha256")
        sizes = sorted({1, ctx.target.max_batch})
        rows, info, artifacts = [], {}, {}
        # a finished stage being redone (--force device, or changed inputs) measures again; an interrupted one
        # resumes, taking the devices it had finished
        resume = not (ctx.run_dir / self.name / "stage.json").exists()
        for s in ctx.fleet.sessions:
            d = ctx.stage_dir(self.name) / s.address.slug
            res = measure_bundle(s, bundle, d, sizes, ctx.cfg.latency_min_time, val=ctx.splits.val,
                                 classes=ctx.splits.classes, reference=ref, base_top1=ctx.baseline_top1(),
                                 resume=resume)
            ctx.log(summary_line(s.address, res))
            rows += res["rows"]
            info[str(s.address)] = {k: res[k] for k in ("label", "build", "seconds", "device_seconds",
                                                        "overhead_seconds", "reused")}
            artifacts[f"{s.address.slug}_csv"] = f"{self.name}/{s.address.slug}/device.csv"
        return StageResult(artifacts=artifacts, rows=rows, info={"devices": info, "notes": ctx.fleet.notes})
