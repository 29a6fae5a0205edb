"""What a pickle would import, read from its opcodes without running any of them (``pickletools.genops``): so that a
file that names code (``os.system``, ``builtins.eval``, a class) is reported as refused for safety, whatever pickle
protocol wrote it, instead of as a corrupt file (torch's weights-only loader only names the global for some
protocols; it calls a protocol-4 ``STACK_GLOBAL`` or a protocol-0 ``GLOBAL`` file unreadable)."""

from __future__ import annotations

import io
import pickletools
import zipfile

MAX_PICKLE_BYTES = 64 << 20  # the object pickle of a checkpoint is small (the tensors' bytes are stored beside it)
# what torch.save itself writes, and what edgeres allows under weights_only (models.load._safe_globals)
_SAFE_PREFIXES = ("torch.", "collections.OrderedDict", "argparse.Namespace", "builtins.set", "__builtin__.set", "_codecs.encode",
                  "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct", "numpy.dtype",
                  "numpy.ndarray")
_STRINGS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"}


def _stream(path) -> bytes | None:
    """The object pickle of ``path``: a torch zip's data.pkl, or the file's own bytes (a raw or legacy pickle)."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = [i for i in z.infolist() if i.filename.endswith("data.pkl")]
            if not names or names[0].file_size > MAX_PICKLE_BYTES:
                return None
            return z.read(names[0])
    with open(path, "rb") as f:
        return f.read(MAX_PICKLE_BYTES)


def _names_in(data: bytes) -> list:
    """The globals named by the pickles at the start of ``data`` (a legacy torch file holds several in a row)."""
    found, f = [], io.BytesIO(data)
    for _ in range(8):
        strings, memo, last = [], {}, None  # last: the string just pushed (None after any other push)
        try:
            for op, arg, _pos in pickletools.genops(f):
                name = op.name
                if name in ("GLOBAL", "INST"):
                    found.append(str(arg).replace(" ", ".").replace("\n", "."))
                elif name == "STACK_GLOBAL" and len(strings) >= 2:
                    found.append(f"{strings[-2]}.{strings[-1]}")
                if name in _STRINGS or (name in ("GET", "BINGET", "LONG_BINGET") and memo.get(arg) is not None):
                    last = arg if name in _STRINGS else memo[arg]
                    strings.append(str(last))
                elif name == "MEMOIZE":
                    memo[len(memo)] = last
                elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                    memo[arg] = last
                else:
                    last = None
        except Exception:  # noqa: BLE001 - the end of the pickles (tensor bytes follow) or a damaged file
            break
        if f.tell() >= len(data):
            break
    return found


def unsafe_globals(path) -> list:
    """The globals ``path``'s pickle names that are not plain weights (code or classes), found without unpickling;
    [] for plain weights or a file that is no pickle at all."""
    try:
        data = _stream(path)
    except (OSError, zipfile.BadZipFile, RuntimeError):
        return []
    if not data:
        return []
    return [n for n in dict.fromkeys(_names_in(data)) if not n.startswith(_SAFE_PREFIXES)]
