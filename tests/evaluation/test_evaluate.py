"""Tests of cl_analysis.evaluation.linear_probe and .evaluate on tiny synthetic data (CPU)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from cl_analysis.evaluation.evaluate import (
    BANK_KEYS,
    EVAL_KEYS,
    evaluate_model,
    evaluate_run,
    extract_features,
)
from cl_analysis.evaluation.linear_probe import (
    _epoch_order,
    assert_model_unchanged,
    linear_probe,
    probe_from_model,
    snapshot_model,
)
from cl_analysis.training.augment import EvalTransform
from cl_analysis.training.data import ImageDataset
from cl_analysis.training.models import build_model

SIZE = 16


def _gaussians(n, c=5, d=32, seed=0, sep=4.0):
    means = torch.randn(c, d, generator=torch.Generator().manual_seed(99)) * sep / math.sqrt(d)
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % c
    return means[y] + 0.3 * torch.randn(n, d, generator=g), y


def _images(n, c=3, seed=0, split="train"):
    """Class-dependent uint8 images: a per-class colour plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % c
    base = torch.tensor([[200, 40, 40], [40, 200, 40], [40, 40, 200]])[y % 3]  # (n, 3)
    x = base[:, :, None, None] + torch.randint(-40, 40, (n, 3, SIZE, SIZE), generator=g)
    return ImageDataset(x.clamp(0, 255).to(torch.uint8), y.long(), [f"c{i}" for i in range(c)],
                        "synthetic", split, "test")


def _model(seed=0):
    torch.manual_seed(seed)
    return build_model("convnet", "linear", embedding_dim=16, widths=(8, 16, 16, 16))


# ----------------------------------------------------------------------------- linear probe
def test_linear_probe_separable_and_schedule():
    x, y = _gaussians(600, seed=0)
    xt, yt = _gaussians(300, seed=1)
    res = linear_probe(x, y, xt, yt, train_features_flipped=x + 0.01, progress=False)
    assert res["top1"] > 0.95 and res["train_top1"] > 0.95
    assert 0 <= res["top1"] <= res["best_top1"] <= 1
    lrs = [h["lr"] for h in res["history"]]
    assert len(lrs) == 100
    for epoch, expected in [(0, 30.0), (39, 30.0), (40, 6.0), (59, 6.0), (60, 1.2), (80, 0.24),
                            (99, 0.24)]:
        assert lrs[epoch] == pytest.approx(expected)
    assert json.dumps(res)  # JSON-serialisable


def test_linear_probe_deterministic_and_init():
    x, y = _gaussians(200, seed=2)
    a = linear_probe(x, y, x, y, epochs=3, progress=False, seed=5)
    b = linear_probe(x, y, x, y, epochs=3, progress=False, seed=5)
    assert a["history"] == b["history"]
    # lr 0 would keep the N(0, 0.01) init: tiny logits
    res = linear_probe(x, y, x, y, epochs=1, lr=1e-12, progress=False)
    assert res["history"][0]["loss"] == pytest.approx(math.log(5), abs=0.05)


def test_flip_choice_is_per_sample():
    g = torch.Generator().manual_seed(0)
    perm, coins = _epoch_order(1000, g, flip=True)
    assert perm.sort().values.equal(torch.arange(1000)) and coins.shape == (1000,)
    for i in range(0, 1000, 256):  # both variants inside every batch, not one per batch
        batch = coins[perm[i:i + 256]]
        assert batch.any() and not batch.all()
    assert 0.4 < coins.float().mean() < 0.6
    perm2, coins2 = _epoch_order(1000, g, flip=True)
    assert not coins2.equal(coins)  # fresh coins every epoch
    assert not _epoch_order(100, g, flip=False)[1].any()
    x, y = _gaussians(512, seed=3)
    res = linear_probe(x, y, x, y, epochs=4, train_features_flipped=-x, progress=False)
    assert all(0.4 < h["flip_fraction"] < 0.6 for h in res["history"])
    assert linear_probe(x, y, x, y, epochs=1, progress=False)["history"][0]["flip_fraction"] == 0


def test_flip_features_are_used():
    # label information only in the flipped copy for the rows that pick it: with per-sample
    # selection a classifier trained on (x | flipped x) must fit both feature sets
    x, y = _gaussians(400, seed=4)
    flipped = torch.cat([x[:, 16:], x[:, :16]], dim=1)  # a fixed "mirror" of the features
    res = linear_probe(x, y, flipped, y, epochs=30, train_features_flipped=flipped,
                       progress=False)
    assert res["top1"] > 0.9  # the test set here is the flipped copy


@pytest.mark.parametrize("bad", ["labels_len", "dims", "flip_shape", "float_labels", "nan"])
def test_linear_probe_validation(bad):
    x, y = _gaussians(50)
    args = dict(train_features=x, train_labels=y, test_features=x, test_labels=y)
    if bad == "labels_len":
        args["train_labels"] = y[:-1]
    elif bad == "dims":
        args["test_features"] = x[:, :-1]
    elif bad == "flip_shape":
        args["train_features_flipped"] = x[:-1]
    elif bad == "float_labels":
        args["train_labels"] = y.float()
    else:
        args["train_features"] = x.clone().index_fill_(0, torch.tensor([0]), float("nan"))
    with pytest.raises(ValueError):
        linear_probe(**args, epochs=1, progress=False)
    with pytest.raises(ValueError):
        linear_probe(x, y, x, y, epochs=0, progress=False)


# ----------------------------------------------------------------------------- frozen guard
def test_probe_from_model_runs_and_keeps_backbone_frozen():
    model, tr, te = _model(), _images(48), _images(30, seed=1, split="test")
    model.train()  # BN in train mode would update running stats: extraction must use eval mode
    before = snapshot_model(model)
    res = probe_from_model(model, tr, te, image_size=SIZE, batch_size=16, epochs=2,
                           progress=False)
    assert 0 <= res["top1"] <= 1 and len(res["history"]) == 2
    assert_model_unchanged(model, before)
    assert model.training


def test_guard_catches_modified_backbone():
    model, tr, te = _model(), _images(32), _images(24, seed=1, split="test")
    weight = next(model.backbone.parameters())

    def sneaky_update(module, inputs):  # e.g. a forgotten optimizer step on the backbone
        with torch.no_grad():
            weight.add_(1e-3)

    model.backbone.register_forward_pre_hook(sneaky_update)
    with pytest.raises(RuntimeError, match="not frozen"):
        probe_from_model(model, tr, te, image_size=SIZE, epochs=1, progress=False)


def test_guard_checks_buffers_flags_and_grads():
    model = _model()
    snap = snapshot_model(model)
    assert_model_unchanged(model, snap)
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    bn.running_mean += 1
    with pytest.raises(RuntimeError, match="running_mean"):
        assert_model_unchanged(model, snap)
    model = _model()
    snap = snapshot_model(model)
    next(model.parameters()).requires_grad_(False)
    with pytest.raises(RuntimeError, match="requires_grad"):
        assert_model_unchanged(model, snap)
    model = _model()
    snap = snapshot_model(model)
    model(torch.randn(2, 3, SIZE, SIZE)).sum().backward()
    with pytest.raises(RuntimeError, match="grad"):
        assert_model_unchanged(model, snap)


# ----------------------------------------------------------------------------- features
def test_extract_features_shapes_eval_mode_and_flag_restore():
    model, ds = _model(), _images(20)
    model.train()
    model.head.eval()  # a mixed state must come back exactly
    seen = []
    model.backbone.register_forward_pre_hook(lambda m, i: seen.append(m.training))
    t = EvalTransform(SIZE)
    h = extract_features(model, ds.images, transform=t, batch_size=8, progress=False)
    z = extract_features(model, ds.images, transform=t, batch_size=8, which="projection",
                         progress=False)
    h2, z2 = extract_features(model, ds.images, transform=t, batch_size=7, which="both",
                              progress=False)
    assert h.shape == (20, 16) and z.shape == (20, 16)
    assert h.dtype == torch.float32 and h.device.type == "cpu"
    assert torch.allclose(z.norm(dim=1), torch.ones(20), atol=1e-5)
    assert torch.allclose(h, h2, atol=1e-5) and torch.allclose(z, z2, atol=1e-5)
    assert seen and not any(seen)  # forward passes ran in eval mode
    assert model.training and model.backbone.training and not model.head.training
    with pytest.raises(ValueError, match="which"):
        extract_features(model, ds.images, transform=t, which="logits", progress=False)
    with pytest.raises(ValueError):
        extract_features(model, ds.images[0], transform=t, progress=False)


def test_extract_features_restores_flags_on_error():
    model, ds = _model(), _images(4)
    model.train()

    def boom(x):
        raise KeyError("boom")

    with pytest.raises(KeyError):
        extract_features(model, ds.images, transform=boom, progress=False)
    assert all(m.training for m in model.modules())


# ----------------------------------------------------------------------------- evaluate_model
def _check_ranges(out, t=2.0):
    for key, value in out.items():
        if isinstance(value, float):
            assert math.isfinite(value), key
    assert 0 <= out["uniformity"] <= 4 * t
    assert -1 <= out["tolerance"] <= 1
    assert 0 <= out["knn_top1"] <= 1 and 0 <= out["knn_top1_backbone"] <= 1
    assert 0 <= out["linear_top1"] <= 1 and 0 <= out["linear_train_top1"] <= 1
    assert 0 <= out["alignment"] <= 4 and -1 <= out["positive_similarity"] <= 1
    assert 0 <= out["penalty_entropy"] <= math.log(out["n_test"] - 1) + 1e-5
    assert 1 - 1e-5 <= out["effective_negatives"] <= out["n_test"] - 1 + 1e-3
    sep = out["local_separation_mean"]
    assert len(sep) == out["local_separation_k"] + 1
    assert all(-1 - 1e-5 <= s <= 1 + 1e-5 for s in sep)
    assert all(a >= b - 1e-6 for a, b in zip(sep[1:], sep[2:]))  # n1 >= n2 >= ...


def test_evaluate_model_keys_and_ranges():
    model, tr, te = _model(), _images(60), _images(40, seed=1, split="test")
    bank = torch.nn.functional.normalize(torch.randn(60, 16), dim=1)
    before = snapshot_model(model)
    out = evaluate_model(model, tr, te, image_size=SIZE, temperature=0.2, linear={"epochs": 3},
                         bank=bank, bank_protocol_samples=25, batch_size=16, progress=False)
    assert set(EVAL_KEYS) | set(BANK_KEYS) <= set(out)
    _check_ranges(out)
    assert out["knn_k"] == 60 and out["linear_epochs"] == 3 and len(out["linear_test_curve"]) == 3
    assert out["bank_protocol_samples"] == 25
    assert 0 <= out["uniformity_bank"] <= 8 and -1 <= out["tolerance_bank"] <= 1
    assert 0 <= out["penalty_entropy_bank"] <= math.log(59) + 1e-5
    assert json.loads(json.dumps(out)) == out
    assert_model_unchanged(model, before)
    again = evaluate_model(model, tr, te, image_size=SIZE, temperature=0.2, linear=False,
                           bank=bank, bank_protocol_samples=25, batch_size=16, progress=False)
    assert again["linear_top1"] is None
    for key in ("uniformity", "alignment", "penalty_entropy", "tolerance_bank"):
        assert again[key] == pytest.approx(out[key])  # seeded: reproducible
    hot = evaluate_model(model, tr, te, image_size=SIZE, temperature=5.0, linear=False,
                         progress=False, knn={"protocol": "dkobak"})
    assert hot["penalty_entropy"] > out["penalty_entropy"]  # entropy grows with tau
    assert hot["knn_protocol"] == "dkobak" and hot["knn_k"] == 10
    # every peer protocol is reported; the chosen one equals knn_top1
    assert set(hot["knn_by_protocol"]) == {"instdisc", "lightly", "solo", "dkobak"}
    assert hot["knn_by_protocol"]["dkobak"] == pytest.approx(hot["knn_top1"])
    assert out["knn_by_protocol"]["instdisc"] == pytest.approx(out["knn_top1"])
    assert not set(BANK_KEYS) & set(hot)


def test_evaluate_model_identity_views_wiring():
    # with an identity "augmentation" both views coincide: perfect alignment, positive column = 1
    model, tr, te = _model(), _images(30), _images(24, seed=1, split="test")
    clean = EvalTransform(SIZE)
    bank = extract_features(model, tr.images, transform=clean, which="projection", progress=False)
    out = evaluate_model(model, tr, te, image_size=SIZE, temperature=0.1, linear=False, bank=bank,
                         augment=lambda x, generator=None: clean(x), progress=False)
    assert out["alignment"] == pytest.approx(0, abs=1e-6)
    assert out["positive_similarity"] == pytest.approx(1, abs=1e-5)
    assert out["local_separation_mean"][0] == pytest.approx(1, abs=1e-5)
    assert out["positive_similarity_bank"] == pytest.approx(1, abs=1e-5)  # query == its bank row
    assert out["knn_top1_bank"] == pytest.approx(out["knn_top1"])  # bank == clean train z


def test_evaluate_model_validation():
    model, tr, te = _model(), _images(20), _images(8, seed=1, split="test")
    with pytest.raises(ValueError, match="local_separation_k"):
        evaluate_model(model, tr, te, image_size=SIZE, temperature=0.1, linear=False,
                       progress=False)
    te = _images(20, seed=1, split="test")
    with pytest.raises(ValueError, match="temperature"):
        evaluate_model(model, tr, te, image_size=SIZE, temperature=0.0, progress=False)
    with pytest.raises(ValueError, match="bank"):
        evaluate_model(model, tr, te, image_size=SIZE, temperature=0.1, linear=False,
                       bank=torch.randn(7, 16), progress=False)


# ----------------------------------------------------------------------------- evaluate_run
def test_evaluate_run_writes_eval_json(tmp_path):
    from cl_analysis.training.config import TrainConfig
    from cl_analysis.training.pretrain import pretrain

    tr, te = _images(72), _images(30, seed=1, split="test")
    cfg = TrainConfig(dataset="cifar10", subset=60, image_size=SIZE, model="convnet",
                      convnet_widths=(8, 16, 16, 16), embedding_dim=16, epochs=1, batch_size=20,
                      temperature=0.1, device="cpu", seed=3, num_threads=1, hard_k=None,
                      lr_milestones=())
    run = tmp_path / "run"
    pretrain(cfg, run, train_set=tr, test_set=te, progress=False)
    out = evaluate_run(run, train_set=tr, test_set=te, probe_epochs=5, progress=False)
    saved = json.loads((run / "eval.json").read_text())
    assert saved == json.loads(json.dumps(out))
    assert set(EVAL_KEYS) | set(BANK_KEYS) <= set(saved)
    _check_ranges(saved)
    assert saved["n_train"] == 60 and saved["n_test"] == 30 and saved["linear_epochs"] == 5
    assert saved["temperature"] == pytest.approx(0.1) and saved["regime"] == "memory_bank"
    emb = torch.load(run / "embeddings_test.pt", weights_only=True)
    assert emb["z"].shape == (30, 16) and emb["z"].dtype == torch.float16
    assert emb["labels"].equal(te.labels)
    assert emb["local_separation"].shape == (30, 11)
    assert emb["local_separation_bank"].shape == (60, 11)
    assert len(emb["local_separation_anchors"]) == 30
    assert not list(run.glob(".*.tmp"))  # atomic writes leave no temp files


def test_linear_probe_leaves_global_rng_alone():
    x, y = _gaussians(64)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    linear_probe(x, y, x, y, epochs=2, train_features_flipped=x, progress=False)
    assert torch.equal(torch.rand(3), expected)


def test_evaluate_run_simclr_regime_has_no_bank_keys(tmp_path):
    from cl_analysis.training.config import TrainConfig
    from cl_analysis.training.pretrain import pretrain

    tr, te = _images(40), _images(20, seed=1, split="test")
    cfg = TrainConfig(dataset="cifar10", image_size=SIZE, model="convnet", regime="simclr",
                      convnet_widths=(8, 16, 16, 16), embedding_dim=16, epochs=1, batch_size=20,
                      temperature=0.5, device="cpu", num_threads=1, lr_milestones=())
    pretrain(cfg, tmp_path, train_set=tr, test_set=te, progress=False)
    out = evaluate_run(tmp_path, train_set=tr, test_set=te, linear=False, progress=False)
    assert out["linear_top1"] is None and not set(BANK_KEYS) & set(out)
    assert set(EVAL_KEYS) <= set(out) and (tmp_path / "eval.json").is_file()
    assert 0 <= out["uniformity"] <= 4 and out["regime"] == "simclr"
