"""Every option of `edgeres optimize`'s configuration, declared once: its key, type, range, default, help, and the
commands that take it as a flag. From this one table come the config dataclass and its validation (edgeres.config:
the same check for a flag, a YAML file or Python), the click flags (edgeres.cli_options) and docs/edgeres.yaml
(``python -m edgeres.options > docs/edgeres.yaml``; tests/test_config_doc.py keeps the file in step).

No click and no torch here: the CLI imports this at start-up.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field

from edgeres.errors import ConfigError
from edgeres.models.meta import ARCHS  # noqa: F401 - the one list of architectures, for the CLI's choices
from edgeres.prune.channels import IMPORTANCES
from edgeres.quant.settings import FALLBACKS, METHODS

OPSET_RANGE = (17, 20)  # opset 17: TensorRT 8.5's newest; 20: torch.onnx's TorchScript exporter's newest (test_config_doc)
MAX_THREADS = 4 * (os.cpu_count() or 1)  # a sane multiple of the cores: more only thrashes (and libgomp dies on huge)
RUNTIMES = ("torch", "onnxruntime", "openvino", "tensorrt")  # the host's runtimes (edgeres.runtimes: the same names)
STAGE_COMMANDS = ("optimize", "demo")  # the commands that take every flag of the pipeline's stages

_log = logging.getLogger("edgeres")


@dataclass(frozen=True)
class Option:
    key: str
    kind: str  # str | int | float | bool | choice | list3 (3 numbers) | intlist | strlist (names, or one "a,b" string)
    default: object
    help: str  # one sentence: the flag's help and the YAML comment
    section: str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    nullable: bool = False
    choices: tuple = ()
    commands: tuple = ()  # the commands that take it as a flag
    flags: dict = field(default_factory=dict)  # command -> its spelling there, where it is not --key
    cli_default: dict = field(default_factory=dict)  # command -> its default there, where not the config's
    required: tuple = ()  # commands where the flag is required
    invert: str = ""  # a flag that sets the key False (--no-memory for measure_memory)
    multiple: bool = False  # a repeatable flag (strlist)
    doc: str = ""  # more lines for docs/edgeres.yaml
    example: object = None  # the value docs/edgeres.yaml shows instead of the default
    deprecated: str = ""  # the key this one is an old name of: it warns once, and sets that key

    @property
    def flag(self) -> str:
        return self.invert or "--" + self.key.replace("_", "-")

    def flag_for(self, command: str) -> str:
        return self.flags.get(command, self.flag)


_STAGE = STAGE_COMMANDS
_PRE = ("optimize", "prune", "export", "quantize", "build-engine", "evaluate", "bench", "train")  # preprocessing flags
_TRUST = ("optimize", "prune", "export", "evaluate", "bench", "train")
_TRAIN = _STAGE + ("prune", "train")  # every command that trains (the fine-tuning of prune)

OPTIONS = (
    # --- inputs
    Option("model", "str", "", "trained model: edgeres checkpoint, state dict (.pt/.pth/.ckpt), TorchScript (required)",
           "inputs", commands=("optimize",), example="resnet50.pt"),
    Option("target", "str", "jetson", "target profile (`edgeres targets`); jetson = the Orin family default; auto: the "
           "board of --device", "inputs", commands=_STAGE + ("prune", "quantize", "build-engine"),
           required=("quantize", "build-engine")),
    Option("data", "str", None, "ImageFolder root (DIR/train, DIR/val); default: the data folder the checkpoint records",
           "inputs", nullable=True, commands=_STAGE + ("prune", "export", "quantize")),
    Option("calib", "str", None, "calibration images; default: a class-stratified sample of the training split",
           "inputs", nullable=True, commands=_STAGE + ("quantize",), required=("quantize",)),
    Option("out", "str", None, "run directory; default runs/MODEL-TARGET", "inputs", nullable=True,
           commands=("optimize",)),
    Option("trust_model", "bool", False, "allow unpickling a full nn.Module (runs code from the file: only for files you "
           "trust)", "inputs", commands=_TRUST),
    Option("skip_corrupt", "bool", False, "skip unreadable images with a warning instead of stopping, in every stage "
           "that reads images (evaluation, fine-tuning, calibration)", "inputs",
           commands=_STAGE + ("prune", "export", "quantize", "bench")),
    Option("seed", "int", 0, "seeds data splits, calibration sampling and fine-tuning", "inputs", lo=0, hi=2**32 - 1,
           commands=("quantize", "prune")),
    # --- preprocessing
    Option("image_size", "int", None, "input side in pixels (default 224)", "preprocessing", lo=8, hi=4096,
           nullable=True, commands=_PRE),
    Option("crop_ratio", "float", None, "resize the short side to size/ratio, centre-crop (default 0.875; 1.0 = no "
           "crop)", "preprocessing", lo=0.1, hi=1.0, nullable=True, commands=_PRE),
    Option("mean", "list3", None, "[R, G, B] normalisation mean (default ImageNet)", "preprocessing", nullable=True,
           commands=_PRE),
    Option("std", "list3", None, "[R, G, B] normalisation std (default ImageNet)", "preprocessing", lo=0.0,
           lo_open=True, nullable=True, commands=_PRE),
    # --- prune stage
    Option("prune", "float", 0.3, "channel ratio removed, in [0, 0.95]; 0 turns pruning off", "prune", lo=0.0, hi=0.95,
           commands=_STAGE),
    Option("target_latency_ms", "float", None, "instead of `prune`: search the ratio whose latency, measured on the "
           "target's runtime on this host (x86-cpu: INT8 in ONNX Runtime or OpenVINO), meets this many ms", "prune",
           lo=0.0, hi=1e6, lo_open=True, nullable=True, commands=("optimize", "prune")),
    Option("target_speedup", "float", None, "... or whose measured speed-up over the unpruned model (same runtime) "
           "meets this (> 1)", "prune", lo=1.0, hi=1000.0, lo_open=True, nullable=True, commands=("optimize", "prune"),
           doc="targets this host cannot run (Jetson) fall back to MACs (1/S of them)"),
    Option("accept_shortfall", "bool", False, "when --target-macs, --target-speedup or --target-latency-ms cannot be "
           "reached, prune to the best reachable (said in the report's note) instead of stopping with exit 1", "prune",
           commands=("optimize", "prune")),
    Option("sparsity", "choice", None, "2:4 semi-structured sparsity (Ampere/Blackwell Jetsons)", "prune",
           choices=("2:4",), nullable=True, commands=_STAGE + ("prune",)),
    Option("importance", "choice", "l2", "channel importance", "prune", choices=IMPORTANCES, commands=("prune",)),
    Option("finetune_epochs", "int", 3, "distillation fine-tuning epochs after pruning (0: none)", "prune", lo=0,
           hi=1000, commands=_STAGE + ("prune",)),
    Option("kd_alpha", "float", 0.7, "weight of the distillation loss (the unpruned model is the teacher)", "prune",
           lo=0.0, hi=1.0, commands=("prune",)),
    Option("kd_temperature", "float", 4.0, "distillation temperature", "prune", lo=0.0, hi=100.0, lo_open=True,
           commands=("prune",)),
    Option("finetune_lr", "float", 5e-4, "fine-tuning learning rate", "prune", lo=0.0, hi=10.0, lo_open=True,
           commands=("prune",), flags={"prune": "--lr"}),
    Option("batch_size", "int", 32, "fine-tuning batch size", "prune", lo=1, hi=4096, commands=("prune",)),
    Option("amp", "choice", "auto", "mixed precision while training: auto = bf16 on GPUs of compute capability 8.0+ "
           "(fp16 with loss scaling on 7.x, fp32 below) and on CPUs with AMX/AVX-512 BF16, else fp32; off = fp32",
           "prune", choices=("auto", "bf16", "fp16", "off"), commands=_TRAIN),
    Option("pipeline", "choice", "auto", "training input: auto = gpu when training on CUDA, else cpu; gpu = JPEG "
           "decoded by nvJPEG and augmented on the device; cpu = PIL decode and augmentation in the loader workers; "
           "dali = NVIDIA DALI (pip install 'edgeres[dali]')", "prune", choices=("auto", "gpu", "cpu", "dali"),
           commands=_TRAIN),
    Option("workers", "int", None, "loader workers while training (default: the cores available when training on "
           "CUDA, 0 on the CPU)", "prune", lo=0, hi=MAX_THREADS, nullable=True, commands=_TRAIN),
    # --- export stage
    Option("opset", "int", 17, f"ONNX opset, {OPSET_RANGE[0]} to {OPSET_RANGE[1]}", "export", lo=OPSET_RANGE[0],
           hi=OPSET_RANGE[1], commands=("export",)),
    # --- quantize stage
    Option("calib_size", "int", 512, "calibration images", "quantize", lo=1, hi=1_000_000,
           commands=_STAGE + ("quantize",)),
    Option("calib_method", "choice", "histogram", "activation range estimator: histogram = MSE-optimal ranges; entropy "
           "= KL (TensorRT's); nncf-default = NNCF's own", "quantize", choices=METHODS,
           commands=_STAGE + ("quantize",), flags={"quantize": "--method"}),
    Option("int8_max_drop", "float", 0.5, "the INT8 file's budget: top-1 points it may lose against its own FP32 "
           "EXPORT, checked on the file that ships, on images calibration did not use (the validation split, or "
           "without one a stratified slice held out of the calibration folder); null (flag: none): plain PTQ, no "
           "check", "quantize", lo=0.0, hi=100.0, nullable=True, commands=_STAGE + ("quantize",)),
    Option("int8_fallback", "strlist", list(FALLBACKS), "over the INT8 budget, in this order, stopping at the first "
           "that fits: other calibration methods; the most sensitive layers kept float (FP16 on TensorRT); QAT "
           "fine-tuning; none: plain PTQ", "quantize", choices=FALLBACKS + ("none",),
           commands=_STAGE + ("quantize",), flags={"quantize": "--fallback"}),
    Option("bias_correction", "bool", False, "NNCF's fast bias correction after PTQ (off by default: on the "
           "benchmark's CIFAR ResNets it moved the INT8 logits 8-15x further from FP32, "
           "benchmarks/results/int8_resnets.csv)", "quantize", commands=_STAGE + ("quantize",)),
    Option("qat_epochs", "int", 1, "epochs of QAT (fake-quant, distilled from the FP32 model) when it is reached",
           "quantize", lo=1, hi=5, commands=("quantize",)),
    Option("quant_max_drop", "float", None, "deprecated: the old name of int8_max_drop", "quantize", lo=0.0, hi=100.0,
           nullable=True, commands=_STAGE, deprecated="int8_max_drop"),
    # --- engine stage
    Option("dla_core", "int", None, "build for this DLA core (targets with DLA only); null: the GPU", "engine", lo=0,
           hi=7, nullable=True, commands=("build-engine",)),
    # --- recommendation and measurement
    Option("max_accuracy_drop", "float", 1.0, "the recommendation's budget: top-1 points any artifact may lose "
           "against the BASELINE model", "measurement", lo=0.0, hi=100.0, commands=_STAGE),
    Option("latency_batch_sizes", "intlist", [1], "batch sizes timed at every stage", "measurement", lo=1, hi=4096),
    Option("latency_min_time", "float", 1.0, "seconds of timed runs per measurement", "measurement", lo=0.1,
           hi=3600.0, commands=_STAGE + ("bench",), flags={"bench": "--min-time"}, cli_default={"bench": 2.0}),
    Option("measure_memory", "bool", True, "peak RSS in a child process per measurement", "measurement",
           commands=_STAGE + ("bench",), invert="--no-memory"),
    Option("threads", "int", None, "threads per runtime (default: physical cores; at most 4 per logical core)",
           "measurement", lo=1, hi=MAX_THREADS, nullable=True, commands=_STAGE + ("bench",)),
    # --- the device in the loop
    Option("device", "strlist", [], "ssh addresses of your Jetsons (ssh://[user@]host[:port] or a ~/.ssh/config Host "
           "alias): the engine is built, checked and measured on each; target: auto takes the board's", "device",
           multiple=True, commands=_STAGE + ("prune",)),
)
BY_KEY = {o.key: o for o in OPTIONS}

# keys that exclude each other when both are given (flags or YAML): a usage error before any work
CONFLICTS = (("prune", "target_latency_ms"), ("prune", "target_speedup"), ("target_latency_ms", "target_speedup"),
             ("quant_max_drop", "int8_max_drop"))
SECTIONS = {"inputs": "inputs", "preprocessing": "preprocessing, for models without edgeres metadata (a checkpoint's "
            "own values win otherwise)", "prune": "prune stage", "export": "export stage", "quantize": "quantize stage",
            "engine": "engine stage", "measurement": "recommendation and measurement",
            "device": "the device in the loop (edgeres.device)"}


# ------------------------------------------------------------------------------------------------ checking a value
def _range_text(o: Option) -> str:
    left = f"{'>' if o.lo_open else '>='} {o.lo:g}" if o.lo is not None else ""
    right = f"<= {o.hi:g}" if o.hi is not None else ""
    return " and ".join(x for x in (left, right) if x)


def _number(o: Option, v, integer: bool, shown=None):
    shown = v if shown is None else shown
    ok = isinstance(v, int) if integer else isinstance(v, (int, float))
    if isinstance(v, bool) or not ok or (isinstance(v, float) and not math.isfinite(v)):
        rng = _range_text(o)
        raise ConfigError(o.key, f"must be {'a whole number' if integer else 'a finite number'}"
                          + (f" {rng}" if rng else ""), shown)
    if (o.lo is not None and (v < o.lo or (o.lo_open and v == o.lo))) or (o.hi is not None and v > o.hi):
        raise ConfigError(o.key, f"out of range: must be {_range_text(o)}", shown)
    return int(v) if integer else float(v)


def _names(o: Option, value):
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(o.key, "must be a list of names, e.g. [methods, float, qat], or a comma-separated string", value)
    if o.choices:
        bad = [v for v in value if v not in o.choices]
        if bad:
            raise ConfigError(o.key, f"steps are {', '.join(c for c in o.choices)} (in any order)", bad)
        value = [v for v in value if v != "none"]  # "none": an empty list (the INT8 fallbacks: plain PTQ)
    return list(value)


def check(o: Option, value):
    """``value`` for option ``o`` checked and normalised (ints, floats, lists); ConfigError naming the key if not."""
    if value is None and o.nullable:
        return None
    if o.kind in ("str", "choice"):
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str):
            raise ConfigError(o.key, "must be a string", value)
        if o.choices and value not in o.choices:
            raise ConfigError(o.key, f"must be one of {', '.join(o.choices)}", value)
        return value
    if o.kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(o.key, "must be true or false", value)
        return value
    if o.kind in ("int", "float"):
        return _number(o, value, o.kind == "int")
    if o.kind == "strlist":
        return _names(o, value)
    if not isinstance(value, (list, tuple)) or (o.kind == "list3" and len(value) != 3) or not value:
        need = "a list of three numbers, e.g. [0.485, 0.456, 0.406]" if o.kind == "list3" else "a list of batch sizes, e.g. [1, 8]"
        raise ConfigError(o.key, f"must be {need}", value)
    return [_number(o, v, o.kind == "intlist", value) for v in value]


def conflict(given) -> tuple | None:
    """The first pair of keys in ``given`` (the keys a user set, by flag or YAML) that exclude each other."""
    given = {k for k in given}
    return next(((a, b) for a, b in CONFLICTS if a in given and b in given), None)


_warned: set = set()


def resolve_deprecated(values: dict) -> dict:
    """``values`` with each deprecated key's value moved to the key that replaced it, saying so once per process."""
    out = dict(values)
    for o in OPTIONS:
        if o.deprecated and out.get(o.key) is not None:
            if o.key not in _warned:
                _warned.add(o.key)
                _log.warning(f"warning: {o.key} ({o.flag}) is deprecated: use {o.deprecated} "
                             f"({BY_KEY[o.deprecated].flag}); it sets that")
            out[o.deprecated] = out[o.key]
    return out


# ------------------------------------------------------------------------------------------------ docs/edgeres.yaml
_YAML_HEAD = """# edgeres optimize --config docs/edgeres.yaml
#
# Every key `edgeres optimize` understands, with its default. Flags given on the command line override this file;
# keys left out take the defaults below. Dashes and underscores are the same (`calib-size` = `calib_size`).
# Values are checked the same way as the flags (types and ranges) before any stage runs.
# Generated from edgeres/options.py: python -m edgeres.options > docs/edgeres.yaml
"""


def _yaml_value(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_yaml_value(x) for x in v) + "]"
    if isinstance(v, str) and (not v or ":" in v or v in ("null", "true", "false")):
        return f'"{v}"'
    return str(v)


def _wrap(text: str, width: int) -> list:
    lines, cur = [], ""
    for word in text.split():
        if cur and len(cur) + 1 + len(word) > width:
            lines.append(cur)
            cur = word
        else:
            cur = f"{cur} {word}" if cur else word
    return lines + ([cur] if cur else [])


def yaml_doc() -> str:
    """docs/edgeres.yaml: every key with its default (or example), its help, grouped by section."""
    out, section = [_YAML_HEAD.rstrip("\n")], None
    for o in OPTIONS:
        if o.section != section:
            section = o.section
            out += ["", f"# --- {SECTIONS[section]}"]
        help_text = o.help + (f" (one of: {' | '.join(c for c in o.choices if c != 'none')})"
                              if o.kind == "choice" and len(o.choices) > 1 else "")
        if o.doc:
            help_text += "; " + o.doc
        head = f"{o.key}: {_yaml_value(o.example if o.example is not None else o.default)}"
        pad = max(30, len(head) + 2)
        text = _wrap(help_text, 118 - pad)
        out.append(f"{head.ljust(pad)}# {text[0]}")
        out += [" " * pad + f"# {t}" for t in text[1:]]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(yaml_doc(), end="")
