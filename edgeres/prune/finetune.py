"""Prune, then fine-tune with distillation from the unpruned model, write the checkpoint and check it reloads; and
`edgeres prune` on files (top-1 before and after)."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, replace

from edgeres.errors import EdgeresError
from edgeres.prune.channels import PruneConfig, channel_prune, check_prunable
from edgeres.prune.forms import choose_form, verify_reload
from edgeres.prune.reach import ratio_for_target
from edgeres.prune.sparsity import apply_2_4


@dataclass
class FinetuneConfig:
    epochs: int = 3
    kd_alpha: float = 0.7
    kd_temperature: float = 4.0
    lr: float | None = 5e-4
    batch_size: int = 32
    optimizer: str = "adamw"
    min_scale: float = 0.35
    max_steps_per_epoch: int | None = None
    amp: str = "auto"  # --amp (edgeres.amp)
    pipeline: str = "auto"  # --pipeline (edgeres.data.loaders)
    workers: int | None = None  # None: the cores on CUDA, 0 on the CPU


def _checked(cfg: PruneConfig, target) -> PruneConfig:
    """``cfg`` validated, its channel rounding the target's (when not given), its sparsity one the target runs."""
    cfg.validate()
    if cfg.round_to is None and target is not None:  # the channel counts the target's fastest kernels want
        cfg = replace(cfg, round_to=target.channel_multiple)
    if cfg.sparsity == "2:4" and target is not None and not target.sparsity_2_4:
        raise EdgeresError(f"target {target.name} has no 2:4 sparse tensor cores; use an Orin/Thor target or drop --sparsity")
    return cfg


def _grad_batches(splits, pre, ft: FinetuneConfig, seed: int):
    """A generator function of 4 training batches (Taylor importance's gradients), in a seeded order."""

    def grad_batches():
        import torch
        from torch.utils.data import DataLoader

        from edgeres.data import ImageDataset, train_transform

        ds = ImageDataset(splits.train, train_transform(pre, min_scale=ft.min_scale))
        dl = DataLoader(ds, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(seed))
        for k, (x, y) in enumerate(dl):
            if k >= 4:
                break
            yield x, torch.as_tensor(y)

    return grad_batches


def _pruned_meta(loaded, size: int, trust_model: bool):
    """The pruned model's metadata: the loaded model's, with the checkpoint form it will be written in."""
    from edgeres.models import ModelMeta

    meta = ModelMeta(**loaded.meta.__dict__)
    meta.extra = dict(loaded.meta.extra)
    meta.save_as = choose_form(loaded.model, meta, size, trust_model)
    if meta.arch != meta.save_as:
        meta.arch = meta.save_as
    return meta


def _save_and_finetune(out_path, model, meta, ft: FinetuneConfig, finetune, trust_model: bool):
    """Write the pruned model (so that 0 epochs is valid), fine-tune it, load the best epoch back into ``model``; a
    half-done prune leaves no file that looks finished. Returns fit's result (None without fine-tuning)."""
    import os

    from edgeres.models import load_model, save_checkpoint

    try:
        save_checkpoint(out_path, model, meta)
        ft_result = None
        if ft.epochs > 0:
            ft_result = finetune(out_path)
            best = load_model(out_path, trust_model=trust_model)  # fit wrote the best epoch
            model.load_state_dict(best.model.state_dict())
    except BaseException:
        if os.path.exists(out_path):
            os.unlink(out_path)
        raise
    return ft_result


def _step_finetune(out_path, model, size: int, finetune, trust_model: bool):
    """``between_steps`` of iterative pruning: fine-tune into ``OUT.stepN.pt``, continue from its best epoch, and
    reload-check that file as the final one is (a step file that does not read back is removed, the prune fails)."""

    def between(i: int) -> None:
        from edgeres.models import load_model

        step = out_path.with_name(f"{out_path.stem}.step{i + 1}.pt")
        finetune(step)
        model.load_state_dict(load_model(step, trust_model=trust_model).model.state_dict())
        model.eval()
        verify_reload(step, model, size, trust_model)

    return between


def prune_and_finetune(loaded, splits, pre, cfg: PruneConfig, ft: FinetuneConfig, out_path, target=None,
                       progress: bool = True, trust_model: bool = False) -> dict:
    """Prune ``loaded`` (a LoadedModel), fine-tune with distillation from the unpruned model, save to ``out_path``.

    The file written is reloaded and checked against the in-memory model before this returns (``verify_reload``);
    ``info["format"]`` says which checkpoint form it is (``resnet50``, ``timm:resnet50d``, ``exported-program``...).
    """
    import torch

    from edgeres.train.config import TrainConfig
    from edgeres.train.loop import fit

    cfg = _checked(cfg, target)
    model = loaded.model
    size = pre.size
    check_prunable(model, size)
    torch.manual_seed(cfg.seed)
    teacher = copy.deepcopy(model).eval()
    meta = _pruned_meta(loaded, size, trust_model)
    tcfg = TrainConfig(epochs=ft.epochs, batch_size=ft.batch_size, optimizer=ft.optimizer, lr=ft.lr,
                       kd_alpha=ft.kd_alpha, kd_temperature=ft.kd_temperature, min_scale=ft.min_scale,
                       max_steps_per_epoch=ft.max_steps_per_epoch, warmup_epochs=0.2, seed=cfg.seed, amp=ft.amp,
                       pipeline=ft.pipeline, workers=ft.workers)
    masks = None  # the 2:4 masks, once applied (after the channel pruning and its in-between fine-tuning)

    def finetune(step_out):
        return fit(model, splits, pre, tcfg, step_out, meta, teacher=teacher, masks=masks, progress=progress)

    info, asked = {"ratio": 0.0}, cfg
    if cfg.ratio is not None or cfg.target_macs is not None:
        shortfall = None
        if cfg.target_macs is not None:  # the ratio for it, or the sentence that says it cannot be reached
            ratio, shortfall = ratio_for_target(model, cfg, size, cfg.target_macs)
            cfg = replace(cfg, ratio=ratio, target_macs=None)
        info = channel_prune(model, cfg, size, _grad_batches(splits, pre, ft, cfg.seed),
                             between_steps=_step_finetune(out_path, model, size, finetune, trust_model)
                             if ft.epochs > 0 else None)
        if shortfall:
            info["shortfall"] = shortfall
    else:
        from edgeres.metrics import torch_macs_params

        macs, params = torch_macs_params(model, size)
        info.update(macs_before=macs, macs_after=macs, params_before=params, params_after=params)
    if cfg.sparsity == "2:4":
        masks = apply_2_4(model)
        meta.sparsity = "2:4"
        info["sparse_layers"] = len(masks)
    meta.extra["prune"] = {**asdict(asked), **{k: v for k, v in info.items()}}
    ft_result = _save_and_finetune(out_path, model, meta, ft, finetune, trust_model)
    model.eval()
    verify_reload(out_path, model, size, trust_model)
    info["format"] = meta.save_as
    info["finetune"] = {k: v for k, v in (ft_result or {}).items() if k != "history"}
    info["model"] = model
    info["meta"] = meta
    return info


def prune_settings(cfg, **command_only) -> tuple[PruneConfig, FinetuneConfig]:
    """The prune and fine-tune settings of an OptimizeConfig (``prune`` is the channel ratio, 0: none), plus what only
    `edgeres prune` sets (``target_macs``, ``global_pruning``, ``round_to``, ``iterative_steps``, ``keep_stem``)."""
    pc = PruneConfig(ratio=cfg.prune or None, importance=cfg.importance, sparsity=cfg.sparsity, seed=cfg.seed,
                     accept_shortfall=cfg.accept_shortfall, **command_only)
    ft = FinetuneConfig(epochs=cfg.finetune_epochs, kd_alpha=cfg.kd_alpha, kd_temperature=cfg.kd_temperature,
                        lr=cfg.finetune_lr, batch_size=cfg.batch_size, amp=cfg.amp, pipeline=cfg.pipeline,
                        workers=cfg.workers)
    return pc, ft


def val_top1(model, splits, pre) -> float:
    """Top-1 (%) of a torch model on the validation split."""
    from torch.utils.data import DataLoader

    from edgeres.data import ImageDataset, eval_transform
    from edgeres.metrics import topk_accuracy
    from edgeres.train.device import pick_device, predict_logits

    dl = DataLoader(ImageDataset(splits.val, eval_transform(pre)), batch_size=64)
    logits, targets = predict_logits(model, dl, pick_device())
    model.cpu()
    return topk_accuracy(logits.numpy(), targets.numpy(), (1,))["top1"]


def run_prune(model_path, out, cfg: PruneConfig, ft: FinetuneConfig, data=None, target=None, trust_model: bool = False,
              pre_overrides: dict | None = None, progress: bool = True) -> dict:
    """Load, measure top-1, prune + fine-tune, save; returns the before/after figures (the Python form; the command
    `edgeres prune` runs the prune stage itself: edgeres.stage_commands.prune_command)."""
    from pathlib import Path

    from edgeres.data import resolve_data
    from edgeres.data.model_inputs import resolve_data_for, resolve_model_preprocess
    from edgeres.models import load_model

    cfg.validate()
    loaded = load_model(model_path, trust_model=trust_model)
    pre = resolve_model_preprocess(loaded.meta.preprocess, pre_overrides)
    check_prunable(loaded.model, pre.size)
    loaded.meta.preprocess = pre.to_dict()
    root = resolve_data_for(loaded.meta, data)
    if root is None:
        raise EdgeresError(f"{model_path} records no data folder: pass --data (fine-tuning and accuracy need images)")
    splits = resolve_data(root, seed=cfg.seed)  # the split the pipeline makes (Pipeline.prepare)
    from edgeres.evaluate import check_classes
    from edgeres.models import num_outputs

    check_classes(model_path, loaded.meta.classes, splits.classes, num_outputs(loaded.model, min(pre.size, 64)))
    if not loaded.meta.classes or loaded.meta.classes[0].startswith("class_"):
        loaded.meta.classes = list(splits.classes)

    before = val_top1(loaded.model, splits, pre)
    info = prune_and_finetune(loaded, splits, pre, cfg, ft, Path(out), target=target, progress=progress,
                              trust_model=trust_model)
    after = val_top1(info["model"], splits, pre)
    info.update(top1_before=before, top1_after=after)
    return info
