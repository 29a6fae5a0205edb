"""FP32 vs INT8 on a trained model and its data, for both INT8 flavours (TensorRT s8 Q/DQ, ORT x86 u8s8) and the
calibration methods: top-1 (ONNX Runtime), size, and ORT latency, side by side in one run.

    python benchmarks/bench_quantize.py --model runs/demo/model.pt --data runs/demo/data \
        --out benchmarks/results/quantize.csv [--methods histogram nncf-default minmax]
"""

from __future__ import annotations

import argparse

from common import random_images, scratch_dir, time_fn, write_rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", default="benchmarks/results/quantize.csv")
    ap.add_argument("--targets", nargs="+", default=["jetson-orin-nano", "x86-cpu"])
    ap.add_argument("--methods", nargs="+", default=["histogram", "nncf-default", "minmax"])
    ap.add_argument("--calib-size", type=int, default=512)
    ap.add_argument("--min-time", type=float, default=2.0)
    args = ap.parse_args()

    from edgeres.evaluate import evaluate_artifact
    from edgeres.models import load_model
    from edgeres.runtimes.ort import OrtRuntime
    from edgeres.stages import resolve_model_preprocess
    from edgeres.stages.export import export_onnx
    from edgeres.stages.quantize import QuantizeConfig, run_quantize
    from edgeres.targets import get_target

    tmp = scratch_dir("edgeres-quant-")
    lm = load_model(args.model)
    pre = resolve_model_preprocess(lm.meta.preprocess, None)
    fp32 = tmp / "fp32.onnx"
    export_onnx(lm.model, fp32, pre, lm.meta)
    x = random_images(1, pre.size)

    def row(name, target, method, path, top1):
        rt = OrtRuntime(path)
        t = time_fn(lambda: rt.run(x), 1, args.min_time)
        return {"runtime": name, "target": target, "method": method, "batch": 1, "top1": round(top1, 2),
                "size_mb": round(path.stat().st_size / 1e6, 2), **t}

    base_top1 = evaluate_artifact(fp32, args.data, pre, progress=False)["top1"]
    rows = [row("FP32", "", "", fp32, base_top1)]
    for tname in args.targets:
        t = get_target(tname)
        for method in args.methods:
            out = tmp / f"{tname}-{method}.onnx"
            info = run_quantize(fp32, args.data, t, out, QuantizeConfig(method=method, subset_size=args.calib_size),
                                data=args.data)
            r = row(f"INT8 {t.quant_format}", tname, method, out, info["top1_int8"])
            r["top1_delta"] = round(info["top1_int8"] - info["top1_fp32"], 2)
            rows.append(r)
    write_rows(args.out, rows, ref_key=("runtime", "FP32"), ratio_col="speedup_vs_fp32")


if __name__ == "__main__":
    main()
