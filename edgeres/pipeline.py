"""The orchestrator: one loop over the stages of STAGES, the run directory and resuming.

Run directory ``runs/NAME/``: one folder per stage (its artifacts and ``stage.json``), ``config.yaml`` (the resolved
config), ``manifest.json`` (inputs and their hashes) and the report. ``stage.json`` is written last, after the stage's
artifacts, and holds the hash of the stage's inputs: a re-run reuses every stage whose inputs are unchanged, and an
interrupted stage (no ``stage.json``) is redone. ``--force STAGE`` redoes that stage and everything after it.
Each stage is a class in ``edgeres/stages/<name>.py``, its work in a library package (docs/design.md §1-§2, §9-§10).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict
from pathlib import Path

from edgeres.config import OptimizeConfig, load_config_file  # noqa: F401 - the Python API's config lives here too
from edgeres.device.rows import fold
from edgeres.errors import ConfigError, EdgeresError, StageSkipped, Unavailable, require_path  # noqa: F401
from edgeres.stage_names import BUNDLE, DEVICE, ENGINE, EXPORT, PRUNE, STAGE_NAMES
from edgeres.stages.base import Context, StageResult
from edgeres.stages.baseline import BaselineStage
from edgeres.stages.bundle import BundleStage
from edgeres.stages.engine import EngineStage
from edgeres.stages.export import ExportStage
from edgeres.stages.prune import PruneStage
from edgeres.stages.quantize import QuantizeStage
from edgeres.utils import (
    clean_stale_tmp,
    read_stage_record,
    remove_empty_dirs,
    sha256_file,
    sha256_json,
    write_json_atomic,
    write_text_atomic,
)

_log = logging.getLogger(__name__)

# The stages, in order: the one list to read to find any stage's code, and the one to extend to add a stage.
STAGES = (BaselineStage(), PruneStage(), ExportStage(), QuantizeStage(), EngineStage(), BundleStage())
assert tuple(s.name for s in STAGES) == STAGE_NAMES, "edgeres.stage_names.STAGE_NAMES lists the stages in this order"
MEASURE_KEYS = ("latency_batch_sizes", "latency_min_time", "measure_memory", "threads")  # feed every stage


def _trt_available() -> str:
    try:
        import tensorrt  # noqa: F401

        return "tensorrt"
    except ImportError:
        return "none"


# ------------------------------------------------------------------------------------------------ the loop
class Pipeline:
    def __init__(self, cfg: OptimizeConfig, force: tuple = (), log=None, stages=STAGES, fleet=None):
        cfg.validate()  # attributes may have been changed since construction
        if not cfg.model:
            raise EdgeresError("--model is required")
        require_path(cfg.model, "file", "model file")
        for f in force:
            if f not in STAGE_NAMES + ((DEVICE,) if fleet is not None else ()):
                raise EdgeresError(f"--force {f}: unknown stage; stages are {', '.join(STAGE_NAMES)}")
        by_name = {s.name: s for s in STAGES}  # a subset may be given by name, e.g. ("baseline", "prune")
        self.stages = tuple(by_name[s] if isinstance(s, str) else s for s in stages)
        self.fleet = fleet  # the devices of --device, connected and probed (edgeres.device.fleet)
        if fleet is not None:
            from edgeres.stages.device import DeviceStage

            self.stages += (DeviceStage(),)
        self.cfg, self.force, self.log = cfg, set(force), log or _log.info
        name = Path(cfg.model).stem
        self.run_dir = Path(cfg.out or f"runs/{name}-{cfg.target}")
        check_out_apart(self.run_dir, {"--model": cfg.model, "--data": cfg.data, "--calib": cfg.calib})

    def prepare(self, ctx: Context, need_data: bool = True, hash_data: bool = True) -> dict:
        """Resolve the run's inputs into ``ctx`` (the data splits, the preprocessing; the model's classes checked
        against the data) and return the manifest (model, data, calibration and preprocessing, with their hashes).

        The one place inputs are resolved: the pipeline's own run, the other ranks under torchrun (``_follow``) and
        any caller that needs a stage's Context without running the stages (``export_command``: without
        ``need_data``, a model with no images gets only its preprocessing, and an empty manifest; ``prune_command``:
        without ``hash_data``, no data hash and an empty manifest). Bad inputs fail
        here, writing nothing."""
        from edgeres.data import data_hash, resolve_data
        from edgeres.data.filehash import CACHE_NAME, FileHashes
        from edgeres.data.model_inputs import resolve_data_for, resolve_model_preprocess

        lm = ctx.loaded
        root = resolve_data_for(lm.meta, self.cfg.data)
        if root is None and not need_data:
            ctx.pre = resolve_model_preprocess(lm.meta.preprocess, ctx.pre_overrides())
            return {}
        if root is None:
            raise EdgeresError(
                f"no images: {self.cfg.model} records no data folder and --data was not given. Accuracy and INT8 "
                "calibration need images: pass --data DIR (an ImageFolder root) and optionally --calib DIR")
        check_out_apart(self.run_dir, {f"the data folder recorded in {self.cfg.model}": root})
        ctx.splits = resolve_data(root, seed=self.cfg.seed)
        if not ctx.splits.val:
            from edgeres.data.folder import no_split_line

            raise EdgeresError(no_split_line(root) + "; accuracy is measured on them")
        ctx.pre = resolve_model_preprocess(lm.meta.preprocess, ctx.pre_overrides())
        from edgeres.evaluate import check_classes
        from edgeres.models import num_outputs

        n_out = num_outputs(lm.model, min(ctx.pre.size, 64))  # whatever the head is called
        check_classes(self.cfg.model, lm.meta.classes, ctx.splits.classes, n_out)
        if not hash_data:  # a stage command (edgeres.stage_commands.prune_command): no run folder, no data hash
            return {}
        self.file_hashes = hashes = FileHashes(self.run_dir / CACHE_NAME)  # saved once the run folder exists
        manifest = {
            "model": {"path": os.path.abspath(self.cfg.model), "sha256": sha256_file(self.cfg.model),
                      "format": lm.meta.source_format, "arch": lm.meta.arch},
            "data": {"root": os.path.abspath(root), "hash": data_hash(ctx.splits, hashes), "classes": ctx.splits.classes,
                     "train": len(ctx.splits.train), "val": len(ctx.splits.val)},
            "calib": {"root": os.path.abspath(self.cfg.calib)} if self.cfg.calib else None,
            "preprocess": ctx.pre.to_dict(),
            "target": ctx.target.name,
        }
        if self.cfg.calib:
            from edgeres.calibration import calibration_set_from

            cs = calibration_set_from(self.cfg.calib, self.cfg.calib_size, self.cfg.seed)
            manifest["calib"]["hash"] = sha256_json([(os.path.relpath(p, self.cfg.calib), d)
                                                     for p, d in zip(cs.paths, hashes.digests(cs.paths))])
        return manifest

    def _stage_hash(self, stage, manifest: dict, upstream: str) -> str:
        keys = {k: getattr(self.cfg, k) for k in stage.keys + MEASURE_KEYS}
        extra = {"engine": _trt_available()} if stage.name == ENGINE else {}
        extra.update(getattr(stage, "hash_extra", lambda cfg: {})(self.cfg))  # inputs that only matter sometimes
        # the manifest (model, data, calibration, preprocessing hashes) feeds every stage
        return sha256_json({"stage": stage.name, "keys": keys, "upstream": upstream, "manifest": manifest, **extra})

    def _cached(self, name: str, h: str) -> StageResult | None:
        p = self.run_dir / name / "stage.json"
        if name in self.force or not p.exists():
            return None
        rec = read_stage_record(p)
        if rec is None:
            self.log(f"{p} is unreadable or truncated: the {name} stage is redone")
            return None
        if rec.get("inputs_hash") != h:
            return None
        digests = rec.get("artifact_sha256", {})
        if self._digests(rec.get("artifacts", {})) != digests:  # an artifact changed or went missing
            return None
        return StageResult(rec["status"], rec.get("note", ""), rec.get("artifacts", {}), rec.get("rows", []),
                           rec.get("info", {}), digests)

    def run(self) -> dict | None:
        """Run the stages; under torchrun, ranks > 0 only join the fine-tuning and return None (edgeres.ddp)."""
        from edgeres import ddp

        if ddp.active() and ddp.rank() != 0:
            return self._follow()
        try:
            return self._run()
        finally:
            ddp.finish()

    def _follow(self) -> None:
        """Ranks > 0: wait for rank 0's job, prune the same model the same way, join the DDP fine-tuning, write
        nothing."""
        import tempfile

        from edgeres import ddp
        from edgeres.prune.finetune import prune_and_finetune

        try:
            job = ddp.recv_job()
            if job is None:
                return None
            ctx = Context(self.cfg, self.run_dir, lambda *a, **k: None)
            self.prepare(ctx)
            loaded = ctx.load(self.cfg.model)  # the run's classes and preprocessing, as rank 0's prune stage has them
            with tempfile.TemporaryDirectory(prefix=f"edgeres-rank{ddp.rank()}-") as d:
                prune_and_finetune(loaded, ctx.splits, ctx.pre, job["prune"], job["finetune"], Path(d) / "model.pt",
                                   target=ctx.target, progress=False, trust_model=self.cfg.trust_model)
            return None
        finally:
            ddp.finish()

    def _run(self) -> dict:
        from edgeres.host import host_info
        from edgeres.recommend import recommend
        from edgeres.report import write_report

        t0 = time.time()
        ctx = Context(self.cfg, self.run_dir, self.log)
        ctx.fleet = self.fleet
        if self.fleet is not None:
            from edgeres.device.latency import search_on_device

            ctx.latency_measure = search_on_device(self.fleet, self.log, self.cfg.latency_min_time)
        manifest = self.prepare(ctx)  # bad inputs fail here, before the run directory exists
        self.run_dir.mkdir(parents=True, exist_ok=True)
        clean_stale_tmp(self.run_dir, recursive=True)  # temp files of an earlier run killed mid-write
        self.file_hashes.save()
        write_json_atomic(self.run_dir / "manifest.json", manifest)
        import yaml

        write_text_atomic(self.run_dir / "config.yaml", yaml.safe_dump(asdict(self.cfg), sort_keys=True))
        upstream = ""
        forcing = False
        timings = {}
        for i, stage in enumerate(self.stages, 1):
            name = stage.name
            forcing = forcing or name in self.force
            h = self._stage_hash(stage, manifest, upstream)
            cached = None if forcing else self._cached(name, h)
            step = f"[{i}/{len(self.stages)}] {name}"
            if cached is not None:
                self.log(f"{step}: unchanged, reused ({cached.status})")
                res = cached
            else:
                self.log(f"{step} ...")
                ts = time.time()
                res = self._run_stage(stage, ctx)
                timings[name] = time.time() - ts
                res.info["seconds"] = round(timings[name], 1)
                self._record(name, h, res)
                self.log(f"{step}: {res.status}" + (f" ({res.note})" if res.note else "")
                         + f" in {timings[name]:.0f}s, {time.time() - t0:.0f}s so far")
            ctx.results[name] = res
            upstream = sha256_json([upstream, name, res.status, res.digests])
        names = [s.name for s in self.stages]
        rows = fold([r for name in names for r in ctx.results[name].rows])  # device rows stand in for skipped ones
        rec = recommend(rows, ctx.target, self.cfg.max_accuracy_drop)
        summary = summary_lines(rows, ctx, rec)
        bundle = bundle_pin(ctx)
        paths = write_report(self.run_dir, rows, host_info(ctx.mcfg.resolved_threads()), summary,
                             extra={"recommendation": rec, "target": ctx.target.to_dict(), "manifest": manifest,
                                    "bundle": bundle,
                                    "stages": {n: {"status": ctx.results[n].status, "note": ctx.results[n].note,
                                                   "artifacts": ctx.results[n].artifacts} for n in names}})
        return {"run_dir": str(self.run_dir), "rows": rows, "recommendation": rec, "report": {k: str(v) for k, v in paths.items()},
                "seconds": time.time() - t0, "ran": list(timings), "target": ctx.target.to_dict(),
                "verdict": [x for x in summary[:5] if x], "bundle": bundle}

    @staticmethod
    def _run_stage(stage, ctx: Context) -> StageResult:
        """The one place a stage that cannot run here becomes a `skipped` stage with one skipped report row."""
        try:
            return stage.run(ctx)
        except (StageSkipped, Unavailable) as e:  # by design, or cannot run here
            note = str(e)
            return StageResult("skipped", note, artifacts=getattr(e, "artifacts", {}), info=e.info,
                               rows=[ctx.skip_row(stage.name, e.runtime or stage.runtime, note)])

    def _digests(self, artifacts: dict) -> dict:
        """{path: sha256} of a stage's artifact files (a missing one is left out)."""
        out = {}
        for rel in artifacts.values():
            p = self.run_dir / rel if not os.path.isabs(rel) else Path(rel)
            if p.is_file():
                out[rel] = sha256_file(p)
        return out

    def _record(self, name: str, h: str, res: StageResult) -> None:
        res.digests = self._digests(res.artifacts)
        write_json_atomic(self.run_dir / name / "stage.json", {
            "stage": name, "inputs_hash": h, "status": res.status, "note": res.note, "artifacts": res.artifacts,
            "artifact_sha256": res.digests, "rows": res.rows, "info": _jsonable(res.info),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})


RUN_ENTRIES = STAGE_NAMES + ("device", "config.yaml", "manifest.json", "file_hashes.json", "report.csv", "report.json",
                             "report.png", "summary.md")  # what a run writes in its folder


def check_out_apart(out, inputs: dict) -> None:
    """Refuse an output folder that is, or is inside, one of ``inputs`` ({option: path}, None skipped), or that holds
    one where the run writes (a stage's folder, a report file): a run must not write among its own inputs. An input
    elsewhere in the folder is left alone (``edgeres demo`` keeps its data and model beside the run's files)."""
    o = os.path.realpath(out)
    for opt, path in inputs.items():
        if not path:
            continue
        p = os.path.realpath(path)
        common = os.path.commonpath([o, p])
        if common == p:
            where = "is" if o == p else "is inside"
        elif common == o and Path(os.path.relpath(p, o)).parts[0] in RUN_ENTRIES:
            where = "holds"
        else:
            continue
        raise EdgeresError(f"output folder {out} {where} {opt} {path}: a run must not write among its inputs; "
                           "pass --out a folder outside the model, data and calibration paths")


def _jsonable(obj):
    import json

    return json.loads(json.dumps(obj, default=lambda o: asdict(o) if hasattr(o, "__dataclass_fields__") else str(o)))


def optimize(cfg: OptimizeConfig, force: tuple = (), log=None) -> dict:
    """The Python entry point of `edgeres optimize`. With ``cfg.device``, every device is connected and probed first,
    and a target that does not fit a board is refused before any stage runs (``target: auto`` takes the board's)."""
    from edgeres import ddp

    if cfg.device and ddp.active() and ddp.rank() != 0:  # other ranks only join the fine-tuning
        if cfg.target == "auto":
            raise EdgeresError("--target auto under torchrun: give the target explicitly (edgeres device probe names it)")
        return _optimize(cfg, force, log, None)
    if cfg.device:
        from edgeres.device.fleet import Fleet

        with Fleet(cfg.device, log or _log.info) as fleet:
            cfg.target = fleet.resolve_target(cfg.target)
            return _optimize(cfg, force, log, fleet)
    return _optimize(cfg, force, log, None)


def _optimize(cfg: OptimizeConfig, force: tuple, log, fleet) -> dict:
    from edgeres.data.folder import skipping_corrupt

    p = Pipeline(cfg, force, log, fleet=fleet)
    created = not p.run_dir.exists()
    try:
        with skipping_corrupt(cfg.skip_corrupt):
            return p.run()
    except BaseException:
        if created:  # a run that failed before writing anything leaves no empty folders behind
            remove_empty_dirs(p.run_dir)
        raise


def export_command(cfg: OptimizeConfig, out, export_config=None, num_classes: int | None = None, log=None) -> dict:
    """`edgeres export`: the export stage of `optimize`, run alone on ``cfg.model`` (its inputs resolved by
    ``Pipeline.prepare``, nothing measured), its ONNX file moved to ``out``: the same file `optimize` writes for the
    same model, data and settings. ``export_config``: the command's own settings (fixed batch, no simplification)."""
    import tempfile

    p = Pipeline(cfg, log=log, stages=(EXPORT,))
    ctx = Context(cfg, p.run_dir, p.log)
    ctx.measuring, ctx.export_config = False, export_config
    ctx.load_options = {"num_classes": num_classes} if num_classes else {}
    p.prepare(ctx, need_data=False)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".edgeres-export-") as d:
        ctx.run_dir = Path(d)
        res = ExportStage().run(ctx)
        os.replace(ctx.run_dir / res.artifacts["onnx"], out)
    return res.info


def bundle_pin(ctx) -> dict | None:
    """The run's bundle and its manifest's sha256 (the pin the device checks with EDGERES_MANIFEST_SHA256), or None
    when the bundle stage did not make one."""
    res = ctx.results.get(BUNDLE)
    sha = res.info.get("manifest_sha256") if res is not None and res.status == "ok" else None
    return {"path": str(ctx.run_dir / res.artifacts[BUNDLE]), "manifest_sha256": sha} if sha else None


def summary_lines(rows: list, ctx, rec: dict) -> list:
    """summary.md's head: the three-line verdict (verdict_lines), then the run's context."""
    from edgeres.report_table import verdict_lines

    lines = verdict_lines(rows, rec, ctx.target.to_dict(), str(ctx.run_dir))
    lines = [lines[0], "", lines[1], "", lines[2], ""]
    lines += [f"Target: **{ctx.target.name}** ({ctx.target.description}). Data: {ctx.splits.describe()}; "
              f"input {ctx.pre.size} px."]
    if rec.get("decided_by"):
        lines.append(f"Chosen: {rec['decided_by']}.")
    if rec.get("speedup_note"):
        lines.append(f"Speed-up: {rec['speedup_note']}.")
    pin = bundle_pin(ctx)
    if pin:
        lines.append(f"Bundle: `{pin['path']}`, manifest sha256 `{pin['manifest_sha256']}` (on the device, "
                     f"`export EDGERES_MANIFEST_SHA256={pin['manifest_sha256']}` before `./run.sh` refuses any other "
                     "manifest).")
    pr = ctx.results.get(PRUNE)
    if pr is not None and pr.info.get("latency_search"):
        from edgeres.prune.latency import summary

        lines.append(f"Latency target: {summary(pr.info['latency_search'])}.")
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"- {r['stage']} ({r['runtime']}): {r['status']}: {r['note']}")
    return lines
