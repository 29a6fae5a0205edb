"""``edgeres train``: transfer learning from a data folder (a fresh model of the architecture, optionally started from
pretrained weights), through the one training loop (edgeres.train.loop.fit)."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

from edgeres.errors import EdgeresError
from edgeres.train.config import TrainConfig
from edgeres.train.device import dist_env
from edgeres.train.loop import fit

log = logging.getLogger(__name__)


MIN_WEIGHT_SHARE = 0.9  # of the backbone's tensors (everything but the new head) that --weights must supply


def load_pretrained(model, weights, trust_model: bool = False, partial: bool = False) -> tuple[int, int]:
    """Copy every tensor of ``weights`` whose name and shape match into ``model`` (the new head is skipped).

    Refuses when the weights supply less than 90 % of the backbone's tensors (e.g. ResNet18 weights for a ResNet50)
    unless ``partial``. Returns (copied, skipped).
    """
    from edgeres.models import load_model

    src = load_model(weights, trust_model=trust_model).model.state_dict()
    dst = model.state_dict()
    keep = {k: v for k, v in src.items() if k in dst and tuple(dst[k].shape) == tuple(v.shape)}
    if not keep:
        raise EdgeresError(f"{weights} shares no weights with this model; is it a ResNet of the same architecture?")
    backbone = [k for k in dst if not k.startswith("fc.")]
    matched = sum(k in keep for k in backbone)
    if matched < MIN_WEIGHT_SHARE * len(backbone) and not partial:
        raise EdgeresError(f"{weights} matches only {matched} of the model's {len(backbone)} backbone tensors "
                           f"({100 * matched / max(1, len(backbone)):.0f} %): is it the same architecture (--arch)? "
                           "Pass --partial-weights to load just the matching tensors")
    model.load_state_dict(keep, strict=False)
    return len(keep), len(dst) - len(keep)


def train_model(data, out, arch: str = "resnet50", pre=None, cfg: TrainConfig | None = None, weights=None,
                resume: bool = False, val_fraction: float = 0.2, trust_model: bool = False, progress: bool = True,
                partial_weights: bool = False) -> dict:
    """``edgeres train``: resolve data, build the model (optionally from ``weights``), fit, save an edgeres checkpoint."""
    from edgeres.data import Preprocess, data_hash, resolve_data
    from edgeres.models import ModelMeta, build_model

    pre = pre or Preprocess()
    cfg = cfg or TrainConfig()
    splits = resolve_data(data, val_fraction=val_fraction, seed=cfg.seed)
    model = build_model(arch, len(splits.classes))
    if weights:
        copied, skipped = load_pretrained(model, weights, trust_model, partial=partial_weights)
        if dist_env()[1] == 0:
            (log.info if progress else log.debug)(f"loaded {copied} tensors from {weights} ({skipped} new, e.g. the {len(splits.classes)}-class head)")
    meta = ModelMeta(arch=arch, classes=list(splits.classes), preprocess=pre.to_dict(), data_hash=data_hash(splits),
                     data_root=str(Path(data).resolve()), extra={"train": asdict(cfg)})
    if dist_env()[1] == 0:
        (log.info if progress else log.debug)(splits.describe())
    result = fit(model, splits, pre, cfg, out, meta, resume=resume, progress=progress)
    return result if dist_env()[1] == 0 else None  # one report, from rank 0
