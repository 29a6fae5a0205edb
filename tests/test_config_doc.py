"""One option table (edgeres.options): docs/edgeres.yaml is generated from it and documents every OptimizeConfig key
with its default; the file is itself a valid config; flags and YAML keys are checked the same way; the opset range is
the one torch's exporter writes."""

from dataclasses import MISSING, fields
from pathlib import Path

import pytest
import yaml

from edgeres.config import OptimizeConfig
from edgeres.errors import ConfigError
from edgeres.options import BY_KEY, OPSET_RANGE, OPTIONS, check, yaml_doc

DOC = Path(__file__).resolve().parents[1] / "docs" / "edgeres.yaml"


def test_the_yaml_doc_is_generated_from_the_table():
    assert DOC.read_text() == yaml_doc(), "regenerate it: python -m edgeres.options > docs/edgeres.yaml"


def test_every_config_key_is_documented_with_its_default():
    doc = yaml.safe_load(DOC.read_text())
    keys = {f.name for f in fields(OptimizeConfig)}
    assert set(doc) == keys == {o.key for o in OPTIONS}
    for f in fields(OptimizeConfig):
        default = f.default if f.default is not MISSING else f.default_factory()
        if f.name != "model":
            assert doc[f.name] == default, f"{f.name}: documented {doc[f.name]!r}, default {default!r}"


def test_documented_config_loads():
    cfg = OptimizeConfig.from_dict(yaml.safe_load(DOC.read_text()))
    assert cfg.model == "resnet50.pt"


@pytest.mark.parametrize("key,value", [("prune", float("nan")), ("finetune_lr", float("inf")), ("threads", 10**6),
                                       ("kd_alpha", 1.5), ("opset", OPSET_RANGE[1] + 1), ("opset", OPSET_RANGE[0] - 1),
                                       ("batch_size", True), ("int8_fallback", ["methods", "bogus"]),
                                       ("mean", [0.5, float("nan"), 0.5]), ("latency_batch_sizes", [0])])
def test_bad_values_are_refused_naming_the_key(key, value):
    with pytest.raises(ConfigError) as e:
        check(BY_KEY[key], value)
    assert e.value.key == key


def test_opset_range_is_what_torch_exports():
    from torch.onnx import _constants

    top = getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", _constants.ONNX_MAX_OPSET)
    assert OPSET_RANGE == (17, top)


def test_deprecated_key_sets_the_new_one():
    assert OptimizeConfig(quant_max_drop=0.25).int8_max_drop == 0.25
    assert OptimizeConfig(int8_fallback="none").int8_fallback == []
    with pytest.raises(ConfigError, match="not both"):
        OptimizeConfig.from_dict({"target_latency_ms": 5.0, "target_speedup": 2.0})
    with pytest.raises(ConfigError, match="DLA"):
        OptimizeConfig(target="x86-cpu", dla_core=0)
