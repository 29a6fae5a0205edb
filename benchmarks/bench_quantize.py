"""FP32 vs INT8 top-1 on a trained model and its data, per INT8 path, side by side in one run:

* ``ptq-<method>``: plain post-training quantization with each calibration method (both INT8 flavours: TensorRT s8
  Q/DQ, ORT x86 u8s8), with the ONNX Runtime latency of each file;
* ``ptq+fallback``: the budget loop (other methods, then the most sensitive layers kept float: FP16 casts on
  TensorRT 11) with ``--fallback-budget`` points (default 0.1), the layers kept float and their MACs share;
* ``qat``: quantization-aware fine-tuning from the PTQ file (forced, whatever the budget), FP32 teacher;
* ``peer``: ONNX Runtime's own ``quantize_static`` (QDQ, u8 activations, s8 per-channel weights, its default min-max
  calibration) on the same calibration images: the x86 peer edgeres's ``x86-cpu`` file must match in accuracy.

Each row has the seconds that path adds to ``optimize`` (quantize stage only). Top-1 is measured on the validation
images (calibration uses the training split). Record the CPU flags beside the figures.

    python benchmarks/bench_quantize.py --model runs/demo/model.pt --data runs/demo/data \
        --out benchmarks/results/quantize.csv [--targets jetson-orin-nano x86-cpu] [--methods histogram entropy] \
        [--paths ptq fallback qat] [--fallback-target jetson-thor]
"""

from __future__ import annotations

import argparse
import time

from common import cpu_flags, random_images, scratch_dir, time_fn, write_rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", default="benchmarks/results/quantize.csv")
    ap.add_argument("--targets", nargs="+", default=["jetson-orin-nano", "x86-cpu"])
    ap.add_argument("--methods", nargs="+", default=["histogram", "percentile", "entropy", "minmax"])
    ap.add_argument("--paths", nargs="+", default=["ptq", "peer", "fallback", "qat"],
                    choices=["ptq", "peer", "fallback", "qat"])
    ap.add_argument("--fallback-target", default="jetson-thor", help="Target of the fallback and QAT rows.")
    ap.add_argument("--fallback-budget", type=float, default=0.1)
    ap.add_argument("--qat-epochs", type=int, default=1)
    ap.add_argument("--calib-size", type=int, default=512)
    ap.add_argument("--min-time", type=float, default=2.0)
    args = ap.parse_args()

    import numpy as np

    from edgeres.data import resolve_data
    from edgeres.data.model_inputs import resolve_model_preprocess
    from edgeres.metrics import iter_batches
    from edgeres.models import load_model
    from edgeres.onnx_export import export_onnx
    from edgeres.quant.budget import budget_note
    from edgeres.quant.qat import make_qat
    from edgeres.quant.run import run_quantize
    from edgeres.quant.settings import QuantizeConfig
    from edgeres.runtimes.ort import OrtRuntime
    from edgeres.targets import get_target

    flags = cpu_flags()
    tmp = scratch_dir("edgeres-quant-")
    lm = load_model(args.model)
    pre = resolve_model_preprocess(lm.meta.preprocess, None)
    fp32 = tmp / "fp32.onnx"
    export_onnx(lm.model, fp32, pre, lm.meta)
    x = random_images(1, pre.size)

    # agreement with FP32 and the logits' relative error: finer than top-1 on a small validation set (1 image = 0.1 pt)
    batches = list(iter_batches(resolve_data(args.data).val, pre, 64))
    vx, vy = np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])

    def val_logits(rt):
        return np.concatenate([rt.run(vx[i : i + 64]) for i in range(0, len(vx), 64)])

    with OrtRuntime(fp32) as rt:
        ref = val_logits(rt)

    def row(name, target, path, file, top1=None, fp32_top1=None, seconds=None, note=""):
        """top1 None: from this file's logits on the validation images."""
        with OrtRuntime(file) as rt:
            t = time_fn(lambda: rt.run(x), 1, args.min_time)
            lg = val_logits(rt)
        top1 = 100 * float((lg.argmax(1) == vy).mean()) if top1 is None else top1
        return {"runtime": name, "target": target, "path": path, "batch": 1, "top1": round(top1, 2),
                "top1_delta_vs_fp32": round(top1 - fp32_top1, 2) if fp32_top1 is not None else "",
                "agree_vs_fp32_pct": round(100 * float((lg.argmax(1) == ref.argmax(1)).mean()), 1),
                "logit_rel_err": round(float(np.linalg.norm(lg - ref) / np.linalg.norm(ref)), 4),
                "seconds_added": seconds if seconds is not None else "", "size_mb": round(file.stat().st_size / 1e6, 2),
                "note": note, "cpu_flags": flags, **t}

    base_top1 = 100 * float((ref.argmax(1) == vy).mean())
    rows = [row("FP32", "", "", fp32, base_top1)]
    if "ptq" in args.paths:
        for tname in args.targets:
            t = get_target(tname)
            for method in args.methods:
                out = tmp / f"{tname}-{method}.onnx"
                t0 = time.time()
                info = run_quantize(fp32, args.data, t, out, QuantizeConfig(method=method, subset_size=args.calib_size),
                                    data=args.data)
                rows.append(row(f"INT8 {t.quant_format}", tname, f"ptq-{method}", out, info["top1_int8"],
                                info["top1_fp32"], round(time.time() - t0, 1)))
    if "peer" in args.paths:
        from edgeres.calibration import ArrayDataReader, calibration_set_from, load_arrays
        from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

        out = tmp / "ort_quantize_static.onnx"
        t0 = time.time()
        calib = load_arrays(calibration_set_from(args.data, args.calib_size, 0), pre)  # run_quantize's own set
        quantize_static(str(fp32), str(out), ArrayDataReader(calib, "input"), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
        rows.append(row("INT8 ORT quantize_static", "x86-cpu", "peer (min-max)", out, None, base_top1,
                        round(time.time() - t0, 1), "onnxruntime.quantization.quantize_static, same calibration images"))
    ft = get_target(args.fallback_target)
    if "fallback" in args.paths:
        out = tmp / "fallback.onnx"
        t0 = time.time()
        info = run_quantize(fp32, args.data, ft, out, QuantizeConfig(subset_size=args.calib_size,
                            int8_max_drop=args.fallback_budget, fallback=("methods", "float")), data=args.data, log=print)
        b = info["budget"]
        rows.append(row(f"INT8 {ft.quant_format}", ft.name, f"ptq+fallback ({args.fallback_budget} pt)", out,
                        b["top1_int8"], b["top1_fp32"], round(time.time() - t0, 1), budget_note(b)))
    if "qat" in args.paths:
        out = tmp / "qat.onnx"
        qat = make_qat(args.model, resolve_data(args.data), tmp / "qat_work", epochs=args.qat_epochs, lr=1e-5, log=print)
        t0 = time.time()
        # a budget nothing meets forces the QAT step after plain PTQ; its own figures are the "qat" attempt
        info = run_quantize(fp32, args.data, ft, out, QuantizeConfig(subset_size=args.calib_size, int8_max_drop=-1e9,
                            fallback=("qat",)), data=args.data, qat=qat, log=print)
        b = info["budget"]
        a = next(x for x in b["attempts"] if x["path"] == "qat")
        rows.append({"runtime": f"INT8 {ft.quant_format}", "target": ft.name, "path": "qat", "batch": 1,
                     "top1": round(a["top1"], 2), "top1_delta_vs_fp32": round(a["top1"] - b["top1_fp32"], 2),
                     "seconds_added": round(time.time() - t0, 1), "note": f"QAT {a['qat']}", "cpu_flags": flags})
    write_rows(args.out, rows, ref_key=("runtime", "FP32"), ratio_col="speedup_vs_fp32")


if __name__ == "__main__":
    main()
