"""docs/edgeres.yaml documents every OptimizeConfig key with its default, and is itself a valid config."""

from dataclasses import MISSING, fields
from pathlib import Path

import yaml

from edgeres.pipeline import OptimizeConfig

DOC = Path(__file__).resolve().parents[1] / "docs" / "edgeres.yaml"


def test_every_config_key_is_documented_with_its_default():
    doc = yaml.safe_load(DOC.read_text())
    keys = {f.name for f in fields(OptimizeConfig)}
    assert set(doc) == keys, f"undocumented: {sorted(keys - set(doc))}; unknown: {sorted(set(doc) - keys)}"
    for f in fields(OptimizeConfig):
        default = f.default if f.default is not MISSING else f.default_factory()
        if f.name not in ("model",):
            assert doc[f.name] == default, f"{f.name}: documented {doc[f.name]!r}, default {default!r}"


def test_documented_config_loads():
    cfg = OptimizeConfig.from_dict(yaml.safe_load(DOC.read_text()))
    assert cfg.model == "resnet50.pt"
