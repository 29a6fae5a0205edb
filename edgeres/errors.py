"""Errors that are the user's to fix: the CLI prints them as one line and exits 1, without a traceback."""


class EdgeresError(Exception):
    """A failure with a message that names the file and the fix."""


class DataError(EdgeresError):
    """Bad or missing images / data folders."""


class ModelFileError(EdgeresError):
    """A model file that cannot be read, or should not be read without trust; also a file a runtime refuses to load
    (ONNX Runtime, OpenVINO, TensorRT: the same class for each)."""


class ConfigError(EdgeresError):
    """A config value of the wrong type or out of range; ``key`` names it."""

    def __init__(self, key: str, need: str, value):
        self.key, self.need, self.value = key, need, value
        super().__init__(f"{key}: {need} (got {value!r})")


class Unavailable(EdgeresError):
    """Cannot run here, and why (with the fix where there is one): a runtime or tool that is not installed, no GPU or
    no CUDA provider, a target whose runtime this host does not have. The one exception for it on the host: the
    pipeline loop records a stage that raises it as ``skipped`` (docs/design.md §2), a measurement records its row as
    ``skipped``, the latency search falls back to MACs, and a CLI command prints it as one line (exit 1). The device
    runtime's ``BackendUnavailable`` becomes this in one place (``edgeres.runtimes.base.device_errors``).

    ``runtime``: the runtime of the skipped report row (default: the stage's own); ``info``: what the stage still has
    to say (e.g. the trtexec line to run on the device).
    """

    def __init__(self, reason: str, runtime: str | None = None, info: dict | None = None):
        super().__init__(reason)
        self.runtime, self.info = runtime, dict(info or {})


class StageSkipped(Exception):
    """A stage that does not run by design (``--prune 0``; a target without INT8): the pipeline loop records it as
    ``skipped`` with ``str(e)`` as the reason, as it does :class:`Unavailable` (what cannot run *here*).

    ``runtime``: the runtime of the skipped report row (default: the stage's own); ``artifacts`` and ``info``: what
    the stage still produced (e.g. the trtexec line to run on the device).
    """

    def __init__(self, reason: str, runtime: str | None = None, artifacts: dict | None = None,
                 info: dict | None = None):
        super().__init__(reason)
        self.runtime, self.artifacts, self.info = runtime, dict(artifacts or {}), dict(info or {})


def require_path(path, want: str, what: str, fix: str = "", error: type = EdgeresError):
    """``path`` as a Path if it is a ``want`` ("file" or "folder"); else ``error`` with one line naming it, what it is
    instead (missing, the other kind, a named pipe or device, which is never opened: it could block forever) and
    ``fix``. Every path a command reads is checked with this before it is used."""
    from pathlib import Path

    from edgeres_deploy.fsio import kind_problem

    problem = kind_problem(path, want, what)
    if problem:
        raise error(problem + (f"; {fix}" if fix else ""))
    return Path(path)


def describe_oserror(e: OSError) -> str:
    """One line for a file-system error: the path, what went wrong, and what to do about it."""
    import errno

    path = e.filename if e.filename is not None else "a file"
    if e.filename2 is not None:
        path = f"{path} -> {e.filename2}"
    what = e.strerror or str(e)
    fix = {
        errno.ENOSPC: "free some space or write somewhere else (e.g. another --out)",
        errno.EDQUOT: "free some space or write somewhere else (e.g. another --out)",
        errno.EROFS: "the file system is read-only; write somewhere else (e.g. another --out)",
        errno.EACCES: "you lack permission there; fix the permissions or choose another path",
        errno.EPERM: "you lack permission there; fix the permissions or choose another path",
        errno.ENOTDIR: "a part of that path is a file, not a folder; choose another path",
        errno.EISDIR: "that path is a folder; give a file name",
        errno.ENOENT: "check the path",
        errno.ELOOP: "the path is a symbolic-link loop; fix or remove the link",
        errno.ENAMETOOLONG: "use a shorter path",
    }.get(e.errno, "check the path and the disk")
    return f"{path}: {what}; {fix}"
