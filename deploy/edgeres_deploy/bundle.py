"""The bundle's integrity: the manifest check (every file listed, of its sha256, and nothing else), the record of
the engine files `build` writes on the device, labels, build settings and report CSV rows.

``run.sh`` starts ``edgeres_deploy/launch.py``, which runs :func:`check` from this file's source before anything else
of the bundle is imported (see launch.py); the commands call :func:`require_verified`, which adds the engine record's
check (edgeres_deploy/engine_record.py): an engine, sidecar or timing cache in the folder that this device did not
build or adopt is refused, never run.

Standard library only at module level (Python 3.8+: JetPack 5 and newer), so the launcher can run it before the
bundle is verified.
"""

import csv
import hashlib
import json
import os
import stat
from pathlib import Path

MANIFEST = "manifest.json"
FORMAT = "edgeres-bundle"
# What `build` writes into the bundle root on the device: the only files allowed there without a manifest entry, and
# only while the engine record (engine_record.py) says this device wrote (or adopted) exactly these bytes.
RUNTIME_OUTPUTS = ("model.engine", "model.engine.json", "timing.cache")
# The manifest's own sha256 as `edgeres deploy` printed it on the host: when set, a manifest rewritten to match
# tampered files (which the per-file check alone cannot tell from the original) is refused too.
EXPECT_ENV = "EDGERES_MANIFEST_SHA256"
MAX_SHOWN = 20  # problems printed before "... and N more"
_HEX = frozenset("0123456789abcdef")
_VERIFIED: dict = {}  # realpath of a bundle root -> its manifest, checked in this process


class BundleError(Exception):
    """The bundle is incomplete, malformed or its files do not match the manifest; or the input is unusable."""


def code_root_of(file) -> str:
    """The bundle root of this runtime: the folder above the package."""
    return os.path.dirname(os.path.dirname(os.path.abspath(file)))


def find_root(explicit=None) -> Path:
    """The bundle root: --bundle DIR (which must hold a manifest), else this runtime's bundle, else the current folder."""
    if explicit:
        root = Path(explicit)
        if not root.is_dir():
            raise BundleError(f"--bundle {explicit}: no such folder; pass the unpacked bundle's root (where {MANIFEST} "
                              "and run.sh are)")
        if not (root / MANIFEST).is_file():
            raise BundleError(f"--bundle {explicit}: no {MANIFEST} in that folder; pass the unpacked bundle's root "
                              "(where run.sh is)")
        return root
    for cand in (Path(code_root_of(__file__)), Path.cwd()):
        if (cand / MANIFEST).is_file():
            return cand
    raise BundleError(f"no {MANIFEST} here: run ./run.sh from the unpacked bundle's root, or pass --bundle DIR")


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# no link followed; O_NONBLOCK: opening a named pipe returns at once (without it, the open waits for a writer
# forever) and the fstat that follows refuses it; for a regular file it changes nothing
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)


def _sha256_nofollow(path) -> str:
    """sha256 of a regular file, refusing to follow a link that replaced it since the folder was listed."""
    fd = os.open(path, _READ_FLAGS)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise OSError(f"{path} is not a regular file")
        h = hashlib.sha256()
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def path_problem(name) -> str:
    """Why ``name`` cannot be a manifest entry ('' if it can): a relative, normalised path that stays in the bundle."""
    if not isinstance(name, str) or not name:
        return "is empty"
    if "\0" in name or "\\" in name:
        return "holds a NUL or backslash"
    if name.startswith("/"):
        return "is an absolute path (every entry must stay inside the bundle)"
    parts = name.split("/")
    if ".." in parts:
        return "leaves the bundle (..)"
    if "" in parts or "." in parts:
        return "is not a normalised relative path"
    if name == MANIFEST:
        return "is the manifest itself"
    return ""


def manifest_problem(m) -> str:
    """Why ``m`` (parsed manifest.json) is not a bundle manifest ('' if it is one)."""
    if not isinstance(m, dict):
        return f"expected a JSON object, got {type(m).__name__ if m is not None else 'null'}"
    files = m.get("files")
    if not isinstance(files, dict):
        return f"'files' must map each file's path to its sha256, got {type(files).__name__ if files is not None else 'nothing'}"
    if not files:
        return "'files' is empty"
    if m.get("format") != FORMAT:
        return f"'format' is {m.get('format')!r}, not {FORMAT!r}"
    for name, digest in files.items():
        bad = path_problem(name)
        if bad:
            return f"entry {name!r} {bad}"
        if not (isinstance(digest, str) and len(digest) == 64 and set(digest) <= _HEX):
            return f"entry {name!r}: {digest!r} is not a sha256 (64 lowercase hex digits)"
    return ""


def load_manifest(root) -> dict:
    """The bundle's manifest, shape-checked; BundleError (one line) if it is missing, a link, not JSON or malformed."""
    path = os.path.join(str(root), MANIFEST)
    try:
        fd = os.open(path, _READ_FLAGS)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise BundleError(f"{path} is not a regular file; unpack the bundle again")
            raw = f.read()
    except FileNotFoundError:
        raise BundleError(f"{path}: missing; run from the unpacked bundle's root (where run.sh is)") from None
    except OSError as e:
        why = "is a symbolic link or unreadable" if os.path.islink(path) else f"cannot be read ({e.strerror})"
        raise BundleError(f"{path} {why}; unpack the bundle again") from None
    expected = os.environ.get(EXPECT_ENV, "").strip().lower()
    if expected and hashlib.sha256(raw).hexdigest() != expected:
        raise BundleError(f"{path}: its sha256 {hashlib.sha256(raw).hexdigest()} is not the {EXPECT_ENV} given "
                          f"({expected}); the manifest was rewritten or this is another bundle")
    try:
        m = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise BundleError(f"{path} is not valid JSON ({e}); unpack the bundle again or re-create it with `edgeres deploy`") from None
    problem = manifest_problem(m)
    if problem:
        raise BundleError(f"{path} is malformed: {problem}; re-create the bundle with `edgeres deploy`")
    return m


def _scan(root: str) -> dict:
    """Everything under ``root`` (links never followed): {relative posix path: "file" | "dir" | "link" | "other"}."""
    found, stack = {}, [""]
    while stack:
        rel = stack.pop()
        with os.scandir(os.path.join(root, rel) if rel else root) as it:
            for e in it:
                r = f"{rel}/{e.name}" if rel else e.name
                if e.is_symlink():
                    found[r] = "link"
                elif e.is_dir(follow_symlinks=False):
                    found[r] = "dir"
                    stack.append(r)
                elif e.is_file(follow_symlinks=False):
                    found[r] = "file"
                else:
                    found[r] = "other"
    return found


def _unlisted(name: str, kind: str) -> str:
    if kind == "link":
        return f"{name}: is a symbolic link not listed in {MANIFEST}; remove it"
    if kind == "other":
        return f"{name}: not a regular file and not listed in {MANIFEST}; remove it"
    if name.endswith((".pyc", ".pyo")) or "__pycache__" in name.split("/"):
        return (f"{name}: not listed in {MANIFEST} (a compiled cache: the runtime never reads nor writes them); "
                "delete it")
    if any(name.startswith(out + ".tmp") for out in RUNTIME_OUTPUTS):
        return f"{name}: not listed in {MANIFEST} (left by an interrupted `build`); delete it"
    return f"{name}: not listed in {MANIFEST}; remove this {'empty folder' if kind == 'dir' else 'file'}"


def check(root) -> tuple:
    """(manifest, problems) for the bundle at ``root``; problems is empty when the folder holds exactly the manifest's
    files, each a regular file with its sha256, plus at most `build`'s outputs. BundleError for a bad manifest."""
    root = os.path.realpath(str(root))
    manifest = load_manifest(root)
    files = manifest["files"]
    try:
        found = _scan(root)
    except OSError as e:
        raise BundleError(f"cannot list {e.filename}: {e.strerror}") from None
    parents = {"/".join(n.split("/")[:i]) for n in files for i in range(1, n.count("/") + 1)}
    problems = []
    for name in sorted(files):
        kind = found.get(name)
        if kind == "file":
            try:
                if _sha256_nofollow(os.path.join(root, name)) != files[name]:
                    problems.append(f"{name}: sha256 differs from the manifest (modified or corrupt)")
            except OSError as e:
                problems.append(f"{name}: cannot be read ({e.strerror or e})")
        elif kind == "link":
            problems.append(f"{name}: is a symbolic link (a bundle holds regular files only; the link is not followed)")
        elif kind is not None:
            problems.append(f"{name}: not a regular file")
        else:
            link = next((p for p in sorted(parents) if name.startswith(p + "/") and found.get(p) == "link"), None)
            problems.append(f"{name}: inside {link}, a symbolic link (not followed)" if link else f"{name}: missing")
    for name, kind in sorted(found.items()):
        if name in files or name in parents or (name in (MANIFEST, *RUNTIME_OUTPUTS) and kind == "file"):
            continue
        if kind == "dir" and any(n.startswith(name + "/") for n in found):
            continue  # its contents are reported one by one
        problems.append(_unlisted(name, kind))
    if found.get(MANIFEST) not in (None, "file"):
        problems.append(f"{MANIFEST}: not a regular file")
    return manifest, problems


def verify(root) -> list:
    """Problems with the bundle (empty: it matches its manifest exactly). BundleError for a bad manifest."""
    return check(root)[1]


def problems_text(problems) -> str:
    shown = problems[:MAX_SHOWN]
    more = len(problems) - len(shown)
    return "\n  ".join(shown + ([f"... and {more} more"] if more > 0 else []))


def require_verified(root, engine_files: bool = True) -> dict:
    """The manifest of the bundle at ``root`` once it matches; BundleError naming the problems otherwise.

    ``engine_files``: also refuse engine files that the engine record does not vouch for (False only for `build
    --rebuild` and `adopt`, the two commands that replace or take them over explicitly)."""
    key = os.path.realpath(str(root))
    if key not in _VERIFIED:
        manifest, problems = check(root)
        if problems:
            raise BundleError(f"bundle at {root} does not match its manifest; refusing to use it:\n  "
                              + problems_text(problems))
        _VERIFIED[key] = manifest
    if engine_files:
        from edgeres_deploy.engine_record import problems as engine_problems

        bad = engine_problems(key)
        if bad:
            raise BundleError(bad[0] if len(bad) == 1 else "; ".join(bad))
    return _VERIFIED[key]


def matches_line(root, manifest) -> str:
    return f"bundle at {root}: all {len(manifest['files'])} files match {MANIFEST}, and nothing else is there"


def manifest_sha256(root) -> str:
    with open(os.path.join(str(root), MANIFEST), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# ------------------------------------------------------------------------------------------------ bundle files
def labels(root: Path) -> list:
    return [ln.strip() for ln in (root / "labels.txt").read_text().splitlines() if ln.strip()]


def build_settings(root: Path) -> dict:
    p = root / "build.json"
    return json.loads(p.read_text()) if p.is_file() else {}


def check_report_csv(path) -> None:
    """BundleError unless ``path`` is absent or a CSV whose header has the report's key columns (checked before a
    command measures anything, so a wrong --csv costs no benchmark)."""
    if not os.path.exists(path):
        return
    try:
        with open(path, newline="") as f:
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise BundleError(f"--csv {path}: cannot read it as a CSV ({e}); give another file") from None
    missing = [c for c in ("stage", "runtime", "batch_size") if c not in header]
    if missing:
        raise BundleError(f"--csv {path} is not a report CSV (no {', '.join(missing)} column); give another file name")


def upsert_csv(path, row: dict) -> None:
    """Add ``row`` to a report-schema CSV, merging it into an existing row of the same stage/runtime/batch."""
    from edgeres_deploy.metrics import REPORT_COLUMNS, safe_cell

    rows = []
    if os.path.exists(path):
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    key = (row.get("stage"), row.get("runtime"), str(row.get("batch_size") or ""))
    for r in rows:
        if (r["stage"], r["runtime"], r["batch_size"]) == key:
            r.update({k: v for k, v in row.items() if v not in (None, "")})
            break
    else:
        rows.append({c: row.get(c) for c in REPORT_COLUMNS})
    from edgeres_deploy.fsio import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=REPORT_COLUMNS, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({c: ("" if r.get(c) is None else safe_cell(r.get(c))) for c in REPORT_COLUMNS})

