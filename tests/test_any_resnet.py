"""Any ResNet the user trained: a CIFAR-style ResNet (option-A shortcuts, a head named `linear`) and timm's resnet50d
and seresnet50 each go prune -> reload -> export -> INT8 quantize -> check-onnx, and a pruned file always reloads."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgeres.errors import EdgeresError
from edgeres.models import PICKLED_ARCH, PROGRAM_ARCH, load_model
from edgeres.prune.channels import PruneConfig
from edgeres.prune.finetune import FinetuneConfig, run_prune


class ShortcutA(nn.Module):
    """Option A of He et al. (2016): subsample and zero-pad the channels; no parameters."""

    def __init__(self, planes):
        super().__init__()
        self.pad = planes // 4

    def forward(self, x):
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class BasicBlock(nn.Module):
    def __init__(self, inp, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(inp, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = ShortcutA(planes) if stride != 1 or inp != planes else nn.Identity()

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """The small-image ResNet of the original paper: three stages of 16/32/64 channels, head `linear`."""

    def __init__(self, n: int = 1, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        stages, inp = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            stages.append(nn.Sequential(*[BasicBlock(inp if i == 0 else planes, planes, stride if i == 0 else 1)
                                          for i in range(n)]))
            inp = planes
        self.layer1, self.layer2, self.layer3 = stages
        self.linear = nn.Linear(64, num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


class Unexportable(CifarResNet):
    """Python control flow on a tensor's value: torch.export cannot capture it."""

    def forward(self, x):
        y = super().forward(x)
        return y if float(y.sum()) > -1e30 else -y


def _randomize_bn(model):
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


def _timm(name):
    timm = pytest.importorskip("timm")
    # small widths with the real block structure (a 1x1 projection in layer1.0, as at full width)
    kw = {"channels": (32, 64, 128, 256), "stem_width": 16}
    return timm.create_model(name, pretrained=False, num_classes=10, **kw)


def _arch(name):
    return CifarResNet(n=1) if name == "cifar" else _timm(name)


def _prune(tmp_path, demo_data, model, trust=True, ratio=0.4):
    src = tmp_path / "user.pth"
    torch.save(_randomize_bn(model), src)  # a pickled module, as training scripts often write
    return run_prune(src, tmp_path / "p.pt", PruneConfig(ratio=ratio), FinetuneConfig(epochs=0), data=demo_data,
                     trust_model=trust, pre_overrides={"image_size": 32}, progress=False)


@pytest.mark.parametrize("name, form", [("cifar", PROGRAM_ARCH), ("resnet50d", "timm:resnet50d"),
                                        ("seresnet50", "timm:seresnet50")])
def test_prune_reload_export_quantize_check(tmp_path, demo_data, name, form):
    from edgeres.config import OptimizeConfig
    from edgeres.data.model_inputs import resolve_model_preprocess
    from edgeres.evaluate import evaluate_artifact
    from edgeres.onnx_check import check_file
    from edgeres.onnx_export import ExportConfig
    from edgeres.pipeline import export_command
    from edgeres.quant.run import run_quantize
    from edgeres.quant.settings import QuantizeConfig
    from edgeres.targets import get_target

    info = _prune(tmp_path, demo_data, _arch(name))
    assert info["format"] == form and info["macs_after"] < 0.8 * info["macs_before"], info
    print(f"{name}: MACs {info['macs_before']} -> {info['macs_after']} at 32 px, written as {info['format']}")
    # the pruned file reloads without --trust-model and without the user's class, to the very same logits
    back = load_model(tmp_path / "p.pt")
    assert back.meta.arch == form and back.meta.classes == info["meta"].classes
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(back.model(x), info["model"](x), atol=1e-5)
    # MACs of the reloaded file, whatever its form (an exported program has no Conv modules: its ATen ops are counted)
    from edgeres.metrics import torch_macs_params

    assert abs(torch_macs_params(back.model, 32)[0] / info["macs_after"] - 1) < 0.05
    pre = resolve_model_preprocess(back.meta.preprocess, None)
    assert evaluate_artifact(tmp_path / "p.pt", demo_data, pre, progress=False)["images"] > 0
    ex = export_command(OptimizeConfig(model=str(tmp_path / "p.pt"), data=str(demo_data)), tmp_path / "p.onnx",
                        ExportConfig(parity_images=8))
    assert ex["parity"]["passed"] and ex["batchnorm_left"] == 0
    target = get_target("jetson-orin-nano")
    q = run_quantize(tmp_path / "p.onnx", demo_data, target, tmp_path / "q.onnx", QuantizeConfig(subset_size=16))
    assert set(q["summary"]["qdq_dtypes"]) == {"int8"}
    assert check_file(tmp_path / "q.onnx", target) == []


def test_classifier_and_stem_found_by_graph():
    from edgeres.models.graph import trace_anatomy
    from edgeres.prune.channels import channel_prune

    a = trace_anatomy(CifarResNet())
    assert a.classifier == "linear" and a.stem == ["conv1"] and a.num_outputs == 10
    m = CifarResNet(n=1)
    channel_prune(m, PruneConfig(ratio=0.5, round_to=4), 32)
    assert m.conv1.out_channels == 16 and m.linear.out_features == 10  # stem and classifier kept
    assert m.layer3[0].conv1.out_channels < 64
    # timm's deep stem: the convolution that reads the image is the stem
    d = trace_anatomy(_timm("resnet50d"))
    assert d.classifier == "fc" and d.stem == ["conv1.0"]


def test_timm_model_unlike_its_defaults_is_written_as_a_program():
    """A timm model whose structure its name alone does not rebuild (here: no projection in layer1.0) is not written
    as `timm:NAME`, which would not reload, but as its torch.export program."""
    timm = pytest.importorskip("timm")
    from edgeres.models import ModelMeta
    from edgeres.prune.forms import choose_form

    odd = timm.create_model("seresnet50", pretrained=False, num_classes=10, channels=(16, 32, 64, 128)).eval()
    assert choose_form(odd, ModelMeta(), 32) == PROGRAM_ARCH
    assert choose_form(_timm("seresnet50").eval(), ModelMeta(), 32) == "timm:seresnet50"


def test_no_prune_success_leaves_an_unreadable_file(tmp_path, demo_data, monkeypatch):
    """Every way prune can end: success leaves a file evaluate reads; every failure leaves no file at all."""
    # 1. the written file does not reload to the same network (a broken rebuild): prune fails, the file is removed
    import edgeres.prune.forms as prune_mod
    from edgeres import models
    from edgeres.models import build as models_build

    real = models_build.apply_specs
    monkeypatch.setattr(prune_mod, "_rebuilds", lambda form, model: True)  # the early check is fooled, and
    monkeypatch.setattr(models_build, "apply_specs", lambda model, specs: model)  # the rebuild "forgets" the pruned shapes
    with pytest.raises(EdgeresError, match="does not reload to the same network"):
        _prune(tmp_path, demo_data, _timm("seresnet50"))
    assert not (tmp_path / "p.pt").exists()
    monkeypatch.setattr(models_build, "apply_specs", real)
    # 2. reloads, but to different logits (a wrong layer shape, say): the same
    real_load = models.load_model

    def perturbed(*a, **kw):
        lm = real_load(*a, **kw)
        with torch.no_grad():
            list(lm.model.parameters())[-1].add_(1.0)  # the classifier's bias
        return lm

    monkeypatch.setattr(models, "load_model", perturbed)
    with pytest.raises(EdgeresError, match="max \\|dlogit\\|"):
        _prune(tmp_path, demo_data, CifarResNet())
    assert not (tmp_path / "p.pt").exists()
    monkeypatch.setattr(models, "load_model", real_load)
    # 3. a class torch.export cannot capture: refused before any work without --trust-model ...
    with pytest.raises(EdgeresError, match="--trust-model"):
        _prune(tmp_path, demo_data, Unexportable(), trust=False)
    assert not (tmp_path / "p.pt").exists()


def test_unexportable_module_written_pickled_only_with_trust(tmp_path, demo_data, caplog):
    from edgeres.models import ModelMeta, save_checkpoint
    from edgeres.models.program import export_program  # noqa: F401 - the path that fails for this class
    from edgeres.prune.forms import choose_form

    m = Unexportable().eval()
    with pytest.raises(EdgeresError, match="pass --trust-model"):
        choose_form(m, ModelMeta(), 32, trust_model=False)
    form = choose_form(m, ModelMeta(), 32, trust_model=True)
    assert form == PICKLED_ARCH and "pickled module" in caplog.text  # said to the user (a warning), never silent
    save_checkpoint(tmp_path / "u.pt", m, ModelMeta(classes=[str(i) for i in range(10)]), arch=form)
    with pytest.raises(EdgeresError, match="--trust-model"):
        load_model(tmp_path / "u.pt")
    back = load_model(tmp_path / "u.pt", trust_model=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(back.model(x), m(x))


def test_cli_prune_then_evaluate_without_the_class(tmp_path, demo_data, cli):
    """The CLI user's path: prune a custom ResNet (pickled, --trust-model), then evaluate the result in a process
    that cannot import the class and is not given --trust-model."""
    import os

    torch.save(_randomize_bn(CifarResNet()), tmp_path / "user.pth")
    env = {"PYTHONPATH": os.path.dirname(__file__)}
    proc = cli("prune", "--model", tmp_path / "user.pth", "--data", demo_data, "--out", tmp_path / "p.pt",
               "--ratio", "0.4", "--finetune-epochs", "0", "--image-size", "32", "--trust-model", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "exported-program, reload checked" in proc.stdout
    proc = cli("evaluate", "--model", tmp_path / "p.pt", "--data", demo_data, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
