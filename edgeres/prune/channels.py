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
    accept_shortfall: bool = False  # a target that cannot be reached: prune to the best reachable (else: stop)

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

    from edgeres.prune.tp_rules import make_pruner

    ignored = kept_layers(model, cfg.keep_stem, size)
    return make_pruner(model, torch.randn(1, 3, size, size), _importance(cfg.importance), ratio, ignored,
                       cfg.round_to or 8, cfg.iterative_steps, cfg.global_pruning)


def _taylor_grads(model, batches) -> None:
    """Gradients for Taylor importance, in train mode (batch statistics, as in training). Measuring leaves the model
    as it was: BatchNorm's running statistics, which train mode updates, are put back afterwards."""
    import torch.nn.functional as F

    buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
    model.zero_grad()
    model.train()
    try:
        for x, y in batches:
            F.cross_entropy(model(x), y).backward()
    finally:
        model.eval()
        for k, v in model.named_buffers():
            v.copy_(buffers[k])


def _macs(model, size: int) -> int:
    return _pruned_macs_params(model, size)[0]


def _pruned_macs_params(model, size: int) -> tuple:
    """(MACs, params) of a (pruned) model; a network pruning left unable to run is said in one line."""
    from edgeres.metrics import torch_macs_params

    try:
        return torch_macs_params(model, size)
    except RuntimeError as e:
        raise EdgeresError(f"pruning left {type(model).__name__} unable to run ({str(e).splitlines()[0][:200]}): "
                           "its channels are coupled through an operation the pruner cannot follow. Please report "
                           "this with the model's architecture; --ratio/--target-macs cannot prune it as it is") from None


def macs_fraction_at(model, cfg: PruneConfig, size: int, ratio: float, base: int | None = None) -> float:
    """The fraction of ``model``'s MACs left after one-shot pruning of a copy at ``ratio`` (magnitude importance for
    Taylor, which needs gradients)."""
    one = copy.copy(cfg)
    one.iterative_steps = 1
    if one.importance == "taylor":  # magnitude proxy for the search; Taylor is used for the real pruning
        one.importance = "l2"
    trial = copy.deepcopy(model)
    _make_pruner(trial, one, ratio, size).step()
    return _macs(trial, size) / (base or _macs(model, size))


def search_macs(model, cfg: PruneConfig, size: int, target_fraction: float, max_ratio: float = 0.95) -> tuple:
    """Binary-search the smallest channel ratio whose pruned model keeps at most ``target_fraction`` of the MACs.

    Returns (ratio, met, fraction): ``met`` False when even ``max_ratio`` keeps more (then ratio is ``max_ratio`` and
    fraction what it keeps: the best reachable).
    """
    from edgeres.models.shortcuts import rewrite_shortcuts

    rewrite_shortcuts(model, size)
    base = _macs(model, size)
    lo, hi, best = 0.0, max_ratio, None
    for _ in range(8):
        mid = (lo + hi) / 2
        f = macs_fraction_at(model, cfg, size, mid, base)
        if f > target_fraction:
            lo = mid
        else:
            hi, best = mid, f
    if best is not None:
        return hi, True, best
    f = macs_fraction_at(model, cfg, size, max_ratio, base)
    return max_ratio, f <= target_fraction, f


def ratio_for_macs(model, cfg: PruneConfig, size: int, target_fraction: float) -> float:
    """The channel ratio whose pruned model keeps about ``target_fraction`` of the MACs (see ``search_macs``)."""
    return search_macs(model, cfg, size, target_fraction)[0]


def channel_prune(model, cfg: PruneConfig, size: int, grad_batches=None, between_steps=None) -> dict:
    """Prune ``model`` in place. ``between_steps(i)`` (e.g. fine-tuning) runs after each of the iterative steps.

    Option-A shortcuts are first rewritten into channel selections the pruner follows (edgeres.models.shortcuts).
    Returns {"ratio", "macs_before", "macs_after", "params_before", "params_after", "rewritten"}.
    """
    from edgeres.metrics import torch_macs_params
    from edgeres.models.shortcuts import ChannelSelect, rewrite_shortcuts

    check_prunable(model, size)
    rewrite_shortcuts(model, size)
    rewritten = [n for n, m in model.named_modules() if isinstance(m, ChannelSelect)]  # here or by the MACs search
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
    macs1, params1 = _pruned_macs_params(model, size)
    return {"ratio": ratio, "macs_before": macs0, "macs_after": macs1, "params_before": params0, "params_after": params1,
            "rewritten": rewritten}
