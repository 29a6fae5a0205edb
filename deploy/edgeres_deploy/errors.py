"""What the on-device runtime says when it cannot run a model, in two kinds (standard library only; Python 3.8+).

* :class:`BackendUnavailable`: *cannot run here* -- a tool that is not installed (:class:`MissingTool`, raised by
  ``envinfo.import_optional`` with the command that installs it), no CUDA device, no engine built yet. A command
  says why and the fix; the host (edgeres) translates it into its own ``edgeres.errors.Unavailable`` in one place
  (``edgeres/runtimes/base.py: device_errors``), which a report records as ``skipped``.
* :class:`ModelLoadError`: the runtime is here but refuses this model file -- ONNX Runtime cannot load it, OpenVINO
  cannot compile it, TensorRT cannot deserialize the engine. The same class for every runtime (a RuntimeError, so
  the command line prints it as one line); the host turns it into ``edgeres.errors.ModelFileError``.

Anything else a backend raises (a crash, a wrong-shaped output) is a real failure and is never said as either.
"""

from __future__ import annotations


class BackendUnavailable(Exception):
    """The backend cannot run here; the message says why (and the fix where there is one)."""


class MissingTool(BackendUnavailable):
    """An optional tool (a Python module, or onnxruntime-gpu's CUDA provider) is not installed; ``fix`` is the command
    that installs it."""

    def __init__(self, tool: str, reason: str, fix: str, what: str = "not importable"):
        self.tool, self.fix = tool, fix
        super().__init__(f"{tool} {what} ({reason}); fix: {fix}")


class ModelLoadError(RuntimeError):
    """The runtime is here but cannot load this model file; the message names the file and what the runtime said."""


def first_line(e: BaseException, last: bool = False, limit: int = 300) -> str:
    """One line of an exception's message (the first, or the last: OpenVINO puts its reason last), or its type."""
    lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
    return (lines[-1] if last else lines[0]).strip()[:limit] if lines else type(e).__name__
