"""Does `edgeres train` keep the GPU busy? (issue 23) One run, on whatever GPU is here, side by side:

  * the pure-PyTorch limit: a ResNet50 train step (SGD, channels-last) on batches already on the GPU, fp32/TF32 and
    bf16 autocast: what the GPU can do when nothing waits for data;
  * `edgeres train` (the real CLI, its defaults: workers, pinned memory, prefetch, --amp auto) on a generated folder
    of JPEG files (default 10,000 train images at 224 px), per pipeline (--pipelines gpu cpu: the nvJPEG + batched
    GPU augmentation path and the PIL path it replaces);

as images/s and as a ratio to the bf16 limit. Rounds are interleaved (limit, then each train run, repeated); a train
run's figure is the median of its epochs after the first (the first holds cuDNN autotuning and worker start-up).
The goal: the gpu pipeline at >= 70 % of the bf16 limit.

    python benchmarks/bench_train_gpu.py                      # on a GPU host: the full run (about 3-4 min on an H200)
    python benchmarks/bench_train_gpu.py --device cpu --images 40 --size 32 --arch resnet18 --batch 8 --epochs 2
                                                              # a smoke run of the script on a CPU

Without a GPU (and without --device cpu) it says so and exits 0.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import cpu_flags, cpu_model, scratch_dir, write_csv

ROOT = Path(__file__).resolve().parents[1]


def _render(job):
    import numpy as np

    from edgeres.data.demo import render

    path, ci, seed, size = job
    if not os.path.exists(path):
        rng = np.random.default_rng([seed, ci, int(Path(path).stem)])
        tmp = path + ".tmp"
        render(ci, rng, size).save(tmp, format="JPEG", quality=90)
        os.replace(tmp, path)


def make_jpeg_folder(root: Path, images: int, size: int, classes: int = 10, val_share: float = 0.05) -> Path:
    """DIR/train and DIR/val of JPEG files (the demo's shapes, rendered at ``size``), made in parallel; reused."""
    from multiprocessing import Pool

    from edgeres.data.demo import CLASSES

    stamp = root / "made.json"
    spec = {"images": images, "size": size, "classes": classes}
    if stamp.exists() and json.loads(stamp.read_text()) == spec:
        return root
    jobs = []
    for split, n, seed in (("train", images, 0), ("val", max(classes, int(images * val_share)), 1)):
        for k in range(n):
            ci = k % classes
            d = root / split / CLASSES[ci]
            d.mkdir(parents=True, exist_ok=True)
            jobs.append((str(d / f"{k:06d}.jpg"), ci, seed, size))
    t0 = time.time()
    with Pool(min(32, os.cpu_count() or 1)) as pool:
        pool.map(_render, jobs, chunksize=64)
    stamp.write_text(json.dumps(spec))
    print(f"made {len(jobs)} JPEG files at {size} px in {time.time() - t0:.0f}s: {root}", flush=True)
    return root


def limit_ips(arch: str, size: int, batch: int, steps: int, amp: bool, device: str, classes: int = 10) -> float:
    """Images/s of a bare train step on batches already on ``device`` (nothing waits for data)."""
    import torch
    import torch.nn.functional as F
    import torchvision

    dev = torch.device(device)
    torch.backends.cudnn.benchmark = True
    torch.set_float32_matmul_precision("high")  # TF32 matmuls, as edgeres trains on CUDA
    model = getattr(torchvision.models, arch)(num_classes=classes).to(dev, memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, size, size, device=dev).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, classes, (batch,), device=dev)

    def step():
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    for _ in range(max(3, steps // 3)):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return batch * steps / (time.perf_counter() - t0)  # the model goes with this frame; the caller empties the cache


def train_ips(data: Path, out: Path, args, pipeline: str) -> tuple[float, dict]:
    """Steady images/s of the real `edgeres train` (median over the epochs after the first) and its last log row."""
    cmd = [sys.executable, "-m", "edgeres", "-q", "train", "--data", str(data), "--out", str(out), "--arch", args.arch,
           "--image-size", str(args.size), "--crop-ratio", "1.0", "--batch-size", str(args.batch),
           "--epochs", str(args.epochs), "--optimizer", "sgd", "--pipeline", pipeline, "--amp", args.amp]
    if args.workers is not None:
        cmd += ["--workers", str(args.workers)]
    env = dict(os.environ)
    if args.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    for p in (out, out.with_name(out.stem + ".last.pt")):
        p.unlink(missing_ok=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"edgeres train failed ({' '.join(cmd)}):\n{proc.stderr[-3000:]}")
    with open(out.with_name(out.stem + ".log.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    steady = [float(r["train_images_per_s"]) for r in rows[1:]] or [float(rows[0]["train_images_per_s"])]
    return statistics.median(steady), rows[-1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto",
                    help="auto: the GPU, or a note and exit 0 without one; cpu: a smoke run of the script")
    ap.add_argument("--images", type=int, default=10_000, help="training images in the generated JPEG folder")
    ap.add_argument("--size", type=int, default=224, help="image and training size (px)")
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=30, help="timed steps of the pure-PyTorch limit")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--pipelines", nargs="+", default=["gpu", "cpu"], choices=["gpu", "cpu", "dali"])
    ap.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp16", "off"])
    ap.add_argument("--workers", type=int, default=None, help="edgeres train --workers (default: its own default)")
    ap.add_argument("--data", type=Path, default=None, help="the JPEG folder (made there, or reused; default: temporary)")
    ap.add_argument("--out", default="benchmarks/results/train_gpu.csv")
    args = ap.parse_args()

    import torch

    if args.device == "auto":
        if not torch.cuda.is_available():
            print("no CUDA GPU here (torch.cuda.is_available() is False): nothing to measure. "
                  "Run this on a GPU host; --device cpu makes a smoke run of the script.")
            return 0
        args.device = "cuda"
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA GPU here", file=sys.stderr)
        return 1
    work = scratch_dir("edgeres-train-gpu-")
    data = make_jpeg_folder(args.data or work / "data", args.images, args.size)
    gpu = torch.cuda.get_device_name(0) if args.device == "cuda" else "none"
    results: dict = {}
    for rnd in range(args.rounds):
        for name, fn in [("pure PyTorch, GPU tensors, fp32/TF32", lambda: limit_ips(args.arch, args.size, args.batch,
                                                                                   args.steps, False, args.device)),
                         ("pure PyTorch, GPU tensors, bf16 autocast", lambda: limit_ips(args.arch, args.size,
                                                                                       args.batch, args.steps, True,
                                                                                       args.device))] + \
                [(f"edgeres train --pipeline {p} (--amp {args.amp})", lambda p=p: train_ips(data, work / f"m_{p}.pt", args, p)[0])
                 for p in args.pipelines]:
            ips = fn()
            if args.device == "cuda":
                torch.cuda.empty_cache()
            results.setdefault(name, []).append(ips)
            print(f"round {rnd + 1}/{args.rounds}: {name}: {ips:,.0f} images/s", flush=True)
    limit = statistics.median(results["pure PyTorch, GPU tensors, bf16 autocast"])
    rows = [{"row": name, "images_per_s": round(statistics.median(v), 1), "best": round(max(v), 1),
             "ratio_to_bf16_limit": round(statistics.median(v) / limit, 3), "rounds": len(v), "arch": args.arch,
             "size": args.size, "batch": args.batch, "images": args.images, "gpu": gpu,
             "cpu": f"{cpu_model()} ({len(os.sched_getaffinity(0))} cores)", "cpu_flags": cpu_flags(),
             "torch": torch.__version__} for name, v in results.items()]
    write_csv(args.out, rows)
    edge = [r for r in rows if "--pipeline gpu" in r["row"]]
    if edge and args.device == "cuda":
        ok = edge[0]["ratio_to_bf16_limit"] >= 0.7
        print(f"\n`edgeres train` (gpu pipeline) at {edge[0]['ratio_to_bf16_limit']:.0%} of the bf16 limit on {gpu}: "
              f"goal >= 70 % {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
