"""`edgeres evaluate` and `edgeres bench`: accuracy and measurement of any artifact through its runtime."""

from __future__ import annotations

from edgeres.errors import EdgeresError, Unavailable
from edgeres.measure import MeasureConfig, measure
from edgeres.metrics import per_class_accuracy, run_logits, topk_accuracy
from edgeres.runtimes import artifact_info, load_runtime, runtimes_for


def check_classes(artifact, model_classes: list, data_classes: list, n_outputs: int | None) -> None:
    if n_outputs is not None and n_outputs != len(data_classes):
        raise EdgeresError(f"{artifact} has {n_outputs} outputs but the data has {len(data_classes)} classes; "
                           "use data with the classes it was trained on")
    real = [c for c in model_classes if not c.startswith("class_")]
    if real and list(model_classes) != list(data_classes):
        raise EdgeresError(f"{artifact} was trained on classes {model_classes[:4]}... but the data has {data_classes[:4]}...")


def evaluate_artifact(artifact, data, pre, runtime: str | None = None, split: str = "val", batch_size: int = 32,
                      num_classes: int | None = None, trust_model: bool = False, skip_corrupt: bool = False,
                      progress: bool = True) -> dict:
    from edgeres.data import resolve_data

    splits = resolve_data(data)
    samples = splits.val if split == "val" else splits.train
    if not samples:
        from edgeres.data.folder import no_split_line

        raise EdgeresError(no_split_line(data, split))
    if num_classes is not None and num_classes != len(splits.classes):
        raise EdgeresError(f"--num-classes {num_classes} but {data} has {len(splits.classes)} classes")
    name = runtime or runtimes_for(artifact)[0]
    info = artifact_info(artifact, trust_model=trust_model)
    try:
        rt = load_runtime(name, artifact, trust_model=trust_model)
    except Unavailable as e:
        raise Unavailable(f"cannot evaluate {artifact} with {name}: {e}") from None
    with rt:
        logits, targets = run_logits(rt, samples, pre, batch_size, progress="evaluate" if progress else None,
                                     skip_corrupt=skip_corrupt)
    check_classes(artifact, info.classes, splits.classes, logits.shape[1])
    acc = topk_accuracy(logits, targets, (1, 5))
    return {"artifact": str(artifact), "runtime": name, "precision": rt.precision, "images": int(len(targets)),
            "top1": acc["top1"], "top5": acc["top5"], "per_class": per_class_accuracy(logits, targets, splits.classes),
            "preprocess": pre.to_dict()}


def bench_artifact(artifact, pre, data=None, runtimes=None, batch_sizes=(1,), threads=None, min_time_s: float = 2.0,
                   memory: bool = True, trust_model: bool = False, stage: str = "bench", progress: bool = True) -> list:
    from edgeres.data import resolve_data

    samples = None
    if data:
        splits = resolve_data(data)
        samples = splits.val
    cfg = MeasureConfig(batch_sizes=tuple(batch_sizes), threads=threads, min_time_s=min_time_s, memory=memory,
                        options={"trust_model": trust_model} if trust_model else {})
    rows = []
    for name in runtimes or runtimes_for(artifact):
        rows += measure(stage, artifact, name, pre, samples, cfg, progress=progress).rows
    return rows
