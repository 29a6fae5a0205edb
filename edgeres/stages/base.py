"""The stage interface (docs/design.md §2): a stage has a ``name``, the config ``keys`` its output depends on, and
``run(ctx) -> StageResult``. What cannot run here raises ``StageSkipped(reason)``; the pipeline loop records it.

``Context`` is what the stages share: the config, the target, the data splits and preprocessing, and the results of
the stages before them (their artifacts, rows and logits), plus the one way every stage measures an artifact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeres.stage_names import BASELINE, EXPORT, QUANTIZE
from edgeres.utils import save_npy_atomic


@dataclass
class StageResult:
    status: str = "ok"  # ok | skipped | failed
    note: str = ""
    artifacts: dict = field(default_factory=dict)  # name -> path relative to the run dir
    rows: list = field(default_factory=list)
    info: dict = field(default_factory=dict)
    digests: dict = field(default_factory=dict)  # artifact path -> sha256, computed once when recorded


class Stage:
    """One step of `edgeres optimize`. Subclasses set ``name``, ``keys`` and ``runtime`` and implement ``run``."""

    name: str = ""
    keys: tuple = ()  # config keys its output depends on (besides the stages before it and the run's inputs)
    runtime: str = ""  # the runtime of its report row when it is skipped

    def run(self, ctx: Context) -> StageResult:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<stage {self.name}>"


class Context:
    """What the stages share: config, target, data, preprocessing, earlier stages' results."""

    def __init__(self, cfg, run_dir: Path, log):
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
        self.fleet = None  # with --device: the connected devices (edgeres.device.fleet.Fleet)
        self.latency_measure = None  # with --device: times pruning candidates there (edgeres.device.latency)
        # a stage run alone by its command (edgeres.pipeline.export_command): it writes its artifact, measures nothing,
        # and takes the command's own options
        self.measuring = True
        self.load_options: dict = {}  # extra options of load_model (--num-classes)
        self.export_config = None  # ExportConfig of `edgeres export` (--fixed-batch, --no-simplify); None: cfg's opset
        self.prune_options: dict = {}  # PruneConfig settings only `edgeres prune` has (--target-macs, --global-pruning...)
        self.prune_out = None  # the checkpoint of `edgeres prune --out` (its info gets top-1 after); None: prune/
        self.bundle_out = None  # the bundle file of `edgeres deploy --run` (edgeres.stage_commands); None: bundle/
        # `edgeres quantize` (edgeres.stage_commands.quantize_command): any FP32 ONNX file in, --out, --calib-cache,
        # and its QAT factory (--model with --data); without splits the calibration folder's own held-out slice
        self.quantize_onnx = self.quantize_out = self.calib_cache = self.quantize_qat = None

    # ---------------------------------------------------------------- paths and earlier stages
    def stage_dir(self, name: str) -> Path:
        d = self.run_dir / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    def artifact(self, stage: str, name: str) -> Path | None:
        r = self.results.get(stage)
        if r is None or name not in r.artifacts:
            return None
        return self.run_dir / r.artifacts[name]

    def deploy_onnx(self) -> Path:
        """The ONNX file that ships: the INT8 file where the quantize stage made one, else the FP32 export."""
        return self.artifact(QUANTIZE, "onnx") or self.artifact(EXPORT, "onnx")

    # ---------------------------------------------------------------- the model
    @property
    def loaded(self):
        if self._loaded is None:
            from edgeres.models import load_model

            self._loaded = load_model(self.cfg.model, trust_model=self.cfg.trust_model, **self.load_options)
        return self._loaded

    def load(self, path):
        """A model file of this run (the input model or a stage's checkpoint), its class names filled from the data
        where the file has none or only placeholders (``class_0``...), and the run's preprocessing recorded."""
        from edgeres.models import load_model

        lm = load_model(path, trust_model=self.cfg.trust_model, **self.load_options)
        if self.splits is not None and (not lm.meta.classes or lm.meta.classes[0].startswith("class_")):
            lm.meta.classes = list(self.splits.classes)
        lm.meta.preprocess = self.pre.to_dict()
        return lm

    def pre_overrides(self) -> dict:
        c = self.cfg
        return dict(image_size=c.image_size, crop_ratio=c.crop_ratio, mean=c.mean, std=c.std)

    # ---------------------------------------------------------------- measurement
    def baseline_logits(self):
        p = self.run_dir / BASELINE / "logits.npy"
        return np.load(p) if p.exists() else None

    def baseline_top1(self):
        r = self.results.get(BASELINE)
        rows = [x for x in (r.rows if r else self._baseline_rows) if x["runtime"] == "torch" and x["top1"] is not None]
        return rows[0]["top1"] if rows else None

    def measure(self, stage: str, artifact: Path, runtime: str, note: str = "", model=None) -> list:
        from edgeres.measure import measure

        if not self.measuring:
            return []
        m = measure(stage, artifact, runtime, self.pre, self.splits.val, self.mcfg,
                    reference_logits=self.baseline_logits(), baseline_top1=self.baseline_top1(), note=note,
                    model=model)
        if m.logits is not None:  # kept for later stages' comparisons, across resumed runs too
            save_npy_atomic(self.stage_dir(stage) / f"logits_{runtime}.npy", m.logits)
        if stage == BASELINE and runtime == "torch" and m.logits is not None:
            save_npy_atomic(self.run_dir / BASELINE / "logits.npy", m.logits)
            for r in m.rows:
                r["top1_delta"], r["agreement"] = 0.0, 100.0
            self._baseline_rows = m.rows
        return m.rows

    def stage_logits(self, stage: str, runtime: str):
        p = self.run_dir / stage / f"logits_{runtime}.npy"
        return np.load(p) if p.exists() else None

    def skip_row(self, stage: str, runtime: str, note: str) -> dict:
        from edgeres.report import new_row

        return new_row(stage=stage, runtime=runtime, status="skipped", note=note,
                       batch_size=self.mcfg.batch_sizes[0], input_size=self.pre.size if self.pre else None)
