"""FP32 vs INT8 top-1 of CIFAR-style ResNets of three depths (32 px) and the demo ResNet50 (48 px), trained here on
the generated demo data (edgeres.data.demo, no downloads; the ResNet50 with the demo's own recipe, or --r50-model, a
trained `edgeres demo` model.pt), quantized with edgeres's default recipe (the 0.5-point budget, methods then float
fallback; no QAT: no training loop is handed over) in the TensorRT form (jetson-orin-nano, signed Q/DQ, Add rule) and
the x86 form (u8s8).

Three disjoint image sets: calibration = the training split; the budget check = the validation split (what the
search selects on); the reported top-1 = a separate test split (make_demo with seed 1, --test-per-class images a
class), so the delta in the table is not the one the search selected on.

    nice -n 10 python benchmarks/bench_int8_resnets.py [--out benchmarks/results/int8_resnets.csv] \
        [--models resnet8 resnet14 resnet20 resnet32 resnet50] [--epochs 6] [--r50-model runs/demo/model.pt] [--work DIR]

Columns: model, form, FP32 and INT8 top-1 on the test split, delta (INT8 - FP32, points), lost/gained (test images
FP32 got right and INT8 wrong / the reverse), noise_1sd (one standard deviation of the paired delta,
100*sqrt(lost+gained)/N: a delta inside about two of them is noise), logit_nmse (mean squared logit error / logit
variance, a far less noisy proxy than top-1), within_0.3, check_delta and ptq_delta (on the validation split: the
delta the budget saw and the plain-PTQ one before any fallback), the path taken, image counts, seconds, cpu_flags.
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
    """SGD + one-cycle, random horizontal flips: about 96-98 % validation top-1 on the demo data in 6 epochs."""
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


def _logits(path, x):
    """The ONNX file's logits on ``x`` in ONNX Runtime (CPU), as the INT8 budget scores its candidates."""
    import onnx

    from edgeres.quant.scoring import logits_fn

    return logits_fn(x)(onnx.load(str(path)))


def compare(fp32_logits, int8_logits, y) -> dict:
    """Top-1 of both on (x, y), the paired flips, the noise of the delta and the logit error."""
    ok_f, ok_q = fp32_logits.argmax(1) == y, int8_logits.argmax(1) == y
    lost, gained = int((ok_f & ~ok_q).sum()), int((~ok_f & ok_q).sum())
    n = len(y)
    nmse = float(((fp32_logits - int8_logits) ** 2).mean() / fp32_logits.var())
    return {"fp32_top1": round(100 * float(ok_f.mean()), 3), "int8_top1": round(100 * float(ok_q.mean()), 3),
            "delta": round(100 * (gained - lost) / n, 3), "lost": lost, "gained": gained,
            "noise_1sd": round(100 * float(np.sqrt(lost + gained)) / n, 3), "logit_nmse": f"{nmse:.2e}"}


def _fp32_cifar(name, epochs, work, xtr, ytr, classes):
    import torch

    from edgeres.data import Preprocess
    from edgeres.models import ModelMeta
    from edgeres.onnx_export import export_onnx

    fp32 = Path(work) / f"{name}-e{epochs}.onnx"
    if not fp32.exists():
        torch.manual_seed(0)
        model = train(cifar_resnet(int(name[6:]), len(classes)), xtr, ytr, epochs)
        pre = Preprocess(size=32)
        export_onnx(model, fp32, pre, ModelMeta(arch="custom", classes=classes, preprocess=pre.to_dict()))
    return fp32


def _fp32_resnet50(work, data, epochs, given=None):
    """The demo ResNet50: ``given`` (a trained model.pt) or trained here with the demo's recipe (edgeres.demo.DEMO)."""
    from edgeres.data import Preprocess
    from edgeres.demo import DEMO
    from edgeres.models import load_model
    from edgeres.onnx_export import export_onnx
    from edgeres.train.config import TrainConfig
    from edgeres.train.transfer import train_model

    pt = Path(given) if given else Path(work) / f"resnet50-e{epochs}.pt"
    fp32 = Path(work) / f"resnet50-{'given' if given else f'e{epochs}'}.onnx"
    if not fp32.exists():
        if not pt.exists():
            cfg = TrainConfig(epochs=epochs, batch_size=DEMO["batch_size"], lr=DEMO["lr"], min_scale=DEMO["min_scale"],
                              warmup_epochs=0.5)
            train_model(data, pt, arch="resnet50", pre=Preprocess(size=DEMO["image_size"]), cfg=cfg)
        lm = load_model(pt)
        export_onnx(lm.model, fp32, Preprocess.from_dict(lm.meta.preprocess), lm.meta)
    return fp32


def _test_arrays(work, per_class, size, cache):
    """The test split: make_demo's images for seed 1 (disjoint from the seed-0 train and validation splits)."""
    from edgeres.data import Preprocess, resolve_data
    from edgeres.data.demo import make_demo

    if size not in cache:
        root = make_demo(Path(work) / f"test{per_class}", train_per_class=0, val_per_class=per_class, seed=1,
                         progress=False)
        cache[size] = _arrays(resolve_data(root).val, Preprocess(size=size))
    return cache[size]


def _row(name, epochs, tname, fp32, data, splits, args, work, tests) -> dict:
    from edgeres.quant.budget import path_label
    from edgeres.quant.run import run_quantize
    from edgeres.quant.settings import QuantizeConfig
    from edgeres.runtimes import artifact_info
    from edgeres.targets import get_target

    t1 = time.time()
    target = get_target(tname)
    cfg = QuantizeConfig(subset_size=args.calib_size, int8_max_drop=args.budget,
                         fallback=tuple(s for s in args.fallback.split(",") if s and s != "none"))
    out = Path(work) / f"{fp32.stem}-{tname}.onnx"
    info = run_quantize(fp32, data, target, out, cfg, data=data, splits=splits)  # budget: on the validation split
    b = info["budget"]
    first = next(a for a in b["attempts"] if not a.get("skipped"))
    xt, yt = _test_arrays(work, args.test_per_class, artifact_info(fp32).preprocess["size"], tests)
    row = {"model": name, "epochs": epochs, "form": target.quant_format, "target": tname}
    row.update(compare(_logits(fp32, xt), _logits(out, xt), yt))
    row.update({"within_0.3": row["delta"] >= -0.3 - 1e-9, "check_delta": round(-b["drop_points"], 3),
                "ptq_delta": round(-first["drop"], 3), "path": path_label(b),
                "attempts": " ".join(f"{a['path']}:{-a['drop']:+.2f}" for a in b["attempts"] if not a.get("skipped")),
                "calibration_images": info["calibration_images"], "check_images": b["validation_images"],
                "test_images": len(yt), "quantize_s": round(time.time() - t1)})
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/results/int8_resnets.csv")
    ap.add_argument("--models", nargs="+", default=["resnet8", "resnet14", "resnet20", "resnet32", "resnet50"])
    ap.add_argument("--targets", nargs="+", default=["jetson-orin-nano", "x86-cpu"])
    ap.add_argument("--epochs", type=int, default=6, help="Epochs of the CIFAR-style ResNets.")
    ap.add_argument("--r50-epochs", type=int, default=6, help="Epochs of the ResNet50 (the demo's recipe).")
    ap.add_argument("--r50-model", default=None, help="A trained demo ResNet50 (runs/demo/model.pt) instead of training.")
    ap.add_argument("--train-per-class", type=int, default=200)
    ap.add_argument("--val-per-class", type=int, default=100)
    ap.add_argument("--test-per-class", type=int, default=500)
    ap.add_argument("--calib-size", type=int, default=512)
    ap.add_argument("--budget", type=float, default=0.5)
    ap.add_argument("--fallback", default="methods,float")
    ap.add_argument("--work", default=None, help="Keep the data and the trained FP32 files here and reuse them "
                    "(split a long run into several).")
    args = ap.parse_args()

    import torch

    from edgeres.data import Preprocess, resolve_data
    from edgeres.data.demo import make_demo

    torch.set_num_threads(2)
    work = Path(args.work) if args.work else scratch_dir("int8-resnets")
    work.mkdir(parents=True, exist_ok=True)
    data = make_demo(work / "data", train_per_class=args.train_per_class, val_per_class=args.val_per_class,
                     progress=False)
    splits = resolve_data(data)
    xtr = ytr = None
    rows, flags, tests = [], cpu_flags(), {}
    for name in args.models:
        t0 = time.time()
        if name == "resnet50":
            epochs = "given" if args.r50_model else args.r50_epochs
            fp32 = _fp32_resnet50(work, data, args.r50_epochs, args.r50_model)
        else:
            epochs = args.epochs
            if xtr is None:
                xtr, ytr = _arrays(splits.train, Preprocess(size=32))
            fp32 = _fp32_cifar(name, epochs, work, xtr, ytr, splits.classes)
        train_s = round(time.time() - t0)
        for tname in args.targets:
            rows.append({**_row(name, epochs, tname, fp32, data, splits, args, work, tests), "train_s": train_s,
                         "cpu_flags": flags})
            print(rows[-1], flush=True)
        write_csv(args.out, rows)  # after each model: a run stopped early keeps what it measured


if __name__ == "__main__":
    main()
