"""`edgeres demo`: the main job on the embedded default — demo data, a short ResNet50 training, `optimize --target jetson`.

Every step resumes: the data is not rewritten, a finished training is reused (an interrupted one resumes), and the
pipeline reuses its unchanged stages.
"""

from __future__ import annotations

from pathlib import Path

from edgeres.errors import EdgeresError


def run_demo(out="runs/demo", epochs: int = 10, image_size: int = 64, train_per_class: int = 100, val_per_class: int = 50,
             arch: str = "resnet50", data=None, make_config=None, force: tuple = (), log=print) -> dict:
    from edgeres.data import Preprocess, data_hash, resolve_data
    from edgeres.data.demo import make_demo
    from edgeres.models import load_model
    from edgeres.pipeline import OptimizeConfig, optimize
    from edgeres.stages.train import TrainConfig, train_model

    out = Path(out)
    data = Path(data) if data else out / "data"
    if not (data / "train").is_dir() or not (data / "labels.txt").exists():
        log(f"[demo] writing the demo dataset to {data}")
        make_demo(data, train_per_class, val_per_class)
    splits = resolve_data(data)
    model = out / "model.pt"
    cfg = TrainConfig(epochs=epochs, batch_size=32, lr=1e-3, min_scale=0.7)
    done = False
    if model.exists():
        try:
            meta = load_model(model).meta
            done = (meta.data_hash == data_hash(splits) and meta.extra.get("train", {}).get("epochs") == epochs
                    and meta.preprocess.get("size") == image_size and meta.arch == arch
                    and not model.with_name("model.last.pt").exists())
        except EdgeresError:
            done = False
    if done:
        log(f"[demo] {model} is trained already (top-1 {load_model(model).meta.extra.get('val_top1', float('nan')):.2f}%), reused")
    else:
        last = model.with_name("model.last.pt")
        log(f"[demo] training a {arch} on {splits.describe()} for {epochs} epochs at {image_size} px")
        res = train_model(data, model, arch=arch, pre=Preprocess(size=image_size), cfg=cfg, resume=last.exists())
        last.unlink(missing_ok=True)  # training finished: the resume file is not needed
        log(f"[demo] trained: best val top-1 {res['best_top1']:.2f}% in {res['seconds']:.0f}s")
    base = {"model": str(model), "data": str(data), "out": str(out), "target": "jetson"}
    ocfg = make_config(base) if make_config else OptimizeConfig(**base)
    return optimize(ocfg, force, log)
