import numpy as np
import pytest
from PIL import Image

from edgeres.data import ImageDataset, Preprocess, data_hash, resolve_data
from edgeres.data.demo import CLASSES, make_demo
from edgeres.errors import DataError


def _img(path, size=(40, 30), colour=(200, 10, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def test_demo_dataset_layout_and_determinism(tmp_path):
    a = make_demo(tmp_path / "a", train_per_class=2, val_per_class=1, progress=False)
    b = make_demo(tmp_path / "b", train_per_class=2, val_per_class=1, progress=False)
    splits = resolve_data(a)
    assert splits.classes == sorted(CLASSES) and len(splits.classes) >= 10
    assert len(splits.train) == 20 and len(splits.val) == 10
    for (pa, _), (pb, _) in zip(splits.train, resolve_data(b).train):
        assert open(pa, "rb").read() == open(pb, "rb").read()
    with Image.open(splits.train[0][0]) as im:
        assert im.mode == "RGB" and min(im.size) >= 64


def test_single_folder_is_split_deterministically(tmp_path):
    for c in ("cat", "dog"):
        for i in range(10):
            _img(tmp_path / c / f"{i}.png")
    s1, s2 = resolve_data(tmp_path, seed=3), resolve_data(tmp_path, seed=3)
    assert s1.train == s2.train and s1.val == s2.val
    assert len(s1.val) == 4 and len(s1.train) == 16
    assert not set(s1.train) & set(s1.val)
    assert data_hash(s1) == data_hash(s2)


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        resolve_data(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class sub-folders"):
        resolve_data(tmp_path / "empty")
    _img(tmp_path / "d" / "train" / "a" / "0.png")
    (tmp_path / "d" / "train" / "b").mkdir(parents=True)
    with pytest.raises(DataError, match=r"train/b holds no images"):
        resolve_data(tmp_path / "d")


def test_mismatched_train_val_classes(tmp_path):
    _img(tmp_path / "train" / "a" / "0.png")
    _img(tmp_path / "val" / "b" / "0.png")
    with pytest.raises(DataError, match="different class folders"):
        resolve_data(tmp_path)


def test_corrupt_image_error_names_file_and_skip_flag(tmp_path):
    _img(tmp_path / "a" / "good.png")
    bad = tmp_path / "a" / "bad.png"
    bad.write_bytes(b"not a png")
    pre = Preprocess(size=16)
    samples = [(str(bad), 0), (str(tmp_path / "a" / "good.png"), 0)]
    with pytest.raises(DataError, match="bad.png.*--skip-corrupt"):
        ImageDataset(samples, pre)[0]
    with pytest.warns(UserWarning, match="bad.png"):
        x, y = ImageDataset(samples, pre, skip_corrupt=True)[0]
    assert x.shape == (3, 16, 16) and y == 0


@pytest.mark.parametrize("size,ratio,img_size", [(32, 0.875, (50, 37)), (24, 1.0, (30, 61)), (64, 0.875, (72, 72))])
def test_eval_preprocessing_matches_torchvision(tmp_path, size, ratio, img_size):
    from torchvision import transforms as T

    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (img_size[1], img_size[0], 3), dtype=np.uint8))
    pre = Preprocess(size=size, crop_ratio=ratio)
    resize = T.Resize((size, size)) if ratio == 1.0 else T.Resize(pre.resize_size)
    ref = T.Compose([resize, T.CenterCrop(size), T.ToTensor(), T.Normalize(pre.mean, pre.std)])(img).numpy()
    ours = pre(img)
    assert ours.shape == (3, size, size) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_bad_preprocess_values():
    with pytest.raises(ValueError):
        Preprocess(size=4)
    with pytest.raises(ValueError):
        Preprocess(crop_ratio=1.5)


def test_demo_recipe_and_cli_defaults():
    """The demo measures its baseline on >= 100 validation images per class; the CLI reads the same recipe."""
    from click.testing import CliRunner

    from edgeres.cli import main
    from edgeres.demo import DEMO

    assert DEMO["val_per_class"] >= 100 and DEMO["train_per_class"] >= DEMO["val_per_class"]
    assert len(CLASSES) == 10 and len(set(CLASSES)) == 10
    help_text = CliRunner().invoke(main, ["demo", "--help"]).output
    assert f"[default: {DEMO['val_per_class']};" in help_text and f"[default: {DEMO['epochs']};" in help_text


def test_demo_classes_render_distinct_shapes():
    """Every class draws something different from the same randomness (same background, colour and place)."""
    from edgeres.data.demo import render

    imgs = [np.asarray(render(c, np.random.default_rng(7)), dtype=np.int16) for c in range(len(CLASSES))]
    for i in range(len(imgs)):
        for j in range(i + 1, len(imgs)):
            assert np.abs(imgs[i] - imgs[j]).mean() > 1.0, (CLASSES[i], CLASSES[j])
