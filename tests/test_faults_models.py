"""Issue 25 item 2, a compressed bomb in a checkpoint: a model zip whose members declare far more uncompressed bytes
than the file could hold is refused from its central directory, one line naming the file, before torch inflates
any storage. The bombs here are cheap: zeros deflate ~1000:1, and they are streamed, never held in memory."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from test_faults import fails_cleanly, run

ZEROS = bytes(1 << 20)


def _deflated_copy(src: Path, dst: Path, inflate: dict | None = None) -> Path:
    """``src`` (a torch.save zip) re-packed with ZIP_DEFLATED; members named in ``inflate`` get that many MiB of
    zeros instead of their bytes (streamed)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            mib = (inflate or {}).get(info.filename.rsplit("/", 1)[-1])
            if mib is None:
                zout.writestr(info.filename, zin.read(info), zipfile.ZIP_DEFLATED)
                continue
            with zout.open(info.filename, "w", force_zip64=True) as f:
                for _ in range(mib):
                    f.write(ZEROS)
    return dst


@pytest.fixture()
def storage_bomb(tmp_path):
    """A genuine checkpoint (a torchvision-style state dict) whose one storage, 16 MiB of zeros, is deflated to a
    few KiB: loading it inflates the storage; the limits are lowered to make that a bomb."""
    import torch

    plain = tmp_path / "plain.pt"
    torch.save({"fc.weight": torch.zeros(4 << 20)}, plain)
    return _deflated_copy(plain, tmp_path / "bomb.pt")


def test_checkpoint_bomb_is_refused_before_any_storage_is_read(storage_bomb, monkeypatch):
    import torch

    from edgeres.models import zipguard

    monkeypatch.setattr(zipguard, "SLACK", 1 << 20)
    size = storage_bomb.stat().st_size
    assert size < 1 << 20
    read = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: read.append(a) or pytest.fail("torch.load ran"))
    res = run("evaluate", "--model", storage_bomb, "--data", storage_bomb.parent)
    fails_cleanly(res, str(storage_bomb), "declare 16.0 MiB uncompressed", "compressed bomb")
    assert len(res.stderr.strip().splitlines()) == 1 and not read


def test_declared_sizes_bound_by_default(tmp_path):
    """With the shipped limits: 200 MiB of zeros in a ~200 KiB file (1000:1, as the issue's 2 MB -> 2 GiB bomb) is
    refused; the same checkpoint stored plainly, and a deflated small one, are not."""
    import torch

    from edgeres.models.zipguard import check_zip_sizes

    plain = tmp_path / "plain.pt"
    torch.save({"fc.weight": torch.zeros(1000)}, plain)
    check_zip_sizes(plain, plain)
    check_zip_sizes(_deflated_copy(plain, tmp_path / "small.pt"), "small.pt")
    bomb = _deflated_copy(plain, tmp_path / "bomb.pt", inflate={"0": 200})
    assert bomb.stat().st_size < 1 << 20
    from edgeres.errors import ModelFileError

    with pytest.raises(ModelFileError, match=r"bomb\.pt: .*200\.0 MiB .*compressed bomb"):
        check_zip_sizes(bomb, bomb)


def test_bomb_nested_in_a_torch_export_program(tmp_path, monkeypatch):
    """A .pt2 member that is itself a zip (checked for pickles with torch.load) is bounded too."""
    import io

    import torch

    from edgeres.errors import ModelFileError
    from edgeres.models import program, zipguard

    monkeypatch.setattr(zipguard, "SLACK", 1 << 20)
    inner = tmp_path / "inner.pt"
    torch.save({"w": torch.zeros(1000)}, inner)
    nested = _deflated_copy(inner, tmp_path / "nested.pt", inflate={"0": 16}).read_bytes()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:  # the outer archive itself declares honestly
        z.writestr("m/archive_format", b"pt2")
        z.writestr("m/data/constants/c0", nested)
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load ran"))
    with pytest.raises(ModelFileError, match=r"m\.pt2 \(member m/data/constants/c0\): .*compressed bomb"):
        program.load_program(buf.getvalue(), "m.pt2")
