"""ResNet50 at 224x224, batch 1 and 8, every runtime side by side in ONE run, timed in interleaved repeated rounds:

  PyTorch eager FP32 | ONNX Runtime FP32 | OpenVINO FP32 | ONNX Runtime INT8 (onnxruntime.quantization.quantize_static,
  QDQ u8 activations / s8 weights, per channel) | OpenVINO + NNCF INT8 (nncf.quantize on the OpenVINO model, unpruned:
  the peer a user would pick) | edgeres x86-cpu INT8 unpruned, pruned at --ratio 0.3, and pruned at --target-speedup 2
  (the ratio found by edgeres's latency search on this host), each in ONNX Runtime and in OpenVINO.

Every round runs every row (the order rotating) for ``--runs`` calls and keeps the median of that round; a row's figure
is the median over rounds (``median_ms``) and its best round (``best_round_ms``); each speed-up is the median of the
per-round ratios (and the best round's), so a busy machine slows both sides of a ratio alike. Columns: speed-up vs
PyTorch eager, vs OpenVINO + NNCF INT8, vs ONNX Runtime FP32 and, for edgeres's pruned rows, vs edgeres's unpruned INT8
file in the same runtime (pruning's own share). The CPU's instruction sets (AVX2 / AVX-512 VNNI / AMX) are recorded in
every row: INT8 ratios depend on them. Latency does not depend on the weights' values, so the network is randomly
initialised (no weights can be downloaded here); accuracy is benchmarks/bench_quantize.py's job.

    python benchmarks/bench_runtimes.py --out benchmarks/results/runtimes.csv [--rounds 9 --runs 10]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

from common import cpu_flags, cpu_model, random_images, scratch_dir, write_csv

from edgeres.data import Preprocess
from edgeres.metrics import default_threads, onnx_macs_params
from edgeres.models import ModelMeta, build_model

EAGER, OV_NNCF, ORT_FP32 = "PyTorch eager", "OpenVINO + NNCF INT8", "ONNX Runtime FP32"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/results/runtimes.csv")
    ap.add_argument("--arch", default="resnet50", choices=["resnet18", "resnet34", "resnet50", "resnet101"])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--rounds", type=int, default=9, help="interleaved rounds (each row timed once per round)")
    ap.add_argument("--runs", type=int, default=10, help="calls per row per round (the round's median)")
    ap.add_argument("--calib", type=int, default=32, help="calibration images (random: latency only)")
    ap.add_argument("--ratio", type=float, default=0.3, help="the fixed-ratio edgeres row")
    ap.add_argument("--target-speedup", type=float, default=2.0, help="the latency-searched edgeres row")
    ap.add_argument("--speedup-ratio", type=float, default=None,
                    help="skip the latency search and use this ratio for the --target-speedup row (a re-run)")
    ap.add_argument("--search-steps", type=int, default=8)
    ap.add_argument("--search-rounds", type=int, default=7)
    ap.add_argument("--skip", nargs="*", default=[], help="row names to skip")
    args = ap.parse_args()

    import torch

    from edgeres.onnx_export import export_onnx
    from edgeres.prune.channels import PruneConfig, channel_prune
    from edgeres.prune.latency import LatencyTarget, find_ratio, interleaved_medians
    from edgeres.quant.ptq import quantize_onnx
    from edgeres.quant.settings import QuantizeConfig
    from edgeres.runtimes import load_runtime
    from edgeres.targets import get_target

    t0 = time.time()
    threads = default_threads()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    tmp = scratch_dir("edgeres-bench-")
    pre = Preprocess(size=args.size)
    meta = ModelMeta(classes=[str(i) for i in range(1000)])
    x86 = get_target("x86-cpu")
    calib = random_images(args.calib, args.size)
    qc = QuantizeConfig(subset_size=args.calib)  # edgeres's own defaults (histogram ranges, no bias correction)

    model = build_model(args.arch, 1000).eval()
    search = None
    if args.speedup_ratio is None:
        print(f"latency search for --target-speedup {args.target_speedup:g} on this host ...")
        goal = LatencyTarget(speedup=args.target_speedup, steps=args.search_steps, rounds=args.search_rounds)
        search = find_ratio(model, x86, pre, goal, PruneConfig(), log=print)
        speedup_ratio = search["ratio"]
    else:
        speedup_ratio = args.speedup_ratio
    variants = {"unpruned": (model, 0.0), f"ratio {args.ratio:g}": (None, args.ratio),
                f"--target-speedup {args.target_speedup:g}": (None, speedup_ratio)}
    files = {}
    for name, (m, ratio) in variants.items():
        if m is None:
            m = build_model(args.arch, 1000).eval()
            m.load_state_dict(model.state_dict())
            channel_prune(m, PruneConfig(ratio=ratio, round_to=x86.channel_multiple), args.size)
        fp32 = tmp / f"{name.replace(' ', '_').strip('-')}.onnx"
        export_onnx(m, fp32, pre, meta)
        q = fp32.with_name(fp32.stem + "_int8.onnx")
        quantize_onnx(fp32, q, x86, calib, qc)
        files[name] = (fp32, q, ratio)
    base_fp32 = files["unpruned"][0]

    from edgeres.calibration import ArrayDataReader
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    ort_q = tmp / "ort_quantize_static.onnx"
    quantize_static(str(base_fp32), str(ort_q), ArrayDataReader(calib, "input"), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)

    # (name, runtime, precision, ratio, artifact for MACs, make fn(x) -> output)
    runners = contextlib.ExitStack()  # every runner opened below is closed once the rows are timed

    def rt_fn(runtime, path):
        return lambda: runners.enter_context(load_runtime(runtime, path, threads=threads)).run

    rows_spec = [(EAGER, "torch", "fp32", 0.0, base_fp32, lambda: (lambda x: model(torch.from_numpy(x)))),
                 (ORT_FP32, "onnxruntime", "fp32", 0.0, base_fp32, rt_fn("onnxruntime", base_fp32)),
                 ("OpenVINO FP32", "openvino", "fp32 model", 0.0, base_fp32, rt_fn("openvino", base_fp32)),
                 ("ONNX Runtime quantize_static INT8", "onnxruntime", "int8", 0.0, ort_q, rt_fn("onnxruntime", ort_q))]
    try:
        import nncf
        import openvino as ov

        core = ov.Core()
        ov_int8 = nncf.quantize(core.read_model(str(base_fp32)),
                                nncf.Dataset(list(range(len(calib))), lambda i: calib[i : i + 1]), subset_size=args.calib)

        def ov_nncf():
            req = core.compile_model(ov_int8, "CPU", {"INFERENCE_NUM_THREADS": threads}).create_infer_request()
            return lambda x: req.infer({0: x})

        rows_spec.append((OV_NNCF, "openvino", "int8", 0.0, base_fp32, ov_nncf))
    except ImportError:
        print("openvino/nncf not installed: the OpenVINO rows are skipped")
    for name, (_, q, ratio) in files.items():
        for runtime, label in (("onnxruntime", "ONNX Runtime"), ("openvino", "OpenVINO")):
            rows_spec.append((f"edgeres x86-cpu INT8 {name} ({label})", runtime, "int8", ratio, q, rt_fn(runtime, q)))

    fns, info = {}, {}
    for name, runtime, precision, ratio, path, make in rows_spec:
        if name in args.skip:
            continue
        try:
            fns[name] = make()
        except Exception as e:  # noqa: BLE001 - a runtime that cannot run this file is a row saying so
            print(f"{name}: cannot run ({str(e).strip().splitlines()[-1][:160] if str(e).strip() else e.__class__.__name__})")
            continue
        info[name] = {"runtime": runtime, "precision": precision, "ratio": ratio,
                      "gmacs": round(onnx_macs_params(path)[0] / 1e9, 3)}

    flags, cpu = cpu_flags(), cpu_model()
    rows = []
    with runners, torch.inference_mode():
        for b in args.batches:
            x = random_images(b, args.size, seed=1)
            print(f"batch {b}: {args.rounds} interleaved rounds x {args.runs} runs of {len(fns)} rows ...")
            per = interleaved_medians({n: (lambda f=f: f(x)) for n, f in fns.items()}, args.rounds, args.runs, warmup=3)

            def ratio(ref, name):
                if ref not in per or name not in per:
                    return None, None
                r = [a / c for a, c in zip(per[ref], per[name])]
                return round(statistics.median(r), 3), round(max(r), 3)

            for name, meds in per.items():
                row = {"row": name, **info[name], "batch": b, "threads": threads,
                       "median_ms": round(statistics.median(meds), 3), "best_round_ms": round(min(meds), 3),
                       "throughput_ips": round(b * 1000.0 / statistics.median(meds), 1)}
                for col, ref in (("vs_eager", EAGER), ("vs_ov_nncf", OV_NNCF), ("vs_ort_fp32", ORT_FP32)):
                    row[f"speedup_{col}"], row[f"speedup_{col}_best_round"] = ratio(ref, name)
                if name.startswith("edgeres") and "unpruned" not in name:
                    ref = "edgeres x86-cpu INT8 unpruned (" + name.rsplit("(", 1)[1]
                    row["speedup_vs_unpruned_same_runtime"], _ = ratio(ref, name)
                row.update(rounds=args.rounds, runs_per_round=args.runs, cpu_flags=flags, cpu=cpu)
                rows.append(row)
    if search is not None:
        print(f"latency search: {search['target']} -> ratio {search['ratio']:.3f}, measured "
              f"{search['measured_speedup']:.2f}x on {search.get('runtime')} ({search['stop']})")
        for r in rows:
            if "--target-speedup" in r["row"]:
                r["search_measured_speedup"] = round(search["measured_speedup"], 3)
                r["search_runtime"] = search.get("runtime")
    write_csv(args.out, rows)
    print(f"CPU: {cpu} [{flags}], {threads} threads, {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
