"""Measure one artifact in one runtime the way every stage is measured: accuracy, latency, memory -> report rows."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from edgeres.metrics import (
    agreement,
    default_threads,
    measure_latency,
    onnx_macs_params,
    peak_rss_mb,
    run_logits,
    topk_accuracy,
    torch_macs_params,
)
from edgeres.report import new_row
from edgeres.runtimes import RuntimeUnavailable, artifact_kind, load_runtime

OPTIONAL_RUNTIMES = ("openvino",)  # a second opinion on a file: its failure is a `failed` row, never a failed stage


@dataclass
class MeasureConfig:
    batch_sizes: tuple = (1,)
    warmup: int = 5
    min_runs: int = 30
    max_runs: int = 1000
    min_time_s: float = 1.0
    threads: int | None = None
    eval_batch: int = 32
    memory: bool = True  # peak RSS in a child process (a few seconds per artifact)
    options: dict = field(default_factory=dict)  # runtime options (device, trust_model, providers)

    def resolved_threads(self) -> int:
        return self.threads or default_threads()


@dataclass
class Measurement:
    rows: list
    logits: np.ndarray | None = None
    targets: np.ndarray | None = None


def measure(stage: str, artifact, runtime: str, pre, samples: list | None = None, cfg: MeasureConfig | None = None,
            reference_logits: np.ndarray | None = None, baseline_top1: float | None = None,
            skip_corrupt: bool = False, note: str = "", progress: bool = True, model=None) -> Measurement:
    """Rows (one per batch size) for ``artifact`` in ``runtime``; ``skipped`` with the reason where it cannot run."""
    cfg = cfg or MeasureConfig()
    threads = cfg.resolved_threads()
    size = pre.size
    base = dict(stage=stage, artifact=os.path.basename(str(artifact)), runtime=runtime, input_size=size)
    try:
        opts = dict(cfg.options)
        if model is not None and runtime == "torch":
            opts["model"] = model
        rt = load_runtime(runtime, artifact, threads=threads, **opts)
    except RuntimeUnavailable as e:
        return Measurement([new_row(**base, batch_size=bs, status="skipped", note=str(e)) for bs in cfg.batch_sizes])
    except Exception as e:  # noqa: BLE001 - an optional runtime that cannot compile this file is a row, not a crash
        if runtime not in OPTIONAL_RUNTIMES:
            raise
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return Measurement([new_row(**base, batch_size=bs, status="failed", note=f"{runtime} cannot load it: {reason}")
                            for bs in cfg.batch_sizes])
    desc = rt.describe()
    common = dict(base, device=desc["device"], precision=desc["precision"],
                  model_size_mb=os.path.getsize(artifact) / 1e6 if os.path.isfile(artifact) else None)
    kind = artifact_kind(artifact)
    if kind == "pt" and hasattr(rt, "model"):
        try:
            common["macs"], common["params"] = torch_macs_params(rt.model, size)
        except Exception:  # noqa: BLE001 - TorchScript / foreign modules may not trace
            common["params"] = int(sum(p.numel() for p in rt.model.parameters()))
    elif kind == "onnx":
        common["macs"], common["params"] = onnx_macs_params(artifact)
    logits = targets = None
    if samples:
        logits, targets = run_logits(rt, samples, pre, cfg.eval_batch, progress=f"{stage}: accuracy ({runtime})" if progress else None,
                                     skip_corrupt=skip_corrupt)
        acc = topk_accuracy(logits, targets, (1, 5))
        common.update(top1=acc["top1"], top5=acc["top5"])
        if baseline_top1 is not None:
            common["top1_delta"] = acc["top1"] - baseline_top1
        if reference_logits is not None and reference_logits.shape == logits.shape:
            common["agreement"] = agreement(logits, reference_logits)["agreement"]
    rows = []
    rng = np.random.default_rng(0)
    for bs in cfg.batch_sizes:
        if rt.fixed_batch and bs != rt.fixed_batch:
            rows.append(new_row(**common, batch_size=bs, status="skipped", note=f"artifact has fixed batch {rt.fixed_batch}"))
            continue
        x = rng.standard_normal((bs, 3, size, size)).astype(np.float32)
        stats = measure_latency(lambda: rt.run(x), bs, warmup=cfg.warmup, min_runs=cfg.min_runs, max_runs=cfg.max_runs,
                                min_time_s=cfg.min_time_s, sync=rt.sync)
        row = new_row(**common, batch_size=bs, latency_p50_ms=stats.p50_ms, latency_p90_ms=stats.p90_ms,
                      latency_p99_ms=stats.p99_ms, throughput_ips=stats.throughput_ips, gpu_mem_mb=rt.gpu_mem_mb(),
                      note=note or None)
        if cfg.memory and os.path.isfile(artifact):
            row["peak_rss_mb"] = peak_rss_mb(runtime, artifact, (bs, 3, size, size), threads=threads,
                                             **{k: v for k, v in cfg.options.items() if k in ("device", "trust_model")})
        rows.append(row)
    return Measurement(rows, logits, targets)
