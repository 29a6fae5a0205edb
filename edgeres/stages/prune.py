"""Structured channel pruning (Torch-Pruning dependency graph) and NVIDIA 2:4 sparsity, then distillation fine-tuning.

Channels tied together by residual additions are pruned together, so the network stays valid and the channels are
physically removed: the pruned ResNet is smaller and faster in every runtime. 2:4 sparsity keeps the two largest of
every four weights along the input-channel dimension, which Ampere-class Jetsons (Orin) run on sparse tensor cores;
its masks stay fixed through fine-tuning.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import asdict, dataclass

from edgeres.errors import EdgeresError, StageSkipped
from edgeres.stages.base import Context, Stage, StageResult

IMPORTANCES = ("l1", "l2", "bn", "taylor")

_log = logging.getLogger(__name__)


@dataclass
class PruneConfig:
    ratio: float | None = 0.3  # channel ratio removed per layer (or globally)
    target_macs: float | None = None  # instead of ratio: keep this fraction of the original MACs
    importance: str = "l2"
    global_pruning: bool = False
    round_to: int | None = None  # channel counts rounded to this multiple; None: the target's channel_multiple (else 8)
    iterative_steps: int = 1
    keep_stem: bool = True
    sparsity: str | None = None  # None or "2:4"
    seed: int = 0

    def validate(self) -> None:
        if self.ratio is not None and self.target_macs is not None:
            raise EdgeresError("give either --ratio or --target-macs, not both")
        if self.ratio is not None and not 0.0 < self.ratio < 1.0:
            raise EdgeresError(f"pruning ratio {self.ratio} must be between 0 and 1 (exclusive), e.g. --ratio 0.3")
        if self.target_macs is not None and not 0.0 < self.target_macs < 1.0:
            raise EdgeresError(f"--target-macs {self.target_macs} must be a fraction of the original MACs in (0, 1), e.g. 0.5")
        if self.ratio is None and self.target_macs is None and self.sparsity is None:
            raise EdgeresError("nothing to do: give --ratio, --target-macs or --sparsity 2:4")
        if self.importance not in IMPORTANCES:
            raise EdgeresError(f"unknown importance {self.importance!r}; choose one of {', '.join(IMPORTANCES)}")
        if self.sparsity not in (None, "2:4"):
            raise EdgeresError(f"unknown sparsity pattern {self.sparsity!r}; only 2:4 is supported")
        if self.iterative_steps < 1:
            raise EdgeresError("--iterative-steps must be >= 1")


def check_prunable(model, size: int = 64):
    """Any ResNet-like network Torch-Pruning can trace: a Linear classifier on the logits and convolutions before it.

    The classifier and the stem are found from the traced forward (``edgeres.models.graph``), not from attribute names;
    returns that ``Anatomy``. TorchScript and exported programs are refused: their layers are frozen into a graph.
    """
    import torch
    from torch import nn

    from edgeres.models.graph import trace_anatomy
    from edgeres.models.program import ExportedModule

    if isinstance(model, (torch.jit.ScriptModule, ExportedModule)):
        raise EdgeresError("the model is a TorchScript / torch.export program, whose layers cannot be pruned; "
                           "give its state dict, an edgeres checkpoint, or the pickled module (--trust-model)")
    if not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        raise EdgeresError("the model is not a ResNet the pruner understands (no convolutions); edgeres prunes "
                           "convolutional classifiers such as torchvision/timm ResNets and custom ResNets")
    try:
        anatomy = trace_anatomy(model, min(size, 64))
    except Exception as e:  # noqa: BLE001 - the user's forward failed on a plain image batch
        raise EdgeresError(f"the model does not run on a 1x3x{min(size, 64)}x{min(size, 64)} image batch "
                           f"({e.__class__.__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                           "it is not a ResNet the pruner understands") from None
    if anatomy.classifier is None:
        raise EdgeresError("the model is not a ResNet the pruner understands (no Linear classifier produces its "
                           "logits); edgeres prunes classifiers that end in a Linear layer")
    return anatomy


def _importance(name: str):
    import torch_pruning as tp

    return {
        "l1": lambda: tp.importance.GroupMagnitudeImportance(p=1),
        "l2": lambda: tp.importance.GroupMagnitudeImportance(p=2),
        "bn": lambda: tp.importance.BNScaleImportance(),
        "taylor": lambda: tp.importance.GroupTaylorImportance(),
    }[name]()


def kept_layers(model, keep_stem: bool = True, size: int = 64) -> list:
    """The layers never pruned: the classifier (its outputs are the classes) and, by default, the stem."""
    anatomy = check_prunable(model, size)
    names = [anatomy.classifier] + (list(anatomy.stem) if keep_stem else [])
    return [model.get_submodule(n) for n in names]


def _make_pruner(model, cfg: PruneConfig, ratio: float, size: int):
    import torch
    import torch_pruning as tp

    ignored = kept_layers(model, cfg.keep_stem, size)
    return tp.pruner.MetaPruner(
        model, torch.randn(1, 3, size, size), importance=_importance(cfg.importance), global_pruning=cfg.global_pruning,
        pruning_ratio=ratio, iterative_steps=cfg.iterative_steps, ignored_layers=ignored, round_to=cfg.round_to or 8,
        # an explicit forward: Torch-Pruning's default tries model(*inputs) under a bare `except:`, which would
        # swallow a Ctrl-C that lands there
        forward_fn=lambda m, x: m(x),
    )


def _taylor_grads(model, batches) -> None:
    import torch.nn.functional as F

    model.zero_grad()
    model.train()
    for x, y in batches:
        F.cross_entropy(model(x), y).backward()
    model.eval()


def _macs(model, size: int) -> int:
    from edgeres.metrics import torch_macs_params

    return torch_macs_params(model, size)[0]


def ratio_for_macs(model, cfg: PruneConfig, size: int, target_fraction: float) -> float:
    """Binary-search the channel ratio whose pruned model keeps about ``target_fraction`` of the MACs."""
    base = _macs(model, size)
    lo, hi = 0.0, 0.95
    for _ in range(8):
        mid = (lo + hi) / 2
        trial = copy.deepcopy(model)
        one = copy.copy(cfg)
        one.iterative_steps = 1
        p = _make_pruner(trial, one, mid, size)
        if cfg.importance == "taylor":  # magnitude proxy for the search; Taylor is used for the real pruning
            one.importance = "l2"
            p = _make_pruner(trial, one, mid, size)
        p.step()
        if _macs(trial, size) / base > target_fraction:
            lo = mid
        else:
            hi = mid
    return hi


def channel_prune(model, cfg: PruneConfig, size: int, grad_batches=None, between_steps=None) -> dict:
    """Prune ``model`` in place. ``between_steps(i)`` (e.g. fine-tuning) runs after each of the iterative steps.

    Returns {"ratio", "macs_before", "macs_after", "params_before", "params_after"}.
    """
    from edgeres.metrics import torch_macs_params

    check_prunable(model, size)
    model.eval()
    macs0, params0 = torch_macs_params(model, size)
    ratio = cfg.ratio if cfg.ratio is not None else ratio_for_macs(model, cfg, size, cfg.target_macs)
    pruner = _make_pruner(model, cfg, ratio, size)
    for i in range(cfg.iterative_steps):
        if cfg.importance == "taylor":
            if grad_batches is None:
                raise EdgeresError("Taylor importance needs training images (--data)")
            _taylor_grads(model, grad_batches())
        pruner.step()
        model.zero_grad(set_to_none=True)
        if between_steps is not None and i < cfg.iterative_steps - 1:
            between_steps(i)
    macs1, params1 = torch_macs_params(model, size)
    return {"ratio": ratio, "macs_before": macs0, "macs_after": macs1, "params_before": params0, "params_after": params1}


# ------------------------------------------------------------------------------------------------ 2:4 sparsity
def sparse_eligible(module) -> bool:
    """Conv/Linear layers TensorRT can run 2:4-sparse: input channels a multiple of 4 (so not the RGB stem), groups 1."""
    from torch import nn

    if isinstance(module, nn.Conv2d):
        return module.groups == 1 and module.in_channels % 4 == 0 and module.in_channels >= 16
    if isinstance(module, nn.Linear):
        return module.in_features % 4 == 0 and module.in_features >= 16
    return False


def mask_2_4(weight):
    """Mask keeping the 2 largest |w| of each 4 consecutive weights along the input-channel dimension (dim 1)."""
    import torch

    w = weight.detach()
    if w.dim() == 4:
        o, i, kh, kw = w.shape
        g = w.permute(0, 2, 3, 1).reshape(-1, 4)  # groups of 4 input channels at each (out, y, x)
    else:
        o, i = w.shape
        g = w.reshape(-1, 4)
    idx = g.abs().topk(2, dim=1).indices
    m = torch.zeros_like(g).scatter_(1, idx, 1.0)
    if w.dim() == 4:
        return m.reshape(o, kh, kw, i).permute(0, 3, 1, 2).contiguous()
    return m.reshape(o, i)


def apply_2_4(model) -> dict:
    """Apply 2:4 masks to every eligible layer in place; returns {param_name: mask} for fine-tuning."""
    import torch

    masks = {}
    with torch.no_grad():
        for name, m in model.named_modules():
            if sparse_eligible(m):
                mask = mask_2_4(m.weight)
                m.weight.mul_(mask)
                masks[f"{name}.weight"] = mask
    return masks


def is_2_4(array, axis: int = 1) -> bool:
    """True when every group of 4 along ``axis`` (the input-channel axis) has at most 2 non-zeros."""
    import numpy as np

    a = np.moveaxis(np.asarray(array), axis, -1)
    if a.shape[-1] % 4:
        return False
    g = a.reshape(-1, 4)
    return bool(((g != 0).sum(axis=1) <= 2).all())


def check_onnx_2_4(onnx_path) -> dict:
    """Read the exported weights: which Conv/Gemm weights keep the 2:4 pattern (after BN folding)."""
    import onnx
    from onnx import numpy_helper

    from edgeres.metrics import initializer_source

    model = onnx.load(str(onnx_path))
    inits = {i.name: i for i in model.graph.initializer}
    source = initializer_source(model)
    sparse, dense = [], []
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        name = source(node.input[1])
        if name not in inits:
            continue
        w = numpy_helper.to_array(inits[name])
        if w.dtype.kind not in "fi":
            continue
        axis = 1 if node.op_type == "Conv" or (node.op_type == "Gemm" and any(a.name == "transB" and a.i for a in node.attribute)) else 0
        if w.ndim < 2 or w.shape[axis] < 16 or w.shape[axis] % 4:
            continue
        (sparse if is_2_4(w, axis) else dense).append(node.name or name)
    return {"sparse_layers": sparse, "dense_layers": dense}


# ------------------------------------------------------------------------------------------------ the prune step
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


def choose_form(model, meta, size: int, trust_model: bool = False, log=None) -> str:
    """The checkpoint form a pruned ``model`` will be written in, decided before any work is done.

    torchvision and timm ResNets: an edgeres checkpoint rebuilt by name plus the pruned layer shapes. Any other
    class: its ``torch.export`` program (reloads with torch alone). Only when that is impossible, and only with
    ``--trust-model``, a pickled module, said aloud; without the flag the prune is refused before it starts.
    """
    from edgeres.models import PICKLED_ARCH, PROGRAM_ARCH, checkpoint_arch
    from edgeres.models.program import export_program

    form = checkpoint_arch(model, meta)
    if form.startswith("timm:"):
        if _rebuilds(form, model):
            return form
        (log or _log.warning)(f"note: {type(model).__name__} was built with other arguments than timm's {form[5:]!r} "
                       "defaults; it is written as its torch.export program instead")
        form = PROGRAM_ARCH
    if form != PROGRAM_ARCH:
        return form
    try:
        export_program(model, size)
        return form
    except Exception as e:  # noqa: BLE001 - torch.export refuses many Python constructs
        why = f"{e.__class__.__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    if not trust_model:
        raise EdgeresError(
            f"{type(model).__name__} is neither a torchvision nor a timm ResNet and torch.export cannot capture it "
            f"({why}), so a pruned copy could only be written as a pickled module; pass --trust-model to allow that "
            "(reloading it will need --trust-model and your class importable)")
    (log or _log.warning)(f"note: {type(model).__name__} cannot be exported with torch.export ({why}); the pruned model is "
                   "written as a pickled module (--trust-model): reloading it needs --trust-model and your class")
    return PICKLED_ARCH


def _rebuilds(form: str, model) -> bool:
    """Whether ``rebuild(form, module_specs(model))`` has exactly ``model``'s parameter names and shapes."""
    from edgeres.models import module_specs, num_outputs, rebuild

    try:
        back = rebuild(form, module_specs(model), num_outputs(model) or 1000)
    except Exception:  # noqa: BLE001 - any failure means: not rebuildable this way
        return False
    have = {k: tuple(v.shape) for k, v in back.state_dict().items()}
    return have == {k: tuple(v.shape) for k, v in model.state_dict().items()}


def verify_reload(path, model, size: int, trust_model: bool = False) -> None:
    """Reload ``path`` as every later stage will and compare its logits with ``model``'s; on any difference the file
    is deleted and the step fails, so no pruned file that cannot be read back is ever left behind as a success."""
    import os

    import torch

    from edgeres.models import load_model

    why = None
    try:
        back = load_model(path, trust_model=trust_model).model
        g = torch.Generator().manual_seed(0)
        x = torch.randn(2, 3, size, size, generator=g)
        was_training = model.training
        model.eval()
        with torch.no_grad():
            ref, got = model(x), back(x)
        model.train(was_training)
        if tuple(ref.shape) != tuple(got.shape):
            why = f"output shape {tuple(got.shape)} instead of {tuple(ref.shape)}"
        else:
            diff = float((ref - got).abs().max())
            tol = 1e-4 * max(1.0, float(ref.abs().max()))
            if not diff <= tol:
                why = f"max |dlogit| {diff:.3g} > {tol:.3g}"
    except Exception as e:  # noqa: BLE001 - whatever stops the reload is the failure to report
        why = f"{e.__class__.__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    if why is not None:
        if os.path.exists(path):
            os.unlink(path)
        raise EdgeresError(f"the pruned model written to {path} does not reload to the same network ({why}); the file "
                           "was removed. Please report this with the model's architecture")


def prune_and_finetune(loaded, splits, pre, cfg: PruneConfig, ft: FinetuneConfig, out_path, target=None,
                       progress: bool = True, trust_model: bool = False) -> dict:
    """Prune ``loaded`` (a LoadedModel), fine-tune with distillation from the unpruned model, save to ``out_path``.

    The file written is reloaded and checked against the in-memory model before this returns (``verify_reload``);
    ``info["format"]`` says which checkpoint form it is (``resnet50``, ``timm:resnet50d``, ``exported-program``...).
    """
    import torch

    from edgeres.data import ImageDataset, train_transform
    from edgeres.models import ModelMeta, save_checkpoint
    from edgeres.stages.train import TrainConfig, fit

    cfg.validate()
    if cfg.round_to is None and target is not None:  # the channel counts the target's fastest kernels want
        from dataclasses import replace

        cfg = replace(cfg, round_to=target.channel_multiple)
    if cfg.sparsity == "2:4" and target is not None and not target.sparsity_2_4:
        raise EdgeresError(f"target {target.name} has no 2:4 sparse tensor cores; use an Orin/Thor target or drop --sparsity")
    model = loaded.model
    size = pre.size
    check_prunable(model, size)
    torch.manual_seed(cfg.seed)
    teacher = copy.deepcopy(model).eval()

    def grad_batches():
        from torch.utils.data import DataLoader

        ds = ImageDataset(splits.train, train_transform(pre, min_scale=ft.min_scale))
        dl = DataLoader(ds, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(cfg.seed))
        for k, (x, y) in enumerate(dl):
            if k >= 4:
                break
            yield x, torch.as_tensor(y)

    meta = ModelMeta(**loaded.meta.__dict__)
    meta.extra = dict(loaded.meta.extra)
    meta.save_as = choose_form(model, meta, size, trust_model)
    if meta.arch != meta.save_as:
        meta.arch = meta.save_as
    tcfg = TrainConfig(epochs=ft.epochs, batch_size=ft.batch_size, optimizer=ft.optimizer, lr=ft.lr,
                       kd_alpha=ft.kd_alpha, kd_temperature=ft.kd_temperature, min_scale=ft.min_scale,
                       max_steps_per_epoch=ft.max_steps_per_epoch, warmup_epochs=0.2, seed=cfg.seed)

    def finetune(step_out):
        return fit(model, splits, pre, tcfg, step_out, meta, teacher=teacher, masks=masks, progress=progress)

    masks = None
    info = {"ratio": 0.0}
    if cfg.ratio is not None or cfg.target_macs is not None:
        step_path = lambda i: out_path.with_name(f"{out_path.stem}.step{i + 1}.pt")
        info = channel_prune(model, cfg, size, grad_batches,
                             between_steps=(lambda i: finetune(step_path(i))) if ft.epochs > 0 else None)
    else:
        from edgeres.metrics import torch_macs_params

        macs, params = torch_macs_params(model, size)
        info.update(macs_before=macs, macs_after=macs, params_before=params, params_after=params)
    if cfg.sparsity == "2:4":
        masks = apply_2_4(model)
        meta.sparsity = "2:4"
        info["sparse_layers"] = len(masks)
    meta.extra["prune"] = {**asdict(cfg), **{k: v for k, v in info.items()}}
    try:
        save_checkpoint(out_path, model, meta)  # the pruned model before fine-tuning, so that 0 epochs is valid
        ft_result = None
        if ft.epochs > 0:
            ft_result = finetune(out_path)
            from edgeres.models import load_model

            best = load_model(out_path, trust_model=trust_model)  # fit wrote the best epoch
            model.load_state_dict(best.model.state_dict())
    except BaseException:
        import os

        if os.path.exists(out_path):  # a half-done prune leaves no file that looks finished
            os.unlink(out_path)
        raise
    model.eval()
    verify_reload(out_path, model, size, trust_model)
    info["format"] = meta.save_as
    info["finetune"] = {k: v for k, v in (ft_result or {}).items() if k != "history"}
    info["model"] = model
    info["meta"] = meta
    return info


def run_prune(model_path, out, cfg: PruneConfig, ft: FinetuneConfig, data=None, target=None, trust_model: bool = False,
              pre_overrides: dict | None = None, progress: bool = True) -> dict:
    """`edgeres prune`: load, measure top-1, prune + fine-tune, save; returns the before/after figures."""
    from pathlib import Path

    from edgeres.data import ImageDataset, eval_transform, resolve_data
    from edgeres.metrics import topk_accuracy
    from edgeres.models import load_model
    from edgeres.stages import resolve_data_for, resolve_model_preprocess
    from edgeres.stages.train import pick_device, predict_logits

    cfg.validate()
    loaded = load_model(model_path, trust_model=trust_model)
    pre = resolve_model_preprocess(loaded.meta.preprocess, pre_overrides)
    check_prunable(loaded.model, pre.size)
    loaded.meta.preprocess = pre.to_dict()
    root = resolve_data_for(loaded.meta, data)
    if root is None:
        raise EdgeresError(f"{model_path} records no data folder: pass --data (fine-tuning and accuracy need images)")
    splits = resolve_data(root)
    from edgeres.evaluate import check_classes
    from edgeres.models import num_outputs

    check_classes(model_path, loaded.meta.classes, splits.classes, num_outputs(loaded.model, min(pre.size, 64)))
    if not loaded.meta.classes or loaded.meta.classes[0].startswith("class_"):
        loaded.meta.classes = list(splits.classes)

    def top1(model) -> float:
        from torch.utils.data import DataLoader

        dl = DataLoader(ImageDataset(splits.val, eval_transform(pre)), batch_size=64)
        logits, targets = predict_logits(model, dl, pick_device())
        model.cpu()
        return topk_accuracy(logits.numpy(), targets.numpy(), (1,))["top1"]

    before = top1(loaded.model)
    info = prune_and_finetune(loaded, splits, pre, cfg, ft, Path(out), target=target, progress=progress,
                              trust_model=trust_model)
    after = top1(info["model"])
    info.update(top1_before=before, top1_after=after)
    return info


class PruneStage(Stage):
    """Structured channel pruning (by ratio, or by a latency target measured on the target's runtime) and 2:4
    sparsity, then distillation fine-tuning from the unpruned model; under torchrun the other ranks join the
    fine-tuning (edgeres.ddp)."""

    name = "prune"
    keys = ("prune", "target_latency_ms", "target_speedup", "sparsity", "importance", "finetune_epochs", "kd_alpha",
            "kd_temperature", "finetune_lr", "batch_size", "seed", "target")
    runtime = "torch"

    def run(self, ctx: Context) -> StageResult:
        from edgeres import ddp

        cfg = ctx.cfg
        latency_goal = cfg.target_latency_ms is not None or cfg.target_speedup is not None
        if not cfg.prune and not cfg.sparsity and not latency_goal:
            raise StageSkipped("pruning off (--prune 0)")
        d = ctx.stage_dir(self.name)
        loaded = ctx.load(cfg.model)  # a fresh copy: pruning changes it in place
        pc = PruneConfig(ratio=cfg.prune or None, importance=cfg.importance, sparsity=cfg.sparsity, seed=cfg.seed)
        ft = FinetuneConfig(epochs=cfg.finetune_epochs, kd_alpha=cfg.kd_alpha, kd_temperature=cfg.kd_temperature,
                            lr=cfg.finetune_lr, batch_size=cfg.batch_size)
        search = None
        if latency_goal:  # the ratio whose measured latency meets the target (or the MACs fallback, named in the note)
            from edgeres.stages.prune_latency import LatencyTarget, find_ratio

            search = find_ratio(loaded.model, ctx.target, ctx.pre,
                                LatencyTarget(cfg.target_latency_ms, cfg.target_speedup), pc,
                                classes=ctx.splits.classes, threads=cfg.threads, log=ctx.log)
            pc.ratio = search["ratio"]
        ddp.send_job({"prune": pc, "finetune": ft})  # under torchrun: the other ranks join the fine-tuning
        info = prune_and_finetune(loaded, ctx.splits, ctx.pre, pc, ft, d / "model.pt", target=ctx.target,
                                  trust_model=cfg.trust_model)
        for tmp in d.glob("model.last.pt"):
            tmp.unlink()  # only for resuming an interrupted fine-tune; the stage is done
        note = f"channel ratio {info['ratio']:.2f}, {info['macs_before'] / max(1, info['macs_after']):.2f}x fewer MACs"
        if cfg.sparsity:
            note += f", 2:4 on {info.get('sparse_layers', 0)} layers"
        if search is not None:
            from edgeres.stages.prune_latency import summary

            info["latency_search"] = search
            note += f"; {summary(search)}"
        rows = ctx.measure(self.name, d / "model.pt", "torch", note=note, model=info["model"])
        keep = {k: v for k, v in info.items() if k not in ("model", "meta")}
        return StageResult(artifacts={"model": "prune/model.pt"}, rows=rows, info=keep)
