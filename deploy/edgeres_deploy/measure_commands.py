"""`bench`, `predict` and `evaluate`: latency, memory and power; top-k for images; accuracy on an ImageFolder.

With ``--json`` each prints one JSON document on stdout (bench: its rows; predict: one entry per image).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

from edgeres_deploy import bundle as B
from edgeres_deploy.backends import make_backend
from edgeres_deploy.metrics import measure_latency, peak_rss_mb, run_padded, topk_accuracy
from edgeres_deploy.preprocess import ImageError, Preprocess, imagefolder_samples


def _stage(backend) -> str:
    return "engine" if backend.name == "tensorrt" else "bundle"


def _bench_batch(args, root: Path, backend, pre, bs: int, x) -> tuple:
    """(line, report row) of one batch size."""
    from edgeres_deploy.device_stats import TegraStats

    gpu_ms = []

    def once():
        backend.run(x)
        if backend.last_gpu_ms is not None:
            gpu_ms.append(backend.last_gpu_ms)

    with TegraStats() as ts:
        st = measure_latency(once, bs, warmup=args.warmup, min_runs=args.min_runs, min_time_s=args.min_time,
                             sync=backend.sync)
    dev = ts.summary()
    note = "; ".join(f"{k} {v:.0f}" for k, v in dev.items() if v is not None)
    power_w = dev["power_mean_mw"] / 1000.0 if dev.get("power_mean_mw") is not None else None
    # energy per image: the board's mean input power over the benchmark / images per second (W / (img/s) = J)
    energy_mj = power_w * 1000.0 / st.throughput_ips if power_w and st.throughput_ips else None
    if gpu_ms:  # what trtexec calls GPU Compute; the percentiles above are end-to-end (pinned H2D/D2H included)
        g = np.percentile(gpu_ms[args.warmup:] or gpu_ms, [50, 90, 99])
        note = "; ".join(x for x in (f"GPU compute p50/p90/p99 {g[0]:.3f}/{g[1]:.3f}/{g[2]:.3f} ms (CUDA events), "
                                     "latency columns end-to-end", note) if x)
    line = (f"{backend.name} batch {bs}: p50 {st.p50_ms:.3f} ms  p90 {st.p90_ms:.3f}  p99 {st.p99_ms:.3f}  "
            f"{st.throughput_ips:.1f} img/s" + (f"  {power_w:.2f} W, {energy_mj:.2f} mJ/image" if energy_mj else "")
            + (f"  [{note}]" if note else ""))
    artifact = "model.engine" if backend.name == "tensorrt" else "model.onnx"
    row = {"stage": _stage(backend), "artifact": artifact, "runtime": backend.name, "device": backend.device,
           "precision": backend.precision, "batch_size": bs, "input_size": pre.size,
           "latency_p50_ms": round(st.p50_ms, 4), "latency_p90_ms": round(st.p90_ms, 4),
           "latency_p99_ms": round(st.p99_ms, 4), "throughput_ips": round(st.throughput_ips, 2),
           "model_size_mb": round(os.path.getsize(root / artifact) / 1e6, 3),
           "peak_rss_mb": round(peak_rss_mb() or 0, 1) or None, "gpu_mem_mb": backend.gpu_mem_mb(),
           "power_w": round(power_w, 3) if power_w else None,
           "energy_mj_per_image": round(energy_mj, 4) if energy_mj else None, "status": "ok", "note": note or None}
    return line, row


def cmd_bench(args, root: Path) -> int:
    pre = Preprocess.from_json(root / "preprocess.json")
    rng = np.random.default_rng(0)
    rows = []
    with make_backend(args.backend, root, args.threads) as backend:
        for bs in args.batch_size:
            skip = _batch_skip(backend, bs)
            if skip:
                print(skip, file=sys.stderr if args.json else sys.stdout)
                continue
            x = rng.standard_normal((bs, 3, pre.size, pre.size)).astype(np.float32)
            line, row = _bench_batch(args, root, backend, pre, bs, x)
            rows.append(row)
            if not args.json:
                print(line)
            if args.csv:
                B.upsert_csv(args.csv, row)
    if args.json:
        print(json.dumps(rows, default=str))
    return 0


def _batch_skip(backend, bs: int) -> str:
    if backend.fixed_batch and bs != backend.fixed_batch:
        return f"batch {bs}: skipped (model has fixed batch {backend.fixed_batch})"
    if backend.max_batch and bs > backend.max_batch:
        return f"batch {bs}: skipped (the engine's profile allows batches up to {backend.max_batch})"
    return ""


def _load_image(pre, path):
    """One image, preprocessed; BundleError naming the file if it cannot be decoded (PIL raises many types)."""
    try:
        return pre.load(path)  # 16-bit images scaled, decompression bombs refused (preprocess.open_image)
    except ImageError as e:
        raise B.BundleError(f"{e}; remove or replace it") from None
    except Exception as e:  # noqa: BLE001 - any decoder failure is the file's fault: one line, not a traceback
        raise B.BundleError(f"{path}: cannot read this image ({type(e).__name__}: {e}); remove or replace it") from None


def _check_inputs(args, root: Path) -> None:
    """Paths given on the command line, checked before the model is loaded or anything is measured."""
    from edgeres_deploy.fsio import kind_problem, path_kind

    for path in getattr(args, "images", None) or []:
        if os.path.isdir(path):
            raise B.BundleError(f"{path} is a folder: predict takes image files (evaluate DIR takes an ImageFolder)")
        if path_kind(path) == "missing":
            raise B.BundleError(f"{path}: no such image file")
        if path_kind(path) != "file":
            raise B.BundleError(kind_problem(path, "file", "image"))
    if getattr(args, "dir", None) is not None and path_kind(args.dir) != "folder":
        raise B.BundleError(f"{kind_problem(args.dir, 'folder', 'image folder')}; evaluate takes an ImageFolder "
                            "(DIR/CLASS/*.jpg)")
    csv_path = getattr(args, "csv", None)
    if csv_path:
        real, broot = os.path.realpath(csv_path), os.path.realpath(root)
        parent = os.path.dirname(os.path.abspath(csv_path))
        if os.path.isdir(csv_path):
            raise B.BundleError(f"--csv {csv_path} is a folder: give a file name, e.g. {os.path.join(csv_path, 'device.csv')}")
        if real == broot or real.startswith(broot + os.sep):
            raise B.BundleError(f"--csv {csv_path} is inside the bundle, which must hold only its manifest's files: "
                                "write it outside the bundle, e.g. ../device.csv")
        if not os.path.isdir(parent):
            raise B.BundleError(f"--csv {csv_path}: folder {parent} does not exist")
        B.check_report_csv(csv_path)


def _classify(backend, pre, paths, batch_size: int):
    out = []
    bs = backend.fixed_batch or batch_size
    for i in range(0, len(paths), bs):
        chunk = paths[i : i + bs]
        arrs = [_load_image(pre, p) for p in chunk]
        out.append(run_padded(backend.run, np.stack(arrs), backend.fixed_batch))
    return np.concatenate(out)


def cmd_predict(args, root: Path) -> int:
    pre = Preprocess.from_json(root / "preprocess.json")
    names = B.labels(root)
    with make_backend(args.backend, root, args.threads) as backend:
        logits = _classify(backend, pre, args.images, 8)
    out = []
    for path, row in zip(args.images, logits):
        p = np.exp(row - row.max())
        p /= p.sum()
        top = [int(i) for i in np.argsort(-p)[: args.top_k]]
        out.append({"image": str(path), "top": [{"label": names[i] if i < len(names) else str(i),
                                                 "probability": round(float(p[i]), 6)} for i in top]})
        if not args.json:
            print(f"{path}: " + ", ".join(f"{names[i] if i < len(names) else i} {p[i] * 100:.1f}%" for i in top))
    if args.json:
        print(json.dumps({"backend": backend.name, "predictions": out}))
    return 0


def cmd_evaluate(args, root: Path) -> int:
    pre = Preprocess.from_json(root / "preprocess.json")
    names = B.labels(root)
    folder = Path(args.dir)
    if (folder / "val").is_dir():
        folder = folder / "val"
    samples, classes = imagefolder_samples(folder)
    if not samples:
        raise B.BundleError(f"{folder} holds no class folders with images")
    unknown = [c for c in classes if c not in names]
    if unknown:
        raise B.BundleError(f"{folder} has classes the model does not know: {unknown[:5]}")
    targets = np.asarray([names.index(classes[c]) for _, c in samples])
    with make_backend(args.backend, root, args.threads) as backend:
        logits = _classify(backend, pre, [p for p, _ in samples], args.batch_size)
    acc = topk_accuracy(logits, targets, (1, 5))
    print(json.dumps({"backend": backend.name, "device": backend.device, "images": len(samples), **acc}))
    if args.csv:
        B.upsert_csv(args.csv, {"stage": _stage(backend), "artifact": "model.engine" if backend.name == "tensorrt" else "model.onnx",
                                "runtime": backend.name, "device": backend.device, "precision": backend.precision,
                                "batch_size": 1, "input_size": pre.size, "top1": round(acc["top1"], 3),
                                "top5": round(acc["top5"], 3), "status": "ok"})
    return 0
