"""The runner every host runtime is: one lifecycle, one way to say "cannot run here".

A runner is made cheaply -- it only remembers what to load -- and holds nothing until it is opened. ``open`` loads the
artifact (a PyTorch model on its device, an ONNX Runtime session, an OpenVINO compiled model, a TensorRT engine with
its device memory), ``run`` runs a float32 NCHW batch to logits, ``close`` releases all of it. Use it as a context
manager (``with load_runtime(...) as rt:``): the ``with`` block closes what it opened, whatever happens inside, so
sessions, engines and CUDA memory never outlive their measurement. ``with`` nests: an inner ``with`` on a runner
that is already open (``metrics.run_logits`` inside ``measure``) leaves it open for the outer one.

Errors: :class:`~edgeres.errors.Unavailable` when the runtime cannot run here (the report says ``skipped``),
:class:`~edgeres.errors.ModelFileError` when it refuses the file, the same for every runtime; the device runtime's
own errors become these in one place, :func:`device_errors`. A wrong-shaped output is a real failure
(:class:`~edgeres.errors.EdgeresError`), never a skip.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from edgeres.errors import EdgeresError, ModelFileError, Unavailable


@contextmanager
def device_errors():
    """The one place where the device runtime's errors (edgeres_deploy.errors) become the host's: BackendUnavailable
    (MissingTool included) -> :class:`Unavailable`, ModelLoadError -> :class:`ModelFileError`, same message. Anything
    else passes through unchanged."""
    from edgeres_deploy.errors import BackendUnavailable, ModelLoadError

    try:
        yield
    except BackendUnavailable as e:
        raise Unavailable(str(e)) from None
    except ModelLoadError as e:
        raise ModelFileError(str(e)) from None


class Runtime:
    """Base class of the runners. Subclasses set ``name`` and implement ``_open`` (set device, precision,
    fixed_batch), ``_run`` and ``_close``; callers use ``open``/``run``/``close`` or ``with``."""

    name = "base"
    device = "cpu"
    precision = "fp32"
    fixed_batch: int | None = None
    threads: int | None = None

    def __init__(self, artifact, threads: int | None = None, **_):
        self.artifact = str(artifact)
        self.threads = threads
        self.is_open = False
        self._depth = 0

    # ---------------------------------------------------------------------------------------------- lifecycle
    def open(self):
        """Load the artifact (once; opening an open runner does nothing). Returns the runner."""
        if not self.is_open:
            try:
                with device_errors():
                    self._open()
            except BaseException:
                self._close()  # what was made before the failure is released
                raise
            self.is_open = True
        return self

    def close(self) -> None:
        """Release the session / engine / device memory (idempotent)."""
        if self.is_open:
            self.is_open = False
            self._close()

    def __enter__(self):
        self.open()
        self._depth += 1
        return self

    def __exit__(self, *exc) -> None:
        self._depth -= 1
        if self._depth <= 0:
            self._depth = 0
            self.close()

    def __del__(self):
        if getattr(self, "is_open", False):  # as an unclosed file does: say so, then release it
            import warnings

            warnings.warn(f"the {self.name} runner of {self.artifact} was never closed: use `with`", ResourceWarning,
                          stacklevel=2)
            self.close()

    def _open(self) -> None:
        """Load the artifact; set device, precision, fixed_batch (subclasses)."""

    def _close(self) -> None:
        """Drop what ``_open`` made (also after a failed ``_open``: check what exists)."""

    # ---------------------------------------------------------------------------------------------- work
    def run(self, x: np.ndarray) -> np.ndarray:
        """Logits [N, classes] of a batch [N, 3, H, W]."""
        if not self.is_open:
            raise RuntimeError(f"the {self.name} runner of {self.artifact} is not open: use "
                               "`with load_runtime(...) as rt:` (or rt.open())")
        out = self._run(x)
        if getattr(out, "ndim", None) != 2 or len(out) != len(x):
            raise EdgeresError(f"{self.artifact} in {self.name} gave outputs of shape {tuple(np.shape(out))} for "
                               f"a batch of {len(x)}; an image classifier gives [N, classes]: re-export the model with "
                               "one logits output")
        return out

    def _run(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def sync(self) -> None:
        """Wait for queued device work (GPU runtimes)."""

    def gpu_mem_mb(self) -> float | None:
        return None

    def reset_peak_memory(self) -> None:
        """Start a new peak for :meth:`gpu_mem_mb` (runtimes whose GPU memory is a peak since a point in time)."""

    def version(self) -> str:
        return ""

    def describe(self) -> dict:
        return {"runtime": self.name, "device": self.device, "precision": self.precision,
                "version": self.version(), "threads": self.threads, "fixed_batch": self.fixed_batch}


class BackendRuntime(Runtime):
    """A runner over one of the device runtime's backends (``self.backend``: run, close, version), set by ``_open``:
    the host measures ONNX Runtime, OpenVINO and TensorRT rows with the code a bundle runs."""

    backend = None

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.backend.run(x)

    def _close(self) -> None:
        if self.backend is not None:
            self.backend.close()
            self.backend = None

    def version(self) -> str:
        return self.backend.version if self.backend is not None else ""


def gpu_label(index: int = 0) -> str:
    """``cuda:<GPU name>`` (the device column of a row measured on a GPU), ``cuda`` where torch cannot name it."""
    try:
        import torch

        return "cuda:" + torch.cuda.get_device_name(index)
    except Exception:  # noqa: BLE001 - no torch CUDA runtime to ask (e.g. onnxruntime-gpu alone)
        return "cuda"
