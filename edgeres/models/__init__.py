"""Model files: build torchvision ResNets, save edgeres checkpoints, load every format a user may bring.

An edgeres checkpoint is a plain dict (tensors, strings, numbers) that loads with ``torch.load(weights_only=True)``:

    {"format": "edgeres-checkpoint", "version": 1, "arch": "resnet50", "classes": [...], "preprocess": {...},
     "data_hash": "...", "modules": {name: constructor args of each Conv2d/BatchNorm2d/Linear},
     "state_dict": {...}, "sparsity": None | "2:4", "requires": [...], "loader": "...", "extra": {...}}

``modules`` is what rebuilds a pruned network whose shapes no longer match its family's defaults. ``arch`` says how
the network itself is rebuilt, ``requires`` what that needs and ``loader`` how, in words:

- ``resnet18`` ... ``resnet101``: torchvision (always installed);
- ``timm:NAME`` (``timm:resnet50d``): ``timm.create_model(NAME)``, then the recorded module shapes (the timm extra);
- ``exported-program``: any other network, as its ``torch.export`` program (``program``: the ``.pt2`` bytes as a
  uint8 tensor, weights included), which reloads with torch alone, without the user's Python class; inference only;
- ``pickled-module``: only when the user passed ``--trust-model`` and the network cannot be exported; reloading it
  needs ``--trust-model`` and the user's class importable.

Files brought by users are recognised by their content, never by their extension (see ``ACCEPTED``).
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from edgeres.errors import EdgeresError, ModelFileError

ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101")
CHECKPOINT_FORMAT = "edgeres-checkpoint"
PROGRAM_ARCH = "exported-program"
PICKLED_ARCH = "pickled-module"
ACCEPTED = ("accepted: an edgeres checkpoint; a state dict of a torchvision or timm ResNet (bare, or under "
            "state_dict / model / model_state_dict, with DDP 'module.' or Lightning 'model.' prefixes: .pth, .pth.tar, "
            ".ckpt); TorchScript (.ts, .torchscript); a torch.export program (.pt2); a pickled nn.Module "
            "(with --trust-model)")


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
    save_as: str | None = None  # the checkpoint form chosen for this model (see save_checkpoint); not stored

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
    from torch import nn

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


def _reshape(module, spec: dict, name: str) -> None:
    """Give ``module`` the shapes of ``spec`` in place: its class (a timm subclass too) is kept; the weights are
    placeholders until ``load_state_dict``."""
    import torch
    from torch import nn

    t, P = spec["type"], nn.Parameter
    if t == "Conv2d" and isinstance(module, nn.Conv2d):
        module.in_channels, module.out_channels, module.groups = spec["in"], spec["out"], spec["groups"]
        module.kernel_size, module.stride = tuple(spec["kernel"]), tuple(spec["stride"])
        module.padding, module.dilation = tuple(spec["padding"]), tuple(spec["dilation"])
        module.weight = P(torch.empty(spec["out"], spec["in"] // spec["groups"], *spec["kernel"]))
        module.bias = P(torch.empty(spec["out"])) if spec["bias"] else None
    elif t == "BatchNorm2d" and isinstance(module, nn.BatchNorm2d):
        n = spec["num"]
        module.num_features, module.eps, module.momentum = n, spec["eps"], spec["momentum"]
        if module.affine:
            module.weight, module.bias = P(torch.ones(n)), P(torch.zeros(n))
        if module.track_running_stats:
            module.running_mean, module.running_var = torch.zeros(n), torch.ones(n)
    elif t == "Linear" and isinstance(module, nn.Linear):
        module.in_features, module.out_features = spec["in"], spec["out"]
        module.weight = P(torch.empty(spec["out"], spec["in"]))
        module.bias = P(torch.empty(spec["out"])) if spec["bias"] else None
    else:
        raise ModelFileError(f"checkpoint records a {t} at {name!r} where the rebuilt network has a {type(module).__name__}")


def apply_specs(model, specs: dict):
    """Reshape ``model``'s Conv2d/BatchNorm2d/Linear layers to the recorded (pruned) shapes, in place."""
    for name, spec in specs.items():
        try:
            module = model.get_submodule(name)
        except AttributeError:
            raise ModelFileError(f"checkpoint records a module {name!r} that the rebuilt network does not have") from None
        _reshape(module, spec, name)
    return model


def rebuild(arch: str, specs: dict, num_classes: int):
    from edgeres.models import timm_models

    if arch.startswith(timm_models.PREFIX):
        model = timm_models.create(arch[len(timm_models.PREFIX):], num_classes, "the checkpoint")
    else:
        model = build_model(arch, num_classes)
    return apply_specs(model, specs)


def checkpoint_arch(model, meta: ModelMeta | None = None) -> str:
    """How ``model`` is written: its torchvision name, ``timm:NAME``, or ``exported-program`` for any other class."""
    from edgeres.models.timm_models import PREFIX, timm_name

    if type(model).__module__ == "torchvision.models.resnet":
        if meta is not None and meta.arch in ARCHS:
            return meta.arch
        try:
            return infer_arch(model.state_dict())
        except ModelFileError:
            pass
    name = timm_name(model)
    if name is not None:
        return PREFIX + name
    return PROGRAM_ARCH


def _program_size(meta: ModelMeta) -> int:
    try:
        return int((meta.preprocess or {}).get("size") or 64)
    except (TypeError, ValueError):
        return 64


def save_checkpoint(path, model, meta: ModelMeta, extra_state: dict | None = None, arch: str | None = None,
                    program: bytes | None = None) -> str:
    """Write an edgeres checkpoint atomically (temp file, then rename); returns the ``arch`` it was written as.

    ``arch`` forces a form (``pickled-module`` is only ever written when a caller holding ``--trust-model`` asks).
    ``program`` reuses ``.pt2`` bytes already exported from this very model.
    """
    import torch

    from edgeres.utils import atomic_path

    arch = arch or meta.save_as or checkpoint_arch(model, meta)
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "version": 1,
        "arch": arch,
        "classes": list(meta.classes),
        "preprocess": dict(meta.preprocess),
        "data_hash": meta.data_hash,
        "data_root": meta.data_root,
        "sparsity": meta.sparsity,
        "modules": module_specs(model),
        "extra": dict(meta.extra),
    }
    if arch == PROGRAM_ARCH:
        from edgeres.models.program import export_program

        if program is None:
            try:
                program = export_program(model, _program_size(meta))
            except Exception as e:  # noqa: BLE001 - torch.export refuses many Python constructs
                raise EdgeresError(
                    f"cannot write {path}: {type(model).__name__} is neither a torchvision nor a timm ResNet, and "
                    f"torch.export cannot capture it ({e.__class__.__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                    "pass --trust-model to write it as a pickled module (reloading then needs --trust-model and your class)"
                ) from None
        ckpt["program"] = torch.frombuffer(bytearray(program), dtype=torch.uint8)
        ckpt["requires"] = ["torch>=2.6 (torch.export)"]
        ckpt["loader"] = "torch.export.load(program).module(): inference only, no Python class needed"
    elif arch == PICKLED_ARCH:
        ckpt["module"] = model
        ckpt["requires"] = [f"--trust-model and the class {type(model).__module__}.{type(model).__qualname__} importable"]
        ckpt["loader"] = "torch.load(weights_only=False): a pickled nn.Module"
    else:
        ckpt["state_dict"] = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        if arch.startswith("timm:"):
            import timm

            ckpt["requires"] = [f"timm>={timm.__version__.split('+')[0]}"]
            ckpt["loader"] = (f"timm.create_model({arch[5:]!r}, pretrained=False, num_classes={len(meta.classes)}), "
                              "layers reshaped to 'modules', then load_state_dict")
        else:
            ckpt["requires"] = ["torchvision"]
            ckpt["loader"] = f"torchvision.models.{arch}, layers reshaped to 'modules', then load_state_dict"
    if extra_state:
        ckpt.update(extra_state)
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)
    return arch


# ------------------------------------------------------------------------------------------------ reading
_PREFIXES = ("module.", "model.", "_orig_mod.", "net.")


def _strip_prefix(sd: dict) -> dict:
    for prefix in _PREFIXES:
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def _model_subset(sd: dict) -> dict:
    """A Lightning module's ``state_dict`` holds the network under ``model.`` next to other tensors (a loss's
    weights, a teacher): keep the network's part."""
    sd = _strip_prefix(sd)
    for prefix in ("model.", "net."):
        sub = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        if sub and len(sub) >= len(sd) / 2:
            return _strip_prefix(sub)
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


def is_model_file(path) -> bool:
    """By content: a zip (torch.save, TorchScript, torch.export) or a legacy pickle stream."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return head[:2] == b"PK" or head[:1] == b"\x80"


def _classes_for(n: int) -> list:
    return [f"class_{i}" for i in range(n)]


def _safe_globals():
    """Plain-data classes that training scripts put beside the weights (timm's train.py saves its argparse
    Namespace): allowed under weights_only, since unpickling them runs no code of the file's choosing."""
    import argparse

    return [argparse.Namespace]


def load_model(path, trust_model: bool = False, num_classes: int | None = None, arch: str | None = None,
               classes: list | None = None) -> LoadedModel:
    """Load any supported model file onto the CPU, in eval mode. The format is found from the content.

    Formats: edgeres checkpoint; a torchvision or timm ResNet state dict (bare or wrapped, class count from its head);
    TorchScript; a torch.export program; a whole pickled ``nn.Module`` only with ``trust_model`` (pickle can run
    arbitrary code).
    """
    import torch

    from edgeres.models.program import is_pt2, load_program

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist")
    if is_pt2(path):
        model = load_program(path.read_bytes(), path, trust_model)
        from edgeres.models.graph import num_outputs

        n = num_classes or num_outputs(model)
        meta = ModelMeta(arch=arch or PROGRAM_ARCH, classes=classes or _classes_for(n or 0), source_format="torch.export")
        return LoadedModel(model, meta)
    if _is_torchscript(path):
        try:
            model = torch.jit.load(str(path), map_location="cpu")
        except Exception as e:  # noqa: BLE001
            raise ModelFileError(f"{path} looks like TorchScript but does not load ({e.__class__.__name__}); re-export it with torch.jit.save") from None
        from edgeres.models.graph import num_outputs

        fc = getattr(model, "fc", None)
        n = num_classes or (fc.weight.shape[0] if fc is not None and hasattr(fc, "weight") else num_outputs(model.eval()))
        meta = ModelMeta(arch=arch or "torchscript", classes=classes or _classes_for(n or 0), source_format="torchscript")
        return LoadedModel(model.eval(), meta)
    if not is_model_file(path):
        raise ModelFileError(f"{path} is not a model file (neither a zip nor a pickle inside); {ACCEPTED}")
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds here
        msg = str(e)
        # a real pickled object names the class it wants ("Unsupported global: GLOBAL pkg.Class");
        # anything else is a damaged or foreign file
        if "Unsupported global" in msg or "GLOBAL" in msg:
            if not trust_model:
                found = re.search(r"GLOBAL ([\w.]+)", msg)
                what = f" ({found.group(1)})" if found else ""
                raise ModelFileError(
                    f"{path} is a pickled Python object{what}, not plain weights; unpickling it can run arbitrary code. "
                    "Re-save it with torch.save(model.state_dict(), ...) or, if you trust its source, pass --trust-model"
                ) from None
            try:
                obj = torch.load(str(path), map_location="cpu", weights_only=False)
            except Exception as e2:  # noqa: BLE001
                raise ModelFileError(f"{path} could not be unpickled ({e2.__class__.__name__}: {e2}); the classes it "
                                     "names must be importable here") from None
        else:
            raise ModelFileError(f"{path} is not a readable PyTorch model file (corrupt or not a checkpoint: "
                                 f"{e.__class__.__name__}); {ACCEPTED}") from None
    return _from_object(obj, path, num_classes, arch, classes, trust_model)


def _module_arch(model) -> str:
    try:
        return checkpoint_arch(model)
    except Exception:  # noqa: BLE001
        return type(model).__name__.lower()


def _from_module(obj, path: Path, num_classes, arch, classes, source: str) -> LoadedModel:
    from edgeres.models.graph import num_outputs

    obj.eval()
    n = num_outputs(obj)
    _check_classes(path, n, num_classes)
    found = _module_arch(obj)
    meta = ModelMeta(arch=arch or found, classes=classes or _classes_for(n or num_classes or 0), source_format=source)
    return LoadedModel(obj.eval(), meta)


def _from_object(obj, path: Path, num_classes, arch, classes, trust_model: bool = False) -> LoadedModel:
    from torch import nn

    if isinstance(obj, nn.Module):
        return _from_module(obj, path, num_classes, arch, classes, "pickled-module")
    if not isinstance(obj, dict):
        raise ModelFileError(f"{path} holds a {type(obj).__name__}, not a model or state dict; {ACCEPTED}")
    if obj.get("format") == CHECKPOINT_FORMAT:
        return _from_checkpoint(obj, path, num_classes, trust_model)
    sd = obj
    for key in ("state_dict", "model_state_dict", "model", "state_dict_ema", "model_ema"):
        val = obj.get(key)
        if isinstance(val, nn.Module):  # {"model": model, "epoch": ...} (only reachable with --trust-model)
            return _from_module(val, path, num_classes, arch, classes, "pickled-module")
        if isinstance(val, dict):
            sd = val
            break
    sd = _model_subset(sd)
    if not sd or not all(hasattr(v, "shape") for v in sd.values()):
        raise ModelFileError(f"{path} is a dict but not a state dict of tensors; {ACCEPTED}")
    try:
        found_arch = infer_arch(sd)
    except ModelFileError as e:
        return _from_timm_state_dict(sd, path, num_classes, classes, str(e))
    if arch and arch != found_arch:
        raise ModelFileError(f"{path} holds a {found_arch} state dict, not {arch}")
    n = int(sd["fc.weight"].shape[0])
    _check_classes(path, n, num_classes)
    model = build_model(found_arch, n)
    try:
        model.load_state_dict(sd)
    except RuntimeError as e:
        return _from_timm_state_dict(sd, path, num_classes, classes,
                                     f"weights do not fit a torchvision {found_arch}: {str(e).splitlines()[0]}")
    return LoadedModel(model.eval(), ModelMeta(arch=found_arch, classes=classes or _classes_for(n), source_format="state-dict"))


def _from_timm_state_dict(sd: dict, path: Path, num_classes, classes, why: str) -> LoadedModel:
    """A state dict that is no torchvision ResNet: a timm one, matched key by key and shape by shape."""
    from edgeres.models import timm_models

    head = sd.get("fc.weight")
    if head is None or getattr(head, "dim", lambda: 0)() != 2:
        raise ModelFileError(f"{path}: {why}; {ACCEPTED}")
    n = int(head.shape[0])
    if not timm_models.have_timm():
        if timm_models.looks_like_timm(sd):
            raise ModelFileError(f"{path} looks like a timm ResNet state dict (deep stem / attention / pooled shortcut) "
                                 f"but timm is not installed; {timm_models.INSTALL_HINT}")
        raise ModelFileError(f"{path}: {why}; {ACCEPTED}")
    name = timm_models.match_state_dict(sd, n)
    if name is None:
        raise ModelFileError(f"{path}: {why}, nor does it match a timm ResNet "
                             f"({', '.join(timm_models.CANDIDATES[:6])}, ...); {ACCEPTED}")
    _check_classes(path, n, num_classes)
    model = timm_models.create(name, n, path)
    model.load_state_dict(sd)
    return LoadedModel(model.eval(), ModelMeta(arch=timm_models.PREFIX + name, classes=classes or _classes_for(n),
                                               source_format="timm-state-dict"))


def _from_checkpoint(obj: dict, path: Path, num_classes, trust_model: bool) -> LoadedModel:
    ckpt_classes = list(obj["classes"])
    _check_classes(path, len(ckpt_classes), num_classes)
    arch = obj["arch"]
    if arch == PROGRAM_ARCH:
        from edgeres.models.program import load_program

        model = load_program(obj["program"].numpy().tobytes(), path, trust_model)
    elif arch == PICKLED_ARCH:  # torch.load only got here with trust_model
        model = obj["module"]
    else:
        try:
            model = rebuild(arch, obj.get("modules", {}), len(ckpt_classes))
            model.load_state_dict(obj["state_dict"])
        except (RuntimeError, KeyError) as e:
            raise ModelFileError(f"{path} is an edgeres checkpoint whose weights do not fit its architecture {arch}: "
                                 f"{str(e).splitlines()[0]}") from None
    meta = ModelMeta(arch=arch, classes=ckpt_classes, preprocess=dict(obj.get("preprocess") or {}),
                     data_hash=obj.get("data_hash"), data_root=obj.get("data_root"), sparsity=obj.get("sparsity"),
                     source_format="edgeres", extra=dict(obj.get("extra") or {}))
    return LoadedModel(model.eval(), meta)


def _check_classes(path, found, wanted) -> None:
    if wanted is not None and found is not None and int(found) != int(wanted):
        raise ModelFileError(f"{path} has {found} output classes but {wanted} were asked for (--num-classes); use a model trained for {wanted} classes")




def num_outputs(model, size: int = 32) -> int | None:
    """Logits per image, whatever the head is called (see ``edgeres.models.graph``)."""
    from edgeres.models.graph import num_outputs as _n

    return _n(model, size)
