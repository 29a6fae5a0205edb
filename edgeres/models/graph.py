"""Find a classifier's head and stem from its traced forward, not from attribute names.

The classifier is the last ``nn.Linear`` whose output is the model's output (the logits); the stem is the
convolution(s) that read the image itself. Both are found by running one small forward pass with hooks on every
Conv2d/Linear, so a head named ``fc``, ``linear``, ``head.fc`` or ``classifier`` and a deep (three-conv) stem are all
found the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Anatomy:
    classifier: str | None  # qualified name of the Linear producing the logits
    stem: list = field(default_factory=list)  # qualified names of the convolutions that read the input image
    num_outputs: int | None = None  # logits per image


def trace_anatomy(model, size: int = 32) -> Anatomy:
    """One forward pass (batch 1, ``size`` px, no grad, eval mode) with hooks; the model's mode is restored."""
    import torch
    from torch import nn

    x = torch.randn(1, 3, size, size)
    calls = []  # (name, module, input tensor, output tensor) in execution order
    hooks = []
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            hooks.append(m.register_forward_hook(
                lambda mod, inp, out, _n=name: calls.append((_n, mod, inp[0] if inp else None, out))))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            out = model(x)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    if isinstance(out, (tuple, list)):
        out = out[0]
    n_out = int(out.shape[1]) if hasattr(out, "shape") and out.dim() == 2 else None
    classifier = None
    linears = [(n, m, o) for n, m, _, o in calls if isinstance(m, nn.Linear)]
    for n, _m, o in reversed(linears):  # the Linear whose output *is* the logits
        if o is out:
            classifier = n
            break
    if classifier is None:  # something cheap follows it (a scale, a dropout in eval): the last Linear of that width
        for n, m, _o in reversed(linears):
            if n_out is not None and m.out_features == n_out:
                classifier = n
                break
    stem = [n for n, m, i, _ in calls if isinstance(m, nn.Conv2d) and i is x]
    return Anatomy(classifier=classifier, stem=stem, num_outputs=n_out)


def num_outputs(model, size: int = 32) -> int | None:
    """Logits per image: the classifier's width when it is a Linear, else one small forward pass's output width."""
    import torch

    try:
        return trace_anatomy(model, size).num_outputs
    except Exception:  # noqa: BLE001 - TorchScript and exported programs take no hooks: run them plainly
        try:
            with torch.no_grad():
                out = model(torch.randn(1, 3, size, size))
            return int(out.shape[1]) if out.dim() == 2 else None
        except Exception:  # noqa: BLE001
            return None
