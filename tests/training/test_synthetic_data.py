"""cl_analysis.training.data.synthetic_dataset: the in-memory stand-in for CIFAR-10 in fast mode."""

from __future__ import annotations

import pytest
import torch

from cl_analysis.training import data
from cl_analysis.training.data import ImageDataset, synthetic_dataset


def test_shapes_dtypes_and_balanced_labels():
    ds = synthetic_dataset(n_per_class=7, num_classes=5, size=12, split="test", seed=3)
    assert isinstance(ds, ImageDataset)
    assert ds.images.shape == (35, 3, 12, 12) and ds.images.dtype == torch.uint8
    assert ds.labels.dtype == torch.int64 and torch.equal(torch.bincount(ds.labels),
                                                         torch.full((5,), 7))
    assert ds.classes == [f"pattern{k}" for k in range(5)]
    assert (ds.name, ds.split) == ("synthetic", "test") and "seed=3" in ds.source
    assert ds.images.float().std() > 20  # not a constant image


def test_defaults_match_the_quick_and_smoke_image_size():
    ds = synthetic_dataset()
    assert ds.images.shape == (1000, 3, 16, 16) and len(ds.classes) == 10


def test_deterministic_and_splits_and_seeds_differ():
    a = synthetic_dataset(4, split="train", seed=0)
    assert torch.equal(a.images, synthetic_dataset(4, split="train", seed=0).images)
    assert not torch.equal(a.images, synthetic_dataset(4, split="test", seed=0).images)
    assert not torch.equal(a.images, synthetic_dataset(4, split="train", seed=1).images)


def test_instances_differ_within_a_class():
    ds = synthetic_dataset(20, num_classes=2)
    first = ds.images[ds.labels == 0].float()  # (20, 3, S, S)
    assert (first - first[:1]).abs().flatten(1).amax(1)[1:].min() > 10


def test_classes_are_learnable_from_pixels():
    """Nearest neighbour on raw pixels separates the classes far above chance (10 %)."""
    train = synthetic_dataset(50, split="train")
    test = synthetic_dataset(10, split="test")
    x, xt = train.images.flatten(1).float(), test.images.flatten(1).float()  # (N, P), (M, P)
    pred = train.labels[torch.cdist(xt, x).argmin(1)]  # (M,)
    assert (pred == test.labels).float().mean() > 0.8


def test_works_with_subset_and_a_smoke_training_run(tmp_path):
    from cl_analysis.study.profiles import profile_config
    from cl_analysis.training.pretrain import pretrain

    train = synthetic_dataset(30, split="train")
    assert len(data.subset(train, 100, seed=0)) == 100
    config = profile_config("smoke", epochs=1, subset=100, monitor_size=50, num_threads=1)
    result = pretrain(config, tmp_path / "run", train_set=train,
                      test_set=synthetic_dataset(5, split="test"), progress=False)
    (row,) = result["history"]
    assert torch.isfinite(torch.tensor([row["loss"], row["uniformity"], row["tolerance"]])).all()
    assert 0.0 <= row["knn_accuracy"] <= 1.0


@pytest.mark.parametrize("kwargs, match", [
    ({"n_per_class": 0}, "n_per_class"),
    ({"num_classes": 1}, "num_classes"),
    ({"size": 2}, "size"),
    ({"size": 8.0}, "size"),
    ({"split": "val"}, "split"),
])
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        synthetic_dataset(**kwargs)
