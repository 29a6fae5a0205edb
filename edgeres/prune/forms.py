"""The checkpoint form a pruned model is written in (an edgeres checkpoint rebuilt by name, a torch.export program, or
a pickled module only with --trust-model), and the check that the written file reloads to the same network."""

from __future__ import annotations

import logging

from edgeres.errors import EdgeresError

_log = logging.getLogger(__name__)


def choose_form(model, meta, size: int, trust_model: bool = False, log=None) -> str:
    """The checkpoint form a pruned ``model`` will be written in, decided before any work is done.

    torchvision and timm ResNets: an edgeres checkpoint rebuilt by name plus the pruned layer shapes. Any other
    class: its ``torch.export`` program (reloads with torch alone). Only when that is impossible, and only with
    ``--trust-model``, a pickled module, said aloud; without the flag the prune is refused before it starts.
    """
    from edgeres.models import PICKLED_ARCH, PROGRAM_ARCH, checkpoint_arch
    from edgeres.models.program import export_program

    form = checkpoint_arch(model, meta)
    if form.startswith("timm:"):
        if _rebuilds(form, model):
            return form
        (log or _log.warning)(f"note: {type(model).__name__} was built with other arguments than timm's {form[5:]!r} "
                       "defaults; it is written as its torch.export program instead")
        form = PROGRAM_ARCH
    if form != PROGRAM_ARCH:
        return form
    try:
        export_program(model, size)
        return form
    except Exception as e:  # noqa: BLE001 - torch.export refuses many Python constructs
        why = f"{e.__class__.__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    if not trust_model:
        raise EdgeresError(
            f"{type(model).__name__} is neither a torchvision nor a timm ResNet and torch.export cannot capture it "
            f"({why}), so a pruned copy could only be written as a pickled module; pass --trust-model to allow that "
            "(reloading it will need --trust-model and your class importable)")
    (log or _log.warning)(f"note: {type(model).__name__} cannot be exported with torch.export ({why}); the pruned model is "
                   "written as a pickled module (--trust-model): reloading it needs --trust-model and your class")
    return PICKLED_ARCH


def _rebuilds(form: str, model) -> bool:
    """Whether ``rebuild(form, module_specs(model))`` has exactly ``model``'s parameter names and shapes."""
    from edgeres.models import module_specs, num_outputs, rebuild

    try:
        back = rebuild(form, module_specs(model), num_outputs(model) or 1000)
    except Exception:  # noqa: BLE001 - any failure means: not rebuildable this way
        return False
    have = {k: tuple(v.shape) for k, v in back.state_dict().items()}
    return have == {k: tuple(v.shape) for k, v in model.state_dict().items()}


def verify_reload(path, model, size: int, trust_model: bool = False) -> None:
    """Reload ``path`` as every later stage will and compare its logits with ``model``'s; on any difference the file
    is deleted and the step fails, so no pruned file that cannot be read back is ever left behind as a success."""
    import os

    import torch

    from edgeres.models import load_model

    why = None
    try:
        back = load_model(path, trust_model=trust_model).model
        g = torch.Generator().manual_seed(0)
        x = torch.randn(2, 3, size, size, generator=g)
        was_training = model.training
        model.eval()
        with torch.no_grad():
            ref, got = model(x), back(x)
        model.train(was_training)
        if tuple(ref.shape) != tuple(got.shape):
            why = f"output shape {tuple(got.shape)} instead of {tuple(ref.shape)}"
        else:
            diff = float((ref - got).abs().max())
            tol = 1e-4 * max(1.0, float(ref.abs().max()))
            if not diff <= tol:
                why = f"max |dlogit| {diff:.3g} > {tol:.3g}"
    except Exception as e:  # noqa: BLE001 - whatever stops the reload is the failure to report
        why = f"{e.__class__.__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    if why is not None:
        if os.path.exists(path):
            os.unlink(path)
        raise EdgeresError(f"the pruned model written to {path} does not reload to the same network ({why}); the file "
                           "was removed. Please report this with the model's architecture")
