"""`edgeres prune | export | quantize | check-onnx | build-engine`: one pipeline stage on files. Thin click adapters,
registered by edgeres.cli."""

from __future__ import annotations

from pathlib import Path

import click

from edgeres.cli_common import FiniteFloat, resolve_preprocess
from edgeres.cli_options import check_target_use, flags, values
from edgeres.errors import EdgeresError, StageSkipped, Unavailable, require_path


# ------------------------------------------------------------------------------------------------ prune
@click.command("prune")
@click.option("--model", "model_path", type=click.Path(), required=True, help="Trained model (.pt).")
@click.option("--out", type=click.Path(dir_okay=False), required=True)
@click.option("--ratio", type=FiniteFloat(0, 1, min_open=True, max_open=True), default=None,
              help="Channel ratio to remove, in (0, 1), e.g. 0.3.")
@click.option("--target-macs", type=FiniteFloat(0, 1, min_open=True, max_open=True), default=None,
              help="Instead of --ratio: keep this fraction of the MACs, e.g. 0.5.")
@click.option("--global-pruning", is_flag=True, help="Rank channels across layers instead of per layer.")
@click.option("--round-to", type=click.IntRange(1, 1024), default=None,
              help="Channel counts rounded to a multiple of this (default: the target's channel multiple, see `edgeres targets`).")
@click.option("--iterative-steps", type=click.IntRange(1, 100), default=1, show_default=True,
              help="Prune in steps, fine-tuning between them.")
@click.option("--prune-stem", is_flag=True, help="Also prune the stem convolution (kept by default).")
@flags("prune")
def prune_cmd(model_path, out, ratio, target_macs, global_pruning, round_to, iterative_steps, prune_stem, **kw):
    """Structured channel pruning (+2:4 sparsity) with distillation fine-tuning; saves a weights-only checkpoint.

    Any ResNet-like classifier: torchvision and timm ResNets are rebuilt by name, other classes are written as their
    torch.export program. The file is reloaded and checked against the pruned model before success is reported."""
    from edgeres.config import OptimizeConfig
    from edgeres.prune.channels import PruneConfig
    from edgeres.stage_commands import prune_command

    kw = values("prune", kw)
    target, sparsity, devices = kw["target"], kw["sparsity"], kw["device"]
    check_target_use("prune", target, {"sparsity": sparsity})
    target_latency_ms, target_speedup = kw["target_latency_ms"], kw["target_speedup"]
    if target_latency_ms is not None and target_speedup is not None:
        raise click.UsageError("give --target-latency-ms or --target-speedup, not both")
    only = dict(target_macs=target_macs, global_pruning=global_pruning, round_to=round_to,
                iterative_steps=iterative_steps, keep_stem=not prune_stem)  # what `optimize` has not
    latency = target_latency_ms is not None or target_speedup is not None
    if latency and (ratio is not None or target_macs is not None):
        raise click.UsageError("give one of --ratio, --target-macs, --target-latency-ms, --target-speedup")
    if not latency:
        PruneConfig(ratio=ratio, importance=kw["importance"], sparsity=sparsity, **only).validate()
    if devices and not latency:
        raise click.UsageError("--device times the pruning candidates on the board: give --target-latency-ms or "
                               "--target-speedup (or use `edgeres optimize --device` to measure the result)")
    if latency:
        from edgeres.prune.latency import LatencyTarget

        LatencyTarget(latency_ms=target_latency_ms, speedup=target_speedup).validate()
    settings = {k: v for k, v in kw.items() if k not in ("device", "skip_corrupt") and v is not None}

    def run(t, factory):
        cfg = OptimizeConfig(model=model_path, prune=ratio or 0.0, **dict(settings, target=t))
        return prune_command(cfg, out, only, measure_factory=factory)  # the prune stage of `optimize`, alone

    res = _prune_on_devices(devices, target, run)
    if latency:
        from edgeres.prune.latency import summary

        click.echo(f"latency target: {summary(res['latency_search'])}")
    if res.get("shortfall"):
        click.echo(f"shortfall accepted: {res['shortfall']}")
    click.echo(f"MACs {res['macs_before'] / 1e9:.3f} G -> {res['macs_after'] / 1e9:.3f} G "
               f"({res['macs_before'] / max(1, res['macs_after']):.2f}x fewer), params {res['params_before'] / 1e6:.2f} M -> "
               f"{res['params_after'] / 1e6:.2f} M, top-1 {res['top1_before']:.2f}% -> {res['top1_after']:.2f}%  -> {out}"
               f" ({res.get('format', 'checkpoint')}, reload checked)")


def _prune_on_devices(devices, target, run):
    """``run(target, measure_factory)``: on this host without --device; else with the devices connected, the target
    checked against (or, with auto, taken from) the board, and the candidates timed on the first device."""
    if not devices:
        return run(target, None)
    import logging

    from edgeres.device.fleet import Fleet
    from edgeres.device.latency import search_on_device

    log = logging.getLogger("edgeres.device").info
    with Fleet(devices, log) as fleet:
        return run(fleet.resolve_target(target), search_on_device(fleet, log))


# ------------------------------------------------------------------------------------------------ export
@click.command("export")
@click.option("--model", "model_path", type=click.Path(), required=True, help="Model (.pt) to export.")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="ONNX file to write.")
@click.option("--fixed-batch", type=click.IntRange(1, 4096), default=None, help="Export a fixed batch size instead of a dynamic one.")
@click.option("--no-simplify", is_flag=True, help="Skip onnxslim.")
@click.option("--num-classes", type=click.IntRange(1, 1_000_000), default=None)
@flags("export")
def export_cmd(model_path, out, fixed_batch, no_simplify, num_classes, opset, data, image_size, crop_ratio, mean, std,
               trust_model):
    """Export to ONNX (BN folded, simplified, metadata stored) and check parity with PyTorch on real images."""
    from edgeres.config import OptimizeConfig
    from edgeres.onnx_export import ExportConfig
    from edgeres.pipeline import export_command

    cfg = OptimizeConfig(model=model_path, data=data, opset=opset, image_size=image_size, crop_ratio=crop_ratio,
                         mean=mean, std=std, trust_model=trust_model)
    ecfg = ExportConfig(opset=opset, dynamic_batch=fixed_batch is None, batch=fixed_batch or 1, simplify=not no_simplify)
    res = export_command(cfg, out, ecfg, num_classes=num_classes)  # the export stage of `optimize`, alone
    p = res["parity"]
    click.echo(f"wrote {out} (opset {opset}, {res['nodes']} nodes); parity on {p['source']}: max |Δlogit| "
               f"{p['max_abs_dlogit']:.2e}, top-1 agreement {p['agreement']:.1f}%")


# ------------------------------------------------------------------------------------------------ quantize
@click.command("quantize")
@click.option("--onnx", "onnx_path", type=click.Path(), required=True, help="FP32 ONNX file (from edgeres export).")
@click.option("--out", type=click.Path(dir_okay=False), required=True)
@click.option("--model", "model_path", type=click.Path(), default=None,
              help="The PyTorch model this ONNX file was exported from (for the qat fallback).")
@click.option("--calib-cache", "calib_cache", type=click.Path(dir_okay=False), default=None,
              help="Also write a TensorRT calibration cache (default for TensorRT 8.x targets: OUT's folder/calib.cache).")
@flags("quantize")
def quantize_cmd(onnx_path, out, model_path, calib_cache, **kw):
    """INT8 post-training quantization with NNCF, right for the target's runtime, kept within --int8-max-drop of FP32
    (default 0.5 point, as `optimize`): measured on --data's validation images, or without --data on a stratified
    slice held out of --calib (not calibrated on); over it: other calibration methods, float layers, QAT."""
    from edgeres.config import OptimizeConfig
    from edgeres.stage_commands import quantize_command
    from edgeres.targets import get_target

    kw = values("quantize", kw)
    cfg = OptimizeConfig(**kw)  # the quantize options, read as `optimize` reads them
    t = get_target(cfg.target)
    qat = None
    if cfg.int8_max_drop is not None and "qat" in cfg.int8_fallback and model_path and cfg.data:
        from edgeres.data import resolve_data
        from edgeres.quant.qat import make_qat
        from edgeres.quant.settings import QuantizeConfig

        qat = make_qat(model_path, resolve_data(cfg.data), Path(out).parent / ".qat_work", epochs=cfg.qat_epochs,
                       lr=QuantizeConfig.qat_lr, log=click.echo)
    res = quantize_command(cfg, onnx_path, out, calib_cache=calib_cache, qat=qat, log=lambda m: click.echo(m, err=True))
    _quantize_report(res, out, t)


def _quantize_report(res: dict, out, t) -> None:
    s = res["summary"]
    click.echo(f"wrote {out} for {t.name} ({res['format']}): {s['int8_layers']} INT8 layers, "
               f"{len(s['float_layers'])} float, Q/DQ dtypes {s['qdq_dtypes']}, {res['calibration_images']} "
               f"calibration images; manifest {res['manifest']}")
    if res.get("calib_cache"):
        click.echo(f"TensorRT calibration cache: {res['calib_cache']}")
    ac = res.get("accuracy_control")
    if res.get("budget"):
        from edgeres.quant.budget import budget_note

        b = res["budget"]
        click.echo(f"top-1 FP32 {b['top1_fp32']:.2f}% -> INT8 {b['top1_int8']:.2f}% "
                   f"({0.0 - b['drop_points']:+.2f} points, ONNX Runtime); " + budget_note(b))
        if res.get("sensitivity_csv"):
            click.echo(f"sensitivity per layer: {res['sensitivity_csv']} ({Path(res['sensitivity_png']).name})")
    elif res.get("top1_fp32") is not None:
        click.echo(f"top-1 FP32 {res['top1_fp32']:.2f}% -> INT8 {res['top1_int8']:.2f}% "
                   f"({res['top1_int8'] - res['top1_fp32']:+.2f} points, ONNX Runtime); INT8 path: "
                   + ("NNCF accuracy control" if ac else "plain PTQ, no budget (--int8-max-drop none)"))
    elif res.get("budget_unchecked"):
        click.secho(f"INT8 path: plain PTQ, budget NOT checked: {res['budget_unchecked']} (give --data with labelled "
                    "validation images)", fg="yellow", err=True)
    else:
        click.echo("INT8 path: plain PTQ, no budget check (--int8-max-drop none)")
    if ac:
        click.echo(f"accuracy control kept {len(ac['float_layers'])} layers in float: {', '.join(ac['float_layers']) or '-'}")
        for st in ac["steps"]:
            click.echo(f"  reverted {st['reverted']} ops -> drop {st.get('drop_after_points', float('nan')):.2f} points")


# ------------------------------------------------------------------------------------------------ check-onnx
@click.command("check-onnx")
@click.argument("onnx_file", type=click.Path())
@click.option("--target", required=True, help="Target profile whose rules apply.")
def check_onnx_cmd(onnx_file, target):
    """Lint an ONNX file against a target's rules (Q/DQ dtypes and zero-points, ops, opset, shapes)."""
    from edgeres.onnx_check import check_file
    from edgeres.targets import get_target

    t = get_target(target)
    require_path(onnx_file, "file", "ONNX file")
    violations = check_file(onnx_file, t)
    for v in violations:
        click.echo(str(v), err=v.severity == "error")
    errors = [v for v in violations if v.severity == "error"]
    if errors:
        raise EdgeresError(f"{onnx_file} breaks {len(errors)} rule(s) of target {t.name}")
    warn = len(violations) - len(errors)
    click.echo(f"{onnx_file}: ok for {t.name}" + (f" ({warn} warnings)" if warn else ""))


# ------------------------------------------------------------------------------------------------ build-engine
@click.command("build-engine")
@click.option("--onnx", "onnx_path", type=click.Path(), required=True, help="Q/DQ INT8 (or FP32) ONNX file.")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="Engine file (a .json sidecar is written beside it).")
@click.option("--sparsity", is_flag=True, help="Let TensorRT use 2:4 sparse kernels (model pruned with --sparsity 2:4).")
@click.option("--calib-cache", type=click.Path(dir_okay=False), default=None, help="Implicit INT8 from a cache (TensorRT 8.x, FP32 ONNX).")
@flags("build-engine")
def build_engine_cmd(onnx_path, out, sparsity, calib_cache, target, dla_core, image_size, crop_ratio, mean, std):
    """Build a TensorRT engine (TRT 8.5 / 10.x / 11.x); without TensorRT here, say why and print the trtexec line."""
    from edgeres.engine_build import run_engine
    from edgeres.runtimes import artifact_info

    t = check_target_use("build-engine", target, {"engine": True, "dla_core": dla_core, "sparsity": sparsity})
    require_path(onnx_path, "file", "ONNX file")
    info = artifact_info(onnx_path)
    pre = resolve_preprocess(info.preprocess, image_size, crop_ratio, mean, std)
    try:
        res = run_engine(onnx_path, out, t, pre, classes=info.classes, dla_core=dla_core,
                         sparsity=sparsity, calib_cache=calib_cache)
    except (StageSkipped, Unavailable) as e:
        click.secho(f"engine build skipped: {e}", fg="yellow", err=True)
        click.echo("run this on the device instead:")
        click.echo(e.info["trtexec"])
        return
    click.echo(f"wrote {out} ({res['sidecar']['precision']}, TensorRT {res['sidecar']['tensorrt_version']})")
