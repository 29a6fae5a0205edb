"""`edgeres optimize | demo | deploy | report`: the whole pipeline on a run folder, and what is done with a run
afterwards. Thin click adapters, registered by edgeres.cli."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edgeres.cli_common import MAX_PER_CLASS
from edgeres.cli_options import flags, values
from edgeres.demo import DEMO as _DEMO  # plain data (no torch): the demo's recipe in one place
from edgeres.errors import EdgeresError
from edgeres.options import ARCHS


# ------------------------------------------------------------------------------------------------ optimize
def run_options(f):
    """--force and --config: how a run is made, not what it makes (no config keys)."""
    f = click.option("--config", "config_file", type=click.Path(), default=None,
                     help="YAML file of options (flags override it; every key: docs/edgeres.yaml).")(f)
    return click.option("--force", multiple=True, help="Redo this stage and every later one (repeatable).")(f)


def _build_config(ctx, config_file, cli_values: dict, base: dict | None = None):
    """defaults < ``base`` (the demo's) < --config file < the flags given. One check (types, ranges, what excludes
    what) for flags and YAML alike, before any stage runs: a bad flag is a usage error (exit 2), a bad file exit 1."""
    from click.core import ParameterSource

    from edgeres.config import ConfigError, OptimizeConfig, load_config_file
    from edgeres.options import BY_KEY, conflict

    d = dict(base or {})
    if config_file:
        d.update(load_config_file(config_file))
    given = {k for k, v in cli_values.items() if v is not None and k in ctx.params
             and ctx.get_parameter_source(k) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)}
    d.update({k: cli_values[k] for k in given})
    both = conflict(k for k, v in d.items() if v is not None)
    if both and set(both) & given:
        raise click.UsageError(f"give {BY_KEY[both[0]].flag} or {BY_KEY[both[1]].flag}, not both")
    try:
        return OptimizeConfig.from_dict({k: v for k, v in d.items() if v is not None})
    except ConfigError as e:
        if e.key in given:
            raise click.BadParameter(f"{e.need} (got {e.value!r})", param_hint=BY_KEY[e.key].flag) from None
        raise EdgeresError(f"{config_file or 'config'}: {e}") from None


def _print_result(res):
    """The final table and verdict: the same columns and lines as summary.md (edgeres.report_table.TABLE, verdict_lines)."""
    from rich.console import Console
    from rich.markdown import Markdown
    from rich.table import Table

    from edgeres.report_table import TABLE, measured_devices, table_cells, table_footnote, verdict_lines

    console = Console(width=None if sys.stdout.isatty() else 160)
    target = res.get("target")
    table = Table(title=f"edgeres report: {res['run_dir']}")
    for _, header in TABLE:
        table.add_column(header, justify="left" if header in ("stage", "runtime", "precision", "status") else "right")
    devices = measured_devices(res["rows"])
    for r in res["rows"]:
        table.add_row(*table_cells(r, target, devices))
    console.print(table)
    foot = table_footnote(res["rows"], target)
    if foot:
        console.print(foot)
    for r in res["rows"]:
        if r["status"] != "ok":
            click.secho(f"{r['stage']}: {r['status']}: {r['note']}", fg="yellow", err=True)
    for line in res.get("verdict") or verdict_lines(res["rows"], res["recommendation"], target, res["run_dir"]):
        console.print(Markdown(line))
    if res.get("bundle"):
        console.print(f"bundle: {res['bundle']['path']} (manifest sha256 {res['bundle']['manifest_sha256']}: "
                      "set EDGERES_MANIFEST_SHA256 to it on the device)", soft_wrap=True)
    console.print(f"report: {res['report'].get('summary')} (report.csv, report.json, report.png) in {res['seconds']:.0f}s")


@click.command("optimize")
@flags("optimize")
@run_options
@click.pass_context
def optimize_cmd(ctx, force, config_file, **kw):
    """The whole pipeline: baseline -> prune -> export -> INT8 -> engine -> bundle -> report. Resumable.

    Re-running the same command reuses every stage whose inputs are unchanged; --force STAGE redoes one and
    everything after it. Ctrl-C leaves no corrupt artifact. Every option can also come from --config FILE (flags
    win); docs/edgeres.yaml lists every key with its default, including those only a config file sets.
    """
    from edgeres.pipeline import optimize

    cfg = _build_config(ctx, config_file, values("optimize", kw))
    if not cfg.model:
        raise click.UsageError("--model is required (or `model:` in --config)")
    res = optimize(cfg, tuple(force))
    if res is not None:  # None: a torchrun rank > 0, which only joined the fine-tuning
        _print_result(res)


# ------------------------------------------------------------------------------------------------ demo
@click.command("demo")
@click.option("--out", type=click.Path(file_okay=False), default="runs/demo", show_default=True)
@click.option("--epochs", type=click.IntRange(1, 10000), default=_DEMO["epochs"], show_default=True,
              help="Training epochs of the demo ResNet50 (from scratch, augmentation on).")
@click.option("--image-size", type=click.IntRange(32, 224), default=_DEMO["image_size"], show_default=True)
@click.option("--train-per-class", type=click.IntRange(2, MAX_PER_CLASS), default=_DEMO["train_per_class"], show_default=True)
@click.option("--val-per-class", type=click.IntRange(2, MAX_PER_CLASS), default=_DEMO["val_per_class"], show_default=True)
@click.option("--arch", type=click.Choice(ARCHS), default="resnet50", show_default=True)
@flags("demo")
@run_options
@click.pass_context
def demo_cmd(ctx, out, epochs, image_size, train_per_class, val_per_class, arch, data, force, config_file, **kw):
    """The main job on the embedded default: make the demo data, train a ResNet50 briefly, optimize for Jetson.

    \b
    About 12 minutes on a 2-core x86 CPU (install included); writes runs/demo/ (report.csv/json/png, summary.md).
    Re-running reuses the data, the trained model and every unchanged stage.
    """
    from edgeres.demo import run_demo

    vals = values("demo", kw)
    res = run_demo(out, epochs=epochs, image_size=image_size, train_per_class=train_per_class,
                   val_per_class=val_per_class, arch=arch, data=data,
                   make_config=lambda base: _build_config(ctx, config_file, vals, base), force=tuple(force))
    _print_result(res)


# ------------------------------------------------------------------------------------------------ deploy / report
@click.command("deploy")
@click.option("--run", "run_dir", type=click.Path(file_okay=False), required=True, help="A run directory of `edgeres optimize`.")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="Bundle to write (.tar.gz).")
@click.option("--device", "devices", multiple=True,
              help="Also ship it to this Jetson over ssh, build, check and measure it there, and fold the rows into the "
                   "run's report (repeatable; ssh://[user@]host[:port] or a ~/.ssh/config alias).")
def deploy_cmd(run_dir, out, devices):
    """Write the deployment bundle of a run: model, runtime, labels, preprocessing, manifest, README, install.sh.

    With --device, the bundle goes on to each Jetson (~/.cache/edgeres/<sha256>/ there) and the run's report gets the
    engine rows measured on it, as `edgeres optimize --device` does."""
    from edgeres.errors import require_path
    from edgeres.stage_commands import bundle_command

    require_path(run_dir, "folder", "run folder", "give a run directory of `edgeres optimize`")
    if devices:
        from edgeres.device.commands import deploy_on_devices

        dep = deploy_on_devices(run_dir, lambda: bundle_command(run_dir, out), devices)
        res = dep["bundle"]
        click.echo(f"{len(dep['rows'])} rows measured on {len(dep['results'])} device(s) -> "
                   f"{Path(run_dir) / 'report.csv'}")
    else:
        res = bundle_command(run_dir, out)
    click.echo(f"wrote {out} ({res['size_mb']:.1f} MB, {res['files']} files); on the device: "
               f"mkdir bundle && tar xzf {Path(out).name} -C bundle && cd bundle && "
               f"export EDGERES_MANIFEST_SHA256={res['manifest_sha256']} && sh install.sh && ./run.sh verify")


@click.command("report")
@click.option("--run", "run_dir", type=click.Path(file_okay=False), required=True)
@click.option("--merge", "merge_csv", type=click.Path(dir_okay=False), multiple=True,
              help="A CSV written on the device (./run.sh bench/evaluate --csv): fold it into the report.")
def report_cmd(run_dir, merge_csv):
    """Rewrite a run's report, folding in rows measured on the device."""
    from edgeres.errors import require_path
    from edgeres.report import merge_run_report

    require_path(run_dir, "folder", "run folder", "give a run directory of `edgeres optimize`")
    for path in merge_csv:  # a named pipe would block the read forever
        require_path(path, "file", "device CSV", "give the file ./run.sh bench --csv wrote")
    res = merge_run_report(run_dir, list(merge_csv))
    click.echo(f"report of {run_dir}: {len(res['rows'])} rows ({res['merged']} from the device) -> {res['csv']}")
