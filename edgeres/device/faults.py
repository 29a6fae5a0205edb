"""Every way a device can fail, as one line that names the device, what happened and the fix.

The OpenSSH client says what went wrong on stderr (exit status 255 for its own errors); ``classify`` reads those
messages, as OpenSSH 8-9 prints them, into one of the kinds below. A drop is retryable (the step runs once more over
a new connection); everything else stops the run, and every stop keeps the local run directory intact: running the
same command again resumes.
"""

from __future__ import annotations

import re

from edgeres.errors import EdgeresError

UNREACHABLE = "unreachable"
AUTH = "authentication"
HOSTKEY_CHANGED = "host key changed"
HOSTKEY_UNKNOWN = "host key unknown"
DROPPED = "connection dropped"
DISK_FULL = "disk full"
MISSING = "missing software"
REBOOTED = "rebooted"
MISMATCH = "target mismatch"
REMOTE = "remote command failed"

RESUME = "run the same command again to resume (finished work is kept here and on the device)"


class DeviceError(EdgeresError):
    """A device fault: ``kind`` is one of the constants above; ``str(e)`` is the one line the user sees."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind

    @property
    def retryable(self) -> bool:
        return self.kind == DROPPED


# (kind, pattern) in the order they are tried: the host-key lines come before "Host key verification failed", which
# ends both the changed-key and the unknown-key message.
_PATTERNS = (
    (HOSTKEY_CHANGED, re.compile(r"REMOTE HOST IDENTIFICATION HAS CHANGED|has changed and you have requested strict")),
    (HOSTKEY_UNKNOWN, re.compile(r"No \S+ host key is known for|Host key verification failed|"
                                 r"host key for .* is not known")),
    (AUTH, re.compile(r"Permission denied \(|Too many authentication failures|no mutual signature|"
                      r"Authentication failed")),
    (UNREACHABLE, re.compile(r"Could not resolve hostname|Connection refused|No route to host|Network is unreachable|"
                             r"Connection timed out|Operation timed out|timed out during banner exchange|"
                             r"Host is down|Name or service not known|proxy.*(?:failed|refused)|"
                             r"kex_exchange_identification")),
    (DISK_FULL, re.compile(r"No space left on device|Disk quota exceeded")),
    (DROPPED, re.compile(r"Connection (?:reset|closed) by|closed by remote host|Broken pipe|"
                         r"client_loop: send disconnect|Connection to \S+ closed|Timeout, server \S+ not responding|"
                         r"mux_client_\w+: .*(?:failed|Broken pipe)|packet_write_wait|Shared connection to \S+ closed")),
)


def classify_text(stderr: str) -> str | None:
    """The kind of fault the ssh client's (or a remote command's) stderr reports; None when it names none."""
    for kind, pat in _PATTERNS:
        if pat.search(stderr or ""):
            return kind
    return None


def last_line(text: str, limit: int = 300) -> str:
    """The last non-empty line of a command's output (the one that usually says why), shortened."""
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip() and not ln.startswith("@@@")]
    line = lines[-1] if lines else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def fault(kind: str, device: str, step: str, detail: str = "") -> DeviceError:
    """The one line for ``kind`` on ``device`` during ``step``."""
    d = f" ({detail})" if detail else ""
    msg = {
        UNREACHABLE: f"{device} is unreachable during {step}{d}: check that it is powered on and on the network, and "
                     f"that `ssh {device}` works from this machine; then {RESUME}",
        AUTH: f"{device} refused the ssh key during {step}{d}: edgeres never asks for a password (BatchMode); install "
              f"your key on the device with `ssh-copy-id {device}` or name it (IdentityFile) in ~/.ssh/config, then "
              f"{RESUME}",
        HOSTKEY_CHANGED: f"{device}: its ssh host key CHANGED since you last connected{d}; if the device was "
                         "re-flashed, remove the old key with `ssh-keygen -R HOST` and check the new one with "
                         f"`ssh {device}`; otherwise someone may be intercepting the connection. Nothing was sent",
        HOSTKEY_UNKNOWN: f"{device}: its ssh host key is not known here{d}; connect once with `ssh {device}`, check "
                         f"and accept the key, then {RESUME}",
        DROPPED: f"the connection to {device} dropped during {step}{d} and the retry failed too; {RESUME}",
        DISK_FULL: f"{device}: no space left in ~/.cache/edgeres during {step}{d}; free space on the device (old "
                   f"bundles: `rm -rf ~/.cache/edgeres/<sha256>` there), then {RESUME}",
        REBOOTED: f"{device} rebooted during {step} (its boot id changed): clocks and power mode may differ from the "
                  f"probe's; {RESUME}",
    }.get(kind, f"{device}: {step} failed{d}; {RESUME}")
    return DeviceError(kind, msg)


def from_ssh(rc: int, stderr: str, device: str, step: str, master_alive: bool = True) -> DeviceError:
    """The DeviceError for a failed ssh command: exit status 255 is the client's own failure; a dead shared
    connection (``master_alive`` False) is a drop even when the client printed nothing."""
    kind = classify_text(stderr)
    if kind in (None, UNREACHABLE) and rc == 255 and not master_alive:  # the shared connection died under the command
        kind = DROPPED  # (its client may add "Control socket connect(...): Connection refused")
    if kind is None:
        kind = DROPPED if rc == 255 else REMOTE
    detail = last_line(stderr) if kind in (REMOTE, UNREACHABLE, AUTH) else ""
    if kind == REMOTE:
        return DeviceError(REMOTE, f"{device}: {step} failed on the device (exit {rc}"
                                   + (f": {detail}" if detail else "") + f"); {RESUME}")
    return fault(kind, device, step, detail if kind != AUTH else "")
