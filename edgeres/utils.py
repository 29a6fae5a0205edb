"""Small helpers shared by every stage: atomic writes (one definition with the device: edgeres_deploy.fsio), hashing."""

from __future__ import annotations

import hashlib
import json

from edgeres_deploy.bundle import sha256 as sha256_file  # one definition for host and device
from edgeres_deploy.fsio import atomic_path, clean_stale_tmp, write_bytes_atomic, write_json_atomic, write_text_atomic

__all__ = ["atomic_path", "clean_stale_tmp", "read_stage_record", "remove_empty_dirs", "save_npy_atomic",
           "sha256_file", "sha256_json", "write_bytes_atomic", "write_json_atomic", "write_text_atomic"]


def sha256_json(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def save_npy_atomic(path, arr) -> None:
    import numpy as np

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, arr)


def read_stage_record(path) -> dict | None:
    """A stage's ``stage.json``, or None when it is missing, unreadable, truncated or not a record."""
    from pathlib import Path

    try:
        rec = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    ok = isinstance(rec, dict) and isinstance(rec.get("artifacts", {}), dict) and isinstance(rec.get("status"), str)
    return rec if ok else None


def remove_empty_dirs(root) -> None:
    """Remove ``root`` and its sub-folders where they are empty (what a failed run created and left empty)."""
    from pathlib import Path

    root = Path(root)
    for d in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True) + [root]:
        try:
            d.rmdir()
        except OSError:
            pass
