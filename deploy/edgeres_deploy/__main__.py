"""./run.sh verify | build | check | bench | predict IMAGE... | evaluate DIR  [--backend tensorrt|onnxruntime]

Needs numpy and pillow, plus tensorrt with pycuda or cuda-python (TensorRT backend) or onnxruntime. No torch.
Every command verifies the bundle first and refuses one whose folder does not match the manifest exactly (run.sh checks
it before importing this module: see edgeres_deploy/bundle.py).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

from edgeres_deploy import bundle as B
from edgeres_deploy.cuda_mem import BackendUnavailable, CpuBackend
from edgeres_deploy.metrics import measure_latency, peak_rss_mb, run_padded, topk_accuracy
from edgeres_deploy.preprocess import ImageError, Preprocess, imagefolder_samples


class OrtBackend(CpuBackend):
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
        from edgeres_deploy.check import onnx_precision

        self.precision = onnx_precision(root / "model.onnx")

    def run(self, x):
        return self.session.run(None, {self.input.name: np.ascontiguousarray(x, np.float32)})[0]


class TrtBackend:
    name = "tensorrt"

    def __init__(self, root: Path, build_if_missing: bool = True):
        from edgeres_deploy.trt import TrtRunner, import_tensorrt

        trt = import_tensorrt()
        engine = root / "model.engine"
        if not engine.is_file() or not _engine_fresh(root):  # an engine built with other options is kept
            if not build_if_missing:
                raise BackendUnavailable("model.engine not built yet: run `./run.sh build`")
            if cmd_build(argparse.Namespace(force=False, dla_core=None, no_fp16=False), root):
                raise B.BundleError("model.engine was built but failed its self-check (see above)")
        self.runner = TrtRunner(str(engine))
        self.fixed_batch = self.runner.fixed_batch
        self.max_batch = self.runner.max_batch
        self.device = self.runner.device_name()
        self.version = trt.__version__
        self.precision = self.runner.meta.get("precision") or "unknown"

    @property
    def last_gpu_ms(self):
        return self.runner.last_gpu_ms

    def run(self, x):
        return self.runner.run(x)

    def sync(self):
        self.runner.sync()

    def gpu_mem_mb(self):
        return self.runner.device_memory_mb()


def _engine_fresh(root: Path, spec=None) -> bool:
    """model.engine was built from this model.onnx by this TensorRT (and, given ``spec``, with the same build spec:
    batch profile, precisions, DLA core, sparsity, workspace)."""
    side = root / "model.engine.json"
    if not side.is_file():
        return False
    meta = json.loads(side.read_text())
    try:
        import tensorrt as trt
    except ImportError:
        return False
    if meta.get("onnx_sha256") != B.sha256(root / "model.onnx") or meta.get("tensorrt_version") != trt.__version__:
        return False
    if spec is not None:
        from edgeres_deploy.trt import spec_key

        return meta.get("build_spec") == spec_key(spec)
    return True


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
    return B.verify_command(root)


def _wanted_spec(args, root: Path):
    from edgeres_deploy.trt import for_dla, import_tensorrt, spec_from_dict, version_family

    trt = import_tensorrt()
    settings = B.build_settings(root)
    if not settings:
        raise B.BundleError("build.json missing: this bundle's target has no TensorRT engine")
    spec = spec_from_dict(settings)
    spec.onnx, spec.engine = str(root / "model.onnx"), str(root / "model.engine")
    spec.timing_cache = str(root / "timing.cache")
    spec.trt_family = version_family(trt.__version__)
    spec.calib_cache = None  # model.onnx carries Q/DQ: explicit quantization
    if args.dla_core is not None:
        spec = for_dla(spec, args.dla_core)  # DLA: static shapes
    if args.no_fp16:
        spec.fp16 = False
    return spec, settings


def cmd_build(args, root: Path) -> int:
    from edgeres_deploy.trt import build_engine

    spec, settings = _wanted_spec(args, root)
    if not args.force and (root / "model.engine").is_file() and _engine_fresh(root, spec):
        print("model.engine is up to date (same ONNX, same TensorRT, same build options); --force rebuilds")
        return 0
    pre = Preprocess.from_json(root / "preprocess.json")
    build_engine(spec, extra_meta={"classes": B.labels(root), "preprocess": pre.to_dict(), "target": settings.get("target")})
    from edgeres_deploy.check import has_validation

    if has_validation(root):  # the first build proves the engine against the host's reference outputs
        return cmd_check(argparse.Namespace(backend="tensorrt", threads=None, csv=None, expect_reference=None), root)
    return 0


def cmd_check(args, root: Path) -> int:
    from edgeres_deploy.check import run_check

    backend = make_backend(args.backend, root, args.threads)
    res = run_check(root, backend)
    print(res["message"], file=sys.stdout if res["passed"] else sys.stderr)
    if args.expect_reference and res["reference_sha256"] != args.expect_reference:
        print(f"FAIL validation/reference.npz has sha256 {res['reference_sha256'][:16]}…, the host's run recorded "
              f"{args.expect_reference[:16]}…: the reference outputs are not the host's", file=sys.stderr)
        res["passed"] = False
        res["row"]["status"] = "failed"
    if args.csv:
        B.upsert_csv(args.csv, res["row"])
    return 0 if res["passed"] else 1


def cmd_bench(args, root: Path) -> int:
    from edgeres_deploy.device_stats import TegraStats

    pre = Preprocess.from_json(root / "preprocess.json")
    backend = make_backend(args.backend, root, args.threads)
    rng = np.random.default_rng(0)
    for bs in args.batch_size:
        if backend.fixed_batch and bs != backend.fixed_batch:
            print(f"batch {bs}: skipped (model has fixed batch {backend.fixed_batch})")
            continue
        if backend.max_batch and bs > backend.max_batch:
            print(f"batch {bs}: skipped (the engine's profile allows batches up to {backend.max_batch})")
            continue
        x = rng.standard_normal((bs, 3, pre.size, pre.size)).astype(np.float32)
        gpu_ms = []

        def once(x=x, gpu_ms=gpu_ms):
            backend.run(x)
            if backend.last_gpu_ms is not None:
                gpu_ms.append(backend.last_gpu_ms)

        with TegraStats() as ts:
            st = measure_latency(once, bs, warmup=args.warmup, min_runs=args.min_runs,
                                 min_time_s=args.min_time, sync=backend.sync)
        dev = ts.summary()
        note = "; ".join(f"{k} {v:.0f}" for k, v in dev.items() if v is not None)
        if gpu_ms:  # what trtexec calls GPU Compute; the percentiles above are end-to-end (pinned H2D/D2H included)
            gpu = float(np.percentile(gpu_ms[args.warmup:] or gpu_ms, 50))
            note = "; ".join(x for x in (f"GPU compute p50 {gpu:.3f} ms (CUDA events), latency columns end-to-end", note) if x)
        print(f"{backend.name} batch {bs}: p50 {st.p50_ms:.3f} ms  p90 {st.p90_ms:.3f}  p99 {st.p99_ms:.3f}  "
              f"{st.throughput_ips:.1f} img/s" + (f"  [{note}]" if note else ""))
        if args.csv:
            B.upsert_csv(args.csv, {
                "stage": _stage(backend), "artifact": "model.engine" if backend.name == "tensorrt" else "model.onnx",
                "runtime": backend.name, "device": backend.device, "precision": backend.precision, "batch_size": bs,
                "input_size": pre.size, "latency_p50_ms": round(st.p50_ms, 4), "latency_p90_ms": round(st.p90_ms, 4),
                "latency_p99_ms": round(st.p99_ms, 4), "throughput_ips": round(st.throughput_ips, 2),
                "model_size_mb": round(os.path.getsize(root / ("model.engine" if backend.name == "tensorrt" else "model.onnx")) / 1e6, 3),
                "peak_rss_mb": round(peak_rss_mb() or 0, 1) or None,
                "gpu_mem_mb": backend.gpu_mem_mb(), "status": "ok", "note": note or None})
    return 0


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
    for path in getattr(args, "images", None) or []:
        if os.path.isdir(path):
            raise B.BundleError(f"{path} is a folder: predict takes image files (evaluate DIR takes an ImageFolder)")
        if not os.path.isfile(path):
            raise B.BundleError(f"{path}: no such image file")
    if getattr(args, "dir", None) is not None and not os.path.isdir(args.dir):
        raise B.BundleError(f"{args.dir}: no such folder; evaluate takes an ImageFolder (DIR/CLASS/*.jpg)")
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
                                "runtime": backend.name, "device": backend.device, "precision": backend.precision,
                                "batch_size": 1, "input_size": pre.size, "top1": round(acc["top1"], 3),
                                "top5": round(acc["top5"], 3), "status": "ok"})
    return 0


def _number(kind, low: float, what: str):
    """argparse type: a finite number >= low (a usage error, exit 2, otherwise)."""
    def conv(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not math.isfinite(v) or v < low:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return v
    return conv


POSITIVE = _number(int, 1, "a whole number >= 1")
NON_NEGATIVE = _number(int, 0, "a whole number >= 0")
SECONDS = _number(float, 0.0, "a number of seconds >= 0")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="./run.sh", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", help="bundle root, which must hold manifest.json (default: the bundle of this runtime)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("verify", help="check every file against manifest.json")
    b = sub.add_parser("build", help="build model.engine from model.onnx with this device's TensorRT (cached)")
    b.add_argument("--force", action="store_true")
    b.add_argument("--dla-core", type=int, default=None)
    b.add_argument("--no-fp16", action="store_true")
    c = sub.add_parser("check", help="run the bundle's validation images; compare with the host's reference outputs")
    c.add_argument("--backend", choices=["auto", "tensorrt", "onnxruntime"], default="auto")
    c.add_argument("--threads", type=int, default=None, help="CPU threads (onnxruntime)")
    c.add_argument("--csv", default=None, help="write/merge the check's report.csv row")
    c.add_argument("--expect-reference", default=None, metavar="SHA256",
                   help="the reference digest the host's run recorded (report.json / bundle stage): refuse another")
    for name, hlp in (("bench", "latency percentiles, throughput, memory, power"), ("predict", "top-k for images"),
                      ("evaluate", "top-1/top-5 on an ImageFolder")):
        p = sub.add_parser(name, help=hlp)
        p.add_argument("--backend", choices=["auto", "tensorrt", "onnxruntime", "openvino"], default="auto")
        p.add_argument("--threads", type=POSITIVE, default=None, help="CPU threads (onnxruntime, openvino)")
        if name == "bench":
            p.add_argument("--batch-size", type=POSITIVE, nargs="+", default=[1])
            p.add_argument("--min-time", type=SECONDS, default=2.0)
            p.add_argument("--min-runs", type=POSITIVE, default=50)
            p.add_argument("--warmup", type=NON_NEGATIVE, default=10)
            p.add_argument("--csv", default=None, help="write/merge a report.csv row")
        elif name == "predict":
            p.add_argument("images", nargs="+")
            p.add_argument("--top-k", type=POSITIVE, default=5)
        else:
            p.add_argument("dir")
            p.add_argument("--batch-size", type=POSITIVE, default=32)
            p.add_argument("--csv", default=None)
    return ap


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        root = B.find_root(args.bundle)
        if args.cmd == "verify":
            return cmd_verify(args, root)
        B.require_verified(root)
        _check_inputs(args, root)
        return {"build": cmd_build, "check": cmd_check, "bench": cmd_bench, "predict": cmd_predict,
                "evaluate": cmd_evaluate}[args.cmd](args, root)
    except (B.BundleError, BackendUnavailable, FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # an unreadable or unwritable path: one line naming it
        print(f"error: {str(e.filename) + ': ' if e.filename else ''}{e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
