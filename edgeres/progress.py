"""What a person sees while edgeres works: log messages and progress bars, set once by the CLI's ``-q``/``-v``.

Modules log through ``logging.getLogger(__name__)`` (never ``print``); the command line calls :func:`setup_logging`:

- default: edgeres' info messages on stderr, progress bars with ETA on a terminal, libraries only warnings;
- ``-q``: warnings and errors only, no progress bars (the final table and errors still show);
- ``-v``: edgeres' debug messages and the libraries' info logs (NNCF, ONNX Runtime, OpenVINO...).

On a terminal every long step draws a tqdm bar with ETA; in a log or CI (stderr not a TTY) the bars are off and the
step logs one line per step instead (an epoch, a stage, a runtime measured), so the log stays readable.
Python callers that never call :func:`setup_logging` get Python's defaults: warnings only, bars on a terminal.
"""

from __future__ import annotations

import logging
import sys

LIBRARY_LOGGERS = ("nncf", "torch_pruning", "onnxruntime", "openvino", "matplotlib", "PIL", "urllib3")

_state = {"verbosity": 0, "bars": True, "configured": False}


class _TqdmHandler(logging.StreamHandler):
    """A stderr handler that writes above a running tqdm bar instead of through it."""

    def emit(self, record):
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def setup_logging(verbosity: int = 0) -> None:
    """``verbosity``: -1 quiet, 0 default, 1 verbose (and above: the same). Safe to call more than once."""
    _state.update(verbosity=verbosity, bars=verbosity >= 0, configured=True)
    root = logging.getLogger("edgeres")
    for h in list(root.handlers):
        if getattr(h, "_edgeres", False):
            root.removeHandler(h)
    handler = _TqdmHandler()
    handler._edgeres = True
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s" if verbosity > 0 else "%(message)s"))
    root.addHandler(handler)
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    root.setLevel(level)
    handler.setLevel(level)  # what reaches the terminal, whatever a caller sets on the logger
    for name in LIBRARY_LOGGERS:
        if name != "nncf":  # NNCF's logger is its own (created on import): see tame_library_logs
            logging.getLogger(name).setLevel(logging.INFO if verbosity > 0 else logging.WARNING)
    tame_library_logs()


def tame_library_logs() -> None:
    """Apply the verbosity to loggers that libraries configure themselves on import (NNCF writes INFO to stdout).

    Only the libraries' own handlers are turned down: their loggers keep emitting, so edgeres can still read
    what they say (the quantize stage parses NNCF's accuracy-control log).
    """
    if not _state["configured"] or "nncf.common.logging.logger" not in sys.modules:
        return  # a Python caller who never called setup_logging keeps the libraries' own settings
    level = logging.INFO if _state["verbosity"] > 0 else logging.WARNING
    for h in logging.getLogger("nncf").handlers:
        if isinstance(h, logging.StreamHandler) and not getattr(h, "_edgeres", False):
            h.setLevel(level)


CUDA_HOME_NOTICE = "No CUDA runtime is found"  # torch/utils/cpp_extension.py _find_cuda_home, torch 2.14


class _DropMessage(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def import_cpp_extension_quietly() -> None:
    """Import ``torch.utils.cpp_extension`` without its "No CUDA runtime is found, using CUDA_HOME=..." line.

    That line is logged once, at import, on a host with a CUDA build of torch and a CUDA toolkit but no GPU. NNCF
    imports the module whenever torch is importable, even to quantize an ONNX model: ``nncf.quantize`` ->
    ``get_backend`` -> ``is_torch_model`` imports ``nncf.torch`` (nncf/common/utils/backend.py, NNCF 3.4), whose
    ``extensions`` package imports ``torch.utils.cpp_extension``. Importing it first under a filter that drops that
    one message (removed right after) keeps every other record of that logger, then and later. A filter, not a
    level: torch's ``_init_logs`` resets its loggers' levels whenever torch._dynamo sets up logging.
    """
    if "torch.utils.cpp_extension" in sys.modules:
        return
    logger = logging.getLogger("torch.utils.cpp_extension")
    drop = _DropMessage(CUDA_HOME_NOTICE)
    logger.addFilter(drop)
    try:
        import torch.utils.cpp_extension  # noqa: F401
    finally:
        logger.removeFilter(drop)


def bars_enabled() -> bool:
    """Progress bars: off under ``-q`` and when stderr is not a terminal."""
    return _state["bars"] and sys.stderr.isatty()


def verbosity() -> int:
    return _state["verbosity"]


def bar(iterable=None, total=None, desc: str | None = None, unit: str = "it", enabled: bool = True, **kw):
    """A tqdm bar with ETA on a terminal; a silent pass-through under ``-q``, in a log or CI, or when not ``enabled``."""
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not (enabled and bars_enabled()),
                leave=kw.pop("leave", False), dynamic_ncols=True, file=sys.stderr, **kw)
