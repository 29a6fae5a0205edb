"""The bundle's integrity and its launcher; labels, build settings and CSV rows.

``run.sh`` runs this file as a script (``python3 -E -B edgeres_deploy/bundle.py COMMAND ...``). Before anything is
imported from the bundle it:

1. takes the bundle and the current folder off ``sys.path`` (and ignores PYTHON* variables, -E), so no file in the
   bundle can shadow a module: a ``json.py`` or ``numpy.py`` dropped next to ``run.sh`` is never imported;
2. checks the whole folder against ``manifest.json``: every listed file present, a regular file (no symbolic links)
   and of the listed sha256; every other file, folder or link is refused (compiled caches in ``__pycache__`` included),
   except the engine ``build`` writes; the manifest's own shape and paths are checked first (nothing may leave the
   bundle);
3. only then imports ``edgeres_deploy`` (and through it numpy, onnxruntime, tensorrt), each module through a loader that
   accepts only the files the manifest lists, re-checks their sha256 as it reads them and compiles the source itself
   (a ``.pyc`` is never read, -B writes none).

The top of the file uses nothing but ``os`` and ``sys`` (loaded with the interpreter) so that running it is safe even
before the interpreter is hardened; the rest uses only the standard library (Python 3.8+: JetPack 5 and newer).
"""

import os
import sys

MIN_PYTHON = (3, 8)


def code_root_of(file) -> str:
    """The bundle root of this runtime: the folder above the package."""
    return os.path.dirname(os.path.dirname(os.path.abspath(file)))


def harden(code_root) -> None:
    """No compiled caches written, and no ``sys.path`` entry in the bundle (nor the current folder, '')."""
    sys.dont_write_bytecode = True
    root = os.path.realpath(code_root)
    keep = []
    for p in sys.path:
        rp = os.path.realpath(p) if p else ""
        if rp and rp != root and not rp.startswith(root + os.sep):
            keep.append(p)
    sys.path[:] = keep


if __name__ == "__main__":  # the launcher (run.sh): harden before the first import below
    if sys.version_info < MIN_PYTHON:
        sys.stderr.write(f"error: the edgeres bundle needs Python 3.8 or newer (JetPack 5+); this is Python "
                         f"{sys.version.split()[0]}\n")
        sys.exit(1)
    harden(code_root_of(__file__))

import csv  # after harden(): the standard library's, never a file from the bundle
import hashlib
import importlib
import importlib.machinery
import importlib.util
import json
import stat
from pathlib import Path

MANIFEST = "manifest.json"
FORMAT = "edgeres-bundle"
# What `build` writes into the bundle root on the device: the only files allowed there without a manifest entry.
RUNTIME_OUTPUTS = ("model.engine", "model.engine.json", "timing.cache")
PACKAGE = "edgeres_deploy"
# The manifest's own sha256 as `edgeres deploy` printed it on the host: when set, a manifest rewritten to match
# tampered files (which the per-file check alone cannot tell from the original) is refused too.
EXPECT_ENV = "EDGERES_MANIFEST_SHA256"
MAX_SHOWN = 20  # problems printed before "... and N more"
_HEX = frozenset("0123456789abcdef")
_VERIFIED: dict = {}  # realpath of a bundle root -> its manifest, checked in this process


class BundleError(Exception):
    """The bundle is incomplete, malformed or its files do not match the manifest; or the input is unusable."""


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


def _sha256_nofollow(path) -> str:
    """sha256 of a regular file, refusing to follow a link that replaced it since the folder was listed."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
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
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as f:
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


def require_verified(root) -> dict:
    """The manifest of the bundle at ``root`` once it matches; BundleError naming the problems otherwise."""
    key = os.path.realpath(str(root))
    if key not in _VERIFIED:
        manifest, problems = check(root)
        if problems:
            raise BundleError(f"bundle at {root} does not match its manifest; refusing to use it:\n  "
                              + problems_text(problems))
        _VERIFIED[key] = manifest
    return _VERIFIED[key]


# ------------------------------------------------------------------------------------------------ the launcher
class _ManifestLoader(importlib.machinery.SourceFileLoader):
    """Compiles a listed source after checking its sha256 again; never reads nor writes a .pyc."""

    def __init__(self, fullname, path, digest):
        super().__init__(fullname, path)
        self.digest = digest

    def get_code(self, fullname):
        data = self.get_data(self.path)
        if hashlib.sha256(data).hexdigest() != self.digest:
            raise ImportError(f"{self.path} changed after the bundle was verified; refusing to import it")
        return self.source_to_code(data, self.path)


class _ManifestFinder:
    """Serves ``edgeres_deploy`` and its modules from the verified bundle only, and only the files its manifest lists;
    first on sys.meta_path, so neither an installed edgeres_deploy nor an unlisted file can stand in for them."""

    def __init__(self, root: str, files: dict):
        self.root, self.files = root, files

    def find_spec(self, fullname, path=None, target=None):
        if fullname != PACKAGE and not fullname.startswith(PACKAGE + "."):
            return None
        rest = fullname.split(".")[1:]
        rel = "/".join([PACKAGE, *rest]) + ".py" if rest else PACKAGE + "/__init__.py"
        if rel not in self.files:
            raise ImportError(f"{fullname}: {rel} is not listed in the bundle's {MANIFEST}", name=fullname)
        origin = os.path.join(self.root, *rel.split("/"))
        return importlib.util.spec_from_file_location(
            fullname, origin, loader=_ManifestLoader(fullname, origin, self.files[rel]),
            submodule_search_locations=[os.path.join(self.root, PACKAGE)] if not rest else None)

    def invalidate_caches(self):
        pass


def print_problems(root, problems) -> None:
    for p in problems[:MAX_SHOWN]:
        print(f"FAIL {p}", file=sys.stderr)
    if len(problems) > MAX_SHOWN:
        print(f"FAIL ... and {len(problems) - MAX_SHOWN} more", file=sys.stderr)
    print(f"error: bundle at {root} does NOT match its manifest ({len(problems)} problem(s)); refusing to use it",
          file=sys.stderr)


def launch(argv) -> int:
    """run.sh: verify the bundle this file belongs to, then run the command line from it (edgeres_deploy.__main__)."""
    root = os.path.realpath(code_root_of(__file__))
    manifest = _checked(root)
    if manifest is None:
        return 1
    only = _verify_only(argv)
    if only == "":  # `verify` of this bundle: just done, with the standard library only (install.sh runs it first)
        print(_matches(root, manifest))
        return 0
    if only is not None:
        return verify_command(only)
    for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
        del sys.modules[name]  # nothing of an installed edgeres_deploy may stay in use
    sys.meta_path.insert(0, _ManifestFinder(root, manifest["files"]))
    verified_bundle = importlib.import_module(PACKAGE + ".bundle")  # this file again, through the manifest's loader
    verified_bundle._VERIFIED[root] = manifest
    try:
        from edgeres_deploy.__main__ import main
    except ImportError as e:
        if e.name and e.name.split(".")[0] != PACKAGE:
            print(f"error: Python module {e.name} is not installed for {sys.executable}: run sh install.sh",
                  file=sys.stderr)
            return 1
        raise
    return main(argv)


def _verify_only(argv):
    """For ``[--bundle DIR] verify``: DIR ('' for this bundle); None for any other command line."""
    args = list(argv)
    if args[-1:] != ["verify"]:
        return None
    rest = args[:-1]
    if not rest:
        return ""
    if len(rest) == 2 and rest[0] == "--bundle":
        return rest[1] or None
    if len(rest) == 1 and rest[0].startswith("--bundle=") and len(rest[0]) > 9:
        return rest[0][9:]
    return None


def _matches(root, manifest) -> str:
    return f"bundle at {root}: all {len(manifest['files'])} files match {MANIFEST}, and nothing else is there"


def verify_command(root) -> int:
    """`verify`: every problem on its own line, exit 1; or one line saying the bundle matches."""
    try:
        root = find_root(root)
    except BundleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    manifest = _checked(root)
    if manifest is None:
        return 1
    print(_matches(root, manifest))
    return 0


def _checked(root):
    """The manifest of the bundle at ``root`` when the folder matches it exactly; else None, the problems printed."""
    try:
        manifest, problems = check(root)
    except BundleError as e:
        print(f"error: {e}", file=sys.stderr)
        return None
    if problems:
        print_problems(root, problems)
        return None
    return manifest


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
    from edgeres_deploy.metrics import REPORT_COLUMNS

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
            w.writerow({c: ("" if r.get(c) is None else r.get(c)) for c in REPORT_COLUMNS})


if __name__ == "__main__":
    try:
        sys.exit(launch(sys.argv[1:]))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
