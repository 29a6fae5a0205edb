"""Pruning to a MACs target on each ResNet family the tests cover (issue 26): torchvision resnet18/resnet50, timm
resnet50d (if installed; small widths), a CIFAR-style ResNet with option-A shortcuts (zero padding) and one with
option-B shortcuts (1x1 projections). Each is trained briefly on the generated demo data, saved as a user would (a
pickled module), pruned with ``edgeres.prune.finetune.run_prune`` at ``--target-macs`` (a shortfall accepted and
recorded), fine-tuned shortly with distillation, and reported: MACs before/after, the widths left, top-1 before and
after. Small settings, so that the whole run takes a few minutes on 2 CPU cores.

    nice -n 10 .venv/bin/python benchmarks/bench_prune_families.py --out benchmarks/results/prune_families.csv
"""

from __future__ import annotations

import argparse
import time

import torch.nn.functional as F
from common import cpu_flags, scratch_dir, write_csv
from torch import nn


class PadShortcut(nn.Module):
    """Option A: subsample by 2 and zero-pad the new channels (no parameters)."""

    def __init__(self, planes):
        super().__init__()
        self.pad = planes // 4

    def forward(self, x):
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class Block(nn.Module):
    def __init__(self, inp, planes, stride, shortcut):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(inp, planes, 3, stride, 1, bias=False), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False), nn.BatchNorm2d(planes)
        self.shortcut = nn.Identity()
        if stride != 1 or inp != planes:  # option B: a 1x1 projection
            self.shortcut = PadShortcut(planes) if shortcut == "A" else nn.Sequential(
                nn.Conv2d(inp, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))) + self.shortcut(x))


class CifarResNet(nn.Module):
    """The small-image ResNet of He et al. (16/32/64 channels, head `linear`), ``n`` blocks a stage."""

    def __init__(self, shortcut: str = "A", n: int = 2, num_classes: int = 10):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16)
        layers, inp = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            layers.append(nn.Sequential(*[Block(inp if i == 0 else planes, planes, stride if i == 0 else 1, shortcut)
                                          for i in range(n)]))
            inp = planes
        self.layer1, self.layer2, self.layer3 = layers
        self.linear = nn.Linear(64, num_classes)

    def forward(self, x):
        out = self.layer3(self.layer2(self.layer1(F.relu(self.bn1(self.conv1(x))))))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


def family(name: str, num_classes: int):
    from edgeres.models import build_model

    if name in ("resnet18", "resnet50"):
        return build_model(name, num_classes)
    if name == "timm-resnet50d":
        import timm

        return timm.create_model("resnet50d", pretrained=False, num_classes=num_classes, channels=(32, 64, 128, 256),
                                 stem_width=16)
    return CifarResNet("A" if name == "cifar-option-a" else "B", n=2, num_classes=num_classes)


def run_one(name: str, args, splits, data, tmp) -> dict:
    import torch

    from edgeres.data import Preprocess
    from edgeres.models import PICKLED_ARCH, ModelMeta
    from edgeres.prune.channels import PruneConfig
    from edgeres.prune.finetune import FinetuneConfig, run_prune
    from edgeres.train.config import TrainConfig
    from edgeres.train.loop import fit

    torch.manual_seed(0)
    pre = Preprocess(size=args.size, crop_ratio=1.0)
    model = family(name, len(splits.classes))
    meta = ModelMeta(arch=PICKLED_ARCH, classes=list(splits.classes), preprocess=pre.to_dict(), data_root=str(data))
    meta.save_as = PICKLED_ARCH  # the epochs' checkpoints of the baseline: a quick pickle, not a torch.export each
    t0 = time.time()
    fit(model, splits, pre, TrainConfig(epochs=args.train_epochs, batch_size=16, lr=2e-3, seed=0, amp="off",
                                        min_scale=0.8, warmup_epochs=0.5), tmp / f"{name}.train.pt", meta,
        progress=False)
    train_s = time.time() - t0
    src = tmp / f"{name}.pth"
    torch.save(model.eval(), src)  # the user's own module, pickled (loaded with --trust-model)
    cfg = PruneConfig(ratio=None, target_macs=args.target_macs, round_to=args.round_to, accept_shortfall=True)
    ft = FinetuneConfig(epochs=args.finetune_epochs, batch_size=16, lr=1e-3, amp="off", min_scale=0.8)
    info = run_prune(src, tmp / f"{name}.pruned.pt", cfg, ft, data=data, trust_model=True,
                     pre_overrides={"image_size": args.size, "crop_ratio": 1.0}, progress=False)
    widths = sorted({m.out_channels for m in info["model"].modules() if isinstance(m, torch.nn.Conv2d)})
    row = {"family": name, "size_px": args.size, "target_macs": args.target_macs, "round_to": args.round_to,
           "mmacs_before": round(info["macs_before"] / 1e6, 2), "mmacs_after": round(info["macs_after"] / 1e6, 2),
           "macs_kept": round(info["macs_after"] / info["macs_before"], 3),
           "top1_before": round(info["top1_before"], 2), "top1_after_finetune": round(info["top1_after"], 2),
           "format": info["format"], "rewritten_shortcuts": len(info.get("rewritten", [])),
           "conv_widths_after": " ".join(map(str, widths)), "shortfall": info.get("shortfall", ""),
           "train_s": round(train_s, 1), "prune_finetune_s": round(time.time() - t0 - train_s, 1),
           "cpu_flags": cpu_flags()}
    print(f"{name}: MACs {row['mmacs_before']} M -> {row['mmacs_after']} M ({row['macs_kept']:.2f}), top-1 "
          f"{row['top1_before']:.1f}% -> {row['top1_after_finetune']:.1f}% (train {row['train_s']} s, prune and "
          f"fine-tune {row['prune_finetune_s']} s)", flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/results/prune_families.csv")
    ap.add_argument("--families", nargs="+", default=["resnet18", "resnet50", "timm-resnet50d", "cifar-option-a",
                                                       "cifar-option-b"])
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--target-macs", type=float, default=0.5)
    ap.add_argument("--round-to", type=int, default=8)
    ap.add_argument("--train-per-class", type=int, default=40)
    ap.add_argument("--val-per-class", type=int, default=20)
    ap.add_argument("--train-epochs", type=int, default=5)
    ap.add_argument("--finetune-epochs", type=int, default=2)
    args = ap.parse_args()

    import importlib.util

    from edgeres.data import resolve_data
    from edgeres.data.demo import make_demo

    tmp = scratch_dir("edgeres-prune-families-")
    data = make_demo(tmp / "data", train_per_class=args.train_per_class, val_per_class=args.val_per_class,
                     progress=False)
    splits = resolve_data(data)
    rows = []
    for name in args.families:
        if name == "timm-resnet50d" and importlib.util.find_spec("timm") is None:
            rows.append({"family": name, "shortfall": "timm not installed"})
            continue
        rows.append(run_one(name, args, splits, data, tmp))
    write_csv(args.out, rows)


if __name__ == "__main__":
    main()
