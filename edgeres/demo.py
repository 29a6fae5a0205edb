"""`edgeres demo`: the main job on the embedded default — demo data, a short ResNet50 training, `optimize --target jetson`.

The recipe (see DEMO below) is sized so that the README's first command, install included, finishes in about
12 minutes on a 2-core x86 CPU with a baseline a user can trust (92.7 % validation top-1 on 100 images per class here),
while pruning and INT8 effects stay visible.

Every step resumes: the data is not rewritten, a finished training is reused (an interrupted one resumes), and the
pipeline reuses its unchanged stages.
"""

from __future__ import annotations

import logging
from pathlib import Path

from edgeres.errors import EdgeresError

_log = logging.getLogger(__name__)

# the demo's recipe, in one place (the CLI's defaults read it)
DEMO = {"epochs": 6, "image_size": 48, "train_per_class": 200, "val_per_class": 100, "batch_size": 16, "lr": 2e-3,
        "min_scale": 0.7}


def run_demo(out="runs/demo", epochs: int = DEMO["epochs"], image_size: int = DEMO["image_size"],
             train_per_class: int = DEMO["train_per_class"], val_per_class: int = DEMO["val_per_class"],
             arch: str = "resnet50", data=None, make_config=None, force: tuple = (), log=None) -> dict:
    from edgeres.data import Preprocess, data_hash, resolve_data
    from edgeres.data.demo import make_demo
    from edgeres.models import load_model
    from edgeres.pipeline import OptimizeConfig, optimize
    from edgeres.train.config import TrainConfig
    from edgeres.train.transfer import train_model

    say = log or _log.info
    out = Path(out)
    data = Path(data) if data else out / "data"
    if not (data / "train").is_dir() or not (data / "labels.txt").exists():
        say(f"[demo] writing the demo dataset to {data}")
        make_demo(data, train_per_class, val_per_class)
    splits = resolve_data(data)
    model = out / "model.pt"
    # augmentation stays on (random resized crop, flip, rotation, colour jitter): without it a ResNet50 memorises
    # 2,000 images; warm-up then cosine decay; label smoothing 0.1; --amp (bf16 on a GPU or on CPUs with AMX/AVX-512 BF16)
    base = {"model": str(model), "data": str(data), "out": str(out), "target": "jetson"}
    ocfg = make_config(base) if make_config else OptimizeConfig(**base)
    cfg = TrainConfig(epochs=epochs, batch_size=DEMO["batch_size"], lr=DEMO["lr"], min_scale=DEMO["min_scale"],
                      warmup_epochs=0.5, amp=ocfg.amp, pipeline=ocfg.pipeline, workers=ocfg.workers)
    done = False
    if model.exists():
        try:
            meta = load_model(model).meta
            done = (meta.data_hash == data_hash(splits) and meta.extra.get("train", {}).get("epochs") == epochs
                    and meta.extra.get("train", {}).get("lr") == cfg.lr
                    and meta.preprocess.get("size") == image_size and meta.arch == arch
                    and not model.with_name("model.last.pt").exists())
        except EdgeresError:
            done = False
    if done:
        say(f"[demo] {model} is trained already (top-1 {load_model(model).meta.extra.get('val_top1', float('nan')):.2f}%), reused")
    else:
        last = model.with_name("model.last.pt")
        say(f"[demo] training a {arch} from scratch on {splits.describe()} for {epochs} epochs at {image_size} px")
        res = train_model(data, model, arch=arch, pre=Preprocess(size=image_size), cfg=cfg, resume=last.exists())
        last.unlink(missing_ok=True)  # training finished: the resume file is not needed
        say(f"[demo] trained: best val top-1 {res['best_top1']:.2f}% in {res['seconds']:.0f}s")
    return optimize(ocfg, force, log)
