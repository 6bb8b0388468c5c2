"""Long-tailed training subsets and per-class accuracy (issue 11 §3)."""

import math

import pytest
import torch

from cl_analysis import metrics
from cl_analysis.evaluation.linear_probe import linear_probe
from cl_analysis.training.config import TrainConfig
from cl_analysis.training.data import ImageDataset, long_tailed_subset, synthetic_dataset
from cl_analysis.training.pretrain import prepare_data


def balanced(per_class=5000, classes=10):
    labels = torch.arange(classes).repeat_interleave(per_class)
    images = torch.zeros(len(labels), 3, 1, 1, dtype=torch.uint8)
    images[:, 0, 0, 0] = (torch.arange(len(labels)) % 251).to(torch.uint8)
    return ImageDataset(images, labels, [f"c{k}" for k in range(classes)], "fake", "train", "t")


def test_cifar10_lt_profile():
    lt = long_tailed_subset(balanced(), 100, seed=0)
    counts = torch.bincount(lt.labels).tolist()
    expected = [math.floor(5000 * 100 ** (-k / 9) + 1e-9) for k in range(10)]
    assert counts == expected
    assert counts[0] == 5000 and counts[-1] == 50 and counts[1] == 2997
    assert len(lt) == sum(expected)


def test_long_tail_is_seeded_and_a_subset():
    ds = synthetic_dataset(20, num_classes=4, size=8, seed=0)
    a, b = long_tailed_subset(ds, 10, seed=1), long_tailed_subset(ds, 10, seed=1)
    c = long_tailed_subset(ds, 10, seed=2)
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    assert torch.bincount(a.labels).tolist() == [20, 9, 4, 2]  # 20 * 10^(-k/3)
    rows = {tuple(x.flatten().tolist()) for x in ds.images}
    assert all(tuple(x.flatten().tolist()) in rows for x in a.images)
    assert len(long_tailed_subset(ds, 1, seed=0)) == 80  # ratio 1: balanced


@pytest.mark.parametrize("ratio", [0.5, float("nan"), True])
def test_long_tail_refuses_bad_ratio(ratio):
    with pytest.raises(ValueError, match="long_tail_ratio"):
        long_tailed_subset(synthetic_dataset(5, num_classes=3, size=8), ratio)


def test_prepare_data_applies_the_profile():
    train = synthetic_dataset(20, num_classes=4, size=8, seed=0)
    cfg = TrainConfig(model="convnet", image_size=8, device="cpu", long_tail_ratio=10.0)
    tr, _ = prepare_data(cfg, train, None, progress=False)
    assert torch.bincount(tr.labels).tolist() == [20, 9, 4, 2]


def test_per_class_accuracy_closed_form():
    y = torch.tensor([0, 0, 0, 1, 1, 2])
    pred = torch.tensor([0, 1, 0, 1, 1, 0])
    assert metrics.per_class_accuracy(pred, y, 4) == [2 / 3, 1.0, 0.0, None]
    with pytest.raises(ValueError, match="labels"):
        metrics.per_class_accuracy(pred, y[:3])


def test_linear_probe_reports_per_class():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(3).repeat(30)
    x = torch.nn.functional.one_hot(y, 3).float() * 3 + 0.1 * torch.randn(90, 3, generator=g)
    res = linear_probe(x, y, x, y, epochs=5, milestones=(), progress=False)
    assert res["per_class_top1"] == [1.0, 1.0, 1.0]
    assert sum(res["per_class_top1"]) / 3 == pytest.approx(res["top1"])


def test_evaluate_model_reports_per_class_accuracy():
    from cl_analysis.evaluation.evaluate import evaluate_model
    from cl_analysis.training.models import build_model

    torch.manual_seed(0)
    model = build_model("convnet", "linear", 16, (8, 8, 8, 8)).eval()
    tr = synthetic_dataset(15, num_classes=3, size=16, seed=0)
    te = synthetic_dataset(12, num_classes=3, size=16, split="test", seed=0)
    out = evaluate_model(model, tr, te, image_size=16, temperature=0.2, linear={"epochs": 3},
                         batch_size=16, progress=False)
    for key, mean in (("knn_per_class", "knn_top1"), ("linear_per_class", "linear_top1")):
        assert len(out[key]) == 3 and all(0 <= a <= 1 for a in out[key])
        # balanced test set: the mean of the per-class accuracies is the accuracy
        assert sum(out[key]) / 3 == pytest.approx(out[mean])
