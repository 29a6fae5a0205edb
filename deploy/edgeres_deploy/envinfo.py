"""What this machine offers the bundle -- Python, numpy, pillow, TensorRT, a way to CUDA, ONNX Runtime, the L4T release --
compared with what the bundle was made for, and the exact command that installs each missing piece.

``./run.sh doctor`` prints it (``--json`` for scripts) and ``install.sh`` ends with it; ``verify`` adds the TensorRT /
JetPack line. Standard library only: it must run before numpy is installed.

L4T (``/etc/nv_tegra_release``, first line ``# R36 (release), REVISION: 4.3, GCID: ..., BOARD: ..., EABI: aarch64,
DATE: ...``) to JetPack: R35 is JetPack 5.x, R36 JetPack 6.x, R38 (Thor's first releases) and R39 JetPack 7.x (NVIDIA's
JetPack archive; JetPack 7.2 runs TensorRT 10.16 on L4T R39.2, NVIDIA/TensorRT#4832).
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import re
import sys

NV_TEGRA_RELEASE = "/etc/nv_tegra_release"
L4T_TO_JETPACK = {35: "5", 36: "6", 38: "7", 39: "7"}
_RELEASE = re.compile(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)")
FIXES = {
    "python": "install Python 3.8 or newer (JetPack 5 and newer have it: python3)",
    "numpy": "sudo apt-get install -y python3-numpy",
    "pillow": "sudo apt-get install -y python3-pil",
    "tensorrt": "sudo apt-get install -y python3-libnvinfer   (JetPack's TensorRT for Python; off a Jetson, on a "
                "machine with an NVIDIA GPU: python3 -m pip install tensorrt)",
    "cuda": "sudo apt-get install -y nvidia-cuda   (JetPack's CUDA runtime), or LD_LIBRARY_PATH=/usr/local/cuda/lib64",
    "onnxruntime": "python3 -m pip install onnxruntime   (only for --backend onnxruntime)",
    "onnxruntime-gpu": "python3 -m pip uninstall -y onnxruntime onnxruntime-gpu && python3 -m pip install "
                       "onnxruntime-gpu   (both install the module onnxruntime: the one installed last wins; on a "
                       "Jetson, the onnxruntime-gpu wheel for its JetPack from NVIDIA's Jetson AI Lab index)",
    "openvino": "python3 -m pip install openvino   (x86 CPUs; only for --backend openvino)",
}


def import_optional(module: str):
    """Import an optional tool when it is first needed (tensorrt, openvino, onnxruntime): the module, or
    :class:`~edgeres_deploy.errors.MissingTool` -- "<module> not importable (<why>); fix: <the command>"."""
    from edgeres_deploy.errors import MissingTool

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingTool(module, str(e).splitlines()[0] if str(e) else type(e).__name__,
                          " ".join(FIXES.get(module, f"python3 -m pip install {module}").split())) from None


def l4t(path: str | None = None) -> dict | None:
    """{"release": "36.4.3", "jetpack": "6"} from /etc/nv_tegra_release; None off a Jetson (or unreadable)."""
    try:
        with open(path or NV_TEGRA_RELEASE, encoding="utf-8", errors="replace") as f:
            first = f.readline()
    except OSError:
        return None
    m = _RELEASE.search(first)
    if not m:
        return {"release": first.strip()[:60] or "?", "jetpack": None}
    major = int(m.group(1))
    return {"release": f"{major}.{m.group(2)}", "jetpack": L4T_TO_JETPACK.get(major)}


def _module(name: str) -> tuple:
    """(version, None) when ``name`` imports, else (None, one-line reason)."""
    try:
        mod = importlib.import_module(name)
    except Exception as e:  # noqa: BLE001 - any failure to import is the answer
        return None, f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}".rstrip(": ")
    return str(getattr(mod, "__version__", "?")), None


def _cuda() -> dict:
    """The CUDA path the TensorRT backend will take: pycuda, cuda-python, else the CUDA runtime library over ctypes."""
    import importlib.util

    from edgeres_deploy.cudart import probe

    def installed(module):
        try:
            return importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # ValueError: in sys.modules without a spec
            return module in sys.modules and sys.modules[module] is not None

    have = [n for n, m in (("pycuda", "pycuda"), ("cuda-python", "cuda")) if installed(m)]
    p = probe()
    if p["ok"]:
        detail = f"{os.path.basename(p['library'])} via ctypes (CUDA runtime {p['version']}), device {p['device']}"
    else:
        detail = p["error"]
    if have:
        detail = f"{' and '.join(have)} installed (tried first); " + detail
    return {"ok": p["ok"], "detail": detail, "library": p["library"], "device": p["device"]}


def target_profile(root) -> dict:
    """What the bundle was made for (build.json's target profile; {} for a bundle without a TensorRT engine)."""
    try:
        with open(os.path.join(str(root), "build.json"), encoding="utf-8") as f:
            build = json.load(f)
    except (OSError, ValueError):
        return {}
    prof = build.get("target_profile") if isinstance(build, dict) else None
    return prof if isinstance(prof, dict) else ({"name": build.get("target")} if isinstance(build, dict) else {})


def _item(name, ok, detail, needed=True) -> dict:
    return {"name": name, "ok": bool(ok), "needed": needed, "detail": detail,
            "fix": None if ok else FIXES.get(name)}


def probe(root) -> dict:
    """Every piece, with ok/needed/detail/fix, for the bundle at ``root``."""
    trt_bundle = os.path.isfile(os.path.join(str(root), "build.json"))
    py_ok = sys.version_info >= (3, 8)
    items = [_item("python", py_ok, f"{platform.python_version()} ({sys.executable})")]
    for name, module in (("numpy", "numpy"), ("pillow", "PIL")):
        version, why = _module(module)
        items.append(_item(name, version is not None, version or f"not importable ({why})"))
    version, why = _module("tensorrt") if trt_bundle else (None, "not needed: this bundle runs ONNX Runtime")
    items.append(_item("tensorrt", version is not None, version or f"not importable ({why})", needed=trt_bundle))
    cuda = _cuda() if trt_bundle else {"ok": False, "detail": "not needed"}
    items.append(_item("cuda", cuda["ok"], cuda["detail"], needed=trt_bundle))
    version, why = _module("onnxruntime")
    items.append(_item("onnxruntime", version is not None, version or "not installed", needed=not trt_bundle))
    trt = next(i for i in items if i["name"] == "tensorrt")
    return {"items": items, "l4t": l4t(), "target": target_profile(root), "tensorrt": trt["detail"] if trt["ok"] else None,
            "ready": all(i["ok"] for i in items if i["needed"])}


def mismatches(info: dict) -> list:
    """Warnings where the TensorRT or JetPack found here differ from the target profile the bundle was made for."""
    target, out = info.get("target") or {}, []
    want_trt, found_trt = target.get("trt_version"), info.get("tensorrt")
    if want_trt and found_trt and str(found_trt).split(".")[0] != str(want_trt).split(".")[0]:
        out.append(f"the bundle was made for {target.get('name')} (TensorRT {want_trt}); this device has TensorRT "
                   f"{found_trt}: the engine is built for the TensorRT found here (the family's own build flags)")
    want_jp, found = target.get("jetpack"), info.get("l4t")
    if want_jp and found and found.get("jetpack") and found["jetpack"] != str(want_jp).split(".")[0]:
        out.append(f"the bundle was made for {target.get('name')} (JetPack {want_jp}); this device runs L4T "
                   f"R{found['release']} (JetPack {found['jetpack']}.x)")
    return out


def environment_line(info: dict) -> str:
    """One line: the TensorRT and L4T/JetPack found, and what the bundle was made for."""
    found = info.get("l4t")
    where = (f"L4T R{found['release']} (JetPack {found['jetpack']}.x)" if found and found.get("jetpack")
             else f"L4T {found['release']}" if found else f"not a Jetson (no {NV_TEGRA_RELEASE})")
    trt = f"TensorRT {info['tensorrt']}" if info.get("tensorrt") else "no TensorRT"
    target = info.get("target") or {}
    made = ""
    if target.get("name"):
        made = f"; made for {target['name']}" + (f" (JetPack {target['jetpack']}, TensorRT {target['trt_version']})"
                                                 if target.get("jetpack") or target.get("trt_version") else "")
    return f"found: {trt}, {where}{made}"


def report_lines(info: dict) -> list:
    """The doctor's lines: one per piece, and for each missing one the exact command that fixes it."""
    out = []
    for i in info["items"]:
        if i["ok"]:
            out.append(f"ok       {i['name']}: {i['detail']}")
        elif i["needed"]:
            out.append(f"MISSING  {i['name']}: {i['detail']} -> fix: {i['fix']}")
        else:
            out.append(f"optional {i['name']}: {i['detail']}")
    out.append(environment_line(info))
    return out
