"""Device faults made for real against the loopback Jetson, each in `edgeres optimize --device`: the server stopped
mid-transfer and mid-benchmark (with and without coming back), a reboot, a full remote folder, a wrong host key and a
refused key. Each gives one line and exit 1, leaves the run directory intact, and a re-run resumes."""

import hashlib
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import DEVICE_FAST as FAST

HERE = Path(__file__).resolve().parent


def snapshot(run: Path) -> dict:
    """{relative path: sha256} of every file of a run directory."""
    return {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest() for p in run.rglob("*") if p.is_file()}


def assert_intact(run: Path, before: dict) -> None:
    """Every stage's files and the report are unchanged (config.yaml is rewritten, atomically, with the new command
    line), nothing is half-written; the device stage may only have added its probe."""
    after = snapshot(run)
    kept = {k: v for k, v in before.items() if k != "config.yaml"}
    assert {k: v for k, v in after.items() if k in kept} == kept
    new = set(after) - set(before)
    assert all(k.startswith("device/") and k.endswith("probe.json") for k in new), new
    assert not [k for k in after if ".tmp" in k or k.endswith(".part")]


def when(cond, action, timeout=120.0):
    """Run ``action`` (in a thread) as soon as ``cond()`` holds; bounded in time."""
    done = threading.Event()

    def watch():
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not done.is_set():
            if cond():
                action()
                done.set()
                return
            time.sleep(0.005)

    threading.Thread(target=watch, daemon=True).start()
    return done


def parts_over(dev, nbytes):
    return lambda: any(p.stat().st_size > nbytes for p in dev.cache.rglob("*.part") if p.is_file())


def running(dev, name):
    def cond():
        for pid in dev.descendants():
            try:
                if name.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return True
            except OSError:
                pass
        return False
    return cond


@pytest.fixture
def run_dir(run_copy):
    return run_copy


def optimize(cli, run, dev, tiny_ckpt, demo_data, env=None):
    return cli("optimize", "--model", tiny_ckpt, "--data", demo_data, "--out", run, *FAST, "--device", dev.url,
               env=env or dev.env)


def one_line_exit_1(proc, *says):
    assert proc.returncode == 1, proc.stdout + proc.stderr
    err = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for s in says:
        assert s in err[0], err[0]
    return err[0]


def slow_env(dev, rate=2_000_000):
    return {"EDGERES_SSH_COMMAND": f"{sys.executable} {HERE / 'slow_ssh.py'} ssh -F {dev.ssh_config}",
            "EDGERES_TEST_SSH_RATE": str(rate)}


@pytest.mark.slow  # a transfer slowed to 2 MB/s so the server can be stopped while it runs, then a resumed re-run
def test_server_stopped_mid_transfer_then_the_rerun_resumes(cli, make_device, run_dir, tiny_ckpt, demo_data):
    dev = make_device()
    before = snapshot(run_dir)
    hit = when(parts_over(dev, 1 << 20), dev.stop)
    proc = optimize(cli, run_dir, dev, tiny_ckpt, demo_data, env=slow_env(dev))
    assert hit.is_set()
    one_line_exit_1(proc, "dropped during ship", "run the same command again to resume")
    assert "retrying once" in proc.stderr
    assert_intact(run_dir, before)
    (part,) = list(dev.cache.rglob("*.part"))  # what arrived is kept on the device
    kept = part.stat().st_size
    dev.start()
    proc = optimize(cli, run_dir, dev, tiny_ckpt, demo_data)
    assert proc.returncode == 0, proc.stderr
    assert f"resuming the transfer of bundle.tar.gz at {kept / 1e6:.1f}" in proc.stderr
    assert "[7/7] device: ok" in proc.stderr and "[6/7] bundle: unchanged" in proc.stderr


@pytest.mark.slow  # the server restarted under a slowed transfer: the step is retried over a new connection
def test_a_drop_mid_transfer_is_retried_once(cli, make_device, run_dir, tiny_ckpt, demo_data):
    dev = make_device()

    def blip():
        dev.stop()
        dev.start()

    when(parts_over(dev, 1 << 20), blip)
    proc = optimize(cli, run_dir, dev, tiny_ckpt, demo_data, env=slow_env(dev, 4_000_000))
    assert proc.returncode == 0, proc.stderr
    assert "connection dropped during ship; reconnecting and retrying once" in proc.stderr
    assert "resuming the transfer" in proc.stderr


@pytest.mark.slow  # a reboot in the middle of the benchmark, then the resumed re-run (engine kept on the device)
def test_reboot_mid_benchmark(cli, make_device, run_dir, tiny_ckpt, demo_data):
    dev = make_device()
    before = snapshot(run_dir)
    hit = when(running(dev, "tegrastats"), dev.reboot)
    proc = optimize(cli, run_dir, dev, tiny_ckpt, demo_data)
    assert hit.is_set()
    one_line_exit_1(proc, "rebooted during bench", "boot id changed")
    assert_intact(run_dir, before)
    proc = optimize(cli, run_dir, dev, tiny_ckpt, demo_data)
    assert proc.returncode == 0, proc.stderr
    assert "engine up to date (reused)" in proc.stderr and "sending" not in proc.stderr


@pytest.mark.slow  # the server gone for good in the middle of the benchmark: retried once, then the run stops
def test_server_gone_mid_benchmark(cli, make_device, run_dir, tiny_ckpt, demo_data):
    dev = make_device()
    before = snapshot(run_dir)
    when(running(dev, "tegrastats"), dev.stop)
    proc = optimize(cli, run_dir, dev, tiny_ckpt, demo_data)
    one_line_exit_1(proc, "during bench", "reconnecting failed", "run the same command again to resume")
    assert_intact(run_dir, before)


@pytest.mark.slow  # refused, then a whole device stage on the freed device (~10-30 s on the shared machine)
def test_full_remote_folder(cli, make_device, run_dir, tiny_ckpt, demo_data):
    dev = make_device(cache_limit_kb=2048)  # a 2 MB tmpfs on the device's ~/.cache/edgeres
    before = snapshot(run_dir)
    one_line_exit_1(optimize(cli, run_dir, dev, tiny_ckpt, demo_data), "no space left in ~/.cache/edgeres",
                    "the bundle needs about")
    assert_intact(run_dir, before)
    dev.stop()  # the user frees space
    dev.cache_limit_kb = None
    dev.start()
    proc = optimize(cli, run_dir, dev, tiny_ckpt, demo_data)
    assert proc.returncode == 0, proc.stderr


def test_disk_full_during_a_transfer_is_one_line(make_device, monkeypatch, tmp_path):
    from edgeres.device import faults
    from edgeres.device.address import parse_address
    from edgeres.device.transport import SshTransport

    dev = make_device(cache_limit_kb=512)
    for k, v in dev.env.items():
        monkeypatch.setenv(k, v)
    data = b"z" * (2 << 20)
    (tmp_path / "big").write_bytes(data)
    with SshTransport(parse_address(dev.url)) as t, pytest.raises(faults.DeviceError) as e:
        t.upload(tmp_path / "big", "$HOME/.cache/edgeres/x/big", hashlib.sha256(data).hexdigest(), "ship")
    assert e.value.kind == faults.DISK_FULL and "free space on the device" in str(e.value)


@pytest.mark.slow  # refused, then a whole device stage once the key is fixed (~10-30 s on the shared machine)
@pytest.mark.parametrize("identity, host_key, says", [
    ("user_key", "other_host_key", "host key CHANGED"), ("other_key", "host_key", "refused the ssh key")])
def test_wrong_host_key_and_refused_key(cli, make_device, run_dir, tiny_ckpt, demo_data, identity, host_key, says):
    dev = make_device()
    before = snapshot(run_dir)
    dev.write_client_config(identity, host_key)
    one_line_exit_1(optimize(cli, run_dir, dev, tiny_ckpt, demo_data), says)
    assert snapshot(run_dir) == before  # refused before anything was written
    dev.write_client_config()  # the user fixes the key
    proc = optimize(cli, run_dir, dev, tiny_ckpt, demo_data)
    assert proc.returncode == 0, proc.stderr
    assert "[1/7] baseline: unchanged, reused" in proc.stderr


def test_unreachable_device(cli, run_dir, device_image, tiny_ckpt, demo_data, tmp_path):
    from loopback_device import LoopbackDevice

    dev = LoopbackDevice(device_image, tmp_path / "never-started")  # nothing listens on its port
    before = snapshot(run_dir)
    one_line_exit_1(optimize(cli, run_dir, dev, tiny_ckpt, demo_data), "is unreachable", "ssh ssh://127.0.0.1")
    assert snapshot(run_dir) == before


def test_missing_tensorrt_is_refused_before_any_stage(cli, make_device, run_dir, tiny_ckpt, demo_data):
    dev = make_device(python="bare")
    before = snapshot(run_dir)
    one_line_exit_1(optimize(cli, run_dir, dev, tiny_ckpt, demo_data), "cannot run the bundle: missing",
                    "sudo apt install python3-libnvinfer")
    assert snapshot(run_dir) == before


@pytest.mark.slow  # install.sh makes a venv with pip (ensurepip) on the device (~10-30 s)
def test_a_missing_package_goes_to_install_sh_which_stays_in_the_cache(cli, make_device, run_dir, tiny_ckpt, demo_data):
    dev = make_device(python="no-pillow")
    before = snapshot(run_dir)
    proc = optimize(cli, run_dir, dev, tiny_ckpt, demo_data)
    assert "pillow missing: running the bundle's install.sh" in proc.stderr
    one_line_exit_1(proc, "install.sh could not install", "pillow")  # pip has no index: offline device
    assert_intact(run_dir, before)
    assert (dev.cache / "venv" / "bin" / "python3").exists() and dev.written_outside_cache() == []
