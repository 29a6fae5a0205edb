# ruff: noqa: F811 - the fixtures imported from the sibling test module are the parameters of these tests
"""Issue 25 item 1, an engine nothing can plant: engine files in a bundle that the device did not build (or adopt) are
refused by every command, with the manifest pin set or not, through the runtime as shipped (run.sh and
``python3 -m edgeres_deploy``); the record vouches for exact bytes and for one version of the bundle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_faults_bundle import HOW, _state_dir, bundle, deploy, made, made_image, refused, rewrite_manifest  # noqa: F401


def _plant(bundle: Path) -> dict:
    """What a hostile bundle ships beside the manifest: an engine, a sidecar holding the public onnx_sha256 and a
    TensorRT version, a timing cache."""
    from edgeres_deploy.bundle import sha256

    files = {"model.engine": b"TRTDOUBLE\nnot an engine this device built",
             "model.engine.json": json.dumps({"onnx_sha256": sha256(bundle / "model.onnx"),
                                              "tensorrt_version": "10.3.0.30", "build_spec": {}}).encode(),
             "timing.cache": b"TRTDOUBLE-TIMING\nDouble GPU\n"}
    for name, data in files.items():
        (bundle / name).write_bytes(data)
    return files


@pytest.mark.parametrize("pin", [False, True], ids=["unpinned", "pinned"])
@pytest.mark.parametrize("how", HOW)
def test_planted_engine_is_refused_by_every_command(bundle, made, tmp_path, how, pin, monkeypatch):
    """Engine files the device did not build are refused by verify, check, bench, predict and evaluate, with the
    manifest pin set or not; one line says how to proceed (adopt, or build --rebuild); nothing is deleted."""
    from edgeres_deploy.bundle import sha256

    if pin:
        monkeypatch.setenv("EDGERES_MANIFEST_SHA256", sha256(bundle / "manifest.json"))
    planted = _plant(bundle)
    img = made_image(tmp_path)
    proc = deploy(bundle, "verify", how=how)
    refused(proc, "model.engine: not built nor adopted on this device", "./run.sh adopt", "build --rebuild",
            "timing.cache: not built nor adopted")
    assert "match" not in proc.stdout
    for args in (["check"], ["check", "--backend", "onnxruntime"], ["bench", "--backend", "onnxruntime"],
                 ["predict", img, "--backend", "onnxruntime"], ["evaluate", made["data"], "--backend", "onnxruntime"]):
        proc = deploy(bundle, *args, how=how)
        refused(proc, "model.engine: not built nor adopted on this device", "./run.sh adopt")
        assert len(proc.stderr.strip().splitlines()) == 1 and "img/s" not in proc.stdout, (args, proc.stderr)
    assert {n: (bundle / n).read_bytes() for n in planted} == planted  # refused, never deleted nor overwritten


@pytest.mark.parametrize("how", HOW)
def test_recorded_engine_swapped_afterwards_is_refused(bundle, tmp_path, how):
    """The record (written as `build` writes it) vouches for exact bytes: the engine swapped after the build, or a
    record left by another version of the bundle, is refused."""
    from edgeres_deploy import engine_record

    (bundle / "model.engine").write_bytes(b"TRTDOUBLE\nbuilt here")
    engine_record.write(bundle, ["model.engine"], "built", {"tensorrt_version": "10.3.0.30"})
    proc = deploy(bundle, "verify", how=how)
    assert proc.returncode == 0 and "built on this device" in proc.stdout, proc.stderr
    (bundle / "model.engine").write_bytes(b"TRTDOUBLE\nswapped in")
    refused(deploy(bundle, "verify", how=how), "model.engine: differs from the file built on this device")
    (bundle / "model.engine").write_bytes(b"TRTDOUBLE\nbuilt here")
    rewrite_manifest(bundle, lambda m: {**m, "created": "2030-01-01T00:00:00Z"})  # another version of the bundle
    refused(deploy(bundle, "verify", how=how), "for another version of this bundle (manifest.json changed)")
