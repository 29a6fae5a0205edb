"""The cost of the device in the loop, against the loopback Jetson (tests/loopback_device.py: OpenSSH's sshd on
127.0.0.1 with the TensorRT double): what ssh and the transfers add to a `--device` run, and what a second run saves.

Rows, in interleaved rounds (each round: a fresh device's first run, then a second run of the same bundle on it):

* ``first run``: ship the bundle and the validation split, build, check, bench (batch 1 and 8), evaluate;
* ``second run``: the same bundle again: nothing to send, the engine reused (``./run.sh build`` finds it up to date);
* per command: one command over the run's shared ControlMaster connection vs over a new ssh connection each time.

``overhead_s`` is the run's wall time minus the time the device itself spent in the steps (measured on the device's
clock around each step): ssh, the transfers and the waits between steps. The device's own seconds here are the CPU
running the TensorRT double, not a Jetson's; the overhead is what the loop costs on any board over loopback (a real
network adds the transfer time of the bundle: its size is in the row).

    .venv/bin/python benchmarks/bench_device.py [--rounds 3] [--arch resnet50] [--size 224] [--out benchmarks/results/device.csv]

Needs what the loopback device needs (root, mount namespaces, sshd); says why and exits 0 otherwise.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import cpu_flags, cpu_model, scratch_dir, write_csv  # noqa: E402


def make_bundle(work: Path, arch: str, size: int, data: Path):
    """An INT8 (TensorRT Q/DQ) bundle of an untrained torchvision ResNet for jetson-orin-nano, with validation images."""
    import numpy as np

    from edgeres.bundle import make_bundle as make
    from edgeres.data import Preprocess, resolve_data
    from edgeres.data.demo import make_demo
    from edgeres.engine_build import onnx_build_spec
    from edgeres.models import ModelMeta, build_model
    from edgeres.onnx_export import ExportConfig, export_onnx
    from edgeres.quant.ptq import quantize_onnx
    from edgeres.quant.settings import QuantizeConfig
    from edgeres.targets import get_target

    make_demo(data, train_per_class=2, val_per_class=10, progress=False)
    splits = resolve_data(data)
    pre, target = Preprocess(size=size), get_target("jetson-orin-nano")
    model = build_model(arch, len(splits.classes)).eval()
    export_onnx(model, work / "fp32.onnx", pre, ModelMeta(arch=arch, classes=splits.classes), ExportConfig())
    calib = np.random.default_rng(0).standard_normal((8, 3, size, size)).astype(np.float32)
    quantize_onnx(work / "fp32.onnx", work / "int8.onnx", target, calib,
                  QuantizeConfig(method="minmax", subset_size=8, bias_correction=False))
    res = make(work / "bundle.tar.gz", work / "int8.onnx", target, pre, splits.classes,
               spec=onnx_build_spec(work / "int8.onnx", "model.engine", target, pre), validation=splits.val)
    return work / "bundle.tar.gz", res, splits


def one_run(device, bundle, res, splits, out: Path, label: str) -> dict:
    from edgeres.device.fleet import Fleet
    from edgeres.device.measure import measure_bundle

    os.environ.update(device.env)
    t0 = time.perf_counter()
    with Fleet([device.url], log=lambda m: None) as fleet:
        s = fleet.sessions[0]
        r = measure_bundle(s, bundle, out, [1, 8], 0.5, val=splits.val, classes=splits.classes,
                           reference=res["reference_sha256"], resume=False)
        stats = dict(s.transport.stats)
    wall = time.perf_counter() - t0
    return {"row": label, "wall_s": wall, "device_s": r["device_seconds"], "overhead_s": wall - r["device_seconds"],
            "engine": "built" if r["build"]["built"] else "reused", "build_s": r["build"]["seconds"],
            "ssh_commands": stats["commands"], "connections": stats["connects"],
            "sent_mb": stats["bytes_up"] / 1e6}


def per_command(device, n: int) -> dict:
    """Median seconds of one trivial command: over the shared connection, and with a new ssh connection each time."""
    from edgeres.device.address import parse_address
    from edgeres.device.transport import SshTransport

    os.environ.update(device.env)
    shared, fresh = [], []
    cfg = device.ssh_config
    with SshTransport(parse_address(device.url)) as t:
        for _ in range(n):  # interleaved
            t0 = time.perf_counter()
            t.run("true", "bench")
            shared.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            subprocess.run(["ssh", "-F", str(cfg), "-o", "BatchMode=yes", "-p", str(device.port), "127.0.0.1", "true"],
                           check=True, capture_output=True, timeout=60)
            fresh.append(time.perf_counter() - t0)
    return {"shared_ms": statistics.median(shared) * 1e3, "fresh_ms": statistics.median(fresh) * 1e3}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--commands", type=int, default=20, help="commands timed per round, each way")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "device.csv"))
    args = ap.parse_args(argv)
    from loopback_device import DeviceImage, LoopbackDevice, unavailable

    why = unavailable()
    if why:
        print(f"bench_device: skipped: {why}")
        return 0
    logging.disable(logging.WARNING)
    work = scratch_dir("edgeres-bench-device-")
    bundle, res, splits = make_bundle(work, args.arch, args.size, work / "data")
    image = DeviceImage(work / "image")
    runs: dict = {"first run": [], "second run": []}
    cmds = []
    for k in range(args.rounds):
        dev = LoopbackDevice(image, work / f"dev{k}").start()
        try:
            runs["first run"].append(one_run(dev, bundle, res, splits, work / f"out{k}a", "first run"))
            runs["second run"].append(one_run(dev, bundle, res, splits, work / f"out{k}b", "second run"))
            cmds.append(per_command(dev, args.commands))
        finally:
            dev.stop()
    flags, cpu = cpu_flags(), cpu_model()
    rows = []
    for label, rs in runs.items():
        row = {"row": f"{label} ({args.arch}, {args.size} px)", "rounds": len(rs)}
        for col in ("wall_s", "device_s", "overhead_s", "build_s", "sent_mb"):
            row[col] = statistics.median(r[col] for r in rs)
        row.update(engine=rs[0]["engine"], ssh_commands=rs[0]["ssh_commands"], connections=rs[0]["connections"],
                   bundle_mb=bundle.stat().st_size / 1e6, cpu=cpu, cpu_flags=flags)
        rows.append(row)
    for key, label in (("shared_ms", "one command, shared connection"), ("fresh_ms", "one command, new connection")):
        rows.append({"row": label, "rounds": len(cmds), "command_ms": statistics.median(c[key] for c in cmds),
                     "cpu": cpu, "cpu_flags": flags})
    write_csv(args.out, rows)
    print(f"cpu flags: {flags}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
