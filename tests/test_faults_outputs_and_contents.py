"""Issue 25 items 5 and 6, inputs that change or collide: a data file edited in place (same size) is never taken for
"unchanged" (the fingerprint covers contents, cached by path, size and mtime), and an output folder inside (or
holding) an input is refused before any work."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from edgeres.errors import StageSkipped
from edgeres.pipeline import OptimizeConfig, Pipeline
from edgeres.stages.base import Stage


def _cfg(model, out, data, **kw):
    return OptimizeConfig(**{**dict(model=str(model), out=str(out), data=str(data), target="jetson", calib_size=20,
                                    latency_min_time=0.1, measure_memory=False, batch_size=16, latency_batch_sizes=[1]), **kw})


def _rewrite_same_size(path: Path, seed: int) -> None:
    """New pixels, same file size: an uncompressed PNG of the same dimensions."""
    from PIL import Image

    w, h = Image.open(path).size
    pixels = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="PNG", compress_level=0)


class _Baseline(Stage):
    """The baseline stage's place in the run, without its measurements: whether it ran is what is tested."""

    name, runtime = "baseline", "torch"

    def run(self, ctx):
        raise StageSkipped("probe", runtime="torch")


def _run_baseline(cfg) -> list:
    log = []
    Pipeline(cfg, stages=(_Baseline(),), log=log.append).run()
    return log


@pytest.fixture()
def own_data(tmp_path, demo_data):
    d = tmp_path / "data"
    shutil.copytree(demo_data, d)
    img = sorted((d / "val").rglob("*.*"))[0]
    _rewrite_same_size(img, 0)
    return d, img


def test_pixels_edited_in_place_redo_the_data_stages(own_data, tiny_ckpt, tmp_path):
    data, img = own_data
    cfg = _cfg(tiny_ckpt, tmp_path / "run", data)
    assert "[1/1] baseline ..." in _run_baseline(cfg)
    assert "[1/1] baseline: unchanged, reused (skipped)" in _run_baseline(cfg)
    size = img.stat().st_size
    _rewrite_same_size(img, 1)
    assert img.stat().st_size == size
    log = _run_baseline(cfg)
    assert "[1/1] baseline ..." in log, log  # redone: the accuracy of the old pixels is stale
    assert (tmp_path / "run" / "file_hashes.json").is_file()


def test_calibration_image_edited_in_place_redoes_the_stages(own_data, tiny_ckpt, tmp_path):
    data, _ = own_data
    calib = tmp_path / "calib"
    shutil.copytree(data / "val", calib)
    from edgeres.calibration import calibration_set_from

    img = Path(calibration_set_from(calib, 20).paths[0])  # an image the calibration set uses
    _rewrite_same_size(img, 2)
    assert img in [Path(p) for p in calibration_set_from(calib, 20).paths]
    cfg = _cfg(tiny_ckpt, tmp_path / "run", data, calib=str(calib))
    assert "[1/1] baseline ..." in _run_baseline(cfg)
    assert "[1/1] baseline: unchanged, reused (skipped)" in _run_baseline(cfg)
    _rewrite_same_size(img, 3)
    assert "[1/1] baseline ..." in _run_baseline(cfg)


def test_content_hashes_are_cached_by_size_and_mtime(tmp_path, monkeypatch):
    """A re-run reads no file that kept its size and mtime; one whose mtime moved is read again."""
    from edgeres.data import filehash

    files = [tmp_path / f"{i}.bin" for i in range(5)]
    for i, f in enumerate(files):
        f.write_bytes(bytes([i]) * 1000)
    cache = tmp_path / "run" / filehash.CACHE_NAME
    first = filehash.FileHashes(cache)
    d1 = first.digests(files)
    first.save()
    assert len(set(d1)) == 5
    monkeypatch.setattr(filehash, "_MEMO", {})  # a new process: only the cache file remembers
    read = []
    real = filehash.content_digest
    monkeypatch.setattr(filehash, "content_digest", lambda p: read.append(p) or real(p))
    assert filehash.FileHashes(cache).digests(files) == d1 and read == []
    files[2].write_bytes(b"\x07" * 1000)  # same size, new bytes
    d2 = filehash.FileHashes(cache).digests(files)
    assert read == [str(files[2])] and d2[2] != d1[2] and d2[:2] == d1[:2]


def test_validation_split_edited_in_place_is_shipped_again(own_data):
    """The device's copy of the validation split is keyed by contents too: an image edited in place (same size) is
    a new key, so the device never measures the old pixels."""
    from edgeres.data import resolve_data
    from edgeres.device.session import DeviceSession

    data, img = own_data
    session = DeviceSession.__new__(DeviceSession)
    folders = []
    session.ship = lambda make, folder, *a: folders.append(folder)
    splits = resolve_data(data)
    session.ship_data(splits.val, splits.classes)
    session.ship_data(splits.val, splits.classes)
    _rewrite_same_size(img, 1)
    session.ship_data(splits.val, splits.classes)
    assert folders[0] == folders[1] != folders[2]


# ---------------------------------------------------------------------------------------- item 6: out among inputs
@pytest.fixture()
def inputs(tmp_path, demo_data, tiny_ckpt):
    """A private copy of the data (a run that wrongly went ahead would write into it) and of the model."""
    data = tmp_path / "data"
    shutil.copytree(demo_data, data)
    model = tmp_path / "m.pt"
    shutil.copy(tiny_ckpt, model)
    return data, model


def _files(folder: Path) -> list:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("case", ["out-inside-data", "out-is-data", "out-inside-calib", "out-holds-model"])
def test_output_folder_among_the_inputs_is_refused_before_any_work(inputs, tmp_path, case):
    from test_faults import fails_cleanly, run

    data, model = inputs
    calib = tmp_path / "calib"
    shutil.copytree(data / "val", calib)
    args = {"--model": model, "--data": data, "--calib": calib}
    out = {"out-inside-data": data / "runs" / "r", "out-is-data": data, "out-inside-calib": calib / "r",
           "out-holds-model": tmp_path / "r"}[case]
    if case == "out-holds-model":  # the model of an earlier run's stage, with --out that run
        (out / "prune").mkdir(parents=True)
        args["--model"] = shutil.copy(model, out / "prune" / "model.pt")
    before = {d: _files(d) for d in (data, calib, tmp_path / "r") if d.exists()}
    flags = [str(x) for kv in args.items() for x in kv]
    res = run("optimize", *flags, "--out", out, "--target", "jetson", "--prune", "0", "--latency-min-time", "0.1")
    fails_cleanly(res, f"output folder {out}", "a run must not write among its inputs", "--out")
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert {d: _files(d) for d in before} == before  # nothing written, not even an empty folder


def test_output_folder_inside_the_data_the_model_records_is_refused(inputs, tmp_path):
    """No --data: the data folder recorded in the checkpoint is the input, and is checked the same way."""
    from test_faults import fails_cleanly, run

    from edgeres.models import load_model
    from edgeres.models.checkpoint import save_checkpoint

    data, model = inputs
    lm = load_model(model)
    lm.meta.data_root = str(data)
    save_checkpoint(model, lm.model, lm.meta)
    before = _files(data)
    res = run("optimize", "--model", model, "--out", data / "run", "--target", "jetson", "--prune", "0")
    fails_cleanly(res, f"output folder {data / 'run'} is inside the data folder recorded in {model}")
    assert _files(data) == before


def test_demo_layout_is_allowed(tmp_path):
    """`edgeres demo` keeps its data and model beside the run's files (out/data, out/model.pt): not among them."""
    from edgeres.pipeline import check_out_apart

    out = tmp_path / "demo"
    check_out_apart(out, {"--model": out / "model.pt", "--data": out / "data", "--calib": None})
    with pytest.raises(Exception, match="holds --data"):
        check_out_apart(out, {"--data": out / "baseline" / "data"})
