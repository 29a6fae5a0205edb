"""What an INT8 run is asked to do (``QuantizeConfig``: calibration method, budget, fallbacks) and the NNCF settings
that give each target its INT8 flavour (signed symmetric Q/DQ for TensorRT, u8s8 for x86)."""

from __future__ import annotations

from dataclasses import dataclass, field

from edgeres.errors import EdgeresError

METHODS = ("histogram", "nncf-default", "minmax", "mean-minmax", "percentile", "entropy")
# the calibration methods the budget tries, in order, when the first is over budget (the best one is kept)
BUDGET_METHODS = ("histogram", "percentile", "entropy", "minmax")
# what is tried, in order, when plain PTQ is over the INT8 budget; the first that fits stops the search
FALLBACKS = ("methods", "float", "qat")


@dataclass
class QuantizeConfig:
    method: str = "histogram"  # MSE-optimal ranges: on the demo it kept INT8 top-1 closest to FP32 (benchmarks/)
    subset_size: int = 512
    fast_bias_correction: bool = True
    # NNCF's bias correction, off by default: its fast form runs each layer's Q/DQ on a constant map of the input's
    # channel means (Q(mean x), not mean Q(x)), so the shift it writes into every bias is that constant's rounding
    # error, not the layer's mean error. On the benchmark's ResNets (8/14/20/32, demo ResNet50; 5,000 test images)
    # turning it off cut the logit MSE vs FP32 8-15x in both forms (ResNet-14 TensorRT form: -0.28 -> -0.08 point,
    # 45 -> 10 test images changing class). benchmarks/bench_int8_resnets.py, benchmarks/results/int8_resnets.csv.
    bias_correction: bool = False
    nncf_max_drop: float | None = None  # NNCF's own accuracy control (points of top-1) instead of the INT8 budget
    ignored_nodes: list = field(default_factory=list)
    signed_ranges: bool = False  # TensorRT form, histogram method: MSE-optimal ranges for the signed INT8 it ships
    trt_add_rule: bool = True  # rewrite residual Adds for TensorRT's Conv+Add fusion (trt-qdq only)
    int8_max_drop: float | None = None  # the INT8 budget: points of top-1 vs the FP32 export, on the shipped file
    fallback: tuple = FALLBACKS  # over budget: other calibration methods, float layers (sensitivity), QAT
    methods: tuple = BUDGET_METHODS
    max_float_macs_share: float = 0.5  # the float fallback gives up (QAT next) beyond this share of MACs in float
    sensitivity_images: int = 256  # a stratified subset for the per-layer sensitivity (the budget uses all images)
    qat_epochs: int = 1
    qat_lr: float = 1e-5


def quantize_settings(cfg) -> QuantizeConfig:
    """The QuantizeConfig of an `optimize` config (or of `edgeres quantize`'s flags, read into one): the one place the
    quantize options become the INT8 run's settings."""
    return QuantizeConfig(method=cfg.calib_method, subset_size=cfg.calib_size, int8_max_drop=cfg.int8_max_drop,
                          bias_correction=cfg.bias_correction, fallback=tuple(cfg.int8_fallback),
                          qat_epochs=cfg.qat_epochs)


def _range_estimator(method: str):
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    return {
        "minmax": RangeEstimatorParametersSet.MINMAX,
        "mean-minmax": RangeEstimatorParametersSet.MEAN_MINMAX,
        "percentile": RangeEstimatorParametersSet.MEAN_QUANTILE,
        "histogram": RangeEstimatorParametersSet.HISTOGRAM,
        "entropy": RangeEstimatorParametersSet.MINMAX,  # the placement; the ranges are then set by KL (entropy)
    }.get(method)


def nncf_settings(quant_format: str, cfg: QuantizeConfig) -> dict:
    """The keyword arguments for nncf.quantize that give the target's INT8 flavour."""
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters

    if cfg.method not in METHODS:
        raise EdgeresError(f"unknown calibration method {cfg.method!r}; choose one of {', '.join(METHODS)}")
    adv = AdvancedQuantizationParameters(disable_bias_correction=not cfg.bias_correction)
    if quant_format == "trt-qdq":
        # symmetric weights (signed int8, narrow range, per output channel) and symmetric per-tensor activations.
        # NNCF's hardware configs do not let activations be forced signed (signedness_to_force conflicts with every
        # HW config), so post-ReLU activations come out UINT8; force_signed_int8() rewrites them afterwards.
        preset = nncf.QuantizationPreset.PERFORMANCE
        device = nncf.TargetDevice.CPU
    elif quant_format == "ort-u8s8":
        preset = nncf.QuantizationPreset.MIXED  # symmetric int8 weights, asymmetric (uint8) activations
        device = nncf.TargetDevice.CPU
    else:
        raise EdgeresError(f"quantization format {quant_format!r} has no INT8 recipe (this target does not run INT8)")
    est = _range_estimator(cfg.method)
    if est is not None:
        adv.activations_range_estimator_params = est
    kw = dict(preset=preset, target_device=device, subset_size=cfg.subset_size,
              fast_bias_correction=cfg.fast_bias_correction, advanced_parameters=adv)
    if cfg.ignored_nodes:
        kw["ignored_scope"] = nncf.IgnoredScope(names=list(cfg.ignored_nodes))
    return kw
