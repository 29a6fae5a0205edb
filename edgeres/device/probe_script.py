"""Runs ON THE DEVICE (sent over ssh to ``python3 -E -B -``): what the device is and has, as one JSON line.

Standard library only, Python 3.6 syntax (a JetPack 4 Nano must still be told what it is); it imports nothing from
edgeres, writes nothing, and asks for no password (``sudo -n`` fails at once where one would be needed).
Sources read, as NVIDIA's Jetson Linux Developer Guide documents them: the device-tree model
(``/proc/device-tree/model``, a NUL-terminated string; ``/sys/firmware/devicetree/base/model`` where /proc has no
link), ``/etc/nv_tegra_release`` (L4T release), ``dpkg-query`` (nvidia-jetpack, nvidia-l4t-core, TensorRT, CUDA
packages), ``nvpmodel -q`` (power mode), ``jetson_clocks --show`` (root only: whether clocks are locked), and the
Python modules the bundle's runtime imports.
"""

import glob
import json
import os
import platform
import shutil
import subprocess
import sys

MARK = "@@edgeres-probe "
PACKAGES = ("nvidia-jetpack", "nvidia-l4t-core", "tensorrt", "libnvinfer[0-9]*", "cuda-cudart-[0-9]*")


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read().replace(b"\0", b"").decode("utf-8", "replace").strip()
    except OSError:
        return None


def run(cmd, timeout=15):
    """(exit status, stdout, stderr); status None when the program is missing or hung."""
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,  # noqa: UP022 - Python 3.6 has no capture_output
                           stdin=subprocess.DEVNULL, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None, "", ""
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def packages():
    if not shutil.which("dpkg-query"):
        return {}
    _, out, _ = run(["dpkg-query", "-W", r"-f=${Package}\t${Version}\n"] + list(PACKAGES))
    pk = {}
    for line in out.splitlines():
        name, _, version = line.partition("\t")
        if name and version.strip():  # a name without a version is known to dpkg but not installed
            pk[name.strip()] = version.strip()
    return pk


def module(name, attr="__version__"):
    try:
        mod = __import__(name)
    except Exception as e:  # noqa: BLE001 - an import can fail in many ways on a half-installed system
        return {"ok": False, "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
    return {"ok": True, "version": str(getattr(mod, attr, "") or "")}


def present(name):
    """Whether a module is installed, without importing it (importing onnxruntime writes a telemetry file)."""
    import importlib.util

    return {"ok": importlib.util.find_spec(name) is not None}


def tensorrt():
    info = module("tensorrt")
    if info["ok"]:
        try:
            import tensorrt as trt

            info["dla_cores"] = int(trt.Builder(trt.Logger(trt.Logger.ERROR)).num_DLA_cores)
        except Exception as e:  # noqa: BLE001 - no CUDA device: TensorRT imports but cannot make a builder
            info["builder_error"] = f"{type(e).__name__}: {e}"
    return info


def cuda_bindings():
    found = {}
    for name, mod in (("cuda-python", "cuda"), ("pycuda", "pycuda")):
        found[name] = module(mod)["ok"]
    import ctypes.util

    libs = glob.glob("/usr/local/cuda*/lib*/libcudart.so*") + glob.glob("/usr/lib/*-linux-gnu/libcudart.so*")
    found["libcudart"] = bool(ctypes.util.find_library("cudart") or libs)
    return found


def cuda_version():
    try:
        with open("/usr/local/cuda/version.json") as f:
            return json.load(f)["cuda"]["version"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    text = read("/usr/local/cuda/version.txt") or ""
    return text.split()[-1] if text.startswith("CUDA Version") else None


def clocks():
    if not shutil.which("jetson_clocks"):
        return {"available": False}
    cmd = ["jetson_clocks", "--show"] if os.geteuid() == 0 else ["sudo", "-n", "jetson_clocks", "--show"]
    rc, out, err = run(cmd)
    return {"available": True, "rc": rc, "show": out if rc == 0 else "", "error": (err or out).strip()[-300:]}


def free_bytes(path):
    while path and not os.path.isdir(path):
        path = os.path.dirname(path)
    try:
        st = os.statvfs(path or "/")
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def meminfo():
    out = {}
    for line in (read("/proc/meminfo") or "").splitlines():
        key, _, rest = line.partition(":")
        if key in ("MemTotal", "MemAvailable"):
            out[key] = int(rest.split()[0]) * 1024
    return out


def main():
    home = os.path.expanduser("~")
    nvp = run(["nvpmodel", "-q"]) if shutil.which("nvpmodel") else (None, "", "")
    info = {
        "model": read("/proc/device-tree/model") or read("/sys/firmware/devicetree/base/model"),
        "nv_tegra_release": read("/etc/nv_tegra_release"),
        "packages": packages(),
        "nvpmodel": {"rc": nvp[0], "out": nvp[1], "err": nvp[2].strip()[-300:]},
        "clocks": clocks(),
        "tegrastats": bool(shutil.which("tegrastats")),
        "python": {"version": platform.python_version(), "executable": sys.executable},
        "numpy": module("numpy"), "pillow": module("PIL"), "onnxruntime": present("onnxruntime"),
        "tensorrt": tensorrt(), "cuda_bindings": cuda_bindings(), "cuda": cuda_version(),
        "machine": platform.machine(), "os": (read("/etc/os-release") or "").split("PRETTY_NAME=")[-1].split("\n")[0].strip('"'),
        "home": home, "cache_free_bytes": free_bytes(os.path.join(home, ".cache", "edgeres")),
        "memory": meminfo(), "boot_id": read("/proc/sys/kernel/random/boot_id"), "uid": os.geteuid(),
    }
    sys.stdout.write(MARK + json.dumps(info) + "\n")


if __name__ == "__main__":
    main()
