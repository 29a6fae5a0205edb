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
