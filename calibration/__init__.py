"""Calibration sets: deterministic, class-stratified selection, a manifest to reproduce and audit them, data readers
for NNCF and ONNX Runtime, and the TensorRT calibration-cache writer for legacy JetPack (TensorRT 8.5).

A calibration set always uses exactly the eval preprocessing (``edgeres_deploy.preprocess.Preprocess``).
"""

from __future__ import annotations

import json
import os
import random
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from edgeres_deploy.bundle import sha256
from edgeres_deploy.preprocess import IMAGE_EXTENSIONS, Preprocess

from edgeres.errors import EdgeresError, require_path

DEFAULT_SIZE = 512
MANIFEST_FORMAT = "edgeres-calibration-manifest"


class CalibrationError(EdgeresError):
    """Bad calibration input (empty folder, changed files, wrong shapes)."""


@dataclass
class CalibrationSet:
    items: list  # [(path, label or None)]
    seed: int = 0
    source: str = ""
    strategy: str = "stratified"
    classes: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def paths(self) -> list:
        return [p for p, _ in self.items]


def select_stratified(samples: list, n: int = DEFAULT_SIZE, seed: int = 0, classes: list | None = None,
                      source: str = "") -> CalibrationSet:
    """Pick ``n`` samples from [(path, class)] round-robin over classes, each class shuffled with ``seed``.

    The same inputs and seed give the same set on every machine (paths are sorted before shuffling).
    """
    if not samples:
        raise CalibrationError(f"no images to calibrate from in {source or 'the given samples'}")
    by_class: dict = {}
    for p, c in sorted(samples):
        by_class.setdefault(c, []).append(p)
    rng = random.Random(seed)
    for c in sorted(by_class):
        rng.shuffle(by_class[c])
    picked, k = [], 0
    order = sorted(by_class)
    while len(picked) < min(n, len(samples)):
        for c in order:
            if k < len(by_class[c]) and len(picked) < n:
                picked.append((by_class[c][k], c))
        k += 1
    return CalibrationSet(picked, seed, source, "stratified", list(classes or []))


def select_unlabeled(folder, n: int = DEFAULT_SIZE, seed: int = 0) -> CalibrationSet:
    """Pick ``n`` images (recursively) from any folder of unlabeled images, deterministically."""
    folder = Path(folder)
    require_path(folder, "folder", "calibration folder", "INT8 calibration needs a folder of images", CalibrationError)
    paths = sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not paths:
        raise CalibrationError(f"calibration folder {folder} holds no images (.jpg/.png/...); INT8 calibration needs images")
    rng = random.Random(seed)
    rng.shuffle(paths)
    return CalibrationSet([(p, None) for p in sorted(paths[:n])], seed, str(folder), "unlabeled")


def write_manifest(path, calib: CalibrationSet, pre: Preprocess) -> dict:
    """Write the manifest (paths, sha256, labels, seed, preprocessing) atomically; returns it."""
    root = calib.source if calib.source and os.path.isdir(calib.source) else None
    doc = {
        "format": MANIFEST_FORMAT, "version": 1, "seed": calib.seed, "strategy": calib.strategy, "source": calib.source,
        "count": len(calib), "preprocess": pre.to_dict(), "classes": calib.classes,
        "images": [{"path": os.path.relpath(p, root) if root else p, "sha256": sha256(p), "label": lab}
                   for p, lab in calib.items],
    }
    from edgeres_deploy.fsio import write_text_atomic

    write_text_atomic(path, json.dumps(doc, indent=1))
    return doc


def load_manifest(path, verify: bool = True) -> tuple[CalibrationSet, Preprocess]:
    """Read a manifest back; with ``verify`` every image's sha256 must match (an audit of the calibration)."""
    with open(path) as f:
        doc = json.load(f)
    if doc.get("format") != MANIFEST_FORMAT:
        raise CalibrationError(f"{path} is not an edgeres calibration manifest")
    root = doc.get("source") or ""
    items = []
    for im in doc["images"]:
        p = im["path"] if os.path.isabs(im["path"]) else os.path.join(root, im["path"])
        if verify:
            if not os.path.exists(p):
                raise CalibrationError(f"calibration image {p} from {path} is missing")
            if sha256(p) != im["sha256"]:
                raise CalibrationError(f"calibration image {p} changed since {path} was written (sha256 differs)")
        items.append((p, im.get("label")))
    return CalibrationSet(items, doc["seed"], root, doc.get("strategy", ""), doc.get("classes", [])), Preprocess.from_dict(doc["preprocess"])


def load_arrays(calib: CalibrationSet, pre: Preprocess, expect_shape: tuple | None = None) -> np.ndarray:
    """All calibration images as one float32 NCHW array, preprocessed exactly as for evaluation."""
    import warnings

    from edgeres_deploy.preprocess import ImageError

    from edgeres.data.folder import skips_corrupt

    arrays = []
    for p, _ in calib.items:
        try:
            arrays.append(pre.load(p))
        except ImageError as e:
            if not skips_corrupt():
                raise CalibrationError(f"cannot read calibration image {e}; remove or replace it, or pass "
                                       "--skip-corrupt (optimize)") from None
            warnings.warn(f"skipping corrupt calibration image: {e}")
    if not arrays:
        raise CalibrationError("the calibration set is empty")
    x = np.stack(arrays)
    if expect_shape is not None:
        want = tuple(expect_shape)
        if tuple(x.shape[1:]) != want:
            raise CalibrationError(f"calibration images preprocess to {tuple(x.shape[1:])} but the model takes {want}; "
                                   "pass the model's --image-size")
    return x


def nncf_dataset(arrays: np.ndarray, input_name: str):
    """An nncf.Dataset feeding one image (batch 1) at a time, as NNCF's ONNX backend expects."""
    import nncf

    return nncf.Dataset(list(range(len(arrays))), lambda i: {input_name: arrays[i : i + 1]})


class ArrayDataReader:
    """onnxruntime.quantization.CalibrationDataReader over preprocessed arrays (duck-typed: get_next/rewind)."""

    def __init__(self, arrays: np.ndarray, input_name: str):
        self.arrays, self.input_name, self.i = arrays, input_name, 0

    def get_next(self):
        if self.i >= len(self.arrays):
            return None
        self.i += 1
        return {self.input_name: self.arrays[self.i - 1 : self.i]}

    def rewind(self):
        self.i = 0


# ------------------------------------------------------------------------------------------ TensorRT calibration cache
def trt_cache_header(trt_version: str = "8.5.2", algorithm: str = "EntropyCalibration2") -> str:
    """``TRT-8502-EntropyCalibration2``: the header TensorRT writes, ``TRT-<NV_TENSORRT_VERSION>-<algorithm>``.

    NV_TENSORRT_VERSION is major*1000 + minor*100 + patch up to 8.x (include/NvInferRuntimeCommon.h at 8.5.2:
    kNV_TENSORRT_VERSION_IMPL) and major*10000 + minor*100 + patch from 10.0 on (include/NvInferRuntimeBase.h at
    v10.0.0, v10.3.0, v11.0: NV_TENSORRT_VERSION_INT), so 10.3.0 is ``TRT-100300-...``, not ``TRT-10300-...``.
    """
    parts = [int(p) for p in (str(trt_version).split(".") + ["0", "0"])[:3]]
    mult = 10000 if parts[0] >= 10 else 1000
    return f"TRT-{parts[0] * mult + parts[1] * 100 + parts[2]}-{algorithm}"


def scale_to_hex(scale: float) -> str:
    """TensorRT's cache encoding: the big-endian IEEE-754 bits of the float32 scale, in hex."""
    return struct.pack(">f", float(scale)).hex()


def hex_to_scale(text: str) -> float:
    return struct.unpack(">f", bytes.fromhex(text))[0]


def write_trt_cache(path, scales: dict, trt_version: str = "8.5.2") -> str:
    """Write a calibration cache that IInt8EntropyCalibrator2 (and ``trtexec --calib``) reads:
    a header line, then ``tensor: hexscale`` per tensor, where scale = amax / 127."""
    lines = [trt_cache_header(trt_version)] + [f"{name}: {scale_to_hex(s)}" for name, s in sorted(scales.items())]
    text = "\n".join(lines) + "\n"
    from edgeres_deploy.fsio import write_text_atomic

    write_text_atomic(path, text)
    return text


def read_trt_cache(path) -> tuple[str, dict]:
    with open(path) as f:
        lines = [ln.strip() for ln in f if ln.strip()]
    header, scales = lines[0], {}
    for ln in lines[1:]:
        name, _, value = ln.rpartition(":")
        scales[name.strip()] = hex_to_scale(value.strip())
    return header, scales


def activation_scales_from_qdq(qdq_model) -> dict:
    """{fp32 tensor name: int8 scale} for every activation QuantizeLinear of a Q/DQ model.

    The quantized tensor keeps its FP32 graph name (the Q node's input), which is the name TensorRT gives the
    same tensor when it parses the FP32 ONNX. Asymmetric/uint8 quantizers are converted to symmetric int8
    (amax = max(|min|, |max|) of their range).
    """
    from onnx import numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in qdq_model.graph.initializer}
    scales = {}
    for node in qdq_model.graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] in inits:
            continue
        s = inits.get(node.input[1])
        if s is None or s.size != 1:
            continue
        s = float(s.reshape(-1)[0])
        zp = inits.get(node.input[2]) if len(node.input) > 2 else None
        if zp is not None and zp.dtype == np.uint8:
            z = float(zp.reshape(-1)[0])
            amax = max(abs((0 - z) * s), abs((255 - z) * s))
        else:
            amax = 127.0 * s if zp is None or int(zp.reshape(-1)[0]) == 0 else (128 + abs(int(zp.reshape(-1)[0]))) * s
        scales[node.input[0]] = amax / 127.0
    return scales


def calibration_set_from(folder, n: int = DEFAULT_SIZE, seed: int = 0) -> CalibrationSet:
    """Choose a calibration set from ``folder``: the training split of an ImageFolder root (class-stratified),
    a class-per-folder root (stratified over all of it), or any folder of unlabeled images."""
    from edgeres.data.folder import resolve_data
    from edgeres.errors import DataError

    folder = Path(folder)
    require_path(folder, "folder", "calibration folder", "INT8 calibration needs a folder of images", CalibrationError)
    has_classes = any(p.is_dir() for p in folder.iterdir())
    if has_classes:
        try:
            splits = resolve_data(folder, val_fraction=0.0001, seed=seed)
        except DataError as e:
            raise CalibrationError(str(e)) from None
        samples = splits.train or splits.val
        return select_stratified(samples, n, seed, splits.classes, str(folder))
    return select_unlabeled(folder, n, seed)


MAX_CHECK_IMAGES = 2000  # the INT8 budget's held-out slice: at most this many images (one image = 0.05 point)


def calibration_with_holdout(folder, n: int = DEFAULT_SIZE, seed: int = 0, max_check: int = MAX_CHECK_IMAGES):
    """A calibration set from ``folder`` and the images held out of it to check the INT8 budget on.

    -> (CalibrationSet, [(path, class)] or None, a sentence saying where the check images came from). A ``train``/
    ``val`` root calibrates on train and checks on val; a class-per-folder root (or a root with one of the two splits)
    gives up a stratified slice per class folder (the images calibration would not use, at least a fifth, at most
    ``max_check``), never used for calibration. A folder of unlabeled images has no held-out check (None).
    """
    from edgeres.data.folder import resolve_data
    from edgeres.errors import DataError

    folder = Path(folder)
    if not folder.is_dir():
        raise CalibrationError(f"calibration folder {folder} does not exist; INT8 calibration needs a folder of images")
    if not any(p.is_dir() for p in folder.iterdir()):
        return (select_unlabeled(folder, n, seed), None,
                f"{folder} has no class folders and no --data was given: the INT8 budget cannot be checked")
    try:
        splits = resolve_data(folder, val_fraction=0.0001, seed=seed)
    except DataError as e:
        raise CalibrationError(str(e)) from None
    if splits.train and splits.val and (folder / "train").is_dir():
        check = select_stratified(splits.val, max_check, seed, splits.classes, str(folder)).items
        return (select_stratified(splits.train, n, seed, splits.classes, str(folder)), check,
                f"{len(check)} images of {folder / 'val'} (calibration used {folder / 'train'} only)")
    samples = splits.train + splits.val
    frac = min(max(0.2, 1.0 - n / len(samples)), max_check / len(samples))
    by_class: dict = {}
    for p, c in sorted(samples):
        by_class.setdefault(c, []).append(p)
    rng = random.Random(seed)
    check, rest = [], []
    for c in sorted(by_class):
        items = by_class[c]
        rng.shuffle(items)
        k = min(max(1, int(round(len(items) * frac))), len(items) - 1)  # each class keeps one image to calibrate on
        check += [(p, c) for p in items[:k]]
        rest += [(p, c) for p in items[k:]]
    if not check or not rest:
        raise CalibrationError(f"{folder} has too few images to calibrate and hold some out for the INT8 budget "
                               "check; give --data (validation images) or more calibration images")
    return (select_stratified(rest, n, seed, splits.classes, str(folder)), sorted(check),
            f"{len(check)} images held out of {folder} (a stratified slice per class folder, not used for calibration)")
