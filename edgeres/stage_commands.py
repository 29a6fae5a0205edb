"""A stage run alone by its command. `edgeres prune` is the prune stage of `optimize` on the command's model and
data (``prune_command``: ``Pipeline.prepare``, then ``PruneStage.run`` writing ``--out``). On a finished run folder,
`edgeres deploy --run` is the bundle stage of
`optimize` (``BundleStage.run``) on a Context rebuilt from the run folder alone (``prepare_run``): its config.yaml
read through the config schema (OptimizeConfig), its manifest's preprocessing and classes, the stage records of
export and quantize. The input model and the data folder need not exist any more (the validation images for the
bundle's self-check are taken from the data folder when it is still there)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from edgeres.config import OptimizeConfig
from edgeres.errors import EdgeresError
from edgeres.stage_names import EXPORT, QUANTIZE
from edgeres.stages.base import Context, StageResult
from edgeres.stages.bundle import BundleStage


def _read_run(run_dir: Path) -> tuple[dict, dict]:
    import yaml

    try:
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
        manifest = json.loads((run_dir / "manifest.json").read_text())
    except OSError:
        raise EdgeresError(f"{run_dir} is not an edgeres run directory (no config.yaml/manifest.json); run `edgeres optimize` first") from None
    except (ValueError, yaml.YAMLError):
        raise EdgeresError(f"{run_dir}'s config.yaml or manifest.json is corrupt; run `edgeres optimize` again") from None
    if not isinstance(cfg, dict) or not isinstance(manifest, dict):
        raise EdgeresError(f"{run_dir}'s config.yaml or manifest.json is corrupt; run `edgeres optimize` again")
    return cfg, manifest


def _stage_results(run_dir: Path) -> dict:
    """The finished export and quantize stages' records, as the pipeline keeps them on its Context."""
    from edgeres.utils import read_stage_record

    results = {}
    for name in (EXPORT, QUANTIZE):
        p = run_dir / name / "stage.json"
        if not p.exists():
            continue
        rec = read_stage_record(p)
        if rec is None:
            raise EdgeresError(f"{p} is corrupt (a run killed while writing it?); run the same `edgeres optimize` "
                               "again: it redoes that stage")
        ok = rec.get("status") == "ok"
        results[name] = StageResult(status=rec.get("status", "ok"), artifacts=rec.get("artifacts", {}) if ok else {},
                                    rows=rec.get("rows", []), info=rec.get("info", {}))
    return results


def prepare_run(run_dir, log=None) -> Context:
    """The Context of a finished `optimize` run, from its folder alone (what ``Pipeline.prepare`` resolved when it ran:
    the preprocessing, the classes, the validation split; the results of the stages that ran)."""
    from edgeres.data import Preprocess
    from edgeres.data.folder import DataSplits

    run_dir = Path(run_dir)
    raw, manifest = _read_run(run_dir)
    try:
        cfg = OptimizeConfig.from_dict(raw)
    except EdgeresError as e:
        raise EdgeresError(f"{run_dir / 'config.yaml'}: {e}; run `edgeres optimize` again") from None
    ctx = Context(cfg, run_dir, log or logging.getLogger("edgeres").info)
    ctx.measuring = False
    ctx.results = _stage_results(run_dir)
    try:
        ctx.pre = Preprocess.from_dict(manifest["preprocess"])
        classes = list(manifest["data"]["classes"])
    except (KeyError, TypeError, ValueError):
        raise EdgeresError(f"{run_dir}'s manifest.json is corrupt; run `edgeres optimize` again") from None
    val = None
    try:  # the run's validation split, for the bundle's self-check images and reference outputs
        from edgeres.data import resolve_data

        val = resolve_data(manifest["data"]["root"], seed=cfg.seed).val
    except (EdgeresError, OSError, KeyError, ValueError):
        pass  # the data folder moved: a bundle without self-check images
    ctx.splits = DataSplits(str(manifest["data"].get("root", "")), classes, [], val)
    return ctx


def bundle_command(run_dir, out) -> dict:
    """`edgeres deploy --run`: the bundle stage of the run, written to ``out``; returns its result's info with the
    bundle's path and size."""
    ctx = prepare_run(run_dir)
    if ctx.deploy_onnx() is None:
        raise EdgeresError(f"{run_dir} has no finished export or quantize stage; run `edgeres optimize` to the end first")
    ctx.bundle_out = Path(out)
    res = BundleStage().run(ctx)
    return dict(res.info, path=str(out), size_mb=res.rows[0]["model_size_mb"])


def prune_command(cfg: OptimizeConfig, out, prune_options: dict | None = None, measure_factory=None, log=None) -> dict:
    """`edgeres prune`: the prune stage of `optimize`, run alone on ``cfg.model`` (its inputs resolved by
    ``Pipeline.prepare``, nothing measured but top-1 before and after), its checkpoint written to ``out``: the bytes
    `optimize` writes for the same model, data and settings. ``prune_options``: the PruneConfig settings only the
    command has; ``measure_factory``: with --device, times the latency search's candidates on the board."""
    from edgeres.pipeline import Pipeline
    from edgeres.prune.finetune import val_top1
    from edgeres.stage_names import PRUNE
    from edgeres.stages.prune import PruneStage

    p = Pipeline(cfg, log=log, stages=(PRUNE,))
    ctx = Context(cfg, p.run_dir, p.log)
    ctx.measuring, ctx.prune_out, ctx.prune_options = False, Path(out), dict(prune_options or {})
    ctx.latency_measure = measure_factory
    p.prepare(ctx, hash_data=False)
    before = val_top1(ctx.loaded.model, ctx.splits, ctx.pre)
    info = PruneStage().run(ctx).info
    search = info.get("latency_search") or {}  # a latency goal's shortfall is in its search, --target-macs' in info
    return dict(info, top1_before=before, shortfall=info.get("shortfall") or search.get("shortfall"))


def quantize_command(cfg: OptimizeConfig, onnx, out, calib_cache=None, qat=None, log=None) -> dict:
    """`edgeres quantize`: the quantize stage of `optimize`, run alone on any FP32 ONNX file (``onnx``), its INT8 file
    written to ``out`` with nothing measured: the bytes `optimize` writes for the same file, images and settings.
    Without the run's data splits the stage calibrates from ``cfg.calib`` and checks the budget on ``cfg.data``'s
    validation images, or on a stratified slice held out of the calibration folder. ``qat``: the QAT factory
    (--model with --data), or None."""
    from edgeres.stages.quantize import QuantizeStage

    ctx = Context(cfg, Path(out).parent, log or logging.getLogger("edgeres").info)
    ctx.measuring = False
    ctx.quantize_onnx, ctx.quantize_out, ctx.calib_cache, ctx.quantize_qat = onnx, Path(out), calib_cache, qat
    return QuantizeStage().run(ctx).info
