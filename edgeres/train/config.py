"""What a training run is asked to do: epochs, batch, optimizer and schedule, distillation, augmentation, precision."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from edgeres.errors import ConfigError


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 32
    optimizer: str = "adamw"  # or "sgd"
    lr: float | None = None  # default: 1e-3 for adamw, 0.05 for sgd
    weight_decay: float | None = None  # default: 0.05 for adamw, 5e-5 for sgd
    label_smoothing: float = 0.1
    warmup_epochs: float = 0.5
    freeze_backbone: bool = False
    kd_alpha: float = 0.0  # weight of the distillation loss (0: no teacher used)
    kd_temperature: float = 4.0
    workers: int | None = None  # None: the cores available on CUDA, 0 on the CPU (edgeres.data.loaders)
    seed: int = 0
    max_steps_per_epoch: int | None = None  # for tests and smoke runs
    min_scale: float = 0.35  # RandomResizedCrop's smallest area
    skip_corrupt: bool = False
    channels_last: bool = True  # NHWC: faster convolutions on x86 (oneDNN) and on tensor cores
    amp: str = "auto"  # auto | bf16 | fp16 | off (edgeres.amp: bf16 on CUDA sm_80+, fp16 + scaler on sm_7x, CPU as before)
    pipeline: str = "auto"  # auto | gpu | cpu | dali (edgeres.data.loaders: auto = gpu on CUDA)

    def __post_init__(self):
        """Every number finite and of its sign (the flags check the same; a Python caller gets it too): an inf weight
        decay or a nan learning rate trains to NaN, and that must be refused, not trained. ``lr`` 0 is allowed here
        (a frozen run: the QAT tests compare it with PTQ); the --lr flag asks for more than 0."""
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            if not math.isfinite(v) or v < 0 or (f.name in ("batch_size", "min_scale") and v <= 0):
                raise ConfigError(f.name, "must be a finite number " + (
                    "> 0" if f.name in ("batch_size", "min_scale") else ">= 0"), v)

    def resolved_lr(self) -> float:
        return self.lr if self.lr is not None else (1e-3 if self.optimizer == "adamw" else 0.05)

    def resolved_wd(self) -> float:
        if self.weight_decay is not None:
            return self.weight_decay
        return 0.05 if self.optimizer == "adamw" else 5e-5
