"""timm ResNets (an optional extra: ``pip install 'edgeres[timm]'``): name a model, rebuild it, recognise its weights.

timm's plain ``resnet50`` (including the a1/a2/a3 recipes' weights) has torchvision's parameter names and shapes, so
its state dicts load as a torchvision ResNet50 without timm. The variants (``resnet50d``'s deep stem and pooled
shortcut, ``seresnet50``'s squeeze-excitation, ``resnext50_32x4d``'s groups, ...) are recognised by building each
candidate on the ``meta`` device (no memory, no weights) and comparing every key and shape.
"""

from __future__ import annotations

from edgeres.errors import ModelFileError

INSTALL_HINT = "install the timm extra: pip install 'edgeres[timm]'"
PREFIX = "timm:"

# the ResNet family members whose state dicts are recognised, most common first
CANDIDATES = (
    "resnet50d", "seresnet50", "resnext50_32x4d", "seresnext50_32x4d", "ecaresnet50d", "wide_resnet50_2",
    "resnet18d", "resnet26d", "resnet34d", "resnet101d", "resnet152d", "seresnet101", "resnext101_32x8d",
    "resnet18", "resnet26", "resnet34", "resnet50", "resnet101", "resnet152",
)


def have_timm() -> bool:
    try:
        import timm  # noqa: F401
    except ImportError:
        return False
    return True


def require_timm(where) -> None:
    if not have_timm():
        raise ModelFileError(f"{where} is a timm model but timm is not installed; {INSTALL_HINT}")


def timm_name(model) -> str | None:
    """timm's registered name of ``model`` (``resnet50d``), or None when it is not a timm model."""
    if not type(model).__module__.startswith("timm."):
        return None
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    name = cfg.get("architecture") if isinstance(cfg, dict) else None
    return name or None


def create(name: str, num_classes: int, where="the model"):
    require_timm(where)
    import timm

    try:
        return timm.create_model(name, pretrained=False, num_classes=num_classes)
    except Exception as e:  # noqa: BLE001 - an unknown name, or a timm too old for it
        raise ModelFileError(f"{where} names timm model {name!r}, which this timm ({timm.__version__}) cannot build: "
                             f"{e.__class__.__name__}") from None


def looks_like_timm(sd: dict) -> bool:
    """Key patterns only timm's ResNets have: a deep stem (conv1.0), SE/ECA attention, a pooled shortcut."""
    return any(k.startswith("conv1.0.") or ".se." in k or ".eca." in k or ".downsample.1.weight" in k and
               sd[k].dim() == 4 for k in sd)


def match_state_dict(sd: dict, num_classes: int) -> str | None:
    """The candidate whose parameter names and shapes are exactly those of ``sd``, or None."""
    import timm
    import torch

    want = {k: tuple(v.shape) for k, v in sd.items()}
    for name in CANDIDATES:
        try:
            with torch.device("meta"):
                m = timm.create_model(name, pretrained=False, num_classes=num_classes)
        except Exception:  # noqa: BLE001, S112 - not in this timm version
            continue
        have = {k: tuple(v.shape) for k, v in m.state_dict().items()}
        if have == want:
            return name
    return None
