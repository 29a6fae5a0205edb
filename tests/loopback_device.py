"""A Jetson on loopback for the tests: OpenSSH's real ``sshd`` on 127.0.0.1, serving a board from tests/fixtures/jetson.

How the board is faked, and why this way (never through a switch in edgeres' code):

* ``sshd`` runs with its own config file, a generated host key and a temporary user key, on 127.0.0.1 and a free
  port; no system file, key or service is touched. It starts inside a private mount namespace
  (``unshare --mount --propagation private``), so the mounts below are seen by it and its sessions only, and vanish
  with it:
  - a tmpfs on ``/sys/firmware`` holds ``devicetree/base/model`` (the board name, NUL-terminated, as the kernel
    exposes it; the probe reads it where ``/proc/device-tree`` is absent, as on a real Jetson where that is a link);
  - an overlay on ``/etc`` adds ``nv_tegra_release`` and a ``passwd`` whose root home is a temporary folder: the
    device's ``~`` (so the test can check that nothing is written outside ``~/.cache/edgeres``);
  - an overlay on ``/run`` gives sshd the ``/run/sshd`` folder it requires;
  - a bind mount over ``/proc/sys/kernel/random/boot_id`` gives every "boot" its own id (``reboot()``);
  - optionally a small tmpfs on ``~/.cache/edgeres`` (a full disk).
* The remote PATH (sshd's ``SetEnv``) is one folder: links to the few standard tools a Jetson has (sh, tar, sha256sum,
  ...), the test doubles of ``nvpmodel``, ``jetson_clocks``, ``tegrastats`` and ``dpkg-query`` (tests/fixtures/jetson/
  bin, reading the board's fixture files), and ``python3``: a venv whose site-packages reach this project's numpy,
  pillow and onnxruntime and the TensorRT and pycuda doubles (tests/trt_double, the flavour the board's JetPack
  ships). ``python=False`` leaves ``python3`` out (a device without Python), ``python="bare"`` gives one with nothing
  installed, ``python="no-pillow"`` one without pillow (pip has no index: a device without internet access).

It needs root and mount namespaces (as CI's container runs); elsewhere ``unavailable()`` says why and the tests skip.
Every wait is bounded.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures" / "jetson"
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
TOOLS = ("sh", "cat", "mkdir", "rm", "mv", "cp", "ls", "stat", "cut", "head", "tail", "tr", "dirname", "sha256sum",
         "tar", "gzip", "sleep", "awk", "grep", "id", "df", "touch", "sed", "find", "du", "env", "readlink", "printf",
         "wc", "test", "true", "false", "expr", "basename", "date", "uname", "kill", "mktemp", "chmod", "ln", "xargs")
FAKES = ("nvpmodel", "jetson_clocks", "tegrastats", "dpkg-query")


def unavailable() -> str:
    """Why the loopback device cannot run here ('' when it can)."""
    if not os.path.exists(SSHD):
        return "OpenSSH's sshd is not installed (Debian: apt install openssh-server; .ci/run installs it)"
    if not shutil.which("ssh"):
        return "the OpenSSH client (ssh) is not installed"
    if os.geteuid() != 0:
        return "the loopback Jetson needs root for its private mount namespace (unshare --mount)"
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                        "mount -t tmpfs -o size=64k none /sys/firmware"], capture_output=True, text=True, timeout=20)
    if r.returncode != 0:
        return f"mount namespaces are not available here (unshare --mount: {r.stderr.strip()[:200]})"
    return ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DeviceImage:
    """What every loopback device shares: keys and the remote Python (a venv reaching the project's packages and the
    TensorRT/pycuda doubles). Made once per test session."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        for name in ("host_key", "user_key", "other_key", "other_host_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(self.root / name)],
                           check=True, timeout=30)
        venv = self.root / "venv"
        subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", str(venv)],
                       check=True, timeout=120)
        site = next((venv / "lib").glob("python3*/site-packages"))
        doubles = self.root / "doubles"
        (doubles / "tensorrt").mkdir(parents=True)
        (doubles / "pycuda").mkdir()
        shutil.copytree(HERE / "trt_double", doubles / "trt_double", ignore=shutil.ignore_patterns("__pycache__"))
        (doubles / "tensorrt" / "__init__.py").write_text(
            "# the TensorRT double (tests/trt_double) in the flavour the loopback board's JetPack ships\n"
            "import os, sys\nimport trt_double\n"
            "sys.modules[__name__] = trt_double.make_tensorrt(os.environ['EDGERES_TEST_TRT_FLAVOUR'], "
            "dla_cores=int(os.environ.get('EDGERES_TEST_DLA_CORES', '0')))\n")
        (doubles / "pycuda" / "__init__.py").write_text(
            "# the pycuda double (tests/trt_double): pycuda, pycuda.driver, pycuda.autoprimaryctx\n"
            "import sys\nimport trt_double\nsys.modules.update(trt_double.make_pycuda())\n")
        import sysconfig

        project = Path(sysconfig.get_paths()["purelib"])
        (site / "edgeres_loopback.pth").write_text(f"{doubles}\n{project}\n")
        self.python = venv / "bin" / "python3"
        # the same without pillow (what the bundle's install.sh would add): links to every other package
        nopil = self.root / "site-no-pillow"
        nopil.mkdir()
        for p in project.iterdir():
            if not p.name.lower().startswith(("pil", "pillow")) and p.suffix != ".pth":
                (nopil / p.name).symlink_to(p)
        venv2 = self.root / "no-pillow-venv"
        subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", str(venv2)],
                       check=True, timeout=120)
        site2 = next((venv2 / "lib").glob("python3*/site-packages"))
        (site2 / "edgeres_loopback.pth").write_text(f"{doubles}\n{nopil}\n")
        self.no_pillow_python = venv2 / "bin" / "python3"
        bare = self.root / "bare-venv"  # a Python with nothing installed (no numpy, pillow, TensorRT)
        subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", str(bare)],
                       check=True, timeout=120)
        self.bare_python = bare / "bin" / "python3"
        self.host_pub = (self.root / "host_key.pub").read_text().split()[:2]


class LoopbackDevice:
    """One board on 127.0.0.1: ``start()``, ``stop()``, ``reboot()``; ``env`` points edgeres' ssh at it."""

    def __init__(self, image: DeviceImage, root: Path, board: str = "orin-nano", python: bool = True,
                 cache_limit_kb: int | None = None):
        self.image, self.root, self.board = image, Path(root), board
        self.python, self.cache_limit_kb = python, cache_limit_kb
        self.board_dir = FIXTURES / board
        meta = dict(line.split(None, 1) for line in (self.board_dir / "device.txt").read_text().splitlines())
        self.flavour, self.dla_cores = meta["flavour"].strip(), int(meta["dla_cores"])
        self.tegrastats = HERE / "fixtures" / "tegrastats" / meta["tegrastats"].strip()
        self.home = self.root / "home"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.boot_id = str(uuid.uuid4())
        self._write_files()

    # ---------------------------------------------------------------- files
    def _write_files(self) -> None:
        r = self.root
        for d in ("home", "bin", "etc_up", "etc_work", "run_up/sshd", "run_work", "firmware/devicetree/base"):
            (r / d).mkdir(parents=True, exist_ok=True)
        os.chmod(r / "run_up" / "sshd", 0o755)
        shutil.copy(self.board_dir / "model", r / "firmware" / "devicetree" / "base" / "model")
        shutil.copy(self.board_dir / "nv_tegra_release", r / "etc_up" / "nv_tegra_release")
        passwd = Path("/etc/passwd").read_text().splitlines()
        (r / "etc_up" / "passwd").write_text("\n".join(
            f"root:x:0:0:root:{self.home}:/bin/sh" if ln.startswith("root:") else ln for ln in passwd) + "\n")
        for tool in TOOLS:
            path = shutil.which(tool)
            if path and not (r / "bin" / tool).exists():
                (r / "bin" / tool).symlink_to(path)
        for fake in FAKES:
            if fake == "jetson_clocks" and not (self.board_dir / "jetson_clocks.txt").exists():
                continue  # this board's fixture has no clock listing: the tool is absent
            (r / "bin" / fake).symlink_to(FIXTURES / "bin" / fake)
        if self.python:
            py = {"bare": self.image.bare_python, "no-pillow": self.image.no_pillow_python}.get(self.python,
                                                                                              self.image.python)
            (r / "bin" / "python3").write_text(f"#!/bin/sh\nexec {py} \"$@\"\n")
            os.chmod(r / "bin" / "python3", 0o755)
        (r / "authorized_keys").write_text((self.image.root / "user_key.pub").read_text())
        env = {"PATH": r / "bin", "EDGERES_FIXTURE_BOARD": self.board_dir, "EDGERES_FIXTURE_TEGRASTATS": self.tegrastats,
               "EDGERES_TEST_TRT_FLAVOUR": self.flavour, "EDGERES_TEST_DLA_CORES": self.dla_cores, "LANG": "C.UTF-8",
               "PIP_NO_INDEX": "1"}  # no network for pip: what a device without internet access does
        (r / "sshd_config").write_text("\n".join([
            f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {self.image.root / 'host_key'}",
            f"AuthorizedKeysFile {r / 'authorized_keys'}", "StrictModes no", "PasswordAuthentication no",
            "KbdInteractiveAuthentication no", "UsePAM no", "PermitRootLogin prohibit-password", "PidFile none",
            "MaxSessions 50", "MaxStartups 50", "SetEnv " + " ".join(f"{k}={v}" for k, v in env.items()), ""]))
        self.write_client_config()

    def write_client_config(self, identity: str = "user_key", host_key: str = "host_key") -> Path:
        """The client side: an ssh config (alias ``jetson-loopback``) with this key and this known host key."""
        r = self.root
        known = r / f"known_hosts_{host_key}"
        pub = (self.image.root / f"{host_key}.pub").read_text().split()[:2]
        known.write_text(f"[127.0.0.1]:{self.port} {' '.join(pub)}\n")
        cfg = r / f"ssh_config_{identity}_{host_key}"
        cfg.write_text("\n".join([
            "Host 127.0.0.1 jetson-loopback", "  HostName 127.0.0.1", f"  Port {self.port}", "  User root",
            f"  IdentityFile {self.image.root / identity}", "  IdentitiesOnly yes", f"  UserKnownHostsFile {known}",
            "  GlobalKnownHostsFile /dev/null", "  StrictHostKeyChecking yes", "  CheckHostIP no", ""]))
        self.ssh_config = cfg
        return cfg

    @property
    def url(self) -> str:
        return f"ssh://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict:
        return {"EDGERES_SSH_COMMAND": f"ssh -F {self.ssh_config}"}

    @property
    def cache(self) -> Path:
        return self.home / ".cache" / "edgeres"

    # ---------------------------------------------------------------- life cycle
    def _setup_script(self) -> str:
        r = self.root
        lines = ["set -e",
                 "mount -t tmpfs -o size=256k,mode=755 none /sys/firmware",
                 "mkdir -p /sys/firmware/devicetree/base",
                 f"cp {r}/firmware/devicetree/base/model /sys/firmware/devicetree/base/model",
                 f"mount -t overlay overlay -o lowerdir=/etc,upperdir={r}/etc_up,workdir={r}/etc_work /etc",
                 f"mount -t overlay overlay -o lowerdir=/run,upperdir={r}/run_up,workdir={r}/run_work /run",
                 f"printf '%s\\n' {self.boot_id} > {r}/boot_id",
                 f"mount --bind {r}/boot_id /proc/sys/kernel/random/boot_id"]
        if self.cache_limit_kb:
            lines += [f"mkdir -p {self.cache}", f"mount -t tmpfs -o size={self.cache_limit_kb}k none {self.cache}"]
        lines.append(f"exec {SSHD} -D -e -f {r}/sshd_config")
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 15.0) -> LoopbackDevice:
        (self.root / "setup.sh").write_text(self._setup_script())
        self.log = open(self.root / "sshd.log", "ab")
        self.proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", str(self.root / "setup.sh")],
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.root / 'sshd.log').read_text()[-2000:]}")
            with socket.socket() as s:
                s.settimeout(0.5)
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"sshd did not listen on port {self.port} within {timeout} s")

    def descendants(self) -> list:
        """Process ids started under this sshd (its per-connection processes and what they run)."""
        if self.proc is None:
            return []
        children: dict = {}
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                children.setdefault(ppid, []).append(int(d))
        out, todo = [], [self.proc.pid]
        while todo:
            for c in children.get(todo.pop(), []):
                out.append(c)
                todo.append(c)
        return out

    def stop(self) -> None:
        """Stop the server and cut every session now (as a crash or a pulled cable would)."""
        if self.proc is None:
            return
        for pid in self.descendants():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.kill(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=10)
        finally:
            self.proc = None
            self.log.close()

    def reboot(self) -> None:
        """Stop everything, then come back with a new boot id (the home folder, like a disk, survives)."""
        self.stop()
        self.boot_id = str(uuid.uuid4())
        self.start()

    def written_outside_cache(self) -> list:
        """Paths under the device's home that are not ~/.cache/edgeres (there should be none)."""
        out = []
        for p in self.home.rglob("*"):
            rel = p.relative_to(self.home).parts
            if rel[:2] != (".cache", "edgeres") and rel not in ((".cache",),):
                out.append(str(p.relative_to(self.home)))
        return out
