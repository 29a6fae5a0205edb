"""Where training runs: the process's place under torchrun, its device, its mixed precision (edgeres.amp: the
autocast and the gradient scaler), and inference over a loader on that device."""

from __future__ import annotations

import os

from edgeres.amp import AmpPolicy, choose_amp, cpu_has_bf16
from edgeres.train.config import TrainConfig

__all__ = ["cpu_has_bf16", "dist_env", "pick_device", "predict_logits", "use_amp"]


def dist_env():
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return world, rank, local


def use_amp(cfg: TrainConfig, device) -> AmpPolicy:
    """``cfg.amp`` on ``device``: the autocast dtype and whether a gradient scaler (edgeres.amp.choose_amp)."""
    return choose_amp(cfg.amp, device)


def pick_device():
    import torch

    world, _, local = dist_env()
    if torch.cuda.is_available():
        return torch.device("cuda", local % torch.cuda.device_count())
    return torch.device("cpu")


def predict_logits(model, loader, device, progress_desc: str | None = None):
    """Run ``model`` over a loader; returns (logits, targets) as CPU tensors."""
    import torch

    from edgeres.progress import bar

    model.eval()
    outs, targets = [], []
    with torch.inference_mode():
        for x, y in bar(loader, desc=progress_desc, enabled=progress_desc is not None, unit="batch"):
            outs.append(model(x.to(device)).float().cpu())
            targets.append(torch.as_tensor(y))
    return torch.cat(outs), torch.cat(targets)

