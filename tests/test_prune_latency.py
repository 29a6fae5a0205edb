"""Pruning to a latency target (edgeres.prune.latency) and channel multiples per target.

The search is tested with an injected, deterministic latency function: no assertion here depends on wall-clock time
(the real speed-ups are measured side by side in benchmarks/bench_runtimes.py).
"""

import contextlib

import numpy as np
import pytest
import torch

from edgeres.errors import EdgeresError
from edgeres.models import build_model
from edgeres.prune.latency import (
    LatencyTarget,
    find_ratio,
    host_measure,
    interleaved_medians,
    ratio_stats,
    search_ratio,
    summary,
)
from edgeres.targets import get_target, list_targets


def quadratic(base=20.0, calls=None):
    """Latency falling with the square of the kept channel fraction (MACs of a conv net), no noise."""

    def measure(ratio):
        if calls is not None:
            calls.append(ratio)
        return {"latency_ms": base * (1 - ratio) ** 2, "base_ms": base}

    return measure


def test_speedup_search_finds_the_ratio_and_meets_the_target():
    calls = []
    res = search_ratio(quadratic(calls=calls), LatencyTarget(speedup=2.0))
    exact = 1 - 0.5 ** 0.5  # (1 - r)^2 = 1/2
    assert res["reached"] and res["measured_speedup"] >= 2.0
    assert exact <= res["ratio"] <= exact + 0.95 / 2 ** len(calls) + 1e-9
    assert res["measured_speedup"] <= 2.0 * 1.03 or len(calls) == 8  # stopped within tolerance, or ran every step
    assert len(calls) <= 8 and calls[0] == pytest.approx(0.475)
    assert summary({**res, "method": "measured"}).startswith("--target-speedup 2: ratio")


def test_latency_target_and_bisection_rule_match_target_macs():
    goal = LatencyTarget(latency_ms=12.0, tolerance=0.0)  # no early stop: all 8 bisection steps, as --target-macs
    calls = []
    res = search_ratio(quadratic(calls=calls), goal)
    assert len(calls) == 8 and res["reached"]
    assert res["latency_ms"] <= 12.0
    # the smallest ratio tried that met the target is the one returned
    met = [t["ratio"] for t in res["trials"] if t["met"]]
    assert res["ratio"] == min(met)
    assert res["stop"] == "8 bisection steps"


def test_unreachable_target_is_reported_not_hidden():
    res = search_ratio(lambda r: {"latency_ms": 10.0 * (1 - r / 2), "base_ms": 10.0}, LatencyTarget(speedup=5.0))
    assert res["reached"] is False
    assert res["ratio"] == max(t["ratio"] for t in res["trials"])
    assert "not reached" in res["stop"] and "NOT reached" in summary({**res, "method": "measured"})


def test_measured_speedup_taken_from_the_rounds_when_given():
    # a measurement that reports the interleaved per-round speed-up wins over base/latency medians
    res = search_ratio(lambda r: {"latency_ms": 5.0, "base_ms": 9.0, "speedup": 2.01}, LatencyTarget(speedup=2.0))
    assert res["measured_speedup"] == 2.01 and len(res["trials"]) == 1


@pytest.mark.parametrize("kw, msg", [({}, "one of"), ({"speedup": 2, "latency_ms": 3}, "one of"),
                                     ({"speedup": 0.9}, "above 1"), ({"latency_ms": -1}, "positive")])
def test_bad_goals(kw, msg):
    with pytest.raises(EdgeresError, match=msg):
        LatencyTarget(**kw).validate()


def test_interleaved_rounds_rotate_and_take_medians():
    t = [0.0]
    order = []

    def clock():
        return t[0]

    def fn(name, ms):
        def run():
            order.append(name)
            t[0] += ms / 1000.0
        return run

    per = interleaved_medians({"a": fn("a", 4.0), "b": fn("b", 2.0)}, rounds=3, runs=2, warmup=0, clock=clock, rewarm=0,
                              settle_ms=0)
    assert {k: [round(v, 9) for v in vs] for k, vs in per.items()} == {"a": [4.0] * 3, "b": [2.0] * 3}
    assert order == ["a", "a", "b", "b", "b", "b", "a", "a", "a", "a", "b", "b"]  # round 2 starts with b
    s = ratio_stats(per, "a", "b")
    assert s["speedup"] == pytest.approx(2.0) and s["base_ms"] == 4.0


def test_interleaved_rounds_do_not_time_the_calls_after_a_switch():
    """The first calls after another function ran are slow (the other runtime's threads still hold the cores): they
    are untimed re-warm calls, so no row carries its neighbour's cost."""
    t, last = [0.0], [None]

    def fn(name, ms):
        def run():
            t[0] += (10 * ms if last[0] not in (None, name) else ms) / 1000.0
            last[0] = name
        return run

    per = interleaved_medians({"a": fn("a", 4.0), "b": fn("b", 2.0)}, rounds=4, runs=3, warmup=0, clock=lambda: t[0])
    assert {k: sorted(set(round(v, 9) for v in vs)) for k, vs in per.items()} == {"a": [4.0], "b": [2.0]}
    calls = []
    interleaved_medians({"a": lambda: (calls.append("a"), t.__setitem__(0, t[0] + 0.004)), "b": lambda: t.__setitem__(0, t[0] + 0.001)},
                        rounds=1, runs=1, warmup=0, clock=lambda: t[0], rewarm=1, settle_ms=50)
    assert calls.count("a") == 1 + 13  # untimed until 50 ms had passed (13 x 4 ms), then one timed call
    t[0], last[0] = 0.0, None
    biased = interleaved_medians({"a": fn("a", 4.0), "b": fn("b", 2.0)}, rounds=4, runs=1, warmup=0,
                                 clock=lambda: t[0], rewarm=0, settle_ms=0)
    assert max(biased["a"]) == 40.0  # what the re-warm calls keep out


def test_tensorrt_target_falls_back_to_macs_and_says_so():
    m = build_model("resnet18", 10).eval()
    from edgeres.data import Preprocess

    res = find_ratio(m, get_target("jetson-orin-nano"), Preprocess(size=64), LatencyTarget(speedup=2.0))
    assert res["method"] == "macs-fallback" and "fell back to MACs" in res["fallback"]
    assert "--target-macs 0.500" in res["fallback"] and 0.1 < res["ratio"] < 0.6
    assert "by MACs" in summary(res)
    with pytest.raises(EdgeresError, match="--target-speedup"):
        find_ratio(m, get_target("jetson"), Preprocess(size=64), LatencyTarget(latency_ms=1.0))


def test_host_measure_runs_the_target_runtime_in_int8():
    """The real measurement (export + x86 INT8 + ORT/OpenVINO) on a tiny model: structure only, no timing asserted."""
    from edgeres.data import Preprocess

    m = build_model("resnet18", 10).eval()
    goal = LatencyTarget(speedup=1.5, rounds=1, runs_per_round=1, warmup=1, calib_images=2)
    with contextlib.ExitStack() as stack:
        measure, info = host_measure(m, get_target("x86-cpu"), Preprocess(size=32), goal, workdir=None, stack=stack)
        assert info["precision"] == "int8" and info["runtime"] in ("onnxruntime", "openvino") and info["batch"] == 1
        out = measure(0.5)
        assert out["latency_ms"] > 0 and out["base_ms"] > 0 and 0 < out["macs_fraction"] < 0.6
    # the artifacts measured are Q/DQ files: checked in test_latency_artifacts_are_int8


def test_each_model_is_timed_in_the_runtime_that_would_ship_it(monkeypatch):
    """The speed-up compares the unpruned model in its faster runtime with the pruned one in *its* faster runtime
    (they can differ: at 48 px OpenVINO ran the unpruned demo ResNet50 faster, ONNX Runtime the pruned one)."""
    from edgeres.data import Preprocess
    from edgeres.prune import latency as PL

    class Opened:
        """A runner as the search holds it: entered into an ExitStack, closed when the stack unwinds."""

        live: list = []

        def __enter__(self):
            Opened.live.append(self)
            return self

        def __exit__(self, *exc):
            Opened.live.remove(self)

    ms = {"base onnxruntime": 1.68, "base openvino": 1.31, "pruned onnxruntime": 0.83, "pruned openvino": 1.0}
    monkeypatch.setattr(PL, "host_runtimes", lambda target: ["onnxruntime", "openvino"])
    monkeypatch.setattr(PL, "_load", lambda runtime, path, threads, why=None: Opened())
    monkeypatch.setattr(PL, "interleaved_medians", lambda fns, rounds, runs, warmup: {k: [ms[k]] * rounds for k in fns})
    goal = LatencyTarget(speedup=2.0, rounds=3, calib_images=2)
    with contextlib.ExitStack() as stack:
        measure, info = PL.host_measure(build_model("resnet18", 10).eval(), get_target("x86-cpu"), Preprocess(size=32),
                                        goal, stack=stack)
        out = measure(0.4)
        assert len(Opened.live) == 2  # the unpruned model's two runners; the candidate's were closed once timed
    assert not Opened.live
    assert (out["base_runtime"], out["runtime"]) == ("openvino", "onnxruntime")
    assert out["speedup"] == pytest.approx(1.31 / 0.83) and out["base_ms"] == 1.31 and out["latency_ms"] == 0.83
    res = PL.find_ratio(build_model("resnet18", 10).eval(), get_target("x86-cpu"), Preprocess(size=32),
                        LatencyTarget(speedup=1.5, steps=1, rounds=1, calib_images=2))
    assert res["runtime"] == "onnxruntime" and res["base_runtime"] == "openvino"
    assert "ms in onnxruntime vs 1.31 ms unpruned in openvino" in PL.summary(res)
    assert not Opened.live  # find_ratio closed every runner of its search


def test_latency_artifacts_are_int8(tmp_path):
    from edgeres_deploy.onnx_info import onnx_precision

    from edgeres.data import Preprocess
    from edgeres.prune.latency import _artifact_builder

    calib = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    build = _artifact_builder(get_target("x86-cpu"), Preprocess(size=32), [str(i) for i in range(10)], calib, tmp_path)
    assert onnx_precision(build(build_model("resnet18", 10).eval(), "m")) == "int8"
    build_fp = _artifact_builder(get_target("jetson-nano"), Preprocess(size=32), [str(i) for i in range(10)], calib, tmp_path)
    assert onnx_precision(build_fp(build_model("resnet18", 10).eval(), "n")) == "fp32"


# ------------------------------------------------------------------------------------------------ channel multiples
def test_every_target_has_a_cited_channel_multiple():
    for t in list_targets():
        assert t.channel_multiple in (8, 16, 32), t.name
        assert "http" in t.channel_source or ".com" in t.channel_source or ".io" in t.channel_source, t.name
    assert get_target("jetson").channel_multiple == 32  # TensorRT INT8 tensor cores
    assert get_target("jetson-nano").channel_multiple == 8  # FP16 only
    assert get_target("x86-cpu").channel_multiple == 16  # AVX-512 / oneDNN blocking


def test_pruning_rounds_to_the_targets_multiple_and_round_to_overrides(tmp_path, tiny_ckpt, demo_data):
    from edgeres.models import load_model
    from edgeres.prune.channels import PruneConfig
    from edgeres.prune.finetune import FinetuneConfig, run_prune

    def convs(path):
        m = load_model(path).model
        return {n: c.out_channels for n, c in m.named_modules() if isinstance(c, torch.nn.Conv2d) and n != "conv1"}

    ft = FinetuneConfig(epochs=0)
    run_prune(tiny_ckpt, tmp_path / "j.pt", PruneConfig(ratio=0.4), ft, data=demo_data, target=get_target("jetson"),
              progress=False)
    assert all(c % 32 == 0 for c in convs(tmp_path / "j.pt").values())
    assert load_model(tmp_path / "j.pt").meta.extra["prune"]["round_to"] == 32
    run_prune(tiny_ckpt, tmp_path / "o.pt", PruneConfig(ratio=0.4, round_to=8), ft, data=demo_data,
              target=get_target("jetson"), progress=False)
    assert any(c % 32 for c in convs(tmp_path / "o.pt").values())  # --round-to 8 wins over the target's 32


def test_optimize_speedup_target_on_jetson_reports_the_fallback(tmp_path, tiny_ckpt, demo_data):
    from edgeres.pipeline import OptimizeConfig, Pipeline

    cfg = OptimizeConfig(model=str(tiny_ckpt), target="jetson", data=str(demo_data), target_speedup=2.0,
                         finetune_epochs=0, latency_min_time=0.1, measure_memory=False, out=str(tmp_path / "run"))
    res = Pipeline(cfg, log=lambda *a: None, stages=("baseline", "prune")).run()
    prune = next(r for r in res["rows"] if r["stage"] == "prune")
    assert "--target-speedup 2" in prune["note"] and "fell back to MACs" in prune["note"]


def test_cli_rejects_two_pruning_goals(cli, tiny_ckpt, tmp_path):
    p = cli("prune", "--model", tiny_ckpt, "--out", tmp_path / "x.pt", "--ratio", "0.3", "--target-speedup", "2")
    assert p.returncode == 2 and "give one of" in p.stderr
    p = cli("optimize", "--model", tiny_ckpt, "--prune", "0.3", "--target-speedup", "2")
    assert p.returncode == 2 and "not both" in p.stderr


def test_prune_command_api_prunes_at_the_searched_ratio(tmp_path, tiny_ckpt, demo_data):
    from edgeres.models import load_model
    from edgeres.prune.channels import PruneConfig
    from edgeres.prune.finetune import FinetuneConfig
    from edgeres.prune.latency import run_prune_latency

    res = run_prune_latency(tiny_ckpt, tmp_path / "p.pt", PruneConfig(ratio=None), FinetuneConfig(epochs=0),
                            LatencyTarget(speedup=2.0), data=demo_data, target=get_target("x86-cpu"),
                            progress=False, measure=quadratic())
    assert res["latency_search"]["reached"] and res["ratio"] == res["latency_search"]["ratio"]
    assert load_model(tmp_path / "p.pt").meta.extra["prune"]["ratio"] == pytest.approx(res["ratio"])
