"""The orchestrator: baseline -> prune -> export -> quantize -> engine -> bundle -> report, one loop over stages.

Run directory ``runs/NAME/``: one folder per stage (its artifacts and ``stage.json``), ``config.yaml`` (the resolved
config), ``manifest.json`` (inputs and their hashes) and the report. ``stage.json`` is written last, after the stage's
artifacts, and holds the hash of the stage's inputs: a re-run reuses every stage whose inputs are unchanged, and an
interrupted stage (no ``stage.json``) is redone. ``--force STAGE`` redoes that stage and everything after it.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from edgeres.errors import ConfigError, EdgeresError
from edgeres.utils import (clean_stale_tmp, read_stage_record, remove_empty_dirs, save_npy_atomic, sha256_file,
                           sha256_json, write_json_atomic, write_text_atomic)

_log = logging.getLogger(__name__)

STAGES = ("baseline", "prune", "export", "quantize", "engine", "bundle")


@dataclass
class OptimizeConfig:
    model: str = ""
    target: str = "jetson"
    data: str | None = None
    calib: str | None = None
    out: str | None = None
    prune: float = 0.3  # channel ratio; 0 skips pruning
    target_latency_ms: float | None = None  # instead of prune: search the ratio by latency measured on the target
    target_speedup: float | None = None  # ... or by the pruned model's measured speed-up over the unpruned one
    sparsity: str | None = None  # "2:4"
    importance: str = "l2"
    finetune_epochs: int = 3
    kd_alpha: float = 0.7
    kd_temperature: float = 4.0
    finetune_lr: float = 5e-4
    batch_size: int = 32
    calib_size: int = 512
    calib_method: str = "histogram"
    quant_max_drop: float | None = None  # accuracy-aware quantization budget (points), None: plain PTQ
    max_accuracy_drop: float = 1.0  # the recommendation's budget (points of top-1)
    int8_max_drop: float | None = 0.5  # the INT8 file's budget: top-1 points vs its FP32 export; None: plain PTQ
    int8_fallback: list = field(default_factory=lambda: ["methods", "float", "qat"])  # over budget, in this order
    qat_epochs: int = 1
    opset: int = 17
    image_size: int | None = None
    crop_ratio: float | None = None
    mean: list | None = None
    std: list | None = None
    trust_model: bool = False
    latency_batch_sizes: list = field(default_factory=lambda: [1])
    latency_min_time: float = 1.0
    measure_memory: bool = True
    threads: int | None = None
    dla_core: int | None = None
    seed: int = 0

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Types and ranges of every key, the same for CLI flags, YAML and Python; raises ConfigError naming the key."""
        from edgeres.config_rules import CONFIG_RULES, check_value
        from edgeres.stages.prune import IMPORTANCES
        from edgeres.stages.quantize import FALLBACKS, METHODS
        from edgeres.targets import get_target

        for f in fields(self):
            rule = CONFIG_RULES[f.name]
            value = getattr(self, f.name)
            if value is None and rule[1]:
                continue
            setattr(self, f.name, check_value(f.name, value, *rule))
        choices = {"importance": IMPORTANCES, "calib_method": METHODS, "sparsity": (None, "2:4")}
        bad = [s for s in self.int8_fallback if s not in (*FALLBACKS, "none")]
        if bad:
            raise ConfigError("int8_fallback", f"steps are {', '.join(FALLBACKS)} (in any order), or none", bad)
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(key, f"must be one of {', '.join(str(a) for a in allowed)}", getattr(self, key))
        if self.target:
            try:
                get_target(self.target)
            except EdgeresError as e:
                raise ConfigError("target", "unknown target; " + str(e).split(";", 1)[-1].strip(), self.target) from None

    @classmethod
    def from_dict(cls, d: dict) -> "OptimizeConfig":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise EdgeresError(f"unknown config keys {unknown}; valid keys: {', '.join(sorted(names))}")
        return cls(**d)


def load_config_file(path) -> dict:
    import yaml

    try:
        with open(path) as f:
            d = yaml.safe_load(f) or {}
    except OSError as e:
        raise EdgeresError(f"cannot read config {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise EdgeresError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(d, dict):
        raise EdgeresError(f"{path} must hold a mapping of option: value")
    return {k.replace("-", "_"): v for k, v in d.items()}


@dataclass
class StageResult:
    status: str = "ok"  # ok | skipped | failed
    note: str = ""
    artifacts: dict = field(default_factory=dict)  # name -> path relative to the run dir
    rows: list = field(default_factory=list)
    info: dict = field(default_factory=dict)
    digests: dict = field(default_factory=dict)  # artifact path -> sha256, computed once when recorded


class Context:
    """What the stages share: config, target, data, preprocessing, earlier stages' results."""

    def __init__(self, cfg: OptimizeConfig, run_dir: Path, log):
        from edgeres.measure import MeasureConfig
        from edgeres.targets import get_target, require_supported

        self.cfg, self.run_dir, self.log = cfg, run_dir, log
        self.target = get_target(cfg.target)
        require_supported(self.target)  # refused before any stage runs: no half-built run for jetson-nano
        self.results: dict = {}
        self.mcfg = MeasureConfig(batch_sizes=tuple(cfg.latency_batch_sizes), min_time_s=cfg.latency_min_time,
                                  threads=cfg.threads, memory=cfg.measure_memory,
                                  options={"trust_model": True} if cfg.trust_model else {})
        self._loaded = None
        self._baseline_rows: list = []  # the torch baseline, while the baseline stage is still running
        self.splits = None
        self.pre = None

    def stage_dir(self, name: str) -> Path:
        d = self.run_dir / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    def path(self, rel: str) -> Path:
        return self.run_dir / rel

    def artifact(self, stage: str, name: str) -> Path | None:
        r = self.results.get(stage)
        if r is None or name not in r.artifacts:
            return None
        return self.run_dir / r.artifacts[name]

    @property
    def loaded(self):
        if self._loaded is None:
            from edgeres.models import load_model

            self._loaded = load_model(self.cfg.model, trust_model=self.cfg.trust_model)
        return self._loaded

    def baseline_logits(self):
        p = self.run_dir / "baseline" / "logits.npy"
        return np.load(p) if p.exists() else None

    def baseline_top1(self):
        r = self.results.get("baseline")
        rows = [x for x in (r.rows if r else self._baseline_rows) if x["runtime"] == "torch" and x["top1"] is not None]
        return rows[0]["top1"] if rows else None

    def measure(self, stage: str, artifact: Path, runtime: str, note: str = "", model=None) -> list:
        from edgeres.measure import measure

        m = measure(stage, artifact, runtime, self.pre, self.splits.val, self.mcfg,
                    reference_logits=self.baseline_logits(), baseline_top1=self.baseline_top1(), note=note,
                    model=model)
        if m.logits is not None:  # kept for later stages' comparisons, across resumed runs too
            save_npy_atomic(self.stage_dir(stage) / f"logits_{runtime}.npy", m.logits)
        if stage == "baseline" and runtime == "torch" and m.logits is not None:
            save_npy_atomic(self.run_dir / "baseline" / "logits.npy", m.logits)
            for r in m.rows:
                r["top1_delta"], r["agreement"] = 0.0, 100.0
            self._baseline_rows = m.rows
        return m.rows

    def stage_logits(self, stage: str, runtime: str):
        p = self.run_dir / stage / f"logits_{runtime}.npy"
        return np.load(p) if p.exists() else None


# ------------------------------------------------------------------------------------------------ stages
def stage_baseline(ctx: Context) -> StageResult:
    """The model as given: torch, and ONNX Runtime on an FP32 export of it (the 'before' of every figure)."""
    from edgeres.stages.export import ExportConfig, export_onnx

    d = ctx.stage_dir("baseline")
    lm = ctx.loaded
    rows = ctx.measure("baseline", Path(ctx.cfg.model), "torch", model=lm.model)
    onnx_path = d / "model.onnx"
    export_onnx(lm.model, onnx_path, ctx.pre, lm.meta, ExportConfig(opset=ctx.cfg.opset))
    rows += ctx.measure("baseline", onnx_path, "onnxruntime", note="FP32 export of the unpruned model")
    return StageResult(artifacts={"model": os.path.abspath(ctx.cfg.model), "onnx": "baseline/model.onnx"}, rows=rows)


def stage_prune(ctx: Context) -> StageResult:
    from edgeres.stages.prune import FinetuneConfig, PruneConfig, prune_and_finetune

    cfg = ctx.cfg
    latency_goal = cfg.target_latency_ms is not None or cfg.target_speedup is not None
    if not cfg.prune and not cfg.sparsity and not latency_goal:
        return StageResult("skipped", "pruning off (--prune 0)", rows=[_skip_row("prune", "torch", "pruning off (--prune 0)", ctx)])
    d = ctx.stage_dir("prune")
    from edgeres.models import load_model

    loaded = load_model(cfg.model, trust_model=cfg.trust_model)
    loaded.meta.preprocess = ctx.pre.to_dict()
    if not loaded.meta.classes or loaded.meta.classes[0].startswith("class_"):
        loaded.meta.classes = list(ctx.splits.classes)
    pc = PruneConfig(ratio=cfg.prune or None, importance=cfg.importance, sparsity=cfg.sparsity, seed=cfg.seed)
    ft = FinetuneConfig(epochs=cfg.finetune_epochs, kd_alpha=cfg.kd_alpha, kd_temperature=cfg.kd_temperature,
                        lr=cfg.finetune_lr, batch_size=cfg.batch_size)
    search = None
    if latency_goal:  # the ratio whose measured latency meets the target (or the MACs fallback, named in the note)
        from edgeres.stages.prune_latency import LatencyTarget, find_ratio

        search = find_ratio(loaded.model, ctx.target, ctx.pre, LatencyTarget(cfg.target_latency_ms, cfg.target_speedup),
                            pc, classes=ctx.splits.classes, threads=cfg.threads, log=ctx.log)
        pc.ratio = search["ratio"]
    from edgeres import ddp

    ddp.send_job({"prune": pc, "finetune": ft})  # under torchrun: the other ranks join the fine-tuning
    info = prune_and_finetune(loaded, ctx.splits, ctx.pre, pc, ft, d / "model.pt", target=ctx.target,
                              trust_model=cfg.trust_model)
    for tmp in d.glob("model.last.pt"):
        tmp.unlink()  # only for resuming an interrupted fine-tune; the stage is done
    note = f"channel ratio {info['ratio']:.2f}, {info['macs_before'] / max(1, info['macs_after']):.2f}x fewer MACs"
    if cfg.sparsity:
        note += f", 2:4 on {info.get('sparse_layers', 0)} layers"
    if search is not None:
        from edgeres.stages.prune_latency import summary

        info["latency_search"] = search
        note += f"; {summary(search)}"
    rows = ctx.measure("prune", d / "model.pt", "torch", note=note, model=info["model"])
    keep = {k: v for k, v in info.items() if k not in ("model", "meta")}
    return StageResult(artifacts={"model": "prune/model.pt"}, rows=rows, info=keep)


def _skip_row(stage, runtime, note, ctx: "Context | None" = None):
    from edgeres.report import new_row

    extra = {"batch_size": ctx.mcfg.batch_sizes[0], "input_size": ctx.pre.size} if ctx is not None else {}
    return new_row(stage=stage, runtime=runtime, status="skipped", note=note, **extra)


def stage_export(ctx: Context) -> StageResult:
    from edgeres.models import load_model
    from edgeres.stages.export import ExportConfig, export_onnx, parity_check

    d = ctx.stage_dir("export")
    src = ctx.artifact("prune", "model") or Path(ctx.cfg.model)
    lm = load_model(src, trust_model=ctx.cfg.trust_model)
    if not lm.meta.classes or lm.meta.classes[0].startswith("class_"):
        lm.meta.classes = list(ctx.splits.classes)
    ecfg = ExportConfig(opset=ctx.cfg.opset)
    out = d / "model.onnx"
    info = export_onnx(lm.model, out, ctx.pre, lm.meta, ecfg)
    try:
        info["parity"] = parity_check(lm.model, out, ctx.splits.val, ctx.pre, ecfg)
    except EdgeresError:
        out.unlink()
        raise
    if ctx.cfg.sparsity:
        from edgeres.stages.prune import check_onnx_2_4

        sp = check_onnx_2_4(out)
        info["sparsity_check"] = {"sparse": len(sp["sparse_layers"]), "dense": sp["dense_layers"]}
    p = info["parity"]
    note = f"parity vs torch: max|dlogit| {p['max_abs_dlogit']:.1e}, agreement {p['agreement']:.1f}%"
    rows = ctx.measure("export", out, "onnxruntime", note=note)
    ov = ctx.measure("export", out, "openvino", note="fp32 model (OpenVINO picks bf16 on AMX CPUs)")
    rows += ov
    return StageResult(artifacts={"onnx": "export/model.onnx"}, rows=rows, info=info)


def stage_quantize(ctx: Context) -> StageResult:
    from edgeres.calibration import calibration_set_from, select_stratified
    from edgeres.stages.quantize import QuantizeConfig, run_quantize

    t = ctx.target
    if not t.int8:
        note = f"{t.name} has no useful INT8 ({', '.join(t.precisions)}): the FP32 export is deployed, FP16 engine"
        return StageResult("skipped", note, rows=[_skip_row("quantize", "onnxruntime", note, ctx)])
    d = ctx.stage_dir("quantize")
    cfg = ctx.cfg
    if cfg.calib:
        cs = calibration_set_from(cfg.calib, cfg.calib_size, cfg.seed)
    else:
        cs = select_stratified(ctx.splits.train or ctx.splits.val, cfg.calib_size, cfg.seed, ctx.splits.classes,
                               ctx.splits.root)
    from edgeres.stages.qat import make_qat
    from edgeres.stages.quantize import budget_note

    budget = cfg.quant_max_drop if cfg.quant_max_drop is not None else cfg.int8_max_drop  # the old name is an alias
    steps = cfg.int8_fallback
    qc = QuantizeConfig(method=cfg.calib_method, subset_size=cfg.calib_size, int8_max_drop=budget,
                        fallback=tuple(x.strip() for x in steps if x.strip() and x.strip() != "none"),
                        qat_epochs=cfg.qat_epochs)
    out = d / "model_int8.onnx"
    qat = make_qat(ctx.artifact("prune", "model") or cfg.model, ctx.splits, d / "qat_work", epochs=cfg.qat_epochs,
                   lr=qc.qat_lr, batch_size=cfg.batch_size, trust_model=cfg.trust_model, log=ctx.log)
    info = run_quantize(ctx.artifact("export", "onnx"), None, t, out, qc, seed=cfg.seed, calib_set=cs,
                        pre_overrides=_pre_overrides(cfg), splits=ctx.splits, qat=qat, log=ctx.log)
    info.pop("nncf_log", None)
    note = ("ONNX Runtime as the accuracy proxy for the TensorRT engine (latency of S8 Q/DQ on CPU is not the engine's)"
            if t.quant_format == "trt-qdq" else "uint8 activations / int8 weights (ORT x86 fast path)")
    if info.get("budget"):
        note = budget_note(info["budget"]) + "; " + note
    rows = ctx.measure("quantize", out, "onnxruntime", note=note)
    fp32, int8 = ctx.stage_logits("export", "onnxruntime"), ctx.stage_logits("quantize", "onnxruntime")
    if fp32 is not None and int8 is not None and fp32.shape == int8.shape:
        from edgeres.metrics import agreement, topk_accuracy

        y = np.asarray([c for _, c in ctx.splits.val])
        vs = {"top1_delta_vs_fp32": topk_accuracy(int8, y, (1,))["top1"] - topk_accuracy(fp32, y, (1,))["top1"],
              "agreement_vs_fp32": agreement(int8, fp32)["agreement"]}
        info.update(vs)
        for r in rows:
            r["note"] = (f"INT8 vs its FP32 export: {vs['top1_delta_vs_fp32']:+.2f} points, "
                         f"{vs['agreement_vs_fp32']:.1f}% same top-1; " + (r["note"] or ""))
    if t.quant_format == "ort-u8s8":
        rows += ctx.measure("quantize", out, "openvino")
    arts = {"onnx": "quantize/model_int8.onnx", "manifest": "quantize/model_int8.onnx.calib.json"}
    for k in ("sensitivity_csv", "sensitivity_png"):
        if info.get(k) and os.path.exists(info[k]):
            arts[k] = os.path.relpath(info[k], ctx.run_dir)
    if info.get("calib_cache"):
        arts["calib_cache"] = os.path.relpath(info["calib_cache"], ctx.run_dir)
    return StageResult(artifacts=arts, rows=rows, info=info)


def _pre_overrides(cfg: OptimizeConfig) -> dict:
    return dict(image_size=cfg.image_size, crop_ratio=cfg.crop_ratio, mean=cfg.mean, std=cfg.std)


def _deploy_onnx(ctx: Context) -> Path:
    return ctx.artifact("quantize", "onnx") or ctx.artifact("export", "onnx")


def stage_engine(ctx: Context) -> StageResult:
    from edgeres.stages.engine import run_engine

    t = ctx.target
    if t.runtime != "tensorrt":
        note = f"target {t.name} runs {t.runtime}: no TensorRT engine"
        return StageResult("skipped", note, rows=[_skip_row("engine", "tensorrt", note, ctx)])
    d = ctx.stage_dir("engine")
    engine = d / "model.engine"
    res = run_engine(_deploy_onnx(ctx), engine, t, ctx.pre, classes=ctx.splits.classes, dla_core=ctx.cfg.dla_core,
                     sparsity=bool(ctx.cfg.sparsity), calib_cache=None, log=ctx.log)
    write_text_atomic(d / "trtexec.txt", res["trtexec"] + "\n")
    if res["status"] == "skipped":
        note = f"{res['note']}; on the device: {res['trtexec']}"
        return StageResult("skipped", note, rows=[_skip_row("engine", "tensorrt", note, ctx)],
                           artifacts={"trtexec": "engine/trtexec.txt"}, info={"trtexec": res["trtexec"]})
    rows = ctx.measure("engine", engine, "tensorrt", note=res["note"])  # a host proxy says so in its rows
    return StageResult(artifacts={"engine": "engine/model.engine", "trtexec": "engine/trtexec.txt"}, rows=rows,
                       info={"sidecar": res["sidecar"], "trtexec": res["trtexec"]})


def stage_bundle(ctx: Context) -> StageResult:
    from edgeres.bundle import make_bundle
    from edgeres.report import new_row
    from edgeres.stages.engine import onnx_build_spec

    t = ctx.target
    d = ctx.stage_dir("bundle")
    onnx_path = _deploy_onnx(ctx)
    spec = None
    if t.runtime == "tensorrt":
        spec = onnx_build_spec(onnx_path, "model.engine", t, ctx.pre, dla_core=ctx.cfg.dla_core,
                               sparsity=bool(ctx.cfg.sparsity))
    out = d / "bundle.tar.gz"
    extra = {"source_run": str(ctx.run_dir.name)}
    if t.runtime == "onnxruntime" and ctx.results.get("quantize") is not None:  # x86: the faster runtime of the INT8 file
        from edgeres.stages.x86_int8 import faster_runtime

        extra["backend"], extra["backend_p50_ms"] = faster_runtime(ctx.results["quantize"].rows)
    res = make_bundle(out, onnx_path, t, ctx.pre, ctx.splits.classes, spec=spec,
                      calib_cache=ctx.artifact("quantize", "calib_cache"), extra=extra,
                      validation=ctx.splits.val, fp32_onnx=ctx.artifact("export", "onnx"))
    ref = res.get("reference_sha256")
    row = new_row(stage="bundle", artifact="bundle.tar.gz", runtime="edgeres_deploy", input_size=ctx.pre.size,
                  model_size_mb=res["size_mb"], status="ok",
                  note=f"{len(res['files'])} files; on the device: ./run.sh build && ./run.sh bench"
                  + (f" && ./run.sh check --expect-reference {ref}" if ref else ""))
    return StageResult(artifacts={"bundle": "bundle/bundle.tar.gz"}, rows=[row],
                       info={"files": len(res["files"]), "reference_sha256": ref})


STAGE_FUNCS = {"baseline": stage_baseline, "prune": stage_prune, "export": stage_export, "quantize": stage_quantize,
               "engine": stage_engine, "bundle": stage_bundle}
# the config keys each stage's output depends on (besides the outputs of the stages before it)
STAGE_KEYS = {
    "baseline": ("model", "image_size", "crop_ratio", "mean", "std", "opset"),
    "prune": ("prune", "target_latency_ms", "target_speedup", "sparsity", "importance", "finetune_epochs", "kd_alpha", "kd_temperature", "finetune_lr",
              "batch_size", "seed", "target"),
    "export": ("opset",),
    "quantize": ("target", "calib", "calib_size", "calib_method", "quant_max_drop", "seed", "int8_max_drop",
                 "int8_fallback", "qat_epochs"),
    "engine": ("target", "dla_core", "sparsity"),
    "bundle": ("target",),
}
MEASURE_KEYS = ("latency_batch_sizes", "latency_min_time", "measure_memory", "threads")


def _trt_available() -> str:
    try:
        import tensorrt  # noqa: F401

        return "tensorrt"
    except ImportError:
        return "none"


# ------------------------------------------------------------------------------------------------ the loop
class Pipeline:
    def __init__(self, cfg: OptimizeConfig, force: tuple = (), log=None, stages=STAGES):
        cfg.validate()  # attributes may have been changed since construction
        if not cfg.model:
            raise EdgeresError("--model is required")
        if not Path(cfg.model).is_file():
            raise EdgeresError(f"model file {cfg.model} does not exist")
        for f in force:
            if f not in STAGES:
                raise EdgeresError(f"--force {f}: unknown stage; stages are {', '.join(STAGES)}")
        self.cfg, self.force, self.log, self.stages = cfg, set(force), log or _log.info, stages
        name = Path(cfg.model).stem
        self.run_dir = Path(cfg.out or f"runs/{name}-{cfg.target}")

    def _resolve_inputs(self, ctx: Context) -> dict:
        from edgeres.data import data_hash, resolve_data
        from edgeres.stages import resolve_data_for, resolve_model_preprocess

        lm = ctx.loaded
        root = resolve_data_for(lm.meta, self.cfg.data)
        if root is None:
            raise EdgeresError(
                f"no images: {self.cfg.model} records no data folder and --data was not given. Accuracy and INT8 "
                "calibration need images: pass --data DIR (an ImageFolder root) and optionally --calib DIR")
        ctx.splits = resolve_data(root, seed=self.cfg.seed)
        if not ctx.splits.val:
            raise EdgeresError(f"{root} has no validation images (DIR/val/CLASS/...) to measure accuracy on")
        ctx.pre = resolve_model_preprocess(lm.meta.preprocess, _pre_overrides(self.cfg))
        from edgeres.evaluate import check_classes

        from edgeres.models import num_outputs

        n_out = num_outputs(lm.model, min(ctx.pre.size, 64))  # whatever the head is called
        check_classes(self.cfg.model, lm.meta.classes, ctx.splits.classes, n_out)
        manifest = {
            "model": {"path": os.path.abspath(self.cfg.model), "sha256": sha256_file(self.cfg.model),
                      "format": lm.meta.source_format, "arch": lm.meta.arch},
            "data": {"root": os.path.abspath(root), "hash": data_hash(ctx.splits), "classes": ctx.splits.classes,
                     "train": len(ctx.splits.train), "val": len(ctx.splits.val)},
            "calib": {"root": os.path.abspath(self.cfg.calib)} if self.cfg.calib else None,
            "preprocess": ctx.pre.to_dict(),
            "target": ctx.target.name,
        }
        if self.cfg.calib:
            from edgeres.calibration import calibration_set_from

            cs = calibration_set_from(self.cfg.calib, self.cfg.calib_size, self.cfg.seed)
            manifest["calib"]["hash"] = sha256_json([(os.path.relpath(p, self.cfg.calib), os.path.getsize(p)) for p in cs.paths])
        return manifest

    def _stage_hash(self, name: str, manifest: dict, upstream: str) -> str:
        keys = {k: getattr(self.cfg, k) for k in STAGE_KEYS[name] + MEASURE_KEYS}
        extra = {"engine": _trt_available()} if name == "engine" else {}
        # the manifest (model, data, calibration, preprocessing hashes) feeds every stage
        return sha256_json({"stage": name, "keys": keys, "upstream": upstream, "manifest": manifest, **extra})

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
            return ddp.follow(self)
        try:
            return self._run()
        finally:
            ddp.finish()

    def _run(self) -> dict:
        from edgeres.report import host_info, write_report

        t0 = time.time()
        ctx = Context(self.cfg, self.run_dir, self.log)
        manifest = self._resolve_inputs(ctx)  # bad inputs fail here, before the run directory exists
        self.run_dir.mkdir(parents=True, exist_ok=True)
        clean_stale_tmp(self.run_dir, recursive=True)  # temp files of an earlier run killed mid-write
        write_json_atomic(self.run_dir / "manifest.json", manifest)
        import yaml

        write_text_atomic(self.run_dir / "config.yaml", yaml.safe_dump(asdict(self.cfg), sort_keys=True))
        upstream = ""
        forcing = False
        timings = {}
        for i, name in enumerate(self.stages, 1):
            forcing = forcing or name in self.force
            h = self._stage_hash(name, manifest, upstream)
            cached = None if forcing else self._cached(name, h)
            step = f"[{i}/{len(self.stages)}] {name}"
            if cached is not None:
                self.log(f"{step}: unchanged, reused ({cached.status})")
                res = cached
            else:
                self.log(f"{step} ...")
                ts = time.time()
                res = STAGE_FUNCS[name](ctx)
                timings[name] = time.time() - ts
                res.info["seconds"] = round(timings[name], 1)
                self._record(name, h, res)
                self.log(f"{step}: {res.status}" + (f" ({res.note})" if res.note else "")
                         + f" in {timings[name]:.0f}s, {time.time() - t0:.0f}s so far")
            ctx.results[name] = res
            upstream = sha256_json([upstream, name, res.status, res.digests])
        rows = [r for name in self.stages for r in ctx.results[name].rows]
        rec = recommend(rows, ctx.target, self.cfg.max_accuracy_drop)
        summary = summary_lines(rows, ctx, rec)
        paths = write_report(self.run_dir, rows, host_info(ctx.mcfg.resolved_threads()), summary,
                             extra={"recommendation": rec, "target": ctx.target.to_dict(), "manifest": manifest,
                                    "stages": {n: {"status": ctx.results[n].status, "note": ctx.results[n].note,
                                                   "artifacts": ctx.results[n].artifacts} for n in self.stages}})
        return {"run_dir": str(self.run_dir), "rows": rows, "recommendation": rec, "report": {k: str(v) for k, v in paths.items()},
                "seconds": time.time() - t0, "ran": list(timings), "target": ctx.target.to_dict(),
                "verdict": [x for x in summary[:5] if x]}

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


def _jsonable(obj):
    import json

    return json.loads(json.dumps(obj, default=lambda o: asdict(o) if hasattr(o, "__dataclass_fields__") else str(o)))


# ------------------------------------------------------------------------------------------------ recommendation
def recommend(rows: list, target, budget: float) -> dict:
    """The most optimized artifact for the target whose top-1 is within ``budget`` points of the baseline."""
    base = next((r for r in rows if r["stage"] == "baseline" and r["runtime"] == "torch" and r["status"] == "ok"), None)
    if base is None:
        return {"artifact": None, "reason": "no baseline measurement"}
    base_ort = next((r for r in rows if r["stage"] == "baseline" and r["runtime"] == "onnxruntime" and r["status"] == "ok"), base)
    order = ["engine", "quantize", "export", "prune", "baseline"]
    candidates = []
    for stage in order:
        for r in rows:
            if r["stage"] != stage or r["status"] != "ok" or r["top1"] is None:
                continue
            if target.runtime == "tensorrt" and r["runtime"] not in ("tensorrt", "onnxruntime"):
                continue
            if target.runtime == "onnxruntime" and r["runtime"] not in ("onnxruntime", "openvino", "torch"):
                continue
            candidates.append(r)
    within = [r for r in candidates if (r["top1_delta"] or 0.0) >= -budget]
    if not within:
        return {"artifact": None, "reason": f"no artifact within {budget} points of the baseline's top-1"}
    best = within[0]
    decided_by = f"the first within the {budget}-point budget in the order {' > '.join(order)}"
    if target.runtime == "tensorrt" and not any(r["runtime"] == "tensorrt" for r in within):
        # the host cannot run the target: ONNX Runtime's CPU latency of a TensorRT-form Q/DQ file says nothing of
        # the engine (it reads slower than FP32 here). Rank by what the target runs: its precision, then MACs, size.
        rank = {p: i for i, p in enumerate(("int8", "fp16", "fp32"))}
        allowed = [p for p in ("int8", "fp16", "fp32") if p in target.precisions]

        def target_precision(r):  # an FP32 ONNX file is built FP16 on a target that has FP16
            p = r["precision"] or "fp32"
            return "fp16" if p == "fp32" and "fp16" in allowed else p

        best = min(within, key=lambda r: (rank.get(target_precision(r), 9), r.get("macs") or float("inf"),
                                          r.get("model_size_mb") or float("inf")))
        decided_by = (f"within the {budget}-point budget, ranked by the precision {target.name} runs it in "
                      f"({target_precision(best)}), then MACs ({(best.get('macs') or 0) / 1e9:.3f} G), then size "
                      f"({best.get('model_size_mb') or 0:.1f} MB); host CPU latency not used (TensorRT target, "
                      "ONNX Runtime here is only the accuracy proxy)")
    runtimes = {}
    if target.runtime == "onnxruntime":  # x86: the faster of ONNX Runtime and OpenVINO for the chosen artifact
        from edgeres.stages.x86_int8 import faster_runtime

        fast, runtimes = faster_runtime(within, best["stage"])
        best = next((r for r in within if r["stage"] == best["stage"] and r["runtime"] == fast), best)
        if runtimes:
            decided_by += f"; run in {fast}, the faster runtime for it here"
    ref = base_ort if best["runtime"] in ("onnxruntime", "openvino") else base
    proxy = target.runtime == "tensorrt" and best["runtime"] != "tensorrt"
    speedup = None
    if not (proxy and best["precision"] == "int8") and best["latency_p50_ms"] and ref["latency_p50_ms"]:
        speedup = ref["latency_p50_ms"] / best["latency_p50_ms"]
    size_base = base_ort.get("model_size_mb") or base.get("model_size_mb")
    return {
        "stage": best["stage"], "artifact": best["artifact"], "runtime": best["runtime"], "precision": best["precision"],
        "top1": best["top1"], "top1_delta": best["top1_delta"], "budget_points": budget,
        "speedup": speedup, "speedup_reference": f"{ref['stage']}/{ref['runtime']}", "runtimes_p50_ms": runtimes,
        "decided_by": decided_by,
        "size_reduction": (size_base / best["model_size_mb"]) if size_base and best.get("model_size_mb") else None,
        "macs_reduction": (base["macs"] / best["macs"]) if base.get("macs") and best.get("macs") else None,
        "speedup_note": ("measure the engine on the device (./run.sh bench); ONNX Runtime on this CPU is "
                         "only the accuracy proxy for TensorRT INT8") if proxy and speedup is None else "",
    }


def summary_lines(rows: list, ctx: Context, rec: dict) -> list:
    """summary.md's head: the three-line verdict (edgeres.report.verdict_lines), then the run's context."""
    from edgeres.report import verdict_lines

    lines = verdict_lines(rows, rec, ctx.target.to_dict(), str(ctx.run_dir))
    lines = [lines[0], "", lines[1], "", lines[2], ""]
    lines += [f"Target: **{ctx.target.name}** ({ctx.target.description}). Data: {ctx.splits.describe()}; "
              f"input {ctx.pre.size} px."]
    if rec.get("speedup_note"):
        lines.append(f"Speed-up: {rec['speedup_note']}.")
    pr = ctx.results.get("prune")
    if pr is not None and pr.info.get("latency_search"):
        from edgeres.stages.prune_latency import summary

        lines.append(f"Latency target: {summary(pr.info['latency_search'])}.")
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"- {r['stage']} ({r['runtime']}): {r['status']}: {r['note']}")
    return lines


def optimize(cfg: OptimizeConfig, force: tuple = (), log=None) -> dict:
    """The Python entry point of `edgeres optimize`."""
    p = Pipeline(cfg, force, log)
    created = not p.run_dir.exists()
    try:
        return p.run()
    except BaseException:
        if created:  # a run that failed before writing anything leaves no empty folders behind
            remove_empty_dirs(p.run_dir)
        raise
