"""`edgeres quantize` and `edgeres prune` take the path of `optimize`'s quantize and prune stages (``run_quantize``;
``PruneStage.run`` itself, through edgeres.stage_commands.prune_command): for the same inputs and settings they write the same
INT8 ONNX file (byte for byte) and the same pruned checkpoint (byte for byte)."""

from __future__ import annotations

import torch
import yaml


def _run_cfg(run) -> dict:
    return yaml.safe_load((run / "config.yaml").read_text())


def test_quantize_command_writes_the_optimize_runs_int8_file(cli, pipeline_run, demo_data, tmp_path):
    """The run calibrated on a stratified sample of --data's training split (no --calib): `--calib DATA` picks the
    same images, and the budget is checked on the same held-out validation images."""
    cfg = _run_cfg(pipeline_run)
    fallback = ",".join(cfg["int8_fallback"]) or "none"
    out = tmp_path / "q" / "model_int8.onnx"
    proc = cli("quantize", "--onnx", pipeline_run / "export" / "model.onnx", "--calib", demo_data, "--data", demo_data,
               "--target", cfg["target"], "--calib-size", cfg["calib_size"], "--method", cfg["calib_method"],
               "--seed", cfg["seed"], "--int8-max-drop", cfg["int8_max_drop"], "--fallback", fallback, "--out", out)
    assert proc.returncode == 0, proc.stderr
    ran = pipeline_run / "quantize"
    assert out.read_bytes() == (ran / "model_int8.onnx").read_bytes()
    assert (tmp_path / "q" / "model_int8.onnx.calib.json").read_bytes() == (ran / "model_int8.onnx.calib.json").read_bytes()


def _same_checkpoint(a, b) -> None:
    """The same bytes (checkpoints are saved through a buffer: the zip's record name no longer follows the file's)."""
    import hashlib

    da, db = (hashlib.sha256(p.read_bytes()).hexdigest() for p in (a, b))
    assert da == db, f"{a} and {b} differ"


def test_prune_command_writes_the_optimize_runs_checkpoint(cli, pipeline_run, tiny_ckpt, demo_data, tmp_path):
    cfg = _run_cfg(pipeline_run)
    assert cfg["finetune_epochs"] == 0
    out = tmp_path / "pruned.pt"  # another name than the run's model.pt: the bytes must not depend on it
    proc = cli("prune", "--model", tiny_ckpt, "--data", demo_data, "--ratio", cfg["prune"], "--importance",
               cfg["importance"], "--finetune-epochs", 0, "--target", cfg["target"], "--seed", cfg["seed"], "--out", out)
    assert proc.returncode == 0, proc.stderr
    _same_checkpoint(out, pipeline_run / "prune" / "model.pt")


def test_prune_command_takes_the_stages_seed(cli, tiny_ckpt, demo_data, tmp_path):
    """Taylor importance reads training batches in a seeded order (and fine-tuning is seeded): `edgeres prune --seed`
    gives what the prune stage gives under `optimize --seed` (the command once had no --seed and always used 0)."""
    from edgeres.config import OptimizeConfig
    from edgeres.pipeline import Pipeline
    from edgeres.stages.base import Context
    from edgeres.stages.prune import PruneStage

    settings = dict(prune=0.3, importance="taylor", finetune_epochs=0, seed=3, target="jetson-orin-nano")
    cfg = OptimizeConfig(model=str(tiny_ckpt), data=str(demo_data), out=str(tmp_path / "run"), **settings)
    p = Pipeline(cfg, stages=("prune",))
    ctx = Context(cfg, p.run_dir, p.log)
    ctx.measuring = False
    p.prepare(ctx)
    PruneStage().run(ctx)
    runs = {}
    for seed in (3, 0):
        out = tmp_path / f"seed{seed}.pt"
        proc = cli("prune", "--model", tiny_ckpt, "--data", demo_data, "--ratio", 0.3, "--importance", "taylor",
                   "--finetune-epochs", 0, "--target", "jetson-orin-nano", "--seed", seed, "--out", out)
        assert proc.returncode == 0, proc.stderr
        runs[seed] = out
    _same_checkpoint(runs[3], p.run_dir / "prune" / "model.pt")
    s0, s3 = (torch.load(runs[s], map_location="cpu", weights_only=False)["state_dict"] for s in (0, 3))
    assert any(s0[n].shape != s3[n].shape or not torch.equal(s0[n], s3[n]) for n in s3), "the seed changes nothing"


def test_prune_command_is_the_prune_stage(monkeypatch, tiny_ckpt, demo_data, tmp_path):
    """`edgeres prune` builds a Context and calls PruneStage.run, which takes the command-only settings
    (--target-macs, --round-to...) from it, writes --out and nothing else, and measures no report rows."""
    from click.testing import CliRunner

    from edgeres.cli import main
    from edgeres.stages.prune import PruneStage

    seen, run = [], PruneStage.run

    def spy(self, ctx):
        res = run(self, ctx)
        seen.append((ctx.prune_out, dict(ctx.prune_options), res.rows))
        return res

    monkeypatch.setattr(PruneStage, "run", spy)
    out = tmp_path / "p" / "pruned.pt"
    res = CliRunner().invoke(main, [str(a) for a in ("prune", "--model", tiny_ckpt, "--data", demo_data, "--target-macs",
                                                     0.6, "--round-to", 4, "--finetune-epochs", 0, "--out", out)])
    assert res.exit_code == 0, res.output
    assert [(o, p["target_macs"], p["round_to"], rows) for o, p, rows in seen] == [(out, 0.6, 4, [])]
    assert sorted(x.name for x in out.parent.iterdir()) == ["pruned.pt"]
    assert "top-1" in res.output and "reload checked)" in res.output, res.output


def test_quantize_command_is_the_quantize_stage(monkeypatch, pipeline_run, demo_data, tmp_path):
    """`edgeres quantize` builds a Context and calls QuantizeStage.run on its own ONNX file, without the run's splits
    (the budget checked on a slice held out of --calib), writing --out, its manifest and --calib-cache only, measuring
    no report rows."""
    from click.testing import CliRunner

    from edgeres.cli import main
    from edgeres.stages.quantize import QuantizeStage

    seen, run = [], QuantizeStage.run

    def spy(self, ctx):
        res = run(self, ctx)
        seen.append((ctx.quantize_out, ctx.calib_cache, ctx.splits, res.rows))
        return res

    monkeypatch.setattr(QuantizeStage, "run", spy)
    out, cache = tmp_path / "q" / "int8.onnx", tmp_path / "q" / "calib.cache"
    res = CliRunner().invoke(main, [str(a) for a in ("quantize", "--onnx", pipeline_run / "export" / "model.onnx",
                                                     "--calib", demo_data / "train", "--calib-size", 16, "--target",
                                                     "jetson-orin-nano", "--fallback", "none", "--calib-cache", cache,
                                                     "--out", out)])
    assert res.exit_code == 0, res.output
    assert seen == [(out, str(cache), None, [])]
    assert sorted(x.name for x in out.parent.iterdir()) == ["calib.cache", "int8.onnx", "int8.onnx.calib.json"]
    assert "held out of" in res.output and "budget" in res.output, res.output
