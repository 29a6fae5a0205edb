"""Per-layer INT8 sensitivity on the shipped form (each quantized layer alone kept in float), as a table and a plot."""

from __future__ import annotations

import numpy as np
from edgeres_deploy.metrics import safe_row

from edgeres.quant.float_layers import keep_float
from edgeres.quant.qdq import int8_layers
from edgeres.quant.scoring import Scorer


def stratified_subset(y: np.ndarray, n: int, seed: int = 0) -> np.ndarray | None:
    """Sorted indices of about ``n`` images, the same number from each class (as far as each has them): the
    calibration set's stratified pick (round robin over classes, each shuffled with ``seed``) over image indices.
    None when there are no more than ``n`` images."""
    from edgeres.calibration import select_stratified

    if len(y) <= n:
        return None
    return np.sort(np.array(select_stratified(list(enumerate(np.asarray(y).tolist())), n, seed).paths))


def sensitivity(qmodel, fp32_model, score: Scorer, fp16: bool, macs: dict, n_images: int = 256, progress=None) -> list:
    """Per quantized layer, on the shipped form: the logit MSE against FP32 (and the top-1 drop) of the INT8 file with
    that layer alone kept in floating point, with the layer's share of the MACs. Most sensitive first: ranked by the
    logit MSE removed, which a few hundred images measure well where a top-1 difference is a handful of images.

    Each layer costs one pass over a class-stratified subset of ``n_images``, not over the whole validation set: the
    whole sensitivity table costs about (layers x n_images) image evaluations."""
    idx = stratified_subset(np.asarray(score.y), n_images)
    base = score(qmodel, idx)
    total = max(1, sum(macs.values()))
    rows = []
    layers = int8_layers(qmodel)
    for i, name in enumerate(layers):
        r = score(keep_float(qmodel, fp32_model, [name], fp16), idx)
        rows.append({"layer": name, "macs": macs.get(name, 0), "macs_share_pct": round(100 * macs.get(name, 0) / total, 3),
                     "drop_all_int8_points": round(base["drop"], 3), "drop_with_layer_float_points": round(r["drop"], 3),
                     "gain_points": round(base["drop"] - r["drop"], 3), "logit_mse_all_int8": base["mse"],
                     "logit_mse_with_layer_float": r["mse"], "mse_gain": base["mse"] - r["mse"]})
        if progress:
            progress(i + 1, len(layers), name)
    rows.sort(key=lambda r: (-r["mse_gain"], -r["gain_points"]))
    for k, r in enumerate(rows, 1):
        r["rank"] = k
    return rows


def write_sensitivity(rows: list, csv_path, png_path=None) -> None:
    """The sensitivity table as CSV and, when matplotlib is there, a bar plot (gain and MACs share per layer)."""
    import csv

    from edgeres.utils import atomic_path

    if not rows:
        return
    cols = ["rank", "layer", "macs", "macs_share_pct", "drop_all_int8_points", "drop_with_layer_float_points",
            "gain_points", "logit_mse_all_int8", "logit_mse_with_layer_float", "mse_gain", "kept_float"]
    with atomic_path(csv_path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(safe_row(r) for r in rows)
    if png_path is None:
        return
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    top = rows[:30]
    fig, ax = plt.subplots(figsize=(10, 0.28 * len(top) + 1.5))
    ys = np.arange(len(top))[::-1]
    ax.barh(ys, [r["mse_gain"] for r in top], color=["tab:red" if r.get("kept_float") else "tab:blue" for r in top])
    def short(name):  # /layer1/layer1.0/conv1/Conv -> layer1.0/conv1
        parts = name.strip("/").split("/")[:-1]
        keep = [p for i, p in enumerate(parts) if not (i + 1 < len(parts) and parts[i + 1].startswith(p + "."))]
        return "/".join(keep) or name

    ax.set_yticks(ys, [f"{short(r['layer'])} ({r['macs_share_pct']:.1f}% MACs, {r['gain_points']:+.2f} pt)" for r in top],
                  fontsize=7)
    ax.set_xlabel("logit MSE removed when the layer alone is kept float (red: kept float in the shipped file)")
    ax.set_title("INT8 sensitivity per layer (shipped form, held-out images)")
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
