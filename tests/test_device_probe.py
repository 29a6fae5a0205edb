"""`edgeres device probe` and the target-vs-board check: the Jetson's own files and tools read over ssh (the loopback
Jetson serves the fixture boards of tests/fixtures/jetson), every missing piece named with its fix."""

import json

import pytest
from loopback_device import FIXTURES

from edgeres.device import boards, faults
from edgeres.device.probe import check_target, clocks_state, from_raw, probe, require_ready, trt_note
from edgeres.device.transport import SshTransport
from edgeres.targets import get_target


@pytest.mark.parametrize("model, target", [
    ("NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super", "jetson-orin-nano"),
    ("NVIDIA Jetson Orin NX Engineering Reference Developer Kit", "jetson-orin-nx"),
    ("NVIDIA Jetson AGX Orin Developer Kit", "jetson-agx-orin"), ("Lanner EAI-I233 Jetson AGX Orin", "jetson-agx-orin"),
    ("NVIDIA Jetson Xavier NX Developer Kit", "jetson-xavier-nx"), ("NVIDIA Jetson AGX Thor Developer Kit", "jetson-thor"),
    ("NVIDIA Jetson Nano Developer Kit", "jetson-nano"), ("NVIDIA Jetson AGX Xavier Developer Kit", None), (None, None),
])
def test_board_names_map_to_profiles(model, target):
    assert boards.board_of(model)[0] == target


def test_l4t_and_jetpack():
    rel = (FIXTURES / "orin-nano" / "nv_tegra_release").read_text()
    assert boards.l4t_of(rel) == "36.4.3" and boards.jetpack_of({}, "36.4.3") == "6.2"
    assert boards.jetpack_of({"nvidia-jetpack": "5.1.2-b104"}, None) == "5.1.2"
    assert boards.jetpack_of({"nvidia-jetpack": "6.2.1+b38"}, "36.4.4") == "6.2.1"
    assert boards.package_version("10.3.0.30-1+cuda12.5") == "10.3.0.30" and boards.l4t_of("garbage") is None


def test_clock_state_from_jetson_clocks():
    show = lambda board: {"available": True, "show": (FIXTURES / board / "jetson_clocks.txt").read_text()}  # noqa: E731
    assert clocks_state(show("orin-nano")) == (True, "")
    assert clocks_state(show("orin-nx")) == (False, "")
    locked, note = clocks_state({"available": True, "show": "", "error": "Error: Run this script as a root user"})
    assert locked is None and "needs root" in note


def test_no_python_still_names_the_board_and_the_fix():
    info = from_raw("jetson", {"python": None, "model": "NVIDIA Jetson Orin Nano Developer Kit",
                               "nv_tegra_release": "# R36 (release), REVISION: 4.3, GCID: 1, BOARD: generic"})
    assert info.target == "jetson-orin-nano" and info.jetpack == "6.2"
    assert info.missing == [("python3", "sudo apt install python3 (JetPack ships it)")]
    with pytest.raises(faults.DeviceError, match="missing python3"):
        require_ready(info)


def _probe(dev, monkeypatch):
    for k, v in dev.env.items():
        monkeypatch.setenv(k, v)
    from edgeres.device.address import parse_address

    with SshTransport(parse_address(dev.url)) as t:
        return probe(t)


def test_probe_reads_the_board_over_ssh(jetson, monkeypatch):
    jetson.write_client_config()
    info = _probe(jetson, monkeypatch)
    assert info.board == "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super"  # NUL stripped
    assert (info.target, info.l4t, info.jetpack, info.tensorrt, info.cuda) == (
        "jetson-orin-nano", "36.4.3", "6.2", "10.3.0.30", "12.6.68")
    assert (info.power_mode, info.clocks_locked, info.dla_cores, info.tegrastats) == ("MAXN_SUPER (mode 2)", True, 0, True)
    assert info.numpy and info.python and info.missing == [] and info.free_disk_mb > 0 and info.mem_total_mb > 0
    assert info.label() == ("Jetson Orin Nano Engineering Reference Developer Kit Super, JetPack 6.2, TensorRT 10.3.0.30, "
                            "power mode MAXN_SUPER (mode 2), clocks locked")
    assert jetson.written_outside_cache() == []


@pytest.mark.parametrize("board, trt, dla, locked, jp", [("orin-nx", "10.3.0.30", 2, False, "6.2.1"),
                                                         ("xavier-nx", "8.5.2.2", 2, None, "5.1.2")])
def test_probe_other_boards(make_device, monkeypatch, board, trt, dla, locked, jp):
    info = _probe(make_device(board), monkeypatch)
    assert (info.tensorrt, info.dla_cores, info.clocks_locked, info.jetpack) == (trt, dla, locked, jp)
    assert any("clock" in w for w in info.warnings)  # unlocked or unknown: said, never changed


def test_probe_names_each_missing_piece_with_its_fix(make_device, monkeypatch):
    info = _probe(make_device(python="bare"), monkeypatch)
    missing = dict(info.missing)
    assert missing["numpy"] == "sudo apt install python3-numpy" and missing["pillow"] == "sudo apt install python3-pil"
    assert "python3-libnvinfer" in missing["TensorRT's Python module"]
    info = _probe(make_device(python=False), monkeypatch)
    assert info.board and info.jetpack == "6.2" and dict(info.missing) == {"python3": "sudo apt install python3 (JetPack ships it)"}


def test_target_against_the_board(make_device, monkeypatch):
    nano = from_raw("a", {"model": "NVIDIA Jetson Orin Nano Developer Kit", "tensorrt": {"ok": True, "version": "10.3.0.30"}})
    assert check_target(nano, get_target("jetson-orin-nano")) == ""
    nx = from_raw("b", {"model": "NVIDIA Jetson Orin NX Engineering Reference Developer Kit"})
    assert "same GPU" in check_target(nx, get_target("jetson-orin-nano"))  # one Orin bundle runs on every Orin
    xavier = from_raw("c", {"model": "NVIDIA Jetson Xavier NX Developer Kit", "tensorrt": {"ok": True, "version": "8.5.2.2"}})
    with pytest.raises(faults.DeviceError, match="pass --target jetson-xavier-nx, or --target auto"):
        check_target(xavier, get_target("jetson-orin-nano"))
    with pytest.raises(faults.DeviceError, match="not TensorRT"):
        check_target(nano, get_target("x86-cpu"))
    assert "TensorRT 8.5.2.2" in trt_note(xavier, get_target("jetson-orin-nano")) and trt_note(nano, get_target("jetson")) == ""


def test_device_probe_command(cli, make_device, tmp_path):
    dev = make_device("orin-nx")
    proc = cli("device", "probe", dev.url, "--target", "jetson-orin-nano", env=dev.env)
    assert proc.returncode == 0, proc.stderr
    assert "Orin NX" in proc.stdout and "JetPack 6.2.1" in proc.stdout and "not locked" in proc.stdout
    assert "same GPU" in proc.stdout
    proc = cli("device", "probe", dev.url, "--json", env=dev.env)
    assert json.loads(proc.stdout)[0]["target"] == "jetson-orin-nx"
    bare = make_device(python="bare")
    proc = cli("device", "probe", bare.url, env=bare.env)
    assert proc.returncode == 1 and "MISSING     numpy: sudo apt install python3-numpy" in proc.stdout
    assert proc.stderr.count("\n") == 1 and "cannot run the bundle" in proc.stderr and "Traceback" not in proc.stderr


def test_optimize_refuses_a_mismatched_board_before_any_stage(cli, make_device, tiny_ckpt, demo_data, tmp_path):
    dev = make_device("xavier-nx")
    out = tmp_path / "run"
    proc = cli("optimize", "--model", tiny_ckpt, "--data", demo_data, "--target", "jetson-orin-nano", "--device", dev.url,
               "--out", out, env=dev.env)
    assert proc.returncode == 1 and "pass --target jetson-xavier-nx" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()
    proc = cli("optimize", "--model", tiny_ckpt, "--data", demo_data, "--target", "auto", "--out", out)
    assert proc.returncode == 2 and "needs --device" in proc.stderr


def test_target_auto_takes_the_board(make_device, monkeypatch):
    from edgeres.device.fleet import Fleet

    dev = make_device("xavier-nx")
    for k, v in dev.env.items():
        monkeypatch.setenv(k, v)
    logs = []
    with Fleet([dev.url], log=logs.append) as fleet:
        assert fleet.resolve_target("auto") == "jetson-xavier-nx"
    assert any("--target auto: jetson-xavier-nx" in m for m in logs)
