"""The prune stage: structured channel pruning (by ratio, or by a latency target measured on the target's runtime)
and 2:4 sparsity, then distillation fine-tuning (the library: edgeres.prune)."""

from __future__ import annotations

from edgeres.errors import StageSkipped
from edgeres.prune.channels import PruneConfig
from edgeres.prune.finetune import FinetuneConfig, prune_and_finetune
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
        if not cfg.prune and not cfg.sparsity and not latency_goal:
            raise StageSkipped("pruning off (--prune 0)")
        d = ctx.stage_dir(self.name)
        loaded = ctx.load(cfg.model)  # a fresh copy: pruning changes it in place
        pc = PruneConfig(ratio=cfg.prune or None, importance=cfg.importance, sparsity=cfg.sparsity, seed=cfg.seed,
                         accept_shortfall=cfg.accept_shortfall)
        ft = FinetuneConfig(epochs=cfg.finetune_epochs, kd_alpha=cfg.kd_alpha, kd_temperature=cfg.kd_temperature,
                            lr=cfg.finetune_lr, batch_size=cfg.batch_size, amp=cfg.amp, pipeline=cfg.pipeline,
                            workers=cfg.workers)
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
        info = prune_and_finetune(loaded, ctx.splits, ctx.pre, pc, ft, d / "model.pt", target=ctx.target,
                                  trust_model=cfg.trust_model)
        for tmp in d.glob("model.last.pt"):
            tmp.unlink()  # only for resuming an interrupted fine-tune; the stage is done
        note = f"channel ratio {info['ratio']:.2f}, {info['macs_before'] / max(1, info['macs_after']):.2f}x fewer MACs"
        if cfg.sparsity:
            note += f", 2:4 on {info.get('sparse_layers', 0)} layers"
        if search is not None:
            from edgeres.prune.latency import summary

            info["latency_search"] = search
            note += f"; {summary(search)}"
            if search.get("shortfall"):
                note += f"; shortfall accepted: {search['shortfall']}"
        rows = ctx.measure(self.name, d / "model.pt", "torch", note=note, model=info["model"])
        keep = {k: v for k, v in info.items() if k not in ("model", "meta")}
        return StageResult(artifacts={"model": "prune/model.pt"}, rows=rows, info=keep)
