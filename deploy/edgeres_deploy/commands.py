"""`verify`, `doctor`, `build`, `adopt` and `check`: what a first run on the device goes through.

Each command returns its exit status (0 ok, 1 a problem, said in one line on stderr); with ``--json`` it prints one
JSON document on stdout instead of its lines, for scripts (the SSH driver, CI).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from edgeres_deploy import bundle as B
from edgeres_deploy import engine_record as R


def _emit(args, doc: dict, lines) -> None:
    if getattr(args, "json", False):
        print(json.dumps(doc, sort_keys=True, default=str))
    else:
        for line in lines:
            print(line)


def cmd_verify(args, root: Path) -> int:
    """Every file against manifest.json, the engine files against their record; the TensorRT and JetPack found."""
    from edgeres_deploy import envinfo

    manifest, problems = B.check(root)
    problems = problems + R.problems(root)
    info = envinfo.probe(root) if not problems else {}
    doc = {"ok": not problems, "bundle": str(root), "files": len(manifest["files"]), "problems": problems,
           "engine_files": R.present(root), "engine_record": R.record_path(root), "environment": info,
           "warnings": envinfo.mismatches(info) if info else []}
    if problems:
        if not args.json:
            for p in problems[: B.MAX_SHOWN]:
                print(f"FAIL {p}", file=sys.stderr)
            print(f"error: bundle at {root} does NOT match its manifest and engine record ({len(problems)} problem(s)); "
                  "refusing to use it", file=sys.stderr)
        else:
            _emit(args, doc, [])
        return 1
    line = B.matches_line(root, manifest)
    if doc["engine_files"]:
        rec = R.read(root) or {}
        line = (f"bundle at {root}: all {len(manifest['files'])} files match {B.MANIFEST}; "
                f"{', '.join(doc['engine_files'])} {rec.get('origin', 'built')} on this device "
                f"({rec.get('recorded_at', '?')}, recorded in {R.record_path(root)}); nothing else is there")
    _emit(args, doc, [line, envinfo.environment_line(info)])
    for w in doc["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    return 0


def cmd_doctor(args, root: Path) -> int:
    """One line per piece the bundle needs, and the exact command that installs each missing one."""
    from edgeres_deploy import envinfo

    info = envinfo.probe(root)
    _emit(args, info, envinfo.report_lines(info))
    for w in envinfo.mismatches(info):
        print(f"warning: {w}", file=sys.stderr)
    return 0 if info["ready"] else 1


def _say(args, line: str) -> None:
    """A human line: on stdout, or on stderr when --json keeps stdout for the one JSON document."""
    print(line, file=sys.stderr if getattr(args, "json", False) else sys.stdout)


def _finish(args, root: Path, doc: dict) -> int:
    """After a build or an adoption: the self-check where the bundle carries validation images; with --json one
    document with both."""
    from edgeres_deploy.check import has_validation

    rc, check = 0, None
    if has_validation(root):  # the first build proves the engine against the host's reference outputs
        rc, check, message = _checked(_check_args(args), root)
        if not args.json:
            print(message, file=sys.stdout if rc == 0 else sys.stderr)
    if args.json:
        print(json.dumps(dict(doc, check=check), sort_keys=True, default=str))
    return rc


def cmd_build(args, root: Path) -> int:
    """Build model.engine (or say it is up to date); the first build proves it with the self-check."""
    from edgeres_deploy import device_build as D
    from edgeres_deploy.trt import import_tensorrt

    trt = import_tensorrt()
    spec, settings = D.wanted_spec(root, args.dla_core, args.no_fp16, trt=trt)
    st, replaced = D.state(root), ""
    if not args.rebuild:
        kept = ""
        if st == "adopted":
            kept = ("model.engine was adopted (built externally, e.g. with trtexec) and is kept: "
                    "`./run.sh build --rebuild` replaces it with one built here")
        elif st == "built":
            replaced = D.stale_reason(root, trt.__version__, spec)
            kept = "" if replaced else ("model.engine is up to date (same ONNX, same TensorRT, same build options); "
                                        "--rebuild rebuilds")
        if kept:
            _say(args, kept)
            if args.json:
                print(json.dumps({"built": False, "state": st, "reason": kept}))
            return 0
    elif st != "absent":
        replaced = f"--rebuild over an engine {'not built here' if st == 'unvouched' else st + ' here'}"
    side = D.build(root, spec, settings, log=lambda m: _say(args, m), seed_cache=_seed(args, root))
    if replaced:
        _say(args, f"replaced the previous model.engine ({replaced})")
    return _finish(args, root, {"built": True, "state": "built", "replaced": replaced or None, "sidecar": side})


def _seed(args, root: Path):
    """--timing-cache PATH: a timing cache outside the bundle to start the build from (read, never written)."""
    path = getattr(args, "timing_cache", None)
    if not path:
        return None
    real = os.path.realpath(path)
    if real == os.path.realpath(root) or real.startswith(os.path.realpath(root) + os.sep):
        raise B.BundleError(f"--timing-cache {path} is inside the bundle: give a cache kept outside it (the bundle's "
                            "own timing.cache is written by the build)")
    if os.path.exists(path) and not os.path.isfile(path):
        raise B.BundleError(f"--timing-cache {path} is not a file")
    return path


def _check_args(args):
    import argparse

    return argparse.Namespace(backend="tensorrt", threads=None, csv=None, expect_reference=None,
                              json=getattr(args, "json", False))


def cmd_adopt(args, root: Path) -> int:
    """Take over an engine built elsewhere (trtexec); it is used from then on and never rebuilt without --rebuild."""
    from edgeres_deploy import device_build as D

    if D.state(root) in ("built", "adopted") and args.engine is None:
        _say(args, "model.engine is already recorded on this device; nothing to adopt")
        if args.json:
            print(json.dumps({"adopted": False, "state": D.state(root)}))
        return 0
    side = D.adopt(root, args.engine, args.dla_core, log=lambda m: print(m, file=sys.stderr))
    _say(args, f"adopted model.engine (built externally; TensorRT {side['tensorrt_version']}, input {side['input_name']} "
               f"{side['shapes']['min']}..{side['shapes']['max']}, {side['placement_note']}); recorded in "
               f"{R.record_path(root)}")
    rc = _finish(args, root, {"adopted": True, "sidecar": side})
    if rc:
        R.forget(root)
        print("error: adoption withdrawn: the engine failed the self-check; it stays at model.engine, unrecorded "
              "(refused by every command until it is rebuilt or replaced)", file=sys.stderr)
    return rc


def _check_backend(args, root: Path):
    """The backend `check` proves: the bundle's own runtime, never a fallback (ONNX Runtime only when asked)."""
    from edgeres_deploy.backends import make_backend
    from edgeres_deploy.errors import BackendUnavailable

    try:
        return make_backend(args.backend, root, args.threads, fallback=False)
    except BackendUnavailable as e:
        if B.build_settings(root) and args.backend in ("auto", "tensorrt"):
            raise B.BundleError(f"FAIL check: model.engine cannot be run here ({e}); the self-check proves the "
                                "engine or fails -- `./run.sh check --backend onnxruntime` checks model.onnx "
                                "instead (not the engine)") from None
        raise


def _describe(backend, root: Path) -> str:
    """What ran: the backend, its version, the CUDA binding; for TensorRT where the layers ran."""
    what = f"{backend.name} {getattr(backend, 'version', '')}".strip()
    if backend.name == "tensorrt":
        return f"{what} via {backend.binding}; {backend.placement_note()}"
    if B.build_settings(root):
        return f"{what} on model.onnx ({getattr(backend, 'binding', '')}); the engine was NOT checked"
    return f"{what} on model.onnx"


def _checked(args, root: Path) -> tuple:
    """(exit status, result document, one-line message) of the self-check; the CSV row written when asked."""
    from edgeres_deploy.check import run_check

    with _check_backend(args, root) as backend:
        res = run_check(root, backend)
        what = _describe(backend, root)
    res["row"]["note"] = f"{res['row']['note']}; {what}"
    message = f"{res['message']} [{what}]"
    if args.expect_reference and res["reference_sha256"] != args.expect_reference:
        message = (f"FAIL validation/reference.npz has sha256 {res['reference_sha256'][:16]}…, the host's run recorded "
                   f"{args.expect_reference[:16]}…: the reference outputs are not the host's")
        res["passed"] = False
        res["row"]["status"] = "failed"
    if args.csv:
        B.upsert_csv(args.csv, res["row"])
    return (0 if res["passed"] else 1), dict(res, message=message, backend=what), message


def cmd_check(args, root: Path) -> int:
    """The validation images through the runtime that ships, against the host's reference outputs: one line."""
    rc, doc, message = _checked(args, root)
    if args.json:
        print(json.dumps(doc, default=str))
    else:
        print(message, file=sys.stdout if rc == 0 else sys.stderr)
    return rc
