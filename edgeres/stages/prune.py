"""The prune stage: structured channel pruning (by ratio, or by a latency target measured on the target's runtime)
and 2:4 sparsity, then distillation fine-tuning (the library: edgeres.prune)."""

from __future__ import annotations

from edgeres.errors import StageSkipped
from edgeres.prune.finetune import prune_and_finetune, prune_settings
from edgeres.stage_names import PRUNE
from edgeres.stages.base import Context, Stage, StageResult


class PruneStage(Stage):
    """Structured channel pruning (by ratio, or by a latency target measured on the target's runtime) and 2:4
    sparsity, then distillation fine-tuning from the unpruned model; under torchrun the other ranks join the
    fine-tuning (edgeres.ddp)."""

    name = PRUNE
    keys = ("prune", "target_latency_ms", "target_speedup", "accept_shortfall", "sparsity", "importance",
            "finetune_epochs", "kd_alpha", "kd_temperature", "finetune_lr", "batch_size", "seed", "target", "amp",
            "pipeline", "workers")
    runtime = "torch"

    @staticmethod
    def hash_extra(cfg) -> dict:
        """With a latency goal and --device, the ratio depends on the board it was timed on (nothing otherwise, so
        adding --device to a --prune R run reuses this stage)."""
        latency = cfg.target_latency_ms is not None or cfg.target_speedup is not None
        return {"device": list(cfg.device)} if latency and cfg.device else {}

    def run(self, ctx: Context) -> StageResult:
        from edgeres import ddp

        cfg = ctx.cfg
        latency_goal = cfg.target_latency_ms is not None or cfg.target_speedup is not None
        pc, ft = prune_settings(cfg, **ctx.prune_options)  # `edgeres prune` adds its own (--target-macs, ...)
        if pc.ratio is None and pc.target_macs is None and not pc.sparsity and not latency_goal:
            raise StageSkipped("pruning off (--prune 0)")
        path = ctx.prune_out or ctx.stage_dir(self.name) / "model.pt"
        loaded = ctx.load(cfg.model)  # a fresh copy: pruning changes it in place
        search = None
        if latency_goal:  # the ratio whose measured latency meets the target (or the MACs fallback, named in the note)
            from edgeres.prune.latency import LatencyTarget, find_ratio
            from edgeres.prune.reach import latency_shortfall

            # with --device the pipeline gives the factory that times each candidate's engine on the board
            search = find_ratio(loaded.model, ctx.target, ctx.pre,
                                LatencyTarget(cfg.target_latency_ms, cfg.target_speedup), pc,
                                classes=ctx.splits.classes, threads=cfg.threads, log=ctx.log,
                                measure_factory=ctx.latency_measure)
            search["shortfall"] = latency_shortfall(search, loaded.model, pc, ctx.pre.size, ctx.target)
            pc.ratio = search["ratio"]
        ddp.send_job({"prune": pc, "finetune": ft})  # under torchrun: the other ranks join the fine-tuning
        info = prune_and_finetune(loaded, ctx.splits, ctx.pre, pc, ft, path, target=ctx.target,
                                  trust_model=cfg.trust_model)
        if ctx.prune_out is None:
            for tmp in path.parent.glob("model.last.pt"):
                tmp.unlink()  # only for resuming an interrupted fine-tune; the stage is done
        else:  # `edgeres prune` reports top-1 after (and before: on ctx.loaded, the unpruned copy)
            from edgeres.prune.finetune import val_top1

            info["top1_after"] = val_top1(info["model"], ctx.splits, ctx.pre)
        note = f"channel ratio {info['ratio']:.2f}, {info['macs_before'] / max(1, info['macs_after']):.2f}x fewer MACs"
        if cfg.sparsity:
            note += f", 2:4 on {info.get('sparse_layers', 0)} layers"
        if search is not None:
            from edgeres.prune.latency import summary

            info["latency_search"] = search
            note += f"; {summary(search)}"
            if search.get("shortfall"):
                note += f"; shortfall accepted: {search['shortfall']}"
        rows = ctx.measure(self.name, path, "torch", note=note, model=info["model"])
        keep = {k: v for k, v in info.items() if k not in ("model", "meta")}
        return StageResult(artifacts={"model": "prune/model.pt"}, rows=rows, info=keep)
