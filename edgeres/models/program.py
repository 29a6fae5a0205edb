"""``torch.export`` programs: how a model whose Python class edgeres does not know is written and read back.

A pruned custom ResNet (a CIFAR-style one, say) cannot be rebuilt from edgeres's records: its class lives in the
user's code. Its ``torch.export`` program can: the graph is plain ATen operators (a JSON schema, no Python code) and
the weights are raw tensor bytes, so it reloads with torch alone.

``torch.export.load`` itself falls back to full unpickling when a pickled member does not load as plain data, so
before handing it a file every pickled member is opened with ``weights_only=True`` first; a file that needs more is
refused unless the user trusts it.
"""

from __future__ import annotations

import io
import json
import zipfile

import torch
from torch import nn

from edgeres.errors import ModelFileError

MAX_BATCH = 4096


class ExportedModule(nn.Module):
    """An exported program as an ``nn.Module``: inference only (BatchNorm uses its running statistics).

    ``state_dict`` keys are the original module's (``layer1.0.conv1.weight``), so its weights load back into the
    user's own class. (This module is imported lazily: importing edgeres does not import torch.)
    """

    def __init__(self, gm):
        super().__init__()
        self.program = gm

    def train(self, mode: bool = True):  # the graph was exported in eval mode; it has no train mode to switch to
        self.training = mode
        return self

    def forward(self, x):
        return self.program(x)

    def state_dict(self, *args, **kwargs):
        return self.program.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.program.load_state_dict(state_dict, strict=strict, assign=assign)


def export_program(model, size: int) -> bytes:
    """``torch.export`` the model (eval mode, dynamic batch) and return the ``.pt2`` archive's bytes."""

    was_training = model.training
    model.eval()
    try:
        x = torch.randn(2, 3, size, size)
        batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
        ep = torch.export.export(model, (x,), dynamic_shapes=({0: batch},))
        buf = io.BytesIO()
        torch.export.save(ep, buf)
        return buf.getvalue()
    finally:
        model.train(was_training)


def is_pt2(data_or_path) -> bool:
    """A ``torch.export`` archive: a zip holding ``*/archive_format`` that reads ``pt2``."""
    try:
        src = io.BytesIO(data_or_path) if isinstance(data_or_path, (bytes, bytearray)) else str(data_or_path)
        if not zipfile.is_zipfile(src):
            return False
        if isinstance(src, io.BytesIO):
            src.seek(0)
        with zipfile.ZipFile(src) as z:
            names = [n for n in z.namelist() if n.rsplit("/", 1)[-1] == "archive_format"]
            return any(z.read(n).strip() == b"pt2" for n in names)
    except (OSError, zipfile.BadZipFile):
        return False


def _raw_members(z: zipfile.ZipFile) -> set[str]:
    """Members the archive's own payload configs (``*_weights_config.json``, ``*_constants_config.json``) list with
    ``use_pickle: false``: raw tensor bytes that ``torch.export.load`` reads with ``frombuffer``, never unpickles.
    Their first byte is data (a weight may well start with 0x80), so they must not be taken for pickles."""

    raw = set()
    for name in z.namelist():
        if not (name.endswith("_weights_config.json") or name.endswith("_constants_config.json")):
            continue
        try:
            entries = json.loads(z.read(name)).get("config", {})
        except (ValueError, AttributeError):
            continue  # an unreadable config: nothing is taken as raw, so every member is checked
        base = name.rsplit("/", 1)[0]
        raw.update(f"{base}/{e['path_name']}" for e in entries.values()
                   if isinstance(e, dict) and e.get("use_pickle") is False and isinstance(e.get("path_name"), str))
    return raw


def _needs_pickle(data: bytes, where="") -> str | None:
    """The first pickled member that does not load as plain data (tensors, containers), or None. A member that is
    itself a zip is checked for a compressed bomb first (edgeres.models.zipguard)."""
    from edgeres.models.zipguard import check_zip_sizes

    check_zip_sizes(data, where)

    with zipfile.ZipFile(io.BytesIO(data)) as z:
        raw = _raw_members(z)
        for name in z.namelist():
            if name in raw:
                continue
            blob = z.read(name)
            if blob[:2] == b"PK" or blob[:1] == b"\x80":
                check_zip_sizes(blob, f"{where} (member {name})")
                try:
                    torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
                except Exception:  # noqa: BLE001 - anything that is not plain data
                    return name
    return None


def load_program(data: bytes, where, trust_model: bool = False):
    """An ``ExportedModule`` from ``.pt2`` bytes; refuses members that need unpickling unless ``trust_model``."""

    member = _needs_pickle(data, where)
    if member is not None and not trust_model:
        raise ModelFileError(f"{where}: the torch.export program holds a pickled object ({member}) that is not plain "
                             "data; unpickling it can run arbitrary code. Pass --trust-model if you trust its source")
    try:
        ep = torch.export.load(io.BytesIO(data))
        gm = ep.module()
    except Exception as e:  # noqa: BLE001
        raise ModelFileError(f"{where}: the torch.export program does not load ({e.__class__.__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''}); re-export it with this torch version") from None
    return ExportedModule(gm).eval()
