"""Doubles of the CUDA bindings the bundle can use, for tests only: pycuda and cuda-python as Python modules over the
doubles' device memory (memory.py), and the CUDA runtime library itself as a C shared library (cudart_double.c),
compiled here with gcc.

Sources: pycuda's documented driver API (https://documen.tician.de/pycuda/driver.html); cuda-python's runtime bindings
(``cuda.bindings.runtime``, https://nvidia.github.io/cuda-python/cuda-bindings/latest/module/runtime.html: every call
returns a tuple that starts with the ``cudaError_t``); the CUDA Runtime API reference for the C double (its header).
"""

from __future__ import annotations

import ctypes
import enum
import shutil
import subprocess
import time
import types
from pathlib import Path

import numpy as np

from trt_double.memory import MEMORY, TOTAL_BYTES, _alloc, used_bytes

DEVICE_NAME = "Double GPU"
C_SOURCE = Path(__file__).with_name("cudart_double.c")


def build_cudart_double(out_dir, major: int = 13) -> Path:
    """Compile cudart_double.c into ``out_dir/libcudart.so.<major>`` (the soname JetPack 7's CUDA 13 has; 12 for
    JetPack 6, "11.0" for JetPack 5's CUDA 11.4). Needs gcc (present here and in CI)."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise RuntimeError("no C compiler (gcc) to build the libcudart double")
    out = Path(out_dir) / f"libcudart.so.{major}"
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([gcc, "-shared", "-fPIC", "-O1", f"-Wl,-soname,libcudart.so.{major}",
                    f"-DCUDART_VERSION={int(str(major).split('.')[0]) * 1000}", "-o", str(out), str(C_SOURCE)],
                   check=True, capture_output=True, timeout=120)
    return out


# ------------------------------------------------------------------------------------------------ pycuda
class DeviceAllocation:
    def __init__(self, nbytes):
        self.addr = _alloc(nbytes)

    def __int__(self):
        return self.addr

    def free(self):
        MEMORY.pop(self.addr, None)


class Stream:
    def __init__(self, flags=0):
        self.handle = id(self)

    def synchronize(self):
        pass


class Event:
    def __init__(self, flags=0):
        self.t = None

    def record(self, stream=None):
        self.t = time.perf_counter()
        return self

    def synchronize(self):
        return self

    def time_since(self, start):  # ms, as pycuda's Event.time_since
        return (self.t - start.t) * 1000.0

    def time_till(self, end):
        return (end.t - self.t) * 1000.0


def _view(addr, nbytes):
    return MEMORY[int(addr)][:nbytes]


def _contiguous(a):  # pycuda takes host arrays through the buffer protocol: a strided view is refused
    if not (isinstance(a, np.ndarray) and a.flags.c_contiguous):
        raise TypeError("expected a contiguous host buffer")
    return a


def memcpy_htod_async(dest, src, stream=None):
    src = _contiguous(src)
    _view(dest, src.nbytes)[:] = src.view(np.uint8).reshape(-1)


def memcpy_dtoh_async(dest, src, stream=None):
    _contiguous(dest).view(np.uint8).reshape(-1)[:] = _view(src, dest.nbytes)


def pagelocked_empty(shape, dtype):
    return np.empty(shape, dtype)


def mem_get_info():
    return TOTAL_BYTES - used_bytes(), TOTAL_BYTES


def mem_alloc(nbytes):
    return DeviceAllocation(nbytes)


def make_pycuda(device_name: str = DEVICE_NAME) -> dict:
    """``pycuda``, ``pycuda.driver`` and ``pycuda.autoprimaryctx`` (pycuda >= 2021.1) over host memory."""
    drv = types.ModuleType("pycuda.driver")
    device = type("Device", (), {"__init__": lambda self, n=0: None, "name": lambda self: device_name})
    context = type("Context", (), {"get_device": staticmethod(lambda: device(0))})
    for f in (DeviceAllocation, Stream, Event, device, context, memcpy_htod_async, memcpy_dtoh_async,
              pagelocked_empty, mem_get_info, mem_alloc):
        setattr(drv, f.__name__, f)
    pkg = types.ModuleType("pycuda")
    pkg.__path__ = []
    pkg.driver = drv
    prim = types.ModuleType("pycuda.autoprimaryctx")
    prim.context = context()
    prim.device = device(0)
    pkg.autoprimaryctx = prim
    return {"pycuda": pkg, "pycuda.driver": drv, "pycuda.autoprimaryctx": prim}


# ------------------------------------------------------------------------------------------------ cuda-python
PINNED: dict = {}  # address -> ctypes buffer: page-locked host memory handed out by the cuda-python double


class cudaError_t(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorInvalidResourceHandle = 400  # driver_types.h (CUDA 10.1+): a destroyed or unknown stream/event handle


class cudaMemcpyKind(enum.IntEnum):
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2


LIVE_HANDLES: set = set()  # streams and events created and not destroyed yet (cudaStreamDestroy, cudaEventDestroy)


class _Handle:
    def __init__(self):
        self._h = id(self)
        LIVE_HANDLES.add(self)

    def __int__(self):
        return self._h


class cudaStream_t(_Handle):
    pass


class cudaEvent_t(_Handle):
    t = None


OK = cudaError_t.cudaSuccess
BAD = cudaError_t.cudaErrorInvalidValue


def cudaStreamCreate():
    return OK, cudaStream_t()


def cudaStreamSynchronize(stream):
    return (OK,)


def _destroy(handle):
    """cudaStreamDestroy / cudaEventDestroy: (cudaSuccess,), or cudaErrorInvalidResourceHandle for a handle already
    destroyed (CUDA Runtime API reference, "cudaStreamDestroy": returns cudaSuccess, cudaErrorInvalidValue,
    cudaErrorInvalidResourceHandle; cuda-python returns it as a one-item tuple)."""
    if handle not in LIVE_HANDLES:
        return (cudaError_t.cudaErrorInvalidResourceHandle,)
    LIVE_HANDLES.discard(handle)
    return (OK,)


def cudaStreamDestroy(stream):
    return _destroy(stream)


def cudaMalloc(size):
    return OK, _alloc(size)


def cudaFree(devPtr):
    return (OK,) if MEMORY.pop(int(devPtr), None) is not None else (BAD,)


def cudaMallocHost(size):
    buf = ctypes.create_string_buffer(int(size))
    PINNED[ctypes.addressof(buf)] = buf
    return OK, ctypes.addressof(buf)


def cudaFreeHost(ptr):
    return (OK,) if PINNED.pop(int(ptr), None) is not None else (BAD,)


def cudaMemcpyAsync(dst, src, count, kind, stream):
    if kind == cudaMemcpyKind.cudaMemcpyHostToDevice:
        ctypes.memmove(MEMORY[int(dst)].ctypes.data, int(src), int(count))
    else:
        ctypes.memmove(int(dst), MEMORY[int(src)].ctypes.data, int(count))
    return (OK,)


def cudaEventCreate():
    return OK, cudaEvent_t()


def cudaEventRecord(event, stream):
    event.t = time.perf_counter()
    return (OK,)


def cudaEventSynchronize(event):
    return (OK,)


def cudaEventElapsedTime(start, end):
    return OK, (end.t - start.t) * 1000.0


def cudaEventDestroy(event):
    return _destroy(event)


def cudaMemGetInfo():
    return OK, TOTAL_BYTES - used_bytes(), TOTAL_BYTES


RUNTIME_CALLS = (cudaError_t, cudaMemcpyKind, cudaStream_t, cudaEvent_t, cudaStreamCreate, cudaStreamSynchronize,
                 cudaStreamDestroy,
                 cudaMalloc, cudaFree, cudaMallocHost, cudaFreeHost, cudaMemcpyAsync, cudaEventCreate, cudaEventRecord,
                 cudaEventSynchronize, cudaEventElapsedTime, cudaEventDestroy, cudaMemGetInfo)


def make_cudart(device_name: str = DEVICE_NAME) -> dict:
    """``cuda.bindings.runtime`` (cuda-python >= 12.6; ``cuda.cudart`` before) over host memory. Every call returns a
    tuple whose first item is the ``cudaError_t`` (cuda-python's convention: ``(err,)``, ``(err, value)`` or
    ``(err, free, total)`` for ``cudaMemGetInfo``); freeing an address that is not allocated gives
    ``cudaErrorInvalidValue``, as the CUDA runtime does."""
    rt = types.ModuleType("cuda.bindings.runtime")
    for f in RUNTIME_CALLS:
        setattr(rt, f.__name__, f)
    prop = type("cudaDeviceProp", (), {"name": device_name.encode()})
    rt.cudaDeviceProp = prop
    rt.cudaGetDeviceProperties = lambda device: (OK, prop())
    cuda = types.ModuleType("cuda")
    cuda.__path__ = []
    bindings = types.ModuleType("cuda.bindings")
    bindings.__path__ = []
    bindings.runtime = rt
    cuda.bindings = bindings
    return {"cuda": cuda, "cuda.bindings": bindings, "cuda.bindings.runtime": rt}
