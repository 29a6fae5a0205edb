"""Writing an edgeres checkpoint (the format is described in edgeres.models)."""

from __future__ import annotations

from edgeres.errors import EdgeresError
from edgeres.models.build import checkpoint_arch, module_specs
from edgeres.models.meta import CHECKPOINT_FORMAT, PICKLED_ARCH, PROGRAM_ARCH, ModelMeta


def _program_size(meta: ModelMeta) -> int:
    try:
        return int((meta.preprocess or {}).get("size") or 64)
    except (TypeError, ValueError):
        return 64


def _write(path, ckpt: dict) -> None:
    """Through a buffer, so the zip's record name is torch's fixed ``archive``, not one taken from the file's name:
    the same model and metadata give the same bytes whatever the file is called (`edgeres prune --out` vs optimize)."""
    import io

    import torch

    from edgeres.utils import write_bytes_atomic

    buf = io.BytesIO()
    torch.save(ckpt, buf)
    write_bytes_atomic(path, buf.getbuffer())


def save_checkpoint(path, model, meta: ModelMeta, extra_state: dict | None = None, arch: str | None = None,
                    program: bytes | None = None) -> str:
    """Write an edgeres checkpoint atomically (temp file, then rename); returns the ``arch`` it was written as.

    ``arch`` forces a form (``pickled-module`` is only ever written when a caller holding ``--trust-model`` asks).
    ``program`` reuses ``.pt2`` bytes already exported from this very model.
    """
    import torch

    arch = arch or meta.save_as or checkpoint_arch(model, meta)
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "version": 1,
        "arch": arch,
        "classes": list(meta.classes),
        "preprocess": dict(meta.preprocess),
        "data_hash": meta.data_hash,
        "data_root": meta.data_root,
        "sparsity": meta.sparsity,
        "modules": module_specs(model),
        "extra": dict(meta.extra),
    }
    if arch == PROGRAM_ARCH:
        from edgeres.models.program import export_program

        if program is None:
            try:
                program = export_program(model, _program_size(meta))
            except Exception as e:  # noqa: BLE001 - torch.export refuses many Python constructs
                raise EdgeresError(
                    f"cannot write {path}: {type(model).__name__} is neither a torchvision nor a timm ResNet, and "
                    f"torch.export cannot capture it ({e.__class__.__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                    "pass --trust-model to write it as a pickled module (reloading then needs --trust-model and your class)"
                ) from None
        ckpt["program"] = torch.frombuffer(bytearray(program), dtype=torch.uint8)
        ckpt["requires"] = ["torch>=2.6 (torch.export)"]
        ckpt["loader"] = "torch.export.load(program).module(): inference only, no Python class needed"
    elif arch == PICKLED_ARCH:
        ckpt["module"] = model
        ckpt["requires"] = [f"--trust-model and the class {type(model).__module__}.{type(model).__qualname__} importable"]
        ckpt["loader"] = "torch.load(weights_only=False): a pickled nn.Module"
    else:
        ckpt["state_dict"] = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        if arch.startswith("timm:"):
            import timm

            ckpt["requires"] = [f"timm>={timm.__version__.split('+')[0]}"]
            ckpt["loader"] = (f"timm.create_model({arch[5:]!r}, pretrained=False, num_classes={len(meta.classes)}), "
                              "layers reshaped to 'modules', then load_state_dict")
        else:
            ckpt["requires"] = ["torchvision"]
            ckpt["loader"] = f"torchvision.models.{arch}, layers reshaped to 'modules', then load_state_dict"
    if extra_state:
        ckpt.update(extra_state)
    _write(path, ckpt)
    return arch
