"""`edgeres deploy --device` and `edgeres bench --device`: the same on-device measurement as `optimize --device`
(edgeres.device.measure), for a finished run's bundle or for one ONNX file."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

from edgeres.errors import EdgeresError

_log = logging.getLogger("edgeres.device")


def deploy_on_devices(run_dir, make_bundle, devices, log=None) -> dict:
    """Connect and check the devices, then ``make_bundle()`` (edgeres.stage_commands.bundle_command), measure the bundle on
    each device and fold the rows into the run's report; returns {"bundle", "rows", "results": [(address, result)]}."""
    import yaml

    from edgeres.data import resolve_data
    from edgeres.device.fleet import Fleet
    from edgeres.device.measure import measure_bundle, summary_line
    from edgeres.report import fold_into_run, read_csv
    from edgeres.targets import get_target

    log = log or _log.info
    run_dir = Path(run_dir)
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    try:
        val = resolve_data(manifest["data"]["root"]).val
    except (EdgeresError, OSError, KeyError, ValueError):
        val = None  # the data folder moved: measured without accuracy
    base = next((r for r in read_csv(run_dir / "report.csv") if (r["stage"], r["runtime"]) == ("baseline", "torch")),
                {}) if (run_dir / "report.csv").exists() else {}
    results, rows = [], []
    with Fleet(devices, log) as fleet:
        target = get_target(fleet.resolve_target(cfg["target"]))
        bundle = make_bundle()
        for s in fleet.sessions:
            res = measure_bundle(s, Path(bundle["path"]), run_dir / "device" / s.address.slug,
                                 sorted({1, target.max_batch}), cfg.get("latency_min_time", 1.0), val=val,
                                 classes=manifest["data"]["classes"], reference=bundle.get("reference_sha256"),
                                 base_top1=base.get("top1"), resume=False)
            log(summary_line(s.address, res))
            results.append((str(s.address), res))
            rows += res["rows"]
    fold_into_run(run_dir, [(f"device {a}", r["rows"]) for a, r in results])
    return {"bundle": bundle, "rows": rows, "results": results}


def bench_on_devices(artifact, pre, devices, target: str | None, data=None, batch_sizes=(1,), min_time: float = 2.0,
                     log=None) -> list:
    """Report rows of an ONNX file built and measured on each device (a minimal bundle: the model, its build spec
    and, with ``data``, validation images for the self-check and the evaluation)."""
    from edgeres.bundle import make_bundle
    from edgeres.data import resolve_data
    from edgeres.device.fleet import Fleet
    from edgeres.device.measure import measure_bundle, summary_line
    from edgeres.engine_build import onnx_build_spec
    from edgeres.runtimes import artifact_info
    from edgeres.targets import get_target

    log = log or _log.info
    if not str(artifact).endswith(".onnx"):
        raise EdgeresError(f"{artifact}: --device builds the engine on the board from an ONNX file (engines are not "
                           "portable between GPUs and TensorRT versions); give the .onnx (edgeres export / quantize)")
    info = artifact_info(artifact)
    splits = resolve_data(data) if data else None
    classes = list(info.classes or (splits.classes if splits else [])) or None
    if classes is None:
        raise EdgeresError(f"{artifact} names no classes: give --data DIR (an ImageFolder) so the bundle has them")
    rows = []
    with Fleet(devices, log) as fleet, tempfile.TemporaryDirectory(prefix="edgeres-bench-") as tmp:
        t = get_target(fleet.resolve_target(target or "auto"))
        bundle = Path(tmp) / "bundle.tar.gz"
        res = make_bundle(bundle, artifact, t, pre, classes, spec=onnx_build_spec(artifact, "model.engine", t, pre),
                          validation=splits.val if splits else None, extra={"source_run": "edgeres bench"})
        for s in fleet.sessions:
            out = measure_bundle(s, bundle, Path(tmp) / s.address.slug, list(batch_sizes), min_time,
                                 val=splits.val if splits else None, classes=classes,
                                 reference=res.get("reference_sha256"), resume=False)
            log(summary_line(s.address, out))
            rows += out["rows"]
    return rows
