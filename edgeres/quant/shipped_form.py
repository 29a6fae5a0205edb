"""The file that ships: NNCF's Q/DQ graph brought to the target's form by its graph rules (edgeres.quant.trt_rules,
edgeres.quant.x86_rules)."""

from __future__ import annotations

from edgeres.quant.settings import QuantizeConfig
from edgeres.quant.trt_rules import apply_trt_add_rule, force_signed_int8
from edgeres.quant.x86_rules import apply_x86_rules


def finalize(qmodel, target, cfg: QuantizeConfig) -> dict:
    """Bring NNCF's Q/DQ graph to the target's shipped form, in place: signed INT8 and TensorRT's residual-Add
    placement for TensorRT targets; uint8 activations, a quantized MaxPool output and no Relu before a Q for x86
    (edgeres.quant.x86_rules). Returns {"signed_rewrites", "adds_rewritten", "x86_rules"}."""
    signed = force_signed_int8(qmodel) if target.quant_format == "trt-qdq" else 0
    adds = apply_trt_add_rule(qmodel) if target.quant_format == "trt-qdq" and cfg.trt_add_rule else []
    x86_rules = {}
    if target.quant_format == "ort-u8s8":  # exact rewrites: uint8 activations, quantized MaxPool output, no Relu before Q
        x86_rules = apply_x86_rules(qmodel)
    return {"signed_rewrites": signed, "adds_rewritten": len(adds), "x86_rules": x86_rules}
