import pytest
import torch

from edgeres.errors import ModelFileError
from edgeres.models import ModelMeta, build_model, infer_arch, load_model, save_checkpoint


@pytest.fixture
def r18():
    torch.manual_seed(0)
    return build_model("resnet18", 7).eval()


def _same(a, b):
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        return torch.allclose(a(x), b(x), atol=1e-5)


def test_edgeres_checkpoint_round_trip(tmp_path, r18):
    meta = ModelMeta(arch="resnet18", classes=list("abcdefg"), preprocess={"size": 32}, data_hash="h")
    save_checkpoint(tmp_path / "m.pt", r18, meta)
    raw = torch.load(tmp_path / "m.pt", weights_only=True)  # plain data: no pickle of code
    assert raw["format"] == "edgeres-checkpoint"
    loaded = load_model(tmp_path / "m.pt")
    assert loaded.meta.classes == list("abcdefg") and loaded.meta.preprocess == {"size": 32}
    assert loaded.meta.data_hash == "h" and loaded.meta.source_format == "edgeres"
    assert _same(r18, loaded.model)
    assert not list(tmp_path.glob(".*.tmp")), "atomic write left a temp file"


def test_bare_state_dict_infers_arch_and_classes(tmp_path, r18):
    torch.save(r18.state_dict(), tmp_path / "sd.pth")
    loaded = load_model(tmp_path / "sd.pth")
    assert loaded.meta.arch == "resnet18" and loaded.meta.num_classes == 7
    assert _same(r18, loaded.model)
    # wrapped and DDP-prefixed state dicts too
    torch.save({"state_dict": {"module." + k: v for k, v in r18.state_dict().items()}}, tmp_path / "wrapped.pth")
    assert _same(r18, load_model(tmp_path / "wrapped.pth").model)


def test_infer_arch_resnet50():
    assert infer_arch(build_model("resnet50", 3).state_dict()) == "resnet50"
    assert infer_arch(build_model("resnet34", 3).state_dict()) == "resnet34"


def test_torchscript(tmp_path, r18):
    torch.jit.script(r18).save(str(tmp_path / "ts.pt"))
    loaded = load_model(tmp_path / "ts.pt")
    assert loaded.meta.source_format == "torchscript"
    assert _same(r18, loaded.model)


def test_pickled_module_needs_trust(tmp_path, r18):
    torch.save(r18, tmp_path / "full.pt")
    with pytest.raises(ModelFileError, match="--trust-model"):
        load_model(tmp_path / "full.pt")
    loaded = load_model(tmp_path / "full.pt", trust_model=True)
    assert loaded.meta.source_format == "pickled-module" and _same(r18, loaded.model)


def test_corrupt_and_missing_files(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"\x80\x02 definitely not a checkpoint")
    with pytest.raises(ModelFileError, match="not a readable PyTorch"):
        load_model(tmp_path / "bad.pt")
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model(tmp_path / "nope.pt")
    torch.save({"a": 1}, tmp_path / "dict.pt")
    with pytest.raises(ModelFileError, match="not a state dict"):
        load_model(tmp_path / "dict.pt")


def test_wrong_class_count(tmp_path, r18):
    torch.save(r18.state_dict(), tmp_path / "sd.pth")
    with pytest.raises(ModelFileError, match="7 output classes but 10"):
        load_model(tmp_path / "sd.pth", num_classes=10)


def test_unknown_arch():
    with pytest.raises(ModelFileError, match="unknown architecture"):
        build_model("vgg16", 10)


# ------------------------------------------------------------------------------------------------ any file a user brings
def _sd_variants(sd):
    import argparse

    return {
        # timm's train.py: the weights beside its argparse Namespace (plain data, read without --trust-model)
        "ckpt.pth.tar": {"epoch": 3, "arch": "resnet18", "state_dict": sd, "args": argparse.Namespace(lr=0.1)},
        # Lightning: the network under `model.`, next to a loss's own tensors and the trainer's bookkeeping
        "lightning.ckpt": {"epoch": 1, "global_step": 10, "pytorch-lightning_version": "2.4.0",
                           "hyper_parameters": {"lr": 0.1},
                           "state_dict": {**{"model." + k: v for k, v in sd.items()}, "criterion.weight": torch.ones(7)}},
        "model.pth": {"model": sd},
        "train.pt": {"model_state_dict": sd, "optimizer_state_dict": {"state": {}, "param_groups": []}, "epoch": 5},
        "ddp.pth": {"module." + k: v for k, v in sd.items()},
        "weights.bin": sd,  # any name: the content decides
    }


def test_every_wrapped_state_dict(tmp_path, r18):
    for name, obj in _sd_variants(r18.state_dict()).items():
        torch.save(obj, tmp_path / name)
        loaded = load_model(tmp_path / name)
        assert loaded.meta.arch == "resnet18" and loaded.meta.num_classes == 7, name
        assert _same(r18, loaded.model), name


def test_torchscript_and_torch_export_by_content(tmp_path, r18):
    for name in ("m.ts", "m.torchscript", "scripted.pth"):
        torch.jit.script(r18).save(str(tmp_path / name))
        loaded = load_model(tmp_path / name)
        assert loaded.meta.source_format == "torchscript" and loaded.meta.num_classes == 7 and _same(r18, loaded.model)
    ep = torch.export.export(r18, (torch.randn(2, 3, 32, 32),),
                             dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=64)},))
    for name in ("m.pt2", "exported.pt"):
        torch.export.save(ep, tmp_path / name)
        loaded = load_model(tmp_path / name)  # no --trust-model: every pickled member is checked to be plain data
        assert loaded.meta.source_format == "torch.export" and loaded.meta.num_classes == 7
        assert _same(r18, loaded.model)


def test_torch_export_raw_weight_starting_like_a_pickle(tmp_path, r18):
    # raw weight bytes (use_pickle: false in the archive's weights config) are data: a first byte of 0x80 (a pickle's
    # PROTO opcode) must not make the file look pickled; a member that really is a pickle is still refused
    import copy
    import zipfile
    m = copy.deepcopy(r18)
    with torch.no_grad():
        m.conv1.weight.view(-1)[0] = torch.frombuffer(bytearray(b"\x80\x00\x00\x3f"), dtype=torch.float32)[0]
    ep = torch.export.export(m, (torch.randn(2, 3, 32, 32),),
                             dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=64)},))
    torch.export.save(ep, tmp_path / "p.pt2")
    with zipfile.ZipFile(tmp_path / "p.pt2") as z:
        assert any(z.read(n)[:1] == b"\x80" for n in z.namelist() if "/weights/weight_" in n)
        members = {n: z.read(n) for n in z.namelist()}
    assert _same(m, load_model(tmp_path / "p.pt2").model)
    sample = next(n for n in members if n.endswith("sample_inputs/model.pt"))
    import io
    buf = io.BytesIO()
    torch.save(torch.nn.ReLU(), buf)  # a module: needs full unpickling
    members[sample] = buf.getvalue()
    with zipfile.ZipFile(tmp_path / "evil.pt2", "w") as z:
        for n, b in members.items():
            z.writestr(n, b)
    with pytest.raises(ModelFileError, match="--trust-model"):
        load_model(tmp_path / "evil.pt2")


def test_timm_state_dicts_and_modules(tmp_path):
    timm = pytest.importorskip("timm")
    for name in ("resnet50d", "seresnet50", "resnext50_32x4d"):
        torch.manual_seed(0)
        m = timm.create_model(name, pretrained=False, num_classes=5).eval()
        torch.save({"state_dict": m.state_dict()}, tmp_path / f"{name}.pth")
        loaded = load_model(tmp_path / f"{name}.pth")
        assert loaded.meta.arch == f"timm:{name}" and loaded.meta.source_format == "timm-state-dict"
        assert _same(m, loaded.model), name
    # timm's plain resnet50 (the a1/a2/a3 recipes' weights) has torchvision's names: read as a torchvision ResNet50
    sd = timm.create_model("resnet50", pretrained=False, num_classes=5).state_dict()
    torch.save(sd, tmp_path / "a1.pth")
    assert load_model(tmp_path / "a1.pth").meta.arch == "resnet50"
    # a whole timm module: only with --trust-model, and then recognised by its timm name
    torch.save(m, tmp_path / "module.pth")
    with pytest.raises(ModelFileError, match="--trust-model"):
        load_model(tmp_path / "module.pth")
    assert load_model(tmp_path / "module.pth", trust_model=True).meta.arch == "timm:resnext50_32x4d"


def test_timm_state_dict_without_timm_says_how_to_install(tmp_path, monkeypatch):
    timm = pytest.importorskip("timm")
    from edgeres.models import timm_models

    torch.save(timm.create_model("resnet50d", pretrained=False, num_classes=3).state_dict(), tmp_path / "d.pth")
    monkeypatch.setattr(timm_models, "have_timm", lambda: False)
    with pytest.raises(ModelFileError, match=r"timm is not installed; install the timm extra: pip install 'edgeres\[timm\]'"):
        load_model(tmp_path / "d.pth")


def test_files_that_are_no_model_name_the_accepted_formats(tmp_path, cli):
    import onnx
    from onnx import TensorProto, helper

    (tmp_path / "notes.pth").write_text("these are my notes, not weights\n")
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(g), tmp_path / "model.pt")  # an ONNX file under a PyTorch name
    torch.save([1, 2, 3], tmp_path / "list.pt")
    torch.save({"conv.weight": torch.ones(3, 3, 3, 3)}, tmp_path / "foreign.pt")  # tensors, but no ResNet
    for name in ("notes.pth", "model.pt", "list.pt", "foreign.pt"):
        with pytest.raises(ModelFileError, match="accepted: an edgeres checkpoint") as e:
            load_model(tmp_path / name)
        assert "\n" not in str(e.value), name
    proc = cli("export", "--model", tmp_path / "notes.pth", "--out", tmp_path / "x.onnx")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "accepted:" in proc.stderr
    assert not (tmp_path / "x.onnx").exists()
