"""One multiplexed OpenSSH connection to a device, for the length of a run.

The system ``ssh`` client does the work, so whatever the user's ``~/.ssh/config`` says applies (keys, agents, jump
hosts, ports, user names, known hosts). edgeres adds only:

* ``BatchMode=yes``: never a password or passphrase prompt (a key or an agent, or a one-line failure);
* ``ConnectTimeout`` and ``ServerAliveInterval``: an unreachable or silent device fails in seconds, not minutes;
* ``ControlMaster``/``ControlPath`` in a private temporary folder (mode 700), so every command and transfer of the
  run rides one authenticated connection; ``ControlPersist`` bounds how long an orphaned connection can outlive a
  killed run, and ``close()`` ends it.

``EDGERES_SSH_COMMAND`` (like git's ``GIT_SSH_COMMAND``) replaces the ``ssh`` command, e.g.
``EDGERES_SSH_COMMAND="ssh -F ~/lab/ssh_config"``.

Files travel over the same connection as a byte stream into ``cat`` on the device (no scp/sftp subsystem needed),
into a ``.part`` file that is appended to on a retry and checked by sha256 before it takes its final name.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from edgeres.device.address import DeviceAddress
from edgeres.device.faults import DROPPED, UNREACHABLE, DeviceError, fault, from_ssh
from edgeres.errors import EdgeresError

SSH_ENV = "EDGERES_SSH_COMMAND"
CHUNK = 1 << 20


def ssh_command() -> list:
    """The ssh client command line to start from: $EDGERES_SSH_COMMAND, else ``ssh``."""
    base = shlex.split(os.environ.get(SSH_ENV, "") or "ssh")
    if not shutil.which(base[0]):
        raise EdgeresError(f"the OpenSSH client `{base[0]}` is not installed here: install it (Debian/Ubuntu: "
                           "sudo apt install openssh-client)" + (f", or fix {SSH_ENV}" if os.environ.get(SSH_ENV) else ""))
    return base


# Every command runs with what would otherwise land elsewhere in the home folder redirected into edgeres' own folder,
# so nothing is written outside ~/.cache/edgeres: the venv the bundle's install.sh makes where a Python package is
# missing (EDGERES_VENV, which run.sh then uses), the bundle runtime's engine records (EDGERES_STATE_DIR), and the
# caches libraries keep (ONNX Runtime's telemetry id under $XDG_CACHE_HOME, CUDA's JIT cache).
REMOTE_ENV = ('C="$HOME/.cache/edgeres"; export EDGERES_VENV="$C/venv" EDGERES_STATE_DIR="$C/state" '
              'XDG_CACHE_HOME="$C/xdg" CUDA_CACHE_PATH="$C/cuda-cache"; ')


def remote_sh(script: str) -> str:
    """A remote command line that runs ``script`` with /bin/sh whatever the user's login shell is."""
    return "sh -c " + shlex.quote(REMOTE_ENV + script)


class SshTransport:
    """``with SshTransport(addr) as t: t.run("uname -a", "probe")``; every failure is a DeviceError (one line)."""

    def __init__(self, address: DeviceAddress, connect_timeout: int = 10, log=None):
        self.address, self.connect_timeout = address, connect_timeout
        self.log = log or (lambda msg: None)
        self.base = ssh_command()
        self.dir: str | None = None
        self.stats = {"commands": 0, "seconds": 0.0, "bytes_up": 0, "bytes_down": 0, "connects": 0}

    # ---------------------------------------------------------------- the shared connection
    @property
    def control_path(self) -> str:
        return os.path.join(self.dir, "cm")

    def _options(self) -> list:
        return ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.connect_timeout}",
                "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3",
                "-o", f"ControlPath={self.control_path}"]

    def open(self, step: str = "connect") -> SshTransport:
        if self.dir is None:  # short path: a unix socket path is limited to about 100 bytes
            self.dir = tempfile.mkdtemp(prefix="edgeres-ssh-", dir="/tmp" if os.path.isdir("/tmp") else None)
            os.chmod(self.dir, 0o700)
        log_path = os.path.join(self.dir, "master.log")
        cmd = [*self.base, *self._options(), "-o", "ControlMaster=yes", "-o", "ControlPersist=300", "-N", "-f",
               *self.address.destination()]
        t0 = time.perf_counter()
        with open(log_path, "w") as err:  # -f: the master lives on in the background, holding this file, not a pipe
            try:
                rc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                    timeout=self.connect_timeout * 3 + 15).returncode
            except subprocess.TimeoutExpired:
                raise fault(UNREACHABLE, str(self.address), step, "no answer") from None
        self.stats["seconds"] += time.perf_counter() - t0
        self.stats["connects"] += 1
        if rc != 0:
            raise from_ssh(rc, Path(log_path).read_text(errors="replace"), str(self.address), step)
        return self

    def alive(self) -> bool:
        if self.dir is None or not os.path.exists(self.control_path):
            return False
        r = subprocess.run([*self.base, "-o", f"ControlPath={self.control_path}", "-O", "check",
                            *self.address.destination()], stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
        return r.returncode == 0

    def reconnect(self, step: str) -> None:
        """A new shared connection after a drop (the old one is closed first if it is still half there)."""
        self._exit_master()
        self.open(step)

    def _exit_master(self) -> None:
        if self.dir and os.path.exists(self.control_path):
            subprocess.run([*self.base, "-o", f"ControlPath={self.control_path}", "-O", "exit",
                            *self.address.destination()], stdin=subprocess.DEVNULL, capture_output=True, timeout=30)

    def close(self) -> None:
        try:
            self._exit_master()
        except (OSError, subprocess.SubprocessError):
            pass
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()
        return False

    # ---------------------------------------------------------------- commands
    def _client(self, remote: str) -> list:
        return [*self.base, *self._options(), "-o", "ControlMaster=no", "-T", *self.address.destination(), remote]

    def run(self, script: str, step: str, timeout: float = 600, stdin_bytes: bytes | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
        """Run ``script`` (POSIX sh) on the device over the shared connection. With ``check``, a non-zero exit is a
        DeviceError (a drop, a full disk, or the command's own failure with its last stderr line)."""
        t0 = time.perf_counter()
        try:
            r = subprocess.run(self._client(remote_sh(script)), input=stdin_bytes,
                               stdin=None if stdin_bytes is not None else subprocess.DEVNULL,
                               capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise fault(DROPPED, str(self.address), step, f"no answer in {timeout:.0f} s") from None
        finally:
            self.stats["seconds"] += time.perf_counter() - t0
            self.stats["commands"] += 1
        r = subprocess.CompletedProcess(r.args, r.returncode, r.stdout.decode(errors="replace"),
                                        r.stderr.decode(errors="replace"))
        if check and r.returncode != 0:
            raise self.error(r.returncode, r.stderr, step)
        return r

    def error(self, rc: int, stderr: str, step: str) -> DeviceError:
        alive = self.alive() if rc == 255 else True
        return from_ssh(rc, stderr, str(self.address), step, master_alive=alive)

    # ---------------------------------------------------------------- files
    def upload(self, local, remote: str, sha256: str, step: str, progress=None) -> bool:
        """Put ``local`` at ``remote`` (a path under $HOME, written in sh syntax, e.g. "$HOME/.cache/edgeres/x/f"),
        appending to a ``.part`` left by an interrupted transfer, checked against ``sha256`` before it takes its
        name. Returns False when ``remote`` was already there (nothing sent)."""
        size = os.path.getsize(local)
        have = self.run(f'f="{remote}"; mkdir -p "$(dirname "$f")" && if [ -f "$f" ]; then echo done; '
                        f'else stat -c %s "$f.part" 2>/dev/null || echo 0; fi', step).stdout.strip()
        if have == "done":
            return False
        offset = int(have) if have.isdigit() and int(have) <= size else 0
        if offset:
            self.log(f"{self.address}: resuming the transfer of {Path(local).name} at {offset / 1e6:.1f} of "
                     f"{size / 1e6:.1f} MB")
        self._stream(local, f'f="{remote}.part"; ' + ('cat >> "$f"' if offset else 'cat > "$f"'), offset, size,
                     step, progress)
        got = self.run(f'f="{remote}"; sha256sum "$f.part" | cut -d" " -f1', step).stdout.strip()
        if got != sha256:
            self.run(f'rm -f "{remote}.part"', step)
            raise fault(DROPPED, str(self.address), step, f"{Path(local).name} arrived corrupt (sha256 {got[:12]}…)")
        self.run(f'f="{remote}"; mv "$f.part" "$f"', step)
        return True

    def _stream(self, local, script: str, offset: int, size: int, step: str, progress) -> None:
        t0 = time.perf_counter()
        proc = subprocess.Popen(self._client(remote_sh(script)), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        sent = offset
        try:
            with open(local, "rb") as f:
                f.seek(offset)
                for block in iter(lambda: f.read(CHUNK), b""):
                    proc.stdin.write(block)
                    sent += len(block)
                    self.stats["bytes_up"] += len(block)
                    if progress:
                        progress(sent, size)
            proc.stdin.close()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the reason is on stderr
        try:
            err = proc.stderr.read().decode(errors="replace")
            rc = proc.wait(timeout=600)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise fault(DROPPED, str(self.address), step, "the transfer stalled") from None
        finally:
            self.stats["seconds"] += time.perf_counter() - t0
            self.stats["commands"] += 1
        if rc != 0 or sent < size:
            raise self.error(rc if rc != 0 else 255, err, step)

    def download(self, remote: str, step: str) -> bytes:
        """The bytes of the device's file ``remote`` (sh syntax path)."""
        r = subprocess.run(self._client(remote_sh(f'cat "{remote}"')), stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=600)
        self.stats["commands"] += 1
        if r.returncode != 0:
            raise self.error(r.returncode, r.stderr.decode(errors="replace"), step)
        self.stats["bytes_down"] += len(r.stdout)
        return r.stdout
