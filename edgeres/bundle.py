"""`edgeres deploy`: the deployment bundle for the device.

Unpacked, it holds ``manifest.json`` (sha256 of every file), ``README.md``, ``install.sh``, ``model.onnx`` (plus
``calib.cache`` where made), ``labels.txt``, ``preprocess.json``, ``build.json`` (the engine build settings for the
target) and the runtime package ``edgeres_deploy/``, run from the bundle's root as
``python -m edgeres_deploy verify | build | bench | predict IMAGE... | evaluate DIR``.
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
                 "device_stats.py", "openvino_backend.py")


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
sh install.sh                                  # numpy, pillow (+ pycuda if cuda-python is absent); TensorRT comes with JetPack
python3 -m edgeres_deploy verify               # sha256 of every file against manifest.json
python3 -m edgeres_deploy build                # model.engine from model.onnx, for this device's TensorRT (cached)
python3 -m edgeres_deploy bench --csv device.csv   # latency percentiles, throughput, GPU memory (+ RAM/power via tegrastats)
python3 -m edgeres_deploy predict image.jpg    # top-5 with class names
python3 -m edgeres_deploy evaluate DIR --csv device.csv   # top-1 on an ImageFolder (DIR/val/CLASS/*.jpg or DIR/CLASS/*.jpg)
```

Every command verifies the manifest first and refuses a bundle whose files do not match. `--backend onnxruntime` runs
the same model with ONNX Runtime (anywhere, no GPU needed). Back on the host, fold the device's figures into the run's
report: `edgeres report --run RUN_DIR --merge device.csv`.

## The same engine with trtexec, per JetPack

Engines are not portable across GPUs or TensorRT versions: build on the device.

{fam_lines}
JetPack 5.1 ships TensorRT 8.5.2, JetPack 6.1/6.2 TensorRT 10.3, JetPack 7.x TensorRT 10.13+, and TensorRT 11 (JetPack
7.2.2+) builds strongly typed networks only: no `--int8`/`--fp16`, precision comes from the Q/DQ nodes.
{cache}"""


INSTALL_SH = """#!/bin/sh
# edgeres bundle: install the on-device runtime's Python dependencies. TensorRT comes with JetPack (python3-libnvinfer).
set -e
python3 -m pip install --user numpy pillow
python3 -c "import tensorrt" 2>/dev/null || echo "note: tensorrt is not importable; install JetPack's python3-libnvinfer (or use --backend onnxruntime)"
python3 -c "import cuda" 2>/dev/null || python3 -c "import pycuda" 2>/dev/null || python3 -m pip install --user pycuda || \\
  echo "note: neither cuda-python nor pycuda installed; the TensorRT backend needs one of them"
python3 -m edgeres_deploy verify
"""


def make_bundle(out, onnx_path, target, pre, classes: list, spec=None, calib_cache=None, extra: dict | None = None) -> dict:
    """Write the bundle tar.gz atomically; returns {"path", "files": {name: sha256}, "size_mb"}."""
    import hashlib

    from edgeres_deploy.trt import spec_to_dict, trtexec_command

    if not Path(onnx_path).is_file():
        raise EdgeresError(f"{onnx_path} does not exist: nothing to bundle")
    files: dict = {"model.onnx": Path(onnx_path).read_bytes(),
                   "labels.txt": ("\n".join(classes) + "\n").encode(),
                   "preprocess.json": (json.dumps(pre.to_dict(), indent=2) + "\n").encode()}
    if calib_cache and Path(calib_cache).is_file():
        files["calib.cache"] = Path(calib_cache).read_bytes()
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
            if "calib.cache" in files and fam < 10:
                fp32 = replace(bspec, trt_family=fam, calib_cache="calib.cache", onnx="model_fp32.onnx")
                spec_lines[label + ", implicit INT8 from calib.cache"] = " ".join(trtexec_command(fp32))
    files["README.md"] = _readme(target, spec_lines, "calib.cache" in files).encode()
    files["install.sh"] = INSTALL_SH.encode()
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
    return {"path": str(out), "files": sums, "size_mb": os.path.getsize(out) / 1e6}


def bundle_from_run(run_dir, out) -> dict:
    """`edgeres deploy`: the bundle of a finished `optimize` run (the quantized ONNX, else the FP32 export)."""
    import yaml

    from edgeres.data import Preprocess
    from edgeres.stages.engine import _onnx_io, build_spec
    from edgeres.targets import get_target

    run_dir = Path(run_dir)
    try:
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
        manifest = json.loads((run_dir / "manifest.json").read_text())
    except OSError:
        raise EdgeresError(f"{run_dir} is not an edgeres run directory (no config.yaml/manifest.json); run `edgeres optimize` first") from None
    stages = {}
    for name in ("export", "quantize"):
        p = run_dir / name / "stage.json"
        if p.exists():
            stages[name] = json.loads(p.read_text())
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
        name, fixed = _onnx_io(onnx_path)
        spec = build_spec(onnx_path, "model.engine", target, pre, input_name=name, fixed_batch=fixed,
                          sparsity=bool(cfg.get("sparsity")), dla_core=cfg.get("dla_core"))
    cache = stages.get("quantize", {}).get("artifacts", {}).get("calib_cache")
    extra = {"source_run": run_dir.name}
    if target.runtime == "onnxruntime" and "quantize" in stages:  # x86: the faster runtime of the INT8 file
        from edgeres.stages.x86_int8 import faster_runtime

        extra["backend"], extra["backend_p50_ms"] = faster_runtime(stages["quantize"].get("rows", []))
    return make_bundle(out, onnx_path, target, pre, manifest["data"]["classes"], spec=spec,
                       calib_cache=run_dir / cache if cache else None, extra=extra)
