"""The CUDA runtime library through ctypes: device and pinned host buffers, a stream and timing events, with nothing
to compile and no Python package to install.

Every JetPack has the CUDA runtime library JetPack's TensorRT runs on: ``libcudart.so.11.0`` (CUDA 11.4, JetPack 5:
CUDA 11's soname is ``.so.11.0`` for every 11.x; the file is ``libcudart.so.11.4.<build>``), ``libcudart.so.12`` (CUDA
12.2/12.6, JetPack 6) and ``libcudart.so.13`` (CUDA 13, JetPack 7). The library TensorRT already loaded into this
process is used when there is one (/proc/self/maps), so the engine and these buffers share one CUDA runtime; else the
sonames, newest first, through the dynamic loader (LD_LIBRARY_PATH, ld.so.cache), then the CUDA install folders.

Every call and constant below is the documented C API of the CUDA Runtime (docs.nvidia.com/cuda/cuda-runtime-api:
groups CUDART_DEVICE, CUDART_MEMORY, CUDART_STREAM, CUDART_EVENT, CUDART_ERROR, CUDART__VERSION; values from
``driver_types.h``): every function returns a ``cudaError_t`` (an int, ``cudaSuccess`` = 0); ``cudaStream_t`` and
``cudaEvent_t`` are opaque pointers. Error names come from the library itself (``cudaGetErrorName``), so a failure is
one line such as ``cudaMalloc failed: cudaErrorMemoryAllocation (out of memory)``. Standard library only (plus numpy
for the pinned arrays, imported where they are made); Python 3.8+.
"""

from __future__ import annotations

import ctypes
import glob
import os

# driver_types.h: enum cudaMemcpyKind {cudaMemcpyHostToHost = 0, cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2,
# cudaMemcpyDeviceToDevice = 3, cudaMemcpyDefault = 4}; #define cudaHostAllocDefault 0x00 ("defined to be 0": the
# cudaHostAlloc reference); #define cudaEventDefault 0x00
cudaSuccess = 0
cudaMemcpyHostToDevice = 1
cudaMemcpyDeviceToHost = 2
cudaHostAllocDefault = 0
cudaEventDefault = 0
PROP_BYTES = 8192  # cudaDeviceProp is ~1 KiB and grows with CUDA versions; `char name[256]` is its first field in all

SONAMES = ("libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0", "libcudart.so")
FOLDERS = ("/usr/local/cuda/lib64", "/usr/local/cuda/targets/aarch64-linux/lib", "/usr/local/cuda/targets/sbsa-linux/lib",
           "/usr/local/cuda/targets/x86_64-linux/lib")

_P, _I, _U, _S, _F = ctypes.c_void_p, ctypes.c_int, ctypes.c_uint, ctypes.c_size_t, ctypes.c_float
# name -> argument types (the C prototypes of cuda_runtime_api.h); every one returns cudaError_t (int)
PROTOTYPES = {
    "cudaGetDeviceCount": (ctypes.POINTER(_I),),
    "cudaRuntimeGetVersion": (ctypes.POINTER(_I),),
    "cudaDriverGetVersion": (ctypes.POINTER(_I),),
    "cudaMalloc": (ctypes.POINTER(_P), _S),
    "cudaFree": (_P,),
    "cudaHostAlloc": (ctypes.POINTER(_P), _S, _U),
    "cudaFreeHost": (_P,),
    "cudaMemcpyAsync": (_P, _P, _S, _I, _P),
    "cudaMemGetInfo": (ctypes.POINTER(_S), ctypes.POINTER(_S)),
    "cudaStreamCreate": (ctypes.POINTER(_P),),
    "cudaStreamSynchronize": (_P,),
    "cudaStreamDestroy": (_P,),
    "cudaEventCreateWithFlags": (ctypes.POINTER(_P), _U),
    "cudaEventRecord": (_P, _P),
    "cudaEventSynchronize": (_P,),
    "cudaEventElapsedTime": (ctypes.POINTER(_F), _P, _P),
    "cudaEventDestroy": (_P,),
}


class CudaError(RuntimeError):
    """A CUDA runtime call failed; the message is one line with the call, the error's name and its description."""

    def __init__(self, message: str, code: int = -1):
        super().__init__(message)
        self.code = code


def _loaded_cudart() -> list:
    """Paths of libcudart already mapped into this process (by TensorRT, typically)."""
    try:
        with open("/proc/self/maps") as f:
            paths = {ln.split()[-1] for ln in f if "/libcudart.so" in ln}
    except OSError:
        return []
    return sorted(p for p in paths if os.path.basename(p).startswith("libcudart.so"))


def candidates() -> list:
    """Where to look for the CUDA runtime library, in order."""
    found = _loaded_cudart() + list(SONAMES)
    for folder in FOLDERS + tuple(sorted(glob.glob("/usr/local/cuda-*/targets/*/lib"), reverse=True)):
        found += sorted(glob.glob(os.path.join(folder, "libcudart.so.*[0-9]")), reverse=True)
    return list(dict.fromkeys(found))


def load(paths=None):
    """(ctypes.CDLL, the name it was loaded by) for the first CUDA runtime library that loads; OSError naming what was
    tried otherwise."""
    tried = []
    for p in paths if paths is not None else candidates():
        try:
            lib = ctypes.CDLL(p)
        except OSError:
            tried.append(os.path.basename(p))
            continue
        if not hasattr(lib, "cudaGetErrorName"):
            tried.append(f"{os.path.basename(p)} (not a CUDA runtime)")
            continue
        return lib, p
    raise OSError(f"no CUDA runtime library found (tried {', '.join(dict.fromkeys(tried)) or 'nothing'}); "
                  "JetPack installs it with CUDA (sudo apt-get install -y nvidia-cuda), or add its folder to "
                  "LD_LIBRARY_PATH, e.g. /usr/local/cuda/lib64")


class CudaRuntime:
    """One CUDA runtime library: checked calls, each failure one line naming the call and the CUDA error."""

    def __init__(self, lib, path: str):
        self.lib, self.path = lib, path
        self.soname = os.path.basename(path)
        lib.cudaGetErrorName.restype = ctypes.c_char_p
        lib.cudaGetErrorName.argtypes = (_I,)
        lib.cudaGetErrorString.restype = ctypes.c_char_p
        lib.cudaGetErrorString.argtypes = (_I,)
        for name, args in PROTOTYPES.items():
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = _I, args
        # CUDA 12 headers map cudaGetDeviceProperties to cudaGetDeviceProperties_v2 (the larger struct); both take
        # (cudaDeviceProp*, int device)
        self._props = getattr(lib, "cudaGetDeviceProperties_v2", None) or lib.cudaGetDeviceProperties
        self._props.restype, self._props.argtypes = _I, (_P, _I)

    def error_name(self, code: int) -> str:
        return (self.lib.cudaGetErrorName(int(code)) or b"?").decode(errors="replace")

    def error_text(self, code: int) -> str:
        return (self.lib.cudaGetErrorString(int(code)) or b"").decode(errors="replace")

    def call(self, name: str, *args) -> None:
        code = getattr(self.lib, name)(*args)
        if code != cudaSuccess:
            raise CudaError(f"{name} failed: {self.error_name(code)} ({self.error_text(code)}) [{self.soname}]", code)

    def version(self) -> str:
        v = _I(0)
        self.call("cudaRuntimeGetVersion", ctypes.byref(v))
        return f"{v.value // 1000}.{v.value % 1000 // 10}"

    def device_count(self) -> int:
        n = _I(0)
        self.call("cudaGetDeviceCount", ctypes.byref(n))
        return n.value

    def device_name(self, device: int = 0) -> str:
        buf = ctypes.create_string_buffer(PROP_BYTES)
        code = self._props(buf, device)
        if code != cudaSuccess:
            raise CudaError(f"cudaGetDeviceProperties failed: {self.error_name(code)} ({self.error_text(code)})", code)
        return buf.raw[:256].split(b"\0", 1)[0].decode(errors="replace")

    def mem_info(self) -> tuple:
        free, total = _S(0), _S(0)
        self.call("cudaMemGetInfo", ctypes.byref(free), ctypes.byref(total))
        return free.value, total.value

    def new_handle(self, create: str, *flags) -> int:
        h = _P()
        self.call(create, ctypes.byref(h), *flags)
        return h.value or 0


def open_runtime(paths=None) -> CudaRuntime:
    """The CUDA runtime with a usable device: CudaError / OSError (one line) otherwise."""
    rt = CudaRuntime(*load(paths))
    if rt.device_count() < 1:
        raise CudaError(f"cudaGetDeviceCount: no CUDA device [{rt.soname}]", 100)
    return rt


class CtypesCuda:
    """The memory/stream/event interface of edgeres_deploy.cuda_mem over the CUDA runtime library (no package)."""

    name = "libcudart (ctypes)"

    def __init__(self, paths=None):
        self.rt = open_runtime(paths)
        self.binding = f"{self.rt.soname} via ctypes (CUDA runtime {self.rt.version()})"
        self.stream_handle = self.rt.new_handle("cudaStreamCreate")
        self._pinned: dict = {}

    def malloc(self, nbytes: int) -> int:
        p = _P()
        self.rt.call("cudaMalloc", ctypes.byref(p), max(1, int(nbytes)))
        return p.value

    def free(self, buf) -> None:
        self.rt.call("cudaFree", _P(int(buf)))

    def pinned_empty(self, n: int, dtype):
        import numpy as np

        dtype = np.dtype(dtype)
        nbytes = max(1, int(n) * dtype.itemsize)
        p = _P()
        self.rt.call("cudaHostAlloc", ctypes.byref(p), nbytes, cudaHostAllocDefault)
        arr = np.frombuffer((ctypes.c_byte * nbytes).from_address(p.value), dtype=dtype, count=int(n))
        self._pinned[arr.ctypes.data] = p.value
        return arr

    def free_pinned(self, arr) -> None:
        ptr = self._pinned.pop(arr.ctypes.data, None)
        if ptr is not None:
            self.rt.call("cudaFreeHost", _P(ptr))

    def events(self) -> tuple:
        return (self.rt.new_handle("cudaEventCreateWithFlags", cudaEventDefault),
                self.rt.new_handle("cudaEventCreateWithFlags", cudaEventDefault))

    def record(self, event) -> None:
        self.rt.call("cudaEventRecord", _P(event), _P(self.stream_handle))

    def elapsed_ms(self, start, end) -> float:
        self.rt.call("cudaEventSynchronize", _P(end))
        ms = _F(0.0)
        self.rt.call("cudaEventElapsedTime", ctypes.byref(ms), _P(start), _P(end))
        return float(ms.value)

    @staticmethod
    def ptr(buf) -> int:
        return int(buf)

    def htod(self, buf, arr) -> None:
        self.rt.call("cudaMemcpyAsync", _P(int(buf)), _P(arr.ctypes.data), arr.nbytes, cudaMemcpyHostToDevice,
                     _P(self.stream_handle))

    def dtoh(self, arr, buf) -> None:
        self.rt.call("cudaMemcpyAsync", _P(arr.ctypes.data), _P(int(buf)), arr.nbytes, cudaMemcpyDeviceToHost,
                     _P(self.stream_handle))

    def sync(self) -> None:
        self.rt.call("cudaStreamSynchronize", _P(self.stream_handle))

    def device_name(self) -> str:
        return self.rt.device_name(0)

    def mem_used_mb(self) -> float:
        free, total = self.rt.mem_info()
        return (total - free) / 1e6

    def close(self, events=()) -> None:
        """Destroy ``events`` and the stream (cudaEventDestroy, cudaStreamDestroy)."""
        for event in events:
            self.rt.call("cudaEventDestroy", _P(event))
        if self.stream_handle:
            self.rt.call("cudaStreamDestroy", _P(self.stream_handle))
            self.stream_handle = 0


def probe(paths=None) -> dict:
    """What a first run needs to know, without raising: {"ok", "library", "version", "device", "error"}."""
    try:
        rt = CudaRuntime(*load(paths))
    except OSError as e:
        return {"ok": False, "library": None, "version": None, "device": None, "error": str(e)}
    out = {"ok": False, "library": rt.path, "version": None, "device": None, "error": None}
    try:
        out["version"] = rt.version()
        if rt.device_count() < 1:
            raise CudaError("cudaGetDeviceCount: no CUDA device", 100)
        out["device"] = rt.device_name(0)
        out["ok"] = True
    except CudaError as e:
        out["error"] = str(e)
    return out
