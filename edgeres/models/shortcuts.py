"""Option-A shortcuts (He et al. 2016: subsample by 2, zero-pad the new channels, no parameters) rewritten into an
operation the pruner's dependency graph understands.

CIFAR-style ResNets (and user code that copies them) often write the shortcut of a down-sampling block as
``F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, p, p))``, in a module of its own or a ``LambdaLayer``. Torch-Pruning cannot
follow channels through that padding, so the residual stream of every stage was kept whole. Here each such module
is found *by what it computes* (its name and class do not matter) and replaced by a :class:`ChannelSelect`: a fixed
0/1 1×1 convolution, no bias, at the same stride, whose weight is a buffer (never trained). Its input and output
channels prune independently: a removed input channel turns the output channel that copied it into padding, a
removed output channel is simply gone. The rewritten model is checked to give the same logits as the original before
any channel is removed; if it does not, nothing is rewritten.

A shortcut written inline in a block's ``forward()`` (not a module) cannot be swapped and stays as it is; the pruner
then keeps the channels it couples whole, and says so (``edgeres.prune.reach``).
"""

from __future__ import annotations

import logging

from torch import nn  # this module is imported only where torch is already needed (pruning, unpickling)

_log = logging.getLogger(__name__)
STRIDES = (1, 2)


class ChannelSelect(nn.Module):
    """``y[:, j] = x[:, src[j], ::s, ::s]``, or 0 where ``src[j] == -1``: a 1×1 convolution with a fixed 0/1 weight."""

    def __init__(self, in_channels: int, src: list, stride: int = 1):
        import torch

        super().__init__()
        weight = torch.zeros(len(src), in_channels, 1, 1)
        for j, i in enumerate(src):
            if i >= 0:
                weight[j, i] = 1.0
        self.register_buffer("weight", weight)
        self.stride = int(stride)

    @property
    def in_channels(self) -> int:
        return int(self.weight.shape[1])

    @property
    def out_channels(self) -> int:
        return int(self.weight.shape[0])

    def forward(self, x):
        import torch.nn.functional as F

        return F.conv2d(x, self.weight.to(dtype=x.dtype), stride=self.stride)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"


def _selection(module, shape) -> tuple | None:
    """(src, stride) when ``module`` maps a random tensor of ``shape`` to a channel selection of its subsampled input
    (each output channel a copy of one input channel, or zeros), checked again on a second random tensor."""
    import torch

    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=g)
    try:
        with torch.no_grad():
            y = module(x)
    except Exception:  # noqa: BLE001 - a module that does not take a plain CPU float batch is no shortcut to rewrite
        return None
    if not isinstance(y, torch.Tensor) or y.dim() != 4 or y.shape[0] != x.shape[0]:
        return None
    for s in STRIDES:
        xs = x[:, :, ::s, ::s]
        if xs.shape[2:] != y.shape[2:]:
            continue
        flat_x = xs.transpose(0, 1).reshape(xs.shape[1], -1)
        flat_y = y.transpose(0, 1).reshape(y.shape[1], -1)
        src = []
        for j in range(flat_y.shape[0]):
            if not bool(flat_y[j].any()):
                src.append(-1)
                continue
            hit = torch.nonzero((flat_x == flat_y[j]).all(dim=1)).flatten()
            if len(hit) != 1:
                return None
            src.append(int(hit[0]))
        if s == 1 and len(src) == xs.shape[1] and src == list(range(len(src))):
            return None  # an identity: nothing to rewrite
        x2 = torch.randn(2, *shape[1:], generator=g)
        with torch.no_grad():
            if not torch.equal(module(x2), ChannelSelect(xs.shape[1], src, s)(x2)):
                return None
        return src, s
    return None


def _calls(model, size: int) -> dict:
    """{name: input shape} of the parameterless modules that ran exactly once on one 4-D tensor in a forward pass."""
    import torch

    seen: dict = {}
    hooks = []
    for name, m in model.named_modules():
        if name and not isinstance(m, ChannelSelect) and next(m.parameters(), None) is None:
            def hook(mod, args, out, _n=name):
                ok = len(args) == 1 and isinstance(args[0], torch.Tensor) and args[0].dim() == 4
                seen.setdefault(_n, []).append(tuple(args[0].shape) if ok else None)
            hooks.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(torch.randn(1, 3, size, size))
    finally:
        for h in hooks:
            h.remove()
    return {n: shapes[0] for n, shapes in seen.items() if len(shapes) == 1 and shapes[0] is not None}


def _set(model, name: str, new) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, new)


def rewrite_shortcuts(model, size: int = 32) -> list:
    """Replace every parameterless module that computes a channel selection (an option-A shortcut) with a
    :class:`ChannelSelect`, in place; returns the names replaced. The logits are checked unchanged on a random batch,
    else every module is put back and nothing is returned."""
    import torch

    was_training = model.training
    model.eval()
    try:
        calls = _calls(model, size)
        found = {}
        for name, shape in calls.items():  # parents before children: a replaced parent takes its children along
            if any(name.startswith(p + ".") for p in found):
                continue
            sel = _selection(model.get_submodule(name), shape)
            if sel is not None:
                found[name] = (model.get_submodule(name), ChannelSelect(shape[1], *sel))
        if not found:
            return []
        x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            ref = model(x)
            for name, (_old, new) in found.items():
                _set(model, name, new)
            got = model(x)
        if not torch.allclose(ref, got, rtol=1e-5, atol=1e-5 * max(1.0, float(ref.abs().max()))):
            for name, (old, _new) in found.items():
                _set(model, name, old)
            _log.warning("note: the channel-padding shortcuts found could not be rewritten exactly; the channels "
                         "they couple are kept whole")
            return []
        return list(found)
    finally:
        model.train(was_training)
