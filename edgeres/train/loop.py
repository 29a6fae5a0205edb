"""The one training loop: transfer learning, fine-tuning after pruning (with distillation), 2:4 masks, DDP.

``edgeres train`` and the prune stage's fine-tuning both call :func:`fit`.
Under ``torchrun --nproc-per-node N`` the same call trains with DistributedDataParallel (gloo on CPU, NCCL on GPU).
The input pipeline (:func:`make_loaders`) and the autocast choice (:func:`edgeres.train.device.autocast`) are each one
function, so that either can change without touching the loop.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgeres_deploy.metrics import safe_row

from edgeres.errors import EdgeresError
from edgeres.train.config import TrainConfig
from edgeres.train.device import dist_env, pick_device, predict_logits, use_amp

log = logging.getLogger(__name__)


def _freeze_backbone(model, size: int = 32) -> None:
    """Only the classifier learns: the Linear that produces the logits, found from the traced forward as the pruner
    finds it (edgeres.models.graph), whatever its name (``fc``, ``linear``, ``head.fc``, ``classifier``)."""
    from edgeres.models.graph import trace_anatomy

    head = trace_anatomy(model, min(size, 64)).classifier
    if head is None:
        raise EdgeresError("--freeze-backbone needs a model whose logits come from a Linear classifier; this model's "
                           "do not (train it without --freeze-backbone)")
    for p in model.parameters():
        p.requires_grad_(False)
    for p in model.get_submodule(head).parameters():
        p.requires_grad_(True)


def _set_train_mode(model, freeze_backbone: bool) -> None:
    import torch.nn as nn

    model.train()
    if freeze_backbone:  # frozen BN statistics too: only the head learns
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()


def apply_masks(model, masks: dict | None) -> None:
    import torch

    if not masks:
        return
    with torch.no_grad():
        params = dict(model.named_parameters())
        for name, mask in masks.items():
            params[name].mul_(mask)


def make_optimizer(params, cfg: TrainConfig):
    import torch

    lr0, wd = cfg.resolved_lr(), cfg.resolved_wd()
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr0, weight_decay=wd)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr0, momentum=0.9, weight_decay=wd, nesterov=True)
    raise EdgeresError(f"unknown optimizer {cfg.optimizer!r}; use adamw or sgd")


def make_loaders(splits, pre, cfg: TrainConfig, world: int, rank: int, device, say=None):
    """The input pipeline: (train batches on ``device``, validation loader, the distributed sampler or None).
    Training images are augmented (``AugmentRecipe`` from ``cfg.min_scale``) and shuffled in a seeded order; under DDP
    each rank reads its own share. ``cfg.pipeline`` auto: decoded (nvJPEG) and augmented on the GPU when training on
    CUDA, PIL in the workers otherwise (edgeres.data.loaders)."""
    import os

    from torch.utils.data import DataLoader
    from torch.utils.data.distributed import DistributedSampler

    from edgeres.data import AugmentRecipe, ImageDataset, eval_transform
    from edgeres.data.loaders import make_train_loader

    val_ds = ImageDataset(splits.val, eval_transform(pre), cfg.skip_corrupt)
    sampler = DistributedSampler(splits.train, world, rank, shuffle=True, seed=cfg.seed) if world > 1 else None
    train_dl, path, workers = make_train_loader(
        splits.train, pre, device, batch_size=cfg.batch_size, pipeline=cfg.pipeline,
        recipe=AugmentRecipe(min_scale=cfg.min_scale), workers=cfg.workers, sampler=sampler, seed=cfg.seed,
        drop_last=len(splits.train) >= 2 * cfg.batch_size * world, skip_corrupt=cfg.skip_corrupt,
        channels_last=cfg.channels_last, local_world=int(os.environ.get("LOCAL_WORLD_SIZE", "1")), shard=(rank, world))
    if say:
        say(f"input pipeline: {path}, {workers} loader workers")
    val_dl = DataLoader(val_ds, batch_size=max(cfg.batch_size, 64), num_workers=workers,
                        pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    return train_dl, val_dl, sampler


def lr_at(lr0: float, gstep: int, warmup: int, total_steps: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total_steps``."""
    if gstep < warmup:
        return lr0 * (gstep + 1) / warmup
    return lr0 * 0.5 * (1 + math.cos(math.pi * (gstep - warmup) / max(1, total_steps - warmup)))


@dataclass
class _Run:
    """What one fit call trains with, and where it stands."""

    model: object
    cfg: TrainConfig
    opt: object
    device: object
    fmt: object  # the memory format of inputs and weights
    amp: object  # the AmpPolicy: autocast dtype and gradient scaler (edgeres.train.device.use_amp)
    world: int
    teacher: object = None
    masks: dict | None = None
    net: object = None  # the model, or its DistributedDataParallel wrapper
    steps_per_epoch: int = 0
    warmup: int = 0
    total_steps: int = 1
    start_epoch: int = 0
    best: float = -1.0
    history: list = field(default_factory=list)
    seen: int = 0
    scaler: object = None  # torch.amp.GradScaler: a pass-through unless fp16
    train_ips: float = 0.0  # the last epoch's training images/s (its steps only, not the validation)


def _loss(run: _Run, x, y):
    """Cross-entropy with label smoothing, mixed with the teacher's distillation loss when there is one."""
    import torch
    import torch.nn.functional as F

    cfg = run.cfg
    with run.amp.autocast(run.device.type):
        logits = run.net(x).float()
    loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
    if run.teacher is not None and cfg.kd_alpha > 0:
        with torch.no_grad(), run.amp.autocast(run.device.type):
            t_logits = run.teacher(x).float()
        T = cfg.kd_temperature
        kd = F.kl_div(F.log_softmax(logits / T, 1), F.softmax(t_logits / T, 1), reduction="batchmean") * T * T
        loss = (1 - cfg.kd_alpha) * loss + cfg.kd_alpha * kd
    return loss


def _train_epoch(run: _Run, train_dl, epoch: int, pbar) -> tuple:
    """One epoch of optimizer steps; returns (mean loss, the last learning rate)."""
    import torch

    lr0 = run.cfg.resolved_lr()
    loss_sum, n_batches, lr, n_seen, t0 = 0.0, 0, lr0, 0, time.time()  # loss_sum: a tensor on the device
    for step, (x, y) in enumerate(train_dl):  # x, y: on the device, in run.fmt (edgeres.data.loaders)
        if step >= run.steps_per_epoch:
            break
        lr = lr_at(lr0, epoch * run.steps_per_epoch + step, run.warmup, run.total_steps)
        for g in run.opt.param_groups:
            g["lr"] = lr
        loss = _loss(run, x, y)
        run.opt.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()  # a pass-through unless fp16
        run.scaler.step(run.opt)
        run.scaler.update()
        apply_masks(run.model, run.masks)
        loss_sum = loss_sum + loss.detach()  # no .item() a step: a GPU sync that would starve the queue
        n_batches += 1
        n_seen += x.shape[0] * run.world
        pbar.update(1)
        if n_batches % 20 == 1:
            mean = float(loss_sum) / n_batches
            if run.world == 1:  # under DDP the ranks decide together, at the epoch's end (_stop_if_diverged)
                _stop_if_diverged(run, mean, epoch)
            pbar.set_postfix(loss=f"{mean:.3f}", lr=f"{lr:.2e}", refresh=False)
    if run.device.type == "cuda":
        torch.cuda.synchronize(run.device)
    run.seen += n_seen
    run.train_ips = n_seen / max(1e-9, time.time() - t0)
    mean = float(loss_sum) / max(1, n_batches)
    _stop_if_diverged(run, mean, epoch)
    return mean, lr


def _stop_if_diverged(run: _Run, loss: float, epoch: int) -> None:
    """A NaN or Inf loss: the weights are NaN from here on, so stop before anything is saved (the best checkpoint of
    an earlier epoch, if any, stays as it was). Under DDP every rank learns of any rank's divergence (no rank is left
    waiting at a barrier)."""
    import torch

    bad = not math.isfinite(loss)
    if run.world > 1:
        import torch.distributed as dist

        flag = torch.tensor([1.0 if bad else 0.0], device=run.device if run.device.type == "cuda" else "cpu")
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        bad = bool(flag.item())
    if bad:
        cfg = run.cfg
        raise EdgeresError(f"training diverged in epoch {epoch + 1}: the loss became {loss} (learning rate "
                           f"{cfg.resolved_lr():g}, weight decay {cfg.resolved_wd():g}); nothing of this epoch was saved. "
                           "Lower --lr (or --weight-decay), or check the starting weights")


def _end_epoch(run: _Run, val_dl, epoch: int, loss: float, lr: float, paths: tuple, meta, t_start: float, say) -> None:
    """Rank 0: validate, write the best and the last checkpoint and the per-epoch CSV, log one line."""
    from edgeres.metrics import topk_accuracy
    from edgeres.models import save_checkpoint
    from edgeres.utils import atomic_path

    out_path, last_path, log_path = paths
    model, cfg = run.model, run.cfg
    logits, targets = predict_logits(model, val_dl, run.device)
    acc = topk_accuracy(logits.numpy(), targets.numpy(), (1, 5))
    top1 = acc["top1"]
    row = {"epoch": epoch + 1, "train_loss": round(loss, 5), "val_top1": round(top1, 3),
           "val_top5": round(acc["top5"], 3), "lr": lr, "seconds": round(time.time() - t_start, 1),
           "train_images_per_s": round(run.train_ips, 1)}
    run.history.append(row)
    improved = top1 > run.best
    run.best = max(run.best, top1)
    model.cpu()
    meta.extra["val_top1"] = top1
    if improved:
        save_checkpoint(out_path, model, meta)
    save_checkpoint(last_path, model, meta, {"train_state": {
        "epoch": epoch, "optimizer": run.opt.state_dict(), "best_top1": run.best, "history": run.history,
        "config": asdict(cfg)}})
    model.to(run.device)
    with atomic_path(log_path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        w.writeheader()
        w.writerows(safe_row(r) for r in run.history)
    eta = (time.time() - t_start) / (epoch + 1 - run.start_epoch) * (cfg.epochs - epoch - 1)
    say(f"epoch {epoch + 1}/{cfg.epochs}: loss {row['train_loss']:.3f}  val top-1 {top1:.2f}%  "
        f"top-5 {acc['top5']:.2f}%{'  (best)' if improved else ''}  [{row['seconds']:.0f}s, ETA {eta:.0f}s]")


def _resume(run: _Run, last_path: Path, say) -> None:
    """Continue from ``last_path``: the weights, the optimizer, the epoch, the best top-1 and the history."""
    import torch

    from edgeres.models import load_model

    state = torch.load(str(last_path), map_location="cpu", weights_only=True)
    run.model.load_state_dict(load_model(last_path).model.state_dict())
    run.opt.load_state_dict(state["train_state"]["optimizer"])
    run.start_epoch = int(state["train_state"]["epoch"]) + 1
    run.best = float(state["train_state"]["best_top1"])
    run.history = list(state["train_state"]["history"])
    say(f"resuming from {last_path} at epoch {run.start_epoch + 1}/{run.cfg.epochs}")


def _check_splits(splits) -> None:
    from edgeres.data.folder import no_split_line

    if not splits.train:
        raise EdgeresError(no_split_line(splits.root, "train"))
    if not splits.val:
        raise EdgeresError(no_split_line(splits.root))


def _wrap(run: _Run, steps: int) -> None:
    """The model wrapped for DDP, the teacher on the device, the schedule's step counts (``steps`` a full epoch)."""
    import torch

    cfg, device = run.cfg, run.device
    run.net = run.model
    if run.world > 1:
        run.net = torch.nn.parallel.DistributedDataParallel(run.model, device_ids=[device.index] if device.type == "cuda"
                                                            else None)
    if run.teacher is not None and cfg.kd_alpha > 0:
        run.teacher.to(device).eval()
    run.steps_per_epoch = steps if cfg.max_steps_per_epoch is None else min(steps, cfg.max_steps_per_epoch)
    run.total_steps = max(1, run.steps_per_epoch * cfg.epochs)
    run.warmup = int(cfg.warmup_epochs * run.steps_per_epoch)


def _on_device(model, cfg: TrainConfig, device, say, size: int = 32) -> tuple:
    """The model on its device and memory format (its backbone frozen if asked) -> (memory format, AMP policy); the
    precision chosen is said."""
    import torch

    if cfg.freeze_backbone:
        _freeze_backbone(model, size)
    model.to(device)
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model.to(memory_format=fmt)
    amp = use_amp(cfg, device)  # weights, optimizer and BN statistics stay FP32 whatever the mode
    say(f"training on {device}: {amp.reason}")
    return fmt, amp


def fit(model, splits, pre, cfg: TrainConfig, out_path, meta, teacher=None, masks: dict | None = None,
        resume: bool = False, progress: bool = True) -> dict:
    """Train ``model`` on ``splits.train``, validate on ``splits.val`` each epoch.

    Writes ``out_path`` (best top-1), ``<out>.last.pt`` (for ``--resume``) and ``<out>.log.csv`` (one row an epoch).
    Returns {"best_top1", "last_top1", "epochs", "seconds", "images_per_s"}.
    """
    import torch
    import torch.distributed as dist

    from edgeres.amp import cuda_speed_flags
    from edgeres.progress import bar

    out_path = Path(out_path)
    paths = (out_path, out_path.with_name(out_path.stem + ".last.pt"), out_path.with_name(out_path.stem + ".log.csv"))
    world, rank, _ = dist_env()
    device = pick_device()
    owns_group = world > 1 and not dist.is_initialized()  # a caller's group (edgeres.ddp) stays up after fit
    if owns_group:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    say = log.info if (progress and rank == 0) else log.debug  # a silenced caller gets no output at all
    torch.manual_seed(cfg.seed)
    _check_splits(splits)
    fmt, amp = _on_device(model, cfg, device, say, pre.size)
    opt = make_optimizer([p for p in model.parameters() if p.requires_grad], cfg)
    run = _Run(model=model, cfg=cfg, opt=opt, device=device, fmt=fmt, amp=amp, world=world, teacher=teacher, masks=masks,
               scaler=amp.grad_scaler(device.type))
    if resume and paths[1].exists():
        _resume(run, paths[1], say if rank == 0 else (lambda s: None))
    train_dl, val_dl, sampler = make_loaders(splits, pre, cfg, world, rank, device, say)
    _wrap(run, len(train_dl))
    apply_masks(model, masks)
    t_start = time.time()
    # one bar over every remaining step: its ETA is the whole training's, not one epoch's
    pbar = bar(total=run.steps_per_epoch * max(0, cfg.epochs - run.start_epoch), unit="batch",
               enabled=progress and rank == 0)
    with cuda_speed_flags(device):  # cuDNN autotune and TF32 while training on CUDA, restored after
        for epoch in range(run.start_epoch, cfg.epochs):
            if sampler is not None:
                sampler.set_epoch(epoch)
            _set_train_mode(run.net, cfg.freeze_backbone)
            pbar.set_description(f"epoch {epoch + 1}/{cfg.epochs}")
            loss, lr = _train_epoch(run, train_dl, epoch, pbar)
            if rank == 0:
                _end_epoch(run, val_dl, epoch, loss, lr, paths, meta, t_start, say)
            if world > 1:
                dist.barrier()
    pbar.close()
    seconds = time.time() - t_start
    if world > 1:
        dist.barrier()
        if owns_group:
            dist.destroy_process_group()
    model.cpu().eval().to(memory_format=torch.contiguous_format)
    return {"best_top1": run.best, "last_top1": run.history[-1]["val_top1"] if run.history else None,
            "epochs": cfg.epochs, "seconds": seconds, "images_per_s": run.seen / seconds if seconds > 0 else None,
            "history": run.history}
