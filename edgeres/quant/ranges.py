"""Activation ranges set outside NNCF: KL-divergence (entropy) thresholds, TensorRT's calibrator, computed with ONNX
Runtime's EntropyCalibrater, written into the Q/DQ pairs NNCF placed."""

from __future__ import annotations

import numpy as np

from edgeres.onnx_graph import consumers as _consumers
from edgeres.quant.qdq import drop_unused_initializers


def entropy_amax(model, tensors: list, calib_arrays: np.ndarray, input_name: str, symmetric: bool) -> dict:
    """{tensor: (lo, hi)} by KL-divergence (entropy) calibration, ONNX Runtime's EntropyCalibrater, on the FP32
    model's tensors ``tensors`` (the ones the Q/DQ graph quantizes)."""
    import os
    import tempfile

    import onnx
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    from edgeres.calibration import ArrayDataReader

    with tempfile.TemporaryDirectory(prefix="edgeres-entropy-") as d:
        path = os.path.join(d, "fp32.onnx")
        onnx.save(model, path)
        cal = create_calibrator(path, None, augmented_model_path=os.path.join(d, "aug.onnx"),
                                calibrate_method=CalibrationMethod.Entropy,
                                extra_options={"symmetric": symmetric, "num_bins": 512, "num_quantized_bins": 128})
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):  # ORT prints its progress with print()
            cal.collect_data(ArrayDataReader(calib_arrays, input_name))
            data = cal.compute_data()
    out = {}
    for t in tensors:
        try:
            r = data[t]
        except KeyError:
            continue
        lo, hi = (float(np.asarray(v).reshape(-1)[0]) for v in r.range_value)
        out[t] = (lo, hi)
    return out


def set_activation_ranges(qmodel, ranges: dict, quant_format: str) -> int:
    """Write activation ranges {fp32 tensor: (lo, hi)} into the Q/DQ pairs that quantize those tensors (each pair
    gets its own scale/zero-point initializers). Signed symmetric for TensorRT, uint8 asymmetric for x86."""
    from onnx import numpy_helper

    inits = {i.name: i for i in qmodel.graph.initializer}
    consumers = _consumers(qmodel)
    n = 0
    for q in [x for x in qmodel.graph.node if x.op_type == "QuantizeLinear"]:
        src = q.input[0]
        if src in inits or src not in ranges:
            continue
        lo, hi = ranges[src]
        signed = quant_format == "trt-qdq" or (len(q.input) > 2 and q.input[2] in inits
                                                and numpy_helper.to_array(inits[q.input[2]]).dtype == np.int8)
        if signed:  # the Q keeps its output type: a signed one stays symmetric
            amax = max(abs(lo), abs(hi), 1e-8)
            scale, zp = np.float32(amax / 127.0), np.int8(0)
        else:
            lo, hi = min(lo, 0.0), max(hi, 1e-8)
            scale = np.float32((hi - lo) / 255.0)
            zp = np.uint8(np.clip(round(-lo / scale), 0, 255))
        s_name, z_name = f"{q.output[0]}_scale_set", f"{q.output[0]}_zp_set"
        qmodel.graph.initializer.extend([numpy_helper.from_array(np.asarray(scale), s_name),
                                         numpy_helper.from_array(np.asarray(zp), z_name)])
        for node in [q] + [c for c in consumers.get(q.output[0], []) if c.op_type == "DequantizeLinear"]:
            node.input[1], node.input[2] = s_name, z_name
        n += 1
    drop_unused_initializers(qmodel)
    return n
