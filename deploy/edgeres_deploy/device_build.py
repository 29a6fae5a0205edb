"""The engine on the device: the build spec the bundle asks for, a build (or the adoption of an engine built with
trtexec) and its record, and whether the engine in the folder may be used as it is.

Nothing here deletes or silently replaces an engine: ``build`` replaces only an engine it built itself (when asked for
other options, or after a TensorRT upgrade), ``build --rebuild`` anything, and ``adopt`` takes over an engine built
elsewhere after reading its inputs, outputs, profile and dtypes from the engine itself.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgeres_deploy import bundle as B
from edgeres_deploy import engine_record as R

ENGINE, SIDECAR, TIMING = R.FILES


def wanted_spec(root: Path, dla_core=None, no_fp16: bool = False, trt=None):
    """(BuildSpec, build.json settings) for this device's TensorRT."""
    from edgeres_deploy.trt import for_dla, import_tensorrt, spec_from_dict, version_family

    trt = trt or import_tensorrt()
    settings = B.build_settings(root)
    if not settings:
        raise B.BundleError("build.json missing: this bundle's target has no TensorRT engine (use --backend onnxruntime)")
    spec = spec_from_dict(settings)
    spec.onnx, spec.engine, spec.timing_cache = str(root / "model.onnx"), str(root / ENGINE), str(root / TIMING)
    spec.trt_family = version_family(trt.__version__)
    spec.calib_cache = None  # model.onnx carries Q/DQ: explicit quantization
    if dla_core is not None:
        spec = for_dla(spec, dla_core)  # DLA: static shapes
    if no_fp16:
        spec.fp16 = False
    return spec, settings


def state(root: Path) -> str:
    """"absent", "built" or "adopted" (an engine the record vouches for), or "unvouched"."""
    if not (root / ENGINE).is_file():
        return "absent"
    rec = R.read(root)
    if any(p.startswith(ENGINE + ":") for p in R.problems(root)) or rec is None:
        return "unvouched"
    return "adopted" if rec.get("origin") == "adopted" else "built"


def stale_reason(root: Path, trt_version: str, spec=None) -> str:
    """Why the recorded engine does not fit (another TensorRT; with ``spec``, other build options); '' if it does."""
    from edgeres_deploy.trt import spec_key

    built_from = (R.read(root) or {}).get("built_from", {})
    if built_from.get("tensorrt_version") != trt_version:
        return f"it was made with TensorRT {built_from.get('tensorrt_version')}, this is TensorRT {trt_version}"
    if spec is not None and not built_from.get("built_externally") and built_from.get("build_spec") != spec_key(spec):
        return "it was built with other options (batch profile, precision, DLA core, sparsity or workspace)"
    return ""


def build(root: Path, spec, settings: dict, log=print, seed_cache=None) -> dict:
    """Build model.engine for ``spec`` and record it (engine, sidecar, timing cache) as built here. ``seed_cache``: a
    timing cache outside the bundle to start from (the bundle's own timing.cache is written)."""
    from edgeres_deploy.preprocess import Preprocess
    from edgeres_deploy.trt import build_engine, spec_key

    pre = Preprocess.from_json(root / "preprocess.json")
    reuse = not any(p.startswith(TIMING + ":") for p in R.problems(root))  # never read a cache this device did not write
    sidecar = build_engine(spec, extra_meta={"classes": B.labels(root), "preprocess": pre.to_dict(),
                                             "target": settings.get("target")}, log=log, reuse_cache=reuse,
                          seed_cache=str(seed_cache) if seed_cache else None)
    R.write(root, R.FILES, "built", {"onnx_sha256": sidecar["onnx_sha256"], "tensorrt_version": sidecar["tensorrt_version"],
                                     "build_spec": spec_key(spec), "target": settings.get("target"),
                                     "built_externally": False})
    return sidecar


def _copy_in(root: Path, source) -> None:
    """Put the engine file ``source`` at model.engine (never over a different one)."""
    from edgeres_deploy.fsio import write_bytes_atomic

    engine = root / ENGINE
    if not os.path.isfile(source):
        raise B.BundleError(f"{source}: no such engine file")
    if engine.exists():
        if R.file_sha256(engine) == R.file_sha256(source):
            return
        raise B.BundleError(f"{engine} exists and is another engine than {source}: nothing is overwritten; move it "
                            "away first, or `./run.sh adopt` without a path adopts the one in the bundle")
    with open(source, "rb") as f:
        write_bytes_atomic(engine, f.read())


def _matches_bundle(root: Path, runner) -> None:
    """BundleError unless the engine takes this bundle's images and gives one logit per label."""
    from edgeres_deploy.preprocess import Preprocess

    pre = Preprocess.from_json(root / "preprocess.json")
    want_in, got_in = (3, pre.size, pre.size), tuple(runner.input_shape[1:])
    n = len(B.labels(root))
    if got_in != want_in:
        raise B.BundleError(f"model.engine takes {'x'.join(map(str, got_in))} images, the bundle's preprocessing gives "
                            f"{'x'.join(map(str, want_in))}: it was built from another model; adoption refused")
    if runner.output_shape[-1] != n:
        raise B.BundleError(f"model.engine gives {runner.output_shape[-1]} outputs, the bundle has {n} labels: it was "
                            "built from another model; adoption refused")


def _adopted_sidecar(runner, dla_core, source, log) -> dict:
    """The sidecar of an engine built elsewhere, read from the engine itself."""
    import time

    from edgeres_deploy.trt_api import placement_text, version_family

    where = runner.placement
    if dla_core is None and where and where["dla"]:
        dla_core = 0
        log("warning: the engine runs layers on a DLA; it is recorded for DLA core 0 (adopt --dla-core 1 for the other)")
    trt = runner.trt
    sidecar = {"tensorrt_version": trt.__version__, "trt_family": version_family(trt.__version__),
               "device": runner.device_name(), "precision": "unknown (built externally)",
               "strongly_typed": version_family(trt.__version__) >= 11, "input_name": runner.inputs[0],
               "output_name": runner.outputs[0], "dtypes": {"input": str(runner.in_dtype), "output": str(runner.out_dtype)},
               "shapes": dict(zip(("min", "opt", "max"), (list(s) for s in runner.profile))),
               "dla_core": dla_core if (where is None or where["dla"]) else None, "layers": where,
               "placement_note": placement_text(where, dla_core), "built_externally": True,
               "adopted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "source": os.path.basename(str(source)) if source else ENGINE}
    return sidecar


def adopt(root: Path, source=None, dla_core=None, log=print) -> dict:
    """Take over an engine built elsewhere (trtexec): read its I/O names, shapes, profile and dtypes from the engine
    itself, write its sidecar ("built externally") and record it. Returns the sidecar."""
    import json

    from edgeres_deploy.fsio import write_bytes_atomic
    from edgeres_deploy.trt_run import TrtRunner

    if source is not None and os.path.realpath(str(source)) != os.path.realpath(str(root / ENGINE)):
        _copy_in(root, source)
    if not (root / ENGINE).is_file():
        raise B.BundleError("no model.engine to adopt: build one with the README's trtexec line (--saveEngine="
                            "model.engine), or give the engine's path: ./run.sh adopt PATH")
    with TrtRunner(str(root / ENGINE), dla_core=dla_core, warm=False, sidecar=False) as runner:
        _matches_bundle(root, runner)
        sidecar = _adopted_sidecar(runner, dla_core, source, log)
    trt = runner.trt
    write_bytes_atomic(root / SIDECAR, (json.dumps(sidecar, indent=2) + "\n").encode())
    keep = [ENGINE, SIDECAR] + ([TIMING] if (root / TIMING).exists()
                                and not any(p.startswith(TIMING + ":") for p in R.problems(root)) else [])
    R.write(root, keep, "adopted", {"tensorrt_version": trt.__version__, "built_externally": True,
                                    "engine_sha256": R.file_sha256(root / ENGINE)})
    return sidecar
