"""edgeres.device transport: addresses, the one shared OpenSSH connection, file transfer, and its faults, against a
real sshd on loopback (tests/loopback_device.py) where one can run."""

import hashlib
import os
import subprocess

import pytest

from edgeres.device import faults
from edgeres.device.address import AddressError, parse_address, parse_addresses
from edgeres.device.transport import SSH_ENV, SshTransport, ssh_command
from edgeres.errors import EdgeresError


# ------------------------------------------------------------------------------------------------ addresses
@pytest.mark.parametrize("text, user, host, port, dest", [
    ("ssh://jetson", None, "jetson", None, ["--", "jetson"]),
    ("ssh://nvidia@10.0.0.7:2222", "nvidia", "10.0.0.7", 2222, ["-p", "2222", "--", "nvidia@10.0.0.7"]),
    ("ssh://[::1]:22/", None, "::1", 22, ["-p", "22", "--", "::1"]),
    ("jetson-lab", None, "jetson-lab", None, ["--", "jetson-lab"]),
    ("ubuntu@orin.local", "ubuntu", "orin.local", None, ["--", "ubuntu@orin.local"]),
])
def test_addresses(text, user, host, port, dest):
    a = parse_address(text)
    assert (a.user, a.host, a.port, a.destination(), str(a)) == (user, host, port, dest, text)


@pytest.mark.parametrize("text, says", [
    ("ssh://nvidia:secret@jetson", "password"), ("-oProxyCommand=touch_x", "not a host name"),
    ("http://jetson", "only ssh://"), ("ssh://jetson/home", "nothing may follow"), ("ssh://jetson:99999", "port"),
    ("jetson:22", "ssh://"), ("", "empty"), ("ssh://-evil", "not a host name"),
])
def test_bad_addresses_are_one_line(text, says):
    with pytest.raises(AddressError) as e:
        parse_address(text)
    assert says in str(e.value) and "\n" not in str(e.value)


def test_repeated_device_is_measured_once():
    assert [a.text for a in parse_addresses(["jetson", "ssh://agx", "jetson"])] == ["jetson", "ssh://agx"]


def test_missing_ssh_client_is_one_line(monkeypatch):
    monkeypatch.setenv(SSH_ENV, "no-such-ssh-client -F x")
    with pytest.raises(EdgeresError, match="no-such-ssh-client` is not installed"):
        ssh_command()


# ------------------------------------------------------------------------------------------------ classification
# messages as OpenSSH 9.2 prints them (captured from the loopback sshd and the client, one per fault)
MESSAGES = {
    "ssh: connect to host 127.0.0.1 port 2298: Connection refused": faults.UNREACHABLE,
    "ssh: Could not resolve hostname jetson.invalid: Name or service not known": faults.UNREACHABLE,
    "Connection timed out during banner exchange\nConnection to 10.255.255.1 port 22 timed out": faults.UNREACHABLE,
    "root@127.0.0.1: Permission denied (publickey).": faults.AUTH,
    "No ED25519 host key is known for [127.0.0.1]:2299 and you have requested strict checking.\n"
    "Host key verification failed.": faults.HOSTKEY_UNKNOWN,
    "@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\nHost key for [127.0.0.1]:2299 has changed and you "
    "have requested strict checking.\nHost key verification failed.": faults.HOSTKEY_CHANGED,
    "cat: write error: No space left on device": faults.DISK_FULL,
    "Connection to 127.0.0.1 closed by remote host.": faults.DROPPED,
    "client_loop: send disconnect: Broken pipe": faults.DROPPED,
}


@pytest.mark.parametrize("stderr, kind", list(MESSAGES.items()))
def test_every_fault_is_classified_into_one_line(stderr, kind):
    e = faults.from_ssh(255 if kind != faults.DISK_FULL else 1, stderr, "ssh://jetson", "ship")
    assert e.kind == kind and "\n" not in str(e) and "ssh://jetson" in str(e)
    assert e.retryable == (kind == faults.DROPPED)


def test_silent_exit_255_with_a_dead_connection_is_a_drop():
    assert faults.from_ssh(255, "", "jetson", "bench", master_alive=False).kind == faults.DROPPED
    refused = "Control socket connect(/tmp/edgeres-ssh-x/cm): Connection refused\nssh: connect to host 127.0.0.1 port 22: Connection refused"
    assert faults.from_ssh(255, refused, "jetson", "bench", master_alive=False).kind == faults.DROPPED
    e = faults.from_ssh(3, "Traceback ...\nValueError: bad", "jetson", "bench")
    assert e.kind == faults.REMOTE and "ValueError: bad" in str(e)


# ------------------------------------------------------------------------------------------------ on the loopback Jetson
@pytest.fixture
def ssh_env(jetson, monkeypatch):
    jetson.write_client_config()
    for k, v in jetson.env.items():
        monkeypatch.setenv(k, v)
    return jetson


def test_one_connection_for_every_command_and_nothing_left_behind(ssh_env):
    accepted = (ssh_env.root / "sshd.log").read_text().count("Accepted publickey")
    with SshTransport(parse_address(ssh_env.url)) as t:
        private = t.dir
        assert oct(os.stat(private).st_mode & 0o777) == "0o700"
        outs = [t.run(f"echo {i}; id -u", "test").stdout.split() for i in range(5)]
        assert outs == [[str(i), "0"] for i in range(5)] and t.stats["connects"] == 1
        r = t.run("exit 3", "test", check=False)
        assert r.returncode == 3 and t.alive()
    assert not os.path.exists(private)  # control socket and folder gone: the shared connection is closed
    assert (ssh_env.root / "sshd.log").read_text().count("Accepted publickey") == accepted + 1


def test_host_alias_from_the_users_ssh_config(ssh_env):
    with SshTransport(parse_address("jetson-loopback")) as t:
        assert t.run("cat /sys/firmware/devicetree/base/model", "test").stdout.startswith("NVIDIA Jetson Orin Nano")


def test_upload_resumes_a_partial_file_and_checks_its_hash(ssh_env, tmp_path):
    data = os.urandom(3 * (1 << 20) + 123)
    local = tmp_path / "blob.bin"
    local.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    part = ssh_env.cache / "t" / "blob.bin.part"
    part.parent.mkdir(parents=True, exist_ok=True)
    part.write_bytes(data[: 1 << 20])  # what an interrupted transfer left
    logs, seen = [], []
    with SshTransport(parse_address(ssh_env.url), log=logs.append) as t:
        assert t.upload(local, "$HOME/.cache/edgeres/t/blob.bin", sha, "ship", progress=lambda d, n: seen.append(d))
        assert t.stats["bytes_up"] == len(data) - (1 << 20) and seen[-1] == len(data)
        assert not t.upload(local, "$HOME/.cache/edgeres/t/blob.bin", sha, "ship")  # there already: nothing sent
        assert t.download("$HOME/.cache/edgeres/t/blob.bin", "fetch") == data
    assert (ssh_env.cache / "t" / "blob.bin").read_bytes() == data and not part.exists()
    assert any("resuming" in m for m in logs)


def test_corrupt_partial_file_is_refused_not_kept(ssh_env, tmp_path):
    local = tmp_path / "b.bin"
    local.write_bytes(b"x" * 5000)
    part = ssh_env.cache / "t2" / "b.bin.part"
    part.parent.mkdir(parents=True, exist_ok=True)
    part.write_bytes(b"y" * 100)  # not a prefix of the file
    with SshTransport(parse_address(ssh_env.url)) as t:
        with pytest.raises(faults.DeviceError, match="arrived corrupt"):
            t.upload(local, "$HOME/.cache/edgeres/t2/b.bin", hashlib.sha256(b"x" * 5000).hexdigest(), "ship")
    assert not part.exists() and not (ssh_env.cache / "t2" / "b.bin").exists()


@pytest.mark.parametrize("identity, host_key, kind", [
    ("other_key", "host_key", faults.AUTH),                 # a key the device does not accept
    ("user_key", "other_host_key", faults.HOSTKEY_CHANGED),  # the device answers with another host key
])
def test_refused_key_and_changed_host_key_for_real(ssh_env, identity, host_key, kind, monkeypatch):
    cfg = ssh_env.write_client_config(identity, host_key)
    monkeypatch.setenv(SSH_ENV, f"ssh -F {cfg}")
    with pytest.raises(faults.DeviceError) as e:
        SshTransport(parse_address(ssh_env.url)).open()
    assert e.value.kind == kind and "\n" not in str(e.value)
    assert ("ssh-copy-id" in str(e.value)) == (kind == faults.AUTH)


def test_unknown_host_key_and_unreachable_for_real(ssh_env, tmp_path, monkeypatch):
    cfg = ssh_env.write_client_config()
    unknown = tmp_path / "ssh_config"
    unknown.write_text(cfg.read_text().replace(f"UserKnownHostsFile {ssh_env.root}", f"UserKnownHostsFile {tmp_path}"))
    monkeypatch.setenv(SSH_ENV, f"ssh -F {unknown}")
    with pytest.raises(faults.DeviceError) as e:
        SshTransport(parse_address(ssh_env.url)).open()
    assert e.value.kind == faults.HOSTKEY_UNKNOWN and "connect once" in str(e.value)
    from loopback_device import free_port

    monkeypatch.setenv(SSH_ENV, f"ssh -F {cfg}")
    with pytest.raises(faults.DeviceError) as e:
        SshTransport(parse_address(f"ssh://127.0.0.1:{free_port()}"), connect_timeout=5).open()
    assert e.value.kind == faults.UNREACHABLE and "\n" not in str(e.value)


def test_server_stopped_mid_command_is_a_drop(make_device, monkeypatch):
    dev = make_device()
    for k, v in dev.env.items():
        monkeypatch.setenv(k, v)
    t = SshTransport(parse_address(dev.url)).open()
    try:
        proc = subprocess.Popen(t._client("sleep 20"), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        dev.stop()
        rc = proc.wait(timeout=30)
        err = proc.stderr.read().decode()
        assert rc == 255 and t.error(rc, err, "bench").kind == faults.DROPPED
    finally:
        t.close()
