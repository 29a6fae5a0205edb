"""RAM and power while a benchmark runs, from tegrastats (Jetson) when present; nothing elsewhere."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading

_RAM = re.compile(r"RAM (\d+)/(\d+)MB")
_POWER = re.compile(r"(VDD_IN|POM_5V_IN|VIN_SYS_5V0) (\d+)mW")


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
            m = _RAM.search(line)
            if m:
                self.ram.append(int(m.group(1)))
            m = _POWER.search(line)
            if m:
                self.power.append(int(m.group(2)))

    def __exit__(self, *exc):
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=5)
        return False

    def summary(self) -> dict:
        return {"ram_peak_mb": max(self.ram) if self.ram else None,
                "power_mean_mw": sum(self.power) / len(self.power) if self.power else None}


def parse_line(line: str) -> dict:
    """One tegrastats line -> {"ram_mb", "power_mw"} (for tests and logs)."""
    m, p = _RAM.search(line), _POWER.search(line)
    return {"ram_mb": int(m.group(1)) if m else None, "power_mw": int(p.group(2)) if p else None}
