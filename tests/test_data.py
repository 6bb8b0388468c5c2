"""Datasets as uint8 tensors: image folders, the decode cache, torchvision sources, subsets."""

from __future__ import annotations

import logging
import os
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torchvision.transforms.v2 import functional as F

from cl_analysis.training import data
from cl_analysis.training.data import DATASETS, ImageDataset, load_dataset, resize, subset

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck"]


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
def _default_cache_location(monkeypatch):
    """Tests choose their own cache location; CI's CL_CACHE_DIR must not leak into them."""
    monkeypatch.delenv("CL_CACHE_DIR", raising=False)


@pytest.fixture
def tree(tmp_path):
    """root/{train,test}/<class>/*.png and a separate cache folder."""
    root = tmp_path / "data"
    pixels = _write_images(root / "train")
    _write_images(root / "test", per_class=2, seed=1)
    return root, tmp_path / "cache", pixels


def _load(root, cache, **kw):
    return load_dataset(kw.pop("name", "imagefolder"), root, cache_dir=cache, progress=False, **kw)


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


def test_image_folder_without_split_folder_and_jpeg(tmp_path):
    _write_images(tmp_path / "flat", classes=("b", "a"), ext="jpg")
    ds = load_dataset("imagefolder", tmp_path / "flat", progress=False)  # default cache in root
    assert ds.classes == ["a", "b"] and len(ds) == 6
    assert (tmp_path / "flat" / ".cl_analysis_cache").is_dir()  # hidden: not read as a class
    assert load_dataset("imagefolder", tmp_path / "flat", progress=False).classes == ["a", "b"]


def test_cifar10_name_with_an_image_folder_root(tmp_path):
    _write_images(tmp_path / "c10" / "test", classes=CIFAR10_CLASSES[::-1], per_class=1,
                  size=(32, 32), ext="jpg")
    ds = load_dataset("cifar10", tmp_path / "c10", "test", cache_dir=tmp_path / "c",
                      progress=False)
    assert ds.name == "cifar10" and ds.source.startswith("imagefolder:")
    assert ds.classes == CIFAR10_CLASSES and ds.images.shape == (10, 3, 32, 32)


def test_cache_fresh_then_reused_without_decoding(tree, monkeypatch, caplog):
    root, cache, _ = tree
    first = _load(root, cache)
    files = list(cache.glob("*.pt"))
    assert len(files) == 1 and files[0].name.startswith("imagefolder-train-")

    def no_decode(*args, **kwargs):
        raise AssertionError("decoded although a valid cache exists")

    monkeypatch.setattr(data, "_decode", no_decode)
    with caplog.at_level(logging.INFO, logger="cl_analysis.training.data"):
        second = _load(root, cache)
    assert torch.equal(first.images, second.images) and "loaded 9 decoded" in caplog.text
    assert not list(cache.glob(".*.tmp"))  # atomic write left no temp file


def test_stale_cache_is_detected_after_adding_a_file(tree, caplog):
    root, cache, _ = tree
    assert len(_load(root, cache)) == 9
    Image.fromarray(np.zeros((5, 6, 3), np.uint8)).save(root / "train" / "cat" / "new.png")
    with caplog.at_level(logging.WARNING, logger="cl_analysis.training.data"):
        ds = _load(root, cache)
    assert len(ds) == 10 and "stale" in caplog.text and "fingerprint" in caplog.text
    assert ds.images[6].sum() == 0  # sorted: 0000..0002.png, then new.png
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cl_analysis.training.data"):
        assert len(_load(root, cache)) == 10  # rebuilt cache is valid again
    assert not caplog.text


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_cache_is_detected_and_rebuilt(tree, caplog, damage):
    root, cache, _ = tree
    expected = _load(root, cache).images
    (path,) = cache.glob("*.pt")
    raw = path.read_bytes()
    path.write_bytes(b"not a torch file" * 10 if damage == "garbage" else raw[: len(raw) // 2])
    with caplog.at_level(logging.WARNING, logger="cl_analysis.training.data"):
        ds = _load(root, cache)
    assert torch.equal(ds.images, expected) and "unreadable" in caplog.text
    assert torch.load(path, weights_only=True)["key"]["n"] == 9  # rewritten


def test_cache_location_env_var_and_read_only_root(tree, tmp_path, monkeypatch):
    root, _, _ = tree
    monkeypatch.setenv("CL_CACHE_DIR", str(tmp_path / "env_cache"))
    load_dataset("imagefolder", root, progress=False)
    assert len(list((tmp_path / "env_cache").glob("*.pt"))) == 1
    monkeypatch.delenv("CL_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    os.chmod(root, 0o555)  # read-only root (mode bits are honoured even when running as root)
    try:
        load_dataset("imagefolder", root, progress=False)
    finally:
        os.chmod(root, 0o755)
    assert not (root / ".cl_analysis_cache").exists()
    assert len(list((tmp_path / "home" / ".cache" / "cl_analysis").glob("*.pt"))) == 1


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist; pass --data-root"):
        load_dataset("cifar10", tmp_path / "missing")
    with pytest.raises(ValueError, match="cifar10, cifar100, svhn, imagefolder"):
        load_dataset("mnist", tmp_path)
    with pytest.raises(ValueError, match="split"):
        load_dataset("imagefolder", tmp_path, split="val")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images found"):
        load_dataset("imagefolder", tmp_path / "empty", progress=False)
    (tmp_path / "only_train" / "train" / "a").mkdir(parents=True)
    (tmp_path / "only_train" / "train" / "a" / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match="found split folders: train"):
        load_dataset("imagefolder", tmp_path / "only_train", split="test", progress=False)


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


def test_torchvision_sources_and_offline_download(tmp_path, monkeypatch):
    class FakeCIFAR10:
        def __init__(self, root, train, download):
            self.data = np.arange(2 * 32 * 32 * 3, dtype=np.uint8).reshape(2, 32, 32, 3)
            self.targets, self.classes = [3, 1], CIFAR10_CLASSES

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    ds = load_dataset("cifar10", tmp_path, "test")
    assert ds.images.shape == (2, 3, 32, 32) and ds.labels.tolist() == [3, 1]
    assert torch.equal(ds.images[1, :, 4, 5], torch.from_numpy(FakeCIFAR10(0, 0, 0).data[1, 4, 5]))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets, "CIFAR100", offline)
    with pytest.raises(FileNotFoundError, match="could not download cifar100.*--data-root.*"
                                                "image-folder"):
        load_dataset("cifar100", tmp_path / "new", download=True)
    with pytest.raises(FileNotFoundError, match="found no usable copy of svhn.*--download"):
        load_dataset("svhn", tmp_path)  # the real torchvision class: no files there
    _write_images(tmp_path / "one_split", classes=("a", "b"), per_class=1)
    with pytest.raises(FileNotFoundError, match="holds class folders"):
        load_dataset("svhn", tmp_path / "one_split")


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
    for split, per_class in (("train", 5000), ("test", 1000)):
        ds = load_dataset("cifar10", cifar_root, split, cache_dir=tmp_path, progress=False)
        assert ds.classes == CIFAR10_CLASSES and len(ds) == 10 * per_class
        assert ds.images.shape == (10 * per_class, 3, 32, 32) and ds.images.dtype == torch.uint8
        assert torch.bincount(ds.labels).tolist() == [per_class] * 10
        assert torch.equal(ds.labels, torch.arange(10).repeat_interleave(per_class))
        first = sorted((cifar_root / split / "cat").iterdir())[0]
        with Image.open(first) as im:
            pixels = torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1)
        assert torch.equal(ds.images[3 * per_class], pixels)
    assert len(list(tmp_path.glob("cifar10-*.pt"))) == 2
