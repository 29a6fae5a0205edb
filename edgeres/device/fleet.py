"""The devices of one run (``--device`` repeatable): connected and probed before any stage runs, checked against the
target profile (or giving it, with ``--target auto``), measured one after the other, hung up at the end."""

from __future__ import annotations

import logging

from edgeres.device.address import parse_addresses
from edgeres.device.faults import MISMATCH, DeviceError
from edgeres.device.probe import check_target, require_ready, trt_note
from edgeres.device.session import INSTALLABLE, DeviceSession

_log = logging.getLogger("edgeres.device")


class Fleet:
    """``with Fleet(["ssh://jetson", "agx"]) as fleet: fleet.resolve_target("auto")``."""

    def __init__(self, devices, log=None, progress=None):
        self.addresses = parse_addresses(devices)
        self.log = log or _log.info
        self.sessions = [DeviceSession(a, self.log, progress) for a in self.addresses]
        self.notes: list = []

    def open(self) -> Fleet:
        try:
            for s in self.sessions:
                self.log(f"{s.address}: connecting and probing")
                s.open()
                self.log(f"{s.address}: {s.info.label()}")
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        for s in self.sessions:
            s.close()

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()
        return False

    def resolve_target(self, name: str) -> str:
        """The target profile to optimize for: ``name``, or with ``auto`` the first device's board. Every device is
        checked against it (a board of another GPU generation is refused) and must have what the bundle needs."""
        from edgeres.targets import get_target

        first = self.sessions[0].info
        if name == "auto":
            if first.target is None:
                raise DeviceError(MISMATCH, f"--target auto: {first.address} ({first.board or 'no device-tree model'}) "
                                            "matches no edgeres target profile; give --target (see `edgeres targets`)")
            name = first.target
            self.log(f"--target auto: {name}, from {first.address} ({first.board_short})")
        target = get_target(name)
        for s in self.sessions:
            for note in (check_target(s.info, target), trt_note(s.info, target)):
                if note:
                    self.notes.append(note)
                    self.log(note)
            for w in s.info.warnings:
                self.log(f"{s.address}: {w}")
            require_ready(s.info, installable=INSTALLABLE)  # numpy/pillow: the bundle's install.sh adds them
        return target.name
