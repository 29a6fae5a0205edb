"""report.png: top-1 vs latency per runtime (the baseline as reference, the recommendation marked, proxy latencies
hollow and said so, rows measured on a device named), and MACs, artifact size and peak memory per stage."""

from __future__ import annotations

from edgeres.report_table import is_proxy, measured_devices, short_device
from edgeres.stage_names import BASELINE
from edgeres.utils import atomic_path


def _label(r: dict) -> str:
    return f"{r['stage']} {r['runtime'] or ''} {r['precision'] or ''}".strip()


def _per_stage(rows: list, col: str, prefer=("onnxruntime", "tensorrt", "torch")) -> list:
    """One (label, value) per stage for ``col``: the row of the deployable runtime when there is one."""
    out = []
    for stage in dict.fromkeys(r["stage"] for r in rows):
        have = [r for r in rows if r["stage"] == stage and r["status"] == "ok" and r.get(col) is not None]
        if have:
            have.sort(key=lambda r: prefer.index(r["runtime"]) if r["runtime"] in prefer else len(prefer))
            out.append((f"{stage}\n{have[0]['runtime']} {have[0]['precision'] or ''}".strip(), have[0][col]))
    return out


MARKERS = {"torch": "o", "onnxruntime": "s", "openvino": "D", "tensorrt": "*", "edgeres_deploy": "P"}
COLOURS = dict(zip(MARKERS, ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")))


def _points(ax, ok: list, rec: dict, target: dict | None) -> list:
    """One marker per measured row (hollow for a proxy latency), labelled (with the device it was measured on); the
    recommendation ringed. Returns the proxy rows."""
    seen, proxies = set(), []
    for r in ok:
        rt = r["runtime"] or "?"
        proxy = is_proxy(r, target)
        kw = {"marker": MARKERS.get(rt, "x"), "s": 90 if rt == "tensorrt" else 55, "zorder": 3,
              "label": rt if rt not in seen else None}
        seen.add(rt)
        c = COLOURS.get(rt, "black")
        if proxy:
            ax.scatter(r["latency_p50_ms"], r["top1"], facecolors="none", edgecolors=c, linewidths=1.6, **kw)
            proxies.append(r)
        else:
            ax.scatter(r["latency_p50_ms"], r["top1"], color=c, **kw)
        near = sum(1 for q in ok[: ok.index(r)] if abs(q["top1"] - r["top1"]) < 0.02 * max(1.0, abs(r["top1"])))
        on = f" on {short_device(r['device'])}" if r.get("device") and "[measured on the device]" in (r.get("note") or "") else ""
        ax.annotate(f"{r['stage']} {r['precision'] or ''}" + (" (proxy)" if proxy else "") + on,
                    (r["latency_p50_ms"], r["top1"]), fontsize=8, xytext=(5, 5 - 11 * near), textcoords="offset points")
        if rec.get("artifact") and r["stage"] == rec.get("stage") and rt == rec.get("runtime") \
                and r["precision"] == rec.get("precision"):
            ax.scatter(r["latency_p50_ms"], r["top1"], s=420, facecolors="none", edgecolors="crimson", linewidths=2.2,
                       zorder=4, label="recommended")
            ax.annotate("recommended", (r["latency_p50_ms"], r["top1"]), fontsize=9, color="crimson",
                        fontweight="bold", xytext=(8, -16), textcoords="offset points")
    return proxies


def _limits(ax, ok: list, proxies: list) -> None:
    """Room below the points for the proxy note, the x axis from 0 so ratios read true (log when runtimes are an
    order of magnitude apart)."""
    lo, hi = min(r["top1"] for r in ok), max(r["top1"] for r in ok)
    span = max(hi - lo, 2.0)
    ax.set_ylim(lo - (0.55 if proxies else 0.15) * span, hi + 0.15 * span)
    xs = [r["latency_p50_ms"] for r in ok if r["latency_p50_ms"] > 0]
    if xs and max(xs) / min(xs) > 8:
        ax.set_xscale("log")
        ax.set_xlim(min(xs) / 1.5, max(xs) * 1.8)
    else:
        ax.set_xlim(0, max(r["latency_p50_ms"] for r in ok) * 1.12)


def _accuracy_panel(ax, ok: list, rec: dict, target: dict | None) -> None:
    """Top panel: top-1 vs latency p50 per runtime."""
    base = next((r for r in ok if r["stage"] == BASELINE and r["runtime"] == "torch"), None)
    if base is not None:
        ax.axhline(base["top1"], color="grey", ls="--", lw=1)
        ax.annotate(f"baseline top-1 {base['top1']:.1f}%", (0.005, base["top1"]), xycoords=("axes fraction", "data"),
                    ha="left", va="top", fontsize=8, color="grey", xytext=(0, -3), textcoords="offset points")
    proxies = _points(ax, ok, rec, target)
    if ok:
        _limits(ax, ok, proxies)
    if proxies:
        ax.text(0.01, 0.03, "hollow markers: CPU latency of the TensorRT-form INT8 ONNX (ONNX Runtime on this host) -\n"
                "a proxy only, not the Jetson engine's latency; measure it on the device (./run.sh bench)",
                transform=ax.transAxes, fontsize=8.5, color="darkred", va="bottom",
                bbox={"boxstyle": "round", "fc": "mistyrose", "ec": "darkred", "alpha": 0.9})
    bs = ok[0]["batch_size"] if ok else "?"
    where = "on this host; solid TensorRT points on the device" if measured_devices(ok) else "on this host"
    ax.set_xlabel(f"latency p50 {where} (ms, batch {bs}{', log scale' if ax.get_xscale() == 'log' else ''}); "
                  "lower is better")
    ax.set_ylabel("validation top-1 (%)")
    ax.set_title("accuracy vs latency per runtime")
    ax.grid(alpha=0.3)
    if ok:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.005, 1.0), borderaxespad=0)


def _bar_panels(fig, gs, rows: list) -> dict:
    """Bottom panels: MACs, artifact size and peak memory per stage; returns {title: [(label, value)]}."""
    drawn = {}
    for k, (col, title, scale) in enumerate((("macs", "MACs (G)", 1e-9), ("model_size_mb", "artifact size (MB)", 1),
                                              ("peak_rss_mb", "peak memory, RSS (MB)", 1))):
        a = fig.add_subplot(gs[1, k])
        data = _per_stage(rows, col)
        drawn[title] = data
        if data:
            bars = a.bar(range(len(data)), [v * scale for _, v in data], color="tab:blue")
            a.bar_label(bars, fmt="%.3g", fontsize=7)
            a.set_xticks(range(len(data)), [lbl for lbl, _ in data], fontsize=7, rotation=30, ha="right")
        else:
            a.text(0.5, 0.5, "not measured", ha="center", va="center", transform=a.transAxes)
            a.set_xticks([])
        a.set_title(title, fontsize=10)
        a.grid(axis="y", alpha=0.3)
    return drawn


def plot(rows: list, path, recommendation: dict | None = None, target: dict | None = None) -> dict:
    """Top: top-1 vs latency p50, one marker per runtime, the baseline as reference, the recommendation marked,
    proxy latencies (TensorRT-form INT8 ONNX timed on this CPU) hollow and said so in the plot.
    Bottom: MACs, artifact size and peak memory per stage.

    Returns what was drawn: {"texts": [...], "panels": [titles], "bars": {title: [(label, value)]}}.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r["status"] == "ok" and r.get("latency_p50_ms") is not None and r.get("top1") is not None]
    fig = plt.figure(figsize=(12, 8.2))
    gs = fig.add_gridspec(2, 3, height_ratios=(1.35, 1), hspace=0.55, wspace=0.35)
    ax = fig.add_subplot(gs[0, :])
    _accuracy_panel(ax, ok, recommendation or {}, target)
    bars_drawn = _bar_panels(fig, gs, rows)
    fig.subplots_adjust(left=0.07, right=0.88, top=0.95, bottom=0.13)
    drawn = {"texts": [t.get_text() for a in fig.axes for t in a.texts]
             + [t.get_text() for t in (ax.get_legend().get_texts() if ax.get_legend() else [])],
             "panels": [a.get_title() for a in fig.axes], "bars": bars_drawn}
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return drawn
