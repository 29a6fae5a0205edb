"""What the bundle asks of the TensorRT it finds: the module, numpy types of its DataTypes, the version family, where
DLA exists, and how many engine layers run on the DLA (from the engine inspector).

Sources (NVIDIA/TensorRT at tags 8.5.2, v10.3.0, v11.0; NVIDIA's TensorRT documentation):
  * ``nptype`` maps FLOAT, HALF, INT8, INT32, BOOL, UINT8 (and INT64 from 10) and raises TypeError for FP8, BF16, INT4
    ("Could not resolve TensorRT datatype to an equivalent numpy datatype", python/packaging/bindings_wheel/tensorrt/
    __init__.py:151-173 at v10.3.0, :172-194 at v11.0); at 8.5.2 it reads ``np.bool`` on every call, which numpy
    1.24+ no longer has (AttributeError, NVIDIA/TensorRT#2557).
  * DLA: "DLA was unavailable in TensorRT 11.0 through 11.3, and TensorRT 11.4.0 supported DLA only on Windows on ARM";
    11.4.1 "supports DLA on NVIDIA Jetson AGX Orin when using NVIDIA JetPack 7.2.2 or later"; "Jetson Thor has no DLA";
    "TensorRT 10.7 was the last 10.x release that supported DLA" (TensorRT 11.4.1 documentation, "Working with DLA"
    and the Jetson migration page). On TensorRT 8.x DLA does not take explicit (Q/DQ) quantization: "Currently, DLA
    doesn't support QAT yet ... if you convert it to implicit quantization, it would work with DLA" (NVIDIA/TensorRT
    #2222, TensorRT maintainers, 2022-08), so a Q/DQ network's layers fall back to the GPU.
  * Engine inspector (TensorRT >= 8.2): ``ICudaEngine.create_engine_inspector()``,
    ``EngineInspector.get_engine_information(LayerInformationFormat.JSON)`` (pyCore.cpp 8.5.2:951, :1171); the JSON is
    ``{"Layers": [...], "Bindings": [...]}`` (11.x: "I/O Tensors" instead of "Bindings", TensorRT 11 migration guide,
    IEngineInspector); with ``ProfilingVerbosity.DETAILED`` each layer is an object with "Name" and "LayerType"
    (trt-engine-explorer's example graph.json at v10.3.0), else only its name. A DLA subgraph is one engine layer
    named ``{ForeignNode[first...last]}``, framed by "... to nvm" / "... from nvm" / "... copy finish" layers
    (trtexec's per-layer profile of a DLA engine, NVIDIA/TensorRT#3143).
"""

from __future__ import annotations

import json

_NP_OF = {"FLOAT": "float32", "HALF": "float16", "INT8": "int8", "INT32": "int32", "INT64": "int64", "BOOL": "bool",
          "UINT8": "uint8"}



def import_tensorrt():
    """The tensorrt module, imported when first needed; MissingTool (a BackendUnavailable) naming the fix."""
    from edgeres_deploy.envinfo import import_optional

    return import_optional("tensorrt")


def np_dtype(trt, dt):
    """``trt.nptype(dt)`` as a numpy dtype; TypeError naming the type when numpy has none (FP8, BF16, INT4, FP4)."""
    import numpy as np

    name = getattr(dt, "name", str(dt).rsplit(".", 1)[-1])
    try:
        return np.dtype(trt.nptype(dt))
    except AttributeError:  # 8.5.2's nptype with numpy >= 1.24 (no np.bool): map by the type's name
        pass
    except TypeError:
        raise TypeError(f"the engine uses TensorRT type {name}, which has no numpy type: give the engine float32, "
                        "float16, int8 or int32 inputs and outputs (rebuild from an ONNX with those I/O types)") from None
    if name not in _NP_OF:
        raise TypeError(f"the engine uses TensorRT type {name}, which has no numpy type")
    return np.dtype(_NP_OF[name])


def version_family(version: str) -> int:
    """Major version number of a TensorRT version string ('8.5.2.2' -> 8)."""
    return int(str(version).split(".")[0])


def _version_tuple(version: str) -> tuple:
    out = []
    for part in str(version).split(".")[:3]:
        digits = "".join(c for c in part if c.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out + [0] * (3 - len(out)))


def dla_problem(trt_version: str, dla_cores: int, qdq: bool) -> tuple:
    """(severity, reason) for running on a DLA core: ("refuse", why) where no layer can run on a DLA, ("warn", why)
    where most layers will fall back to the GPU, ("", "") otherwise."""
    v = _version_tuple(trt_version)
    if (11, 0, 0) <= v < (11, 4, 1):
        return "refuse", (f"TensorRT {trt_version} has no DLA support (NVIDIA, 'Working with DLA': none in 11.0-11.3; "
                          "11.4.1+ on Jetson AGX Orin with JetPack 7.2.2+)")
    if dla_cores < 1:
        return "refuse", ("this device has no DLA core (Jetson Thor and Orin Nano have none; TensorRT reports "
                          "num_DLA_cores = 0)")
    if v[0] < 10 and qdq:
        return "warn", (f"DLA on TensorRT {trt_version} does not take explicit (Q/DQ) quantization "
                        "(NVIDIA/TensorRT#2222): expect the layers to fall back to the GPU; the build reports where "
                        "they ran")
    if (10, 8, 0) <= v < (11, 0, 0):
        return "warn", (f"NVIDIA's 'Working with DLA' says TensorRT 10.7 was the last 10.x release with DLA; "
                        f"TensorRT {trt_version} may place every layer on the GPU; the build reports where they ran")
    return "", ""


def _is_dla_layer(layer) -> bool:
    if isinstance(layer, dict):
        kind = str(layer.get("LayerType", ""))
        if kind:
            return kind == "DLA"
        layer = layer.get("Name", "")
    return str(layer).startswith("{ForeignNode[")


def _is_nvm_layer(layer) -> bool:
    name = str(layer.get("Name", "") if isinstance(layer, dict) else layer)
    return name.endswith((" to nvm", " from nvm", " copy finish"))


def placement(info_json: str) -> dict:
    """{"dla": engine layers on the DLA, "gpu": on the GPU, "nvm": DLA data-movement layers, "detailed": whether
    layer types were known} from the engine inspector's JSON."""
    data = json.loads(info_json)
    layers = data.get("Layers", []) if isinstance(data, dict) else []
    dla = sum(1 for layer in layers if _is_dla_layer(layer))
    nvm = sum(1 for layer in layers if not _is_dla_layer(layer) and _is_nvm_layer(layer))
    return {"dla": dla, "gpu": len(layers) - dla - nvm, "nvm": nvm,
            "detailed": any(isinstance(layer, dict) for layer in layers)}


def inspect_engine(trt, engine) -> dict | None:
    """The engine's layer placement (see :func:`placement`), None where TensorRT has no engine inspector or it fails."""
    make = getattr(engine, "create_engine_inspector", None)
    fmt = getattr(getattr(trt, "LayerInformationFormat", None), "JSON", None)
    if make is None or fmt is None:
        return None
    try:
        return placement(make().get_engine_information(fmt))
    except (ValueError, TypeError, AttributeError, RuntimeError):
        return None


def placement_text(p: dict | None, dla_core) -> str:
    """A report note on where the engine runs."""
    if p is None:
        return "layer placement unknown (no engine inspector in this TensorRT)"
    how = "" if p.get("detailed") else " (by layer name)"
    if dla_core is None:
        return f"GPU only: {p['gpu']} engine layers{how}"
    if not p["dla"]:
        return f"asked for DLA core {dla_core}, but no layer runs on it: all {p['gpu']} engine layers on the GPU{how}"
    return (f"DLA core {dla_core}: {p['dla']} engine layer(s) on the DLA (each a fused subgraph), {p['gpu']} fell back "
            f"to the GPU{how}")
