"""edgeres's customisations of Torch-Pruning, in one place.

- :class:`ChannelSelectPruner`: how a :class:`~edgeres.models.shortcuts.ChannelSelect` (a rewritten option-A
  shortcut, a fixed 0/1 1×1 convolution) loses channels. Its input and output channels prune independently, like a
  convolution's, so the residual streams before and after a down-sampling block are pruned each on its own. It is
  not a convolution to Torch-Pruning's importance criteria (its fixed 0/1 weight would outweigh every trained one)
  nor to the MACs count (it is data movement, as the slice-and-pad it replaces).
- :class:`EdgePruner`: Torch-Pruning's MetaPruner, but channel counts rounded *down* to ``round_to`` never reach
  zero. Torch-Pruning rounds the kept channels down to the multiple and then refuses the whole group when none are
  left, so a higher ratio could prune *less* (a 16-wide layer at ``round_to`` 8 is halved at ratio 0.1 and kept whole
  at 0.6), which broke the bisection of ``--target-macs``. Here a layer keeps at least one multiple (a layer of
  ``round_to`` channels or fewer is kept whole), so the MACs fall monotonically with the ratio. It also keeps whole
  the channels coupled through an op Torch-Pruning mistakes for element-wise (a channel padding inline in
  ``forward()``), which it would otherwise prune into a network that no longer runs.
"""

from __future__ import annotations

import torch
import torch_pruning as tp

from edgeres.models.shortcuts import ChannelSelect


class ChannelSelectPruner(tp.pruner.function.BasePruningFunc):
    TARGET_MODULES = ChannelSelect

    @staticmethod
    def _keep(n: int, idxs) -> torch.Tensor:
        drop = set(int(i) for i in idxs)
        return torch.tensor([i for i in range(n) if i not in drop], dtype=torch.long)

    def prune_out_channels(self, layer: ChannelSelect, idxs):
        layer.weight = layer.weight.index_select(0, self._keep(layer.out_channels, idxs).to(layer.weight.device))
        return layer

    def prune_in_channels(self, layer: ChannelSelect, idxs):
        layer.weight = layer.weight.index_select(1, self._keep(layer.in_channels, idxs).to(layer.weight.device))
        return layer

    def get_out_channels(self, layer: ChannelSelect) -> int:
        return layer.out_channels

    def get_in_channels(self, layer: ChannelSelect) -> int:
        return layer.in_channels


CUSTOMIZED_PRUNERS = {ChannelSelect: ChannelSelectPruner()}


# autograd ops Torch-Pruning takes for element-wise (input channel i is output channel i) though they may move or add
# channels: a channel padding written inline in forward() (an option-A shortcut no module holds), an index or gather
OPAQUE_OPS = ("pad", "index", "gather", "scatter")


def opaque(module) -> bool:
    """Whether ``module`` is a graph node of an op in OPAQUE_OPS."""
    return isinstance(module, tp.ops._ElementWiseOp) and any(k in str(module._grad_fn).lower() for k in OPAQUE_OPS)


class EdgePruner(tp.pruner.MetaPruner):
    """MetaPruner whose rounding to ``round_to`` keeps at least one multiple of channels, and which leaves whole the
    channels coupled through an op in OPAQUE_OPS (pruning them would break the network: Torch-Pruning maps channel i
    of such an op's output to channel i of its input)."""

    def _round_to(self, n_pruned, current_channels, round_to):
        kept = current_channels - n_pruned
        kept = max(kept - kept % round_to, round_to)
        return max(current_channels - kept, 0)

    def _prune(self):
        for group in super()._prune():
            if not any(opaque(dep.source.module) or opaque(dep.target.module) for dep, _ in group):
                yield group


def make_pruner(model, example, importance, ratio: float, ignored: list, round_to: int, iterative_steps: int = 1,
                global_pruning: bool = False):
    """The pruner edgeres uses: :class:`EdgePruner` with the ChannelSelect rule and an explicit forward (Torch-Pruning's
    default tries ``model(*inputs)`` under a bare ``except:``, which would swallow a Ctrl-C that lands there)."""
    return EdgePruner(model, example, importance=importance, global_pruning=global_pruning, pruning_ratio=ratio,
                      iterative_steps=iterative_steps, ignored_layers=ignored, round_to=round_to,
                      customized_pruners=dict(CUSTOMIZED_PRUNERS), forward_fn=lambda m, x: m(x))
