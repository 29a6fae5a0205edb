"""Reading every model file a user may bring, recognised by its content, never by its extension (``ACCEPTED``):
edgeres checkpoints, torchvision and timm state dicts (bare or wrapped), TorchScript, torch.export programs, and
pickled modules only with ``--trust-model``."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

from edgeres.errors import ModelFileError, require_path
from edgeres.models.build import build_model, checkpoint_arch, infer_arch, rebuild
from edgeres.models.meta import ACCEPTED, CHECKPOINT_FORMAT, PICKLED_ARCH, PROGRAM_ARCH, LoadedModel, ModelMeta
from edgeres.models.zipguard import check_zip_sizes

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
    arbitrary code). Every parameter and buffer is checked once for NaN/Inf (:func:`check_finite`).
    """
    lm = _load(Path(path), trust_model, num_classes, arch, classes)
    check_finite(lm.model, path)
    return lm


def check_finite(model, path) -> None:
    """ModelFileError naming the first parameter or buffer of ``model`` that holds NaN or Inf: such a model gives a
    top-1 from the argmax of NaN and fails every later check with a misleading reason (export parity, reload)."""
    import torch

    named = getattr(model, "named_parameters", None)
    if named is None:
        return
    for kind, items in (("parameter", model.named_parameters()), ("buffer", model.named_buffers())):
        for name, t in items:
            if not torch.is_tensor(t) or not t.is_floating_point():
                continue
            bad = ~torch.isfinite(t.detach())
            if bool(bad.any()):
                n_nan = int(torch.isnan(t.detach()).sum())
                what = "NaN" if n_nan == int(bad.sum()) else "Inf" if n_nan == 0 else "NaN and Inf"
                raise ModelFileError(f"{path}: {kind} {name} holds {what} ({int(bad.sum())} of {t.numel()} values): "
                                     "the weights are damaged (a training run that diverged?); use an earlier "
                                     "checkpoint or retrain")


def _load(path: Path, trust_model: bool, num_classes, arch, classes) -> LoadedModel:
    import torch

    from edgeres.models.program import is_pt2, load_program

    path = Path(path)
    require_path(path, "file", "model file", error=ModelFileError)
    check_zip_sizes(path, path)  # a compressed bomb is refused from its declared sizes, before any storage is read
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
    from edgeres.models.pickle_scan import unsafe_globals

    if not is_model_file(path):
        names = unsafe_globals(path)  # a protocol 0/1 pickle does not start with 0x80
        if names and not trust_model:
            raise _refused(path, names[0])
        if not names:
            raise ModelFileError(f"{path} is not a model file (neither a zip nor a pickle inside); {ACCEPTED}")
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds here
        msg = str(e)
        # a real pickled object names what it wants: torch says so for some protocols ("Unsupported global: GLOBAL
        # pkg.Class"); for the others the pickle's opcodes say it (read, not run); anything else is damaged or foreign
        found = re.search(r"GLOBAL ([\w.]+)", msg)
        names = [found.group(1)] if found else ([] if "Unsupported global" in msg else unsafe_globals(path))
        if not (names or "Unsupported global" in msg):
            raise ModelFileError(f"{path} is not a readable PyTorch model file (corrupt or not a checkpoint: "
                                 f"{e.__class__.__name__}); {ACCEPTED}") from None
        if not trust_model:
            raise _refused(path, names[0] if names else None) from None
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=False)
        except Exception as e2:  # noqa: BLE001
            raise ModelFileError(f"{path} could not be unpickled ({e2.__class__.__name__}: {e2}); the classes it "
                                 "names must be importable here") from None
    return _from_object(obj, path, num_classes, arch, classes, trust_model)


def _refused(path, name) -> ModelFileError:
    what = f" ({name})" if name else ""
    return ModelFileError(f"{path}: refused for safety: it is a pickled Python object{what}, not plain weights, and "
                          "unpickling it can run arbitrary code. Re-save it with torch.save(model.state_dict(), ...) "
                          "or, only if you trust its source, pass --trust-model")


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
    import edgeres.models.timm_models as timm_models

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
