"""Compressed bombs in model archives: a zip (torch.save, TorchScript, torch.export) whose members DECLARE far more
uncompressed bytes than the file could plausibly hold is refused from its central directory, before torch reads
(and inflates) any storage. torch.save and torch.export store tensors uncompressed, so a real checkpoint declares
about its own size; torch's reader allocates what a member declares, so the declared sizes bound what loading costs.
"""

from __future__ import annotations

import io
import os
import zipfile

from edgeres.errors import ModelFileError

MAX_RATIO = 8  # declared uncompressed bytes per byte of file (real checkpoints: about 1)
SLACK = 64 << 20  # plus this much: small archives that compress a little (metadata, code) are never refused
MAX_TOTAL = 64 << 30  # and never more than this in all, whatever the file's size


def check_zip_sizes(src, where) -> None:
    """Raise ModelFileError naming ``where`` if the zip ``src`` (a path or bytes) declares more uncompressed bytes
    than ``MAX_RATIO`` x its size + ``SLACK`` (or ``MAX_TOTAL``). Anything that is not a readable zip passes: the
    loader gives its own message."""
    size = len(src) if isinstance(src, (bytes, bytearray)) else os.path.getsize(src)
    try:
        with zipfile.ZipFile(io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else src) as z:
            infos = z.infolist()
    except (OSError, zipfile.BadZipFile, ValueError, EOFError):
        return
    declared = sum(i.file_size for i in infos)
    limit = min(MAX_TOTAL, size * MAX_RATIO + SLACK)
    if declared > limit:
        big = max(infos, key=lambda i: i.file_size)
        raise ModelFileError(
            f"{where}: its zip members declare {_mib(declared)} uncompressed in a {_mib(size)} file (the largest, "
            f"{big.filename}, {_mib(big.file_size)}), over the {_mib(limit)} a model file of this size may hold: a "
            "compressed bomb, refused before reading it. torch.save writes tensors uncompressed; re-save the model "
            "with torch.save(model.state_dict(), ...)")


def _mib(n: int) -> str:
    return f"{n / (1 << 20):,.1f} MiB"
