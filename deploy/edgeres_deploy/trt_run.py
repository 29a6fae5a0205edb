"""Run a serialized TensorRT engine (8.5, 10.x, 11.x): numpy batch in, numpy logits out.

The name-based I/O API (``num_io_tensors``, ``set_tensor_address``, ``execute_async_v3``) exists from 8.5 on, so one
inference path serves every family; device memory, pinned host buffers, the stream and the timing events come from
edgeres_deploy.cuda_mem (pycuda, cuda-python or the CUDA runtime library over ctypes).
"""

from __future__ import annotations

import json

import numpy as np

from edgeres_deploy.cuda_mem import cuda_api
from edgeres_deploy.errors import ModelLoadError
from edgeres_deploy.trt_api import import_tensorrt, inspect_engine, np_dtype


class TrtRunner:
    """Run a serialized engine: numpy batch in, numpy logits out (one input, one output).

    Batches above the engine's profile maximum are split; input/output dtypes come from the engine; host buffers
    are pinned; ``last_gpu_ms`` is the GPU compute time of the last run (CUDA events around the enqueue, what
    trtexec calls "GPU Compute"), separate from the end-to-end time a caller measures around ``run``.
    """

    def __init__(self, engine_path: str, dla_core: int | None = None, warm: bool = True, sidecar: bool = True):
        import atexit

        self._closed = False
        self._buffers: dict = {}
        self._host: dict = {}
        self._events: tuple = ()
        self.trt = import_tensorrt()
        self.cuda = cuda_api()
        atexit.register(self.close)  # TensorRT objects go before the CUDA context (pycuda.autoprimaryctx pops it at exit)
        try:
            self._open(engine_path, dla_core, warm, sidecar)
        except BaseException:
            self.close()  # nothing half-made stays allocated
            raise

    def _open(self, engine_path: str, dla_core, warm: bool, sidecar: bool) -> None:
        self._placement = False  # not inspected yet
        self.meta = _sidecar(engine_path) if sidecar else {}
        self.dla_core = self.meta.get("dla_core") if dla_core is None else dla_core
        mem0 = self.cuda.mem_used_mb()
        self._load(engine_path)
        self._read_io()
        self.last_gpu_ms = None
        self._events = self.cuda.events()
        if warm:  # device memory this engine holds (weights + activations + I/O), measured around the load
            self.run(np.zeros((self.min_batch, *self.input_shape[1:]), np.float32))
        self.gpu_mem_mb = max(0.0, self.cuda.mem_used_mb() - mem0)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _load(self, engine_path: str) -> None:
        trt = self.trt
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)  # must outlive the engine
        if self.dla_core is not None:  # the engine runs on the runtime's DLA core, not on the one it was built for
            self.runtime.DLA_core = int(self.dla_core)
        with open(engine_path, "rb") as f:
            self.engine = self.runtime.deserialize_cuda_engine(f.read())
        if self.engine is None:
            raise ModelLoadError(f"{engine_path} did not deserialize with TensorRT {trt.__version__}: built for another "
                               "GPU or TensorRT version? `./run.sh build --rebuild` builds it on this device")
        self.context = self.engine.create_execution_context()

    def _read_io(self) -> None:
        """Names, dtypes, shapes and the batch profile, from the engine itself."""
        trt, engine = self.trt, self.engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(self.inputs) != 1 or len(self.outputs) != 1:
            raise ValueError(f"the engine has {len(self.inputs)} inputs and {len(self.outputs)} outputs; an image "
                             "classifier engine has one of each")
        self.in_dtype = np_dtype(trt, engine.get_tensor_dtype(self.inputs[0]))
        self.out_dtype = np_dtype(trt, engine.get_tensor_dtype(self.outputs[0]))
        self.input_shape = tuple(int(d) for d in engine.get_tensor_shape(self.inputs[0]))
        self.output_shape = tuple(int(d) for d in engine.get_tensor_shape(self.outputs[0]))
        self.fixed_batch = self.input_shape[0] if self.input_shape[0] > 0 else None
        if self.fixed_batch:
            self.profile = [self.input_shape] * 3
        else:  # the profile's [min, opt, max] shapes; a DLA profile is static (min = max)
            self.profile = [tuple(int(d) for d in s) for s in engine.get_tensor_profile_shape(self.inputs[0], 0)]
        self.min_batch, self.max_batch = self.profile[0][0], self.profile[2][0]

    @property
    def placement(self) -> dict | None:
        """Where the engine's layers run (DLA / GPU), from TensorRT's engine inspector; None where there is none."""
        if self._placement is False:
            self._placement = inspect_engine(self.trt, self.engine)
        return self._placement

    @property
    def binding(self) -> str:
        return getattr(self.cuda, "binding", self.cuda.name)

    def _buffer(self, name: str, nbytes: int):
        buf = self._buffers.get(name)
        if buf is None or buf[1] < nbytes:
            if buf is not None:
                self.cuda.free(buf[0])
            buf = (self.cuda.malloc(nbytes), nbytes)
            self._buffers[name] = buf
        return buf[0]

    def _pinned(self, name: str, shape: tuple, dtype) -> np.ndarray:
        arr = self._host.get(name)
        n = int(np.prod(shape))
        if arr is None or arr.dtype != dtype or arr.size < n:
            if arr is not None:  # cuda-python has no garbage collection of cudaMallocHost memory
                self.cuda.free_pinned(arr)
            arr = self.cuda.pinned_empty(n, dtype)
            self._host[name] = arr
        return arr[:n].reshape(shape)

    def run(self, x: np.ndarray) -> np.ndarray:
        """Logits of ``x``: split into runs of at most the profile's maximum batch; a run below the profile's minimum
        (a static DLA or fixed-batch engine) is padded with its last image and the padding's outputs dropped."""
        if self._closed:
            raise RuntimeError("this TensorRT runner is closed: open the engine again to run it")
        x = np.asarray(x)
        if self.min_batch <= len(x) <= self.max_batch:
            return self._run(x)
        gpu = 0.0
        outs = []
        for i in range(0, len(x), self.max_batch):
            chunk = x[i : i + self.max_batch]
            n = len(chunk)
            if n < self.min_batch:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self.min_batch - n, 0)])
            outs.append(self._run(chunk)[:n])
            gpu += self.last_gpu_ms or 0.0
        self.last_gpu_ms = gpu
        return np.concatenate(outs)

    def _run(self, x: np.ndarray) -> np.ndarray:
        name_in, name_out = self.inputs[0], self.outputs[0]
        if not self.context.set_input_shape(name_in, tuple(int(d) for d in x.shape)):
            lo, _, hi = (tuple(s) for s in self.engine.get_tensor_profile_shape(name_in, 0))
            raise ValueError(f"TensorRT refused input shape {tuple(x.shape)} for {name_in!r}: the engine's profile "
                             f"is {lo} .. {hi}")
        h_in = self._pinned(name_in, x.shape, self.in_dtype)
        h_in[...] = x
        d_in = self._buffer(name_in, h_in.nbytes)
        out_shape = tuple(self.context.get_tensor_shape(name_out))
        h_out = self._pinned(name_out, out_shape, self.out_dtype)
        d_out = self._buffer(name_out, h_out.nbytes)
        self.cuda.htod(d_in, h_in)
        self.context.set_tensor_address(name_in, self.cuda.ptr(d_in))
        self.context.set_tensor_address(name_out, self.cuda.ptr(d_out))
        start, end = self._events
        self.cuda.record(start)
        if not self.context.execute_async_v3(self.cuda.stream_handle):
            raise RuntimeError("TensorRT execution failed")
        self.cuda.record(end)
        self.cuda.dtoh(h_out, d_out)
        self.cuda.sync()
        self.last_gpu_ms = self.cuda.elapsed_ms(start, end)
        return h_out.astype(np.float32)

    def sync(self) -> None:
        self.cuda.sync()

    def device_memory_mb(self) -> float:
        """Device memory the loaded engine holds (measured before/after load: weights, activations, I/O)."""
        return self.gpu_mem_mb

    def device_name(self) -> str:
        return self.cuda.device_name()

    def close(self) -> None:
        """Free the buffers, then the context, engine and runtime (in that order), then the timing events and the
        stream, while the CUDA context lives. Idempotent; ``with TrtRunner(...)`` calls it, and so does the exit of
        a process that left a runner open."""
        import atexit

        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)  # the exit hook held the runner (engine, context) alive until the process ended
        for buf, _ in self._buffers.values():
            self.cuda.free(buf)
        self._buffers.clear()
        for h in self._host.values():
            self.cuda.free_pinned(h)
        self._host.clear()
        for attr in ("context", "engine", "runtime"):
            if hasattr(self, attr):
                delattr(self, attr)
        self.cuda.close(self._events)
        self._events = ()


def _sidecar(engine_path: str) -> dict:
    try:
        with open(str(engine_path) + ".json") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}
