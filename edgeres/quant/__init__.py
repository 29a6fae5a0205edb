"""INT8 post-training quantization of the ONNX graph with NNCF, per target.

* TensorRT targets (``trt-qdq``): every QuantizeLinear/DequantizeLinear signed INT8, symmetric, zero-point 0; weights
  per-channel (axis 0), activations per-tensor. NNCF's default gives UINT8 to post-ReLU activations, which
  onnx-tensorrt rejects: edgeres forces signed activations in NNCF's configuration. Residual Adds are then rewritten
  to TensorRT's placement rule: the Conv branch of an Add is left unquantized (TensorRT fuses Conv+Add and feeds the
  Add at the Conv's output precision), the skip branch keeps its Q/DQ.
* ``x86-cpu`` (``ort-u8s8``): ONNX Runtime's fast path: uint8 (asymmetric) activations, int8 per-channel weights.

Calibration methods: ``histogram`` (the default: MSE-optimal ranges from histograms), ``nncf-default`` (NNCF's own
range estimator), ``minmax``, ``mean-minmax``, ``percentile``, ``entropy`` (KL thresholds, TensorRT's calibrator,
2048 bins of |x|, 128 levels, on NNCF's Q/DQ placement). Fast bias correction is on by default.

The INT8 budget (``int8_max_drop``, points of top-1 against the FP32 export) is always measured on the file that
ships (the target's form: signed Q/DQ and the Add rule applied), on validation images calibration did not use. Over
budget, ``fallback`` is tried in order, stopping at the first that fits: ``methods`` (the other calibration methods,
the best kept), ``float`` (per-layer sensitivity on the shipped form; the most sensitive layers lose their Q/DQ and
run in floating point: FP16 on TensorRT, explicit FP16 casts for TensorRT 11's strongly typed networks, FP32 on x86),
``qat`` (quantization-aware fine-tuning). ``nncf_max_drop`` runs NNCF's own accuracy control instead (its
validation also sees the shipped form).

Modules, from the bottom up (each imports only those above it):

=================  ===============================================================================================
``settings``       ``QuantizeConfig``, the calibration methods and fallbacks, NNCF's settings per target
``qdq``            reads and clean-ups of a Q/DQ graph (summary, INT8 layers, dead nodes, unused initializers)
``trt_rules``      TensorRT's form: signed INT8 Q/DQ, the residual-Add placement
``x86_rules``      x86's form (ONNX Runtime / OpenVINO): exact rewrites, uint8 activations
``shipped_form``   ``finalize``: NNCF's graph brought to the target's form
``scoring``        logits, top-1, drop and MSE vs FP32 in ONNX Runtime
``ranges``         entropy (KL) activation ranges, TensorRT's calibrator, written into the Q/DQ pairs
``ptq``            one NNCF run (or NNCF's accuracy control) -> the shipped form; ``quantize_onnx``
``float_layers``   layers kept in floating point (FP32 or explicit FP16), MACs per layer
``sensitivity``    per-layer sensitivity table and plot
``qat``            quantization-aware fine-tuning written back into the Q/DQ graph
``budget``         ``quantize_within_budget``: PTQ, then methods / float layers / QAT until the budget holds
``run``            ``run_quantize``: calibration set and manifest, quantize, TensorRT cache, FP32 vs INT8 top-1
=================  ===============================================================================================
"""
