"""The engine record: which engine files this device built (or explicitly adopted) in a bundle, by sha256.

The manifest cannot list the engine: it is built on the device, after the bundle was made. So ``build`` (and
``adopt``) write a record of what they wrote -- the sha256 of ``model.engine``, ``model.engine.json`` and
``timing.cache``, the manifest the bundle had, and what the engine was built from (the ONNX's sha256, the TensorRT
version, the build spec; or "built externally" for an adopted one) -- and every command checks the folder against it:
an engine file the record does not vouch for is refused with one line that says how to proceed, never run, never
deleted, never overwritten without ``build --rebuild``.

The record lives outside the bundle, in this user's state folder (``$EDGERES_STATE_DIR``, else
``$XDG_STATE_HOME/edgeres/engines``, else ``~/.local/state/edgeres/engines``), one JSON file per bundle folder: a
record inside the bundle could be shipped, or planted, together with the engine it vouches for. Standard library only.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import time

FILES = ("model.engine", "model.engine.json", "timing.cache")
STATE_ENV = "EDGERES_STATE_DIR"
FORMAT = "edgeres-engine-record"


def state_dir() -> str:
    explicit = os.environ.get(STATE_ENV, "").strip()
    if explicit:
        return explicit
    base = os.environ.get("XDG_STATE_HOME", "").strip() or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "edgeres", "engines")


def record_path(root) -> str:
    """The record of the bundle folder ``root`` (keyed by its real path)."""
    key = hashlib.sha256(os.path.realpath(str(root)).encode()).hexdigest()[:24]
    return os.path.join(state_dir(), key + ".json")


def file_sha256(path) -> str | None:
    """sha256 of a regular file (a link is not followed); None if there is none."""
    try:
        # O_NONBLOCK: a named pipe planted as the engine opens at once and is refused below, never waited on
        fd = os.open(str(path), os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return None
        h = hashlib.sha256()
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _manifest_sha(root) -> str | None:
    return file_sha256(os.path.join(str(root), "manifest.json"))


def read(root) -> dict | None:
    """The record of ``root`` (None when there is none, or it is unreadable or not a record)."""
    try:
        with open(record_path(root), encoding="utf-8") as f:
            rec = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or rec.get("format") != FORMAT or not isinstance(rec.get("files"), dict):
        return None
    return rec


def present(root) -> list:
    return [name for name in FILES if os.path.lexists(os.path.join(str(root), name))]


def _how(rec: dict) -> str:
    return ("adopted" if rec.get("origin") == "adopted" else "built") + f" on this device on {rec.get('recorded_at', '?')}"


def _problem(name: str, rec: dict | None, why: str) -> str:
    if name == "timing.cache":
        fix = "delete it, or `./run.sh build --rebuild` writes a new one"
    elif name == "model.engine.json":
        fix = "`./run.sh adopt` (an engine built with trtexec) or `./run.sh build --rebuild` writes a new one"
    else:
        fix = ("if you built it yourself (trtexec), `./run.sh adopt` takes it over; `./run.sh build --rebuild` "
               "replaces it with one built here")
    return f"{name}: {why}; refusing to use it (it stays where it is): {fix}"


def problems(root) -> list:
    """One line per engine file in the bundle folder that the record does not vouch for (empty: all vouched for)."""
    names = present(root)
    if not names:
        return []
    rec = read(root)
    where = record_path(root)
    manifest = _manifest_sha(root)
    out = []
    for name in names:
        entry = (rec or {}).get("files", {}).get(name)
        if rec is None or entry is None:
            out.append(_problem(name, rec, f"not built nor adopted on this device (no record of it in {where})"))
        elif rec.get("manifest_sha256") != manifest:
            out.append(_problem(name, rec, f"{_how(rec)} for another version of this bundle (manifest.json changed)"))
        elif file_sha256(os.path.join(str(root), name)) != entry:
            out.append(_problem(name, rec, f"differs from the file {_how(rec)} (sha256 in {where})"))
    return out


def write(root, names, origin: str, built_from: dict) -> dict:
    """Record the files ``names`` of ``root`` as they are now (origin "built" or "adopted"); returns the record.
    An unwritable state folder is an OSError naming it and the fix."""
    from edgeres_deploy.fsio import write_text_atomic

    root = os.path.realpath(str(root))
    rec = {"format": FORMAT, "version": 1, "bundle": root, "manifest_sha256": _manifest_sha(root), "origin": origin,
           "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "files": {n: file_sha256(os.path.join(root, n)) for n in names if os.path.isfile(os.path.join(root, n))},
           "built_from": built_from}
    path = record_path(root)
    try:
        write_text_atomic(path, json.dumps(rec, indent=2, sort_keys=True) + "\n")
    except OSError as e:
        raise OSError(e.errno or errno.EIO, f"cannot write the engine record ({e.strerror or e}); set {STATE_ENV} to "
                      "a writable folder", path) from None
    return rec


def forget(root) -> None:
    """Drop the record of ``root`` (its engine files are then refused until built or adopted again)."""
    try:
        os.unlink(record_path(root))
    except FileNotFoundError:
        pass
