"""What a Jetson's own files say it is, as data: board model -> target profile, L4T release -> JetPack.

Board names are the device-tree ``model`` strings NVIDIA's BSP writes (e.g. "NVIDIA Jetson Orin Nano Engineering
Reference Developer Kit Super", "NVIDIA Jetson AGX Orin Developer Kit", "NVIDIA Jetson Xavier NX Developer Kit");
carrier boards from other vendors keep the module's name in it ("Lanner EAI-I233 Jetson AGX Orin"). The L4T to
JetPack table is NVIDIA's JetPack archive (developer.nvidia.com/embedded/jetpack-archive); the ``nvidia-jetpack``
package, when installed, is preferred to it.
"""

from __future__ import annotations

import re

# (pattern on the model string, target profile or None when edgeres has none, short name); first match wins
BOARDS = (
    (re.compile(r"Orin Nano", re.I), "jetson-orin-nano", "Orin Nano"),
    (re.compile(r"Orin NX", re.I), "jetson-orin-nx", "Orin NX"),
    (re.compile(r"AGX Orin|\bOrin\b", re.I), "jetson-agx-orin", "AGX Orin"),
    (re.compile(r"Xavier NX", re.I), "jetson-xavier-nx", "Xavier NX"),
    (re.compile(r"AGX Xavier|Jetson-AGX|\bXavier\b", re.I), None, "AGX Xavier"),
    (re.compile(r"Thor", re.I), "jetson-thor", "Thor"),
    (re.compile(r"Jetson[ -]Nano", re.I), "jetson-nano", "Nano"),
    (re.compile(r"TX2|TX1", re.I), None, "TX1/TX2"),
)

L4T_JETPACK = {
    "32.7.1": "4.6.1", "32.7.2": "4.6.2", "32.7.3": "4.6.3", "32.7.4": "4.6.4", "32.7.5": "4.6.5", "32.7.6": "4.6.6",
    "35.1.0": "5.0.2", "35.2.1": "5.1", "35.3.1": "5.1.1", "35.4.1": "5.1.2", "35.5.0": "5.1.3", "35.6.0": "5.1.4",
    "36.2.0": "6.0 DP", "36.3.0": "6.0", "36.4.0": "6.1", "36.4.3": "6.2", "36.4.4": "6.2.1", "38.2.0": "7.0",
}

_RELEASE = re.compile(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)")


def board_of(model: str | None) -> tuple:
    """(target profile name or None, short name or None) for a device-tree model string."""
    for pat, target, short in BOARDS:
        if model and pat.search(model):
            return target, short
    return None, None


def l4t_of(nv_tegra_release: str | None) -> str | None:
    """'36.4.3' from '# R36 (release), REVISION: 4.3, GCID: ...' (the first line of /etc/nv_tegra_release)."""
    m = _RELEASE.search(nv_tegra_release or "")
    if not m:
        return None
    parts = (m.group(2).split(".") + ["0"])[:2]
    return f"{m.group(1)}.{parts[0]}.{parts[1]}"


def jetpack_of(packages: dict, l4t: str | None) -> str | None:
    """The JetPack release: the nvidia-jetpack package's version ('6.2+b77' -> '6.2', '5.1.2-b104' -> '5.1.2'),
    else NVIDIA's L4T table; None when neither says."""
    v = (packages or {}).get("nvidia-jetpack")
    if v:
        return re.split(r"[+-]", v, maxsplit=1)[0]
    return L4T_JETPACK.get(l4t or "")


def package_version(v: str | None) -> str | None:
    """'10.3.0.30-1+cuda12.5' -> '10.3.0.30' (a Debian version's upstream part)."""
    return re.split(r"-", v, maxsplit=1)[0] if v else None
