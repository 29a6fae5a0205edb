"""The one training loop: transfer learning, fine-tuning after pruning (with distillation), 2:4 masks, DDP.

``edgeres train`` and the prune stage's fine-tuning both call :func:`fit`.
Under ``torchrun --nproc-per-node N`` the same call trains with DistributedDataParallel (gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

import csv
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from edgeres.errors import EdgeresError

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 32
    optimizer: str = "adamw"  # or "sgd"
    lr: float | None = None  # default: 1e-3 for adamw, 0.05 for sgd
    weight_decay: float | None = None  # default: 0.05 for adamw, 5e-5 for sgd
    label_smoothing: float = 0.1
    warmup_epochs: float = 0.5
    freeze_backbone: bool = False
    kd_alpha: float = 0.0  # weight of the distillation loss (0: no teacher used)
    kd_temperature: float = 4.0
    workers: int = 0
    seed: int = 0
    max_steps_per_epoch: int | None = None  # for tests and smoke runs
    min_scale: float = 0.35  # RandomResizedCrop's smallest area
    skip_corrupt: bool = False
    channels_last: bool = True  # NHWC: faster convolutions on x86 (oneDNN) and on tensor cores
    amp: str = "auto"  # bf16 autocast: "auto" (on CPUs with AMX/AVX-512 BF16), "bf16", "off"

    def resolved_lr(self) -> float:
        return self.lr if self.lr is not None else (1e-3 if self.optimizer == "adamw" else 0.05)

    def resolved_wd(self) -> float:
        if self.weight_decay is not None:
            return self.weight_decay
        return 0.05 if self.optimizer == "adamw" else 5e-5


def _dist_env():
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return world, rank, local


def cpu_has_bf16() -> bool:
    """True on x86 CPUs with native bfloat16 math (AMX or AVX-512 BF16), where bf16 autocast trains faster."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def _use_amp(cfg: TrainConfig, device) -> bool:
    if cfg.amp not in ("auto", "bf16", "off"):
        raise EdgeresError(f"unknown amp {cfg.amp!r}; use auto, bf16 or off")
    return cfg.amp == "bf16" or (cfg.amp == "auto" and device.type == "cpu" and cpu_has_bf16())


def pick_device():
    import torch

    world, _, local = _dist_env()
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


def _freeze_backbone(model) -> None:
    import torch.nn as nn

    fc = getattr(model, "fc", None)
    if not isinstance(fc, nn.Linear):
        raise EdgeresError("--freeze-backbone needs a model with an `fc` head")
    for p in model.parameters():
        p.requires_grad_(False)
    for p in fc.parameters():
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


def fit(model, splits, pre, cfg: TrainConfig, out_path, meta, teacher=None, masks: dict | None = None,
        resume: bool = False, progress: bool = True) -> dict:
    """Train ``model`` on ``splits.train``, validate on ``splits.val`` each epoch.

    Writes ``out_path`` (best top-1), ``<out>.last.pt`` (for ``--resume``) and ``<out>.log.csv`` (one row an epoch).
    Returns {"best_top1", "last_top1", "epochs", "seconds", "images_per_s"}.
    """
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F
    from torch.utils.data import DataLoader
    from torch.utils.data.distributed import DistributedSampler

    from edgeres.data import ImageDataset, eval_transform, train_transform
    from edgeres.metrics import topk_accuracy
    from edgeres.models import load_model, save_checkpoint
    from edgeres.progress import bar
    from edgeres.utils import atomic_path

    out_path = Path(out_path)
    last_path = out_path.with_name(out_path.stem + ".last.pt")
    log_path = out_path.with_name(out_path.stem + ".log.csv")
    world, rank, _ = _dist_env()
    distributed = world > 1
    device = pick_device()
    owns_group = distributed and not dist.is_initialized()  # a caller's group (edgeres.ddp) stays up after fit
    if owns_group:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    is_main = rank == 0
    say = log.info if (progress and is_main) else log.debug  # a silenced caller gets no output at all
    torch.manual_seed(cfg.seed)
    if not splits.train:
        raise EdgeresError(f"{splits.root} has no training images (expected DIR/train/CLASS/...)")
    if not splits.val:
        raise EdgeresError(f"{splits.root} has no validation images (expected DIR/val/CLASS/...)")

    if cfg.freeze_backbone:
        _freeze_backbone(model)
    model.to(device)
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model.to(memory_format=fmt)
    amp = _use_amp(cfg, device)  # weights, optimizer and BN statistics stay FP32; only the matmuls run in bf16
    start_epoch, best, history = 0, -1.0, []
    lr0, wd = cfg.resolved_lr(), cfg.resolved_wd()
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=lr0, weight_decay=wd)
    elif cfg.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr0, momentum=0.9, weight_decay=wd, nesterov=True)
    else:
        raise EdgeresError(f"unknown optimizer {cfg.optimizer!r}; use adamw or sgd")
    if resume and last_path.exists():
        state = torch.load(str(last_path), map_location="cpu", weights_only=True)
        model.load_state_dict(load_model(last_path).model.state_dict())
        opt.load_state_dict(state["train_state"]["optimizer"])
        start_epoch = int(state["train_state"]["epoch"]) + 1
        best = float(state["train_state"]["best_top1"])
        history = list(state["train_state"]["history"])
        if is_main:
            say(f"resuming from {last_path} at epoch {start_epoch + 1}/{cfg.epochs}")
    train_ds = ImageDataset(splits.train, train_transform(pre, min_scale=cfg.min_scale), cfg.skip_corrupt)
    val_ds = ImageDataset(splits.val, eval_transform(pre), cfg.skip_corrupt)
    sampler = DistributedSampler(train_ds, world, rank, shuffle=True, seed=cfg.seed) if distributed else None
    gen = torch.Generator().manual_seed(cfg.seed)
    train_dl = DataLoader(train_ds, batch_size=cfg.batch_size, shuffle=sampler is None, sampler=sampler,
                          num_workers=cfg.workers, drop_last=len(train_ds) >= 2 * cfg.batch_size * world, generator=gen)
    val_dl = DataLoader(val_ds, batch_size=max(cfg.batch_size, 64), num_workers=cfg.workers)
    net = model
    if distributed:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if teacher is not None and cfg.kd_alpha > 0:
        teacher.to(device).eval()
    steps_per_epoch = len(train_dl) if cfg.max_steps_per_epoch is None else min(len(train_dl), cfg.max_steps_per_epoch)
    total_steps = max(1, steps_per_epoch * cfg.epochs)
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    apply_masks(model, masks)
    t_start, seen = time.time(), 0
    # one bar over every remaining step: its ETA is the whole training's, not one epoch's
    pbar = bar(total=steps_per_epoch * max(0, cfg.epochs - start_epoch), unit="batch", enabled=progress and is_main)
    for epoch in range(start_epoch, cfg.epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
        _set_train_mode(net, cfg.freeze_backbone)
        loss_sum, n_batches = 0.0, 0
        pbar.set_description(f"epoch {epoch + 1}/{cfg.epochs}")
        for step, (x, y) in enumerate(train_dl):
            if step >= steps_per_epoch:
                break
            gstep = epoch * steps_per_epoch + step
            lr = lr0 * (gstep + 1) / warmup if gstep < warmup else \
                lr0 * 0.5 * (1 + math.cos(math.pi * (gstep - warmup) / max(1, total_steps - warmup)))
            for g in opt.param_groups:
                g["lr"] = lr
            x, y = x.to(device, memory_format=fmt), torch.as_tensor(y).to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits = net(x).float()
            loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
            if teacher is not None and cfg.kd_alpha > 0:
                with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    t_logits = teacher(x).float()
                T = cfg.kd_temperature
                kd = F.kl_div(F.log_softmax(logits / T, 1), F.softmax(t_logits / T, 1), reduction="batchmean") * T * T
                loss = (1 - cfg.kd_alpha) * loss + cfg.kd_alpha * kd
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            apply_masks(model, masks)
            loss_sum += loss.item()
            n_batches += 1
            seen += x.shape[0] * world
            pbar.update(1)
            pbar.set_postfix(loss=f"{loss_sum / n_batches:.3f}", lr=f"{lr:.2e}", refresh=False)
        if is_main:
            logits, targets = predict_logits(model, val_dl, device)
            acc = topk_accuracy(logits.numpy(), targets.numpy(), (1, 5))
            top1 = acc["top1"]
            row = {"epoch": epoch + 1, "train_loss": round(loss_sum / max(1, n_batches), 5), "val_top1": round(top1, 3),
                   "val_top5": round(acc["top5"], 3), "lr": lr, "seconds": round(time.time() - t_start, 1)}
            history.append(row)
            improved = top1 > best
            best = max(best, top1)
            model.cpu()
            meta.extra["val_top1"] = top1
            if improved:
                save_checkpoint(out_path, model, meta)
            save_checkpoint(last_path, model, meta, {"train_state": {
                "epoch": epoch, "optimizer": opt.state_dict(), "best_top1": best, "history": history,
                "config": asdict(cfg)}})
            model.to(device)
            with atomic_path(log_path) as tmp, open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(row))
                w.writeheader()
                w.writerows(history)
            eta = (time.time() - t_start) / (epoch + 1 - start_epoch) * (cfg.epochs - epoch - 1)
            say(f"epoch {epoch + 1}/{cfg.epochs}: loss {row['train_loss']:.3f}  val top-1 {top1:.2f}%  "
                f"top-5 {acc['top5']:.2f}%{'  (best)' if improved else ''}  [{row['seconds']:.0f}s, ETA {eta:.0f}s]")
        if distributed:
            dist.barrier()
    pbar.close()
    seconds = time.time() - t_start
    if distributed:
        dist.barrier()
        if owns_group:
            dist.destroy_process_group()
    model.cpu().eval().to(memory_format=torch.contiguous_format)
    return {"best_top1": best, "last_top1": history[-1]["val_top1"] if history else None,
            "epochs": cfg.epochs, "seconds": seconds, "images_per_s": seen / seconds if seconds > 0 else None,
            "history": history}


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
        if _dist_env()[1] == 0:
            (log.info if progress else log.debug)(f"loaded {copied} tensors from {weights} ({skipped} new, e.g. the {len(splits.classes)}-class head)")
    meta = ModelMeta(arch=arch, classes=list(splits.classes), preprocess=pre.to_dict(), data_hash=data_hash(splits),
                     data_root=str(Path(data).resolve()), extra={"train": asdict(cfg)})
    if _dist_env()[1] == 0:
        (log.info if progress else log.debug)(splits.describe())
    result = fit(model, splits, pre, cfg, out, meta, resume=resume, progress=progress)
    return result if _dist_env()[1] == 0 else None  # one report, from rank 0
