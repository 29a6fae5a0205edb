# ruff: noqa: F811 - the fixtures imported from the sibling test module are the parameters of these tests
"""The engine record on the device (issue 21 item 4, issue 25 item 1), in process against the TensorRT double: an
engine placed in the bundle is refused until adopted, an adopted one is kept, a swapped one is refused, a timing cache
seeds a build only from outside the bundle."""

import json

import trt_double
from test_check import _copy, _install, _main, _state_dir, cudart, vbundle  # noqa: F401


def _plant(root, flavour="10.3"):
    """An engine of the double written into the bundle the way trtexec would (no sidecar, no record), plus a sidecar
    holding the public onnx_sha256 and TensorRT version (what issue 25 item 1 planted)."""
    from edgeres_deploy.bundle import sha256
    from edgeres_deploy.trt import BuildSpec, build_engine

    spec = BuildSpec(onnx=str(root / "model.onnx"), engine=str(root.parent / "planted.engine"), input_shape=(3, 32, 32),
                     int8=False)
    build_engine(spec, log=lambda *a: None)
    (root / "model.engine").write_bytes((root.parent / "planted.engine").read_bytes())
    return {"onnx_sha256": sha256(root / "model.onnx"), "tensorrt_version": trt_double.FLAVOURS[flavour]}


def test_a_planted_engine_is_refused_then_adopted(vbundle, tmp_path, monkeypatch, capsys, cudart):
    """An engine placed in the bundle (e.g. by trtexec) is never run unrecorded: verify, check, bench and predict
    refuse it with one line; `adopt` reads it, records it "built externally" and checks it; from then on it is used
    and `build` keeps it until --rebuild."""
    _install(monkeypatch, "10.3", cudart)
    root = _copy(vbundle, tmp_path)
    public = _plant(root)
    (root / "model.engine.json").write_text(json.dumps(public))
    img = vbundle["val"][0][0]
    for args in (["verify"], ["check"], ["bench", "--min-runs", "1", "--min-time", "0"], ["predict", img],
                 ["check", "--backend", "onnxruntime"], ["build"]):
        assert _main(root, *args) == 1, args
        err = capsys.readouterr().err
        assert "model.engine: not built nor adopted on this device" in err and "./run.sh adopt" in err, args
    (root / "model.engine.json").unlink()
    planted = (root / "model.engine").read_bytes()
    assert _main(root, "adopt") == 0
    out = capsys.readouterr().out
    assert "adopted model.engine (built externally" in out and "PASS tensorrt" in out
    side = json.loads((root / "model.engine.json").read_text())
    assert side["built_externally"] and side["input_name"] == "input" and side["shapes"]["max"] == [8, 3, 32, 32]
    assert side["dtypes"] == {"input": "float32", "output": "float32"}
    assert _main(root, "check") == 0 and _main(root, "predict", img) == 0
    assert _main(root, "build") == 0 and "adopted" in capsys.readouterr().out
    assert (root / "model.engine").read_bytes() == planted  # kept, never rebuilt
    assert _main(root, "build", "--rebuild") == 0
    assert "replaced the previous model.engine" in capsys.readouterr().out
    assert json.loads((root / "model.engine.json").read_text())["built_externally"] is False


def test_a_swapped_or_foreign_engine_is_refused(vbundle, tmp_path, monkeypatch, capsys, cudart):
    """A recorded engine whose bytes change, an engine recorded for another version of the bundle, and a timing
    cache nobody here wrote: refused, with the way forward; nothing is deleted."""
    import hashlib

    _install(monkeypatch, "10.3", cudart)
    root = _copy(vbundle, tmp_path)
    assert _main(root, "build") == 0
    capsys.readouterr()
    data = bytearray((root / "model.engine").read_bytes())
    data[-1] ^= 0xFF
    (root / "model.engine").write_bytes(bytes(data))
    assert _main(root, "check") == 1
    assert "model.engine: differs from the file built on this device" in capsys.readouterr().err
    assert _main(root, "build", "--rebuild") == 0 and _main(root, "check") == 0
    capsys.readouterr()
    m = json.loads((root / "manifest.json").read_text())  # the bundle updated in place (another version)
    m["created"] = "2030-01-01T00:00:00Z"
    (root / "manifest.json").write_text(json.dumps(m))
    assert _main(root, "check") == 1
    assert "for another version of this bundle" in capsys.readouterr().err
    assert (root / "model.engine").exists()
    assert _main(root, "build", "--rebuild") == 0
    capsys.readouterr()
    (root / "timing.cache").write_bytes(hashlib.sha256(b"x").digest())
    assert _main(root, "verify") == 1
    assert "timing.cache: differs from the file built on this device" in capsys.readouterr().err


def test_adopt_refuses_an_engine_of_another_model(vbundle, tmp_path, monkeypatch, capsys, cudart):
    """The engine's own input shape decides: one built for 48 px images is not this bundle's model."""
    from edgeres_deploy.trt import BuildSpec, build_engine

    _install(monkeypatch, "10.3", cudart)
    root = _copy(vbundle, tmp_path)
    build_engine(BuildSpec(onnx=str(vbundle["other48"]), engine=str(tmp_path / "other.engine"), input_shape=(3, 48, 48),
                           int8=False), log=lambda *a: None)
    assert _main(root, "adopt", tmp_path / "other.engine") == 1
    err = capsys.readouterr().err
    assert "takes 3x48x48 images, the bundle's preprocessing gives 3x32x32" in err and "adoption refused" in err
    assert _main(root, "verify") == 1  # copied in, not recorded: refused, not deleted
    assert (root / "model.engine").exists()


def test_build_seeds_its_timing_cache_from_outside_the_bundle(vbundle, tmp_path, monkeypatch, capsys, cudart):
    """--timing-cache PATH (a cache shared by boards of one kind, kept outside the bundle) seeds the build; the
    bundle's own timing.cache is written and recorded; a path inside the bundle is refused."""
    _install(monkeypatch, "10.3", cudart)
    root = _copy(vbundle, tmp_path)
    shared = tmp_path / "shared.cache"
    shared.write_bytes(trt_double.timing_cache_blob())
    assert _main(root, "build", "--timing-cache", shared) == 0
    assert (root / "timing.cache").read_bytes() == shared.read_bytes() and _main(root, "verify") == 0
    capsys.readouterr()
    assert _main(root, "build", "--rebuild", "--timing-cache", root / "timing.cache") == 1
    assert "is inside the bundle" in capsys.readouterr().err


def test_build_and_adopt_speak_json_for_scripts(vbundle, tmp_path, monkeypatch, capsys, cudart):
    """--json: stdout is one JSON document (the build, its self-check), the human lines go to stderr."""
    _install(monkeypatch, "10.3", cudart)
    root = _copy(vbundle, tmp_path)
    assert _main(root, "build", "--json") == 0
    cap = capsys.readouterr()
    doc = json.loads(cap.out)
    assert doc["built"] and doc["check"]["passed"] and doc["sidecar"]["tensorrt_version"] == "10.3.0.30"
    assert "built " in cap.err
    assert _main(root, "build", "--json") == 0
    assert json.loads(capsys.readouterr().out) == {"built": False, "state": "built", "reason": json.loads(
        json.dumps("model.engine is up to date (same ONNX, same TensorRT, same build options); --rebuild rebuilds"))}
    assert _main(root, "adopt", "--json") == 0
    assert json.loads(capsys.readouterr().out) == {"adopted": False, "state": "built"}
