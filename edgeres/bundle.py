"""`edgeres deploy`: the deployment bundle for the device.

Unpacked, it holds ``manifest.json`` (sha256 of every file), ``README.md``, ``install.sh``, ``run.sh``, ``model.onnx``
(plus ``calib.cache`` where made), ``labels.txt``, ``preprocess.json``, ``build.json`` (the engine build settings for
the target) and the runtime package ``edgeres_deploy/``, run from the bundle's root as
``./run.sh verify | build | bench | predict IMAGE... | evaluate DIR`` (the launcher refuses any file the manifest does
not list and imports nothing from the bundle before checking it: see the README's "Running it safely").
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from pathlib import Path

from edgeres.errors import EdgeresError
from edgeres.utils import atomic_path

RUNTIME_FILES = ("__init__.py", "__main__.py", "preprocess.py", "metrics.py", "cuda_mem.py", "trt.py", "bundle.py",
                 "device_stats.py", "check.py", "fsio.py", "openvino_backend.py")


def _runtime_sources() -> dict:
    import edgeres_deploy

    pkg = Path(edgeres_deploy.__file__).parent
    return {f"edgeres_deploy/{f}": (pkg / f).read_bytes() for f in RUNTIME_FILES}


def _readme(target, spec_lines: dict, has_cache: bool) -> str:
    fam_lines = "\n".join(f"- {k}:\n\n      {v}\n" for k, v in spec_lines.items())
    cache = ("\n`calib.cache` is a TensorRT calibration cache for implicit INT8 on TensorRT 8.x (JetPack 5): "
             "`trtexec --int8 --calib=calib.cache` with an FP32 ONNX. The Q/DQ `model.onnx` needs no cache.\n") if has_cache else ""
    return f"""# edgeres deployment bundle — {target.name}

{target.description}

## On the device

```bash
mkdir bundle && tar xzf bundle.tar.gz -C bundle && cd bundle
sh install.sh                          # checks the bundle, then numpy, pillow (+ pycuda if cuda-python is absent); TensorRT comes with JetPack
./run.sh verify                        # every file against manifest.json (sha256), and nothing else in the folder
./run.sh build                         # model.engine from model.onnx, for this device's TensorRT (cached)
./run.sh check                         # validation images vs the host's reference outputs (also after the first build)
./run.sh bench --csv ../device.csv     # latency percentiles, throughput, GPU memory (+ RAM/power via tegrastats)
./run.sh predict ../image.jpg          # top-5 with class names
./run.sh evaluate DIR --csv ../device.csv   # top-1 on an ImageFolder (DIR/val/CLASS/*.jpg or DIR/CLASS/*.jpg)
```

Every command verifies the bundle first and refuses one whose files do not match. `--backend onnxruntime` runs
the same model with ONNX Runtime (anywhere, no GPU needed). Back on the host, fold the device's figures into the run's
report: `edgeres report --run RUN_DIR --merge device.csv`.

## Running it safely

- Start the runtime with `./run.sh` (Python 3.8+, i.e. JetPack 5 or newer; `PYTHON=/path/python3 ./run.sh` picks
  another interpreter). It runs `python3 -E -B edgeres_deploy/bundle.py`, which takes the bundle and the current folder
  off `sys.path` (a `json.py` or `numpy.py` left in the folder is never imported; PYTHON* variables are ignored),
  checks the whole folder against `manifest.json`, and only then imports the runtime, each module through a loader
  that accepts only the files the manifest lists (sha256 checked again as it reads them) and never reads or writes a
  compiled `.pyc`.
- Nothing may be added to this folder: while it holds a file, folder or link that `manifest.json` does not list (a
  `__pycache__`, an extra `.py`, an image, a CSV), every command refuses the bundle until it is removed. Keep images
  and CSVs outside (the runtime refuses a `--csv` path inside the bundle). The only exceptions are the engine files
  `build` writes: `model.engine`, `model.engine.json`, `timing.cache`. Symbolic links are refused, and a manifest
  entry may not leave the folder (`..`, absolute paths).
- `python3 -m edgeres_deploy ...` still works and restarts through the same launcher, but before it can do so Python
  has already put the current folder first on `sys.path` and may have used a compiled cache of
  `edgeres_deploy/__init__.py`: prefer `./run.sh`.
- The manifest catches corruption and files slipped into the bundle; it cannot tell who made the bundle (whoever can
  rewrite the files can rewrite `manifest.json` too). Pin it: `edgeres deploy` prints the manifest's sha256 on the
  host; `export EDGERES_MANIFEST_SHA256=<that value>` before `./run.sh ...` and every command refuses a manifest
  with another hash. Or copy the bundle over a channel you trust.

## The same engine with trtexec, per JetPack

Engines are not portable across GPUs or TensorRT versions: build on the device.

{fam_lines}
JetPack 5.1 ships TensorRT 8.5.2, JetPack 6.1/6.2 TensorRT 10.3, JetPack 7.x TensorRT 10.13+, and TensorRT 11 (JetPack
7.2.2+) builds strongly typed networks only: no `--int8`/`--fp16`, precision comes from the Q/DQ nodes.
{cache}"""


INSTALL_SH = """#!/bin/sh
# edgeres bundle: check the bundle, then install the on-device runtime's Python dependencies.
# TensorRT comes with JetPack (python3-libnvinfer).
set -e
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd -P)
cd /  # python puts the current folder first on sys.path: nothing below may import a file from the bundle
sh "$here/run.sh" verify  # the check needs only Python's standard library
python3 -E -m pip install --user numpy pillow
python3 -E -c "import tensorrt" 2>/dev/null || echo "note: tensorrt is not importable; install JetPack's python3-libnvinfer (or use --backend onnxruntime)"
python3 -E -c "import cuda" 2>/dev/null || python3 -E -c "import pycuda" 2>/dev/null || python3 -E -m pip install --user pycuda || \\
  echo "note: neither cuda-python nor pycuda installed; the TensorRT backend needs one of them"
echo "ready: run the runtime with $here/run.sh (see README.md, 'Running it safely')"
"""

RUN_SH = """#!/bin/sh
# edgeres bundle: run the on-device runtime from this folder, safely (README.md, "Running it safely").
#   ./run.sh verify | build | bench | predict IMAGE... | evaluate DIR     (./run.sh --help)
# -E: PYTHON* variables are ignored (PYTHONPATH cannot point into the bundle); -B: no compiled caches are written.
# edgeres_deploy/bundle.py takes this folder off sys.path, checks every file here against manifest.json (anything the
# manifest does not list is refused, __pycache__ included) and only then imports the runtime, module by module from
# the manifest's files (sha256 checked again, no .pyc ever read). Python 3.8+ (JetPack 5 or newer); PYTHON=... picks one.
self=$(readlink -f -- "$0" 2>/dev/null) || self=$0  # this file, through any link to it
here=$(CDPATH= cd -- "$(dirname -- "$self")" && pwd -P) || exit 1
exec "${PYTHON:-python3}" -E -B "$here/edgeres_deploy/bundle.py" "$@"
"""


def make_bundle(out, onnx_path, target, pre, classes: list, spec=None, calib_cache=None, extra: dict | None = None,
                validation: list | None = None, fp32_onnx=None) -> dict:
    """Write the bundle tar.gz atomically; returns {"path", "files": {name: sha256}, "size_mb", "reference_sha256"}.

    ``validation``: (image, class) samples; a stratified few go into the bundle with the host's reference outputs of
    ``onnx_path`` (``python -m edgeres_deploy check``). ``fp32_onnx``: the FP32 export, shipped as ``model_fp32.onnx``
    with a calibration cache (implicit INT8 on TensorRT 8.x needs the FP32 graph)."""
    import hashlib

    from edgeres_deploy.trt import spec_to_dict, trtexec_command

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
    spec_lines = {}
    if spec is not None:
        from dataclasses import replace

        bspec = replace(spec, onnx="model.onnx", engine="model.engine", timing_cache="timing.cache", calib_cache=None)
        build = spec_to_dict(bspec)
        build["target"] = target.name
        files["build.json"] = (json.dumps(build, indent=2) + "\n").encode()
        for fam, label in ((8, "JetPack 5 (TensorRT 8.5)"), (10, "JetPack 6 / 7.0-7.1 (TensorRT 10.x)"), (11, "JetPack 7.2+ (TensorRT 11)")):
            line_spec = replace(bspec, trt_family=fam)
            spec_lines[label] = " ".join(trtexec_command(line_spec))
            if "calib.cache" in files and "model_fp32.onnx" in files and fam < 10:
                fp32 = replace(bspec, trt_family=fam, calib_cache="calib.cache", onnx="model_fp32.onnx")
                spec_lines[label + ", implicit INT8 from calib.cache"] = " ".join(trtexec_command(fp32))
    files["README.md"] = _readme(target, spec_lines, "calib.cache" in files).encode()
    files["install.sh"] = INSTALL_SH.encode()
    files["run.sh"] = RUN_SH.encode()
    files.update(_runtime_sources())
    sums = {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())}
    manifest = {"format": "edgeres-bundle", "version": 1, "target": target.name, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "files": sums, **(extra or {})}
    files["manifest.json"] = (json.dumps(manifest, indent=2) + "\n").encode()
    with atomic_path(out) as tmp:
        with tarfile.open(tmp, "w:gz") as tar:
            for name, data in sorted(files.items()):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mode = 0o755 if name.endswith(".sh") else 0o644
                info.mtime = 0  # reproducible archives
                tar.addfile(info, io.BytesIO(data))
    return {"path": str(out), "files": sums, "size_mb": os.path.getsize(out) / 1e6, "reference_sha256": ref_sha,
            "manifest_sha256": hashlib.sha256(files["manifest.json"]).hexdigest()}


def bundle_from_run(run_dir, out) -> dict:
    """`edgeres deploy`: the bundle of a finished `optimize` run (the quantized ONNX, else the FP32 export)."""
    import yaml

    from edgeres.data import Preprocess
    from edgeres.stages.engine import onnx_build_spec
    from edgeres.targets import get_target

    run_dir = Path(run_dir)
    try:
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
        manifest = json.loads((run_dir / "manifest.json").read_text())
    except OSError:
        raise EdgeresError(f"{run_dir} is not an edgeres run directory (no config.yaml/manifest.json); run `edgeres optimize` first") from None
    except (ValueError, yaml.YAMLError):
        raise EdgeresError(f"{run_dir}'s config.yaml or manifest.json is corrupt; run `edgeres optimize` again") from None
    from edgeres.utils import read_stage_record

    stages = {}
    for name in ("export", "quantize"):
        p = run_dir / name / "stage.json"
        if p.exists():
            stages[name] = read_stage_record(p)
            if stages[name] is None:
                raise EdgeresError(f"{p} is corrupt (a run killed while writing it?); run the same `edgeres optimize` "
                                   "again: it redoes that stage")
    onnx_rel = None
    for name in ("quantize", "export"):
        rec = stages.get(name)
        if rec and rec["status"] == "ok" and "onnx" in rec["artifacts"]:
            onnx_rel = rec["artifacts"]["onnx"]
            break
    if onnx_rel is None:
        raise EdgeresError(f"{run_dir} has no finished export or quantize stage; run `edgeres optimize` to the end first")
    target = get_target(cfg["target"])
    pre = Preprocess.from_dict(manifest["preprocess"])
    onnx_path = run_dir / onnx_rel
    spec = None
    if target.runtime == "tensorrt":
        spec = onnx_build_spec(onnx_path, "model.engine", target, pre, sparsity=bool(cfg.get("sparsity")),
                               dla_core=cfg.get("dla_core"))
    cache = stages.get("quantize", {}).get("artifacts", {}).get("calib_cache")
    val = None
    try:  # the run's validation split, for the bundle's self-check images and reference outputs
        from edgeres.data import resolve_data

        val = resolve_data(manifest["data"]["root"]).val
    except (EdgeresError, OSError, KeyError, ValueError):
        pass
    fp32 = stages.get("export", {}).get("artifacts", {}).get("onnx")
    extra = {"source_run": run_dir.name}
    if target.runtime == "onnxruntime" and "quantize" in stages:  # x86: the faster runtime of the INT8 file
        from edgeres.stages.x86_int8 import faster_runtime

        extra["backend"], extra["backend_p50_ms"] = faster_runtime(stages["quantize"].get("rows", []))
    return make_bundle(out, onnx_path, target, pre, manifest["data"]["classes"], spec=spec,
                       calib_cache=run_dir / cache if cache else None, extra=extra,
                       validation=val, fp32_onnx=run_dir / fp32 if fp32 else None)
