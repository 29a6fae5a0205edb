"""Runtimes behind one small interface: open an artifact, run a batch, describe yourself, close.

``torch`` (.pt), ``onnxruntime`` and ``openvino`` (.onnx), ``tensorrt`` (.engine). The ONNX Runtime, OpenVINO and
TensorRT runners are the device's own backends (edgeres_deploy), so the host measures with the code the device runs.
Every runner has one lifecycle (edgeres/runtimes/base.py): ``with load_runtime(name, artifact) as rt:`` opens it and
closes it at the end of the block. Optional runtimes are imported when opened; one that cannot run here raises
:class:`~edgeres.errors.Unavailable`, whose reason the report records as ``skipped``.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from edgeres.errors import EdgeresError
from edgeres.runtimes.base import Runtime, device_errors, gpu_label

__all__ = ["ArtifactInfo", "Runtime", "artifact_info", "artifact_kind", "device_errors", "gpu_label", "load_runtime",
           "runtime_class", "runtimes_for"]

_REGISTRY = {
    "torch": "edgeres.runtimes.torch_rt:TorchRuntime",
    "onnxruntime": "edgeres.runtimes.ort:OrtRuntime",
    "openvino": "edgeres.runtimes.openvino_rt:OpenVinoRuntime",
    "tensorrt": "edgeres.runtimes.tensorrt_rt:TensorRTRuntime",
}
_BY_KIND = {"pt": ["torch"], "onnx": ["onnxruntime", "openvino"], "engine": ["tensorrt"]}


def artifact_kind(path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix in (".pt", ".pth", ".ckpt", ".bin", ".pt2", ".ts", ".torchscript", ".tar", ".pkl"):
        return "pt"
    if suffix == ".onnx":
        return "onnx"
    if suffix in (".engine", ".plan", ".trt"):
        return "engine"
    from edgeres.models import is_model_file

    if Path(path).is_file() and is_model_file(path):  # a PyTorch file by its content, whatever its name
        return "pt"
    raise EdgeresError(f"{path}: unknown artifact type {suffix!r}; expected .pt, .onnx or .engine")


def runtimes_for(path) -> list:
    return list(_BY_KIND[artifact_kind(path)])


def runtime_class(name: str):
    if name not in _REGISTRY:
        raise EdgeresError(f"unknown runtime {name!r}; choose one of {', '.join(_REGISTRY)}")
    mod, cls = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(mod), cls)


def load_runtime(name: str, artifact, **options) -> Runtime:
    """``artifact`` opened in runtime ``name``; use it as ``with load_runtime(...) as rt:`` (closed at the block's
    end). Raises Unavailable (with the reason and the fix) when it cannot run here, ModelFileError when the runtime
    refuses the file."""
    return runtime_class(name)(str(artifact), **options).open()


@dataclass
class ArtifactInfo:
    """What an artifact says about itself: classes and preprocessing (empty where it carries no edgeres metadata)."""

    classes: list = field(default_factory=list)
    preprocess: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


def artifact_info(path, trust_model: bool = False) -> ArtifactInfo:
    kind = artifact_kind(path)
    if kind == "pt":
        from edgeres.models import CHECKPOINT_FORMAT, load_model
        from edgeres.models.zipguard import check_zip_sizes

        check_zip_sizes(path, path)  # before torch reads any storage
        try:  # an edgeres checkpoint's metadata, without building the model (memory-mapped, weights only)
            import torch

            obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
            if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
                return ArtifactInfo(list(obj["classes"]), dict(obj.get("preprocess") or {}),
                                    {"arch": obj.get("arch"), "sparsity": obj.get("sparsity")})
        except Exception:  # noqa: BLE001 - other formats (and bad files) go through load_model and its messages
            pass
        meta = load_model(path, trust_model=trust_model).meta
        return ArtifactInfo(list(meta.classes), dict(meta.preprocess), {"arch": meta.arch, "sparsity": meta.sparsity})
    if kind == "onnx":
        import onnx

        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as e:  # noqa: BLE001
            raise EdgeresError(f"{path} is not a readable ONNX file ({e.__class__.__name__}); re-export it") from None
        _check_finite_onnx(model, path)
        props = {p.key: p.value for p in model.metadata_props}
        classes = _json_meta(path, "edgeres.classes", props.get("edgeres.classes", "[]"), list)
        pre = _json_meta(path, "edgeres.preprocess", props.get("edgeres.preprocess", "{}"), dict)
        if "size" not in pre:  # no metadata: a fixed square input says the size (rather than the default 224)
            side = _fixed_side(model)
            if side:
                pre["size"] = side
        return ArtifactInfo(classes, pre, {k: v for k, v in props.items() if not k.startswith("edgeres.")})
    sidecar = Path(str(path) + ".json")
    if sidecar.exists():
        d = _json_meta(sidecar, "sidecar", sidecar.read_text(errors="replace"), dict)
        return ArtifactInfo(_typed(sidecar, "classes", d.get("classes", []), list),
                            _typed(sidecar, "preprocess", d.get("preprocess", {}), dict), d)
    return ArtifactInfo()


def _check_finite_onnx(model, path) -> None:
    """ModelFileError naming the first float initializer of an ONNX file that holds NaN or Inf (as load_model does for
    a PyTorch model's tensors): its outputs would be NaN and its top-1 the argmax of NaN."""
    import numpy as np
    from onnx import TensorProto, numpy_helper

    from edgeres.errors import ModelFileError

    for t in model.graph.initializer:
        if t.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE) and not t.data_location:
            a = numpy_helper.to_array(t)
            bad = int(a.size - np.isfinite(a).sum())
            if bad:
                raise ModelFileError(f"{path}: initializer {t.name} holds NaN or Inf ({bad} of {a.size} values): the "
                                     "weights are damaged; re-export it from a sound model")


def _typed(path, key, value, kind):
    if not isinstance(value, kind) or (kind is list and not all(isinstance(c, str) for c in value)):
        raise EdgeresError(f"{path}: {key} must be a {'list of class names' if kind is list else 'mapping'}; "
                           "re-export the artifact with edgeres or remove that metadata entry")
    return value


def _json_meta(path, key, text, kind):
    """A JSON metadata value of an artifact, or EdgeresError naming the file and the key."""
    try:
        value = json.loads(text)
    except ValueError:
        raise EdgeresError(f"{path}: {key} is not valid JSON; re-export the artifact with edgeres "
                           "or remove that metadata entry") from None
    return _typed(path, key, value, kind)


def _fixed_side(model) -> int | None:
    """H of a fixed [N, 3, H, H] input, else None."""
    if len(model.graph.input) < 1:
        return None
    dims = model.graph.input[0].type.tensor_type.shape.dim
    vals = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    if len(vals) == 4 and vals[2] and vals[2] == vals[3] and 8 <= vals[2] <= 4096:
        return int(vals[2])
    return None
