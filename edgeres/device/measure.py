"""A run's bundle measured on one device: shipped, built, checked, benchmarked, evaluated; its rows for the report.

What one device finished is recorded in the run directory (``device/<device>/result.json``, written last and
atomically, keyed by the bundle, the data, the device's state and the measurement settings), so a run stopped by a
fault on a later device does not measure the earlier ones again when it resumes.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import time
from pathlib import Path

from edgeres.device.rows import device_rows
from edgeres.report import parse_csv
from edgeres.utils import read_stage_record, sha256_file, sha256_json, write_json_atomic, write_text_atomic


def manifest_sha256(bundle) -> str | None:
    """The sha256 of the bundle's manifest.json (what ``EDGERES_MANIFEST_SHA256`` pins on the device)."""
    try:
        with tarfile.open(bundle) as tar:
            f = tar.extractfile("manifest.json")
            return hashlib.sha256(f.read()).hexdigest() if f else None
    except (OSError, KeyError, tarfile.TarError):
        return None


def timing_key(info) -> str:
    """The shared timing cache's name on a board: a cache is only valid for one GPU and one TensorRT."""
    raw = f"{info.board_short or 'board'}-trt{info.tensorrt or 'unknown'}"
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in raw)


def measure_bundle(session, bundle: Path, out_dir: Path, batch_sizes: list, min_time: float,
                   val: list | None = None, classes: list | None = None, reference: str | None = None,
                   base_top1: float | None = None, resume: bool = True) -> dict:
    """{"rows", "build", "seconds", "ssh_seconds", "reused"} for ``bundle`` on ``session``'s device. ``resume``:
    take a result this run already finished on this device (same key) instead of measuring again."""
    out_dir = Path(out_dir)
    info = session.info
    key = sha256_json({"bundle": sha256_file(bundle), "device": str(session.address), "label": info.label(),
                       "batch": list(batch_sizes), "min_time": min_time, "reference": reference,
                       "data": sorted(str(p) for p, _ in (val or [])), "base_top1": base_top1})
    done = read_stage_record(out_dir / "result.json") if resume else None
    if done and done.get("key") == key and done.get("status") == "ok":
        session.log(f"{session.address}: already measured in this run, reused")
        return {**done, "reused": True}
    t0 = time.perf_counter()
    r0, s0 = session.remote_seconds, session.transport.stats["seconds"]
    write_json_atomic(out_dir / "probe.json", info.to_dict())
    root = session.ship_bundle(bundle, manifest_sha256(bundle))
    data = session.ship_data(val, classes) if val else None
    build = session.build(root, timing_key(info))
    text = session.measure(root, batch_sizes, min_time, reference=reference, data=data)
    write_text_atomic(out_dir / "device.csv", text)
    rows = device_rows(parse_csv(io.StringIO(text), f"{session.address}'s CSV"), info.label(), build, base_top1)
    wall = time.perf_counter() - t0
    remote = session.remote_seconds - r0
    result = {"status": "ok", "key": key, "rows": rows, "build": build, "seconds": round(wall, 3),
              "device_seconds": round(remote, 3), "ssh_seconds": round(session.transport.stats["seconds"] - s0, 3),
              "overhead_seconds": round(wall - remote, 3), "device": str(session.address), "label": info.label()}
    write_json_atomic(out_dir / "result.json", result)  # last: a device is "done" only once this file exists
    return {**result, "reused": False}


def summary_line(address, result: dict) -> str:
    eng = [r for r in result["rows"] if r["stage"] == "engine" and r.get("latency_p50_ms") is not None]
    chk = next((r for r in result["rows"] if r["stage"] == "check"), None)
    parts = [f"{address}: " + ", ".join(f"batch {r['batch_size']} p50 {r['latency_p50_ms']:.3f} ms" for r in eng)]
    if chk:
        parts.append(f"check {'passed' if chk['status'] == 'ok' else 'FAILED'}")
    parts.append(f"{result['overhead_seconds']:.1f} s of transfer and ssh overhead")
    return "; ".join(parts)


