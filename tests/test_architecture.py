"""The house rules that keep the architecture readable (docs/design.md, "Packages and the direction of imports"):

* no import cycle, on the host (``edgeres`` with ``edgeres.calibration``) or on the device (``edgeres_deploy``),
  counting every import, at module level or inside a function;
* imports run one way, down: the CLI over the pipeline, the pipeline over the stages, the stages over the library
  packages; no library module imports a stage, the pipeline or the CLI;
* no module over 400 lines, no function over 60, but for the short allow-list below, each entry with its reason (an
  entry that has come within the limits fails the test too, so the list only shrinks).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HOST = {"edgeres": ROOT / "edgeres", "edgeres.calibration": ROOT / "calibration"}
DEVICE = {"edgeres_deploy": ROOT / "deploy" / "edgeres_deploy"}
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 60

# what is over the limits and why; "path" for a module, "path:function" for a function (none today)
ALLOWED: dict = {}


def _modules(roots: dict) -> dict:
    """{module name: file} for every .py file under the packages' folders."""
    out = {}
    for pkg, folder in roots.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([pkg, *parts])] = path
    return out


def _resolve(name: str, mods: dict) -> str | None:
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def _imports(name: str, path: Path, mods: dict) -> set:
    """The package's modules that ``name`` imports anywhere in its file (a parent package of ``name`` and the root
    package itself, which every submodule's import runs through, are not counted)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    pkg = pkg.rpartition(".")[0]
                base = pkg + ("." + node.module if node.module else "")
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            r = _resolve(t, mods)
            if r and r != name and not name.startswith(r + ".") and r not in ("edgeres", "edgeres_deploy"):
                out.add(r)
    return out


def _graph(roots: dict) -> dict:
    mods = _modules(roots)
    return {m: _imports(m, p, mods) for m, p in mods.items()}


def _cycles(graph: dict) -> list:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("side", ["host", "device"])
def test_no_import_cycle(side):
    cycles = _cycles(_graph(HOST if side == "host" else DEVICE))
    assert not cycles, "import cycles (imports inside functions count): " + "; ".join(" <-> ".join(c) for c in cycles)


def _layer(module: str) -> int:
    """3: the command line; 2: the pipeline (and the demo that runs it); 1: the stages; 0: the library packages."""
    if module in ("edgeres.cli", "edgeres.__main__") or module.startswith("edgeres.cli_"):
        return 3
    if module in ("edgeres.pipeline", "edgeres.demo", "edgeres.stage_commands"):
        return 2
    if module == "edgeres.stages" or module.startswith("edgeres.stages."):
        return 1
    return 0


def test_imports_run_down():
    up = [f"{m} -> {t}" for m, targets in _graph(HOST).items() for t in sorted(targets) if _layer(t) > _layer(m)]
    assert not up, "upward imports (a lower layer imports a higher one): " + "; ".join(up)


def _sizes():
    """[(key, lines)] of every module and function of the host and device packages."""
    out = []
    for path in _modules({**HOST, **DEVICE}).values():
        rel = path.relative_to(ROOT).as_posix()
        src = path.read_text()
        out.append((rel, len(src.splitlines()), MAX_MODULE_LINES))
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out.append((f"{rel}:{node.name}", node.end_lineno - node.lineno + 1, MAX_FUNCTION_LINES))
    return out


def test_modules_and_functions_stay_small():
    over = [f"{key} ({n} lines > {limit})" for key, n, limit in _sizes() if n > limit and key not in ALLOWED]
    assert not over, "split these (or, when that cannot be done yet, allow-list them with the reason): " + "; ".join(over)


def test_the_allow_list_only_shrinks():
    sizes = {key: (n, limit) for key, n, limit in _sizes()}
    stale = [key for key in ALLOWED if key not in sizes or sizes[key][0] <= sizes[key][1]]
    assert not stale, f"within the limits now (or gone): remove from ALLOWED: {stale}"


def test_every_package_is_installed():
    """A non-editable install (``pip install .``, a wheel) ships only the packages pyproject.toml lists: a package
    folder missing there imports in the editable checkout the tests use and fails for every user of the wheel."""
    import tomllib

    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    dirs = {"edgeres_deploy": ROOT / "deploy" / "edgeres_deploy", "edgeres.calibration": ROOT / "calibration"}
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "edgeres").rglob("__init__.py")}
    found |= {name for name, d in dirs.items() if (d / "__init__.py").exists()}
    assert set(conf["packages"]) == found
    assert {k: ROOT / v for k, v in conf["package-dir"].items()} == dirs
