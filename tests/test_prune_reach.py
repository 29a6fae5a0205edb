"""Pruning reaches its target on CIFAR-style ResNets with option-A shortcuts (zero-padding, no parameters), or says
plainly why not (issue 26): the shortcut rewrite, the shortfall line and exit 1, --accept-shortfall, the rounding that
never prunes a layer to nothing, --freeze-backbone on a head not named `fc`, and reload-checked step files."""

import copy

import pytest
import torch
from test_any_resnet import CifarResNet, _randomize_bn
from torch import nn

from edgeres.errors import EdgeresError
from edgeres.models import load_model
from edgeres.prune.channels import PruneConfig, channel_prune
from edgeres.prune.finetune import FinetuneConfig, run_prune


class LambdaLayer(nn.Module):
    """The other common spelling of option A (akamaster/pytorch_resnet_cifar10): a lambda in a module."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def _lambda_net():
    m = CifarResNet(n=1)
    for stage, planes in ((m.layer2, 32), (m.layer3, 64)):
        p = planes // 4
        stage[0].shortcut = LambdaLayer(lambda x, p=p: nn.functional.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, p, p)))
    return _randomize_bn(m)


def _save(tmp_path, model):
    src = tmp_path / "user.pth"
    torch.save(model, src)  # a pickled module, as training scripts often write
    return src


@pytest.mark.parametrize("make", [lambda: _randomize_bn(CifarResNet(n=1)), _lambda_net])
def test_option_a_shortcut_rewritten_exactly_then_pruned_through(make):
    from edgeres.models.program import export_program, load_program
    from edgeres.models.shortcuts import ChannelSelect, rewrite_shortcuts

    m, x = make(), torch.randn(3, 3, 32, 32)
    ref = copy.deepcopy(m)
    assert rewrite_shortcuts(m, 32) == ["layer2.0.shortcut", "layer3.0.shortcut"]
    assert isinstance(m.layer2[0].shortcut, ChannelSelect) and not list(m.layer2[0].shortcut.parameters())
    with torch.no_grad():
        assert torch.equal(m(x), ref(x))
        # what is written for such a model (its torch.export program) gives the original's logits before pruning
        assert torch.equal(load_program(export_program(m, 32), "rewritten")(x), ref(x))
    assert rewrite_shortcuts(m, 32) == []  # once only
    channel_prune(m, PruneConfig(ratio=0.5, round_to=8), 32)
    # the residual streams of stages 2 and 3 lost channels, consistently in every block's output and its shortcut
    assert m.layer3[0].conv2.out_channels < 64 and m.layer3[0].shortcut.out_channels == m.layer3[0].conv2.out_channels
    assert m.linear.in_features == m.layer3[0].conv2.out_channels and m.conv1.out_channels == 16
    with torch.no_grad():
        assert m(x).shape == (3, 10)


@pytest.mark.slow
def test_option_a_cifar_resnet_prunes_to_half_its_macs_reloads_exports_quantizes(tmp_path, demo_data):
    from edgeres.onnx_check import check_file
    from edgeres.onnx_export import ExportConfig
    from edgeres.pipeline import OptimizeConfig, export_command
    from edgeres.quant.run import run_quantize
    from edgeres.quant.settings import QuantizeConfig
    from edgeres.targets import get_target

    src = _save(tmp_path, _randomize_bn(CifarResNet(n=1)))
    info = run_prune(src, tmp_path / "p.pt", PruneConfig(ratio=None, target_macs=0.5, round_to=8),
                     FinetuneConfig(epochs=0), data=demo_data, target=get_target("jetson"), trust_model=True,
                     pre_overrides={"image_size": 32, "crop_ratio": 1.0}, progress=False)
    assert info["macs_after"] <= 0.5 * info["macs_before"], info
    assert "shortfall" not in info and info["rewritten"] == ["layer2.0.shortcut", "layer3.0.shortcut"]
    back = load_model(tmp_path / "p.pt")  # no --trust-model: an exported program
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(back.model(x), info["model"](x))
    ex = export_command(OptimizeConfig(model=str(tmp_path / "p.pt"), data=str(demo_data)), tmp_path / "p.onnx",
                        ExportConfig(parity_images=8))
    assert ex["parity"]["passed"]
    target = get_target("jetson-orin-nano")
    run_quantize(tmp_path / "p.onnx", demo_data, target, tmp_path / "q.onnx", QuantizeConfig(subset_size=16))
    assert check_file(tmp_path / "q.onnx", target) == []


@pytest.mark.slow
def test_unreachable_target_exits_1_with_the_best_reachable_figure(tmp_path, demo_data, cli):
    """The Jetson's INT8 channel multiple (32) on a 16/32/64-wide network: the line says the best reachable, what
    blocks the rest and which --round-to would reach it; nothing is written unless the shortfall is accepted."""
    src = _save(tmp_path, _randomize_bn(CifarResNet(n=1)))
    args = ("prune", "--model", src, "--data", demo_data, "--target-macs", "0.47", "--image-size", "32",
            "--crop-ratio", "1.0", "--finetune-epochs", "0", "--trust-model", "--out", tmp_path / "p.pt")
    p = cli(*args)
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr[-2000:]
    line = p.stderr.strip().splitlines()[-1]
    assert "--target-macs 0.47 cannot be reached: the best reachable is 0.81 of the MACs" in line, line
    assert "channel multiple 32" in line and "every layer of 16 or 32 channels whole" in line and "--round-to 8 would reach it" in line and "--accept-shortfall" in line
    assert not (tmp_path / "p.pt").exists()
    p = cli(*args, "--accept-shortfall")
    assert p.returncode == 0, p.stderr[-2000:]
    assert "shortfall accepted: --target-macs 0.47 cannot be reached" in p.stdout and (tmp_path / "p.pt").exists()
    assert load_model(tmp_path / "p.pt").meta.extra["prune"]["shortfall"].startswith("--target-macs 0.47")


def test_shortfall_names_the_stem_and_inline_shortcuts():
    from edgeres.prune.reach import ratio_for_target

    with pytest.raises(EdgeresError, match=r"the stem \(conv1\) is kept whole .*--prune-stem would allow"):
        ratio_for_target(_randomize_bn(CifarResNet(n=1)), PruneConfig(ratio=None, round_to=8), 32, 0.1)

    class Inline(CifarResNet):  # the shortcut inside forward(): nothing to swap, the coupled layers stay whole
        def __init__(self):
            super().__init__(n=1)
            self.layer3[0].shortcut = nn.Identity()
            self.layer3[0].forward = lambda x, b=self.layer3[0]: torch.relu(b.bn2(b.conv2(torch.relu(
                b.bn1(b.conv1(x))))) + nn.functional.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 16, 16)))

    with pytest.raises(EdgeresError, match="coupled through an operation the pruner cannot follow"):
        ratio_for_target(_randomize_bn(Inline()), PruneConfig(ratio=None, round_to=8, keep_stem=False), 32, 0.05)


@pytest.mark.slow
def test_latency_targets_that_cannot_be_reached_stop_unless_accepted(tmp_path, demo_data):
    from edgeres.data import Preprocess
    from edgeres.prune.latency import LatencyTarget, find_ratio, run_prune_latency
    from edgeres.targets import get_target

    # the MACs fallback of a TensorRT target: --target-speedup 50 is --target-macs 0.02, out of reach
    with pytest.raises(EdgeresError, match=r"--target-speedup 50 \(as --target-macs 0\.020\) cannot be reached: "
                                           r"the best reachable is 0\.\d\d of the MACs"):
        find_ratio(_randomize_bn(CifarResNet(n=1)), get_target("jetson"), Preprocess(size=32),
                   LatencyTarget(speedup=50.0), PruneConfig(ratio=None, round_to=8))
    # a measured search that never meets the target (an injected, flat latency)
    src = _save(tmp_path, _randomize_bn(CifarResNet(n=1)))

    def run(accept):
        return run_prune_latency(src, tmp_path / "p.pt", PruneConfig(ratio=None, round_to=8, accept_shortfall=accept),
                                 FinetuneConfig(epochs=0), LatencyTarget(speedup=3.0), data=demo_data,
                                 target=get_target("x86-cpu"), trust_model=True, progress=False,
                                 pre_overrides={"image_size": 32}, measure=lambda r: {"latency_ms": 9.0, "base_ms": 10.0})

    with pytest.raises(EdgeresError, match=r"--target-speedup 3 cannot be reached: the best measured is 1\.11x"):
        run(False)
    assert not (tmp_path / "p.pt").exists()
    assert run(True)["shortfall"].startswith("--target-speedup 3 cannot be reached")


def test_rounding_never_prunes_a_layer_to_nothing():
    """Torch-Pruning rounds the kept channels down and then refused the whole group at zero: a 16-wide layer at
    --round-to 8 was halved at ratio 0.3 but kept whole at 0.6 (more asked, less pruned)."""
    for ratio in (0.3, 0.6, 0.95):
        m = _randomize_bn(CifarResNet(n=1))
        channel_prune(m, PruneConfig(ratio=ratio, round_to=8), 32)
        assert m.layer1[0].conv1.out_channels == 8, ratio


def test_freeze_backbone_finds_a_head_not_named_fc(tmp_path, demo_data):
    from edgeres.data import Preprocess, resolve_data
    from edgeres.models import ModelMeta
    from edgeres.train.config import TrainConfig
    from edgeres.train.loop import fit

    m = _randomize_bn(CifarResNet(n=1))
    before = copy.deepcopy(m.state_dict())
    splits = resolve_data(demo_data)
    fit(m, splits, Preprocess(size=32), TrainConfig(epochs=1, batch_size=16, max_steps_per_epoch=2,
                                                    freeze_backbone=True), tmp_path / "f.pt",
        ModelMeta(arch="exported-program", classes=list(splits.classes)), progress=False)
    after = m.state_dict()
    assert not torch.equal(before["linear.weight"], after["linear.weight"])
    assert all(torch.equal(before[k], after[k]) for k in before if not k.startswith("linear."))


def test_iterative_step_files_are_reload_checked(tmp_path, demo_data, monkeypatch):
    import edgeres.prune.finetune as finetune_mod

    checked = []
    real = finetune_mod.verify_reload
    monkeypatch.setattr(finetune_mod, "verify_reload", lambda path, *a, **kw: (checked.append(path.name),
                                                                               real(path, *a, **kw)))
    src = _save(tmp_path, _randomize_bn(CifarResNet(n=1)))
    run_prune(src, tmp_path / "p.pt", PruneConfig(ratio=0.4, round_to=8, iterative_steps=2),
              FinetuneConfig(epochs=1, batch_size=16, max_steps_per_epoch=1), data=demo_data, trust_model=True,
              pre_overrides={"image_size": 32}, progress=False)
    assert checked == ["p.step1.pt", "p.pt"]


def test_taylor_importance_leaves_batchnorm_statistics_as_they_were():
    """Taylor importance's gradient batches run in train mode; the kept channels keep the BatchNorm running
    statistics of the model given (the seed of the batches used to change them, with no fine-tuning at all)."""
    torch.manual_seed(0)
    model = _randomize_bn(CifarResNet(n=1))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batches = lambda: [(torch.randn(8, 3, 32, 32) * 3 + 1, torch.randint(0, 10, (8,))) for _ in range(2)]  # noqa: E731
    channel_prune(model, PruneConfig(ratio=0.25, importance="taylor"), 32, grad_batches=batches)
    bns = {n: m for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    assert any(m.running_mean.numel() < before[f"{n}.running_mean"].numel() for n, m in bns.items())  # pruned
    for n, m in bns.items():  # the kept channels' statistics are the originals, unchanged
        full = before[f"{n}.running_mean"]
        assert all(any(torch.equal(v, w) for w in full) for v in m.running_mean), n
        assert int(m.num_batches_tracked) == int(before[f"{n}.num_batches_tracked"]), n
