"""`edgeres optimize --device ssh://...` against the loopback Jetson: the engine built, checked, benchmarked and
evaluated there, its rows in the report with the board's name, the verdict quoting the device latency, and a second
run building nothing."""

import json
import shutil

import pytest
from conftest import DEVICE_FAST as FAST

from edgeres.report import read_csv


@pytest.fixture
def host_run(device_host_run):
    return device_host_run


def _run(cli, host_run, tmp_path, devices, tiny_ckpt, demo_data, *extra, name="run"):
    out = tmp_path / name
    if not out.exists():
        shutil.copytree(host_run, out)
    args = [a for d in devices for a in ("--device", d.url)]
    env = devices[0].env
    return out, cli("optimize", "--model", tiny_ckpt, "--data", demo_data, "--out", out, *FAST, *args, *extra, env=env)


@pytest.mark.slow  # the host stages run once per module (~30-80 s on the shared 2-core machine), the device stage twice
def test_optimize_measures_on_the_device(cli, host_run, make_device, tmp_path, tiny_ckpt, demo_data):
    jetson = make_device("orin-nano")  # its own device: the session's `jetson` cache holds other tests' bundles
    jetson.write_client_config()
    out, proc = _run(cli, host_run, tmp_path, [jetson], tiny_ckpt, demo_data)
    assert proc.returncode == 0, proc.stderr
    rows = read_csv(out / "report.csv")
    eng = [r for r in rows if r["stage"] == "engine"]
    assert [r["batch_size"] for r in eng] == [1, 8] and all(r["status"] == "ok" for r in eng)  # the skipped row is gone
    for r in eng:
        assert r["device"].startswith("Jetson Orin Nano Engineering Reference Developer Kit Super, JetPack 6.2, "
                                      "TensorRT 10.3.0.30, power mode MAXN_SUPER")
        assert r["latency_p50_ms"] > 0 and r["latency_p99_ms"] >= r["latency_p50_ms"] and r["gpu_mem_mb"] > 0
        assert r["power_w"] == pytest.approx(4.654)  # the fixture's VDD_IN 4654 mW
        assert r["energy_mj_per_image"] == pytest.approx(r["power_w"] * 1000 / r["throughput_ips"], rel=0.01)
        assert "GPU compute p50/p90/p99" in r["note"] and "[measured on the device]" in r["note"]
    assert eng[0]["top1"] is not None and eng[0]["top1_delta"] is not None  # evaluated on the shipped validation split
    chk = next(r for r in rows if r["stage"] == "check")
    assert chk["status"] == "ok" and chk["runtime"] == "tensorrt" and chk["agreement"] >= 90
    summary = (out / "summary.md").read_text()
    assert f"p50 {eng[0]['latency_p50_ms']:.3f} ms on Jetson Orin Nano" in summary and "**Measured on the device:**" in summary
    assert "Still to measure" not in summary and "faster than baseline/torch on this host" not in summary
    rec = json.loads((out / "report.json").read_text())["recommendation"]
    assert rec["stage"] == "engine" and rec["speedup"] is None and rec["device_latency"][0]["latency_p50_ms"] == eng[0]["latency_p50_ms"]
    assert "@1 measured on Jetson Orin Nano" in proc.stdout
    # on the device: the content-addressed bundle with its engine and timing cache, the data shipped once, nothing else
    (bundle,) = [p for p in jetson.cache.iterdir() if len(p.name) == 64]
    assert {"model.engine", "model.engine.json", "timing.cache"} <= {p.name for p in (bundle / "bundle").iterdir()}
    assert len(list((jetson.cache / "data").iterdir())) == 1 and list(jetson.cache.glob("timing/*.cache"))
    assert jetson.written_outside_cache() == []
    engine = bundle / "bundle" / "model.engine"
    built = engine.stat().st_mtime_ns
    # a second run measures again and builds nothing
    out, proc = _run(cli, host_run, tmp_path, [jetson], tiny_ckpt, demo_data, "--force", "device")
    assert proc.returncode == 0, proc.stderr
    assert "engine up to date (reused)" in proc.stderr and "sending" not in proc.stderr
    assert engine.stat().st_mtime_ns == built
    assert "engine reused (already built there)" in next(r for r in read_csv(out / "report.csv") if r["stage"] == "engine")["note"]


@pytest.mark.slow  # two boards, each shipping, building, checking, benchmarking and evaluating (~20-40 s)
def test_two_devices_each_build_and_measure(cli, host_run, make_device, tmp_path, tiny_ckpt, demo_data):
    nano, nx = make_device("orin-nano"), make_device("orin-nx")
    nx.write_client_config()  # both devices share the image's keys; one client config lists both ports
    cfg = tmp_path / "ssh_config"
    cfg.write_text(nano.ssh_config.read_text().replace("Host 127.0.0.1 jetson-loopback", "Host nano")
                   + nx.ssh_config.read_text().replace("Host 127.0.0.1 jetson-loopback", "Host nx"))
    env = {"EDGERES_SSH_COMMAND": f"ssh -F {cfg}"}
    out = tmp_path / "run"
    shutil.copytree(host_run, out)
    proc = cli("optimize", "--model", tiny_ckpt, "--data", demo_data, "--out", out, *FAST, "--device", "nano",
               "--device", "nx", env=env)
    assert proc.returncode == 0, proc.stderr
    eng = [r for r in read_csv(out / "report.csv") if r["stage"] == "engine"]
    assert len(eng) == 4 and {r["device"].split(",")[0] for r in eng} == {
        "Jetson Orin Nano Engineering Reference Developer Kit Super", "Jetson Orin NX Engineering Reference Developer Kit"}
    assert "same GPU" in proc.stderr  # the Orin Nano bundle on an Orin NX: said, and measured as it is
    for dev in (nano, nx):
        assert list(dev.cache.glob("*/bundle/model.engine")) and dev.written_outside_cache() == []
    assert "@2 measured on Jetson Orin NX" in proc.stdout
