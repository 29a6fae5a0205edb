"""`edgeres deploy`: the deployment bundle for the device.

Unpacked, it holds ``manifest.json`` (sha256 of every file), ``README.md``, ``install.sh``, ``run.sh``, ``model.onnx``
(plus ``calib.cache`` where made), ``labels.txt``, ``preprocess.json``, ``build.json`` (the engine build settings for
the target) and the runtime package ``edgeres_deploy/``, run from the bundle's root as
``./run.sh doctor | verify | build | adopt | check | bench | predict IMAGE... | evaluate DIR`` (the launcher refuses any
file the manifest does not list and imports nothing from the bundle before checking it: see the README's "Running it
safely"). The templates of run.sh, install.sh and the README are in edgeres/bundle_files.py.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from pathlib import Path

from edgeres.bundle_files import INSTALL_SH, RUN_SH, readme
from edgeres.errors import EdgeresError
from edgeres.utils import atomic_path

RUNTIME_FILES = ("__init__.py", "__main__.py", "launch.py", "bundle.py", "engine_record.py", "envinfo.py", "commands.py",
                 "measure_commands.py", "backends.py", "device_build.py", "preprocess.py", "metrics.py", "cuda_mem.py",
                 "cudart.py", "trt.py", "trt_api.py", "trt_run.py", "device_stats.py", "check.py", "fsio.py",
                 "openvino_backend.py", "errors.py", "onnx_info.py")


def _runtime_sources() -> dict:
    import edgeres_deploy

    pkg = Path(edgeres_deploy.__file__).parent
    return {f"edgeres_deploy/{f}": (pkg / f).read_bytes() for f in RUNTIME_FILES}


def _build_files(files: dict, spec, target) -> dict:
    """Add build.json (the engine build settings, with the target profile) to ``files``; return the README's trtexec
    lines per TensorRT family, with the bundle's own file names."""
    from dataclasses import replace

    from edgeres_deploy.trt import spec_to_dict, trtexec_command

    bspec = replace(spec, onnx="model.onnx", engine="model.engine", timing_cache="timing.cache", calib_cache=None)
    build = spec_to_dict(bspec)
    build["target"] = target.name
    # what the bundle was made for: `verify` on the device compares it with the TensorRT and JetPack it finds
    build["target_profile"] = {"name": target.name, "jetpack": target.jetpack, "trt_version": target.trt_version,
                               "dla_cores": target.dla_cores}
    files["build.json"] = (json.dumps(build, indent=2) + "\n").encode()
    lines = {}
    for fam, label in ((8, "JetPack 5 (TensorRT 8.5)"), (10, "JetPack 6 and 7 (TensorRT 10.x)"),
                       (11, "TensorRT 11.4.1+ (JetPack 7.2.2+, strongly typed)")):
        lines[label] = " ".join(trtexec_command(replace(bspec, trt_family=fam)))
        if "calib.cache" in files and "model_fp32.onnx" in files and fam < 10:
            fp32 = replace(bspec, trt_family=fam, calib_cache="calib.cache", onnx="model_fp32.onnx")
            lines[label + ", implicit INT8 from calib.cache"] = " ".join(trtexec_command(fp32))
    return lines


def make_bundle(out, onnx_path, target, pre, classes: list, spec=None, calib_cache=None, extra: dict | None = None,
                validation: list | None = None, fp32_onnx=None) -> dict:
    """Write the bundle tar.gz atomically; returns {"path", "files": {name: sha256}, "size_mb", "reference_sha256"}.

    ``validation``: (image, class) samples; a stratified few go into the bundle with the host's reference outputs of
    ``onnx_path`` (``python -m edgeres_deploy check``). ``fp32_onnx``: the FP32 export, shipped as ``model_fp32.onnx``
    with a calibration cache (implicit INT8 on TensorRT 8.x needs the FP32 graph)."""
    import hashlib

    if not Path(onnx_path).is_file():
        raise EdgeresError(f"{onnx_path} does not exist: nothing to bundle")
    files: dict = {"model.onnx": Path(onnx_path).read_bytes(),
                   "labels.txt": ("\n".join(classes) + "\n").encode(),
                   "preprocess.json": (json.dumps(pre.to_dict(), indent=2) + "\n").encode()}
    if calib_cache and Path(calib_cache).is_file():
        files["calib.cache"] = Path(calib_cache).read_bytes()
        if fp32_onnx and Path(fp32_onnx).is_file():
            files["model_fp32.onnx"] = Path(fp32_onnx).read_bytes()
    ref_sha = None
    if validation:
        from edgeres_deploy.check import make_validation, reference_sha256

        val = make_validation(onnx_path, pre.to_dict(), validation)
        files.update(val)
        ref_sha = reference_sha256(val)
    spec_lines = _build_files(files, spec, target) if spec is not None else {}
    files["README.md"] = readme(target, spec_lines, "calib.cache" in files).encode()
    files["install.sh"] = INSTALL_SH.encode()
    files["run.sh"] = RUN_SH.encode()
    files.update(_runtime_sources())
    sums = {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())}
    # no time stamp anywhere (not in the manifest, not in the gzip header, not on a member): the same inputs make the
    # same bytes, so `deploy --run` rebuilds the bundle stage's file exactly and a device reuses what it already has
    manifest = {"format": "edgeres-bundle", "version": 1, "target": target.name, "files": sums, **(extra or {})}
    files["manifest.json"] = (json.dumps(manifest, indent=2) + "\n").encode()
    with atomic_path(out) as tmp, open(tmp, "wb") as raw, \
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        with tarfile.open(fileobj=gz, mode="w") as tar:
            for name, data in sorted(files.items()):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mode = 0o755 if name.endswith(".sh") else 0o644
                info.mtime = 0  # reproducible archives
                tar.addfile(info, io.BytesIO(data))
    return {"path": str(out), "files": sums, "size_mb": os.path.getsize(out) / 1e6, "reference_sha256": ref_sha,
            "manifest_sha256": hashlib.sha256(files["manifest.json"]).hexdigest()}


def bundle_of_run(out, onnx_path, target, pre, classes: list, *, source_run: str, quantize_rows=None, dla_core=None,
                  sparsity: bool = False, calib_cache=None, validation=None, fp32_onnx=None) -> dict:
    """The bundle of an `optimize` run, as its bundle stage and `edgeres deploy --run` both make it: the TensorRT build
    spec for a TensorRT target, on x86 the faster runtime of the INT8 file (``quantize_rows``), then make_bundle."""
    from edgeres.engine_build import onnx_build_spec

    spec = None
    if target.runtime == "tensorrt":
        spec = onnx_build_spec(onnx_path, "model.engine", target, pre, dla_core=dla_core, sparsity=sparsity)
    extra = {"source_run": source_run}
    if target.runtime == "onnxruntime" and quantize_rows is not None:  # x86: the faster runtime of the INT8 file
        from edgeres.recommend import faster_runtime

        extra["backend"], extra["backend_p50_ms"] = faster_runtime(quantize_rows)
    return make_bundle(out, onnx_path, target, pre, classes, spec=spec, calib_cache=calib_cache, extra=extra,
                       validation=validation, fp32_onnx=fp32_onnx)
