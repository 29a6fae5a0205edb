"""Bundle files: the manifest check every command runs first, labels, preprocessing, build settings, CSV rows."""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path

from edgeres_deploy.metrics import REPORT_COLUMNS


class BundleError(Exception):
    """The bundle is incomplete or its files do not match the manifest."""


def find_root(explicit: str | None = None) -> Path:
    """The bundle root: --bundle, else the current directory, else the folder above this package."""
    for cand in ([explicit] if explicit else []) + [os.getcwd(), str(Path(__file__).resolve().parent.parent)]:
        if cand and (Path(cand) / "manifest.json").is_file():
            return Path(cand)
    raise BundleError("no manifest.json here: run from the unpacked bundle's root, or pass --bundle DIR")


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify(root: Path) -> list:
    """Problems with the bundle (empty: every file in the manifest is present and matches its sha256)."""
    try:
        manifest = json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError) as e:
        return [f"manifest.json unreadable: {e}"]
    problems = []
    for name, digest in sorted(manifest.get("files", {}).items()):
        path = root / name
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif sha256(path) != digest:
            problems.append(f"{name}: sha256 differs from the manifest (modified or corrupt)")
    if not manifest.get("files"):
        problems.append("manifest.json lists no files")
    return problems


def require_verified(root: Path) -> dict:
    problems = verify(root)
    if problems:
        raise BundleError("bundle verification failed; refusing to use it:\n  " + "\n  ".join(problems))
    return json.loads((root / "manifest.json").read_text())


def labels(root: Path) -> list:
    return [ln.strip() for ln in (root / "labels.txt").read_text().splitlines() if ln.strip()]


def build_settings(root: Path) -> dict:
    p = root / "build.json"
    return json.loads(p.read_text()) if p.is_file() else {}


def upsert_csv(path, row: dict) -> None:
    """Add ``row`` to a report-schema CSV, merging it into an existing row of the same stage/runtime/batch."""
    rows = []
    if os.path.exists(path):
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    key = (row.get("stage"), row.get("runtime"), str(row.get("batch_size") or ""))
    for r in rows:
        if (r["stage"], r["runtime"], r["batch_size"]) == key:
            r.update({k: v for k, v in row.items() if v not in (None, "")})
            break
    else:
        rows.append({c: row.get(c) for c in REPORT_COLUMNS})
    from edgeres_deploy.fsio import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=REPORT_COLUMNS, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({c: ("" if r.get(c) is None else r.get(c)) for c in REPORT_COLUMNS})
