"""python -m edgeres_deploy verify | build | bench | predict IMAGE... | evaluate DIR  [--backend tensorrt|onnxruntime]

Needs numpy and pillow, plus tensorrt with pycuda or cuda-python (TensorRT backend) or onnxruntime. No torch.
Every command but `verify` verifies the bundle first and refuses one whose files do not match the manifest.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from edgeres_deploy import bundle as B
from edgeres_deploy.cuda_mem import BackendUnavailable
from edgeres_deploy.metrics import measure_latency, peak_rss_mb, run_padded, topk_accuracy
from edgeres_deploy.preprocess import Preprocess, imagefolder_samples


class OrtBackend:
    name = "onnxruntime"

    def __init__(self, root: Path, threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendUnavailable("onnxruntime not importable (pip install onnxruntime)") from None
        so = ort.SessionOptions()
        so.log_severity_level = 3
        if threads:
            so.intra_op_num_threads = threads
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
        self.session = ort.InferenceSession(str(root / "model.onnx"), so, providers=providers)
        self.input = self.session.get_inputs()[0]
        self.fixed_batch = self.input.shape[0] if isinstance(self.input.shape[0], int) else None
        self.device = "cuda" if providers[0] == "CUDAExecutionProvider" else "cpu"
        self.version = ort.__version__

    def run(self, x):
        return self.session.run(None, {self.input.name: np.ascontiguousarray(x, np.float32)})[0]

    def sync(self):
        pass

    def gpu_mem_mb(self):
        return None


class TrtBackend:
    name = "tensorrt"

    def __init__(self, root: Path, build_if_missing: bool = True):
        from edgeres_deploy.trt import TrtRunner, import_tensorrt

        trt = import_tensorrt()
        engine = root / "model.engine"
        if not engine.is_file() or not _engine_fresh(root):
            if not build_if_missing:
                raise BackendUnavailable("model.engine not built yet: run `python -m edgeres_deploy build`")
            cmd_build(argparse.Namespace(force=False, dla_core=None, no_fp16=False), root)
        self.runner = TrtRunner(str(engine))
        self.fixed_batch = self.runner.fixed_batch
        self.device = self.runner.device_name()
        self.version = trt.__version__

    def run(self, x):
        return self.runner.run(x)

    def sync(self):
        self.runner.sync()

    def gpu_mem_mb(self):
        return self.runner.device_memory_mb()


def _engine_fresh(root: Path) -> bool:
    side = root / "model.engine.json"
    if not side.is_file():
        return False
    meta = json.loads(side.read_text())
    try:
        import tensorrt as trt
    except ImportError:
        return False
    return meta.get("onnx_sha256") == B.sha256(root / "model.onnx") and meta.get("tensorrt_version") == trt.__version__


def make_backend(name: str, root: Path, threads: int | None = None):
    from edgeres_deploy.openvino_backend import OpenVinoBackend, preferred_backend

    if name == "openvino":
        return OpenVinoBackend(root, threads)
    if name == "auto" and preferred_backend(root) == "openvino":  # x86 bundles: the faster runtime on the host
        try:
            return OpenVinoBackend(root, threads)
        except BackendUnavailable as e:
            print(f"openvino backend unavailable ({e}); using onnxruntime", file=sys.stderr)
            return OrtBackend(root, threads)
    if name == "onnxruntime":
        return OrtBackend(root, threads)
    if name == "tensorrt":
        return TrtBackend(root)
    try:
        return TrtBackend(root)
    except BackendUnavailable as e:
        print(f"tensorrt backend unavailable ({e}); using onnxruntime", file=sys.stderr)
        return OrtBackend(root, threads)


def _stage(backend) -> str:
    return "engine" if backend.name == "tensorrt" else "bundle"


# ------------------------------------------------------------------------------------------------ commands
def cmd_verify(args, root: Path) -> int:
    problems = B.verify(root)
    for p in problems:
        print(f"FAIL {p}", file=sys.stderr)
    if problems:
        print(f"bundle at {root} does NOT match its manifest ({len(problems)} problem(s))", file=sys.stderr)
        return 1
    n = len(json.loads((root / "manifest.json").read_text())["files"])
    print(f"bundle at {root}: all {n} files match manifest.json")
    return 0


def cmd_build(args, root: Path) -> int:
    from edgeres_deploy.trt import build_engine, spec_from_dict, version_family, import_tensorrt

    trt = import_tensorrt()
    settings = B.build_settings(root)
    if not settings:
        raise B.BundleError("build.json missing: this bundle's target has no TensorRT engine")
    if not args.force and (root / "model.engine").is_file() and _engine_fresh(root):
        print("model.engine is up to date (same ONNX, same TensorRT); --force rebuilds")
        return 0
    spec = spec_from_dict(settings)
    spec.onnx, spec.engine = str(root / "model.onnx"), str(root / "model.engine")
    spec.timing_cache = str(root / "timing.cache")
    spec.trt_family = version_family(trt.__version__)
    spec.calib_cache = None  # model.onnx carries Q/DQ: explicit quantization
    if args.dla_core is not None:
        spec.dla_core = args.dla_core
    if args.no_fp16:
        spec.fp16 = False
    pre = Preprocess.from_json(root / "preprocess.json")
    build_engine(spec, extra_meta={"classes": B.labels(root), "preprocess": pre.to_dict(), "target": settings.get("target")})
    return 0


def cmd_bench(args, root: Path) -> int:
    from edgeres_deploy.device_stats import TegraStats

    pre = Preprocess.from_json(root / "preprocess.json")
    backend = make_backend(args.backend, root, args.threads)
    rng = np.random.default_rng(0)
    for bs in args.batch_size:
        if backend.fixed_batch and bs != backend.fixed_batch:
            print(f"batch {bs}: skipped (model has fixed batch {backend.fixed_batch})")
            continue
        x = rng.standard_normal((bs, 3, pre.size, pre.size)).astype(np.float32)
        with TegraStats() as ts:
            st = measure_latency(lambda: backend.run(x), bs, warmup=args.warmup, min_runs=args.min_runs,
                                 min_time_s=args.min_time, sync=backend.sync)
        dev = ts.summary()
        note = "; ".join(f"{k} {v:.0f}" for k, v in dev.items() if v is not None)
        print(f"{backend.name} batch {bs}: p50 {st.p50_ms:.3f} ms  p90 {st.p90_ms:.3f}  p99 {st.p99_ms:.3f}  "
              f"{st.throughput_ips:.1f} img/s" + (f"  [{note}]" if note else ""))
        if args.csv:
            B.upsert_csv(args.csv, {
                "stage": _stage(backend), "artifact": "model.engine" if backend.name == "tensorrt" else "model.onnx",
                "runtime": backend.name, "device": backend.device, "precision": "int8", "batch_size": bs,
                "input_size": pre.size, "latency_p50_ms": round(st.p50_ms, 4), "latency_p90_ms": round(st.p90_ms, 4),
                "latency_p99_ms": round(st.p99_ms, 4), "throughput_ips": round(st.throughput_ips, 2),
                "model_size_mb": round(os.path.getsize(root / ("model.engine" if backend.name == "tensorrt" else "model.onnx")) / 1e6, 3),
                "peak_rss_mb": round(peak_rss_mb() or 0, 1) or None,
                "gpu_mem_mb": backend.gpu_mem_mb(), "status": "ok", "note": note or None})
    return 0


def _classify(backend, pre, paths, batch_size: int):
    from PIL import Image

    out = []
    bs = backend.fixed_batch or batch_size
    for i in range(0, len(paths), bs):
        chunk = paths[i : i + bs]
        arrs = []
        for p in chunk:
            with Image.open(p) as img:
                arrs.append(pre(img))
        out.append(run_padded(backend.run, np.stack(arrs), backend.fixed_batch))
    return np.concatenate(out)


def cmd_predict(args, root: Path) -> int:
    pre = Preprocess.from_json(root / "preprocess.json")
    names = B.labels(root)
    backend = make_backend(args.backend, root, args.threads)
    logits = _classify(backend, pre, args.images, 8)
    for path, row in zip(args.images, logits):
        p = np.exp(row - row.max())
        p /= p.sum()
        top = np.argsort(-p)[: args.top_k]
        print(f"{path}: " + ", ".join(f"{names[i] if i < len(names) else i} {p[i] * 100:.1f}%" for i in top))
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
    backend = make_backend(args.backend, root, args.threads)
    logits = _classify(backend, pre, [p for p, _ in samples], args.batch_size)
    acc = topk_accuracy(logits, targets, (1, 5))
    print(json.dumps({"backend": backend.name, "device": backend.device, "images": len(samples), **acc}))
    if args.csv:
        B.upsert_csv(args.csv, {"stage": _stage(backend), "artifact": "model.engine" if backend.name == "tensorrt" else "model.onnx",
                                "runtime": backend.name, "device": backend.device, "precision": "int8",
                                "batch_size": 1, "input_size": pre.size, "top1": round(acc["top1"], 3),
                                "top5": round(acc["top5"], 3), "status": "ok"})
    return 0


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m edgeres_deploy", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", help="bundle root (default: the current directory)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("verify", help="check every file against manifest.json")
    b = sub.add_parser("build", help="build model.engine from model.onnx with this device's TensorRT (cached)")
    b.add_argument("--force", action="store_true")
    b.add_argument("--dla-core", type=int, default=None)
    b.add_argument("--no-fp16", action="store_true")
    for name, hlp in (("bench", "latency percentiles, throughput, memory, power"), ("predict", "top-k for images"),
                      ("evaluate", "top-1/top-5 on an ImageFolder")):
        p = sub.add_parser(name, help=hlp)
        p.add_argument("--backend", choices=["auto", "tensorrt", "onnxruntime", "openvino"], default="auto")
        p.add_argument("--threads", type=int, default=None, help="CPU threads (onnxruntime)")
        if name == "bench":
            p.add_argument("--batch-size", type=int, nargs="+", default=[1])
            p.add_argument("--min-time", type=float, default=2.0)
            p.add_argument("--min-runs", type=int, default=50)
            p.add_argument("--warmup", type=int, default=10)
            p.add_argument("--csv", default=None, help="write/merge a report.csv row")
        elif name == "predict":
            p.add_argument("images", nargs="+")
            p.add_argument("--top-k", type=int, default=5)
        else:
            p.add_argument("dir")
            p.add_argument("--batch-size", type=int, default=32)
            p.add_argument("--csv", default=None)
    return ap


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        root = B.find_root(args.bundle)
        if args.cmd == "verify":
            return cmd_verify(args, root)
        B.require_verified(root)
        return {"build": cmd_build, "bench": cmd_bench, "predict": cmd_predict, "evaluate": cmd_evaluate}[args.cmd](args, root)
    except (B.BundleError, BackendUnavailable, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
