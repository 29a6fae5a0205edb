"""./run.sh COMMAND [options]   (or python3 -m edgeres_deploy COMMAND ...)

First run on the device:
  sh install.sh                 check the bundle, install what is missing (nothing to compile), then `doctor`
  ./run.sh doctor               what is here (Python, numpy, pillow, TensorRT, CUDA, L4T) and the fix for what is not
  ./run.sh build                build model.engine with this device's TensorRT, then prove it (`check`)
  ./run.sh check                validation images through the engine vs the host's reference outputs (exit 1 if not)
Then: bench | predict IMAGE... | evaluate DIR; `adopt [ENGINE]` takes over an engine built with trtexec.

Every command verifies the bundle first (manifest.json, and the record of the engine files this device built or
adopted) and refuses a folder that does not match. Exit status: 0 ok, 1 a problem (one line on stderr), 2 usage.
`--json` (verify, doctor, check, bench, predict) prints one JSON document for scripts.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

from edgeres_deploy import bundle as B


def _number(kind, low: float, what: str, high: float = 1e6):
    """argparse type: a finite number in [low, high] (a usage error, exit 2, otherwise): high bounds it by what the
    machine can do (a batch of 10^9 images dies inside an allocator, 10^9 threads inside the runtime)."""
    def conv(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not math.isfinite(v) or v < low or v > high:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what} (at most {high:g})")
        return v
    return conv


POSITIVE = _number(int, 1, "a whole number >= 1")
NON_NEGATIVE = _number(int, 0, "a whole number >= 0")
SECONDS = _number(float, 0.0, "a number of seconds >= 0", high=3600)
BATCH = _number(int, 1, "a batch size >= 1", high=4096)
THREADS = _number(int, 1, "a thread count >= 1", high=4 * (os.cpu_count() or 1))
DLA_CORE = _number(int, 0, "a DLA core number >= 0", high=7)


def _add_common(p, json_too: bool = True) -> None:
    if json_too:
        p.add_argument("--json", action="store_true", help="one JSON document on stdout (for scripts)")


def _setup_commands(sub) -> None:
    _add_common(sub.add_parser("verify", help="check every file against manifest.json and the engine record"))
    _add_common(sub.add_parser("doctor", help="what this machine has for the bundle, and how to install the rest"))
    b = sub.add_parser("build", help="build model.engine from model.onnx with this device's TensorRT, then check it")
    b.add_argument("--rebuild", "--force", action="store_true",
                   help="build even when model.engine is up to date, adopted, or not built here (it is replaced)")
    b.add_argument("--dla-core", type=DLA_CORE, default=None, help="run on this DLA core (GPU fallback on)")
    b.add_argument("--no-fp16", action="store_true", help="no FP16 for layers without Q/DQ (TensorRT 8.5/10)")
    b.add_argument("--timing-cache", default=None, metavar="PATH",
                   help="start from this TensorRT timing cache kept outside the bundle (e.g. shared by boards of one "
                        "kind); read only: the build writes the bundle's own timing.cache, which you may copy back")
    _add_common(b)
    a = sub.add_parser("adopt", help="take over an engine built elsewhere (trtexec): read, record, check; never rebuilt")
    a.add_argument("engine", nargs="?", default=None, help="the engine file (default: the bundle's model.engine)")
    a.add_argument("--dla-core", type=DLA_CORE, default=None, help="the DLA core the engine was built for")
    _add_common(a)
    c = sub.add_parser("check", help="validation images vs the host's reference outputs, on the runtime that ships")
    c.add_argument("--backend", choices=["auto", "tensorrt", "onnxruntime"], default="auto",
                   help="auto: the bundle's runtime (TensorRT: the engine, never a fallback)")
    c.add_argument("--threads", type=THREADS, default=None, help="CPU threads (onnxruntime)")
    c.add_argument("--csv", default=None, help="write/merge the check's report.csv row")
    c.add_argument("--expect-reference", default=None, metavar="SHA256",
                   help="the reference digest the host's run recorded (report.json / bundle stage): refuse another")
    _add_common(c)


def _measure_commands(sub) -> None:
    for name, hlp in (("bench", "latency percentiles, throughput, memory, power"), ("predict", "top-k for images"),
                      ("evaluate", "top-1/top-5 on an ImageFolder")):
        p = sub.add_parser(name, help=hlp)
        p.add_argument("--backend", choices=["auto", "tensorrt", "onnxruntime", "openvino"], default="auto")
        p.add_argument("--threads", type=THREADS, default=None, help="CPU threads (onnxruntime, openvino)")
        if name == "bench":
            p.add_argument("--batch-size", type=BATCH, nargs="+", default=[1])
            p.add_argument("--min-time", type=SECONDS, default=2.0)
            p.add_argument("--min-runs", type=POSITIVE, default=50)
            p.add_argument("--warmup", type=NON_NEGATIVE, default=10)
            p.add_argument("--csv", default=None, help="write/merge a report.csv row")
            _add_common(p)
        elif name == "predict":
            p.add_argument("images", nargs="+")
            p.add_argument("--top-k", type=_number(int, 1, "a whole number >= 1", high=1000), default=5)
            _add_common(p)
        else:
            p.add_argument("dir")
            p.add_argument("--batch-size", type=BATCH, default=32)
            p.add_argument("--csv", default=None)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="./run.sh", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", help="bundle root, which must hold manifest.json (default: the bundle of this runtime)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    _setup_commands(sub)
    _measure_commands(sub)
    return ap


def _dispatch(args, root) -> int:
    if args.cmd in ("verify", "doctor", "build", "adopt", "check"):
        from edgeres_deploy import commands as C

        if args.cmd == "verify":
            return C.cmd_verify(args, root)
        if args.cmd != "doctor":  # doctor runs on a tampered bundle too: it only reports
            B.require_verified(root, engine_files=not (args.cmd == "adopt" or getattr(args, "rebuild", False)))
        return {"doctor": C.cmd_doctor, "build": C.cmd_build, "adopt": C.cmd_adopt, "check": C.cmd_check}[args.cmd](args, root)
    from edgeres_deploy import measure_commands as M

    B.require_verified(root)
    M._check_inputs(args, root)
    return {"bench": M.cmd_bench, "predict": M.cmd_predict, "evaluate": M.cmd_evaluate}[args.cmd](args, root)


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        return _dispatch(args, B.find_root(args.bundle))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - every failure the user can act on is one line, no traceback
        return _one_line(e)


def _one_line(e: Exception) -> int:
    from edgeres_deploy.errors import BackendUnavailable

    if isinstance(e, ImportError) and e.name and not e.name.startswith("edgeres_deploy"):
        print(f"error: Python module {e.name} is not installed for {sys.executable}: run sh install.sh "
              "(./run.sh doctor lists what is missing)", file=sys.stderr)
    elif isinstance(e, OSError) and e.filename is not None:
        print(f"error: {e.filename}: {e.strerror or e}", file=sys.stderr)
    elif isinstance(e, (B.BundleError, BackendUnavailable, OSError, ValueError, RuntimeError, TypeError)):
        print(f"error: {e}", file=sys.stderr)
    else:
        raise e
    return 1


if __name__ == "__main__":
    sys.exit(main())
