"""The bundle proves itself on the device: validation images + the host's reference outputs, compared on the device.

On the host (``make_validation``, called by ``edgeres deploy`` / the bundle stage) a stratified handful of validation
images (default 32: round-robin over the classes) is resized and centre-cropped with the bundle's preprocessing and
stored as uint8 (``validation/images.npz``); the same ONNX (``model.onnx``) runs them in ONNX Runtime on the host and
the logits go to ``validation/reference.npz``. Both are in the manifest, and the reference's sha256 is recorded in the
host's run (bundle stage info and report note), so ``check --expect-reference SHA`` on the device refuses a bundle
whose reference outputs are not the host's, even with a re-hashed manifest.

On the device (``python -m edgeres_deploy check``, and after the first ``build``) the images run through the engine
(or ONNX Runtime) and are compared with the reference:

* top-1 agreement >= ``AGREEMENT_MIN`` (90 %) and
* relative logit error ``||engine - ref||_2 / ||ref - mean(ref)||_2`` <= ``REL_ERR_MAX`` (0.25), max |Δlogit| reported.

Why these thresholds: the engine runs the same Q/DQ graph; TensorRT's INT8 kernels accumulate and requantize in another
order than ONNX Runtime's CPU kernels and may keep unquantized layers in FP16, so logits move by a few percent of their
spread and a handful of near-tie images can flip (published INT8 TensorRT vs. ONNX Runtime comparisons of ResNets stay
within about one top-1 point; 32 images give 90 % = at most 3 flips). A different model of the same shape (another
training run, another checkpoint) has logits that are uncorrelated with the reference: relative error around 1.4, so
the logit criterion catches a swap even where a barely trained model predicts the same class for most images.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np

from edgeres_deploy.preprocess import ImageError, Preprocess, open_image

AGREEMENT_MIN = 90.0
REL_ERR_MAX = 0.25
IMAGES, REFERENCE = "validation/images.npz", "validation/reference.npz"


def _stratified(samples: list, n: int) -> list:
    by_class: dict = {}
    for p, c in sorted(samples, key=lambda s: (s[1], str(s[0]))):
        by_class.setdefault(c, []).append((p, c))
    out, i = [], 0
    while len(out) < n and any(i < len(v) for v in by_class.values()):
        out += [v[i] for v in by_class.values() if i < len(v)][: n - len(out)]
        i += 1
    return out


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def _normalize(pre: Preprocess, images: np.ndarray) -> np.ndarray:
    x = images.astype(np.float32) / np.float32(255.0)
    x = (x - np.asarray(pre.mean, np.float32)) / np.asarray(pre.std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def make_validation(onnx_path, pre: dict, samples: list, n: int = 32) -> dict:
    """Host side: {bundle file name: bytes} with the validation images and the reference outputs of ``onnx_path``
    (ONNX Runtime, CPU). ``samples`` are (image path, class index) pairs of the validation split."""
    from edgeres_deploy.backends import OrtBackend
    from edgeres_deploy.metrics import run_padded

    pp = Preprocess.from_dict(pre)
    chosen = _stratified(samples, n)
    if not chosen:
        return {}
    imgs, kept = [], []
    for p, c in chosen:
        try:  # an unreadable image (the run skipped it with --skip-corrupt) is simply not one of the samples
            imgs.append(np.asarray(pp.resize_crop(open_image(p)), np.uint8))
        except ImageError:
            continue
        kept.append(c)
    if not imgs:
        return {}
    images, labels = np.stack(imgs), np.asarray(kept, np.int64)
    x = _normalize(pp, images)
    with OrtBackend(onnx_path, device="cpu") as backend:  # the device's own ONNX Runtime backend, on the CPU
        step = backend.fixed_batch or 8
        logits = np.concatenate([run_padded(backend.run, x[i : i + step], backend.fixed_batch)
                                 for i in range(0, len(x), step)])
    return {IMAGES: _npz(images=images, labels=labels), REFERENCE: _npz(logits=logits)}


def reference_sha256(files: dict) -> str | None:
    data = files.get(REFERENCE)
    return hashlib.sha256(data).hexdigest() if data else None


def has_validation(root: Path) -> bool:
    return (Path(root) / IMAGES).is_file() and (Path(root) / REFERENCE).is_file()


def compare(logits: np.ndarray, ref: np.ndarray) -> dict:
    logits, ref = np.asarray(logits, np.float64), np.asarray(ref, np.float64)
    if logits.shape != ref.shape:
        raise ValueError(f"outputs {logits.shape} and reference {ref.shape} differ in shape")
    agree = float((logits.argmax(1) == ref.argmax(1)).mean() * 100.0)
    diff = logits - ref
    spread = float(np.linalg.norm(ref - ref.mean(axis=1, keepdims=True)))
    rel = float(np.linalg.norm(diff) / spread) if spread > 0 else float("inf")
    return {"agreement": agree, "max_abs_dlogit": float(np.abs(diff).max()), "rel_err": rel,
            "passed": agree >= AGREEMENT_MIN and rel <= REL_ERR_MAX}


def _wrong_kind(root, name: str, key: str, why: str):
    from edgeres_deploy.bundle import BundleError

    return BundleError(f"{Path(root) / name} is not the file edgeres writes there (an .npz holding '{key}'): {why}; "
                       "re-create the bundle with `edgeres deploy`")


def _array(root, name: str, key: str):
    """Array ``key`` of the bundle's ``name`` (.npz, never unpickled); BundleError naming the file otherwise."""
    try:
        with np.load(Path(root) / name, allow_pickle=False) as z:
            return z[key]
    except KeyError:
        raise _wrong_kind(root, name, key, f"it has no '{key}'") from None
    except (ValueError, OSError, EOFError, AttributeError, TypeError) as e:  # not an npz (a pickle, a plain .npy, garbage)
        raise _wrong_kind(root, name, key, f"{e.__class__.__name__}: {str(e).splitlines()[0] if str(e) else 'unreadable'}") from None


def run_check(root: Path, backend) -> dict:
    """Device side: run the validation images through ``backend`` and compare with the host's reference outputs."""
    from edgeres_deploy.metrics import run_padded

    root = Path(root)
    if not has_validation(root):
        from edgeres_deploy.bundle import BundleError

        raise BundleError("this bundle carries no validation images (validation/*.npz): re-create it with `edgeres deploy`")
    pre = Preprocess.from_json(root / "preprocess.json")
    images = _array(root, IMAGES, "images")
    ref = _array(root, REFERENCE, "logits")
    if ref.ndim != 2 or len(ref) != len(images) or not np.issubdtype(ref.dtype, np.floating):
        raise _wrong_kind(root, REFERENCE, "logits", f"its logits are {ref.dtype} {tuple(ref.shape)}, not one float row "
                          f"per validation image ({len(images)})")
    ref_sha = hashlib.sha256((root / REFERENCE).read_bytes()).hexdigest()
    x = _normalize(pre, images)
    step = backend.fixed_batch or 8
    logits = np.concatenate([run_padded(backend.run, x[i : i + step], backend.fixed_batch) for i in range(0, len(x), step)])
    res = compare(logits, ref)
    verdict = "PASS" if res["passed"] else "FAIL"
    msg = (f"{verdict} {backend.name} on {backend.device}: {len(x)} validation images, top-1 agreement "
           f"{res['agreement']:.1f}% (need >= {AGREEMENT_MIN:.0f}%), relative logit error {res['rel_err']:.3f} "
           f"(need <= {REL_ERR_MAX}), max |Δlogit| {res['max_abs_dlogit']:.3g}")
    if not res["passed"]:
        msg += ("; the engine does not compute what the host's model computed: a different or corrupted model.onnx, "
                "or a broken build (rebuild with --force; compare with --backend onnxruntime)")
    row = {"stage": "check", "artifact": "model.engine" if backend.name == "tensorrt" else "model.onnx",
           "runtime": backend.name, "device": backend.device, "precision": getattr(backend, "precision", None),
           "input_size": pre.size, "agreement": round(res["agreement"], 3), "status": "ok" if res["passed"] else "failed",
           "note": (f"self-check vs host reference ({len(x)} images, ref sha256 {ref_sha[:12]}): max|dlogit| "
                    f"{res['max_abs_dlogit']:.3g}, rel err {res['rel_err']:.3f}; pass = agreement >= {AGREEMENT_MIN:.0f}% "
                    f"and rel err <= {REL_ERR_MAX}")}
    return {**res, "message": msg, "row": row, "reference_sha256": ref_sha}
