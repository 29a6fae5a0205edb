"""RAM and power while a benchmark runs, from tegrastats (Jetson) when present; nothing elsewhere.

Power is the board's input power, read per board from the rails its tegrastats prints (NVIDIA Jetson Linux Developer
Guide, Platform Power and Performance, per module; real lines per board in tests/fixtures/tegrastats/):

* Orin Nano, Orin NX, Xavier NX (and TX1/TX2): ``VDD_IN`` is the module's input rail.
* Thor: ``VIN`` (the INA238 on the module input).
* Nano: ``POM_5V_IN`` (values print without ``mW`` on L4T 32.x; so does Xavier NX on L4T 32.x).
* AGX Orin: no input rail; ``VDD_GPU_SOC + VDD_CPU_CV + VIN_SYS_5V0`` feed the module (``VDDQ_VDD2_1V8AO`` is
  derived from ``VIN_SYS_5V0`` and is not added). The 5 V rail alone is a fraction of it.
* AGX Xavier: no input rail; the sum of ``GPU CPU SOC CV VDDRQ SYS5V``.

A rail prints ``current/average`` (JetPack 7.2: ``current/average/peak``), with or without ``mW``; the current value
is used.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading

_RAM = re.compile(r"RAM (\d+)/(\d+)MB")
_RAIL = re.compile(r"(?<![\w@])([A-Z][A-Z0-9_]*) (-?\d+)(?:mW)?/(-?\d+)(?:mW)?(?:/(-?\d+)(?:mW)?)?(?=\s|$)")
_INPUT_RAILS = ("VDD_IN", "VIN", "POM_5V_IN")  # one rail that is the whole input, in the boards that have one
_SUMMED = (("VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"),  # AGX Orin
           ("GPU", "CPU", "SOC", "CV", "VDDRQ", "SYS5V"))  # AGX Xavier


def rails(line: str) -> dict:
    """{rail name: current mW} of one tegrastats line (RAM/SWAP/IRAM fields are not rails)."""
    return {m.group(1): int(m.group(2)) for m in _RAIL.finditer(line) if m.group(1) not in ("RAM", "SWAP", "IRAM")}


def input_power(r: dict) -> tuple[int | None, str | None]:
    """(board input power in mW, how it was read) from a line's rails; (None, None) for an unknown board."""
    for name in _INPUT_RAILS:
        if name in r:
            return r[name], name
    for group in _SUMMED:
        if all(n in r for n in group[:3]):
            present = [n for n in group if n in r]
            return sum(r[n] for n in present), "+".join(present)
    return None, None


class TegraStats:
    """Context manager sampling tegrastats every 100 ms: peak RAM (MB) and mean input power (mW)."""

    def __init__(self, interval_ms: int = 100):
        self.interval_ms = interval_ms
        self.ram, self.power = [], []
        self.proc = None
        self.available = shutil.which("tegrastats") is not None

    def __enter__(self):
        if self.available:
            self.proc = subprocess.Popen(["tegrastats", "--interval", str(self.interval_ms)], stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, text=True)
            self.thread = threading.Thread(target=self._read, daemon=True)
            self.thread.start()
        return self

    def _read(self):
        for line in self.proc.stdout:
            d = parse_line(line)
            if d["ram_mb"] is not None:
                self.ram.append(d["ram_mb"])
            if d["power_mw"] is not None:
                self.power.append(d["power_mw"])

    def __exit__(self, *exc):
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=5)
        return False

    def summary(self) -> dict:
        return {"ram_peak_mb": max(self.ram) if self.ram else None,
                "power_mean_mw": sum(self.power) / len(self.power) if self.power else None}


def parse_line(line: str) -> dict:
    """One tegrastats line -> {"ram_mb", "power_mw"} (board input power; ``input_power(rails(line))`` says how)."""
    m = _RAM.search(line)
    return {"ram_mb": int(m.group(1)) if m else None, "power_mw": input_power(rails(line))[0]}
