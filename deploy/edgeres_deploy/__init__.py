"""edgeres_deploy: the on-device side of edgeres.

Needs only numpy and pillow, plus JetPack's tensorrt (the CUDA runtime library is reached through ctypes; pycuda or
cuda-python are used where installed) or onnxruntime (anywhere). No torch, no edgeres. Run it from an unpacked
bundle's root: ``./run.sh doctor|verify|build|adopt|check|bench|predict|evaluate`` (``python3 -m edgeres_deploy ...``
starts over through run.sh's launcher, edgeres_deploy/launch.py).
The host (edgeres) imports the same preprocessing and TensorRT code, so both sides compute the same thing.
"""

import sys as _sys

__version__ = "0.1.0"


def _run_with_m() -> bool:
    """Whether this import is runpy locating ``python -m edgeres_deploy[.x]`` (not e.g. ``-m edgeres`` importing us)."""
    if _sys.argv[:1] != ["-m"]:  # runpy sets argv[0] to "-m" while it locates the module
        return False
    f = _sys._getframe(1)
    while f is not None:
        if f.f_code.co_name == "_run_module_as_main" and f.f_globals.get("__name__") == "runpy":
            return str(f.f_locals.get("mod_name", "")).split(".")[0] == "edgeres_deploy"
        f = f.f_back
    return False


if __name__ == "edgeres_deploy" and _run_with_m():
    # `python3 -m edgeres_deploy ...`: the current folder is first on sys.path and compiled caches are read and written.
    # Start over through the launcher run.sh uses (edgeres_deploy/launch.py as a script, -E -B), which hardens the
    # interpreter and checks the bundle against its manifest before importing anything from it. The compiled cache
    # Python has just written for this file is removed first: the check refuses every file the manifest does not list.
    import importlib.util as _iu
    import os as _os

    if not _sys.dont_write_bytecode:
        try:
            _pyc = _iu.cache_from_source(__file__)
            _os.unlink(_pyc)
            _os.rmdir(_os.path.dirname(_pyc))  # only if now empty
        except (OSError, NotImplementedError, ValueError):
            pass
    _launcher = _os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "launch.py")
    _sys.stdout.flush()
    _os.execv(_sys.executable, [_sys.executable, "-E", "-B", _launcher, *_sys.argv[1:]])
