"""The ``tensorrt`` module of the double, one flavour at a time: 8.5.2, 10.3.0, 11.0 (rules and sources in
tests/trt_double/__init__.py)."""

from __future__ import annotations

import types

from trt_double.tensorrt_base import FLAVOURS, Flavour, Logger, Network, OnnxParser, Profile
from trt_double.tensorrt_build import Builder, Config, get_calibration_profile, set_calibration_profile
from trt_double.tensorrt_run import Engine, Runtime, device_memory_size


def _bind(cls, F, **extra):
    return type(cls.__name__, (cls,), {"F": F, "__module__": "tensorrt", **extra})


def make_tensorrt(flavour: str, dla_cores: int = 0, logs: list | None = None) -> types.ModuleType:
    """The ``tensorrt`` module of one flavour ("8.5", "10.3" or "11")."""
    F = Flavour(flavour, dla_cores, logs if logs is not None else [])
    trt = types.ModuleType("tensorrt")
    trt.__version__, trt.__double__, trt._logs = F.version, flavour, F.logs
    builder_extra = {"num_DLA_cores": F.dla_cores}
    if F.major < 11:
        builder_extra["platform_has_fast_fp16"] = True
    calib = ({"set_calibration_profile": set_calibration_profile, "get_calibration_profile": get_calibration_profile}
             if F.major < 11 else {})
    memory = {}  # ICudaEngine.device_memory_size: 8.5 and 10.3; device_memory_size_v2: 10.3 and 11.0
    if F.major < 11:
        memory["device_memory_size"] = property(device_memory_size)
    if F.major >= 10:
        memory["device_memory_size_v2"] = property(device_memory_size)
    F.Network, F.Config, F.Profile = _bind(Network, F), _bind(Config, F, **calib), _bind(Profile, F)
    F.Engine = _bind(Engine, F, **memory)
    for name, cls, extra in (("Logger", Logger, {}), ("OnnxParser", OnnxParser, {}), ("Builder", Builder, builder_extra),
                             ("Runtime", Runtime, {"num_DLA_cores": F.dla_cores})):
        setattr(trt, name, _bind(cls, F, **extra))
    for name in ("DataType", "BuilderFlag", "MemoryPoolType", "DeviceType", "TensorIOMode", "ProfilingVerbosity",
                 "LayerInformationFormat"):
        setattr(trt, name, getattr(F, name))
    if F.NetworkDefinitionCreationFlag is not None:
        trt.NetworkDefinitionCreationFlag = F.NetworkDefinitionCreationFlag
    trt.nptype = F.nptype
    trt.float32, trt.float16, trt.int8, trt.int32 = (F.DataType.FLOAT, F.DataType.HALF, F.DataType.INT8,
                                                     F.DataType.INT32)
    if F.major < 11:  # pyInt8.cpp: 8.5 and 10.3; 11.0 has no implicit INT8
        trt.IInt8EntropyCalibrator2 = type("IInt8EntropyCalibrator2", (), {"__init__": lambda self: None})
    return trt


__all__ = ["FLAVOURS", "make_tensorrt"]
