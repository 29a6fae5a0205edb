"""Types and ranges of every `edgeres optimize` config key: one check for CLI flags, YAML files and Python callers."""

from __future__ import annotations

import math
import os

from edgeres.errors import ConfigError

# key -> (kind, None allowed, low, high, low open); kind: str, int, float, bool, list3 (3 numbers), intlist,
# strlist (a list of names, or one comma-separated string)
CONFIG_RULES = {
    "model": ("str", False, None, None, False), "target": ("str", False, None, None, False),
    "data": ("str", True, None, None, False), "calib": ("str", True, None, None, False),
    "out": ("str", True, None, None, False), "prune": ("float", False, 0.0, 0.95, False),
    "sparsity": ("str", True, None, None, False), "importance": ("str", False, None, None, False),
    "finetune_epochs": ("int", False, 0, None, False), "kd_alpha": ("float", False, 0.0, 1.0, False),
    "kd_temperature": ("float", False, 0.0, None, True), "finetune_lr": ("float", False, 0.0, None, True),
    "batch_size": ("int", False, 1, None, False), "calib_size": ("int", False, 1, None, False),
    "calib_method": ("str", False, None, None, False), "quant_max_drop": ("float", True, 0.0, None, True),
    "max_accuracy_drop": ("float", False, 0.0, None, False), "opset": ("int", False, 13, 25, False),
    "image_size": ("int", True, 8, 4096, False), "crop_ratio": ("float", True, 0.1, 1.0, False),
    "mean": ("list3", True, None, None, False), "std": ("list3", True, 0.0, None, True),
    "trust_model": ("bool", False, None, None, False), "latency_batch_sizes": ("intlist", False, 1, 4096, False),
    "latency_min_time": ("float", False, 0.0, None, True), "measure_memory": ("bool", False, None, None, False),
    "threads": ("int", True, 1, None, False), "dla_core": ("int", True, 0, None, False),
    "seed": ("int", False, 0, None, False),
    "target_latency_ms": ("float", True, 0.0, None, True), "target_speedup": ("float", True, 1.0, None, True),
    "int8_max_drop": ("float", True, 0.0, None, False), "int8_fallback": ("strlist", False, None, None, False),
    "qat_epochs": ("int", False, 1, None, False),
}


def check_value(key, value, kind, _nullable, lo, hi, lo_open):
    def number(v, integer):
        ok = isinstance(v, int) if integer else isinstance(v, (int, float))
        if isinstance(v, bool) or not ok or (isinstance(v, float) and not math.isfinite(v)):
            raise ConfigError(key, f"must be {'a whole number' if integer else 'a number'}" + rng(), value)
        if (lo is not None and (v < lo or (lo_open and v == lo))) or (hi is not None and v > hi):
            raise ConfigError(key, "out of range: must be" + rng(), value)
        return int(v) if integer else float(v)

    def rng():
        if lo is None and hi is None:
            return ""
        left = f"{'>' if lo_open else '>='} {lo}" if lo is not None else ""
        right = f"<= {hi}" if hi is not None else ""
        return " " + " and ".join(x for x in (left, right) if x)

    if kind == "str":
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str):
            raise ConfigError(key, "must be a string", value)
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(key, "must be true or false", value)
        return value
    if kind in ("int", "float"):
        return number(value, kind == "int")
    if kind == "strlist":
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(key, "must be a list of names, e.g. [methods, float, qat], or a comma-separated string", value)
        return list(value)
    if not isinstance(value, (list, tuple)) or (kind == "list3" and len(value) != 3) or not value:
        need = "a list of three numbers, e.g. [0.485, 0.456, 0.406]" if kind == "list3" else "a list of batch sizes, e.g. [1, 8]"
        raise ConfigError(key, f"must be {need}", value)
    return [number(v, kind == "intlist") for v in value]
