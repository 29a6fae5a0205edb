"""The doubles' "device" memory: host memory that the CUDA doubles hand out and the TensorRT double reads and writes.

Two kinds: the Python doubles of pycuda and cuda-python keep allocations in ``MEMORY`` (address -> numpy buffer, fake
addresses); the C double of libcudart (cudart_double.c) allocates real host memory and says which addresses are
device allocations (``edgeres_double_is_device``). The TensorRT double, like TensorRT, is handed raw device pointers:
anything else (a host pointer, a freed buffer) is an illegal address and the execution fails.
"""

from __future__ import annotations

import ctypes
import os

import numpy as np

MEMORY: dict = {}  # address -> np.ndarray(uint8): the Python doubles' device memory
_NEXT = [0x10000]
TOTAL_BYTES = 8 << 30
C_DOUBLE_ENV = "EDGERES_TEST_CUDART_DOUBLE"  # the compiled C double in use (set by tests that use it)
_LIBS: dict = {}


def _alloc(nbytes: int) -> int:
    addr = _NEXT[0]
    _NEXT[0] += (int(nbytes) + 0xFFF) & ~0xFFF or 0x1000
    MEMORY[addr] = np.zeros(int(nbytes), np.uint8)
    return addr


def used_bytes() -> int:
    return sum(a.nbytes for a in MEMORY.values())


def c_double():
    """The C double of libcudart this process uses (ctypes.CDLL), or None."""
    path = os.environ.get(C_DOUBLE_ENV)
    if not path:
        return None
    if path not in _LIBS:
        lib = ctypes.CDLL(path)  # dlopen: the very library the product loaded (same file, same handle)
        lib.edgeres_double_is_device.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
        lib.cudaMalloc.argtypes = (ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t)
        lib.cudaFree.argtypes = (ctypes.c_void_p,)
        _LIBS[path] = lib
    return _LIBS[path]


def device_alloc(nbytes: int) -> int:
    """Device memory the TensorRT double holds (weights, activations): through the CUDA double in use."""
    lib = c_double()
    if lib is None:
        return _alloc(nbytes)
    p = ctypes.c_void_p()
    if lib.cudaMalloc(ctypes.byref(p), max(1, int(nbytes))) != 0:
        raise MemoryError("cudaMalloc failed (C double)")
    return p.value


def device_free(addr) -> None:
    if addr is None:
        return
    if MEMORY.pop(addr, None) is None and c_double() is not None:
        c_double().cudaFree(ctypes.c_void_p(addr))


def device_view(addr: int, nbytes: int):
    """A writable uint8 view of ``nbytes`` of device memory at ``addr``; None if it is not device memory."""
    buf = MEMORY.get(int(addr))
    if buf is not None:
        return buf[:nbytes] if nbytes <= buf.nbytes else None
    lib = c_double()
    if lib is not None and lib.edgeres_double_is_device(ctypes.c_void_p(int(addr)), int(nbytes)):
        return np.ctypeslib.as_array((ctypes.c_uint8 * int(nbytes)).from_address(int(addr)))
    return None
