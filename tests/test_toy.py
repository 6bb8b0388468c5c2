import math

import pytest
import torch

from cl_analysis import gradients, losses, metrics, toy


@pytest.mark.parametrize("dim", [2, 3, 8])
def test_dataset_shapes_unit_norm_and_labels(dim):
    ds = toy.make_toy_dataset(n_classes=3, per_class=5, dim=dim, noise=0.2, seed=1)
    assert ds.centers.shape == (3, dim)
    assert ds.points.shape == (15, dim)
    assert ds.views.shape == (2, 15, dim)
    assert ds.labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    for x in (ds.centers, ds.points, ds.views):
        torch.testing.assert_close(x.norm(dim=-1), torch.ones(x.shape[:-1]))


def test_dataset_is_deterministic_and_seed_dependent():
    a, b = toy.make_toy_dataset(seed=3), toy.make_toy_dataset(seed=3)
    c = toy.make_toy_dataset(seed=4)
    assert torch.equal(a.views, b.views) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.views, c.views)


def test_dataset_structure_views_closer_than_classes():
    ds = toy.make_toy_dataset(n_classes=4, per_class=20, dim=3, noise=0.3, seed=0)
    pos = (ds.views[0] * ds.views[1]).sum(1).mean()
    assert pos > metrics.tolerance(ds.points, ds.labels) > (ds.points @ ds.points.T).mean()


@pytest.mark.parametrize("kwargs", [dict(n_classes=0), dict(dim=1), dict(noise=-1.0),
                                    dict(n_classes=1, per_class=1)])
def test_dataset_rejects_bad_input(kwargs):
    with pytest.raises(ValueError):
        toy.make_toy_dataset(**kwargs)


@pytest.mark.parametrize("name", toy.TOY_LOSSES)
def test_every_loss_runs_keeps_unit_norm_and_decreases(name):
    ds = toy.make_toy_dataset(n_classes=3, per_class=6, dim=3, seed=0)
    tau = 0.5 if {**toy.SIMILARITY_LOSSES, **toy.EMBEDDING_LOSSES}[name] else None
    kw = {"k": 4} if name.startswith("hard") else {}
    run = toy.optimise_embedding(name, tau, steps=30, lr=0.05, dataset=ds, record_every=10,
                                 loss_kwargs=kw)
    n = ds.labels.numel()
    assert run.losses.shape == (30,)
    assert run.steps.tolist() == [0, 10, 20, 30]
    assert run.trajectory.shape == (4, n, 3)
    assert run.embeddings.shape == (n, 3) and run.views.shape == (2, n, 3)
    torch.testing.assert_close(run.trajectory.norm(dim=-1), torch.ones(4, n))
    torch.testing.assert_close(run.views.norm(dim=-1), torch.ones(2, n))
    torch.testing.assert_close(run.trajectory[0], ds.views[0])
    assert torch.isfinite(run.losses).all()
    assert run.losses[-1] <= run.losses[0] + 1e-6
    assert run.temperature == tau


@pytest.mark.parametrize("similarity", ["batch", "bank"])
def test_info_nce_loss_decreases_strictly(similarity):
    run = toy.optimise_embedding("info_nce", 0.2, steps=50, lr=0.02, similarity=similarity)
    assert run.losses[-1] < run.losses[0] - 0.05


def test_bank_mode_bank_is_unit_and_moves_toward_embeddings():
    ds = toy.make_toy_dataset(seed=2)
    run = toy.optimise_embedding("info_nce", 0.2, steps=40, lr=0.02, dataset=ds, similarity="bank")
    bank = run.views[1]
    torch.testing.assert_close(bank.norm(dim=1), torch.ones(len(bank)))
    before = (ds.views[1] - ds.views[0]).norm(dim=1).mean()
    assert (bank - run.embeddings).norm(dim=1).mean() < before


def test_optimise_is_deterministic():
    a = toy.optimise_embedding("triplet", steps=20, lr=0.05, seed=5)
    b = toy.optimise_embedding("triplet", steps=20, lr=0.05, seed=5)
    assert torch.equal(a.trajectory, b.trajectory) and torch.equal(a.losses, b.losses)


def test_temperature_ignored_for_tau_free_losses():
    run = toy.optimise_embedding("simple", 0.3, steps=5)
    assert run.temperature is None


@pytest.mark.parametrize("kwargs", [dict(loss_name="nope"), dict(loss_name="info_nce"),
                                    dict(loss_name="info_nce", temperature=-1.0),
                                    dict(loss_name="simple", steps=0),
                                    dict(loss_name="simple", lr=0.0),
                                    dict(loss_name="simple", similarity="queue")])
def test_optimise_rejects_bad_input(kwargs):
    with pytest.raises(ValueError):
        toy.optimise_embedding(**kwargs)


def test_low_temperature_is_more_uniform_than_simple_which_is_more_tolerant():
    ds = toy.make_toy_dataset(n_classes=4, per_class=16, dim=3, noise=0.3, seed=0)
    runs = {"nce": toy.optimise_embedding("info_nce", 0.1, steps=150, lr=0.01, dataset=ds),
            "simple": toy.optimise_embedding("simple", None, steps=150, lr=0.1, dataset=ds)}
    m = toy.summarize_runs(runs)
    assert m["nce"]["uniformity"] > m["simple"]["uniformity"] + 0.1
    assert m["simple"]["tolerance"] > m["nce"]["tolerance"] + 0.1
    assert set(m["nce"]) == {"uniformity", "tolerance", "alignment", "displacement", "final_loss"}


def test_sample_similarities_shape_range_and_positive():
    s, pos = toy.sample_similarities(3, 100, positive_similarity=0.9, seed=1)
    assert s.shape == (3, 101) and s.dtype == torch.float64
    assert pos.tolist() == [0, 0, 0] and pos.dtype == torch.long
    assert torch.all(s[:, 0] == 0.9)
    assert s[:, 1:].min() >= -1 and s[:, 1:].max() <= 1
    assert torch.equal(s, toy.sample_similarities(3, 100, positive_similarity=0.9, seed=1)[0])
    with pytest.raises(ValueError):
        toy.sample_similarities(1, 10, low=1.0, high=0.0)


def test_penalty_sweep_values_and_identities():
    s, pos = toy.sample_similarities(4, 200, seed=0)
    taus = [0.05, 0.2, 1.0, 5.0]
    sw = toy.penalty_sweep(s, pos, taus, k=20)
    assert all(v.shape == (4,) for v in sw.values())
    assert torch.all(sw["entropy"].diff() > 0)
    assert torch.all(sw["topk_mass"].diff() < 0)
    torch.testing.assert_close(sw["truncation_tv"], 1 - sw["topk_mass"])
    assert torch.all(sw["effective_negatives"] >= sw["entropy"].exp() - 1e-9)  # Jensen
    assert sw["entropy"][-1] < math.log(200) and sw["k"][0] == 20
    h = gradients.penalty_entropy(s, pos, 0.2).double().mean()
    torch.testing.assert_close(sw["entropy"][1], h)


def test_limit_gaps_bounds_and_asymptote():
    s, pos = toy.sample_similarities(8, 50, positive_similarity=0.5, seed=0)
    g = toy.limit_gaps(s, pos, [0.01, 0.1, 1.0, 100.0, 10000.0])
    assert torch.all(g["zero_gap"] <= g["zero_bound"] + 1e-12)
    assert torch.all(g["zero_gap"].diff() > 0) and torch.all(g["inf_gap"].diff() < 0)
    torch.testing.assert_close(g["inf_gap"][-1], g["inf_asymptote"][-1], rtol=1e-3, atol=0)
    m = s.shape[1]
    direct = (1e4 * (losses.info_nce(s, pos, 1e4) - math.log(m))
              - (m - 1) / m * losses.simple(s, pos))
    assert abs(direct) <= g["inf_gap"][-1] * (1 + 1e-6)
