"""FP32 vs INT8 top-1 of CIFAR-style ResNets of three depths and the demo ResNet50, each trained briefly here on the
generated demo data (edgeres.data.demo, no downloads), quantized with edgeres's default recipe (the 0.5-point budget,
methods then float fallback; no QAT: no training loop is handed over) in the TensorRT form (jetson-orin-nano, signed
Q/DQ, Add rule) and the x86 form (u8s8). Calibration: the training split; top-1: the validation split.

    nice -n 10 python benchmarks/bench_int8_resnets.py [--out benchmarks/results/int8_resnets.csv] \
        [--models resnet8 resnet14 resnet20 resnet50] [--epochs 4] [--train-per-class 200] [--val-per-class 100]

Columns: model, form, FP32 top-1, INT8 top-1, delta (INT8 - FP32, points), the plain-PTQ delta before any fallback,
the path taken, calibration and validation images, seconds, cpu_flags. A brief training on synthetic shapes gives
models far from converged: read the table as a check of the recipe, not as the models' accuracy.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from common import cpu_flags, scratch_dir, write_csv


def cifar_resnet(depth: int, classes: int = 10):
    """He et al.'s CIFAR ResNet (6n+2 layers, 16/32/64 wide, option-B 1x1 projection shortcuts)."""
    import torch.nn as nn

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.relu(out + (x if self.downsample is None else self.downsample(x)))

    n = (depth - 2) // 6
    layers, cin = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True)], 16
    for i, w in enumerate((16, 32, 64)):
        for k in range(n):
            layers.append(Block(cin, w, 2 if (i > 0 and k == 0) else 1))
            cin = w
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, classes)]
    return nn.Sequential(*layers)


def _arrays(items, pre):
    from edgeres.metrics import iter_batches

    b = list(iter_batches(items, pre, 64))
    return np.concatenate([x[0] for x in b]), np.concatenate([x[1] for x in b])


def train(model, x, y, epochs: int, seed: int = 0):
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True)
    steps = epochs * ((len(x) + 63) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=steps)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y).long()
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 64):
            idx = perm[i : i + 64]
            xb = xt[idx]
            flip = torch.rand(len(xb)) < 0.5
            xb[flip] = xb[flip].flip(3)
            loss = F.cross_entropy(model(xb), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/results/int8_resnets.csv")
    ap.add_argument("--models", nargs="+", default=["resnet8", "resnet14", "resnet20", "resnet50"])
    ap.add_argument("--targets", nargs="+", default=["jetson-orin-nano", "x86-cpu"])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--r50-epochs", type=int, default=2, help="Epochs of the ResNet50 (slow on a CPU).")
    ap.add_argument("--train-per-class", type=int, default=200)
    ap.add_argument("--val-per-class", type=int, default=100)
    ap.add_argument("--calib-size", type=int, default=256)
    ap.add_argument("--budget", type=float, default=0.5)
    ap.add_argument("--fallback", default="methods,float")
    ap.add_argument("--work", default=None, help="Keep the data and the trained FP32 files here and reuse them "
                    "(split a long run into several).")
    args = ap.parse_args()

    import torch

    from edgeres.data import Preprocess, resolve_data
    from edgeres.data.demo import make_demo
    from edgeres.models import ModelMeta, build_model
    from edgeres.onnx_export import export_onnx
    from edgeres.quant.budget import path_label
    from edgeres.quant.run import run_quantize
    from edgeres.quant.settings import QuantizeConfig
    from edgeres.targets import get_target

    torch.set_num_threads(2)
    work = Path(args.work) if args.work else scratch_dir("int8-resnets")
    work.mkdir(parents=True, exist_ok=True)
    data = make_demo(Path(work) / "data", train_per_class=args.train_per_class, val_per_class=args.val_per_class,
                     progress=False)
    splits, pre = resolve_data(data), Preprocess(size=32)
    xtr, ytr = _arrays(splits.train, pre)
    rows, flags = [], cpu_flags()
    for name in args.models:
        t0 = time.time()
        epochs = args.r50_epochs if name == "resnet50" else args.epochs
        fp32 = Path(work) / f"{name}-e{epochs}.onnx"
        if not fp32.exists():
            torch.manual_seed(0)
            model = build_model("resnet50", len(splits.classes)) if name == "resnet50" else cifar_resnet(int(name[6:]))
            train(model, xtr, ytr, epochs)
            export_onnx(model, fp32, pre, ModelMeta(arch="resnet50" if name == "resnet50" else "custom",
                                                     classes=splits.classes, preprocess=pre.to_dict()))
        train_s = time.time() - t0
        for tname in args.targets:
            t1 = time.time()
            cfg = QuantizeConfig(subset_size=args.calib_size, int8_max_drop=args.budget,
                                 fallback=tuple(s for s in args.fallback.split(",") if s and s != "none"))
            info = run_quantize(fp32, data, get_target(tname), Path(work) / f"{name}-{tname}.onnx", cfg, data=data,
                                splits=splits)
            b = info["budget"]
            first = next(a for a in b["attempts"] if not a.get("skipped"))
            rows.append({"model": name, "epochs": epochs, "form": get_target(tname).quant_format, "target": tname,
                         "fp32_top1": b["top1_fp32"], "int8_top1": b["top1_int8"], "delta": -b["drop_points"],
                         "ptq_delta": -first["drop"], "within_0.3": -b["drop_points"] >= -0.3 - 1e-9,
                         "path": path_label(b), "attempts": " ".join(f"{a['path']}:{-a['drop']:+.2f}"
                                                                     for a in b["attempts"] if not a.get("skipped")),
                         "calibration_images": info["calibration_images"], "validation_images": b["validation_images"],
                         "train_s": round(train_s), "quantize_s": round(time.time() - t1), "cpu_flags": flags})
            print(rows[-1], flush=True)
        write_csv(args.out, rows)  # after each model: a run stopped early keeps what it measured


if __name__ == "__main__":
    main()
