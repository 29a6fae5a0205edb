"""Scoring a candidate INT8 graph in ONNX Runtime (CPU): its logits, its top-1, and its drop and logit MSE against the
FP32 export on held-out validation images."""

from __future__ import annotations

import numpy as np

from edgeres.quant.settings import QuantizeConfig
from edgeres.quant.shipped_form import finalize


def logits_fn(val_arrays, batch: int = 32):
    """model -> its logits on ``val_arrays`` in ONNX Runtime (CPU)."""
    import onnxruntime as ort

    from edgeres.metrics import run_padded

    def logits(model) -> np.ndarray:
        so = ort.SessionOptions()
        so.log_severity_level = 3
        sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        fixed = sess.get_inputs()[0].shape[0]
        out = []
        step = fixed if isinstance(fixed, int) else batch
        for i in range(0, len(val_arrays), step):
            x = val_arrays[i : i + step]
            out.append(run_padded(lambda b: sess.run(None, {name: b})[0], x, fixed if isinstance(fixed, int) else None))
        return np.concatenate(out)

    return logits


def top1_fn(val_arrays, val_targets, batch: int = 32, finalize_for=None, cfg=None):
    """model -> top-1 (fraction) in ONNX Runtime. With ``finalize_for`` (a target) the model is first brought to
    that target's shipped form (signed INT8, residual-Add rule): what NNCF's accuracy control validates is then the
    file that ships, not NNCF's intermediate graph."""
    logits = logits_fn(val_arrays, batch)

    def validate(model, _items=None) -> float:
        if finalize_for is not None:
            import copy

            model = copy.deepcopy(model)
            finalize(model, finalize_for, cfg or QuantizeConfig())
        return float((logits(model).argmax(1) == val_targets).mean())

    return validate


class Scorer:
    """Top-1 and logit MSE of a candidate file against the FP32 export, on held-out validation images."""

    def __init__(self, fp32_model, val_x, val_y):
        self.x, self.y = val_x, val_y
        self.logits = logits_fn(val_x)
        self.ref = self.logits(fp32_model)
        self.top1_fp32 = float((self.ref.argmax(1) == val_y).mean() * 100)
        self.evals = 0

    def __call__(self, model, idx=None) -> dict:
        self.evals += 1
        if idx is None:
            lg, ref, y = self.logits(model), self.ref, self.y
        else:
            lg, ref, y = logits_fn(self.x[idx])(model), self.ref[idx], self.y[idx]
        top1 = float((lg.argmax(1) == y).mean() * 100)
        return {"top1": top1, "drop": float((ref.argmax(1) == y).mean() * 100) - top1,
                "mse": float(np.mean((lg - ref) ** 2))}
