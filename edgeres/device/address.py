"""Where a device is: ``ssh://[user@]host[:port]`` or a ``Host`` alias of the user's ssh config (``jetson``).

Only what the user typed is kept (it is what a run's config records): no password is ever accepted in an address, and
nothing else about the connection is stored. Everything else (keys, agents, jump hosts, known hosts) is the system
OpenSSH client's business, read from the user's own ssh configuration.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from edgeres.errors import EdgeresError

# an ssh config Host alias or a host name: never starting with '-' (that would be read as an ssh option)
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.%+-]*$")
_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


class AddressError(EdgeresError):
    """A --device value that is not an ssh address."""


@dataclass(frozen=True)
class DeviceAddress:
    text: str  # as the user gave it: what the run's config records
    host: str
    user: str | None = None
    port: int | None = None

    def destination(self) -> list:
        """The ssh arguments naming the device: ``[-p PORT] -- [user@]host`` (the ``--`` keeps a host from ever being
        read as an option)."""
        dest = f"{self.user}@{self.host}" if self.user else self.host
        return (["-p", str(self.port)] if self.port else []) + ["--", dest]

    @property
    def slug(self) -> str:
        """A file-name-safe label, for the run directory's per-device folder."""
        s = f"{self.user + '@' if self.user else ''}{self.host}{'_' + str(self.port) if self.port else ''}"
        return re.sub(r"[^A-Za-z0-9_.@-]", "_", s)

    def __str__(self) -> str:
        return self.text


def parse_address(text: str) -> DeviceAddress:
    """``ssh://[user@]host[:port]`` or ``[user@]alias``; AddressError (one line, the fix) for anything else."""
    raw = (text or "").strip()
    if not raw:
        raise AddressError("--device is empty: give ssh://[user@]host[:port] or a Host alias from ~/.ssh/config")
    if "://" in raw:
        return _parse_url(raw)
    user, _, host = raw.rpartition("@")
    if ":" in host and not host.startswith("["):
        raise AddressError(f"--device {raw}: a port needs the ssh:// form (ssh://{raw}) or a Port line in ~/.ssh/config")
    _check_name(raw, host, user or None)
    return DeviceAddress(raw, host, user or None)


def _parse_url(raw: str) -> DeviceAddress:
    try:
        u = urlsplit(raw)
        port = u.port
    except ValueError as e:
        raise AddressError(f"--device {raw}: {e}; give ssh://[user@]host[:port]") from None
    if u.scheme != "ssh":
        raise AddressError(f"--device {raw}: only ssh:// addresses are supported (ssh://[user@]host[:port])")
    if u.password is not None:
        raise AddressError(f"--device {raw}: a password in the address is refused (edgeres never takes one); "
                           "use an ssh key (ssh-copy-id) and give ssh://user@host")
    if u.path not in ("", "/") or u.query or u.fragment:
        raise AddressError(f"--device {raw}: nothing may follow the host and port; give ssh://[user@]host[:port]")
    host = u.hostname or ""
    if port is not None and not 0 < port < 65536:
        raise AddressError(f"--device {raw}: port {port} is not 1-65535")
    user = unquote(u.username) if u.username else None
    if ":" in host:  # IPv6 literal, as written in brackets
        if not re.fullmatch(r"[0-9A-Fa-f:.]+", host):
            raise AddressError(f"--device {raw}: {host!r} is not an IPv6 address")
        _check_name(raw, "h", user)
        return DeviceAddress(raw, host, user, port)
    _check_name(raw, host, user)
    return DeviceAddress(raw, host, user, port)


def _check_name(raw: str, host: str, user: str | None) -> None:
    if not host or not _NAME.match(host):
        raise AddressError(f"--device {raw}: {host!r} is not a host name or ssh config alias")
    if user is not None and not _USER.match(user):
        raise AddressError(f"--device {raw}: {user!r} is not a user name")


def parse_addresses(texts) -> list:
    """Each --device once, in order (a repeated one is measured once)."""
    out, seen = [], set()
    for t in texts or ():
        a = parse_address(t)
        if a.text not in seen:
            seen.add(a.text)
            out.append(a)
    return out
