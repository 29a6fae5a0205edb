"""ResNet50 at 224x224, batch 1 and 8, side by side in one run on this machine:

  PyTorch eager FP32 | ONNX Runtime FP32 | ONNX Runtime INT8 (onnxruntime.quantization.quantize_static, QDQ u8/s8) |
  OpenVINO FP32 and OpenVINO + NNCF INT8 (when openvino is installed) | and edgeres's own artifacts:
  edgeres x86-cpu INT8 (NNCF, u8 activations), edgeres pruned 0.3 FP32, edgeres pruned 0.3 + x86-cpu INT8.

Writes CSV with each row's speed-up against PyTorch eager at the same batch size. Latency does not depend on the
weights' values, so the network is randomly initialised (no weights can be downloaded here).

    python benchmarks/bench_runtimes.py --out benchmarks/results/runtimes.csv [--min-time 3]
"""

from __future__ import annotations

import argparse

from common import random_images, scratch_dir, time_fn, write_rows

from edgeres.data import Preprocess
from edgeres.metrics import default_threads, onnx_macs_params
from edgeres.models import ModelMeta, build_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/results/runtimes.csv")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--min-time", type=float, default=3.0)
    ap.add_argument("--calib", type=int, default=64, help="calibration images (random: latency only)")
    ap.add_argument("--skip", nargs="*", default=[], help="row names to skip")
    args = ap.parse_args()

    import onnxruntime as ort
    import torch

    from edgeres.calibration import ArrayDataReader
    from edgeres.stages.export import export_onnx
    from edgeres.stages.prune import PruneConfig, channel_prune
    from edgeres.stages.quantize import QuantizeConfig, quantize_onnx
    from edgeres.targets import get_target

    threads = default_threads()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    tmp = scratch_dir("edgeres-bench-")
    pre = Preprocess(size=args.size)
    meta = ModelMeta(classes=[str(i) for i in range(1000)])
    model = build_model("resnet50", 1000).eval()
    pruned = build_model("resnet50", 1000).eval()
    channel_prune(pruned, PruneConfig(ratio=0.3), args.size)
    calib = random_images(args.calib, args.size)
    files = {"fp32": tmp / "fp32.onnx", "pruned": tmp / "pruned.onnx"}
    export_onnx(model, files["fp32"], pre, meta)
    export_onnx(pruned, files["pruned"], pre, meta)
    x86 = get_target("x86-cpu")
    qc = QuantizeConfig(subset_size=args.calib)
    quantize_onnx(files["fp32"], tmp / "edgeres_int8.onnx", x86, calib, qc)
    quantize_onnx(files["pruned"], tmp / "pruned_int8.onnx", x86, calib, qc)
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    quantize_static(str(files["fp32"]), str(tmp / "ort_int8.onnx"), ArrayDataReader(calib, "input"),
                    quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    per_channel=True)

    def ort_fn(path):
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = threads, 1, 3
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        return lambda x: sess.run(None, {"input": x})

    candidates = [
        ("PyTorch eager", "fp32", None, lambda: (lambda x: model(torch.from_numpy(x)))),
        ("ONNX Runtime", "fp32", files["fp32"], lambda: ort_fn(files["fp32"])),
        ("ONNX Runtime quantize_static", "int8 (u8 act)", tmp / "ort_int8.onnx", lambda: ort_fn(tmp / "ort_int8.onnx")),
        ("edgeres x86-cpu INT8 (NNCF)", "int8 (u8 act)", tmp / "edgeres_int8.onnx", lambda: ort_fn(tmp / "edgeres_int8.onnx")),
        ("edgeres pruned 0.3, ONNX Runtime", "fp32", files["pruned"], lambda: ort_fn(files["pruned"])),
        ("edgeres pruned 0.3 + x86-cpu INT8", "int8 (u8 act)", tmp / "pruned_int8.onnx", lambda: ort_fn(tmp / "pruned_int8.onnx")),
    ]
    try:
        import nncf
        import openvino as ov

        core = ov.Core()
        ov_fp32 = core.read_model(str(files["fp32"]))
        ov_int8 = nncf.quantize(core.read_model(str(files["fp32"])),
                                nncf.Dataset(list(range(len(calib))), lambda i: calib[i : i + 1]), subset_size=args.calib)

        def ov_fn(m):
            compiled = core.compile_model(m, "CPU", {"INFERENCE_NUM_THREADS": threads})
            req = compiled.create_infer_request()
            return lambda x: req.infer({0: x})

        candidates += [("OpenVINO", "fp32 model", files["fp32"], lambda: ov_fn(ov_fp32)),
                       ("OpenVINO + NNCF", "int8", None, lambda: ov_fn(ov_int8))]
    except ImportError:
        print("openvino not installed: its rows are skipped")
    rows = []
    with torch.inference_mode():
        for name, precision, path, make in candidates:
            if name in args.skip:
                continue
            fn = make()
            macs = onnx_macs_params(path)[0] if path else None
            for b in args.batches:
                x = random_images(b, args.size, seed=1)
                t = time_fn(lambda: fn(x), b, args.min_time)
                rows.append({"runtime": name, "precision": precision, "batch": b, "threads": threads,
                             "gmacs": round(macs / 1e9, 3) if macs else "", **t})
                print(f"{name:40s} b={b}: p50 {t['p50_ms']:.2f} ms")
    write_rows(args.out, rows)


if __name__ == "__main__":
    main()
