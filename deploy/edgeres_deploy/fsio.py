"""Atomic file writes, one definition for the host (edgeres) and the device (this package): numpy-, torch- and
edgeres-free, standard library only.

A file is written under a hidden temporary name beside its final name and renamed onto it only when complete, so
nothing half-written is ever visible under the final name. On any error (or Ctrl-C) the temporary file is removed.
A process killed with SIGKILL cannot clean up: its temporary name carries its pid, and the next write of the same
file (and :func:`clean_stale_tmp` over a folder) removes temporaries whose process is gone.

An OSError raised while writing carries the final path (``e.filename``), so the caller can say in one line which
file could not be written and why (read-only, no space left, not a directory, permission denied).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "clean_stale_tmp", "kind_problem", "path_kind", "tmp_name", "write_bytes_atomic", "write_json_atomic",
           "write_text_atomic"]

_TAG = "edgeres-tmp"
# .NAME.edgeres-tmp-PID-RANDOM
_TMP_RE = re.compile(r"^\.(?P<name>.+)\." + _TAG + r"-(?P<pid>\d+)-[0-9a-f]+$")


def tmp_name(final: str | os.PathLike) -> Path:
    """A fresh temporary path beside ``final`` (hidden, tagged with this process's pid)."""
    final = Path(final)
    return final.with_name(f".{final.name}.{_TAG}-{os.getpid()}-{secrets.token_hex(4)}")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's process: leave its file alone
    return True


def clean_stale_tmp(folder: str | os.PathLike, name: str | None = None, recursive: bool = False) -> list:
    """Remove temporary files of killed writers in ``folder`` (only those of ``name`` if given); returns them.

    A temporary file whose writer is still running is kept: two runs may share a folder.
    """
    folder = Path(folder)
    removed = []
    try:
        entries = list(folder.rglob(".*") if recursive else folder.glob(".*"))
    except OSError:
        return removed
    for p in entries:
        m = _TMP_RE.match(p.name)
        if not m or (name is not None and m.group("name") != name) or _alive(int(m.group("pid"))):
            continue
        with contextlib.suppress(OSError):
            if p.is_file() and not p.is_symlink():
                p.unlink()
                removed.append(p)
    return removed


def _disk_full(folder, margin: int = 1 << 20) -> bool:
    """Less than ``margin`` bytes left to an unprivileged writer in ``folder``'s filesystem."""
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):  # AttributeError: no statvfs on Windows
        return False
    return st.f_bavail * st.f_frsize < margin


def _with_path(e: OSError, path) -> OSError:
    """The same error, naming ``path`` (ENOSPC from write() names no file)."""
    if getattr(e, "filename", None) and str(e.filename) == str(path):
        return e
    new = type(e)(e.errno or errno.EIO, e.strerror or str(e), str(path))
    new.__cause__ = e
    return new


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, mode: int = 0o666) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; renamed onto ``final`` on success, removed on any error.

    The parent folder is created. The file gets ``mode`` less the umask, as a plain ``open()`` would give it.
    """
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _with_path(e, e.filename or final.parent) from None
    if final.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a directory", str(final))
    clean_stale_tmp(final.parent, final.name)
    tmp = tmp_name(final)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        os.close(fd)
    except OSError as e:
        raise _with_path(e, final) from None
    try:
        yield tmp
        os.replace(tmp, final)
    except (OSError, RuntimeError) as e:
        # torch's zip writer says "unexpected pos" and numpy's tofile "requested and written" on a full disk
        full = _disk_full(final.parent)
        with contextlib.suppress(OSError):
            tmp.unlink()
        if full and getattr(e, "errno", None) != errno.ENOSPC:
            raise _with_path(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), final) from e
        if isinstance(e, OSError):
            raise _with_path(e, final) from None
        raise
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_text_atomic(path: str | os.PathLike, text: str, newline: str | None = None) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline=newline) as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def write_json_atomic(path: str | os.PathLike, obj, indent: int | None = 2, sort_keys: bool = True) -> None:
    import json

    write_text_atomic(path, json.dumps(obj, indent=indent, sort_keys=sort_keys, default=str) + "\n")


def path_kind(path) -> str:
    """What ``path`` is, following symbolic links, without opening it: ``missing``, ``file``, ``folder``, or the name
    of a special file (a named pipe would block the reader that opens it until a writer comes: never open one).
    Other stat errors (permission, a link loop, a file as a path component) are raised as the OSError they are."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "missing"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "folder"
    for test, name in ((stat.S_ISFIFO, "named pipe (FIFO)"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device")):
        if test(mode):
            return name
    return "special file"


def kind_problem(path, want: str, what: str):
    """None when ``path`` is a ``want`` ("file" or "folder"), else the line that says what it is instead: missing,
    the other kind, or a special file; ``what`` names it ("model file", "data folder")."""
    kind = path_kind(path)
    if kind == want:
        return None
    if kind == "missing":
        return f"{what} {path} does not exist"
    if kind in ("file", "folder"):
        return f"{what} {path} is a {kind}, not a {want}"
    return f"{what} {path} is a {kind}, not a regular {want}"
