"""Datasets as uint8 tensors: layouts and their refusals, downloads, the decode cache, subsets."""

from __future__ import annotations

import json
import logging
import shutil
import time
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torchvision.transforms.v2 import functional as F

from cl_analysis.training import data, data_cache
from cl_analysis.training.data import (
    DATASETS,
    ImageDataset,
    check_dataset,
    default_cache_dir,
    default_data_root,
    fetch_dataset,
    load_dataset,
    resize,
    subset,
)

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck"]
LOG = "cl_analysis.training.data"


def _write_images(folder: Path, classes=("dog", "cat", "bird"), per_class=3, size=(6, 5),
                  ext="png", seed=0) -> dict[str, list[np.ndarray]]:
    """Write ``per_class`` random images of ``size`` (w, h) per class; return the pixels."""
    rng = np.random.default_rng(seed)
    pixels = {}
    for cls in classes:
        (folder / cls).mkdir(parents=True, exist_ok=True)
        pixels[cls] = []
        for i in range(per_class):
            arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)  # (H, W, 3)
            Image.fromarray(arr).save(folder / cls / f"{i:04d}.{ext}")
            pixels[cls].append(arr)
    return pixels


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    """A fresh HOME: default data and cache folders land in tmp, never in the real user cache."""
    monkeypatch.delenv("CL_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def tree(tmp_path):
    """root/{train,test}/<class>/*.png and a separate cache folder."""
    root = tmp_path / "data"
    pixels = _write_images(root / "train")
    _write_images(root / "test", per_class=2, seed=1)
    return root, tmp_path / "cache", pixels


def _load(root, cache, **kw):
    return load_dataset(kw.pop("name", "imagefolder"), root, cache_dir=cache, progress=False, **kw)


def _cifar_tree(root: Path, per_class=1, classes=CIFAR10_CLASSES) -> Path:
    _write_images(root / "train", classes=classes, per_class=per_class, size=(4, 4))
    _write_images(root / "test", classes=classes, per_class=per_class, size=(4, 4), seed=1)
    return root


# --------------------------------------------------------------------------- reading folders
def test_image_folder_reads_sorted_classes_and_exact_pixels(tree):
    root, cache, pixels = tree
    ds = _load(root, cache)
    assert ds.classes == ["bird", "cat", "dog"] and len(ds) == 9
    assert ds.images.shape == (9, 3, 5, 6) and ds.images.dtype == torch.uint8
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2] and ds.labels.dtype == torch.int64
    assert torch.equal(ds.images[4], torch.from_numpy(pixels["cat"][1]).permute(2, 0, 1))
    assert (ds.name, ds.split) == ("imagefolder", "train")
    assert ds.source == f"imagefolder:{root.absolute() / 'train'}"
    assert len(_load(root, cache, split="test")) == 6


def test_cifar10_name_with_an_image_folder_root(tmp_path):
    _write_images(tmp_path / "c10" / "test", classes=CIFAR10_CLASSES[::-1], per_class=1,
                  size=(32, 32), ext="jpg")
    ds = load_dataset("cifar10", tmp_path / "c10", "test", cache_dir=tmp_path / "c",
                      progress=False)
    assert ds.name == "cifar10" and ds.source.startswith("imagefolder:")
    assert ds.classes == CIFAR10_CLASSES and ds.images.shape == (10, 3, 32, 32)


def test_check_dataset_describes_a_class_folder_tree(tree, monkeypatch):
    root, _, _ = tree

    def no_decode(*args, **kwargs):
        raise AssertionError("the pre-flight check decoded images")

    monkeypatch.setattr(data, "_decode", no_decode)
    monkeypatch.setattr(Image, "open", no_decode)
    info = check_dataset("imagefolder", root)
    assert info == {"name": "imagefolder", "root": str(root.absolute()),
                    "layout": "class-folders", "num_classes": 3,
                    "classes": ["bird", "cat", "dog"], "splits": {"train": 9, "test": 6}}


# --------------------------------------------------------------------------- refusals (§8)
def _refused(name, root, *fragments, split=None):
    """Both the pre-flight check and the loader refuse, with every fragment in the message."""
    calls = [lambda: check_dataset(name, root)]
    calls.append(lambda: load_dataset(name, root, split or "train", progress=False))
    for call in calls:
        with pytest.raises(ValueError) as err:
            call()
        for fragment in fragments:
            assert fragment in str(err.value), (fragment, str(err.value))


def test_split_folder_as_root_is_refused_naming_its_parent(tree):
    root, _, _ = tree
    for name in ("imagefolder", "cifar10"):
        _refused(name, root / "train", f"{root / 'train'} looks like the train split itself",
                 f"pass its parent {root} as --data-root")
    with pytest.raises(ValueError) as err:
        check_dataset("imagefolder", root / "test")
    assert "looks like the test split itself" in str(err.value)
    assert "--download" not in str(err.value)  # no flag that does not exist


def test_imagefolder_without_a_test_split_is_refused(tmp_path):
    _write_images(tmp_path / "only_train" / "train")
    root = tmp_path / "only_train"
    with pytest.raises(ValueError) as err:
        check_dataset("imagefolder", root)
    msg = str(err.value)
    assert f"{root} has no test split (found: train/)" in msg
    assert f"{root}/test/<class>/" in msg and "never used as the test split" in msg
    with pytest.raises(ValueError, match="has no test split"):
        load_dataset("imagefolder", root, "test", progress=False)
    assert len(load_dataset("imagefolder", root, "train", progress=False)) == 9  # train alone


def test_flat_class_folders_are_refused(tmp_path):
    _write_images(tmp_path / "flat", classes=("b", "a"), ext="jpg")
    root = tmp_path / "flat"
    _refused("imagefolder", root, f"{root} holds class folders (a, b) but no train/ and test/",
             f"{root}/train/<class>/* and {root}/test/<class>/*")
    _write_images(root / "train")
    _refused("imagefolder", root, "mixes split folders and class folders")


@pytest.mark.parametrize("given, classes, hint", [
    ("cifar100", CIFAR10_CLASSES, "pass --dataset cifar10 (or imagefolder)"),
    ("cifar10", [f"c{k:03d}" for k in range(100)], "pass --dataset cifar100 (or imagefolder)"),
    ("cifar10", ["cat", "dog", "bird"], "pass --dataset imagefolder"),
    ("svhn", ["cat", "dog"], "pass --dataset imagefolder"),
])
def test_class_count_that_does_not_match_the_name_is_refused(tmp_path, given, classes, hint):
    root = _cifar_tree(tmp_path / "d", classes=classes)
    expected = 100 if given == "cifar100" else 10
    _refused(given, root, f"has {len(classes)} class folders but {given} has {expected} classes",
             hint)
    assert check_dataset("imagefolder", root)["num_classes"] == len(classes)


def test_train_and_test_with_different_classes_are_refused(tmp_path):
    root = tmp_path / "d"
    _write_images(root / "train", classes=("a", "b", "c"), per_class=1)
    _write_images(root / "test", classes=("a", "b", "d"), per_class=1)
    with pytest.raises(ValueError) as err:
        check_dataset("imagefolder", root)
    msg = str(err.value)
    assert "different class folders" in msg and "only in train: c; only in test: d" in msg
    assert "give both splits the same class folders" in msg


def test_missing_root_unknown_name_and_other_refusals(tmp_path):
    missing = tmp_path / "missing"
    _refused("cifar10", missing, f"data root {missing} does not exist; pass --data-root",
             "cifar-10-batches-py/", "root/train/<class>/*.jpg",
             f"leave --data-root out to download cifar10 into {default_data_root()}")
    _refused("imagefolder", missing, "does not exist", "root/train/<class>/")
    assert not missing.exists()  # a typo in --data-root never starts a download there
    _refused("imagenet9000", None, "'imagenet9000'",
             "cifar10, cifar100, svhn, imagefolder")
    _refused("imagefolder", None, "--dataset imagefolder needs --data-root")
    (tmp_path / "file").write_text("x")
    _refused("cifar10", tmp_path / "file", "is a file, not a folder")
    (tmp_path / "tv" / "cifar-10-batches-py").mkdir(parents=True)
    _refused("cifar10", tmp_path / "tv" / "cifar-10-batches-py",
             "is torchvision's cifar10 folder itself", f"pass its parent {tmp_path / 'tv'}")
    with pytest.raises(ValueError, match="split"):
        load_dataset("imagefolder", tmp_path, split="val")
    (tmp_path / "empty").mkdir()
    _refused("imagefolder", tmp_path / "empty", "has no train split",
             f"{tmp_path / 'empty'}/train/<class>/")


def test_bad_images_are_named(tmp_path):
    _write_images(tmp_path / "bad" / "train")
    broken = tmp_path / "bad" / "train" / "cat" / "0001.png"
    broken.write_bytes(b"\x89PNG broken")
    with pytest.raises(ValueError, match=f"cannot read image {broken}"):
        _load(tmp_path / "bad", tmp_path / "c")
    _write_images(tmp_path / "sizes" / "train")
    odd = tmp_path / "sizes" / "train" / "dog" / "0002.png"
    Image.fromarray(np.zeros((7, 7, 3), np.uint8)).save(odd)
    with pytest.raises(ValueError, match=f"image {odd} is 7x7 but .* is 6x5"):
        _load(tmp_path / "sizes", tmp_path / "c")
    _write_images(tmp_path / "hole" / "train")
    (tmp_path / "hole" / "train" / "empty_class").mkdir()
    with pytest.raises(ValueError, match="empty_class has no image files"):
        _load(tmp_path / "hole", tmp_path / "c")


# --------------------------------------------------------------------------- the cache
def test_cache_fresh_then_reused_without_decoding(tree, monkeypatch, caplog):
    root, cache, _ = tree
    first = _load(root, cache)
    files = list(cache.glob("*.pt"))
    assert len(files) == 1 and files[0].name.startswith("images-")
    meta = json.loads(files[0].with_suffix(".json").read_text())
    assert meta["folder"] == str(root.absolute() / "train") and meta["n"] == 9

    def no_decode(*args, **kwargs):
        raise AssertionError("decoded although a valid cache exists")

    monkeypatch.setattr(data, "_decode", no_decode)
    with caplog.at_level(logging.INFO, logger=LOG):
        second = _load(root, cache)
    assert torch.equal(first.images, second.images) and "loaded 9 decoded" in caplog.text
    assert not list(cache.glob(".*.tmp"))  # atomic write left no temp file


def test_default_cache_is_in_the_user_cache_never_in_the_data_folder(tree, home, tmp_path,
                                                                      monkeypatch):
    root, _, _ = tree
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    load_dataset("imagefolder", root, progress=False)
    assert default_cache_dir() == home / ".cache" / "cl-analysis" / "images"
    assert len(list(default_cache_dir().glob("images-*.pt"))) == 1
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before  # data untouched
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "cl-analysis" / "images"
    assert default_data_root() == tmp_path / "xdg" / "cl-analysis" / "datasets"
    monkeypatch.setenv("CL_CACHE_DIR", str(tmp_path / "env_cache"))
    assert default_cache_dir() == tmp_path / "env_cache"
    load_dataset("imagefolder", root, "test", progress=False)
    assert len(list((tmp_path / "env_cache").glob("images-*.pt"))) == 1


def test_cache_inside_the_data_folder_is_refused(tree, monkeypatch):
    root, _, _ = tree
    monkeypatch.setenv("CL_CACHE_DIR", str(root / ".cache"))
    with pytest.raises(ValueError) as err:
        load_dataset("imagefolder", root, progress=False)
    assert f"lies inside the data folder {root.absolute()}" in str(err.value)
    assert "Set CL_CACHE_DIR (or cache_dir) to a folder outside it" in str(err.value)
    assert not (root / ".cache").exists()


def test_cache_is_keyed_by_content_not_by_name_or_place(tmp_path, monkeypatch):
    root = _cifar_tree(tmp_path / "c10", per_class=2)
    cache = tmp_path / "cache"
    first = load_dataset("cifar10", root, cache_dir=cache, progress=False)
    monkeypatch.setattr(data, "_decode", lambda *a, **k: pytest.fail("decoded a cached folder"))
    as_folder = load_dataset("imagefolder", root, cache_dir=cache, progress=False)
    shutil.copytree(root, tmp_path / "copy")  # copy2 keeps sizes and mtimes
    copied = load_dataset("cifar10", tmp_path / "copy", cache_dir=cache, progress=False)
    assert len(list(cache.glob("images-*.pt"))) == 1
    assert torch.equal(as_folder.images, first.images) and torch.equal(copied.images, first.images)
    assert (as_folder.name, copied.source) == ("imagefolder",
                                               f"imagefolder:{tmp_path / 'copy' / 'train'}")


def test_stale_entry_is_replaced_after_adding_a_file(tree, caplog):
    root, cache, _ = tree
    assert len(_load(root, cache)) == 9
    (old,) = cache.glob("*.pt")
    new_file = root / "train" / "cat" / "new.png"
    Image.fromarray(np.zeros((5, 6, 3), np.uint8)).save(new_file)
    with caplog.at_level(logging.WARNING, logger=LOG):
        ds = _load(root, cache)
    assert len(ds) == 10 and "stale" in caplog.text and str(old) in caplog.text
    assert ds.images[6].sum() == 0  # sorted: 0000..0002.png, then new.png
    (entry,) = cache.glob("*.pt")  # the old entry is gone, one remains
    assert entry != old and not old.with_suffix(".json").exists()
    time.sleep(0.01)
    new_file.touch()  # same size, new mtime: the content key changes
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LOG):
        assert len(_load(root, cache)) == 10
    assert "stale" in caplog.text and len(list(cache.glob("*.pt"))) == 1
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LOG):
        assert len(_load(root, cache)) == 10  # the rebuilt entry is valid again
    assert not caplog.text


@pytest.mark.parametrize("damage", ["garbage", "truncated", "other key"])
def test_corrupt_cache_is_detected_and_rebuilt(tree, caplog, damage):
    root, cache, _ = tree
    expected = _load(root, cache).images
    (path,) = cache.glob("*.pt")
    raw = path.read_bytes()
    if damage == "other key":
        obj = torch.load(path, weights_only=True)
        obj["key"]["n"] = 8
        torch.save(obj, path)
    else:
        path.write_bytes(b"not a torch file" * 10 if damage == "garbage" else raw[: len(raw) // 2])
    with caplog.at_level(logging.WARNING, logger=LOG):
        ds = _load(root, cache)
    assert torch.equal(ds.images, expected)
    assert ("stale" if damage == "other key" else "unreadable") in caplog.text
    assert torch.load(path, weights_only=True)["key"]["n"] == 9  # rewritten


def test_fingerprint_ignores_listing_order():
    records = [("a/1.png", 10, 5), ("b/2.png", 11, 6)]
    assert data_cache.fingerprint(records) == data_cache.fingerprint(records[::-1])
    assert data_cache.fingerprint(records) != data_cache.fingerprint([("a/1.png", 10, 7),
                                                                      ("b/2.png", 11, 6)])


# --------------------------------------------------------------------------- torchvision (§6)
class FakeCIFAR10:
    """torchvision.datasets.CIFAR10 without the network: 'downloads' by writing its files."""

    calls: list = []
    files = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
             "test_batch"]

    def __init__(self, root, train=True, download=False):
        FakeCIFAR10.calls.append((root, train, download))
        base = Path(root) / "cifar-10-batches-py"
        if download:
            base.mkdir(parents=True, exist_ok=True)
            for f in self.files:
                (base / f).write_bytes(b"x")
        elif not all((base / f).exists() for f in self.files):
            raise RuntimeError("Dataset not found or corrupted. You can use download=True")
        n = 3 if train else 2
        self.data = np.arange(n * 32 * 32 * 3, dtype=np.uint8).reshape(n, 32, 32, 3)
        self.targets, self.classes = list(range(n))[::-1], CIFAR10_CLASSES


@pytest.fixture
def fake_cifar10(monkeypatch):
    FakeCIFAR10.calls = []
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    return FakeCIFAR10


def _offline(*args, **kwargs):
    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


def test_default_root_downloads_cifar10_when_missing(fake_cifar10, home):
    root = home / ".cache" / "cl-analysis" / "datasets"
    assert default_data_root() == root
    info = check_dataset("cifar10")
    assert info["layout"] == "download" and info["root"] == str(root)
    assert info["splits"] == {"train": 50000, "test": 10000} and info["num_classes"] == 10
    assert fake_cifar10.calls == []  # the check downloads nothing
    ds = load_dataset("cifar10", split="test")
    assert fake_cifar10.calls == [(str(root), False, True), (str(root), False, False)]
    assert ds.images.shape == (2, 3, 32, 32) and ds.labels.tolist() == [1, 0]
    pixels = FakeCIFAR10(root, False).data[1, 4, 5]  # (3,) channels of pixel (4, 5)
    assert torch.equal(ds.images[1, :, 4, 5], torch.from_numpy(pixels))
    assert ds.source == f"torchvision:cifar10:{root}"
    assert check_dataset("cifar10")["layout"] == "torchvision"
    fake_cifar10.calls = []
    assert len(load_dataset("cifar10")) == 3  # present now: no second download
    assert fake_cifar10.calls == [(str(root), True, False)]


def test_fetch_dataset_downloads_both_splits_once(fake_cifar10, tmp_path):
    (tmp_path / "mine").mkdir()  # an existing, empty --data-root: torchvision downloads into it
    info = fetch_dataset("cifar10", tmp_path / "mine")
    assert info["layout"] == "torchvision"
    assert [c[2] for c in fake_cifar10.calls] == [True, True]
    fake_cifar10.calls = []
    fetch_dataset("cifar10", tmp_path / "mine")
    assert fake_cifar10.calls == []


def test_offline_download_is_a_clear_error_before_any_work(monkeypatch, home, tmp_path):
    monkeypatch.setattr(torchvision.datasets, "CIFAR100", _offline)
    monkeypatch.setattr(data, "_decode", lambda *a, **k: pytest.fail("worked before failing"))
    for call in (lambda: load_dataset("cifar100"), lambda: fetch_dataset("cifar100")):
        with pytest.raises(ValueError) as err:
            call()
        msg = str(err.value)
        assert "could not download cifar100 (train)" in msg and "URLError" in msg
        assert "Without network access, pass --data-root pointing at a local copy" in msg
        assert "root/cifar-100-python/" in msg and "root/train/<class>/*.jpg" in msg
    assert not default_cache_dir().exists()
    with pytest.raises(ValueError) as err:
        load_dataset("cifar100", download=False)
    assert "downloading is off" in str(err.value) and "--data-root" in str(err.value)


def test_svhn_and_unreadable_torchvision_files(monkeypatch, tmp_path):
    class FakeSVHN:
        def __init__(self, root, split, download):
            assert not download
            self.data = np.full((4, 3, 32, 32), 7, np.uint8)
            self.labels = np.array([0, 9, 3, 3])

    (tmp_path / "train_32x32.mat").write_bytes(b"x")
    monkeypatch.setattr(torchvision.datasets, "SVHN", FakeSVHN)
    ds = load_dataset("svhn", tmp_path)
    assert ds.labels.tolist() == [0, 9, 3, 3] and ds.classes == [str(k) for k in range(10)]
    monkeypatch.undo()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "cifar-10-batches-py").mkdir()
    for f in FakeCIFAR10.files:
        (tmp_path / "cifar-10-batches-py" / f).write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="cannot read torchvision's cifar10 .test. files in "
                                         ".*delete them to download them again"):
        load_dataset("cifar10", tmp_path, "test")  # the real torchvision class: md5 mismatch


def test_subset_stratified_fraction_and_seeds():
    labels = torch.arange(10).repeat_interleave(10)  # 10 classes x 10
    ds = ImageDataset(torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1).expand(100, 3, 2, 2)
                      .contiguous(), labels, [str(k) for k in range(10)], "toy", "train", "mem")
    sub = subset(ds, 25, seed=1)
    assert torch.bincount(sub.labels).tolist() == [3] * 5 + [2] * 5
    assert torch.equal(sub.images[:, 0, 0, 0].long() // 10, sub.labels)  # images follow labels
    assert torch.equal(subset(ds, 25, seed=1).images, sub.images)
    assert not torch.equal(subset(ds, 25, seed=2).images, sub.images)
    assert len(subset(ds, 0.5)) == 50 and len(subset(ds, 1.0)) == 100
    assert len(subset(ds, 7, stratified=False)) == 7
    assert "subset(size=25, seed=1" in sub.source
    skewed = ImageDataset(ds.images[:40], torch.tensor([0] * 30 + [1] * 10), ["a", "b"], "s",
                          "train", "mem")
    assert torch.bincount(subset(skewed, 10).labels).tolist() == [8, 2]  # tie: lowest label
    assert torch.bincount(subset(skewed, 8).labels).tolist() == [6, 2]
    for bad in (101, 0, 1.5, 0.0, True):
        with pytest.raises(ValueError, match="subset size"):
            subset(ds, bad)


def test_resize_dataset_and_tensor():
    x = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    ds = ImageDataset(x, torch.zeros(5, dtype=torch.int64), ["a"], "toy", "train", "mem")
    small = resize(ds, 16)
    assert small.images.shape == (5, 3, 16, 16) and small.images.dtype == torch.uint8
    assert torch.equal(small.images, F.resize(x, [16, 16], antialias=True))
    assert resize(x, 32) is x and resize(x, 8, chunk=2).shape == (5, 3, 8, 8)
    with pytest.raises(ValueError, match="positive int"):
        resize(x, 0)
    with pytest.raises(ValueError, match="uint8"):
        resize(x.float(), 16)


def test_image_dataset_validates():
    with pytest.raises(ValueError, match="uint8"):
        ImageDataset(torch.zeros(2, 3, 4, 4), torch.zeros(2, dtype=torch.int64), ["a"], "t",
                     "train", "mem")
    with pytest.raises(ValueError, match="int64"):
        ImageDataset(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.zeros(3), ["a"], "t",
                     "train", "mem")
    assert DATASETS == ("cifar10", "cifar100", "svhn", "imagefolder")


@pytest.mark.cifar
def test_real_cifar10_image_folder(cifar_root, tmp_path):
    started = time.perf_counter()
    info = check_dataset("cifar10", cifar_root)
    assert time.perf_counter() - started < 5  # lists files, decodes nothing
    assert info["splits"] == {"train": 50000, "test": 10000}
    assert info["classes"] == CIFAR10_CLASSES and info["layout"] == "class-folders"
    for split, per_class in (("train", 5000), ("test", 1000)):
        ds = load_dataset("cifar10", cifar_root, split, cache_dir=tmp_path, progress=False)
        assert ds.classes == CIFAR10_CLASSES and len(ds) == 10 * per_class
        assert ds.images.shape == (10 * per_class, 3, 32, 32) and ds.images.dtype == torch.uint8
        assert torch.equal(ds.labels, torch.arange(10).repeat_interleave(per_class))
        first = sorted((cifar_root / split / "cat").iterdir())[0]
        with Image.open(first) as im:
            pixels = torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1)
        assert torch.equal(ds.images[3 * per_class], pixels)
    assert len(list(tmp_path.glob("images-*.pt"))) == 2
    with pytest.raises(ValueError, match="pass --dataset cifar10"):
        check_dataset("cifar100", cifar_root)
    with pytest.raises(ValueError, match="looks like the train split itself"):
        check_dataset("imagefolder", cifar_root / "train")


def test_a_cifar10_tree_named_svhn_is_refused(tmp_path):
    names = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
             "truck")
    for split in ("train", "test"):
        for cls in names:
            folder = tmp_path / split / cls
            folder.mkdir(parents=True)
            Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "0.png")
    with pytest.raises(ValueError, match="holds cifar10's classes.*--dataset cifar10"):
        data.check_dataset("svhn", tmp_path)
    assert data.check_dataset("cifar10", tmp_path)["num_classes"] == 10
