"""Model files: build torchvision ResNets, save edgeres checkpoints, load every format a user may bring.

An edgeres checkpoint is a plain dict (tensors, strings, numbers) that loads with ``torch.load(weights_only=True)``:

    {"format": "edgeres-checkpoint", "version": 1, "arch": "resnet50", "classes": [...], "preprocess": {...},
     "data_hash": "...", "modules": {name: constructor args of each Conv2d/BatchNorm2d/Linear},
     "state_dict": {...}, "sparsity": None | "2:4", "requires": [...], "loader": "...", "extra": {...}}

``modules`` is what rebuilds a pruned network whose shapes no longer match its family's defaults. ``arch`` says how
the network itself is rebuilt, ``requires`` what that needs and ``loader`` how, in words:

- ``resnet18`` ... ``resnet101``: torchvision (always installed);
- ``timm:NAME`` (``timm:resnet50d``): ``timm.create_model(NAME)``, then the recorded module shapes (the timm extra);
- ``exported-program``: any other network, as its ``torch.export`` program (``program``: the ``.pt2`` bytes as a
  uint8 tensor, weights included), which reloads with torch alone, without the user's Python class; inference only;
- ``pickled-module``: only when the user passed ``--trust-model`` and the network cannot be exported; reloading it
  needs ``--trust-model`` and the user's class importable.

Files brought by users are recognised by their content, never by their extension (see ``ACCEPTED``).

Modules: ``meta`` (``ModelMeta``, the form names), ``build`` (torchvision ResNets, layer shapes, the form a network is
written as), ``checkpoint`` (``save_checkpoint``), ``load`` (``load_model``: every format, by content), ``program``
(torch.export), ``timm_models``, ``graph`` (the classifier and stem found from a traced forward), ``shortcuts``
(option-A zero-padding shortcuts rewritten into a channel selection the pruner follows). This package's names
below are its public API.
"""

from __future__ import annotations

from edgeres.models.build import apply_specs, build_model, checkpoint_arch, infer_arch, module_specs, rebuild
from edgeres.models.checkpoint import save_checkpoint
from edgeres.models.load import is_model_file, load_model
from edgeres.models.meta import (
    ACCEPTED,
    ARCHS,
    CHECKPOINT_FORMAT,
    PICKLED_ARCH,
    PROGRAM_ARCH,
    LoadedModel,
    ModelMeta,
)

__all__ = ["ACCEPTED", "ARCHS", "CHECKPOINT_FORMAT", "PICKLED_ARCH", "PROGRAM_ARCH", "LoadedModel", "ModelMeta",
           "apply_specs", "build_model", "checkpoint_arch", "infer_arch", "is_model_file", "load_model", "module_specs",
           "num_outputs", "rebuild", "save_checkpoint"]


def num_outputs(model, size: int = 32) -> int | None:
    """Logits per image, whatever the head is called (see ``edgeres.models.graph``)."""
    from edgeres.models.graph import num_outputs as _n

    return _n(model, size)
