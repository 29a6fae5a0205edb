"""The TensorRT double's builder and builder config (rules and sources in tests/trt_double/__init__.py)."""

from __future__ import annotations

import json

from trt_double import onnx_rules
from trt_double.tensorrt_base import DEVICE_NAME, MAGIC, TIMING_MAGIC, Logger, TimingCache, timing_cache_blob


class Config:
    def __init__(self):
        F = self.F
        self.flags, self.profiles, self.pool = set(), [], {}
        self.default_device_type = F.DeviceType.GPU
        self.DLA_core = -1
        self.profiling_verbosity = F.ProfilingVerbosity.LAYER_NAMES_ONLY  # kLAYER_NAMES_ONLY is the default
        self._cache = None
        if F.major < 11:
            self.int8_calibrator = None
            self._calib_profile = None

    def set_memory_pool_limit(self, pool, size):
        self.pool[pool] = size

    def set_flag(self, flag):
        self.flags.add(flag)

    def get_flag(self, flag):
        return flag in self.flags

    def clear_flag(self, flag):
        self.flags.discard(flag)

    def add_optimization_profile(self, profile):
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def create_timing_cache(self, serialized_timing_cache):
        data = bytes(serialized_timing_cache)
        if not data:
            return TimingCache(timing_cache_blob())
        if not data.startswith(TIMING_MAGIC):  # corrupted, or another TensorRT's format: nullptr -> None
            self.F.log(Logger.ERROR, "timing cache: serialization assertion failed (corrupted or other version)")
            return None
        return TimingCache(data)

    def set_timing_cache(self, cache, ignore_mismatch):
        if not isinstance(cache, TimingCache):  # pybind: ``ITimingCache const&`` accepts no None
            raise TypeError("set_timing_cache(): incompatible function arguments")
        if cache.device != DEVICE_NAME and not ignore_mismatch:
            self.F.log(Logger.ERROR, f"timing cache was created on {cache.device}, this is {DEVICE_NAME}")
            return False
        self._cache = cache
        return True

    def get_timing_cache(self):
        return self._cache


def set_calibration_profile(self, profile):  # IBuilderConfig, 8.5 and 10.3 only (pyCore 8.5.2:1081, v10.3.0:1458)
    self._calib_profile = profile
    return True


def get_calibration_profile(self):
    return self._calib_profile


class Builder:
    def __init__(self, logger):
        self.logger = logger

    def create_network(self, flags=0):
        if self.F.major == 10 and flags & 1:
            self.F.log(Logger.WARNING, "EXPLICIT_BATCH is deprecated")
        return self.F.Network(flags)

    def create_builder_config(self):
        return self.F.Config()

    def create_optimization_profile(self):
        return self.F.Profile()

    def _fail(self, msg):
        self.logger.log(Logger.ERROR, msg)

    def _shapes(self, network, config):
        """{input: (min, opt, max)}, or an error string."""
        shapes = {}
        for t in network.inputs:
            prof = config.profiles[0].shapes.get(t.name) if config.profiles else None
            if -1 not in t.shape:
                shapes[t.name] = (t.shape, t.shape, t.shape)
                continue
            if prof is None:
                return f"Network has dynamic or shape inputs, but no optimization profile ({t.name})"
            for lim in prof:
                if len(lim) != len(t.shape) or any(d not in (-1, p) for d, p in zip(t.shape, lim)):
                    return f"{t.name}: profile dimensions {lim} do not match the network's {t.shape}"
            shapes[t.name] = prof
        return shapes

    def _dla_error(self, network, config, shapes) -> str:
        F = self.F
        if not 0 <= config.DLA_core < F.dla_cores:
            return f"DLA core {config.DLA_core} does not exist ({F.dla_cores} cores)"
        if any(p[0] != p[2] for p in shapes.values()):
            return "DLA does not support dynamic shapes: profile min != max"
        if F.major < 11 and not {F.BuilderFlag.FP16, F.BuilderFlag.INT8} & config.flags:
            return "DLA runs FP16 and INT8 only: without either flag every layer falls back to GPU"
        return ""

    def _check(self, network, config):
        """An error string, or the {input: profile} shapes of a network the double can build."""
        F = self.F
        if network.onnx is None:
            return "empty network"
        if network.strongly_typed and F.major < 11 and ({F.BuilderFlag.FP16, F.BuilderFlag.INT8} & config.flags):
            return "INT8/FP16 builder flags are not allowed on a strongly typed network"
        shapes = self._shapes(network, config)
        if isinstance(shapes, str):
            return shapes
        if (F.major < 11 and config.int8_calibrator is not None and F.BuilderFlag.INT8 in config.flags
                and any(-1 in t.shape for t in network.inputs) and config._calib_profile is None):
            return "Calibration profile must be set for INT8 calibration of a network with runtime dimensions"
        if config.default_device_type == F.DeviceType.DLA:
            return self._dla_error(network, config, shapes) or shapes
        return shapes

    def build_serialized_network(self, network, config):
        F = self.F
        shapes = self._check(network, config)
        if isinstance(shapes, str):
            return self._fail(shapes)
        dla = config.default_device_type == F.DeviceType.DLA
        on_dla, on_gpu = onnx_rules.dla_split(network.model, F.major, dla)
        if dla and not on_dla:
            if F.BuilderFlag.GPU_FALLBACK not in config.flags:
                return self._fail("no layer can run on the DLA and GPU fallback is not allowed")
            F.log(Logger.WARNING, "Default DLA is enabled but no layer in the network can run on DLA, falling back to GPU")
        meta = {"version": F.version, "inputs": [[t.name, list(t.shape), t.dtype.name] for t in network.inputs],
                "outputs": [[t.name, list(t.shape), t.dtype.name] for t in network.outputs],
                "profile": {k: [list(s) for s in v] for k, v in shapes.items()},
                "dla_core": config.DLA_core if on_dla else None, "dla_layers": on_dla, "gpu_layers": on_gpu,
                "verbosity": config.profiling_verbosity.name, "flags": sorted(f.name for f in config.flags),
                "strongly_typed": network.strongly_typed}
        head = json.dumps(meta).encode()
        return memoryview(MAGIC + len(head).to_bytes(8, "little") + head + network.onnx)
