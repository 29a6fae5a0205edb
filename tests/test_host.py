"""report.json's host names the CPU's INT8-relevant instruction sets (docs/design.md §3), read from /proc/cpuinfo."""

from __future__ import annotations

from pathlib import Path

from edgeres.host import CPU_FLAGS, host_info


def test_host_info_lists_the_cpus_instruction_sets():
    words = set()
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":", 1)[0].strip().lower() in ("flags", "features"):
                words |= set(line.split(":", 1)[1].split())
    host = host_info()
    assert host["cpu_flags"] == [w for w in CPU_FLAGS if w in words]
    assert host["cpu"] and ":" not in host["cpu"]
