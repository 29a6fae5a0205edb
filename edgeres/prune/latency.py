"""Prune to a measured latency: ``--target-latency-ms T`` / ``--target-speedup S``.

Half the MACs is rarely half the time. This module searches the channel ratio by *measuring* each candidate the way
the target runs it on this host: pruned (Torch-Pruning, the same pruner as ``--ratio``), exported to ONNX, quantized
to the target's INT8 flavour where the target runs INT8 (``x86-cpu``: uint8 activations / int8 weights), at the
target's batch and the model's input size, in the target's runtimes (ONNX Runtime and OpenVINO for ``x86-cpu``).
``S`` is the pruned model's speed-up over the *unpruned* model in that precision — pruning's own share, not INT8's —
each in the runtime that would ship it, the faster one on this host: edgeres deploys the faster runtime, and which one
that is can change with pruning (at 48 px OpenVINO ran the unpruned demo ResNet50 faster, ONNX Runtime the pruned
one, so a search held to the unpruned model's runtime over-pruned it by 0.3 of a ratio).

Stopping rules are those of ``--target-macs`` (:func:`edgeres.prune.channels.ratio_for_macs`): a bisection of the
ratio over [0, 0.95] for at most 8 steps, keeping the smallest ratio that met the target; it also stops early once a
candidate meets the target within ``tolerance`` (3%). Each candidate is timed *interleaved* with the unpruned model
(repeated rounds, the median of each round, the median of the per-round ratios), so a busy machine slows both sides
alike and the ratio stays meaningful.

Targets this host cannot run (TensorRT: the Jetsons, ``cuda-gpu``) fall back to MACs: ``--target-speedup S`` becomes
``--target-macs 1/S`` (latency taken as proportional to MACs), and the report names that fallback.

The search logic takes the measurement as a function (:func:`search_ratio`), so it is tested deterministically;
wall-clock figures live in ``benchmarks/``.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from edgeres.errors import EdgeresError, ModelFileError, Unavailable

_log = logging.getLogger(__name__)

@dataclass
class LatencyTarget:
    latency_ms: float | None = None  # --target-latency-ms: the pruned model's median latency at most this
    speedup: float | None = None  # --target-speedup: unpruned latency / pruned latency at least this
    steps: int = 8  # bisection steps (as --target-macs)
    tolerance: float = 0.03  # stop early when a candidate meets the target within this fraction
    max_ratio: float = 0.95
    rounds: int = 7  # interleaved timing rounds per candidate
    runs_per_round: int = 8
    warmup: int = 3
    runtime: str | None = None  # None: the target's runtime, the faster of ORT/OpenVINO for x86-cpu
    calib_images: int = 8  # calibration images for the candidates' INT8 files (latency does not depend on them)

    def validate(self) -> None:
        if (self.latency_ms is None) == (self.speedup is None):
            raise EdgeresError("give one of --target-latency-ms or --target-speedup")
        if self.latency_ms is not None and not self.latency_ms > 0:
            raise EdgeresError(f"--target-latency-ms {self.latency_ms} must be a positive number of milliseconds")
        if self.speedup is not None and not self.speedup > 1.0:
            raise EdgeresError(f"--target-speedup {self.speedup} must be above 1 (the pruned model's speed-up over the "
                               "unpruned one), e.g. 2")
        if self.steps < 1 or self.rounds < 1 or self.runs_per_round < 1:
            raise EdgeresError("latency search needs at least one step, one round and one run per round")

    def describe(self) -> str:
        return (f"--target-speedup {self.speedup:g}" if self.speedup is not None
                else f"--target-latency-ms {self.latency_ms:g}")


# ------------------------------------------------------------------------------------------------ timing
def interleaved_medians(fns: dict, rounds: int, runs: int, warmup: int = 3,
                        clock: Callable[[], float] = time.perf_counter, rewarm: int = 2, settle_ms: float = 50.0) -> dict:
    """Time every function of ``fns`` ({name: fn}) in ``rounds`` interleaved rounds of ``runs`` calls each.

    The order rotates every round (no function always runs first). Each turn starts with untimed calls — at least
    ``rewarm``, and until ``settle_ms`` have passed: the calls right after another runtime ran are slow, its worker
    threads still spinning on the cores. Measured here: a pruned ResNet50 that OpenVINO runs in 1.65 ms took 3.6,
    2.8, 2.3, 2.2 ... ms for about 25 ms after ONNX Runtime stopped, and without settling every row was timed after
    the same neighbour, a bias no number of rounds removes. Returns {name: [median ms of each round]}.
    """
    names = list(fns)
    if not names:
        return {}
    for name in names:
        for _ in range(warmup):
            fns[name]()
    out: dict = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            fn, times = fns[name], []
            if len(names) > 1:
                start, n = clock(), 0
                while n < rewarm or ((clock() - start) * 1000.0 < settle_ms and n < 10_000):
                    fn()
                    n += 1
            for _ in range(runs):
                t0 = clock()
                fn()
                times.append((clock() - t0) * 1000.0)
            out[name].append(statistics.median(times))
    return out


def ratio_stats(per_round: dict, ref: str, name: str) -> dict:
    """Speed-up of ``name`` over ``ref`` from interleaved rounds: the median of per-round ratios and the best round."""
    ratios = [b / p for b, p in zip(per_round[ref], per_round[name]) if p > 0]
    return {"speedup": statistics.median(ratios), "speedup_best_round": max(ratios),
            "latency_ms": statistics.median(per_round[name]), "latency_best_ms": min(per_round[name]),
            "base_ms": statistics.median(per_round[ref])}


# ------------------------------------------------------------------------------------------------ the search
def _speedup(m: dict) -> float:
    return m["speedup"] if m.get("speedup") is not None else m["base_ms"] / m["latency_ms"]


def search_ratio(measure: Callable[[float], dict], goal: LatencyTarget, log: Callable[[str], None] | None = None) -> dict:
    """Bisect the channel ratio until the measured latency meets ``goal``.

    ``measure(ratio)`` returns {"latency_ms", "base_ms"[, "speedup"]} of the model pruned at ``ratio`` (``base_ms``:
    the unpruned model, timed alongside). Returns {"target", "ratio", "reached", "measured_speedup", "latency_ms",
    "base_ms", "trials", "stop"}; when no candidate met the target, "ratio" is the largest one tried and "reached" is
    False.
    """
    goal.validate()

    def meets(m: dict) -> bool:
        return _speedup(m) >= goal.speedup if goal.speedup is not None else m["latency_ms"] <= goal.latency_ms

    def close(m: dict) -> bool:  # met, and not by much more than asked
        if goal.speedup is not None:
            return _speedup(m) <= goal.speedup * (1 + goal.tolerance)
        return m["latency_ms"] >= goal.latency_ms * (1 - goal.tolerance)

    lo, hi = 0.0, goal.max_ratio
    trials, best, stop = [], None, f"{goal.steps} bisection steps"
    for step in range(goal.steps):
        mid = round((lo + hi) / 2, 6)
        m = measure(mid)
        t = {"ratio": mid, "latency_ms": m["latency_ms"], "base_ms": m["base_ms"], "speedup": _speedup(m),
             "met": meets(m), **{k: v for k, v in m.items() if k not in ("latency_ms", "base_ms", "speedup")}}
        trials.append(t)
        if log:
            log(f"latency search {step + 1}/{goal.steps}: ratio {mid:.3f}: {t['latency_ms']:.2f} ms, "
                f"{t['speedup']:.2f}x the unpruned {t['base_ms']:.2f} ms ({'meets' if t['met'] else 'misses'} "
                f"{goal.describe()})")
        if t["met"]:
            hi, best = mid, t
            if close(m):
                stop = f"met within {goal.tolerance:.0%} of the target"
                break
        else:
            lo = mid
    chosen = best or max(trials, key=lambda t: t["ratio"])
    if best is None:
        stop = f"not reached: {goal.describe()} not met up to ratio {chosen['ratio']:.3f}"
    return {"target": goal.describe(), "ratio": chosen["ratio"], "reached": best is not None,
            "measured_speedup": chosen["speedup"], "latency_ms": chosen["latency_ms"], "base_ms": chosen["base_ms"],
            "trials": trials, "stop": stop}


# ------------------------------------------------------------------------------------------------ this host
def host_runtimes(target) -> list:
    """The runtimes that run ``target``'s artifact on this host, preferred first; raises Unavailable."""
    if target.runtime == "tensorrt":
        raise Unavailable(f"target {target.name} runs TensorRT on its device; this host does not time TensorRT "
                            "engines for the search")
    if target.runtime in ("onnxruntime", "openvino"):
        return ["onnxruntime", "openvino"] if target.runtime == "onnxruntime" else ["openvino", "onnxruntime"]
    raise Unavailable(f"target {target.name}: unknown runtime {target.runtime!r}")


def _artifact_builder(target, pre, classes, calib, workdir):
    """ONNX file of a model as the target runs it: FP32 export, plus the target's INT8 flavour where it runs INT8."""
    from pathlib import Path

    from edgeres.models import ModelMeta
    from edgeres.onnx_export import ExportConfig, export_onnx
    from edgeres.quant.ptq import quantize_onnx
    from edgeres.quant.settings import QuantizeConfig

    meta = ModelMeta(classes=list(classes))
    # minmax ranges without bias correction: the graph (and so the speed) is that of the real INT8 file, faster to make
    qc = QuantizeConfig(method="minmax", subset_size=len(calib), bias_correction=False)

    def build(model, name: str) -> Path:
        fp32 = Path(workdir) / f"{name}.onnx"
        export_onnx(model, fp32, pre, meta, ExportConfig())
        if not target.int8:
            return fp32
        q = Path(workdir) / f"{name}_int8.onnx"
        quantize_onnx(fp32, q, target, calib, qc)
        return q

    return build


def _load(runtime: str, path, threads, why: dict | None = None):
    """The runtime opened with ``path`` (the caller closes it), or None (the reason in ``why[runtime]``) when it
    cannot run here or refuses this graph; any other failure raises."""
    from edgeres.runtimes import load_runtime

    try:
        return load_runtime(runtime, path, threads=threads)
    except (Unavailable, ModelFileError) as e:
        if why is not None:
            why[runtime] = str(e).strip().splitlines()[-1][:200] if str(e).strip() else e.__class__.__name__
        return None


def host_measure(model, target, pre, goal: LatencyTarget, prune_cfg=None, batch: int | None = None, calib=None,
                 classes=None, threads: int | None = None, workdir=None, log: Callable[[str], None] | None = None,
                 *, stack: contextlib.ExitStack):
    """The measurement for :func:`search_ratio` on this host, and what it measures.

    Returns (measure, info): info = {"runtime", "precision", "batch", "input_size", "runtimes_seen": {name: base ms}}.
    The unpruned model's runners stay open for the whole search, closed with ``stack`` (find_ratio's); each
    candidate's are closed once it is timed. Raises Unavailable for targets whose runtime is not here (TensorRT).
    """
    import tempfile

    import numpy as np

    from edgeres.models import num_outputs
    from edgeres.prune.channels import channel_prune

    candidates = host_runtimes(target) if goal.runtime is None else [goal.runtime]
    batch, size = batch or target.batch, pre.size
    if calib is None:
        calib = np.random.default_rng(0).standard_normal((goal.calib_images, 3, size, size)).astype(np.float32)
    classes = classes or [str(i) for i in range(num_outputs(model, min(size, 64)) or 1)]
    build = _artifact_builder(target, pre, classes, calib[: goal.calib_images],
                              workdir or tempfile.mkdtemp(prefix="edgeres-latency-"))
    pcfg = _search_prune_config(prune_cfg, target)
    x = np.random.default_rng(1).standard_normal((batch, 3, size, size)).astype(np.float32)
    why: dict = {}
    loaded = _open_all(candidates, build(copy.deepcopy(model).eval(), "unpruned"), threads, why, stack)
    if not loaded:
        raise Unavailable(f"none of {', '.join(candidates)} can run it here ({why})")
    precision = "int8" if target.int8 else "fp32"
    if log:
        log(f"latency search on {' and '.join(loaded)} ({precision}, batch {batch}, {size} px): each model in the faster"
            if len(loaded) > 1 else f"latency search on {next(iter(loaded))} ({precision}, batch {batch}, {size} px)")

    def measure(ratio: float) -> dict:
        trial = copy.deepcopy(model).eval()
        info = channel_prune(trial, replace(pcfg, ratio=ratio), size)
        path = build(trial, f"r{ratio:.4f}")
        with contextlib.ExitStack() as candidate:
            pruned = _open_all(loaded, path, threads, why, candidate)
            if not pruned:
                raise EdgeresError(f"{', '.join(loaded)} cannot run the pruned candidate at ratio {ratio:.3f}: {why}")
            s = _time_pair(loaded, pruned, x, goal)
        s["macs_fraction"] = info["macs_after"] / max(1, info["macs_before"])
        return s

    return measure, {"runtime": next(iter(loaded)), "precision": precision, "batch": batch, "input_size": size,
                     "runtimes_seen": sorted(loaded), "runtimes_unavailable": why}


def _search_prune_config(prune_cfg, target):
    """The pruning settings of the candidates: one shot at the ratio tried, a magnitude proxy for Taylor importance
    (as --target-macs does), channels rounded to the target's multiple unless told otherwise."""
    from edgeres.prune.channels import PruneConfig

    pcfg = replace(prune_cfg or PruneConfig(), ratio=0.5, target_macs=None, iterative_steps=1, sparsity=None)
    if pcfg.importance == "taylor":
        pcfg = replace(pcfg, importance="l2")
    if pcfg.round_to is None:
        pcfg = replace(pcfg, round_to=target.channel_multiple)
    return pcfg


def _open_all(names, path, threads, why: dict, stack: contextlib.ExitStack) -> dict:
    """{runtime: runner open on ``path``} for those of ``names`` that can run it, each closed with ``stack``."""
    out = {}
    for name in names:
        rt = _load(name, path, threads, why)
        if rt is not None:
            out[name] = stack.enter_context(rt)
    return out


def _time_pair(loaded: dict, pruned: dict, x, goal: LatencyTarget) -> dict:
    """The unpruned and the pruned model timed interleaved, each in the runtime that runs it faster."""
    fns = {f"base {n}": (lambda rt=rt: rt.run(x)) for n, rt in loaded.items()}
    fns.update({f"pruned {n}": (lambda rt=rt: rt.run(x)) for n, rt in pruned.items()})
    per = interleaved_medians(fns, goal.rounds, goal.runs_per_round, goal.warmup)
    med = {k: statistics.median(v) for k, v in per.items()}
    base_rt = min(loaded, key=lambda n: med[f"base {n}"])
    pruned_rt = min(pruned, key=lambda n: med[f"pruned {n}"])
    s = ratio_stats({"base": per[f"base {base_rt}"], "pruned": per[f"pruned {pruned_rt}"]}, "base", "pruned")
    s["runtime"], s["base_runtime"] = pruned_rt, base_rt
    s["runtimes_ms"] = {k: round(v, 3) for k, v in med.items()}
    return s


def find_ratio(model, target, pre, goal: LatencyTarget, prune_cfg=None, calib=None, classes=None,
               threads: int | None = None, log: Callable[[str], None] | None = None, measure=None,
               measure_factory=None) -> dict:
    """The ratio for ``goal`` on ``target``: measured on this host, or the MACs fallback where it cannot run the target.

    Returns search_ratio's dict plus "method" ("measured" or "macs-fallback"), "runtime", "precision", "batch",
    "input_size", "fallback" (the sentence the report prints, or ""). The runners and files of the search are gone
    when it returns.
    """
    import shutil
    import tempfile

    goal.validate()
    if measure is not None:  # injected (tests, or a caller that measures elsewhere)
        res = search_ratio(measure, goal, log)
        return {**res, "method": "measured", "fallback": ""}
    with contextlib.ExitStack() as stack:
        workdir = tempfile.mkdtemp(prefix="edgeres-latency-")
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)  # after the runners that read its files are closed
        try:
            if measure_factory is not None:  # measured elsewhere, e.g. on the device (edgeres.device.latency)
                fn, info = measure_factory(model, target, pre, goal, prune_cfg, classes, workdir)
            else:
                fn, info = host_measure(model, target, pre, goal, prune_cfg, calib=calib, classes=classes,
                                        threads=threads, workdir=workdir, log=log, stack=stack)
        except Unavailable as e:
            return macs_fallback(model, target, pre, goal, prune_cfg, str(e), log)
        res = search_ratio(fn, goal, log)
        chosen = next((t for t in res["trials"] if t["ratio"] == res["ratio"]), {})
        info.update({k: chosen[k] for k in ("runtime", "base_runtime") if k in chosen})
        return {**res, **info, "method": "measured", "fallback": ""}


def macs_fallback(model, target, pre, goal: LatencyTarget, prune_cfg, reason: str, log=None) -> dict:
    """``--target-speedup S`` as ``--target-macs 1/S`` where the target's runtime cannot be timed here."""
    from edgeres.prune.channels import PruneConfig
    from edgeres.prune.reach import ratio_for_target

    if goal.speedup is None:
        raise EdgeresError(f"--target-latency-ms needs the target's runtime on this host ({reason}); for this target "
                           "use --target-speedup S (searched by MACs here) or --target-macs F")
    pcfg = replace(prune_cfg or PruneConfig(), ratio=None, target_macs=1.0 / goal.speedup, iterative_steps=1)
    if pcfg.round_to is None:
        pcfg = replace(pcfg, round_to=target.channel_multiple)
    ratio, shortfall = ratio_for_target(copy.deepcopy(model).eval(), pcfg, pre.size, pcfg.target_macs,
                                        f"{goal.describe()} (as --target-macs {pcfg.target_macs:.3f})")
    fallback = (f"{reason}: fell back to MACs ({goal.describe()} searched as --target-macs {1.0 / goal.speedup:.3f}, "
                "latency taken as proportional to MACs; measure the engine on the device)")
    if log:
        log(fallback)
    return {"target": goal.describe(), "ratio": ratio, "reached": None, "measured_speedup": None, "latency_ms": None,
            "base_ms": None, "trials": [], "stop": "MACs bisection (8 steps)", "method": "macs-fallback",
            "fallback": fallback, "runtime": None, "precision": None, "batch": target.batch, "input_size": pre.size,
            "shortfall": shortfall}


def summary(res: dict) -> str:
    """One line for the report: the target, the ratio found and the measured speed-up (or the fallback)."""
    if res.get("method") == "macs-fallback":
        return f"{res['target']}: ratio {res['ratio']:.3f} by MACs ({res['fallback']})"
    where = f"{res.get('precision') or ''}, batch {res.get('batch', '?')}".strip(", ")
    rt, base_rt = res.get("runtime") or "injected", res.get("base_runtime") or res.get("runtime")
    state = "" if res["reached"] else f" (NOT reached: {res['stop']})"
    return (f"{res['target']}: ratio {res['ratio']:.3f}, measured {res['measured_speedup']:.2f}x "
            f"({res['latency_ms']:.2f} ms in {rt} vs {res['base_ms']:.2f} ms unpruned"
            f"{f' in {base_rt}' if base_rt and base_rt != rt else ''}, {where}, "
            f"{len(res['trials'])} candidates){state}")


def run_prune_latency(model_path, out, cfg, ft, goal: LatencyTarget, data=None, target=None,
                      trust_model: bool = False, pre_overrides: dict | None = None, progress: bool = True,
                      measure=None, measure_factory=None) -> dict:
    """`edgeres prune --target-latency-ms/--target-speedup`: find the ratio, then prune + fine-tune at it."""
    from edgeres.data.model_inputs import resolve_model_preprocess
    from edgeres.models import load_model
    from edgeres.prune.channels import check_prunable
    from edgeres.prune.finetune import run_prune
    from edgeres.prune.reach import latency_shortfall

    if target is None:
        raise EdgeresError("--target-latency-ms/--target-speedup need --target (the runtime the latency is measured in)")
    loaded = load_model(model_path, trust_model=trust_model)
    check_prunable(loaded.model)
    pre = resolve_model_preprocess(loaded.meta.preprocess, pre_overrides)
    found = find_ratio(loaded.model, target, pre, goal, cfg, classes=loaded.meta.classes or None,
                       log=_log.info if progress else None, measure=measure, measure_factory=measure_factory)
    shortfall = latency_shortfall(found, loaded.model, cfg, pre.size, target)  # raises unless accepted
    cfg = replace(cfg, ratio=found["ratio"], target_macs=None)
    info = run_prune(model_path, out, cfg, ft, data=data, target=target, trust_model=trust_model,
                     pre_overrides=pre_overrides, progress=progress)
    info["latency_search"] = found
    if shortfall:
        info["shortfall"] = shortfall
    return info
