"""--device on `deploy`, `bench` and `prune` against the loopback Jetson: the same ship/build/check/measure as
`optimize --device`, and the latency-driven pruning search timed on the board."""

import functools
import shutil

import pytest

from edgeres.config import OptimizeConfig
from edgeres.report import read_csv
from edgeres.stages.prune import PruneStage


@pytest.mark.slow  # one whole device measurement of a finished run's bundle (~10-30 s on the shared machine)
def test_deploy_to_the_device_folds_its_rows_into_the_run(cli, device_host_run, jetson, tmp_path):
    jetson.write_client_config()
    run = tmp_path / "run"
    shutil.copytree(device_host_run, run)
    proc = cli("deploy", "--run", run, "--out", tmp_path / "b.tar.gz", "--device", jetson.url, env=jetson.env)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "b.tar.gz").is_file() and "rows measured on 1 device(s)" in proc.stdout
    rows = read_csv(run / "report.csv")
    eng = [r for r in rows if r["stage"] == "engine"]
    assert len(eng) == 2 and all(r["status"] == "ok" and "Orin Nano" in r["device"] for r in eng)
    assert "**Measured on the device:**" in (run / "summary.md").read_text()


@pytest.mark.slow  # an ONNX file built, checked, benchmarked and evaluated on the board (~10-30 s)
def test_bench_an_onnx_file_on_the_device(cli, jetson, tiny_onnx, demo_data, tmp_path):
    jetson.write_client_config()
    csv = tmp_path / "rows.csv"
    proc = cli("bench", "--model", tiny_onnx, "--data", demo_data, "--device", jetson.url, "--batch-size", "1",
               "--batch-size", "4", "--min-time", "0.1", "--csv", csv, env=jetson.env)
    assert proc.returncode == 0, proc.stderr
    rows = read_csv(csv)
    assert {(r["stage"], r["batch_size"]) for r in rows} == {("check", None), ("engine", 1), ("engine", 4)}
    assert all("Orin Nano" in r["device"] for r in rows) and "@1 measured on Jetson Orin Nano" in proc.stdout
    engine1 = next(r for r in rows if r["stage"] == "engine" and r["batch_size"] == 1)
    assert engine1["top1"] is not None and engine1["runtime"] == "tensorrt"


def test_bench_device_needs_an_onnx_file(cli, tiny_ckpt, jetson):
    proc = cli("bench", "--model", tiny_ckpt, "--device", jetson.url, env=jetson.env)
    assert proc.returncode == 1 and "give the .onnx" in proc.stderr and "Traceback" not in proc.stderr


def test_prune_device_needs_a_latency_goal(cli, tiny_ckpt, tmp_path):
    proc = cli("prune", "--model", tiny_ckpt, "--out", tmp_path / "p.pt", "--ratio", "0.3", "--device", "ssh://jetson")
    assert proc.returncode == 2 and "--target-speedup" in proc.stderr


def test_prune_stage_hash_depends_on_the_device_only_for_a_latency_goal():
    plain = OptimizeConfig(model="m.pt", device=["ssh://jetson"])
    assert PruneStage.hash_extra(plain) == {}  # adding --device to a --prune R run reuses the prune stage
    assert PruneStage.hash_extra(OptimizeConfig(model="m.pt", target_speedup=2.0, device=["ssh://jetson"])) == {
        "device": ["ssh://jetson"]}


@pytest.mark.slow  # prunes, exports and quantizes 2 candidates here, builds 3 engines on the board (~1-2 min)
def test_prune_searches_by_latency_measured_on_the_device(cli, jetson, tiny_ckpt, demo_data, tmp_path, monkeypatch):
    from edgeres.prune import latency as prune_latency

    # two bisection steps instead of eight: the search logic is prune_latency's own (tested there); this test is
    # about where the candidates are timed
    monkeypatch.setattr(prune_latency, "LatencyTarget", functools.partial(prune_latency.LatencyTarget, steps=2))
    jetson.write_client_config()
    proc = cli("prune", "--model", tiny_ckpt, "--data", demo_data, "--out", tmp_path / "p.pt", "--target-speedup",
               "1.5", "--target", "jetson-orin-nano", "--device", jetson.url, "--finetune-epochs", "0", env=jetson.env)
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("candidate ratio")]
    assert len(lines) == 2
    for ln in lines:  # ratio, MACs, device latency, build time
        assert "GMACs" in ln and "ms on the device (unpruned" in ln and ("engine built in" in ln or "reused" in ln)
    assert "in tensorrt on Orin Nano vs" in proc.stdout and "2 candidates" in proc.stdout
    assert len(list(jetson.cache.glob("timing/*.cache"))) == 1  # one timing cache for the board, reused by each build
