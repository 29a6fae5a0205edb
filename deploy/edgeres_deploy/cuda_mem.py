"""Device buffers, pinned host buffers, streams and events through pycuda, cuda-python or, with nothing to install,
the CUDA runtime library itself over ctypes (edgeres_deploy/cudart.py), tried in that order.

pycuda: ``pycuda.autoprimaryctx`` (retains the device's primary context, the one the TensorRT runtime uses; NVIDIA's
TensorRT samples use it) instead of ``pycuda.autoinit`` (a new context that is popped at exit while TensorRT objects
may still be alive: "invalid device context" errors). Buffers are freed when they grow and on ``TrtRunner.close``.
Timing: a pair of CUDA events around the enqueue gives the GPU compute time (``cuEventElapsedTime``), apart from the
end-to-end time that includes the (pinned) host<->device copies.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


from edgeres_deploy.errors import BackendUnavailable


class Backend:
    """A loaded model that holds a runtime's resources (a session, an engine, device memory) until :meth:`close`:
    use it as ``with make_backend(...) as backend:``. ``close`` is idempotent; a closed backend runs nothing."""

    closed = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._release()

    def _release(self) -> None:
        """Drop the runtime's objects (subclasses)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class CpuBackend(Backend):
    """What every on-device backend answers, with the CPU runtimes' values: no batch-profile limit, no GPU time or
    memory, nothing to synchronise. ONNX Runtime and OpenVINO subclass it; TensorRT answers from its engine."""

    max_batch = None
    last_gpu_ms = None

    def sync(self):
        pass

    def gpu_mem_mb(self):
        return None


class _PyCuda:
    name = "pycuda"

    def __init__(self):
        import pycuda.autoprimaryctx  # noqa: F401 - the primary context, shared with TensorRT
        import pycuda.driver as cuda

        self.cuda = cuda
        self.binding = f"pycuda {getattr(sys.modules.get('pycuda'), 'VERSION_TEXT', '')}".strip()
        self.stream = cuda.Stream()
        self.stream_handle = self.stream.handle

    def malloc(self, nbytes: int):
        return self.cuda.mem_alloc(max(1, nbytes))

    @staticmethod
    def free(buf) -> None:
        buf.free()

    def pinned_empty(self, n: int, dtype) -> np.ndarray:
        return self.cuda.pagelocked_empty(int(n), dtype)

    @staticmethod
    def free_pinned(arr) -> None:
        base = getattr(arr, "base", None)
        if base is not None and hasattr(base, "free"):
            base.free()

    def events(self) -> tuple:
        return self.cuda.Event(), self.cuda.Event()

    def record(self, event) -> None:
        event.record(self.stream)

    @staticmethod
    def elapsed_ms(start, end) -> float:
        end.synchronize()
        return float(start.time_till(end))

    @staticmethod
    def ptr(buf) -> int:
        return int(buf)

    def htod(self, buf, arr: np.ndarray) -> None:
        self.cuda.memcpy_htod_async(buf, arr, self.stream)

    def dtoh(self, arr: np.ndarray, buf) -> None:
        self.cuda.memcpy_dtoh_async(arr, buf, self.stream)

    def sync(self) -> None:
        self.stream.synchronize()

    def device_name(self) -> str:
        return self.cuda.Context.get_device().name()

    def mem_used_mb(self) -> float:
        free, total = self.cuda.mem_get_info()
        return (total - free) / 1e6

    def close(self, events=()) -> None:
        """Release the stream and ``events``: pycuda frees its Stream and Event objects when they are collected."""
        self.stream = None


class _CudaPython:
    name = "cuda-python"

    def __init__(self):
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart  # cuda-python < 12.6
        self.rt = cudart
        version = getattr(sys.modules.get("cuda.bindings") or sys.modules.get("cuda"), "__version__", "")
        self.binding = f"cuda-python {version}".strip()
        self._pinned: dict = {}
        self.stream = self._check(cudart.cudaStreamCreate())
        self.stream_handle = int(self.stream)

    def _check(self, result):
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise RuntimeError(f"CUDA error {getattr(err, 'name', err)} (cuda-python)")
        return rest[0] if len(rest) == 1 else (rest or None)

    def malloc(self, nbytes: int):
        return self._check(self.rt.cudaMalloc(max(1, nbytes)))

    def free(self, buf) -> None:
        self._check(self.rt.cudaFree(buf))

    def pinned_empty(self, n: int, dtype) -> np.ndarray:
        import ctypes

        import numpy as np

        dtype = np.dtype(dtype)
        nbytes = max(1, int(n) * dtype.itemsize)
        ptr = int(self._check(self.rt.cudaMallocHost(nbytes)))
        buf = (ctypes.c_byte * nbytes).from_address(ptr)
        arr = np.frombuffer(buf, dtype=dtype, count=int(n))
        self._pinned[arr.ctypes.data] = ptr
        return arr

    def free_pinned(self, arr) -> None:
        ptr = self._pinned.pop(arr.ctypes.data, None)
        if ptr is not None:
            self._check(self.rt.cudaFreeHost(ptr))

    def events(self) -> tuple:
        return self._check(self.rt.cudaEventCreate()), self._check(self.rt.cudaEventCreate())

    def record(self, event) -> None:
        self._check(self.rt.cudaEventRecord(event, self.stream))

    def elapsed_ms(self, start, end) -> float:
        self._check(self.rt.cudaEventSynchronize(end))
        return float(self._check(self.rt.cudaEventElapsedTime(start, end)))

    @staticmethod
    def ptr(buf) -> int:
        return int(buf)

    def htod(self, buf, arr: np.ndarray) -> None:
        self._check(self.rt.cudaMemcpyAsync(buf, arr.ctypes.data, arr.nbytes,
                                            self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, self.stream))

    def dtoh(self, arr: np.ndarray, buf) -> None:
        self._check(self.rt.cudaMemcpyAsync(arr.ctypes.data, buf, arr.nbytes,
                                            self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.stream))

    def sync(self) -> None:
        self._check(self.rt.cudaStreamSynchronize(self.stream))

    def device_name(self) -> str:
        props = self._check(self.rt.cudaGetDeviceProperties(0))
        name = props.name
        return name.decode(errors="replace").rstrip("\x00") if isinstance(name, bytes) else str(name)

    def mem_used_mb(self) -> float:
        free, total = self._check(self.rt.cudaMemGetInfo())
        return (total - free) / 1e6

    def close(self, events=()) -> None:
        """Destroy ``events`` and the stream (cudaEventDestroy, cudaStreamDestroy)."""
        for event in events:
            self._check(self.rt.cudaEventDestroy(event))
        if self.stream is not None:
            self._check(self.rt.cudaStreamDestroy(self.stream))
            self.stream = None


def _ctypes_cuda():
    from edgeres_deploy.cudart import CtypesCuda

    return CtypesCuda()


def cuda_api():
    """The first CUDA binding that imports and finds a device: pycuda, cuda-python, then the CUDA runtime library over
    ctypes (nothing to install); BackendUnavailable with the three reasons otherwise (one line)."""
    reasons = []
    for name, make in (("pycuda", _PyCuda), ("cuda-python", _CudaPython), ("libcudart", _ctypes_cuda)):
        try:
            return make()
        except ImportError as e:
            reasons.append(f"{name} not installed ({e.name or e})")
        except OSError as e:  # no CUDA runtime library to load
            reasons.append(f"{name}: {str(e).splitlines()[0]}")
        except Exception as e:  # noqa: BLE001 - no device, driver errors: the binding's own one-line reason
            reasons.append(f"{name}: {str(e).splitlines()[0][:200]}")
    raise BackendUnavailable("no CUDA: " + "; ".join(reasons))


def cuda_device_name() -> str:
    """The CUDA device's name, through a binding opened for the question and closed after it (its stream too)."""
    cuda = cuda_api()
    try:
        return cuda.device_name()
    finally:
        cuda.close()
