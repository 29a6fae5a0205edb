"""Resuming a finished run whose artifact was edited: the stage that wrote it is redone (its stage.json records the
sha256 of each artifact), the stages before it are reused, and the stages after it are redone exactly when the redone
stage's artifacts differ from those they were made from (edgeres/pipeline.py: the upstream hash chains each stage's
artifact digests)."""

from __future__ import annotations

import shutil

import pytest
from conftest import PIPELINE_ARGS, ran_stages

from edgeres.pipeline import STAGE_NAMES


@pytest.fixture
def run(pipeline_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(pipeline_run, out)
    return out


def _optimize(cli, out, tiny_ckpt, demo_data):
    proc = cli("optimize", "--model", tiny_ckpt, "--data", demo_data, "--out", out, *PIPELINE_ARGS)
    assert proc.returncode == 0, proc.stderr
    return ran_stages(proc.stderr)


def _records(out):
    return {s: (out / s / "stage.json").read_bytes() for s in STAGE_NAMES}


def test_an_edited_artifact_is_redone_and_an_identical_result_reused_downstream(cli, run, tiny_ckpt, demo_data):
    onnx = run / "export" / "model.onnx"
    original = onnx.read_bytes()
    before = _records(run)
    onnx.write_bytes(original[:-64] + b"\0" * 64)  # edited in place, same size: only its digest tells
    assert _optimize(cli, run, tiny_ckpt, demo_data) == ["export"]
    assert onnx.read_bytes() == original  # the export is deterministic: the same file again...
    after = _records(run)
    # ...so what was made from it is still valid, and the stages before it were never looked at again
    assert {s: after[s] == before[s] for s in STAGE_NAMES} == {s: s != "export" for s in STAGE_NAMES}


def test_an_edited_artifact_whose_redo_differs_redoes_its_dependents(cli, run, tiny_ckpt, demo_data, monkeypatch):
    from edgeres.stages.export import ExportStage

    real = ExportStage.run

    def changed(self, ctx):  # the redone export comes out different (as a new exporter version would make it)
        import onnx

        res = real(self, ctx)
        path = ctx.run_dir / res.artifacts["onnx"]
        m = onnx.load(str(path))
        m.doc_string = "changed"
        onnx.save(m, str(path))
        return res

    monkeypatch.setattr(ExportStage, "run", changed)
    before = _records(run)
    (run / "export" / "model.onnx").write_bytes(b"not the model")
    assert _optimize(cli, run, tiny_ckpt, demo_data) == ["export", "quantize", "engine", "bundle"]
    after = _records(run)
    assert after["baseline"] == before["baseline"] and after["prune"] == before["prune"]
    assert all(after[s] != before[s] for s in ("export", "quantize", "engine", "bundle"))

