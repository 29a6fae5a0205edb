"""Model files: build torchvision ResNets, save edgeres checkpoints, load every format a user may bring.

An edgeres checkpoint is a plain dict (tensors, strings, numbers) that loads with ``torch.load(weights_only=True)``:

    {"format": "edgeres-checkpoint", "version": 1, "arch": "resnet50", "classes": [...], "preprocess": {...},
     "data_hash": "...", "modules": {name: constructor args of each Conv2d/BatchNorm2d/Linear},
     "state_dict": {...}, "sparsity": None | "2:4", "extra": {...}}

``modules`` is what rebuilds a pruned network whose shapes no longer match torchvision's.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from edgeres.errors import ModelFileError

ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101")
CHECKPOINT_FORMAT = "edgeres-checkpoint"


@dataclass
class ModelMeta:
    arch: str = "resnet50"
    classes: list = field(default_factory=list)
    preprocess: dict = field(default_factory=dict)
    data_hash: str | None = None
    data_root: str | None = None
    sparsity: str | None = None
    source_format: str = "edgeres"
    extra: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@dataclass
class LoadedModel:
    model: object  # torch.nn.Module
    meta: ModelMeta


def build_model(arch: str = "resnet50", num_classes: int = 1000):
    import torchvision

    if arch not in ARCHS:
        raise ModelFileError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    return getattr(torchvision.models, arch)(weights=None, num_classes=num_classes, zero_init_residual=True)


def module_specs(model) -> dict:
    """Constructor arguments of every Conv2d/BatchNorm2d/Linear: enough to rebuild a pruned ResNet exactly."""
    import torch.nn as nn

    specs = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            specs[name] = {"type": "Conv2d", "in": m.in_channels, "out": m.out_channels, "kernel": list(m.kernel_size),
                           "stride": list(m.stride), "padding": list(m.padding), "dilation": list(m.dilation),
                           "groups": m.groups, "bias": m.bias is not None}
        elif isinstance(m, nn.BatchNorm2d):
            specs[name] = {"type": "BatchNorm2d", "num": m.num_features, "eps": m.eps, "momentum": m.momentum}
        elif isinstance(m, nn.Linear):
            specs[name] = {"type": "Linear", "in": m.in_features, "out": m.out_features, "bias": m.bias is not None}
    return specs


def _make_module(spec: dict):
    import torch.nn as nn

    t = spec["type"]
    if t == "Conv2d":
        return nn.Conv2d(spec["in"], spec["out"], tuple(spec["kernel"]), tuple(spec["stride"]), tuple(spec["padding"]),
                         tuple(spec["dilation"]), spec["groups"], spec["bias"])
    if t == "BatchNorm2d":
        return nn.BatchNorm2d(spec["num"], eps=spec["eps"], momentum=spec["momentum"])
    if t == "Linear":
        return nn.Linear(spec["in"], spec["out"], spec["bias"])
    raise ModelFileError(f"checkpoint names an unknown module type {t!r}")


def rebuild(arch: str, specs: dict, num_classes: int):
    model = build_model(arch, num_classes)
    for name, spec in specs.items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, _make_module(spec))
    return model


def save_checkpoint(path, model, meta: ModelMeta, extra_state: dict | None = None) -> None:
    """Write an edgeres checkpoint atomically (temp file, then rename)."""
    import torch

    from edgeres.utils import atomic_path

    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "version": 1,
        "arch": meta.arch,
        "classes": list(meta.classes),
        "preprocess": dict(meta.preprocess),
        "data_hash": meta.data_hash,
        "data_root": meta.data_root,
        "sparsity": meta.sparsity,
        "modules": module_specs(model),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": dict(meta.extra),
    }
    if extra_state:
        ckpt.update(extra_state)
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)


def _strip_prefix(sd: dict) -> dict:
    for prefix in ("module.", "model.", "_orig_mod."):
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def infer_arch(sd: dict) -> str:
    """Which torchvision ResNet a state dict belongs to, from its block counts."""
    if "fc.weight" not in sd or "conv1.weight" not in sd:
        raise ModelFileError("state dict is not a torchvision ResNet (no conv1.weight / fc.weight)")
    bottleneck = any(k.endswith("conv3.weight") for k in sd)
    blocks3 = len({k.split(".")[1] for k in sd if k.startswith("layer3.")})
    table = {(False, 2): "resnet18", (False, 6): "resnet34", (True, 6): "resnet50", (True, 23): "resnet101"}
    arch = table.get((bottleneck, blocks3))
    if arch is None:
        raise ModelFileError(f"state dict looks like a ResNet with {blocks3} blocks in layer3, which edgeres does not know")
    return arch


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.split("/", 1)[-1].startswith("code/") for n in z.namelist())


def _classes_for(n: int) -> list:
    return [f"class_{i}" for i in range(n)]


def load_model(path, trust_model: bool = False, num_classes: int | None = None, arch: str | None = None,
               classes: list | None = None) -> LoadedModel:
    """Load any supported model file onto the CPU, in eval mode.

    Formats: edgeres checkpoint; bare torchvision ResNet state dict (class count from ``fc``); TorchScript;
    a whole pickled ``nn.Module`` only with ``trust_model`` (pickle can run arbitrary code).
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist")
    if _is_torchscript(path):
        try:
            model = torch.jit.load(str(path), map_location="cpu")
        except Exception as e:
            raise ModelFileError(f"{path} looks like TorchScript but does not load ({e.__class__.__name__}); re-export it with torch.jit.save") from None
        fc = getattr(model, "fc", None)
        n = num_classes or (fc.weight.shape[0] if fc is not None and hasattr(fc, "weight") else None)
        meta = ModelMeta(arch=arch or "torchscript", classes=classes or _classes_for(n or 0), source_format="torchscript")
        return LoadedModel(model.eval(), meta)
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds here
        msg = str(e)
        # a real pickled object names the class it wants ("Unsupported global: GLOBAL pkg.Class");
        # anything else is a damaged or foreign file
        if "Unsupported global" in msg or "GLOBAL" in msg:
            if not trust_model:
                raise ModelFileError(
                    f"{path} is a pickled Python object, not plain weights; unpickling it can run arbitrary code. "
                    "Re-save it with torch.save(model.state_dict(), ...) or, if you trust its source, pass --trust-model"
                ) from None
            try:
                obj = torch.load(str(path), map_location="cpu", weights_only=False)
            except Exception as e2:  # noqa: BLE001
                raise ModelFileError(f"{path} could not be unpickled ({e2.__class__.__name__}: {e2})") from None
        else:
            raise ModelFileError(f"{path} is not a readable PyTorch model file (corrupt or not a checkpoint): {e.__class__.__name__}") from None
    return _from_object(obj, path, num_classes, arch, classes)


def _from_object(obj, path: Path, num_classes, arch, classes) -> LoadedModel:
    import torch.nn as nn

    if isinstance(obj, nn.Module):
        fc = getattr(obj, "fc", None)
        n = fc.out_features if isinstance(fc, nn.Linear) else num_classes
        _check_classes(path, n, num_classes)
        meta = ModelMeta(arch=arch or type(obj).__name__.lower(), classes=classes or _classes_for(n or 0), source_format="pickled-module")
        return LoadedModel(obj.eval(), meta)
    if not isinstance(obj, dict):
        raise ModelFileError(f"{path} holds a {type(obj).__name__}, not a model or state dict")
    if obj.get("format") == CHECKPOINT_FORMAT:
        ckpt_classes = list(obj["classes"])
        _check_classes(path, len(ckpt_classes), num_classes)
        try:
            model = rebuild(obj["arch"], obj.get("modules", {}), len(ckpt_classes))
            model.load_state_dict(obj["state_dict"])
        except (RuntimeError, KeyError) as e:
            raise ModelFileError(f"{path} is an edgeres checkpoint whose weights do not fit its architecture: {str(e).splitlines()[0]}") from None
        meta = ModelMeta(arch=obj["arch"], classes=ckpt_classes, preprocess=dict(obj.get("preprocess") or {}),
                         data_hash=obj.get("data_hash"), data_root=obj.get("data_root"), sparsity=obj.get("sparsity"),
                         source_format="edgeres", extra=dict(obj.get("extra") or {}))
        return LoadedModel(model.eval(), meta)
    sd = obj
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj.get(key), dict):
            sd = obj[key]
            break
    sd = _strip_prefix(sd)
    if not sd or not all(hasattr(v, "shape") for v in sd.values()):
        raise ModelFileError(f"{path} is a dict but not a state dict of tensors")
    found_arch = infer_arch(sd)
    if arch and arch != found_arch:
        raise ModelFileError(f"{path} holds a {found_arch} state dict, not {arch}")
    n = int(sd["fc.weight"].shape[0])
    _check_classes(path, n, num_classes)
    model = build_model(found_arch, n)
    try:
        model.load_state_dict(sd)
    except RuntimeError as e:
        raise ModelFileError(f"{path}: weights do not fit a torchvision {found_arch}: {str(e).splitlines()[0]}") from None
    return LoadedModel(model.eval(), ModelMeta(arch=found_arch, classes=classes or _classes_for(n), source_format="state-dict"))


def _check_classes(path, found, wanted) -> None:
    if wanted is not None and found is not None and int(found) != int(wanted):
        raise ModelFileError(f"{path} has {found} output classes but {wanted} were asked for (--num-classes); use a model trained for {wanted} classes")


def count_params(model) -> int:
    return int(sum(p.numel() for p in model.parameters()))
