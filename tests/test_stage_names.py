"""Stage names live in one place (edgeres/stage_names.py): the pipeline's STAGES run in that order, every stage class
takes its name from there, and the modules that read a run's rows or folders spell no stage name themselves."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from edgeres import stage_names
from edgeres.pipeline import STAGES

ROOT = Path(__file__).resolve().parents[1] / "edgeres"
READERS = sorted([*ROOT.glob("report*.py"), *ROOT.glob("bundle*.py"), ROOT / "recommend.py", ROOT / "pipeline.py",
                  *(ROOT / "stages").glob("*.py")])
NAMES = set(stage_names.STAGE_NAMES)


def test_the_pipeline_runs_the_named_stages_in_order():
    assert tuple(s.name for s in STAGES) == stage_names.STAGE_NAMES
    assert set(stage_names.MOST_OPTIMIZED_FIRST) == NAMES - {stage_names.BUNDLE}  # a bundle is no candidate


def _literals(path: Path) -> list:
    """Stage names spelled as string literals where a stage is meant: compared with, looked up by, or listed."""
    tree = ast.parse(path.read_text())
    parents = {c: p for p in ast.walk(tree) for c in ast.iter_child_nodes(p)}
    out = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and node.value in NAMES):
            continue
        parent = parents.get(node)
        if isinstance(parent, ast.Subscript) and isinstance(parent.value, ast.Name) and parent.value.id == "job":
            continue  # the DDP job's fields (edgeres.ddp), not stages
        if isinstance(parent, ast.Dict) and node in parent.keys:
            continue  # an artifact's key in its stage's own result ({"bundle": "bundle/bundle.tar.gz"})
        if isinstance(parent, ast.Call) and node in parent.args[1:]:
            continue  # ctx.artifact(STAGE, "bundle"): the artifact's key
        if isinstance(parent, ast.Tuple) and isinstance(parents.get(parent), ast.Assign) and \
                any(getattr(t, "id", "") == "keys" for t in parents[parent].targets):
            continue  # a stage's config keys (the option `prune`)
        out.append(f"{path.name}:{node.lineno}: {node.value!r}")
    return out


@pytest.mark.parametrize("path", READERS, ids=[p.name for p in READERS])
def test_no_stage_name_is_spelled_outside_stage_names(path):
    assert _literals(path) == [], "use the constants of edgeres.stage_names"


def test_the_check_finds_a_literal(tmp_path):
    p = tmp_path / "probe.py"
    p.write_text('def f(r, ctx):\n    return r["stage"] == "quantize" or ctx.artifact("export", "bundle")\n')
    assert [x.split(": ")[1] for x in _literals(p)] == ["'quantize'", "'export'"]
