"""Entropy (KL) calibration as TensorRT's IInt8EntropyCalibrator2 computes it, checked against a direct, loop-by-loop
implementation of the algorithm in Migacz's GTC 2017 slides (pytorch-quantization's ``_compute_amax_entropy``
levels: bin j of i goes to level floor(j * 128 / i), Q spread over the non-empty bins only)."""

import numpy as np
import pytest
from scipy.stats import entropy

from edgeres.quant.ranges import entropy_amax, kl_threshold_bin


def reference_kl_bin(hist, start=128, levels=128):
    hist = [float(h) for h in hist]
    best, best_kl = None, np.inf
    for i in range(start, len(hist)):
        p = hist[:i]
        p[-1] += sum(hist[i:])  # the outliers folded into the last bin
        edges = np.linspace(0, i, levels + 1)
        level = [int(np.digitize(j, edges)) - 1 for j in range(i)]
        total, nonempty = {}, {}
        for j in range(i):
            total[level[j]] = total.get(level[j], 0.0) + hist[j]
            nonempty[level[j]] = nonempty.get(level[j], 0) + (hist[j] > 0)
        q = [total[level[j]] / nonempty[level[j]] if hist[j] > 0 else 0.0 for j in range(i)]
        kl = entropy(p, q)  # normalises both; inf where P has mass and Q none
        if kl < best_kl:
            best, best_kl = i, kl
    return best


def _hists():
    rng = np.random.default_rng(0)
    j = np.arange(400)
    expo = np.round(1e5 * np.exp(-j / 30.0))
    expo[[350, 371, 399]] += 1  # a few far outliers
    half_normal = np.histogram(np.abs(rng.standard_normal(200_000)), bins=400)[0]
    bimodal = np.histogram(np.concatenate([rng.exponential(1.0, 100_000), 6 + rng.standard_normal(2_000)]),
                           bins=400, range=(0, 10))[0]
    return {"exponential": expo, "half-normal": half_normal, "bimodal": bimodal}


@pytest.mark.parametrize("name", ["exponential", "half-normal", "bimodal"])
def test_kl_threshold_matches_the_reference(name):
    h = _hists()[name]
    m = kl_threshold_bin(h)
    assert m == reference_kl_bin(h)
    assert 128 <= m < len(h)


def test_uniform_first_levels_pick_128_bins():
    """Mass only in the first 128 bins: 128 bins are 128 levels, Q == P, KL 0 at the first candidate."""
    h = np.zeros(400)
    h[:128] = np.arange(128, 0, -1)
    assert kl_threshold_bin(h) == reference_kl_bin(h) == 128


def test_entropy_amax_histograms_abs_values_with_one_range():
    """A signed tensor and its ReLU: |x| over one fixed range of 2048 bins (exact zeros left out), threshold at the
    chosen bin's centre; the ReLU'd tensor is not given half its levels on an empty negative side."""
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3, 8, 8])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((64, 3, 8, 8)).astype(np.float32) * np.linspace(0.5, 2, 64)[:, None, None, None]
    x = x.astype(np.float32)
    r = entropy_amax(model, ["x", "y"], x, "x", symmetric=True)
    for t, v in (("x", x), ("y", np.maximum(x, 0))):
        a = np.abs(v[v != 0])
        amax = float(np.abs(v).max())
        m = kl_threshold_bin(np.histogram(a, bins=2048, range=(0, amax))[0])
        thr = (m + 0.5) * amax / 2048
        assert r[t] == pytest.approx((-thr, thr), rel=1e-5)
        assert 0.3 * amax < thr <= amax  # not clipped to a quarter of the range
    r = entropy_amax(model, ["y"], x, "x", symmetric=False)  # x86's uint8: from the tensor's minimum (0 after ReLU)
    assert r["y"][0] == 0.0 and r["y"][1] > 0


def test_mse_threshold_is_near_the_brute_force_best_for_signed_int8():
    """The signed-INT8 MSE rule (opt-in ``signed_ranges``) against quantizing the sample itself at every candidate
    threshold: 127 steps a side, values beyond clipped."""
    from edgeres.quant.ranges import mse_threshold_bin

    rng = np.random.default_rng(2)
    x = np.abs(rng.laplace(size=100_000))
    amax = x.max()
    width = amax / 2048

    def mse(t):
        s = t / 127
        return float(np.mean((np.clip(np.round(x / s), -127, 127) * s - x) ** 2))

    m = mse_threshold_bin(np.histogram(x, bins=2048, range=(0, amax))[0])
    best = min(mse((i + 0.5) * width) for i in range(8, 2048, 4))
    assert mse((m + 0.5) * width) <= 1.03 * best
    assert (m + 0.5) * width < 0.9 * amax  # a heavy tail is clipped
