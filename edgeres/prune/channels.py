"""Structured channel pruning with Torch-Pruning's dependency graph: channels tied together by residual additions are
pruned together, so the network stays valid and the channels are physically removed (the pruned ResNet is smaller and
faster in every runtime). By a ratio, or by a fraction of the MACs to keep."""

from __future__ import annotations

import copy
from dataclasses import dataclass

from edgeres.errors import EdgeresError

IMPORTANCES = ("l1", "l2", "bn", "taylor")


@dataclass
class PruneConfig:
    ratio: float | None = 0.3  # channel ratio removed per layer (or globally)
    target_macs: float | None = None  # instead of ratio: keep this fraction of the original MACs
    importance: str = "l2"
    global_pruning: bool = False
    round_to: int | None = None  # channel counts rounded to this multiple; None: the target's channel_multiple (else 8)
    iterative_steps: int = 1
    keep_stem: bool = True
    sparsity: str | None = None  # None or "2:4"
    seed: int = 0

    def validate(self) -> None:
        if self.ratio is not None and self.target_macs is not None:
            raise EdgeresError("give either --ratio or --target-macs, not both")
        if self.ratio is not None and not 0.0 < self.ratio < 1.0:
            raise EdgeresError(f"pruning ratio {self.ratio} must be between 0 and 1 (exclusive), e.g. --ratio 0.3")
        if self.target_macs is not None and not 0.0 < self.target_macs < 1.0:
            raise EdgeresError(f"--target-macs {self.target_macs} must be a fraction of the original MACs in (0, 1), e.g. 0.5")
        if self.ratio is None and self.target_macs is None and self.sparsity is None:
            raise EdgeresError("nothing to do: give --ratio, --target-macs or --sparsity 2:4")
        if self.importance not in IMPORTANCES:
            raise EdgeresError(f"unknown importance {self.importance!r}; choose one of {', '.join(IMPORTANCES)}")
        if self.sparsity not in (None, "2:4"):
            raise EdgeresError(f"unknown sparsity pattern {self.sparsity!r}; only 2:4 is supported")
        if self.iterative_steps < 1:
            raise EdgeresError("--iterative-steps must be >= 1")


def check_prunable(model, size: int = 64):
    """Any ResNet-like network Torch-Pruning can trace: a Linear classifier on the logits and convolutions before it.

    The classifier and the stem are found from the traced forward (``edgeres.models.graph``), not from attribute names;
    returns that ``Anatomy``. TorchScript and exported programs are refused: their layers are frozen into a graph.
    """
    import torch
    from torch import nn

    from edgeres.models.graph import trace_anatomy
    from edgeres.models.program import ExportedModule

    if isinstance(model, (torch.jit.ScriptModule, ExportedModule)):
        raise EdgeresError("the model is a TorchScript / torch.export program, whose layers cannot be pruned; "
                           "give its state dict, an edgeres checkpoint, or the pickled module (--trust-model)")
    if not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        raise EdgeresError("the model is not a ResNet the pruner understands (no convolutions); edgeres prunes "
                           "convolutional classifiers such as torchvision/timm ResNets and custom ResNets")
    try:
        anatomy = trace_anatomy(model, min(size, 64))
    except Exception as e:  # noqa: BLE001 - the user's forward failed on a plain image batch
        raise EdgeresError(f"the model does not run on a 1x3x{min(size, 64)}x{min(size, 64)} image batch "
                           f"({e.__class__.__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                           "it is not a ResNet the pruner understands") from None
    if anatomy.classifier is None:
        raise EdgeresError("the model is not a ResNet the pruner understands (no Linear classifier produces its "
                           "logits); edgeres prunes classifiers that end in a Linear layer")
    return anatomy


def _importance(name: str):
    import torch_pruning as tp

    return {
        "l1": lambda: tp.importance.GroupMagnitudeImportance(p=1),
        "l2": lambda: tp.importance.GroupMagnitudeImportance(p=2),
        "bn": lambda: tp.importance.BNScaleImportance(),
        "taylor": lambda: tp.importance.GroupTaylorImportance(),
    }[name]()


def kept_layers(model, keep_stem: bool = True, size: int = 64) -> list:
    """The layers never pruned: the classifier (its outputs are the classes) and, by default, the stem."""
    anatomy = check_prunable(model, size)
    names = [anatomy.classifier] + (list(anatomy.stem) if keep_stem else [])
    return [model.get_submodule(n) for n in names]


def _make_pruner(model, cfg: PruneConfig, ratio: float, size: int):
    import torch
    import torch_pruning as tp

    ignored = kept_layers(model, cfg.keep_stem, size)
    return tp.pruner.MetaPruner(
        model, torch.randn(1, 3, size, size), importance=_importance(cfg.importance), global_pruning=cfg.global_pruning,
        pruning_ratio=ratio, iterative_steps=cfg.iterative_steps, ignored_layers=ignored, round_to=cfg.round_to or 8,
        # an explicit forward: Torch-Pruning's default tries model(*inputs) under a bare `except:`, which would
        # swallow a Ctrl-C that lands there
        forward_fn=lambda m, x: m(x),
    )


def _taylor_grads(model, batches) -> None:
    import torch.nn.functional as F

    model.zero_grad()
    model.train()
    for x, y in batches:
        F.cross_entropy(model(x), y).backward()
    model.eval()


def _macs(model, size: int) -> int:
    from edgeres.metrics import torch_macs_params

    return torch_macs_params(model, size)[0]


def ratio_for_macs(model, cfg: PruneConfig, size: int, target_fraction: float) -> float:
    """Binary-search the channel ratio whose pruned model keeps about ``target_fraction`` of the MACs."""
    base = _macs(model, size)
    lo, hi = 0.0, 0.95
    for _ in range(8):
        mid = (lo + hi) / 2
        trial = copy.deepcopy(model)
        one = copy.copy(cfg)
        one.iterative_steps = 1
        p = _make_pruner(trial, one, mid, size)
        if cfg.importance == "taylor":  # magnitude proxy for the search; Taylor is used for the real pruning
            one.importance = "l2"
            p = _make_pruner(trial, one, mid, size)
        p.step()
        if _macs(trial, size) / base > target_fraction:
            lo = mid
        else:
            hi = mid
    return hi


def channel_prune(model, cfg: PruneConfig, size: int, grad_batches=None, between_steps=None) -> dict:
    """Prune ``model`` in place. ``between_steps(i)`` (e.g. fine-tuning) runs after each of the iterative steps.

    Returns {"ratio", "macs_before", "macs_after", "params_before", "params_after"}.
    """
    from edgeres.metrics import torch_macs_params

    check_prunable(model, size)
    model.eval()
    macs0, params0 = torch_macs_params(model, size)
    ratio = cfg.ratio if cfg.ratio is not None else ratio_for_macs(model, cfg, size, cfg.target_macs)
    pruner = _make_pruner(model, cfg, ratio, size)
    for i in range(cfg.iterative_steps):
        if cfg.importance == "taylor":
            if grad_batches is None:
                raise EdgeresError("Taylor importance needs training images (--data)")
            _taylor_grads(model, grad_batches())
        pruner.step()
        model.zero_grad(set_to_none=True)
        if between_steps is not None and i < cfg.iterative_steps - 1:
            between_steps(i)
    macs1, params1 = torch_macs_params(model, size)
    return {"ratio": ratio, "macs_before": macs0, "macs_after": macs1, "params_before": params0, "params_after": params1}
