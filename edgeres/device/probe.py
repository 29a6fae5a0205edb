"""`edgeres device probe`: what the board is and whether it can run a bundle, read over ssh (edgeres.device.probe_script
runs there), with every missing piece named with its fix; and whether a target profile fits the board."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgeres.device import boards
from edgeres.device.faults import MISMATCH, MISSING, DeviceError

SCRIPT = Path(__file__).with_name("probe_script.py")
_CLOCK = re.compile(r"^(cpu\d+|GPU):?\s.*?MinFreq=(\d+)\s+MaxFreq=(\d+)\s+CurrentFreq=(\d+)", re.M)
_POWER = re.compile(r"NV Power Mode:\s*(\S+)\s*\n\s*(\d+)?")
MIN_FREE_MB = 200  # below this the probe warns; the transfer itself checks the bundle's real size


@dataclass
class DeviceInfo:
    address: str
    board: str | None = None
    board_short: str | None = None
    target: str | None = None  # the edgeres profile of this board
    l4t: str | None = None
    jetpack: str | None = None
    tensorrt: str | None = None
    cuda: str | None = None
    python: str | None = None
    numpy: str | None = None
    dla_cores: int | None = None
    power_mode: str | None = None
    clocks_locked: bool | None = None
    tegrastats: bool = False
    free_disk_mb: float | None = None
    mem_total_mb: float | None = None
    mem_available_mb: float | None = None
    boot_id: str | None = None
    missing: list = field(default_factory=list)  # [what, fix]
    warnings: list = field(default_factory=list)

    def label(self) -> str:
        """The report's ``device`` cell: board, JetPack, TensorRT and power mode."""
        board = (self.board or self.address).replace("NVIDIA ", "", 1)
        parts = [board, f"JetPack {self.jetpack}" if self.jetpack else (f"L4T {self.l4t}" if self.l4t else None),
                 f"TensorRT {self.tensorrt}" if self.tensorrt else None,
                 f"power mode {self.power_mode}" + (", clocks locked" if self.clocks_locked else "")
                 if self.power_mode else None]
        return ", ".join(p for p in parts if p)

    def lines(self) -> list:
        mb = lambda v: f"{v / 1024:.1f} GB" if v and v >= 1024 else (f"{v:.0f} MB" if v is not None else "?")  # noqa: E731
        clocks = {True: "locked (jetson_clocks)", False: "not locked (DVFS)", None: "unknown"}[self.clocks_locked]
        out = [f"device      {self.address}",
               f"board       {self.board or 'unknown (no device-tree model)'}"
               + (f"  -> target {self.target}" if self.target else ""),
               f"L4T         {self.l4t or '?'}   JetPack {self.jetpack or '?'}",
               f"TensorRT    {self.tensorrt or 'missing'}   CUDA {self.cuda or '?'}   DLA cores "
               f"{self.dla_cores if self.dla_cores is not None else '?'}",
               f"Python      {self.python or 'missing'}   numpy {self.numpy or 'missing'}",
               f"power mode  {self.power_mode or '?'}   clocks {clocks}   tegrastats "
               f"{'yes' if self.tegrastats else 'no'}",
               f"free        disk {mb(self.free_disk_mb)} (~/.cache/edgeres)   memory {mb(self.mem_available_mb)} of "
               f"{mb(self.mem_total_mb)}"]
        out += [f"MISSING     {what}: {fix}" for what, fix in self.missing]
        out += [f"note        {w}" for w in self.warnings]
        return out

    def to_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------------------------------------ probing
def probe(transport, step: str = "probe") -> DeviceInfo:
    """Run the probe script on the device and read its answer."""
    script = ('if [ -x "$EDGERES_VENV/bin/python3" ]; then exec "$EDGERES_VENV/bin/python3" -E -B -; fi; '  # as run.sh
              'if command -v python3 >/dev/null 2>&1; then exec python3 -E -B -; fi; echo "@@edgeres-nopython"; '
              'for f in /proc/device-tree/model /sys/firmware/devicetree/base/model; do '
              'if [ -r "$f" ]; then printf "@@model %s\\n" "$(tr -d "\\000" < "$f")"; break; fi; done; '
              'printf "@@release %s\\n" "$(head -n 1 /etc/nv_tegra_release 2>/dev/null)"')
    r = transport.run(script, step, timeout=120, stdin_bytes=SCRIPT.read_bytes())
    return parse(str(transport.address), r.stdout)


def parse(address: str, out: str) -> DeviceInfo:
    """A DeviceInfo from the probe's output (the JSON line, or the shell's lines where python3 is missing)."""
    for line in out.splitlines():
        if line.startswith("@@edgeres-probe "):
            return from_raw(address, json.loads(line[len("@@edgeres-probe "):]))
    raw = {"python": None}
    for line in out.splitlines():
        if line.startswith("@@model "):
            raw["model"] = line[8:].strip() or None
        elif line.startswith("@@release "):
            raw["nv_tegra_release"] = line[10:].strip() or None
    return from_raw(address, raw)


def from_raw(address: str, raw: dict) -> DeviceInfo:
    info = DeviceInfo(address=address, board=raw.get("model"))
    info.target, info.board_short = boards.board_of(info.board)
    info.l4t = boards.l4t_of(raw.get("nv_tegra_release"))
    pk = raw.get("packages") or {}
    info.jetpack = boards.jetpack_of(pk, info.l4t)
    trt = raw.get("tensorrt") or {}
    info.tensorrt = (trt.get("version") if trt.get("ok") else None)
    info.dla_cores = trt.get("dla_cores")
    info.cuda = raw.get("cuda") or boards.package_version(next((v for k, v in sorted(pk.items())
                                                                 if k.startswith("cuda-cudart-")), None))
    py = raw.get("python") or {}
    info.python = py.get("version")
    info.numpy = (raw.get("numpy") or {}).get("version") if (raw.get("numpy") or {}).get("ok") else None
    nvp = raw.get("nvpmodel") or {}
    m = _POWER.search(nvp.get("out") or "")
    info.power_mode = (f"{m.group(1)}" + (f" (mode {m.group(2)})" if m.group(2) else "")) if m else None
    info.clocks_locked, clock_note = clocks_state(raw.get("clocks") or {})
    info.tegrastats = bool(raw.get("tegrastats"))
    free = raw.get("cache_free_bytes")
    info.free_disk_mb = free / 1e6 if free is not None else None
    mem = raw.get("memory") or {}
    info.mem_total_mb = mem["MemTotal"] / 1e6 if "MemTotal" in mem else None
    info.mem_available_mb = mem["MemAvailable"] / 1e6 if "MemAvailable" in mem else None
    info.boot_id = raw.get("boot_id")
    _needs(info, raw, trt, clock_note)
    return info


def clocks_state(c: dict) -> tuple:
    """(locked?, note) from ``jetson_clocks --show``: locked when every online CPU and the GPU run at MinFreq ==
    MaxFreq (what jetson_clocks sets); None when it could not be read (it needs root)."""
    if not c.get("available"):
        return None, "jetson_clocks is not installed: clock state unknown"
    if not c.get("show"):
        return None, ("clock state unknown: `jetson_clocks --show` needs root (it ran as `sudo -n`, which never "
                      "asks for a password)")
    found = _CLOCK.findall(c["show"])
    if not found:
        return None, "clock state unknown: `jetson_clocks --show` printed no clocks"
    return all(lo == hi for _, lo, hi, _cur in found), ""


def _needs(info: DeviceInfo, raw: dict, trt: dict, clock_note: str) -> None:
    """The pieces the bundle's TensorRT runtime needs that are missing, each with the command that fixes it."""
    if not info.board and not info.l4t:
        info.missing.append(("a Jetson", "no /proc/device-tree/model or /etc/nv_tegra_release: this is not a "
                                         "Jetson running Jetson Linux (L4T)"))
    if raw.get("python") is None:
        info.missing.append(("python3", "sudo apt install python3 (JetPack ships it)"))
        return
    if tuple(int(x) for x in (info.python or "0.0").split(".")[:2]) < (3, 8):
        info.missing.append((f"Python >= 3.8 (found {info.python})", "the bundle needs JetPack 5 or newer; re-flash "
                                                                      "the board with a current JetPack"))
    fixes = {"numpy": "sudo apt install python3-numpy", "pillow": "sudo apt install python3-pil"}
    for key, fix in fixes.items():
        if not (raw.get(key) or {}).get("ok"):
            info.missing.append((key, fix))
    if not trt.get("ok"):
        info.missing.append(("TensorRT's Python module", "sudo apt install python3-libnvinfer (or the whole JetPack: "
                                                         "sudo apt install nvidia-jetpack)"))
    elif trt.get("builder_error"):
        info.warnings.append(f"TensorRT imports but cannot start a builder ({trt['builder_error']})")
    cb = raw.get("cuda_bindings") or {}
    if cb and not any(cb.values()):
        info.missing.append(("a CUDA runtime for Python", "JetPack's CUDA runtime (libcudart: sudo apt install "
                                                          "nvidia-jetpack), or pip install cuda-python"))
    if not info.tegrastats:
        info.warnings.append("tegrastats not found: power and energy per image are not measured")
    if clock_note:
        info.warnings.append(clock_note)
    elif info.clocks_locked is False:
        info.warnings.append("clocks are not locked: latency follows DVFS; for stable figures run `sudo jetson_clocks` "
                             "on the device first (edgeres never changes clocks or power modes)")
    if info.free_disk_mb is not None and info.free_disk_mb < MIN_FREE_MB:
        info.warnings.append(f"only {info.free_disk_mb:.0f} MB free for ~/.cache/edgeres")


# ------------------------------------------------------------------------------------------------ target vs board
def require_ready(info: DeviceInfo, installable=()) -> None:
    """DeviceError (one line) when the device lacks a piece the bundle's TensorRT runtime needs (other than those in
    ``installable``: what the bundle's install.sh adds by itself)."""
    needed = [(w, fix) for w, fix in info.missing if w not in installable]
    if needed:
        what = "; ".join(f"{w} ({fix})" for w, fix in needed)
        raise DeviceError(MISSING, f"{info.address} cannot run the bundle: missing {what}; then run the same command "
                                   "again (`edgeres device probe` checks it)")


def check_target(info: DeviceInfo, target) -> str:
    """'' when ``target`` fits the board exactly; a warning when it is the same GPU generation (the bundle runs
    as it is); DeviceError (before any stage runs) when the board needs another profile."""
    from edgeres.targets import get_target

    if target.runtime != "tensorrt":
        raise DeviceError(MISMATCH, f"--device {info.address}: target {target.name} runs {target.runtime}, not "
                                    "TensorRT; --device measures TensorRT engines on a Jetson (use a jetson-* target)")
    if info.target is None:
        raise DeviceError(MISMATCH, f"{info.address}: board {info.board or 'unknown'!r} has no edgeres target profile "
                                    f"(`edgeres targets`); --target {target.name} cannot be checked against it")
    if info.target == target.name:
        return ""
    board = get_target(info.target)
    if board.gpu and board.gpu == target.gpu:
        return (f"{info.address} is a {info.board_short} ({info.target}), the bundle is made for {target.name}: same "
                f"GPU ({board.gpu}), so it is built and measured there as it is")
    raise DeviceError(MISMATCH, f"{info.address} is a {info.board_short} ({info.target}, {board.gpu}) but --target is "
                                f"{target.name} ({target.gpu}): pass --target {info.target}, or --target auto to take "
                                "it from the board")


def trt_note(info: DeviceInfo, target) -> str:
    """A note when the board's TensorRT is another family than the profile's (the bundle adapts to it)."""
    if not info.tensorrt or not target.trt_version:
        return ""
    if info.tensorrt.split(".")[0] != target.trt_version.split(".")[0]:
        return (f"{info.address} has TensorRT {info.tensorrt}, the {target.name} profile assumes {target.trt_version}: "
                "the engine is built with the device's TensorRT")
    return ""
