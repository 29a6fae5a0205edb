"""edgeres command line. Thin: every command calls the same functions a Python user can call.

Exit codes: 0 success, 1 failure (one clear line on stderr), 2 usage error.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from edgeres import __version__
from edgeres.demo import DEMO as _DEMO  # plain data (no torch): the demo's recipe in one place
from edgeres.errors import EdgeresError, StageSkipped


class EdgeresGroup(click.Group):
    """Turns edgeres errors and file-system errors (OSError) into one line on stderr and exit 1, Ctrl-C into exit 130:
    no traceback for user mistakes."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except EdgeresError as e:
            click.secho(f"error: {e}", fg="red", err=True)
            sys.exit(1)
        except OSError as e:  # read-only, no space, not a directory, permission: one line naming the path
            from edgeres.errors import describe_oserror

            click.secho(f"error: {describe_oserror(e)}", fg="red", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.secho("interrupted: finished work is kept; run the same command again to resume", fg="yellow", err=True)
            sys.exit(130)


def _floats3(ctx, param, value):
    if value is None:
        return None
    try:
        vals = tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter("give three comma-separated numbers, e.g. 0.485,0.456,0.406") from None
    if len(vals) != 3:
        raise click.BadParameter("give three comma-separated numbers, e.g. 0.485,0.456,0.406")
    return vals


def preprocess_options(f):
    """--image-size/--crop-ratio/--mean/--std: for artifacts without edgeres metadata, or to override it."""
    opts = [
        click.option("--image-size", type=click.IntRange(8, 4096), default=None,
                     help="Input size (default: from the artifact, else 224)."),
        click.option("--crop-ratio", type=click.FloatRange(0.1, 1.0), default=None,
                     help="Resize short side to size/ratio, centre-crop size; 1.0 resizes straight (default 0.875)."),
        click.option("--mean", callback=_floats3, default=None, help="Normalisation mean, R,G,B (default ImageNet)."),
        click.option("--std", callback=_floats3, default=None, help="Normalisation std, R,G,B (default ImageNet)."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def resolve_preprocess(stored: dict | None, image_size=None, crop_ratio=None, mean=None, std=None):
    """Flags override what the artifact stores; what neither says takes the defaults."""
    from edgeres.stages import resolve_model_preprocess

    try:
        return resolve_model_preprocess(stored, dict(image_size=image_size, crop_ratio=crop_ratio, mean=mean, std=std))
    except EdgeresError as e:
        raise click.UsageError(str(e)) from None


def _trust_option(f):
    return click.option("--trust-model", is_flag=True,
                        help="Allow unpickling a full nn.Module (can run arbitrary code; only for files you trust).")(f)


@click.group(cls=EdgeresGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="edgeres")
@click.option("-v", "--verbose", is_flag=True, help="Also show debug messages and the libraries' logs (NNCF, ONNX Runtime...).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings, errors and results: no progress bars, no step messages.")
def main(verbose, quiet):
    """edgeres: prune, fine-tune, INT8-quantize and deploy ResNet classifiers to NVIDIA Jetson (and CPUs).

    \b
    The main line:
      edgeres optimize --model resnet50.pt --target jetson --data DIR
    runs baseline -> prune (+distillation) -> ONNX export -> INT8 quantization -> TensorRT engine -> bundle, and
    writes report.csv/json/png and summary.md with accuracy, latency and memory at every stage.
    `edgeres demo` does it all on the embedded demo dataset.

    Progress bars (with ETA) show on a terminal; in a log or CI each step is one line instead.
    """
    from edgeres.progress import setup_logging

    if verbose and quiet:
        raise click.UsageError("-v and -q exclude each other")
    setup_logging(1 if verbose else -1 if quiet else 0)


# ------------------------------------------------------------------------------------------------ targets
@main.command("targets")
@click.option("--json", "as_json", is_flag=True, help="Print the profiles as JSON.")
def targets_cmd(as_json):
    """List target profiles (runtime, precisions, TensorRT family, DLA, 2:4 sparsity)."""
    from edgeres.targets import list_targets

    ts = list_targets()
    if as_json:
        click.echo(json.dumps([t.to_dict() for t in ts], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="edgeres targets")
    for col in ("name", "runtime", "precisions", "JetPack", "TensorRT", "DLA", "2:4", "channels", "aliases"):
        table.add_column(col)
    for t in ts:  # channels: the multiple pruning rounds to (its source: `edgeres targets --json`, channel_source)
        table.add_row(t.name, t.runtime, ",".join(t.precisions), t.jetpack or "", t.trt_version or "", str(t.dla_cores),
                      "yes" if t.sparsity_2_4 else "no", str(t.channel_multiple), ",".join(t.aliases))
    Console(width=None if sys.stdout.isatty() else 160).print(table)


# ------------------------------------------------------------------------------------------------ data
@main.group("data", cls=EdgeresGroup)
def data_grp():
    """Datasets: the embedded demo set."""


@data_grp.command("make-demo")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Folder to write DIR/train, DIR/val into.")
@click.option("--train-per-class", type=click.IntRange(1), default=_DEMO["train_per_class"], show_default=True)
@click.option("--val-per-class", type=click.IntRange(1), default=_DEMO["val_per_class"], show_default=True)
@click.option("--size", type=click.IntRange(32, 1024), default=72, show_default=True, help="Image side in pixels.")
@click.option("--seed", type=int, default=0, show_default=True)
def make_demo_cmd(out, train_per_class, val_per_class, size, seed):
    """Write the embedded demo dataset (10 shape classes, ImageFolder layout). Deterministic; no download."""
    from edgeres.data.demo import make_demo

    make_demo(out, train_per_class, val_per_class, size, seed)
    click.echo(f"demo dataset written to {out} (train/, val/, labels.txt)")


# ------------------------------------------------------------------------------------------------ train
def train_options(f):
    opts = [
        click.option("--epochs", type=click.IntRange(1), default=10, show_default=True),
        click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True),
        click.option("--optimizer", type=click.Choice(["adamw", "sgd"]), default="adamw", show_default=True),
        click.option("--lr", type=click.FloatRange(0, min_open=True), default=None,
                     help="Peak learning rate (default 1e-3 adamw, 0.05 sgd); cosine schedule with warm-up."),
        click.option("--weight-decay", type=click.FloatRange(0), default=None),
        click.option("--label-smoothing", type=click.FloatRange(0, 0.5), default=0.1, show_default=True),
        click.option("--min-scale", type=click.FloatRange(0.05, 1.0), default=0.35, show_default=True,
                     help="Smallest crop area of the random resized crop."),
        click.option("--workers", type=click.IntRange(0), default=0, show_default=True, help="DataLoader workers."),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--skip-corrupt", is_flag=True, help="Skip unreadable images with a warning instead of stopping."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _train_config(**kw):
    from edgeres.stages.train import TrainConfig

    return TrainConfig(**{k: v for k, v in kw.items() if k in TrainConfig.__dataclass_fields__})


@main.command("train")
@click.option("--data", type=click.Path(), required=True, help="ImageFolder root (DIR/train, DIR/val, or one folder to split).")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="Best checkpoint (also writes OUT.last.pt, OUT.log.csv).")
@click.option("--arch", type=click.Choice(["resnet18", "resnet34", "resnet50", "resnet101"]), default="resnet50", show_default=True)
@click.option("--weights", type=click.Path(), default=None, help="Start from these weights (e.g. a torchvision ImageNet state dict); the head is replaced.")
@click.option("--partial-weights", is_flag=True, help="Load --weights even when under 90 % of the backbone's tensors match.")
@click.option("--freeze-backbone", is_flag=True, help="Train only the new classification head.")
@click.option("--resume", is_flag=True, help="Continue from OUT.last.pt.")
@click.option("--val-fraction", type=click.FloatRange(0.01, 0.9), default=0.2, show_default=True, help="When DATA has no train/val split.")
@train_options
@preprocess_options
@_trust_option
def train_cmd(data, out, arch, weights, partial_weights, freeze_backbone, resume, val_fraction, image_size, crop_ratio, mean, std,
              trust_model, **train_kw):
    """Train (transfer learning or from scratch) a ResNet on an image folder.

    Runs under `torchrun --nproc-per-node N edgeres train ...` with DistributedDataParallel (gloo on CPU, NCCL on GPU).
    """
    from edgeres.stages.train import train_model

    pre = resolve_preprocess({}, image_size, crop_ratio, mean, std)
    cfg = _train_config(freeze_backbone=freeze_backbone, **train_kw)
    result = train_model(data, out, arch=arch, pre=pre, cfg=cfg, weights=weights, resume=resume,
                         val_fraction=val_fraction, trust_model=trust_model, partial_weights=partial_weights)
    if result is not None:
        click.echo(f"best val top-1 {result['best_top1']:.2f}% -> {out}  ({result['seconds']:.0f}s, "
                   f"{result['images_per_s']:.0f} img/s)")


# ------------------------------------------------------------------------------------------------ evaluate
@main.command("evaluate")
@click.option("--model", "artifact", type=click.Path(), required=True, help=".pt, .onnx or .engine")
@click.option("--data", type=click.Path(), required=True, help="ImageFolder root; its val split is used.")
@click.option("--runtime", default=None, help="torch / onnxruntime / openvino / tensorrt (default: by file type).")
@click.option("--split", type=click.Choice(["val", "train"]), default="val", show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
@click.option("--num-classes", type=click.IntRange(1), default=None, help="For files without metadata: expected class count.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None, help="Also write the results as JSON.")
@click.option("--skip-corrupt", is_flag=True)
@preprocess_options
@_trust_option
def evaluate_cmd(artifact, data, runtime, split, batch_size, num_classes, json_out, skip_corrupt, image_size,
                 crop_ratio, mean, std, trust_model):
    """Top-1, top-5 and per-class accuracy of a model on a data folder."""
    from edgeres.evaluate import evaluate_artifact
    from edgeres.runtimes import artifact_info

    info = artifact_info(artifact, trust_model=trust_model) if Path(artifact).exists() else None
    if info is None:
        raise EdgeresError(f"model file {artifact} does not exist")
    pre = resolve_preprocess(info.preprocess, image_size, crop_ratio, mean, std)
    res = evaluate_artifact(artifact, data, pre, runtime=runtime, split=split, batch_size=batch_size,
                            num_classes=num_classes, trust_model=trust_model, skip_corrupt=skip_corrupt)
    click.echo(f"{artifact} [{res['runtime']}, {res['precision']}] on {res['images']} {split} images: "
               f"top-1 {res['top1']:.2f}%  top-5 {res['top5']:.2f}%")
    for c, a in res["per_class"].items():
        click.echo(f"  {c:>20s}  {a:6.2f}%" if a is not None else f"  {c:>20s}       -")
    if json_out:
        from edgeres.utils import write_json_atomic

        write_json_atomic(json_out, res)


# ------------------------------------------------------------------------------------------------ bench
@main.command("bench")
@click.option("--model", "artifact", type=click.Path(), required=True, help=".pt, .onnx or .engine")
@click.option("--data", type=click.Path(), default=None, help="Also measure accuracy on this ImageFolder's val split.")
@click.option("--csv", "csv_out", type=click.Path(dir_okay=False), default=None, help="Write the rows (report.csv schema).")
@click.option("--runtime", "runtimes", multiple=True, help="Runtime(s) to measure (default: every one for the file type).")
@click.option("--batch-size", "batch_sizes", type=click.IntRange(1), multiple=True, default=(1,), show_default=True)
@click.option("--threads", type=click.IntRange(1), default=None, help="Threads per runtime (default: physical cores).")
@click.option("--min-time", type=click.FloatRange(0.1), default=2.0, show_default=True, help="Seconds of timed runs per batch size.")
@click.option("--no-memory", is_flag=True, help="Skip the peak-RSS child process.")
@preprocess_options
@_trust_option
def bench_cmd(artifact, data, csv_out, runtimes, batch_sizes, threads, min_time, no_memory, image_size, crop_ratio,
              mean, std, trust_model):
    """Latency percentiles, throughput, memory (and accuracy with --data) of one artifact, as report rows."""
    from edgeres.evaluate import bench_artifact
    from edgeres.report import markdown_table, write_csv
    from edgeres.runtimes import artifact_info, artifact_kind

    if not Path(artifact).exists():
        raise EdgeresError(f"model file {artifact} does not exist")
    kind = artifact_kind(artifact)
    info = artifact_info(artifact, trust_model=trust_model) if kind != "engine" else artifact_info(artifact)
    pre = resolve_preprocess(info.preprocess, image_size, crop_ratio, mean, std)
    rows = bench_artifact(artifact, pre, data=data, runtimes=list(runtimes) or None, batch_sizes=batch_sizes,
                          threads=threads, min_time_s=min_time, memory=not no_memory, trust_model=trust_model)
    click.echo(markdown_table(rows))
    for r in rows:
        if r["status"] != "ok":
            click.secho(f"{r['runtime']}: {r['status']}: {r['note']}", fg="yellow", err=True)
    if csv_out:
        write_csv(csv_out, rows)
        click.echo(f"wrote {csv_out}")


# ------------------------------------------------------------------------------------------------ prune
@main.command("prune")
@click.option("--model", "model_path", type=click.Path(), required=True, help="Trained model (.pt).")
@click.option("--data", type=click.Path(), default=None, help="ImageFolder root for fine-tuning and accuracy (default: the checkpoint's data).")
@click.option("--out", type=click.Path(dir_okay=False), required=True)
@click.option("--ratio", type=float, default=None, help="Channel ratio to remove, in (0, 1), e.g. 0.3.")
@click.option("--target-macs", type=float, default=None, help="Instead of --ratio: keep this fraction of the MACs, e.g. 0.5.")
@click.option("--target-latency-ms", type=click.FloatRange(0, min_open=True), default=None,
              help="Instead of --ratio: search the ratio whose latency, measured in the target's runtime and precision "
                   "on this host, is at most this.")
@click.option("--target-speedup", type=click.FloatRange(1, min_open=True), default=None,
              help="Instead of --ratio: search the ratio whose measured speed-up over the unpruned model (same runtime "
                   "and precision) is at least this, e.g. 2. TensorRT targets fall back to MACs (1/S).")
@click.option("--importance", type=click.Choice(["l1", "l2", "bn", "taylor"]), default="l2", show_default=True)
@click.option("--global-pruning", is_flag=True, help="Rank channels across layers instead of per layer.")
@click.option("--round-to", type=click.IntRange(1), default=None,
              help="Channel counts rounded to a multiple of this (default: the target's channel multiple, see `edgeres targets`).")
@click.option("--iterative-steps", type=click.IntRange(1), default=1, show_default=True, help="Prune in steps, fine-tuning between them.")
@click.option("--prune-stem", is_flag=True, help="Also prune the stem convolution (kept by default).")
@click.option("--sparsity", type=click.Choice(["2:4"]), default=None, help="NVIDIA 2:4 structured sparsity (Orin/Thor).")
@click.option("--target", default="jetson", show_default=True, help="Target profile (checked for 2:4 support).")
@click.option("--finetune-epochs", type=click.IntRange(0), default=3, show_default=True)
@click.option("--kd-alpha", type=click.FloatRange(0, 1), default=0.7, show_default=True, help="Weight of distillation from the unpruned model.")
@click.option("--kd-temperature", type=click.FloatRange(0, min_open=True), default=4.0, show_default=True)
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=5e-4, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
@preprocess_options
@_trust_option
def prune_cmd(model_path, data, out, ratio, target_macs, target_latency_ms, target_speedup, importance, global_pruning, round_to, iterative_steps,
              prune_stem, sparsity, target, finetune_epochs, kd_alpha, kd_temperature, lr, batch_size, image_size,
              crop_ratio, mean, std, trust_model):
    """Structured channel pruning (+2:4 sparsity) with distillation fine-tuning; saves a weights-only checkpoint.

    Any ResNet-like classifier: torchvision and timm ResNets are rebuilt by name, other classes are written as their
    torch.export program. The file is reloaded and checked against the pruned model before success is reported."""
    from edgeres.stages.prune import FinetuneConfig, PruneConfig, run_prune
    from edgeres.targets import get_target

    cfg = PruneConfig(ratio=ratio, target_macs=target_macs, importance=importance, global_pruning=global_pruning,
                      round_to=round_to, iterative_steps=iterative_steps, keep_stem=not prune_stem, sparsity=sparsity)
    latency = target_latency_ms is not None or target_speedup is not None
    if latency and (ratio is not None or target_macs is not None):
        raise click.UsageError("give one of --ratio, --target-macs, --target-latency-ms, --target-speedup")
    if not latency:
        cfg.validate()
    ft = FinetuneConfig(epochs=finetune_epochs, kd_alpha=kd_alpha, kd_temperature=kd_temperature, lr=lr, batch_size=batch_size)
    pre_overrides = dict(image_size=image_size, crop_ratio=crop_ratio, mean=mean, std=std)
    if latency:
        from edgeres.stages.prune_latency import LatencyTarget, run_prune_latency, summary

        goal = LatencyTarget(latency_ms=target_latency_ms, speedup=target_speedup)
        goal.validate()
        res = run_prune_latency(model_path, out, cfg, ft, goal, data=data, target=get_target(target),
                                trust_model=trust_model, pre_overrides=pre_overrides)
        click.echo(f"latency target: {summary(res['latency_search'])}")
    else:
        res = run_prune(model_path, out, cfg, ft, data=data, target=get_target(target), trust_model=trust_model,
                        pre_overrides=pre_overrides)
    click.echo(f"MACs {res['macs_before'] / 1e9:.3f} G -> {res['macs_after'] / 1e9:.3f} G "
               f"({res['macs_before'] / max(1, res['macs_after']):.2f}x fewer), params {res['params_before'] / 1e6:.2f} M -> "
               f"{res['params_after'] / 1e6:.2f} M, top-1 {res['top1_before']:.2f}% -> {res['top1_after']:.2f}%  -> {out}"
               f" ({res.get('format', 'checkpoint')}, reload checked)")


# ------------------------------------------------------------------------------------------------ export
@main.command("export")
@click.option("--model", "model_path", type=click.Path(), required=True, help="Model (.pt) to export.")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="ONNX file to write.")
@click.option("--opset", type=click.IntRange(17, 23), default=17, show_default=True)
@click.option("--fixed-batch", type=click.IntRange(1), default=None, help="Export a fixed batch size instead of a dynamic one.")
@click.option("--no-simplify", is_flag=True, help="Skip onnxslim.")
@click.option("--data", type=click.Path(), default=None, help="Images for the parity check (default: the checkpoint's data, else random inputs).")
@click.option("--num-classes", type=click.IntRange(1), default=None)
@preprocess_options
@_trust_option
def export_cmd(model_path, out, opset, fixed_batch, no_simplify, data, num_classes, image_size, crop_ratio, mean, std,
               trust_model):
    """Export to ONNX (BN folded, simplified, metadata stored) and check parity with PyTorch on real images."""
    from edgeres.stages.export import ExportConfig, run_export

    cfg = ExportConfig(opset=opset, dynamic_batch=fixed_batch is None, batch=fixed_batch or 1, simplify=not no_simplify)
    res = run_export(model_path, out, cfg, data=data, trust_model=trust_model, num_classes=num_classes,
                     pre_overrides=dict(image_size=image_size, crop_ratio=crop_ratio, mean=mean, std=std))
    p = res["parity"]
    click.echo(f"wrote {out} (opset {opset}, {res['nodes']} nodes); parity on {p['source']}: max |Δlogit| "
               f"{p['max_abs_dlogit']:.2e}, top-1 agreement {p['agreement']:.1f}%")


# ------------------------------------------------------------------------------------------------ quantize
@main.command("quantize")
@click.option("--onnx", "onnx_path", type=click.Path(), required=True, help="FP32 ONNX file (from edgeres export).")
@click.option("--calib", type=click.Path(), required=True, help="Calibration images: an ImageFolder root (its train split, class-stratified) or any image folder.")
@click.option("--target", required=True, help="Target profile: decides the INT8 flavour (TensorRT s8 Q/DQ or ORT u8s8).")
@click.option("--out", type=click.Path(dir_okay=False), required=True)
@click.option("--calib-size", type=click.IntRange(1), default=512, show_default=True)
@click.option("--method", type=click.Choice(["histogram", "nncf-default", "minmax", "mean-minmax", "percentile", "entropy"]),
              default="histogram", show_default=True,
              help="Activation range estimator: histogram = MSE-optimal ranges; entropy = KL (TensorRT's); "
                   "nncf-default = NNCF's own.")
@click.option("--no-bias-correction", is_flag=True)
@click.option("--int8-max-drop", "--max-accuracy-drop", "int8_max_drop", type=click.FloatRange(0), default=None,
              help="INT8 budget: top-1 points the INT8 file may lose against this FP32 file, measured on the file "
                   "that ships, on --data's validation images (not used for calibration). Over budget, --fallback "
                   "is tried in order. Default: plain PTQ, no budget.")
@click.option("--fallback", default="methods,float,qat", show_default=True,
              help="Over budget, in order (first that fits wins): methods = the other calibration methods; float = "
                   "the most sensitive layers kept float (FP16 on TensorRT); qat = quantization-aware fine-tuning "
                   "(needs --model and --data's train split).")
@click.option("--model", "model_path", type=click.Path(), default=None,
              help="The PyTorch model this ONNX file was exported from (for the qat fallback).")
@click.option("--qat-epochs", type=click.IntRange(1, 5), default=1, show_default=True)
@click.option("--data", type=click.Path(), default=None, help="Validation images for accuracy (and --int8-max-drop).")
@click.option("--calib-cache", "calib_cache", type=click.Path(dir_okay=False), default=None,
              help="Also write a TensorRT calibration cache (default for TensorRT 8.x targets: OUT's folder/calib.cache).")
@click.option("--seed", type=int, default=0, show_default=True)
@preprocess_options
def quantize_cmd(onnx_path, calib, target, out, calib_size, method, no_bias_correction, int8_max_drop, fallback,
                 model_path, qat_epochs, data, calib_cache, seed, image_size, crop_ratio, mean, std):
    """INT8 post-training quantization with NNCF, right for the target's runtime; with --int8-max-drop, kept
    within that budget of FP32 (other calibration methods, float layers, QAT)."""
    from edgeres.stages.quantize import FALLBACKS, QuantizeConfig, run_quantize
    from edgeres.targets import get_target

    t = get_target(target)
    steps = tuple(x.strip() for x in fallback.split(",") if x.strip() and x.strip() != "none")
    bad = [x for x in steps if x not in FALLBACKS]
    if bad:
        raise click.BadParameter(f"unknown fallback {', '.join(bad)}; choose from {', '.join(FALLBACKS)}",
                                 param_hint="--fallback")
    if int8_max_drop is not None and not data:
        raise click.UsageError("--int8-max-drop needs --data (validation images to measure the INT8 file on)")
    cfg = QuantizeConfig(method=method, subset_size=calib_size, bias_correction=not no_bias_correction,
                         int8_max_drop=int8_max_drop, fallback=steps, qat_epochs=qat_epochs)
    qat = None
    if int8_max_drop is not None and "qat" in steps and model_path:
        from edgeres.data import resolve_data
        from edgeres.stages.qat import make_qat

        qat = make_qat(model_path, resolve_data(data), Path(out).parent / ".qat_work", epochs=qat_epochs,
                       lr=cfg.qat_lr, log=click.echo)
    res = run_quantize(onnx_path, calib, t, out, cfg, data=data, calib_cache=calib_cache, seed=seed,
                       pre_overrides=dict(image_size=image_size, crop_ratio=crop_ratio, mean=mean, std=std),
                       qat=qat, log=lambda m: click.echo(m, err=True))
    s = res["summary"]
    click.echo(f"wrote {out} for {t.name} ({res['format']}): {s['int8_layers']} INT8 layers, "
               f"{len(s['float_layers'])} float, Q/DQ dtypes {s['qdq_dtypes']}; manifest {res['manifest']}")
    if res.get("calib_cache"):
        click.echo(f"TensorRT calibration cache: {res['calib_cache']}")
    if res.get("top1_fp32") is not None:
        click.echo(f"top-1 FP32 {res['top1_fp32']:.2f}% -> INT8 {res['top1_int8']:.2f}% "
                   f"({res['top1_int8'] - res['top1_fp32']:+.2f} points, ONNX Runtime)")
    ac = res.get("accuracy_control")
    if ac:
        click.echo(f"accuracy control kept {len(ac['float_layers'])} layers in float: {', '.join(ac['float_layers']) or '-'}")
        for st in ac["steps"]:
            click.echo(f"  reverted {st['reverted']} ops -> drop {st.get('drop_after_points', float('nan')):.2f} points")
    if res.get("budget"):
        from edgeres.stages.quantize import budget_note

        click.echo(budget_note(res["budget"]))
        if res.get("sensitivity_csv"):
            click.echo(f"sensitivity per layer: {res['sensitivity_csv']} ({Path(res['sensitivity_png']).name})")


# ------------------------------------------------------------------------------------------------ check-onnx
@main.command("check-onnx")
@click.argument("onnx_file", type=click.Path())
@click.option("--target", required=True, help="Target profile whose rules apply.")
def check_onnx_cmd(onnx_file, target):
    """Lint an ONNX file against a target's rules (Q/DQ dtypes and zero-points, ops, opset, shapes)."""
    from edgeres.onnx_check import check_file
    from edgeres.targets import get_target

    t = get_target(target)
    if not Path(onnx_file).exists():
        raise EdgeresError(f"{onnx_file} does not exist")
    violations = check_file(onnx_file, t)
    for v in violations:
        click.echo(str(v), err=v.severity == "error")
    errors = [v for v in violations if v.severity == "error"]
    if errors:
        raise EdgeresError(f"{onnx_file} breaks {len(errors)} rule(s) of target {t.name}")
    warn = len(violations) - len(errors)
    click.echo(f"{onnx_file}: ok for {t.name}" + (f" ({warn} warnings)" if warn else ""))


# ------------------------------------------------------------------------------------------------ build-engine
@main.command("build-engine")
@click.option("--onnx", "onnx_path", type=click.Path(), required=True, help="Q/DQ INT8 (or FP32) ONNX file.")
@click.option("--target", required=True)
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="Engine file (a .json sidecar is written beside it).")
@click.option("--dla-core", type=click.IntRange(0), default=None, help="Run on this DLA core, GPU fallback on.")
@click.option("--sparsity", is_flag=True, help="Let TensorRT use 2:4 sparse kernels (model pruned with --sparsity 2:4).")
@click.option("--calib-cache", type=click.Path(dir_okay=False), default=None, help="Implicit INT8 from a cache (TensorRT 8.x, FP32 ONNX).")
@preprocess_options
def build_engine_cmd(onnx_path, target, out, dla_core, sparsity, calib_cache, image_size, crop_ratio, mean, std):
    """Build a TensorRT engine (TRT 8.5 / 10.x / 11.x); without TensorRT here, say why and print the trtexec line."""
    from edgeres.runtimes import artifact_info
    from edgeres.stages.engine import run_engine
    from edgeres.targets import get_target

    if not Path(onnx_path).is_file():
        raise EdgeresError(f"{onnx_path} does not exist")
    info = artifact_info(onnx_path)
    pre = resolve_preprocess(info.preprocess, image_size, crop_ratio, mean, std)
    try:
        res = run_engine(onnx_path, out, get_target(target), pre, classes=info.classes, dla_core=dla_core,
                         sparsity=sparsity, calib_cache=calib_cache)
    except StageSkipped as e:
        click.secho(f"engine build skipped: {e}", fg="yellow", err=True)
        click.echo("run this on the device instead:")
        click.echo(e.info["trtexec"])
        return
    click.echo(f"wrote {out} ({res['sidecar']['precision']}, TensorRT {res['sidecar']['tensorrt_version']})")


# ------------------------------------------------------------------------------------------------ optimize
def optimize_options(f):
    opts = [
        click.option("--target", default=None, help="Target profile (default jetson = Orin family; see `edgeres targets`)."),
        click.option("--data", type=click.Path(), default=None, help="ImageFolder root for accuracy and calibration (default: the checkpoint's data)."),
        click.option("--calib", type=click.Path(), default=None, help="Calibration images (default: a stratified sample of the training split)."),
        click.option("--prune", type=click.FloatRange(0, 0.95), default=None, help="Channel pruning ratio; 0 skips pruning (default 0.3)."),
        click.option("--sparsity", type=click.Choice(["2:4"]), default=None, help="Also apply 2:4 sparsity (Orin/Thor)."),
        click.option("--finetune-epochs", type=click.IntRange(0), default=None, help="Distillation fine-tuning after pruning (default 3)."),
        click.option("--max-accuracy-drop", type=click.FloatRange(0), default=None,
                     help="The recommendation's budget: top-1 points any artifact may lose against the BASELINE "
                          "model (default 1.0)."),
        click.option("--int8-max-drop", type=click.FloatRange(0), default=None,
                     help="The INT8 file's own budget: top-1 points it may lose against its FP32 EXPORT, measured on "
                          "the file that ships (default 0.5). Over it: other calibration methods, then the most "
                          "sensitive layers in float (FP16 on TensorRT), then QAT (see --int8-fallback)."),
        click.option("--int8-fallback", default=None,
                     help="Comma list, tried in order over the INT8 budget (default methods,float,qat; 'none': plain PTQ)."),
        click.option("--quant-max-drop", type=click.FloatRange(0), default=None,
                     help="Deprecated alias of --int8-max-drop."),
        click.option("--calib-size", type=click.IntRange(1), default=None, help="Calibration images (default 512)."),
        click.option("--calib-method", type=click.Choice(["histogram", "nncf-default", "minmax", "mean-minmax", "percentile",
                                                          "entropy"]),
                     default=None, help="Activation range estimator (default histogram: MSE-optimal ranges)."),
        click.option("--force", multiple=True, help="Redo this stage and every later one (repeatable)."),
        click.option("--config", "config_file", type=click.Path(), default=None, help="YAML file of options (flags override it)."),
        click.option("--latency-min-time", type=click.FloatRange(0.1), default=None, help="Seconds of timed runs per measurement (default 1)."),
        click.option("--no-memory", is_flag=True, default=None, help="Skip peak-RSS measurement (child processes)."),
        click.option("--threads", type=click.IntRange(1), default=None),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _fallback_list(text):
    """--int8-fallback "methods,float" -> ["methods", "float"]; "none" -> [] (plain PTQ); None stays None."""
    if text is None:
        return None
    from edgeres.stages.quantize import FALLBACKS

    steps = [x.strip() for x in text.split(",") if x.strip() and x.strip() != "none"]
    bad = [x for x in steps if x not in FALLBACKS]
    if bad:
        raise click.BadParameter(f"unknown step {', '.join(bad)}; choose from {', '.join(FALLBACKS)} or none",
                                 param_hint="--int8-fallback")
    return steps


def _config_values(kw: dict) -> dict:
    """The optimize options as config keys; a flag left unset is None, so the config file or the default decides."""
    vals = dict(kw)
    for k in ("no_memory", "trust_model"):
        if k in vals:
            vals[k] = vals[k] or None
    for k in ("mean", "std"):
        if vals.get(k):
            vals[k] = list(vals[k])
    if "int8_fallback" in vals:
        vals["int8_fallback"] = _fallback_list(vals["int8_fallback"])
    return vals


def _build_config(ctx, config_file, cli_values: dict, base: dict | None = None):
    """defaults < --config file < explicit flags."""
    from click.core import ParameterSource

    from edgeres.config import ConfigError, OptimizeConfig, load_config_file

    d = dict(base or {})
    if config_file:
        d.update(load_config_file(config_file))
    flags = set()
    for k, v in cli_values.items():
        src = ctx.get_parameter_source(k) if k in ctx.params else None
        if v is not None and (src in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT) or k not in d):
            d[k] = v
            flags.add(k)
    if "no_memory" in d:
        d["measure_memory"] = not d.pop("no_memory")
    try:  # one validation (types, ranges) for flags and YAML alike, before any stage runs
        return OptimizeConfig.from_dict({k: v for k, v in d.items() if v is not None})
    except ConfigError as e:
        if e.key in flags:
            raise click.BadParameter(f"{e.need} (got {e.value!r})", param_hint=f"--{e.key.replace('_', '-')}") from None
        raise EdgeresError(f"{config_file or 'config'}: {e}") from None


def _print_result(res):
    """The final table and verdict: the same columns and lines as summary.md (edgeres.report.TABLE, verdict_lines)."""
    from rich.console import Console
    from rich.markdown import Markdown
    from rich.table import Table

    from edgeres.report import TABLE, table_cells, table_footnote, verdict_lines

    console = Console(width=None if sys.stdout.isatty() else 160)
    target = res.get("target")
    table = Table(title=f"edgeres report: {res['run_dir']}")
    for _, header in TABLE:
        table.add_column(header, justify="left" if header in ("stage", "runtime", "precision", "status") else "right")
    for r in res["rows"]:
        table.add_row(*table_cells(r, target))
    console.print(table)
    foot = table_footnote(res["rows"], target)
    if foot:
        console.print(foot)
    for r in res["rows"]:
        if r["status"] != "ok":
            click.secho(f"{r['stage']}: {r['status']}: {r['note']}", fg="yellow", err=True)
    for line in res.get("verdict") or verdict_lines(res["rows"], res["recommendation"], target, res["run_dir"]):
        console.print(Markdown(line))
    console.print(f"report: {res['report'].get('summary')} (report.csv, report.json, report.png) in {res['seconds']:.0f}s")


@main.command("optimize")
@click.option("--model", type=click.Path(), default=None, help="Trained model (.pt: edgeres checkpoint, state dict, TorchScript).")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Run directory (default runs/MODEL-TARGET).")
@click.option("--target-latency-ms", type=click.FloatRange(0, min_open=True), default=None,
              help="Instead of --prune: the ratio whose latency, measured in the target's runtime and precision here, is at most this.")
@click.option("--target-speedup", type=click.FloatRange(1, min_open=True), default=None,
              help="Instead of --prune: the ratio whose measured speed-up over the unpruned model is at least this (TensorRT targets: by MACs).")
@optimize_options
@preprocess_options
@_trust_option
@click.pass_context
def optimize_cmd(ctx, force, config_file, **kw):
    """The whole pipeline: baseline -> prune -> export -> INT8 -> engine -> bundle -> report. Resumable.

    Re-running the same command reuses every stage whose inputs are unchanged; --force STAGE redoes one and
    everything after it. Ctrl-C leaves no corrupt artifact. Every option can also come from --config FILE (flags
    win); docs/edgeres.yaml lists every key with its default, including those only a config file sets.
    """
    from edgeres.pipeline import optimize

    if (kw["target_latency_ms"] is not None or kw["target_speedup"] is not None) and kw["prune"] is not None:
        raise click.UsageError("give --prune or --target-latency-ms/--target-speedup, not both")
    vals = _config_values(kw)
    cfg = _build_config(ctx, config_file, vals)
    if not cfg.model:
        raise click.UsageError("--model is required (or `model:` in --config)")
    res = optimize(cfg, tuple(force))
    if res is not None:  # None: a torchrun rank > 0, which only joined the fine-tuning
        _print_result(res)


# ------------------------------------------------------------------------------------------------ demo
@main.command("demo")
@click.option("--out", type=click.Path(file_okay=False), default="runs/demo", show_default=True)
@click.option("--epochs", type=click.IntRange(1), default=_DEMO["epochs"], show_default=True,
              help="Training epochs of the demo ResNet50 (from scratch, augmentation on).")
@click.option("--image-size", type=click.IntRange(32, 224), default=_DEMO["image_size"], show_default=True)
@click.option("--train-per-class", type=click.IntRange(2), default=_DEMO["train_per_class"], show_default=True)
@click.option("--val-per-class", type=click.IntRange(2), default=_DEMO["val_per_class"], show_default=True)
@click.option("--arch", type=click.Choice(["resnet18", "resnet34", "resnet50", "resnet101"]), default="resnet50", show_default=True)
@optimize_options
@click.pass_context
def demo_cmd(ctx, out, epochs, image_size, train_per_class, val_per_class, arch, data, force, config_file, **kw):
    """The main job on the embedded default: make the demo data, train a ResNet50 briefly, optimize for Jetson.

    \b
    About 12 minutes on a 2-core x86 CPU (install included); writes runs/demo/ (report.csv/json/png, summary.md).
    Re-running reuses the data, the trained model and every unchanged stage.
    """
    from edgeres.demo import run_demo

    vals = _config_values(kw)
    res = run_demo(out, epochs=epochs, image_size=image_size, train_per_class=train_per_class,
                   val_per_class=val_per_class, arch=arch, data=data,
                   make_config=lambda base: _build_config(ctx, config_file, vals, base), force=tuple(force))
    _print_result(res)


# ------------------------------------------------------------------------------------------------ deploy / report
@main.command("deploy")
@click.option("--run", "run_dir", type=click.Path(file_okay=False), required=True, help="A run directory of `edgeres optimize`.")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="Bundle to write (.tar.gz).")
def deploy_cmd(run_dir, out):
    """Write the deployment bundle of a run: model, runtime, labels, preprocessing, manifest, README, install.sh."""
    from edgeres.bundle import bundle_from_run

    res = bundle_from_run(run_dir, out)
    click.echo(f"wrote {out} ({res['size_mb']:.1f} MB, {len(res['files'])} files); on the device: "
               f"mkdir bundle && tar xzf {Path(out).name} -C bundle && cd bundle && "
               f"export EDGERES_MANIFEST_SHA256={res['manifest_sha256']} && sh install.sh && ./run.sh verify")


@main.command("report")
@click.option("--run", "run_dir", type=click.Path(file_okay=False), required=True)
@click.option("--merge", "merge_csv", type=click.Path(dir_okay=False), multiple=True,
              help="A CSV written on the device (./run.sh bench/evaluate --csv): fold it into the report.")
def report_cmd(run_dir, merge_csv):
    """Rewrite a run's report, folding in rows measured on the device."""
    from edgeres.report import merge_run_report

    res = merge_run_report(run_dir, list(merge_csv))
    click.echo(f"report of {run_dir}: {len(res['rows'])} rows ({res['merged']} from the device) -> {res['csv']}")
