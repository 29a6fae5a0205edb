"""edgeres command line. Thin: every command calls the same functions a Python user can call.

Exit codes: 0 success, 1 failure (one clear line on stderr), 2 usage error.
"""

from __future__ import annotations

import json
import sys

import click

from edgeres import __version__
from edgeres.cli_common import (
    MAX_BATCH,
    MAX_CLASSES,
    MAX_PER_CLASS,
    SEED,
    EdgeresGroup,
    FiniteFloat,
    resolve_preprocess,
)
from edgeres.cli_options import flags
from edgeres.demo import DEMO as _DEMO  # plain data (no torch): the demo's recipe in one place
from edgeres.errors import require_path
from edgeres.options import ARCHS, RUNTIMES


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
@click.option("--train-per-class", type=click.IntRange(1, MAX_PER_CLASS), default=_DEMO["train_per_class"], show_default=True)
@click.option("--val-per-class", type=click.IntRange(1, MAX_PER_CLASS), default=_DEMO["val_per_class"], show_default=True)
@click.option("--size", type=click.IntRange(32, 1024), default=72, show_default=True, help="Image side in pixels.")
@click.option("--seed", type=SEED, default=0, show_default=True)
def make_demo_cmd(out, train_per_class, val_per_class, size, seed):
    """Write the embedded demo dataset (10 shape classes, ImageFolder layout). Deterministic; no download."""
    from edgeres.data.demo import make_demo

    make_demo(out, train_per_class, val_per_class, size, seed)
    click.echo(f"demo dataset written to {out} (train/, val/, labels.txt)")


# ------------------------------------------------------------------------------------------------ train
def train_options(f):
    opts = [
        click.option("--epochs", type=click.IntRange(1, 10000), default=10, show_default=True),
        click.option("--batch-size", type=click.IntRange(1, 4096), default=32, show_default=True),
        click.option("--optimizer", type=click.Choice(["adamw", "sgd"]), default="adamw", show_default=True),
        click.option("--lr", type=FiniteFloat(0, 10, min_open=True), default=None,
                     help="Peak learning rate (default 1e-3 adamw, 0.05 sgd); cosine schedule with warm-up."),
        click.option("--weight-decay", type=FiniteFloat(0, 10), default=None),
        click.option("--label-smoothing", type=FiniteFloat(0, 0.5), default=0.1, show_default=True),
        click.option("--min-scale", type=FiniteFloat(0.05, 1.0), default=0.35, show_default=True,
                     help="Smallest crop area of the random resized crop."),
        click.option("--seed", type=SEED, default=0, show_default=True),
        click.option("--skip-corrupt", is_flag=True, help="Skip unreadable images with a warning instead of stopping."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _train_config(**kw):
    from edgeres.train.config import TrainConfig

    return TrainConfig(**{k: v for k, v in kw.items() if k in TrainConfig.__dataclass_fields__})


@main.command("train")
@click.option("--data", type=click.Path(), required=True, help="ImageFolder root (DIR/train, DIR/val, or one folder to split).")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="Best checkpoint (also writes OUT.last.pt, OUT.log.csv).")
@click.option("--arch", type=click.Choice(ARCHS), default="resnet50", show_default=True)
@click.option("--weights", type=click.Path(), default=None, help="Start from these weights (e.g. a torchvision ImageNet state dict); the head is replaced.")
@click.option("--partial-weights", is_flag=True, help="Load --weights even when under 90 % of the backbone's tensors match.")
@click.option("--freeze-backbone", is_flag=True, help="Train only the new classification head.")
@click.option("--resume", is_flag=True, help="Continue from OUT.last.pt.")
@click.option("--val-fraction", type=FiniteFloat(0.01, 0.9), default=0.2, show_default=True, help="When DATA has no train/val split.")
@train_options
@flags("train")
def train_cmd(data, out, arch, weights, partial_weights, freeze_backbone, resume, val_fraction, image_size, crop_ratio, mean, std,
              trust_model, **train_kw):
    """Train (transfer learning or from scratch) a ResNet on an image folder.

    Runs under `torchrun --nproc-per-node N edgeres train ...` with DistributedDataParallel (gloo on CPU, NCCL on GPU).
    """
    from edgeres.train.transfer import train_model

    if weights:  # checked before the data folder is scanned
        require_path(weights, "file", "model file", "--weights takes a state dict or checkpoint")
    pre = resolve_preprocess({}, image_size, crop_ratio, mean, std)
    cfg = _train_config(freeze_backbone=freeze_backbone, **train_kw)
    result = train_model(data, out, arch=arch, pre=pre, cfg=cfg, weights=weights, resume=resume,
                         val_fraction=val_fraction, trust_model=trust_model, partial_weights=partial_weights)
    if result is not None:
        click.echo(f"best val top-1 {result['best_top1']:.2f}% -> {out}  ({result['seconds']:.0f}s, "
                   f"{result['images_per_s']:.0f} img/s)")


# ------------------------------------------------------------------------------------------------ evaluate
def _runtime_fits(artifact, runtimes) -> None:
    """A --runtime that cannot open this kind of file is a usage error, before the file is read."""
    from edgeres.runtimes import runtimes_for

    fits = runtimes_for(artifact)
    bad = [r for r in runtimes if r not in fits]
    if bad:
        raise click.BadParameter(f"{bad[0]} cannot run {artifact}; for this kind of file use {' or '.join(fits)}",
                                 param_hint="--runtime")


@main.command("evaluate")
@click.option("--model", "artifact", type=click.Path(), required=True, help=".pt, .onnx or .engine")
@click.option("--data", type=click.Path(), required=True, help="ImageFolder root; its val split is used.")
@click.option("--runtime", type=click.Choice(RUNTIMES), default=None, help="Default: by file type.")
@click.option("--split", type=click.Choice(["val", "train"]), default="val", show_default=True)
@click.option("--batch-size", type=click.IntRange(1, MAX_BATCH), default=32, show_default=True)
@click.option("--num-classes", type=click.IntRange(1, MAX_CLASSES), default=None, help="For files without metadata: expected class count.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None, help="Also write the results as JSON.")
@click.option("--skip-corrupt", is_flag=True)
@flags("evaluate")
def evaluate_cmd(artifact, data, runtime, split, batch_size, num_classes, json_out, skip_corrupt, image_size,
                 crop_ratio, mean, std, trust_model):
    """Top-1, top-5 and per-class accuracy of a model on a data folder."""
    from edgeres.evaluate import evaluate_artifact
    from edgeres.runtimes import artifact_info

    require_path(artifact, "file", "model file")
    _runtime_fits(artifact, [runtime] if runtime else [])
    info = artifact_info(artifact, trust_model=trust_model)
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
@click.option("--runtime", "runtimes", type=click.Choice(RUNTIMES), multiple=True, help="Runtime(s) to measure (default: every one for the file type).")
@click.option("--batch-size", "batch_sizes", type=click.IntRange(1, MAX_BATCH), multiple=True, default=(1,), show_default=True)
@click.option("--device", "devices", multiple=True,
              help="Build the ONNX file's engine on this Jetson over ssh and measure it there (repeatable; "
                   "ssh://[user@]host[:port] or a ~/.ssh/config alias).")
@click.option("--target", default=None, help="With --device: the target profile (default: the board's).")
@flags("bench")
def bench_cmd(artifact, data, csv_out, runtimes, batch_sizes, devices, target, threads, latency_min_time, measure_memory,
              image_size, crop_ratio, mean, std, trust_model):
    """Latency percentiles, throughput, memory (and accuracy with --data) of one artifact, as report rows."""
    from edgeres.evaluate import bench_artifact
    from edgeres.report import write_csv
    from edgeres.report_table import markdown_table
    from edgeres.runtimes import artifact_info, artifact_kind

    require_path(artifact, "file", "model file")
    kind = artifact_kind(artifact)
    _runtime_fits(artifact, runtimes)
    info = artifact_info(artifact, trust_model=trust_model) if kind != "engine" else artifact_info(artifact)
    pre = resolve_preprocess(info.preprocess, image_size, crop_ratio, mean, std)
    if devices:  # the engine built and measured on each Jetson, not on this host
        from edgeres.device.commands import bench_on_devices

        rows = bench_on_devices(artifact, pre, devices, target, data=data, batch_sizes=batch_sizes,
                                min_time=latency_min_time)
    else:
        rows = bench_artifact(artifact, pre, data=data, runtimes=list(runtimes) or None, batch_sizes=batch_sizes,
                              threads=threads, min_time_s=latency_min_time, memory=measure_memory,
                              trust_model=trust_model)
    click.echo(markdown_table(rows))
    for r in rows:
        if r["status"] != "ok":
            click.secho(f"{r['runtime']}: {r['status']}: {r['note']}", fg="yellow", err=True)
    if csv_out:
        write_csv(csv_out, rows)
        click.echo(f"wrote {csv_out}")


# ------------------------------------------------------------------------------------------------ the other commands
from edgeres.cli_device import device_grp  # noqa: E402 - each module registers its commands on the group above
from edgeres.cli_optimize import demo_cmd, deploy_cmd, optimize_cmd, report_cmd  # noqa: E402
from edgeres.cli_stages import build_engine_cmd, check_onnx_cmd, export_cmd, prune_cmd, quantize_cmd  # noqa: E402

for _cmd in (prune_cmd, export_cmd, quantize_cmd, check_onnx_cmd, build_engine_cmd, optimize_cmd, demo_cmd, deploy_cmd, report_cmd, device_grp):
    main.add_command(_cmd)
