"""Content fingerprints of data files: a blake2b of every file's bytes, so an edit that keeps a file's size (pixels
changed in place) is never taken for "unchanged". The digests are cached by (path, size, mtime_ns), in the run folder
(``file_hashes.json``) and in this process, so a re-run over a large folder reads only the files that changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from concurrent.futures import ThreadPoolExecutor

from edgeres_deploy.fsio import write_json_atomic

CACHE_NAME = "file_hashes.json"
_CHUNK = 1 << 20
_MEMO: dict = {}  # abspath -> (size, mtime_ns, digest), shared by every FileHashes of this process


def content_digest(path) -> str:
    """The blake2b (128-bit) of a file's bytes."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_cache(path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except (OSError, ValueError):
        return {}  # missing, truncated or foreign: the files are simply hashed again
    if not isinstance(obj, dict) or not isinstance(obj.get("files"), dict):
        return {}
    out = {}
    for p, v in obj["files"].items():
        if isinstance(v, list) and len(v) == 3 and all(isinstance(x, int) for x in v[:2]) and isinstance(v[2], str):
            out[p] = tuple(v)
    return out


class FileHashes:
    """Digests of files by content; ``cache_path`` (optional) holds them between runs."""

    def __init__(self, cache_path=None):
        self.cache_path = cache_path
        self.used: dict = {}
        if cache_path is not None and os.path.isfile(cache_path):
            for p, v in _read_cache(cache_path).items():
                _MEMO.setdefault(p, v)

    def digests(self, paths) -> list:
        """One digest per path, in order. A file that cannot be read (a dangling link, a link loop) is fingerprinted
        as "missing", anything that is not a regular file (a FIFO, a device) as "not-a-file", never opened."""
        paths = [os.path.abspath(p) for p in paths]
        out, todo = {}, {}
        for p in paths:
            try:
                st = os.stat(p)
            except OSError:
                out[p] = "missing"
                continue
            if not stat.S_ISREG(st.st_mode):
                out[p] = "not-a-file"
                continue
            hit = _MEMO.get(p)
            if hit is not None and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
                out[p] = hit[2]
                self.used[p] = hit
            else:
                todo[p] = (st.st_size, st.st_mtime_ns)
        if todo:
            with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) + 1)) as ex:  # hashlib frees the GIL
                for p, d in zip(todo, ex.map(_safe_digest, todo)):
                    out[p] = d
                    if d != "missing":
                        _MEMO[p] = self.used[p] = (*todo[p], d)
        return [out[p] for p in paths]

    def save(self) -> None:
        """Write the digests used by this run to the cache file (only those: a folder's old files drop out)."""
        if self.cache_path is not None:
            write_json_atomic(self.cache_path, {"files": {p: list(v) for p, v in sorted(self.used.items())}})


def _safe_digest(path) -> str:
    try:
        return content_digest(path)
    except OSError:
        return "missing"
