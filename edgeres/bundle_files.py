"""The files of a deployment bundle that are not the model: run.sh, install.sh and README.md.

run.sh starts the runtime safely (edgeres_deploy/launch.py); install.sh prepares a stock JetPack image without
compiling anything and ends with `./run.sh doctor`; the README walks through the first run and the engine record.
"""

from __future__ import annotations

INSTALL_SH = """#!/bin/sh
# edgeres bundle: check the bundle, then make sure this device has what the runtime needs -- nothing to compile.
#   sh install.sh                 install what is missing (Python packages into a venv, see below), then report
#   sh install.sh --offline       install nothing: only report
#   sh install.sh --wheels DIR    install missing Python packages from the wheel files in DIR (no network)
# It never stops half-way (only a tampered bundle stops it, before anything is installed) and ends with one line per
# piece (./run.sh doctor): ok, or MISSING with the exact command that fixes it. Python packages it must install go
# into a virtual environment made with --system-site-packages, so JetPack's own tensorrt, numpy and pillow stay
# visible, and nothing is installed into the system Python (PEP 668-safe: Ubuntu 24.04 / JetPack 7 refuse that):
# $EDGERES_VENV, default ~/.local/share/edgeres/venv; run.sh uses it when it exists. TensorRT comes with JetPack;
# the CUDA runtime library JetPack installs is used through ctypes (no pycuda, no cuda-python needed).
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd -P) || exit 1
cd / || exit 1  # python puts the current folder first on sys.path: nothing below may import a file from the bundle
offline=0
wheels=
while [ $# -gt 0 ]; do
  case "$1" in
    --offline) offline=1 ;;
    --wheels) [ $# -ge 2 ] || { echo "install.sh: --wheels needs a folder of wheel files" >&2; exit 2; }
      shift; wheels=$1 ;;
    --wheels=*) wheels=${1#--wheels=} ;;
    -h|--help) sed -n '2,12p' "$here/install.sh"; exit 0 ;;
    *) echo "install.sh: unknown option $1 (--offline, --wheels DIR)" >&2; exit 2 ;;
  esac
  shift
done
venv=${EDGERES_VENV:-$HOME/.local/share/edgeres/venv}
py=${PYTHON:-}
if [ -z "$py" ]; then
  if [ -x "$venv/bin/python3" ]; then py=$venv/bin/python3; else py=python3; fi
fi
if ! command -v "$py" >/dev/null 2>&1; then
  echo "MISSING  python: $py not found -> fix: sudo apt-get install -y python3"
  exit 1
fi
# 1. the bundle itself, with Python's standard library only: a tampered bundle stops here, before anything is installed
if ! verified=$(PYTHON=$py sh "$here/run.sh" verify 2>&1); then
  echo "$verified" >&2
  exit 1
fi
echo "$verified" | head -n 1
# 2. the Python packages the runtime imports: numpy and pillow (JetPack's python3-numpy and python3-pil)
missing=
"$py" -E -c "import numpy" 2>/dev/null || missing="$missing numpy"
"$py" -E -c "import PIL.Image" 2>/dev/null || missing="$missing pillow"
if [ -n "$missing" ] && [ "$offline" = 1 ]; then
  echo "--offline: not installing$missing"
elif [ -n "$missing" ]; then
  if [ ! -x "$venv/bin/python3" ]; then
    echo "creating $venv (--system-site-packages: JetPack's tensorrt stays visible) for$missing"
    "$py" -m venv --system-site-packages "$venv" >/dev/null 2>&1 || {
      echo "note: cannot create a venv with pip (fix: sudo apt-get install -y python3-venv)"; rm -rf "$venv"; }
  fi
  if [ -x "$venv/bin/python3" ]; then
    pkgs=
    for m in $missing; do
      case $m in numpy) pkgs="$pkgs numpy<2" ;; pillow) pkgs="$pkgs pillow" ;; esac
    done
    if [ -n "$wheels" ]; then
      "$venv/bin/python3" -m pip install --disable-pip-version-check --no-index --find-links "$wheels" $pkgs ||
        echo "note: pip could not install$missing from $wheels"
    else
      "$venv/bin/python3" -m pip install --disable-pip-version-check --retries 1 --timeout 20 $pkgs ||
        echo "note: pip could not install$missing (no network? copy wheels over and use --wheels DIR, or apt below)"
    fi
    py=$venv/bin/python3
  fi
fi
# 3. one line per piece, and the exact command that fixes each missing one
PYTHON=$py sh "$here/run.sh" doctor
status=$?
if [ "$status" = 0 ]; then
  echo "ready: $here/run.sh build, then $here/run.sh check (README.md)"
else
  echo "not ready: run the fix of each MISSING line above, then sh install.sh again"
fi
exit "$status"
"""

RUN_SH = """#!/bin/sh
# edgeres bundle: run the on-device runtime from this folder, safely (README.md, "Running it safely").
#   ./run.sh doctor | verify | build | adopt | check | bench | predict IMAGE... | evaluate DIR     (./run.sh --help)
# -E: PYTHON* variables are ignored (PYTHONPATH cannot point into the bundle); -B: no compiled caches are written.
# edgeres_deploy/launch.py takes this folder off sys.path, checks every file here against manifest.json (anything the
# manifest does not list is refused, __pycache__ included) and only then imports the runtime, module by module from
# the manifest's files (sha256 checked again, no .pyc ever read). Python 3.8+ (JetPack 5 or newer): $PYTHON, else the
# venv install.sh made ($EDGERES_VENV, default ~/.local/share/edgeres/venv) when there is one, else python3.
self=$(readlink -f -- "$0" 2>/dev/null) || self=$0  # this file, through any link to it
here=$(CDPATH= cd -- "$(dirname -- "$self")" && pwd -P) || exit 1
py=${PYTHON:-}
if [ -z "$py" ]; then
  venv=${EDGERES_VENV:-$HOME/.local/share/edgeres/venv}
  if [ -x "$venv/bin/python3" ]; then py=$venv/bin/python3; else py=python3; fi
fi
exec "$py" -E -B "$here/edgeres_deploy/launch.py" "$@"
"""


README = """# edgeres deployment bundle — {name}

{description}

## First run on the device

```bash
mkdir bundle && tar xzf bundle.tar.gz -C bundle && cd bundle
sh install.sh        # checks the bundle, installs what is missing (nothing to compile), ends with ./run.sh doctor
./run.sh build       # model.engine from model.onnx with this device's TensorRT, then `check` (one build, one check)
./run.sh check       # the engine on the validation images vs the host's reference outputs: PASS, or exit 1
./run.sh bench --csv ../device.csv         # latency percentiles, throughput, GPU memory (+ RAM/power: tegrastats)
./run.sh predict ../image.jpg              # top-5 with class names
./run.sh evaluate DIR --csv ../device.csv  # top-1 on an ImageFolder (DIR/val/CLASS/*.jpg or DIR/CLASS/*.jpg)
```

What the runtime needs: Python 3.8+, numpy, pillow, JetPack's TensorRT (`python3-libnvinfer`) and the CUDA runtime
library JetPack installs (`libcudart.so.11.0` on JetPack 5, `.so.12` on JetPack 6, `.so.13` on JetPack 7), which it
reaches through ctypes: pycuda and cuda-python are used where installed, never needed. `./run.sh doctor` prints one line
per piece and, for each missing one, the exact command that installs it (`--json` for scripts). `install.sh`
installs Python packages only into a venv made with `--system-site-packages` (`$EDGERES_VENV`, default
`~/.local/share/edgeres/venv`; `run.sh` uses it), never into the system Python; `--offline` installs nothing,
`--wheels DIR` installs from wheel files. With JetPack's `python3-numpy` and `python3-pil` present it needs no network.

`check` proves the runtime that ships: for this bundle the TensorRT engine, or it fails (exit 1, one line saying
why). `--backend onnxruntime` checks `model.onnx` with ONNX Runtime instead, and its row says the engine was not
checked. The check row names the backend, its version, the CUDA binding and where the engine's layers run (GPU, or
how many on a DLA core, from TensorRT's engine inspector). Every command verifies the bundle first and refuses one
whose files do not match. Back on the host: `edgeres report --run RUN_DIR --merge device.csv`.

Exit status for scripts: 0 ok, 1 a problem (one line on stderr), 2 a usage error; `verify`, `doctor`, `build`,
`adopt`, `check`, `bench` and `predict` take `--json`.

## The engine and its record

The engine is built on the device and is not in `manifest.json`. `build` (and `adopt`) record the sha256 of
`model.engine`, `model.engine.json` and `timing.cache`, the manifest they were made for, and what the engine was built
from (the ONNX's sha256, the TensorRT version, the build options; or "built externally") in this user's state folder
(`$EDGERES_STATE_DIR`, else `~/.local/state/edgeres/engines/`, one file per bundle folder), outside the bundle so
that it cannot be shipped, or planted, with an engine. Every command checks the engine files against it: one the
record does not vouch for -- copied in, changed, or from another version of the bundle -- is refused with one line
that says what to do, never run, never deleted:

- `./run.sh build --rebuild` builds a new engine here and replaces it;
- `./run.sh adopt [ENGINE]` takes over an engine you built yourself with trtexec (the lines below): it reads the
  engine's inputs, outputs, profile and dtypes from the engine, checks them against this bundle, records it as
  "built externally" and runs `check`; from then on it is used and never rebuilt without `--rebuild`.

`build` replaces only an engine it built itself (when asked for other options, or after a TensorRT upgrade);
`build --dla-core N` is refused before building where no layer can run on a DLA (Jetson Thor and Orin Nano have no
DLA; TensorRT 11.0-11.3 has none), warned where TensorRT 8.x cannot put Q/DQ layers on it, and the sidecar's
`dla_core` is what the engine really uses.

## Running it safely

- Start the runtime with `./run.sh` (`PYTHON=/path/python3 ./run.sh` picks another interpreter). It runs
  `python3 -E -B edgeres_deploy/launch.py`, which takes the bundle and the current folder off `sys.path` (a `json.py`
  or `numpy.py` left in the folder is never imported; PYTHON* variables are ignored), checks the whole folder against
  `manifest.json`, and only then imports the runtime, each module through a loader that accepts only the files the
  manifest lists (sha256 checked again as it reads them) and never reads or writes a compiled `.pyc`.
- Nothing may be added to this folder: while it holds a file, folder or link that `manifest.json` does not list (a
  `__pycache__`, an extra `.py`, an image, a CSV), every command refuses the bundle until it is removed. Keep images
  and CSVs outside (the runtime refuses a `--csv` path inside the bundle). The only exceptions are the engine files
  `build` writes, and only while their record vouches for them (above). Symbolic links are refused, and a manifest
  entry may not leave the folder (`..`, absolute paths).
- `python3 -m edgeres_deploy ...` still works and restarts through the same launcher, but before it can do so Python
  has already put the current folder first on `sys.path` and may have used a compiled cache of
  `edgeres_deploy/__init__.py`: prefer `./run.sh`.
- The manifest catches corruption and files slipped into the bundle; it cannot tell who made the bundle (whoever can
  rewrite the files can rewrite `manifest.json` too). Pin it: `edgeres deploy` prints the manifest's sha256 on the
  host; `export EDGERES_MANIFEST_SHA256=<that value>` before `./run.sh ...` and every command refuses a manifest
  with another hash. Or copy the bundle over a channel you trust.

## The same engine with trtexec, per JetPack

Engines are not portable across GPUs or TensorRT versions: build on the device, in this folder (the names below are
the bundle's own), then `./run.sh adopt`.

{fam_lines}
JetPack 5.1 ships TensorRT 8.5.2 (CUDA 11.4, Python 3.8), JetPack 6.1/6.2 TensorRT 10.3 (CUDA 12.6, Python 3.10),
JetPack 7.0/7.1 TensorRT 10.13 and JetPack 7.2 TensorRT 10.16 (CUDA 13, Python 3.12); TensorRT 11.4.1 supports JetPack
7.2.2+ on AGX Orin and Thor and builds strongly typed networks only: no `--int8`/`--fp16`, precision comes from the
Q/DQ nodes. `./run.sh verify` says which TensorRT and L4T/JetPack it found and warns when they differ from what the
bundle was made for; the build adapts to the TensorRT it finds.
{cache}"""


def readme(target, spec_lines: dict, has_cache: bool) -> str:
    """The bundle's README.md: the first run on the device, the engine record, safety rules, trtexec lines."""
    fam_lines = "\n".join(f"- {k}:\n\n      {v}\n" for k, v in spec_lines.items())
    cache = ("\n`calib.cache` is a TensorRT calibration cache for implicit INT8 on TensorRT 8.x (JetPack 5): "
             "`trtexec --int8 --calib=calib.cache` with an FP32 ONNX. The Q/DQ `model.onnx` needs no cache.\n") if has_cache else ""
    return README.format(name=target.name, description=target.description, fam_lines=fam_lines, cache=cache)
