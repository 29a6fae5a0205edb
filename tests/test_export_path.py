"""`edgeres export` and `optimize` take one path to the ONNX file, `deploy --run` and the bundle stage one path to the
bundle: for the same model, data and settings they write byte-identical files (nothing in a file depends on when or
where it was written)."""

from __future__ import annotations

import yaml


def test_export_command_writes_the_optimize_runs_file(cli, pipeline_run, demo_data, tmp_path):
    cfg = yaml.safe_load((pipeline_run / "config.yaml").read_text())
    pruned = pipeline_run / "prune" / "model.pt"  # the export stage's input in that run
    out = tmp_path / "elsewhere" / "model.onnx"
    proc = cli("export", "--model", pruned, "--data", demo_data, "--out", out, "--opset", cfg["opset"])
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == (pipeline_run / "export" / "model.onnx").read_bytes()
    assert [p.name for p in out.parent.iterdir()] == ["model.onnx"]  # the stage's scratch folder is gone


def test_export_command_without_images_and_with_a_fixed_batch(cli, tmp_path):
    """A model that records no data folder, no --data: parity on random inputs, as before; --fixed-batch is kept."""
    import onnx

    from edgeres.models import ModelMeta, build_model, save_checkpoint

    save_checkpoint(tmp_path / "m.pt", build_model("resnet18", 3), ModelMeta(arch="resnet18", classes=list("abc")))
    proc = cli("export", "--model", tmp_path / "m.pt", "--out", tmp_path / "m.onnx", "--image-size", "32",
               "--fixed-batch", "2")
    assert proc.returncode == 0, proc.stderr
    assert "parity on random" in proc.stdout, proc.stdout
    dim = onnx.load(str(tmp_path / "m.onnx")).graph.input[0].type.tensor_type.shape.dim[0]
    assert dim.dim_value == 2


def test_deploy_from_the_run_writes_the_bundle_stages_file(cli, pipeline_run, tmp_path):
    """`edgeres deploy --run` assembles the bundle the way the bundle stage does (edgeres.bundle.bundle_of_run), and a
    bundle has no time stamp in it: the same run gives the same bytes."""
    proc = cli("deploy", "--run", pipeline_run, "--out", tmp_path / "b.tar.gz")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "b.tar.gz").read_bytes() == (pipeline_run / "bundle" / "bundle.tar.gz").read_bytes()


def test_deploy_rebuilds_the_runs_context_through_the_config_schema(pipeline_run):
    """`deploy --run` runs the bundle stage on a Context rebuilt from the run folder (edgeres.stage_commands):
    the run's config read as an OptimizeConfig, its preprocessing, classes and the stages' artifacts."""
    from edgeres.config import OptimizeConfig
    from edgeres.stage_commands import prepare_run

    ctx = prepare_run(pipeline_run)
    raw = yaml.safe_load((pipeline_run / "config.yaml").read_text())
    assert isinstance(ctx.cfg, OptimizeConfig) and ctx.cfg == OptimizeConfig.from_dict(raw)
    manifest = yaml.safe_load((pipeline_run / "manifest.json").read_text())
    assert ctx.pre.to_dict() == manifest["preprocess"] and ctx.splits.classes == manifest["data"]["classes"]
    assert ctx.deploy_onnx() == pipeline_run / "quantize" / "model_int8.onnx"
    assert ctx.splits.val  # the data folder is still there: the bundle gets its self-check images


def test_deploy_refuses_a_run_config_the_schema_refuses(cli, run_copy, tmp_path):
    """A value no `optimize` run could have written (calib_size 0) is named with the file, exit 1, nothing written."""
    cfg = yaml.safe_load((run_copy / "config.yaml").read_text())
    cfg["calib_size"] = 0
    (run_copy / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = cli("deploy", "--run", run_copy, "--out", tmp_path / "b.tar.gz")
    assert proc.returncode == 1, proc.stdout
    assert "config.yaml" in proc.stderr and "calib_size" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "b.tar.gz").exists()
