"""Tests for cl_analysis.metrics: uniformity (Eq. 10), alignment, tolerance (Eq. 11), Fig. 8, kNN.

Oracles: torch.pdist / float64 brute force, scikit-learn's KNeighborsClassifier, explicit loops.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from cl_analysis import metrics as M


def sphere(n, d, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g, dtype=dtype), dim=1)


def pdist_uniformity_loss(z, t=2.0):
    """Wang & Isola's reference: pdist over i<j pairs."""
    return torch.pdist(z).pow(2).mul(-t).exp().mean().log()


# ---------------------------------------------------------------- uniformity
@pytest.mark.parametrize("n, chunk", [(2, 4096), (7, 3), (50, 4096), (50, 7), (129, 32)])
@pytest.mark.parametrize("t", [0.5, 2.0, 10.0])
def test_uniformity_matches_pdist(n, chunk, t):
    z = sphere(n, 16, seed=n)
    expected = -pdist_uniformity_loss(z, t)
    torch.testing.assert_close(M.uniformity(z, t=t, chunk_size=chunk), expected,
                               rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(M.uniformity_loss(z, t=t, chunk_size=chunk), -expected,
                               rtol=1e-10, atol=1e-12)


def test_uniformity_large_t_does_not_underflow():
    z = sphere(64, 8, seed=1, dtype=torch.float32)
    u = M.uniformity(z, t=200.0, chunk_size=16)  # exp(-800) would underflow naively
    assert torch.isfinite(u)
    torch.testing.assert_close(u.double(), -pdist_uniformity_loss(z.double(), 200.0),
                               rtol=1e-4, atol=1e-3)


def test_uniformity_of_uniform_sphere_128d():
    z = sphere(4000, 128, seed=2, dtype=torch.float32)
    u = M.uniformity(z, chunk_size=1024)
    assert u.dtype == torch.float32 and u.item() == pytest.approx(3.9375, abs=0.01)


def test_uniformity_of_collapsed_features_is_zero():
    z = F.normalize(torch.ones(10, 4, dtype=torch.float64), dim=1)
    assert M.uniformity(z).item() == pytest.approx(0.0, abs=1e-12)


def test_uniformity_random_subset_matches_float64_direct():
    z = sphere(6000, 128, seed=3, dtype=torch.float32)
    idx = torch.randperm(6000, generator=torch.Generator().manual_seed(0))[:2000]
    sub = z[idx]
    torch.testing.assert_close(M.uniformity(sub, chunk_size=300).double(),
                               -pdist_uniformity_loss(sub.double()), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_uniformity_50k_x_128_in_bounded_memory():
    # Run in a fresh process so ru_maxrss measures this computation alone: an N x N float32
    # matrix would need 10 GB and a (4096, N) strip 0.8 GB.
    code = (
        "import json, resource, torch, torch.nn.functional as F\n"
        "from cl_analysis.metrics import uniformity\n"
        "g = torch.Generator().manual_seed(4)\n"
        "z = F.normalize(torch.randn(50000, 128, generator=g), dim=1)\n"
        "u = uniformity(z).item()\n"
        "sub = z[torch.randperm(50000, generator=g)[:2000]].double()\n"
        "ref = -torch.pdist(sub).pow(2).mul(-2).exp().mean().log().item()\n"
        "rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20\n"
        "print(json.dumps([u, ref, rss]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    u, ref, rss_gb = json.loads(out.stdout.strip().splitlines()[-1])
    assert u == pytest.approx(3.9375, abs=0.005)
    assert u == pytest.approx(ref, abs=0.01)  # a 2,000-row float64 subset estimates the same
    assert rss_gb < 2.0


def test_uniformity_loss_gradcheck():
    z = sphere(6, 4, seed=5).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: M.uniformity_loss(x, chunk_size=4), (z,))
    (g,) = torch.autograd.grad(M.uniformity_loss(z), z)
    (g_ref,) = torch.autograd.grad(pdist_uniformity_loss(z), z)
    tangent = lambda v: v - (v * z).sum(1, keepdim=True) * z.detach()  # noqa: E731
    torch.testing.assert_close(tangent(g), tangent(g_ref))  # identical on the sphere


def test_uniformity_bank_is_mean_over_all_pairs():
    q, bank = sphere(30, 8, seed=6), sphere(45, 8, seed=7)
    s = q @ bank.T
    expected = -torch.log(torch.exp(4 * s - 4).mean())
    torch.testing.assert_close(M.uniformity_bank(q, bank, chunk_size=7), expected)
    torch.testing.assert_close(M.uniformity_bank(q, bank, t=0.5),
                               -torch.log(torch.exp(s - 1).mean()))


@pytest.mark.parametrize("fn", [M.uniformity, M.uniformity_loss])
def test_uniformity_validation(fn):
    with pytest.raises(ValueError, match=r"torch\.nn\.functional\.normalize"):
        fn(torch.randn(10, 4) * 3)
    with pytest.raises(ValueError, match="at least 2"):
        fn(sphere(1, 4))
    with pytest.raises(ValueError, match="NaN"):
        fn(torch.full((3, 4), math.nan))
    with pytest.raises(ValueError, match="2-D"):
        fn(sphere(3, 4)[0])
    with pytest.raises(ValueError, match="t: expected"):
        fn(sphere(3, 4), t=0)
    with pytest.raises(ValueError, match="normalize"):
        M.uniformity_bank(sphere(3, 4), torch.ones(5, 4))


def test_uniformity_half_precision_is_upcast():
    z = sphere(20, 8, dtype=torch.float32)
    u = M.uniformity(z.half())
    assert u.dtype == torch.float32
    torch.testing.assert_close(u, M.uniformity(z), rtol=1e-2, atol=1e-2)


# ---------------------------------------------------------------- alignment
def test_alignment_matches_definition_and_gradcheck():
    z1, z2 = sphere(9, 5, seed=8), sphere(9, 5, seed=9)
    for alpha in (1.0, 2.0, 3.0):
        expected = (z1 - z2).norm(dim=1).pow(alpha).mean()
        torch.testing.assert_close(M.alignment(z1, z2, alpha=alpha), expected)
    z1r = z1.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda a: M.alignment(a, z2), (z1r,))
    assert M.alignment(z1, z1).item() == 0.0
    assert M.alignment(z1, -z1).item() == pytest.approx(4.0)


def test_alignment_validation():
    with pytest.raises(ValueError, match="match"):
        M.alignment(sphere(4, 3), sphere(5, 3))
    with pytest.raises(ValueError, match="normalize"):
        M.alignment(torch.randn(4, 3) * 5, sphere(4, 3))
    with pytest.raises(ValueError, match="alpha"):
        M.alignment(sphere(4, 3), sphere(4, 3), alpha=-1)


# ---------------------------------------------------------------- tolerance
def brute_tolerance(z, y):
    per_anchor = []
    for i in range(len(z)):
        same = [j for j in range(len(z)) if y[j] == y[i] and j != i]
        if same:
            per_anchor.append(sum(float(z[i] @ z[j]) for j in same) / len(same))
    return sum(per_anchor) / len(per_anchor)


def test_tolerance_matches_brute_force():
    z = sphere(60, 6, seed=10)
    y = torch.randint(0, 5, (60,), generator=torch.Generator().manual_seed(1)) * 7 - 3  # any ints
    y[0] = 100  # a singleton class: anchor 0 is skipped
    expected = brute_tolerance(z, y)
    assert M.tolerance(z, y, chunk_size=11).item() == pytest.approx(expected, rel=1e-12)


def test_tolerance_extremes():
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    z = F.normalize(torch.eye(2, dtype=torch.float64)[y], dim=1)  # each class collapsed
    assert M.tolerance(z, y).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="two samples"):
        M.tolerance(sphere(3, 4), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="shape"):
        M.tolerance(sphere(3, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="integer"):
        M.tolerance(sphere(3, 4), torch.tensor([0.0, 1.0, 1.0]))


def test_tolerance_bank_matches_brute_force():
    q, b = sphere(20, 6, seed=11), sphere(40, 6, seed=12)
    g = torch.Generator().manual_seed(2)
    yq, yb = torch.randint(0, 4, (20,), generator=g), torch.randint(0, 3, (40,), generator=g)
    s = q @ b.T
    vals = [s[i, yb == yq[i]].mean().item() for i in range(20) if (yb == yq[i]).any()]
    assert M.tolerance_bank(q, yq, b, yb, chunk_size=6).item() == pytest.approx(
        sum(vals) / len(vals), rel=1e-12)
    with pytest.raises(ValueError, match="bank_labels"):
        M.tolerance_bank(q, torch.full((20,), 9), b, yb)


# ---------------------------------------------------------------- local separation
def test_local_separation():
    s = torch.tensor([[0.9, 0.1, 0.5, 0.3, 0.95], [0.2, 0.8, 0.4, 0.6, 0.0]])
    out = M.local_separation(s, torch.tensor([0, 1]), k=3)
    expected = torch.tensor([[0.9, 0.95, 0.5, 0.3], [0.8, 0.6, 0.4, 0.2]])
    torch.testing.assert_close(out, expected)
    s20 = torch.rand(4, 20) * 2 - 1
    assert M.local_separation(s20, torch.zeros(4, dtype=torch.long)).shape == (4, 11)
    with pytest.raises(ValueError, match="k: expected"):
        M.local_separation(s, torch.tensor([0, 1]), k=5)


# ---------------------------------------------------------------- kNN
def knn_data(n_train=300, n_test=80, d=8, c=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(c, d, generator=g, dtype=torch.float64) * 1.5
    ytr = torch.randint(0, c, (n_train,), generator=g)
    yte = torch.randint(0, c, (n_test,), generator=g)
    xtr = centers[ytr] + torch.randn(n_train, d, generator=g, dtype=torch.float64)
    xte = centers[yte] + torch.randn(n_test, d, generator=g, dtype=torch.float64)
    return xtr, ytr, xte, yte


@pytest.mark.parametrize("k", [1, 5, 15])
def test_knn_uniform_matches_sklearn(k):
    neighbors = pytest.importorskip("sklearn.neighbors")
    xtr, ytr, xte, yte = knn_data()
    clf = neighbors.KNeighborsClassifier(n_neighbors=k, weights="uniform", metric="cosine",
                                         algorithm="brute").fit(xtr.numpy(), ytr.numpy())
    expected = torch.from_numpy(clf.predict(xte.numpy()))
    pred = M.knn_predict(xtr, ytr, xte, k=k, weighting="uniform", chunk_size=17)
    assert torch.equal(pred, expected)
    acc = M.knn_accuracy(xtr, ytr, xte, yte, k=k, protocol="dkobak")
    assert acc == pytest.approx(clf.score(xte.numpy(), yte.numpy()))


def brute_knn_exp(xtr, ytr, xte, k, tau, c):
    xtr, xte = F.normalize(xtr, dim=1), F.normalize(xte, dim=1)
    preds = []
    for x in xte:
        s = xtr @ x
        order = sorted(range(len(s)), key=lambda j: -float(s[j]))[:k]
        votes = [0.0] * c
        for j in order:
            votes[int(ytr[j])] += math.exp(float(s[j]) / tau)
        preds.append(max(range(c), key=lambda i: (votes[i], -i)))
    return torch.tensor(preds)


@pytest.mark.parametrize("k, tau", [(1, 0.07), (10, 0.07), (50, 0.5)])
def test_knn_exp_matches_brute_force(k, tau):
    xtr, ytr, xte, yte = knn_data(seed=1)
    pred = M.knn_predict(xtr, ytr, xte, k=k, temperature=tau, chunk_size=13)
    assert torch.equal(pred, brute_knn_exp(xtr, ytr, xte, k, tau, 4))
    assert M.knn_accuracy(xtr, ytr, xte, yte, k=k, temperature=tau) == pytest.approx(
        (pred == yte).double().mean().item())


def test_knn_toy_dataset_and_protocols():
    xtr = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [0.05, 1.0]])
    ytr = torch.tensor([0, 0, 1, 1, 1])
    xte = torch.tensor([[1.0, 0.05], [0.02, 1.0]])
    yte = torch.tensor([0, 1])
    for name in M.KNN_PROTOCOLS:
        assert M.knn_accuracy(xtr, ytr, xte, yte, protocol=name, k=2) == 1.0
    # k=5 majority vote is always class 1; exp-weighting at small tau still finds class 0
    assert M.knn_accuracy(xtr, ytr, xte, yte, k=5, weighting="uniform") == 0.5
    assert M.knn_accuracy(xtr, ytr, xte, yte, k=5, temperature=0.01) == 1.0
    assert M.knn_accuracy(xtr, ytr, xte, yte, k=5, protocol="solo") == 1.0
    # explicit kwargs override the protocol; protocol values override the defaults
    assert M.knn_accuracy(xtr, ytr, xte, yte, protocol="dkobak", k=5) == 0.5
    assert M.knn_accuracy(xtr, ytr, xte, yte, protocol="dkobak", k=5, weighting="exp",
                          temperature=0.01) == 1.0


def test_knn_validation():
    xtr, ytr, xte, yte = knn_data(n_train=20, n_test=5)
    with pytest.raises(ValueError, match=r"k=200 \(protocol 'instdisc' default\)"):
        M.knn_accuracy(xtr, ytr, xte, yte)  # default k=200 > 20 training points
    with pytest.raises(ValueError, match="protocol"):
        M.knn_accuracy(xtr, ytr, xte, yte, k=3, protocol="nope")
    with pytest.raises(ValueError, match="weighting"):
        M.knn_accuracy(xtr, ytr, xte, yte, k=3, weighting="softmax")
    with pytest.raises(ValueError, match="metric"):
        M.knn_accuracy(xtr, ytr, xte, yte, k=3, metric="manhattan")
    with pytest.raises(ValueError, match="D = "):
        M.knn_accuracy(xtr, ytr, xte[:, :3], yte, k=3)
    with pytest.raises(ValueError, match="NaN"):
        M.knn_accuracy(xtr, ytr, xte * math.nan, yte, k=3)
    with pytest.raises(ValueError, match="num_classes"):
        M.knn_accuracy(xtr, ytr, xte, yte, k=3, num_classes=1)


def test_knn_float32_and_num_classes():
    xtr, ytr, xte, yte = knn_data(seed=2)
    a32 = M.knn_accuracy(xtr.float(), ytr, xte.float(), yte, k=20)
    a64 = M.knn_accuracy(xtr, ytr, xte, yte, k=20, num_classes=10)
    assert isinstance(a32, torch.Tensor) and a32.dim() == 0
    assert 0.5 < float(a32) <= 1.0 and float(a32) == pytest.approx(float(a64), abs=0.02)
