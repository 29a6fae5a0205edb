"""`edgeres train --amp off` on the CPU keeps the numerics of the training loop before mixed precision and the GPU
input pipeline existed: the same seed gives the same weights, bit for bit, as this copy of that loop (fit() at
e4cd4f9, reduced to one process, no teacher, no masks: its data loader, schedule, loss and optimizer steps)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _reference_fit(model, samples, pre, cfg):
    """fit() of e4cd4f9 (edgeres/stages/train.py), its training steps only."""
    from torch.utils.data import DataLoader

    from edgeres.data import ImageDataset, train_transform

    torch.manual_seed(cfg.seed)
    fmt = torch.channels_last
    model.to(memory_format=fmt)
    lr0, wd = cfg.resolved_lr(), cfg.resolved_wd()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr0, weight_decay=wd)
    ds = ImageDataset(samples, train_transform(pre, min_scale=cfg.min_scale))
    dl = DataLoader(ds, batch_size=cfg.batch_size, shuffle=True, num_workers=0,
                    drop_last=len(ds) >= 2 * cfg.batch_size, generator=torch.Generator().manual_seed(cfg.seed))
    steps = min(len(dl), cfg.max_steps_per_epoch)
    total, warmup = max(1, steps * cfg.epochs), int(cfg.warmup_epochs * steps)
    for epoch in range(cfg.epochs):
        model.train()
        for step, (x, y) in enumerate(dl):
            if step >= steps:
                break
            g = epoch * steps + step
            lr = lr0 * (g + 1) / warmup if g < warmup else \
                lr0 * 0.5 * (1 + math.cos(math.pi * (g - warmup) / max(1, total - warmup)))
            for group in opt.param_groups:
                group["lr"] = lr
            x, y = x.to("cpu", memory_format=fmt), torch.as_tensor(y)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=False):
                logits = model(x).float()
            loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        # the validation pass after each epoch: its DataLoader iterator draws a base seed from the global generator
        # (torch/utils/data/dataloader.py _BaseDataLoaderIter.__init__), which the next epoch's augmentation follows
        torch.empty((), dtype=torch.int64).random_()
    return model


def test_amp_off_reproduces_the_training_of_before(tmp_path, demo_data):
    from edgeres.data import Preprocess, resolve_data
    from edgeres.models import ModelMeta, build_model
    from edgeres.train.config import TrainConfig
    from edgeres.train.loop import fit

    splits = resolve_data(demo_data)
    pre = Preprocess(size=32)
    cfg = TrainConfig(epochs=2, batch_size=16, max_steps_per_epoch=3, amp="off", seed=7)
    torch.manual_seed(0)
    a = build_model("resnet18", len(splits.classes))
    b = build_model("resnet18", len(splits.classes))
    b.load_state_dict(a.state_dict())
    init = {k: v.clone() for k, v in a.state_dict().items()}
    fit(a, splits, pre, cfg, tmp_path / "m.pt", ModelMeta(arch="resnet18", classes=splits.classes), progress=False)
    _reference_fit(b, splits.train, pre, cfg)
    sa, sb = a.state_dict(), b.state_dict()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    assert sum(not torch.equal(sa[k], init[k]) for k in sa) > len(sa) // 2  # it did train
