"""The ctypes CUDA backend (edgeres_deploy/cudart.py) against the real CUDA runtime library and against its C double.

No GPU here: the real ``libcudart.so.13`` (the nvidia-cuda-runtime wheel in this venv) loads, answers its version and
error names, and fails ``cudaGetDeviceCount`` with a real error code: the backend must say so in one line. The data
path (allocations, copies, pinned buffers, events) runs against the C double (tests/trt_double/cudart_double.c),
whose error names and texts are checked against the real library's. Where a GPU exists the device check runs the
same calls for real (tests/test_cudart.py::test_real_gpu_round_trip, skipped here).
"""

from __future__ import annotations

import ctypes
import re
from pathlib import Path

import numpy as np
import pytest
import trt_double
from edgeres_deploy import cudart as C

SITE = Path(np.__file__).parents[1]
REAL = SITE / "nvidia" / "cu13" / "lib" / "libcudart.so.13"
real_only = pytest.mark.skipif(not REAL.is_file(), reason=f"no CUDA runtime wheel here ({REAL})")
ERRORS = (0, 1, 2, 21, 35, 101, 400, 12345)  # every code the double returns, and one no library knows


@pytest.fixture(scope="module")
def double(tmp_path_factory):
    return trt_double.build_cudart_double(tmp_path_factory.mktemp("cudart"), 13)


def _gpu() -> bool:
    return C.probe([str(REAL)])["ok"] if REAL.is_file() else False


@real_only
def test_real_library_has_every_call_the_backend_makes():
    rt = C.CudaRuntime(*C.load([str(REAL)]))
    assert rt.version() == "13.0" and rt.soname == "libcudart.so.13"
    for name in (*C.PROTOTYPES, "cudaGetErrorName", "cudaGetErrorString", "cudaGetDeviceProperties"):
        assert hasattr(rt.lib, name), name


@real_only
def test_real_library_without_a_gpu_fails_in_one_line(monkeypatch):
    """cudaGetDeviceCount fails (no driver or no device here): one line with the CUDA error's name and text, also as
    the last of cuda_api()'s three reasons (pycuda, cuda-python, libcudart)."""
    import sys

    from edgeres_deploy import cuda_mem

    if _gpu():
        pytest.skip("a GPU is present: test_real_gpu_round_trip covers it")
    with pytest.raises(C.CudaError) as e:
        C.CtypesCuda([str(REAL)])
    msg = str(e.value)
    assert re.fullmatch(r"cudaGetDeviceCount failed: cudaError\w+ \([^()]+\) \[libcudart\.so\.13\]", msg), msg
    assert e.value.code in (35, 100, 3, 999)  # InsufficientDriver, NoDevice, InitializationError, Unknown
    monkeypatch.setitem(sys.modules, "pycuda", None)
    monkeypatch.setattr(C, "candidates", lambda: [str(REAL)])
    with pytest.raises(cuda_mem.BackendUnavailable) as e:
        cuda_mem.cuda_api()
    assert "\n" not in str(e.value) and "libcudart: cudaGetDeviceCount failed: cudaError" in str(e.value)
    assert C.probe([str(REAL)])["error"] == msg


def test_missing_library_is_one_line_naming_the_fix(tmp_path):
    with pytest.raises(OSError) as e:
        C.load([str(tmp_path / "libcudart.so.99")])
    assert "no CUDA runtime library found (tried libcudart.so.99)" in str(e.value) and "nvidia-cuda" in str(e.value)


@real_only
def test_double_error_names_are_the_real_library_s(double):
    real, fake = C.CudaRuntime(*C.load([str(REAL)])), C.CudaRuntime(*C.load([str(double)]))
    for code in ERRORS:
        assert fake.error_name(code) == real.error_name(code), code
        assert fake.error_text(code) == real.error_text(code), code


def test_ctypes_backend_data_path_over_the_double(double):
    """Device buffers, pinned host buffers, async copies on a stream, events: a round trip of real bytes."""
    cuda = C.CtypesCuda([str(double)])
    assert cuda.device_name() == "Double GPU" and cuda.binding == "libcudart.so.13 via ctypes (CUDA runtime 13.0)"
    used = cuda.mem_used_mb()
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    h_in, h_out = cuda.pinned_empty(x.size, np.float32), cuda.pinned_empty(x.size, np.float32)
    h_in[:] = x.reshape(-1)
    d = cuda.malloc(x.nbytes)
    assert cuda.mem_used_mb() - used == pytest.approx(x.nbytes / 1e6)
    start, end = _timed_round_trip(cuda, d, h_in, h_out)
    assert cuda.elapsed_ms(start, end) >= 0
    np.testing.assert_array_equal(h_out.reshape(x.shape), x)
    cuda.free(d)
    cuda.free_pinned(h_in)
    cuda.free_pinned(h_out)
    assert cuda.mem_used_mb() == pytest.approx(used)


def _timed_round_trip(cuda, d, h_in, h_out):
    """h_in -> device buffer d -> h_out between two recorded events; returns the events."""
    start, end = cuda.events()
    cuda.record(start)
    cuda.htod(d, h_in)
    cuda.dtoh(h_out, d)
    cuda.record(end)
    cuda.sync()
    return start, end


def test_ctypes_backend_errors_name_the_call_and_the_cuda_error(double):
    cuda = C.CtypesCuda([str(double)])
    with pytest.raises(C.CudaError, match=r"^cudaFree failed: cudaErrorInvalidValue \(invalid argument\)"):
        cuda.free(0xDEAD000)  # never allocated
    host = np.zeros(4, np.float32)
    with pytest.raises(C.CudaError, match=r"^cudaMemcpyAsync failed: cudaErrorInvalidValue"):
        cuda.htod(host.ctypes.data, host)  # a host pointer where a device one is due
    start, end = cuda.events()
    with pytest.raises(C.CudaError, match=r"^cudaEventElapsedTime failed: cudaErrorInvalidResourceHandle"):
        cuda.elapsed_ms(start, end)  # never recorded
    with pytest.raises(C.CudaError, match=r"cudaMemcpyAsync failed: cudaErrorInvalidMemcpyDirection"):
        cuda.rt.call("cudaMemcpyAsync", ctypes.c_void_p(0), ctypes.c_void_p(0), 0, 7, ctypes.c_void_p(0))


def test_doctor_probe_reports_the_library_and_device(double):
    p = C.probe([str(double)])
    assert p["ok"] and p["version"] == "13.0" and p["device"] == "Double GPU" and p["error"] is None


@real_only
@pytest.mark.skipif(not _gpu(), reason="no GPU here: the real-device round trip runs where one exists")
def test_real_gpu_round_trip():
    cuda = C.CtypesCuda([str(REAL)])
    x = np.random.default_rng(0).standard_normal(1 << 16).astype(np.float32)
    h_in, h_out = cuda.pinned_empty(x.size, np.float32), cuda.pinned_empty(x.size, np.float32)
    h_in[:] = x
    d = cuda.malloc(x.nbytes)
    start, end = _timed_round_trip(cuda, d, h_in, h_out)
    assert cuda.elapsed_ms(start, end) > 0 and cuda.device_name()
    np.testing.assert_array_equal(h_out, x)
    cuda.free(d)
