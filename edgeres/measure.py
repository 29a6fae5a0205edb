"""Measure one artifact in one runtime the way every stage is measured: accuracy, latency, memory -> report rows."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from edgeres.errors import EdgeresError, ModelFileError, Unavailable
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
from edgeres.runtimes import artifact_kind, load_runtime

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
    """Rows (one per batch size) for ``artifact`` in ``runtime``, the runtime closed when they are made.

    ``skipped`` with the reason where it cannot run here (:class:`Unavailable`). An optional runtime
    (``OPTIONAL_RUNTIMES``, a second opinion on a file) that refuses the file or fails on it gives ``failed`` rows
    with the reason; any other failure raises.
    """
    cfg = cfg or MeasureConfig()
    base = dict(stage=stage, artifact=os.path.basename(str(artifact)), runtime=runtime, input_size=pre.size)
    opts = dict(cfg.options)
    if model is not None and runtime == "torch":
        opts["model"] = model
    try:
        rt = load_runtime(runtime, artifact, threads=cfg.resolved_threads(), **opts)
    except Unavailable as e:
        return Measurement(_rows(base, cfg, "skipped", str(e)))
    except Exception as e:
        return _failed(base, cfg, runtime, e, "cannot load it")
    with rt:
        try:
            return _measure_open(rt, stage, artifact, pre, samples, cfg, base, reference_logits, baseline_top1,
                                 skip_corrupt, note, progress)
        except Unavailable as e:
            return Measurement(_rows(base, cfg, "skipped", str(e)))
        except Exception as e:
            return _failed(base, cfg, runtime, e, "failed on it")


def _rows(base: dict, cfg: MeasureConfig, status: str, note: str) -> list:
    return [new_row(**base, batch_size=bs, status=status, note=note) for bs in cfg.batch_sizes]


def _failed(base: dict, cfg: MeasureConfig, runtime: str, e: Exception, what: str) -> Measurement:
    """``failed`` rows of an optional runtime, with the reason; for any other runtime the error itself."""
    if runtime not in OPTIONAL_RUNTIMES:
        raise e
    reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
    if isinstance(e, ModelFileError):  # "<runtime> cannot load/compile <file>: <its reason>" already
        return Measurement(_rows(base, cfg, "failed", reason))
    if not isinstance(e, EdgeresError) and reason != type(e).__name__:  # not one of ours: say what broke
        reason = f"{type(e).__name__}: {reason}"
    return Measurement(_rows(base, cfg, "failed", f"{runtime} {what}: {reason}"))


def _measure_open(rt, stage: str, artifact, pre, samples, cfg: MeasureConfig, base: dict, reference_logits,
                  baseline_top1, skip_corrupt: bool, note: str, progress: bool) -> Measurement:
    size = pre.size
    common = dict(base, device=rt.device, precision=rt.precision, **_size_macs(rt, artifact, size))
    logits = targets = None
    if samples:
        logits, targets = run_logits(rt, samples, pre, cfg.eval_batch, skip_corrupt=skip_corrupt,
                                     progress=f"{stage}: accuracy ({base['runtime']})" if progress else None)
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
        rows.append(_latency_row(rt, x, common, cfg, note, (base["runtime"], str(artifact))))
    return Measurement(rows, logits, targets)


def _size_macs(rt, artifact, size: int) -> dict:
    """model_size_mb, and MACs and params where the artifact's graph says them."""
    out = {"model_size_mb": os.path.getsize(artifact) / 1e6 if os.path.isfile(artifact) else None}
    kind = artifact_kind(artifact)
    if kind == "pt" and getattr(rt, "model", None) is not None:
        try:
            out["macs"], out["params"] = torch_macs_params(rt.model, size)
        except Exception:  # noqa: BLE001 - TorchScript / foreign modules may not trace
            out["params"] = int(sum(p.numel() for p in rt.model.parameters()))
    elif kind == "onnx":
        out["macs"], out["params"] = onnx_macs_params(artifact)
    return out


def _latency_row(rt, x: np.ndarray, common: dict, cfg: MeasureConfig, note: str, what: tuple) -> dict:
    """One batch size's row; ``what``: (runtime, artifact) for the peak-memory child process."""
    bs = len(x)
    rt.reset_peak_memory()  # this batch size's peak: not the MAC count's model copy, not a larger batch before
    stats = measure_latency(lambda: rt.run(x), bs, warmup=cfg.warmup, min_runs=cfg.min_runs, max_runs=cfg.max_runs,
                            min_time_s=cfg.min_time_s, sync=rt.sync)
    row = new_row(**common, batch_size=bs, latency_p50_ms=stats.p50_ms, latency_p90_ms=stats.p90_ms,
                  latency_p99_ms=stats.p99_ms, throughput_ips=stats.throughput_ips, gpu_mem_mb=rt.gpu_mem_mb(),
                  note=note or None)
    runtime, artifact = what
    if cfg.memory and os.path.isfile(artifact):
        row["peak_rss_mb"] = peak_rss_mb(runtime, artifact, x.shape, threads=cfg.resolved_threads(),
                                         **{k: v for k, v in cfg.options.items() if k in ("device", "trust_model")})
    return row
