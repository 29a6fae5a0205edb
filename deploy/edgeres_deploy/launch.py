"""The launcher ``run.sh`` starts: ``python3 -E -B edgeres_deploy/launch.py COMMAND ...``.

Before anything of the bundle is imported it:

1. takes the bundle and the current folder off ``sys.path`` (and -E ignores PYTHON* variables), so no file in the
   bundle can shadow a module: a ``json.py`` or ``numpy.py`` dropped next to ``run.sh`` is never imported;
2. compiles ``edgeres_deploy/bundle.py`` from its source (never a ``.pyc``) and runs its check of the whole folder
   against ``manifest.json``: every listed file present, a regular file (no symbolic links) and of the listed sha256;
   every other file, folder or link is refused (compiled caches in ``__pycache__`` included) except the engine files
   ``build`` writes (whose own record the commands check); the bytes it ran must be the ones the manifest lists;
3. only then imports ``edgeres_deploy`` (and through it numpy, onnxruntime, tensorrt), each module through a loader that
   accepts only the files the manifest lists, re-checks their sha256 as it reads them and compiles the source itself
   (a ``.pyc`` is never read, -B writes none), and runs the command line (edgeres_deploy/__main__.py).

Nothing imports this file: it is a script. The top uses nothing but ``os`` and ``sys`` (loaded with the interpreter)
so that it is safe before the interpreter is hardened; the rest only the standard library (Python 3.8+).
"""

import os
import sys

MIN_PYTHON = (3, 8)
PACKAGE = "edgeres_deploy"


def _code_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


if __name__ == "__main__":  # harden before the first import below
    if sys.version_info < MIN_PYTHON:
        sys.stderr.write(f"error: the edgeres bundle needs Python 3.8 or newer (JetPack 5+); this is Python "
                         f"{sys.version.split()[0]}\n")
        sys.exit(1)
    harden(_code_root())

import errno  # noqa: E402
import hashlib  # noqa: E402 - after harden(): the standard library's, never a file from the bundle
import importlib.machinery  # noqa: E402
import importlib.util  # noqa: E402
import stat  # noqa: E402
import types  # noqa: E402


def _bootstrap_bundle(root: str):
    """edgeres_deploy/bundle.py compiled from its source into a private module (not in sys.modules), and the sha256 of
    the bytes that ran."""
    path = os.path.join(root, PACKAGE, "bundle.py")
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))  # a pipe never blocks
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        source = f.read()
    mod = types.ModuleType("_edgeres_bundle_bootstrap")
    mod.__file__ = path
    exec(compile(source, path, "exec"), mod.__dict__)  # noqa: S102 - the bundle's own verifier, checked below
    return mod, hashlib.sha256(source).hexdigest()


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
            raise ImportError(f"{fullname}: {rel} is not listed in the bundle's manifest.json", name=fullname)
        origin = os.path.join(self.root, *rel.split("/"))
        return importlib.util.spec_from_file_location(
            fullname, origin, loader=_ManifestLoader(fullname, origin, self.files[rel]),
            submodule_search_locations=[os.path.join(self.root, PACKAGE)] if not rest else None)

    def invalidate_caches(self):
        pass


def _print_problems(root, problems, shown: int) -> None:
    for p in problems[:shown]:
        print(f"FAIL {p}", file=sys.stderr)
    if len(problems) > shown:
        print(f"FAIL ... and {len(problems) - shown} more", file=sys.stderr)
    print(f"error: bundle at {root} does NOT match its manifest ({len(problems)} problem(s)); refusing to use it",
          file=sys.stderr)


def _verified_manifest(root: str):
    """The manifest when the folder matches it exactly (problems printed and None otherwise)."""
    try:
        boot, ran = _bootstrap_bundle(root)
    except OSError as e:  # missing, a link, a named pipe: one line, never a wait
        print(f"error: {e.filename or PACKAGE + '/bundle.py'}: {e.strerror or e}; unpack the bundle again", file=sys.stderr)
        return None
    try:
        manifest, problems = boot.check(root)
    except boot.BundleError as e:
        print(f"error: {e}", file=sys.stderr)
        return None
    if not problems and manifest["files"].get(PACKAGE + "/bundle.py") != ran:
        problems = [f"{PACKAGE}/bundle.py: changed while it was being checked"]
    if problems:
        _print_problems(root, problems, boot.MAX_SHOWN)
        return None
    return manifest


def launch(argv) -> int:
    """run.sh: verify the bundle this file belongs to, then run the command line from it (edgeres_deploy.__main__)."""
    root = os.path.realpath(_code_root())
    manifest = _verified_manifest(root)
    if manifest is None:
        return 1
    for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
        del sys.modules[name]  # nothing of an installed edgeres_deploy may stay in use
    sys.meta_path.insert(0, _ManifestFinder(root, manifest["files"]))
    verified = importlib.import_module(PACKAGE + ".bundle")  # the verifier again, through the manifest's loader
    verified._VERIFIED[root] = manifest
    try:
        main = importlib.import_module(PACKAGE + ".__main__").main
    except ImportError as e:
        if e.name and e.name.split(".")[0] != PACKAGE:
            print(f"error: Python module {e.name} is not installed for {sys.executable}: run sh install.sh "
                  "(./run.sh doctor lists what is missing)", file=sys.stderr)
            return 1
        raise
    return main(argv)


if __name__ == "__main__":
    try:
        sys.exit(launch(sys.argv[1:]))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
