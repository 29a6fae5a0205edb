"""Building networks: torchvision ResNets by name, the layer shapes that rebuild a pruned one exactly, and which form
(torchvision, timm, torch.export program) a network is written as."""

from __future__ import annotations

from edgeres.errors import ModelFileError
from edgeres.models.meta import ARCHS, PROGRAM_ARCH, ModelMeta


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
    import edgeres.models.timm_models as timm_models

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
