"""Latency-driven pruning timed on the device: ``--target-speedup``/``--target-latency-ms`` with ``--device``.

Each candidate ratio is pruned, exported and INT8-quantized here exactly as the host search does it
(edgeres.prune.latency), put in a minimal bundle, built on the board with the board's shared TensorRT timing
cache (so every build after the first reuses the kernels it already timed) and benchmarked there at the target's
batch. The unpruned model is built once; its engine is benchmarked again right before each candidate's, so a board that
warms up or throttles slows both sides alike. The search itself (bisection, stopping rules) is
:func:`edgeres.prune.latency.search_ratio`; each candidate's log line gives its ratio, MACs, device latency and
build time.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path


def device_measure(session, model, target, pre, goal, prune_cfg=None, classes=None, workdir=None, min_time: float = 1.0,
                   log=None):
    """(measure, info) for search_ratio, measuring on ``session``'s device; info names the device and runtime."""
    import numpy as np

    from edgeres.device.measure import timing_key
    from edgeres.models import num_outputs
    from edgeres.prune.channels import PruneConfig, channel_prune
    from edgeres.prune.latency import _artifact_builder

    log = log or (lambda msg: None)
    size, batch = pre.size, target.batch
    classes = list(classes or [str(i) for i in range(num_outputs(model, min(size, 64)) or 1)])
    calib = np.random.default_rng(0).standard_normal((goal.calib_images, 3, size, size)).astype(np.float32)
    build = _artifact_builder(target, pre, classes, calib, workdir)
    # the candidates' structure as the host search makes it (one step, magnitude importance, the target's rounding)
    pcfg = replace(prune_cfg or PruneConfig(), ratio=0.5, target_macs=None, iterative_steps=1, sparsity=None)
    if pcfg.importance == "taylor":
        pcfg = replace(pcfg, importance="l2")
    if pcfg.round_to is None:
        pcfg = replace(pcfg, round_to=target.channel_multiple)
    label = session.info.label()
    key = timing_key(session.info)
    runtime = f"tensorrt on {session.info.board_short or session.address}"

    built: dict = {}  # ONNX sha256 -> bundle root on the device: a candidate identical to an earlier one (channel
    # counts rounded to the same multiple) is benchmarked again but never rebuilt

    def on_device(onnx: Path, name: str) -> tuple:
        from edgeres.utils import sha256_file

        digest = sha256_file(onnx)
        if digest in built:
            return built[digest], {"built": False, "seconds": 0.0}
        bundle = Path(workdir) / f"{name}.tar.gz"
        _minimal_bundle(bundle, onnx, target, pre, classes)
        root = session.ship_bundle(bundle)
        built[digest] = root
        return root, session.build(root, key)

    base_root, base_build = on_device(build(copy.deepcopy(model).eval(), "unpruned"), "unpruned")
    log(f"latency search on {label} (tensorrt, batch {batch}, {size} px): unpruned engine "
        f"{'built' if base_build['built'] else 'reused'} in {base_build['seconds']:.1f} s")

    def measure(ratio: float) -> dict:
        trial = copy.deepcopy(model).eval()
        info = channel_prune(trial, replace(pcfg, ratio=ratio), size)
        root, b = on_device(build(trial, f"r{ratio:.4f}"), f"r{ratio:.4f}")
        base_ms = p50(session.bench(base_root, [batch], min_time))
        ms = p50(session.bench(root, [batch], min_time))
        log(f"candidate ratio {ratio:.3f}: {info['macs_after'] / 1e9:.3f} GMACs "
            f"({info['macs_after'] / max(1, info['macs_before']):.0%} of the unpruned), {ms:.3f} ms on the device "
            f"(unpruned {base_ms:.3f} ms), engine {'built' if b['built'] else 'reused'} in {b['seconds']:.1f} s")
        return {"latency_ms": ms, "base_ms": base_ms, "macs": info["macs_after"],
                "macs_fraction": info["macs_after"] / max(1, info["macs_before"]), "build_s": round(b["seconds"], 2),
                "built": b["built"], "runtime": runtime}

    return measure, {"runtime": runtime, "precision": "int8" if target.int8 else "fp16", "batch": batch,
                     "input_size": size, "device": label}


def p50(rows: list) -> float:
    ok = [r for r in rows if r["stage"] == "engine" and r.get("latency_p50_ms") is not None]
    if not ok:
        from edgeres.errors import EdgeresError

        raise EdgeresError("the device's benchmark gave no latency (see the log above)")
    return ok[0]["latency_p50_ms"]


def _minimal_bundle(out: Path, onnx: Path, target, pre, classes: list) -> None:
    """A bundle with just the model, its build spec and the runtime (no validation images: candidates are timed,
    not checked)."""
    from edgeres.bundle import make_bundle
    from edgeres.engine_build import onnx_build_spec

    make_bundle(out, onnx, target, pre, classes, spec=onnx_build_spec(onnx, "model.engine", target, pre),
                extra={"source_run": "latency search"})


def search_on_device(fleet, log, min_time: float = 1.0):
    """The ``measure_factory`` for edgeres.prune.latency: the search runs on the first device of ``fleet``;
    ``factory(model, target, pre, goal, prune_cfg, classes, workdir) -> (measure, info)``."""
    session = fleet.sessions[0]
    if len(fleet.sessions) > 1:
        log(f"latency search on {session.address} (the first --device); every device is measured after it")

    def factory(model, target, pre, goal, prune_cfg, classes, workdir):
        return device_measure(session, model, target, pre, goal, prune_cfg, classes, workdir, min_time, log)

    return factory
