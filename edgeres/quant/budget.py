"""INT8 within a budget (``int8_max_drop`` points of top-1 against the FP32 export), always measured on the file that
ships, on validation images calibration did not use. Over budget, ``fallback`` is tried in order, stopping at the
first that fits: ``methods`` (the other calibration methods, the best kept), ``float`` (per-layer sensitivity on the
shipped form; the most sensitive layers lose their Q/DQ and run in floating point: FP16 on TensorRT, explicit FP16
casts for TensorRT 11's strongly typed networks, FP32 on x86), ``qat`` (edgeres.quant.qat)."""

from __future__ import annotations

import dataclasses
import time
from itertools import accumulate

from edgeres.errors import EdgeresError
from edgeres.quant.float_layers import keep_float, layer_macs
from edgeres.quant.ptq import load_fp32, ptq
from edgeres.quant.qdq import qdq_summary
from edgeres.quant.scoring import Scorer
from edgeres.quant.sensitivity import sensitivity, write_sensitivity
from edgeres.quant.settings import FALLBACKS, QuantizeConfig


def smallest_fitting(n: int, fits) -> int | None:
    """The smallest k in [1, n] with ``fits(k)``, by bisection: ``fits`` is taken as monotone in k (more layers kept
    float, less loss), so ``n`` is tried first (if it does not fit, nothing smaller will) and then the interval is
    halved. At most 1 + ceil(log2 n) calls, where a walk over k pays one call per step. None if ``n`` does not fit."""
    if n < 1 or not fits(n):
        return None
    lo, hi = 0, n  # fits(hi) is known true; fits(lo) is taken as false (k = 0 is the all-INT8 file, over budget)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            hi = mid
        else:
            lo = mid
    return hi


class _Search:
    """One budget search: the candidates measured (``attempts``), the best file so far (``best``: (attempt, qmodel)),
    the best all-INT8 file (``best_int8``: where QAT starts), the sensitivity table and the layers kept in float."""

    def __init__(self, model, input_name, target, calib_arrays, cfg: QuantizeConfig, score: Scorer, log):
        self.model, self.input_name, self.target, self.calib_arrays = model, input_name, target, calib_arrays
        self.cfg, self.score, self.log, self.budget = cfg, score, log, cfg.int8_max_drop
        self.fp16 = target.runtime == "tensorrt" and (target.trt_family or 0) >= 11 and "fp16" in target.precisions
        self.attempts, self.t0 = [], time.time()
        self.sens_rows, self.chosen_float = [], []
        self.macs = layer_macs(model)
        self.best = self.best_int8 = None

    def attempt(self, path, qm, **extra) -> dict:
        r = self.score(qm)
        a = {"path": path, "top1": r["top1"], "drop": r["drop"], "mse": r["mse"],
             "seconds": round(time.time() - self.t0, 1), **extra}
        self.attempts.append(a)
        self.log(f"INT8 {path}: top-1 {r['top1']:.2f}% vs FP32 {self.score.top1_fp32:.2f}% ({0.0 - r['drop']:+.2f} "
                 f"points, budget {self.budget})")
        return a

    def fits(self, a) -> bool:
        return a["drop"] <= self.budget + 1e-9

    def better(self, a) -> bool:
        return (a["drop"], a["mse"]) < (self.best[0]["drop"], self.best[0]["mse"])

    def ptq(self, method: str):
        cfg = self.cfg if method == self.cfg.method else dataclasses.replace(self.cfg, method=method)
        return ptq(self.model, self.target, self.calib_arrays, cfg, self.input_name)

    def first(self) -> dict:
        qmodel, info = self.ptq(self.cfg.method)
        self.best = self.best_int8 = (self.attempt(f"ptq-{self.cfg.method}", qmodel, method=self.cfg.method), qmodel)
        return info

    def try_methods(self) -> None:
        for meth in [m for m in self.cfg.methods if m != self.cfg.method]:
            qm, _ = self.ptq(meth)
            a = self.attempt(f"ptq-{meth}", qm, method=meth)
            if self.better(a):
                self.best = self.best_int8 = (a, qm)

    def try_float(self) -> None:
        base_a, base_q = self.best
        log, macs = self.log, self.macs
        log("INT8 over budget: per-layer sensitivity on the shipped form ...")
        self.sens_rows = sensitivity(base_q, self.model, self.score, self.fp16, macs, self.cfg.sensitivity_images,
                                     lambda i, n, name: log(f"  sensitivity {i}/{n} {name}") if i % 10 == 0 or i == n
                                     else None)
        total = max(1, sum(macs.values()))
        order = [r["layer"] for r in self.sens_rows]
        shares = [m / total for m in accumulate((macs.get(x, 0) for x in order), initial=0)]  # k layers: shares[k]
        kmax = max(k for k in range(len(order) + 1) if shares[k] <= self.cfg.max_float_macs_share)
        tried: dict = {}

        def fits(k: int) -> bool:  # one full validation pass: the k most sensitive layers kept float
            qm = keep_float(base_q, self.model, order[:k], self.fp16)
            tried[k] = (self.attempt(f"ptq-{base_a.get('method', self.cfg.method)}+float", qm,
                                     method=base_a.get("method"), float_layers=order[:k], float_macs_share=shares[k]),
                        qm)
            return self.fits(tried[k][0])

        if kmax == 0:
            log(f"INT8 over budget: the most sensitive layer alone is over {self.cfg.max_float_macs_share:.0%} of the "
                "MACs (max_float_macs_share); no layer kept float")
            return
        k = smallest_fitting(kmax, fits)
        log(f"INT8 float fallback: {len(tried)} full evaluations for {len(order)} layers (bisection over the "
            f"{kmax} most sensitive within {self.cfg.max_float_macs_share:.0%} of the MACs)")
        if k is None:  # even kmax is over budget: keep it only if it is better than the all-INT8 file
            k = kmax
            if not self.better(tried[k][0]):
                return
        self.best, self.chosen_float = tried[k], order[:k]

    def try_qat(self, qat) -> None:
        if qat is None:
            self.log("INT8 over budget: QAT skipped (no PyTorch model or training images given)")
            self.attempts.append({"path": "qat", "skipped": "no PyTorch model or training images"})
            return
        base, base_q = self.best_int8  # QAT starts from the best all-INT8 file (no float layers)
        self.log("INT8 over budget: quantization-aware fine-tuning (FP32 model as teacher) ...")
        try:
            qm, qinfo = qat(base_q)
        except EdgeresError as e:  # e.g. a TorchScript model, no training split: QAT cannot run, say why
            self.log(f"INT8 over budget: QAT skipped ({e})")
            self.attempts.append({"path": "qat", "skipped": str(e)})
            return
        a = self.attempt("qat", qm, method=base.get("method"), qat=qinfo)
        if self.better(a) or self.fits(a):
            self.best, self.chosen_float = (a, qm), []

    def run(self, qat) -> dict:
        """Plain PTQ, then the fallbacks in order until one fits. Returns the first PTQ's info."""
        info = self.first()
        for step in self.cfg.fallback:
            if self.fits(self.best[0]):
                break
            if step == "methods":
                self.try_methods()
            elif step == "float":
                self.try_float()
            elif step == "qat":
                self.try_qat(qat)
            elif step not in FALLBACKS and step != "none":
                raise EdgeresError(f"unknown INT8 fallback {step!r}; choose from {', '.join(FALLBACKS)}")
        return info

    def report(self) -> dict:
        """The report's ``budget`` entry for the file chosen."""
        final_a = self.best[0]
        total = max(1, sum(self.macs.values()))
        return {"max_drop_points": self.budget, "within": self.fits(final_a), "path": final_a["path"],
                "method": final_a.get("method"), "top1_fp32": self.score.top1_fp32, "top1_int8": final_a["top1"],
                "drop_points": final_a["drop"], "float_layers": self.chosen_float,
                "float_macs_share": sum(self.macs.get(x, 0) for x in self.chosen_float) / total,
                "fp16_casts": self.fp16 and bool(self.chosen_float), "validation_images": len(self.score.y),
                "evaluations": self.score.evals, "seconds": round(time.time() - self.t0, 1),
                "attempts": self.attempts}


def quantize_within_budget(fp32_path, out_path, target, calib_arrays, val_x, val_y, cfg: QuantizeConfig,
                           qat=None, log=None) -> dict:
    """INT8 within ``cfg.int8_max_drop`` points of the FP32 export, measured on the file that ships.

    Plain PTQ first; over budget, in the order of ``cfg.fallback``, stopping at the first that fits:
    ``methods`` (the other calibration methods, the best kept), ``float`` (per-layer sensitivity on the shipped form,
    the most sensitive layers kept in floating point, FP16 casts for TensorRT 11), ``qat`` (``qat``: a callable
    qmodel -> fine-tuned qmodel, see edgeres.quant.qat). Writes ``out_path``, and the sensitivity table next to it.
    """
    import onnx

    from edgeres.utils import atomic_path

    model, input_name = load_fp32(fp32_path, target, calib_arrays)
    if val_x is None or len(val_x) == 0:
        raise EdgeresError("the INT8 budget (--int8-max-drop) needs validation images that calibration did not use (--data)")
    search = _Search(model, input_name, target, calib_arrays, cfg, Scorer(model, val_x, val_y), log or (lambda s: None))
    info = search.run(qat)
    qmodel = search.best[1]
    for r in search.sens_rows:
        r["kept_float"] = r["layer"] in search.chosen_float
    onnx.checker.check_model(qmodel)
    with atomic_path(out_path) as tmp:
        onnx.save(qmodel, str(tmp))
    paths = {}
    if search.sens_rows:
        paths = {"sensitivity_csv": f"{out_path}.sensitivity.csv", "sensitivity_png": f"{out_path}.sensitivity.png"}
        write_sensitivity(search.sens_rows, paths["sensitivity_csv"], paths["sensitivity_png"])
    return {"format": target.quant_format, "summary": qdq_summary(qmodel), "adds_rewritten": info["adds_rewritten"],
            "signed_rewrites": info["signed_rewrites"], "accuracy_control": None, "budget": search.report(), **paths}


def path_label(b: dict) -> str:
    """Which path produced the file, in words: plain PTQ, another calibration method, layers kept float, or QAT."""
    path, method = b["path"], b.get("method")
    first = next((a["path"] for a in b.get("attempts", []) if not a.get("skipped")), path)
    if path == "qat":
        return f"QAT (fine-tuned from the {method} PTQ file)"
    if path.endswith("+float"):
        prec = "FP16" if b.get("fp16_casts") else "float"
        return f"{len(b['float_layers'])} layers kept {prec} ({method} calibration)"
    if path == first:
        return f"plain PTQ ({method} calibration)"
    return f"calibration method {method} (the first, {first.removeprefix('ptq-')}, was over budget)"


def budget_note(b: dict) -> str:
    """One line for the report: the measured drop, which path produced the file, the layers kept in float and their
    MACs share, and the images it was measured on."""
    s = (f"INT8 path: {path_label(b)}, {'within' if b['within'] else 'OVER'} the {b['max_drop_points']}-point budget: "
         f"{0.0 - b['drop_points']:+.2f} points vs FP32 on "
         f"{b.get('validation_source') or str(b['validation_images']) + ' held-out images'}")
    skipped = [f"{a['path']} skipped: {a['skipped']}" for a in b.get("attempts", []) if a.get("skipped")]
    if skipped and not b["within"]:
        s += "; " + "; ".join(skipped)
    if b["float_layers"]:
        s += (f"; {100 * b['float_macs_share']:.1f}% of MACs not INT8: "
              + ", ".join(b["float_layers"][:6]) + (" ..." if len(b["float_layers"]) > 6 else ""))
    return s
