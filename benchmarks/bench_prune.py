"""Pruning's real effect at 224x224 (DESIGN: --ratio 0.3 must remove >= half the MACs and cut ONNX Runtime FP32
latency >= 1.6x), measured side by side in one run: unpruned vs pruned ResNet50, MACs, params, ORT FP32 latency.

    python benchmarks/bench_prune.py --out benchmarks/results/prune.csv [--ratios 0.3 0.5]
"""

from __future__ import annotations

import argparse

from common import random_images, scratch_dir, time_fn, write_rows

from edgeres.data import Preprocess
from edgeres.metrics import default_threads, onnx_macs_params
from edgeres.models import ModelMeta, build_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/results/prune.csv")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--ratios", type=float, nargs="+", default=[0.3])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--min-time", type=float, default=3.0)
    ap.add_argument("--sparsity", action="store_true", help="also a 2:4 row (dense kernels on CPU: MACs unchanged)")
    args = ap.parse_args()

    import torch

    from edgeres.onnx_export import export_onnx
    from edgeres.prune.channels import PruneConfig, channel_prune
    from edgeres.prune.sparsity import apply_2_4
    from edgeres.runtimes import load_runtime

    torch.manual_seed(0)
    threads = default_threads()
    tmp = scratch_dir("edgeres-prune-")
    pre = Preprocess(size=args.size)
    meta = ModelMeta(classes=[str(i) for i in range(1000)])
    variants = [("unpruned", 0.0)] + [(f"ratio {r}", r) for r in args.ratios]
    rows = []
    x = random_images(args.batch, args.size, seed=1)
    for name, ratio in variants:
        m = build_model("resnet50", 1000).eval()
        if ratio:
            channel_prune(m, PruneConfig(ratio=ratio), args.size)
        path = tmp / f"{name.replace(' ', '_')}.onnx"
        export_onnx(m, path, pre, meta)
        with load_runtime("onnxruntime", path, threads=threads, device="cpu") as rt:  # the runner every row uses
            t = time_fn(lambda: rt.run(x), args.batch, args.min_time)
        macs, params = onnx_macs_params(path)
        rows.append({"runtime": name, "batch": args.batch, "gmacs": round(macs / 1e9, 3), "mparams": round(params / 1e6, 2),
                     "size_mb": round(path.stat().st_size / 1e6, 1), **t})
        print(f"{name}: {macs / 1e9:.2f} GMACs, p50 {t['p50_ms']:.2f} ms")
    if args.sparsity:
        m = build_model("resnet50", 1000).eval()
        apply_2_4(m)
        rows.append({"runtime": "2:4 sparse (dense on CPU)", "batch": args.batch, "note": "speeds up only on sparse tensor cores"})
    base = rows[0]
    for r in rows:
        if r.get("gmacs"):
            r["macs_removed"] = round(1 - r["gmacs"] / base["gmacs"], 3)
    write_rows(args.out, rows, ref_key=("runtime", "unpruned"), ratio_col="speedup_vs_unpruned")


if __name__ == "__main__":
    main()
