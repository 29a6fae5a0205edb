"""Errors that are the user's to fix: the CLI prints them as one line and exits 1, without a traceback."""


class EdgeresError(Exception):
    """A failure with a message that names the file and the fix."""


class DataError(EdgeresError):
    """Bad or missing images / data folders."""


class ModelFileError(EdgeresError):
    """A model file that cannot be read, or should not be read without trust."""


class ConfigError(EdgeresError):
    """A config value of the wrong type or out of range; ``key`` names it."""

    def __init__(self, key: str, need: str, value):
        self.key, self.need, self.value = key, need, value
        super().__init__(f"{key}: {need} (got {value!r})")


class StageSkipped(Exception):
    """What cannot run here, and why: a stage raises it, the pipeline loop catches it in one place and records the
    stage as ``skipped`` with ``str(e)`` as the reason (docs/design.md §2). Runtimes raise its subclass
    ``RuntimeUnavailable``, which a measurement turns into a ``skipped`` row.

    ``runtime``: the runtime of the skipped report row (default: the stage's own); ``artifacts`` and ``info``: what
    the stage still produced (e.g. the trtexec line to run on the device).
    """

    def __init__(self, reason: str, runtime: str | None = None, artifacts: dict | None = None,
                 info: dict | None = None):
        super().__init__(reason)
        self.runtime, self.artifacts, self.info = runtime, dict(artifacts or {}), dict(info or {})


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
