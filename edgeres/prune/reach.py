"""A pruning target that cannot be reached is said, never reported as success.

``--target-macs``, ``--target-speedup`` and ``--target-latency-ms`` each end in one of two ways: the target is met, or
one line says the best reachable figure and what blocks the rest, and the prune stops (exit 1) unless
``--accept-shortfall`` is given, in which case it prunes to the best reachable and the same line goes into the report's
note. What can block the rest, each found by pruning copies of the model at the highest ratio (0.95):

- the channel multiple (``--round-to``, by default the target's: 32 for the Jetsons' INT8 kernels): a layer of that
  many channels or fewer is kept whole, so 32 on a 16/32/64-wide CIFAR ResNet leaves little or nothing to prune; the
  line says which ``--round-to`` would reach the target;
- the stem kept whole (the default; ``--prune-stem``), and with it every layer whose channels a residual addition
  couples to the stem's;
- layers kept whole because their channels are coupled through an operation the pruner cannot follow (e.g. a
  channel-padding shortcut written inline in ``forward()``, which edgeres.models.shortcuts cannot rewrite).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import replace

from edgeres.errors import EdgeresError
from edgeres.prune.channels import PruneConfig, kept_layers, macs_fraction_at, search_macs

_log = logging.getLogger(__name__)
MAX_RATIO = 0.95
ACCEPT = "--accept-shortfall"


def _widths(model, cfg: PruneConfig, size: int) -> dict:
    """{conv name: output channels} of ``model``, the layers edgeres never prunes left out."""
    from torch import nn

    kept = {id(m) for m in kept_layers(model, cfg.keep_stem, size)}
    return {n: m.out_channels for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and id(m) not in kept}


def _pruned_widths(model, cfg: PruneConfig, size: int) -> dict:
    from edgeres.prune.channels import _make_pruner

    trial = copy.deepcopy(model)
    _make_pruner(trial, replace(cfg, iterative_steps=1, importance="l2"), MAX_RATIO, size).step()
    return _widths(trial, cfg, size)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _names(names: list, n: int = 3) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def blockers(model, cfg: PruneConfig, size: int, target_fraction: float | None, best: float) -> str:
    """What keeps ``model`` (shortcuts already rewritten) from fewer MACs than ``best``, with ``cfg``'s rounding."""
    r = cfg.round_to or 8
    free = replace(cfg, round_to=1)
    f1 = macs_fraction_at(model, free, size, MAX_RATIO)
    parts = []
    if r > 1 and f1 < best - 0.005:
        widths = sorted({w for w in _widths(model, cfg, size).values() if w <= r})
        whole = f" (every layer of {' or '.join(map(str, widths))} channels whole)" if widths else ""
        text = f"the channel multiple {r} (--round-to; by default the target's) keeps at least {r} channels in " \
               f"every layer{whole}"
        if best >= 0.995:
            text += " and leaves nothing to prune"
        for k in [k for k in (16, 8, 4, 2, 1) if k < r]:
            fk = f1 if k == 1 else macs_fraction_at(model, replace(cfg, round_to=k), size, MAX_RATIO)
            if target_fraction is None or fk <= target_fraction or k == 1:
                reach = "would reach it" if target_fraction is not None and fk <= target_fraction else "would allow"
                text += f"; --round-to {k} {reach} (down to {fk:.2f} of the MACs)"
                break
        parts.append(text)
    if cfg.keep_stem:
        f2 = macs_fraction_at(model, replace(cfg, keep_stem=False), size, MAX_RATIO)
        if f2 < best - 0.005:
            free, unstemmed = replace(cfg, round_to=1), replace(cfg, round_to=1, keep_stem=False)
            full = _widths(model, free, size)
            a, b = _pruned_widths(model, free, size), _pruned_widths(model, unstemmed, size)
            coupled = [n for n, w in a.items() if w == full[n] and b.get(n, w) < w]
            stem = ", ".join(n for n, _ in _stem(model, size))
            parts.append(f"the stem ({stem}) is kept whole and with it {_count(len(coupled), 'layer')} whose "
                         f"channels residual additions couple to it (--prune-stem would allow {f2:.2f})")
    whole = _stuck(model, cfg, size)
    if whole:
        parts.append(f"{_count(len(whole), 'layer')} keep all their channels, coupled through an operation the pruner cannot "
                     f"follow ({_names(whole)})")
    return "; ".join(parts) or "every layer is already at its smallest width (one channel multiple, or one channel)"


def _stem(model, size: int) -> list:
    from edgeres.prune.channels import check_prunable

    return [(n, model.get_submodule(n)) for n in check_prunable(model, size).stem]


def _stuck(model, cfg: PruneConfig, size: int) -> list:
    """Layers (neither stem nor classifier) still whole when everything else may go: round-to 1, the stem pruned."""
    loose = replace(cfg, round_to=1, keep_stem=False)
    before, after = _widths(model, loose, size), _pruned_widths(model, loose, size)
    return [n for n, w in before.items() if w > 1 and after.get(n) == w]


def settle(sentence: str, accept: bool) -> str:
    """Stop on a shortfall unless it is accepted (then say it, as a warning, and return it for the report's note)."""
    if not accept:
        raise EdgeresError(f"{sentence}. Pass {ACCEPT} to prune to the best reachable instead")
    _log.warning(f"warning: {sentence} ({ACCEPT}: pruning to the best reachable)")
    return sentence


def ratio_for_target(model, cfg: PruneConfig, size: int, target_fraction: float, asked: str | None = None) -> tuple:
    """(ratio, shortfall sentence or None) for keeping ``target_fraction`` of the MACs; raises on a shortfall unless
    ``cfg.accept_shortfall``. ``asked`` names the target in the sentence (default ``--target-macs F``)."""
    ratio, met, fraction = search_macs(model, cfg, size, target_fraction, MAX_RATIO)
    if met:
        return ratio, None
    asked = asked or f"--target-macs {target_fraction:g}"
    sentence = (f"{asked} cannot be reached: the best reachable is {fraction:.2f} of the MACs "
                f"({1 / max(fraction, 1e-9):.2f}x fewer); blocking the rest: "
                f"{blockers(model, cfg, size, target_fraction, fraction)}")
    return ratio, settle(sentence, cfg.accept_shortfall)


def latency_shortfall(found: dict, model, cfg: PruneConfig, size: int, target=None) -> str | None:
    """The shortfall sentence of a latency search (``edgeres.prune.latency.find_ratio``'s result): the MACs
    fallback's own, or, for a measured search that did not meet its target, the best measured and what blocks the
    rest; None when the target was met. Raises unless ``cfg.accept_shortfall``."""
    if found.get("shortfall") or found.get("reached") is not False:
        return found.get("shortfall")
    from edgeres.models.shortcuts import rewrite_shortcuts

    if cfg.round_to is None and target is not None:
        cfg = replace(cfg, round_to=target.channel_multiple)
    trial = copy.deepcopy(model).eval()
    rewrite_shortcuts(trial, size)
    fraction = macs_fraction_at(trial, cfg, size, MAX_RATIO)
    sentence = (f"{found['target']} cannot be reached: the best measured is {found['measured_speedup']:.2f}x "
                f"({found['latency_ms']:.2f} ms) at ratio {found['ratio']:.3f}, and the most pruning possible keeps "
                f"{fraction:.2f} of the MACs; blocking the rest: {blockers(trial, cfg, size, None, fraction)}")
    return settle(sentence, cfg.accept_shortfall)
