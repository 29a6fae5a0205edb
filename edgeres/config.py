"""`edgeres optimize`'s configuration: every key with its default (documented in docs/edgeres.yaml), checked the same
way whether it came from a flag, a YAML file or Python (edgeres.config_rules)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from edgeres.errors import ConfigError, EdgeresError


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
    def from_dict(cls, d: dict) -> OptimizeConfig:
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
