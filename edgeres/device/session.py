"""A bundle on the device: shipped, verified, built, checked, benchmarked and evaluated over one ssh connection.

Everything lives in the device's ``~/.cache/edgeres/`` (nothing is written anywhere else):

    ~/.cache/edgeres/<bundle sha256>/bundle/   the unpacked bundle; `build` keeps model.engine and timing.cache here,
                                              so a second run with the same bundle builds nothing
    ~/.cache/edgeres/<bundle sha256>/out/      the CSV rows of the last check/bench/evaluate
    ~/.cache/edgeres/data/<sha256>/val/...     the validation split, shipped once
    ~/.cache/edgeres/timing/<key>.cache        the TensorRT timing cache shared by every bundle built on this board

Each step runs the bundle's own commands (``./run.sh build | check | bench | evaluate``), is retried once over a new
connection when the connection drops, and stops with one line (edgeres.device.faults) otherwise. A step that finds
its work already done on the device (same content address) does nothing.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import tarfile
import time
from pathlib import Path

from edgeres.device.faults import DISK_FULL, DROPPED, MISSING, REBOOTED, UNREACHABLE, DeviceError, fault, last_line
from edgeres.device.probe import DeviceInfo, probe, require_ready
from edgeres.device.transport import SshTransport
from edgeres.utils import sha256_file, sha256_json

CACHE = "$HOME/.cache/edgeres"
INSTALLABLE = ("numpy", "pillow")  # what the bundle's install.sh can add where the device lacks it
RECONNECT_WAITS = (1.0, 2.0, 4.0)  # seconds before each attempt to reconnect after a drop (7 s in all, then stop)
_TIMES = re.compile(r"@@t (\d+(?:\.\d+)?) (\d+(?:\.\d+)?)")


def timed(script: str) -> str:
    """``script`` between two remote clock readings (``@@t START END`` on stdout): what the device itself spent."""
    return f's=$(date +%s.%N); ( {script} ); rc=$?; echo "@@t $s $(date +%s.%N)"; exit $rc'


class DeviceSession:
    """One device for one run: ``open()`` connects and probes; the methods run the steps; ``close()`` hangs up."""

    def __init__(self, address, log=None, progress=None):
        self.address = address
        self.log = log or (lambda msg: None)
        self.progress = progress
        self.transport = SshTransport(address, log=self.log)
        self.info: DeviceInfo | None = None
        self.remote_seconds = 0.0  # time the device itself spent in the steps (the rest of the wall time is ssh's)

    def open(self) -> DeviceSession:
        self.transport.open("connect")
        self.info = probe(self.transport)
        return self

    def close(self) -> None:
        self.transport.close()

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()
        return False

    # ---------------------------------------------------------------- steps, with one retry over a new connection
    def step(self, name: str, fn):
        """``fn()``; after a dropped connection, reconnect, make sure the device did not reboot, and try once more."""
        if not self.transport.alive():
            self._reconnect(name)
        try:
            return fn()
        except DeviceError as e:
            if not e.retryable:
                raise
            self.log(f"{self.address}: connection dropped during {name}; reconnecting and retrying once")
        self._reconnect(name)
        try:
            return fn()
        except DeviceError as e:
            if e.retryable:
                raise fault(DROPPED, str(self.address), name) from None
            raise

    def _reconnect(self, name: str, waits=RECONNECT_WAITS) -> None:
        """A new connection after a drop: tried after each of ``waits`` seconds (a short network blip or an sshd
        restart heals within them), then one line."""
        for k, wait in enumerate(waits):
            time.sleep(wait)
            try:
                self.transport.reconnect(name)
                break
            except DeviceError as e:
                if e.kind not in (UNREACHABLE, DROPPED) or k == len(waits) - 1:
                    raise DeviceError(e.kind, f"the connection to {self.address} dropped during {name} and "
                                              f"reconnecting failed: {e}") from None
        boot = self.transport.run("cat /proc/sys/kernel/random/boot_id", name).stdout.strip()
        if self.info and self.info.boot_id and boot != self.info.boot_id:
            raise fault(REBOOTED, str(self.address), name)

    def sh(self, script: str, name: str, timeout: float = 600, check: bool = True):
        """Run ``script`` as one timed step on the device."""
        r = self.transport.run(timed(script), name, timeout=timeout, check=check)
        m = _TIMES.search(r.stdout)
        if m:
            self.remote_seconds += float(m.group(2)) - float(m.group(1))
        return r

    # ---------------------------------------------------------------- shipping
    def ship(self, make, folder: str, name: str, what: str) -> bool:
        """The .tar.gz ``make()`` returns (called only when needed), unpacked once into ``folder`` (under the cache,
        content-addressed): returns False when it was already there. The free space is checked first; a full disk
        mid-way is one line too."""

        def have():
            return self.transport.run(f'[ -d "{folder}" ] && echo yes || echo no', name).stdout.strip() == "yes"

        if self.step(name, have):
            return False
        local = Path(make())
        data_sha = sha256_file(local)
        size_mb = local.stat().st_size / 1e6
        free = self.info.free_disk_mb if self.info else None
        if free is not None and free < size_mb * 3 + 16:
            raise fault(DISK_FULL, str(self.address), name, f"{free:.0f} MB free, {what} needs about "
                                                            f"{size_mb * 3 + 16:.0f} MB")
        tarball = f"{folder}.tar.gz"
        self.log(f"{self.address}: sending {what} ({size_mb:.1f} MB)")
        from edgeres.progress import bar

        with bar(total=Path(local).stat().st_size, desc=f"sending {what}", unit="B", unit_scale=True) as b:
            def progress(done, total):
                b.update(done - b.n)
                if self.progress:
                    self.progress(done, total)

            self.step(name, lambda: self.transport.upload(local, tarball, data_sha, name, progress))
        unpack = (f'd="{folder}"; rm -rf "$d.tmp" && mkdir -p "$d.tmp" && tar xzf "$d.tar.gz" -C "$d.tmp" '
                  f'&& mv "$d.tmp" "$d" && rm -f "$d.tar.gz"')
        self.step(name, lambda: self.sh(unpack, name))
        return True

    def ship_bundle(self, bundle: Path, manifest_sha: str | None = None) -> str:
        """The bundle in ``~/.cache/edgeres/<sha256>/bundle``, checked against its manifest; returns that folder."""
        root = f"{CACHE}/{sha256_file(bundle)}"
        sent = self.ship(lambda: bundle, f"{root}/bundle", "ship", "the bundle")
        pin = f"EDGERES_MANIFEST_SHA256={manifest_sha} " if manifest_sha else ""
        r = self.step("verify", lambda: self.sh(f'cd "{root}/bundle" && {pin}./run.sh verify', "verify", check=False))
        if r.returncode != 0:
            if not sent:  # something changed the cached copy: start it again from the bundle, once
                self.log(f"{self.address}: the cached bundle no longer matches its manifest; sending it again")
                self.step("verify", lambda: self.transport.run(f'rm -rf "{root}/bundle"', "verify"))
                return self.ship_bundle(bundle, manifest_sha)
            raise DeviceError("remote command failed", f"{self.address}: the bundle failed `./run.sh verify` on the "
                                                       f"device ({last_line(r.stderr or r.stdout)})")
        return root

    def ship_data(self, samples: list, classes: list) -> str:
        """The validation split (``samples``: (path, class index) pairs) as an ImageFolder
        ``~/.cache/edgeres/data/<key>/val/<class>/``, shipped once; returns ``~/.cache/edgeres/data/<key>``. The key
        hashes the files' names and contents (the run's data hash, from its cache: edgeres.data.filehash), so a large
        split is packed only when the device lacks it, and an image edited in place is shipped again."""
        from edgeres.data.filehash import FileHashes

        entries = split_entries(samples, classes)
        digests = FileHashes().digests([p for _, p in entries])
        key = sha256_json([(arc, d) for (arc, _), d in zip(entries, digests)])
        folder = f"{CACHE}/data/{key}"

        def make():
            out = Path(self.transport.dir) / "data.tar.gz"
            with gzip.GzipFile(out, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
                for arc, path in entries:
                    info = tarfile.TarInfo(arc)
                    info.size, info.mode, info.mtime = os.path.getsize(path), 0o644, 0
                    with open(path, "rb") as f:
                        tar.addfile(info, f)
            return out

        self.ship(make, folder, "ship data", f"the validation split ({len(samples)} images)")
        return folder

    # ---------------------------------------------------------------- the bundle's own commands
    def build(self, root: str, timing_key: str) -> dict:
        """``./run.sh build`` (which also runs the first check) with the board's shared timing cache; returns
        {"built": bool, "seconds": wall seconds on the device}."""
        self.install(root)
        cache = f"{CACHE}/timing/{timing_key}.cache"
        script = (f'cd "{root}/bundle" && mkdir -p "{CACHE}/timing" && f="{cache}" && '
                  'if [ -f "$f" ]; then set -- --timing-cache "$f"; else set --; fi; '
                  'before=$(stat -c %Y.%s model.engine 2>/dev/null); ./run.sh build "$@"; rc=$?; '
                  'after=$(stat -c %Y.%s model.engine 2>/dev/null); echo "@@engine $before $after"; '
                  f'if [ -f timing.cache ]; then cp timing.cache "{cache}.tmp" && mv "{cache}.tmp" "{cache}"; fi; '
                  'exit $rc')
        self.log(f"{self.address}: building the engine there (./run.sh build; a first TensorRT build of a ResNet50 "
                 "takes minutes on a Jetson, a re-run none)")
        t0 = time.perf_counter()
        r = self.step("build", lambda: self.sh(script, "build", timeout=3 * 3600, check=False))
        seconds = time.perf_counter() - t0
        if r.returncode != 0:
            out = r.stderr + r.stdout
            if "No space left" in out:
                raise fault(DISK_FULL, str(self.address), "build")
            raise DeviceError("remote command failed", f"{self.address}: the engine build failed on the device "
                                                       f"({last_line(r.stderr) or last_line(r.stdout)})")
        m = re.search(r"@@engine (\S*) (\S*)", r.stdout)
        built = not m or m.group(1) != m.group(2)
        self.log(f"{self.address}: engine {'built' if built else 'up to date (reused)'} in {seconds:.1f} s")
        return {"built": built, "seconds": seconds}

    def install(self, root: str) -> None:
        """The bundle's own ``install.sh`` where the probe found a Python package missing that it can install (into
        ~/.cache/edgeres/venv, which run.sh then uses); anything it cannot install stops the run with its fix."""
        missing = [what for what, _ in self.info.missing]
        if not missing:
            return
        require_ready(self.info, installable=INSTALLABLE)
        self.log(f"{self.address}: {', '.join(missing)} missing: running the bundle's install.sh (into "
                 "~/.cache/edgeres/venv)")
        r = self.step("install", lambda: self.sh(f'cd "{root}/bundle" && sh install.sh', "install", timeout=1800,
                                                 check=False))
        if r.returncode != 0:
            why = next((ln.strip() for ln in r.stdout.splitlines() if ln.startswith("MISSING")), last_line(r.stdout))
            raise DeviceError(MISSING, f"{self.address}: the bundle's install.sh could not install what is missing "
                                       f"({why}); run that fix on the device, then the same command again")
        self.info = probe(self.transport, "install")

    def measure(self, root: str, batch_sizes: list, min_time: float, reference: str | None = None,
                data: str | None = None) -> str:
        """check (where the bundle carries the host's ``reference`` outputs), bench (``batch_sizes``) and, with
        ``data``, evaluate; returns the device's CSV rows (text)."""
        out, b = f"{root}/out", f'cd "{root}/bundle" && ./run.sh'
        csv = f'--csv "{out}/device.csv"'
        self.step("check", lambda: self.sh(f'rm -rf "{out}" && mkdir -p "{out}"', "check"))
        if reference:
            ref = f" --expect-reference {reference}"
            r = self.step("check", lambda: self.sh(f"{b} check --backend tensorrt {csv}{ref}", "check", check=False))
            if r.returncode != 0 and "FAIL" not in r.stdout + r.stderr:
                raise DeviceError("remote command failed", f"{self.address}: `./run.sh check` failed on the device "
                                                           f"({last_line(r.stderr)})")
        sizes = " ".join(str(s) for s in batch_sizes)
        self.log(f"{self.address}: benchmarking (batch {sizes.replace(' ', ', ')})")
        self.step("bench", lambda: self.sh(f"{b} bench --backend tensorrt --batch-size {sizes} --min-time {min_time} "
                                           f"{csv}", "bench", timeout=3600))
        if data:
            self.log(f"{self.address}: evaluating the validation split")
            self.step("evaluate", lambda: self.sh(f'{b} evaluate "{data}" --backend tensorrt {csv}', "evaluate",
                                                  timeout=3600))
        return self.step("fetch", lambda: self.transport.download(f"{out}/device.csv", "fetch")).decode()

    def bench(self, root: str, batch_sizes: list, min_time: float) -> list:
        """Only ``./run.sh bench`` (the engine is built): the report rows it writes, parsed."""
        from edgeres.report import parse_csv

        csv = f"{root}/out/bench.csv"
        sizes = " ".join(str(s) for s in batch_sizes)
        self.step("bench", lambda: self.sh(f'mkdir -p "{root}/out" && rm -f "{csv}" && cd "{root}/bundle" && ./run.sh '
                                           f'bench --backend tensorrt --batch-size {sizes} --min-time {min_time} '
                                           f'--csv "{csv}"', "bench", timeout=3600))
        text = self.step("fetch", lambda: self.transport.download(csv, "fetch")).decode()
        return parse_csv(io.StringIO(text), f"{self.address}'s bench CSV")


def split_entries(samples: list, classes: list) -> list:
    """[(name in the archive, path)] of the validation images as ``val/<class>/<file name>``, sorted; two files of one
    class with the same name get a distinguishing prefix."""
    out, names = [], set()
    for path, cls in sorted(samples, key=lambda s: (s[1], str(s[0]))):
        p = Path(path)
        name = f"val/{classes[cls]}/{p.name}"
        if name in names:
            name = f"val/{classes[cls]}/{hashlib.sha256(str(p).encode()).hexdigest()[:8]}_{p.name}"
        names.add(name)
        out.append((name, p))
    return out
