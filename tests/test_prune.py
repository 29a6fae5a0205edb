import numpy as np
import pytest
import torch

from edgeres.errors import EdgeresError
from edgeres.models import ModelMeta, build_model, load_model, save_checkpoint
from edgeres.prune.channels import PruneConfig, channel_prune, check_prunable
from edgeres.prune.sparsity import apply_2_4, check_onnx_2_4, is_2_4, mask_2_4
from edgeres.targets import get_target


def test_ratio_0_3_halves_resnet50_macs_and_exports(tmp_path):
    """At 224 px, --ratio 0.3 must remove at least half of ResNet50's MACs; the result exports and runs in ORT."""
    from edgeres.data import Preprocess
    from edgeres.onnx_export import export_onnx
    from edgeres.runtimes.ort import OrtRuntime

    m = build_model("resnet50", 1000).eval()
    info = channel_prune(m, PruneConfig(ratio=0.3), 224)
    assert info["macs_after"] <= 0.5 * info["macs_before"], info
    assert info["params_after"] < info["params_before"]
    # channel counts are multiples of 8 (tensor cores), except the RGB input and the kept stem/head
    for name, mod in m.named_modules():
        if isinstance(mod, torch.nn.Conv2d) and name != "conv1":
            assert mod.out_channels % 8 == 0, (name, mod.out_channels)
    assert m.conv1.out_channels == 64 and m.fc.out_features == 1000
    export_onnx(m, tmp_path / "p.onnx", Preprocess(size=64), ModelMeta(classes=[str(i) for i in range(1000)]))
    with OrtRuntime(tmp_path / "p.onnx") as rt:
        assert rt.run(np.zeros((1, 3, 64, 64), np.float32)).shape == (1, 1000)


def test_target_macs_search():
    m = build_model("resnet18", 10).eval()
    info = channel_prune(m, PruneConfig(ratio=None, target_macs=0.5), 64)
    assert 0.35 <= info["macs_after"] / info["macs_before"] <= 0.55


def test_pruned_checkpoint_round_trips_weights_only(tmp_path):
    m = build_model("resnet50", 5).eval()
    channel_prune(m, PruneConfig(ratio=0.4, importance="l1", global_pruning=True), 64)
    save_checkpoint(tmp_path / "p.pt", m, ModelMeta(arch="resnet50", classes=list("abcde"), preprocess={"size": 64}))
    torch.load(tmp_path / "p.pt", weights_only=True)
    back = load_model(tmp_path / "p.pt").model
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(m(x), back(x), atol=1e-5)


def test_bad_prune_inputs():
    with pytest.raises(EdgeresError, match="between 0 and 1"):
        PruneConfig(ratio=1.2).validate()
    with pytest.raises(EdgeresError, match="between 0 and 1"):
        PruneConfig(ratio=0.0).validate()
    with pytest.raises(EdgeresError, match="not a ResNet the pruner understands"):
        check_prunable(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU()))


def test_2_4_on_target_without_support(tmp_path, tiny_ckpt, demo_data):
    from edgeres.prune.finetune import FinetuneConfig, run_prune

    with pytest.raises(EdgeresError, match="no 2:4 sparse tensor cores"):
        run_prune(tiny_ckpt, tmp_path / "s.pt", PruneConfig(ratio=None, sparsity="2:4"), FinetuneConfig(epochs=0),
                  data=demo_data, target=get_target("jetson-xavier-nx"), progress=False)


def test_2_4_mask_pattern():
    w = torch.randn(16, 32, 3, 3)
    m = mask_2_4(w)
    assert is_2_4((w * m).numpy(), axis=1)
    assert int(m.sum()) == w.numel() // 2
    # the two largest magnitudes of each group of 4 input channels are kept
    g = w.permute(0, 2, 3, 1).reshape(-1, 4).abs()
    kept = (m.permute(0, 2, 3, 1).reshape(-1, 4) > 0)
    assert torch.all(g[kept].reshape(-1, 2).min(1).values >= g[~kept].reshape(-1, 2).max(1).values)


def test_2_4_survives_finetune_and_onnx_export(tmp_path, tiny_ckpt, demo_data):
    """Masks stay fixed through fine-tuning, and the exported (BN-folded) weights still have the 2:4 pattern."""
    from edgeres.data import Preprocess
    from edgeres.onnx_export import export_onnx
    from edgeres.prune.finetune import FinetuneConfig, run_prune

    res = run_prune(tiny_ckpt, tmp_path / "s.pt", PruneConfig(ratio=0.25, sparsity="2:4"),
                    FinetuneConfig(epochs=1, max_steps_per_epoch=2, batch_size=8), data=demo_data,
                    target=get_target("jetson-orin-nx"), progress=False)
    loaded = load_model(tmp_path / "s.pt")
    assert loaded.meta.sparsity == "2:4" and res["sparse_layers"] > 10
    for name, mod in loaded.model.named_modules():
        if isinstance(mod, torch.nn.Conv2d) and mod.in_channels % 4 == 0 and mod.in_channels >= 16:
            assert is_2_4(mod.weight.detach().numpy(), 1), name
    export_onnx(loaded.model, tmp_path / "s.onnx", Preprocess(size=32), loaded.meta)
    check = check_onnx_2_4(tmp_path / "s.onnx")
    assert len(check["sparse_layers"]) >= res["sparse_layers"] - 1 and not check["dense_layers"], check


def test_distillation_finetune_reuses_training_loop(tmp_path, tiny_ckpt, demo_data, monkeypatch):
    import edgeres.train.loop as train_mod
    from edgeres.prune.finetune import FinetuneConfig, run_prune

    calls = []
    real_fit = train_mod.fit

    def spy(*a, **kw):
        calls.append(kw.get("teacher") is not None)
        return real_fit(*a, **kw)

    monkeypatch.setattr(train_mod, "fit", spy)
    res = run_prune(tiny_ckpt, tmp_path / "p.pt", PruneConfig(ratio=0.3), FinetuneConfig(epochs=1, max_steps_per_epoch=2, batch_size=8),
                    data=demo_data, progress=False)
    assert calls == [True] and res["macs_after"] < res["macs_before"]
    assert (tmp_path / "p.log.csv").exists()


def test_prune_cli_bad_ratio(cli, tiny_ckpt, tmp_path):
    proc = cli("prune", "--model", tiny_ckpt, "--out", tmp_path / "p.pt", "--ratio", "1.5")
    # a value out of the option's range is a usage error (exit 2), refused before anything is loaded or written
    assert proc.returncode == 2 and "'--ratio': 1.5 is not in the range 0<x<1" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "p.pt").exists()


def test_apply_2_4_skips_stem():
    m = build_model("resnet18", 4)
    masks = apply_2_4(m)
    assert "conv1.weight" not in masks and "fc.weight" in masks


def test_taylor_importance_uses_training_gradients(tmp_path, tiny_ckpt, demo_data):
    from edgeres.prune.finetune import FinetuneConfig, run_prune

    res = run_prune(tiny_ckpt, tmp_path / "t.pt", PruneConfig(ratio=0.3, importance="taylor", iterative_steps=2),
                    FinetuneConfig(epochs=1, max_steps_per_epoch=1, batch_size=8), data=demo_data, progress=False)
    assert res["macs_after"] < 0.75 * res["macs_before"]
    assert (tmp_path / "t.step1.pt").exists()  # fine-tuned between the two iterative steps
