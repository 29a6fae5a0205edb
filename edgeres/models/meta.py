"""What edgeres knows about a model file besides its weights: ``ModelMeta`` (architecture, classes, preprocessing,
data, sparsity, source format), and the names of the checkpoint forms."""

from __future__ import annotations

from dataclasses import dataclass, field

ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101")
CHECKPOINT_FORMAT = "edgeres-checkpoint"
PROGRAM_ARCH = "exported-program"
PICKLED_ARCH = "pickled-module"
ACCEPTED = ("accepted: an edgeres checkpoint; a state dict of a torchvision or timm ResNet (bare, or under "
            "state_dict / model / model_state_dict, with DDP 'module.' or Lightning 'model.' prefixes: .pth, .pth.tar, "
            ".ckpt); TorchScript (.ts, .torchscript); a torch.export program (.pt2); a pickled nn.Module "
            "(with --trust-model)")


@dataclass
class ModelMeta:
    arch: str = "resnet50"
    classes: list = field(default_factory=list)
    preprocess: dict = field(default_factory=dict)
    data_hash: str | None = None
    data_root: str | None = None
    sparsity: str | None = None
    source_format: str = "edgeres"
    extra: dict = field(default_factory=dict)
    save_as: str | None = None  # the checkpoint form chosen for this model (see save_checkpoint); not stored

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@dataclass
class LoadedModel:
    model: object  # torch.nn.Module
    meta: ModelMeta
