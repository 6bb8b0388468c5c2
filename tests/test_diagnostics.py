"""Tests for cl_analysis.diagnostics (re-exported by metrics): closed forms on synthetic features.

Isotropic Gaussian -> RankMe ~ d; rank-k data -> ~ k; an exact and a sampled power-law spectrum ->
alpha recovered; uniform sphere -> W2 ~ 0, a k-dim great subsphere -> sqrt(2 - 2 sqrt(k/m)),
collapsed -> sqrt(2); negative similarities on the sphere -> mean 0, variance 1/d.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cl_analysis import losses, metrics


def _gauss(n: int, d: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _sphere(n: int, d: int, seed: int = 0) -> torch.Tensor:
    return F.normalize(_gauss(n, d, seed), dim=1)


def _exact_spectrum(n: int, eig: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """``(n, D)`` features whose 1/N covariance has exactly the eigenvalues ``eig``."""
    d = eig.numel()
    x = _gauss(n, d, seed)
    x = x - x.mean(0)
    q, _ = torch.linalg.qr(x)  # (n, d) orthonormal, zero-mean columns (x was centred)
    basis, _ = torch.linalg.qr(_gauss(d, d, seed + 1))  # (d, d) random rotation
    return (q * (n * eig).sqrt()) @ basis.T + 3.0  # a shifted mean must not matter


# ---- RankMe ---------------------------------------------------------------------------------


@pytest.mark.parametrize("d", [8, 32])
def test_rankme_of_isotropic_gaussian_is_d(d):
    r = metrics.rankme(_gauss(20000, d))
    assert d * 0.99 < r <= d + 1e-6


@pytest.mark.parametrize("k", [1, 3, 10])
def test_rankme_of_rank_k_data_is_k(k):
    z = _gauss(5000, k, seed=k) @ _gauss(k, 64, seed=100 + k)  # rank k in 64 dims
    r = metrics.rankme(z)
    assert abs(r - k) < 0.05 * k + 1e-3
    assert metrics.rankme(z) < metrics.rankme(_gauss(5000, 64))


def test_rankme_exact_for_orthogonal_equal_singular_values():
    z = torch.eye(6, dtype=torch.float64)[:, :5] * 2.0  # five singular values 2, one row zero
    assert metrics.rankme(z, eps=0.0) == pytest.approx(5.0, rel=1e-12)
    assert metrics.rankme(torch.zeros(4, 3)) == 0.0


# ---- spectrum and alpha-ReQ -----------------------------------------------------------------


def test_singular_spectrum_closed_forms():
    eig = torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=torch.float64)
    z = _exact_spectrum(200, eig)
    torch.testing.assert_close(metrics.singular_spectrum(z, normalize=False), eig)
    spec = metrics.singular_spectrum(z)  # normalised rows: sums to 1 - ||mean||^2
    u = F.normalize(z, dim=1)
    assert spec.sum().item() == pytest.approx(1 - u.mean(0).square().sum().item(), rel=1e-10)
    assert (spec[:-1] >= spec[1:]).all() and (spec >= 0).all()
    low_rank = _gauss(300, 2, seed=4) @ _gauss(2, 16, seed=5)  # collapsed to 2 of 16 dims
    tail = metrics.singular_spectrum(low_rank)[2:]
    assert tail.max() < 1e-12 and metrics.singular_spectrum(_gauss(50, 80)).shape == (80,)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_alpha_req_recovers_exact_power_law(alpha):
    k = torch.arange(1, 65, dtype=torch.float64)
    fit = metrics.alpha_req(_exact_spectrum(500, 2.0 * k ** -alpha, seed=2))
    assert fit.alpha == pytest.approx(alpha, abs=1e-8)
    assert fit.r2 == pytest.approx(1.0, abs=1e-10) and fit.fit_range == (1, 64)


def test_alpha_req_on_sampled_power_law_and_range():
    k = torch.arange(1, 49, dtype=torch.float64)
    z = _gauss(40000, 48, seed=6) * k ** -0.75  # population eigenvalues k^-1.5
    fit = metrics.alpha_req(z, fit_range=(2, 40))
    assert fit.alpha == pytest.approx(1.5, abs=0.05) and fit.r2 > 0.99
    assert fit.fit_range == (2, 40)
    assert metrics.alpha_req(z, fit_range=(5, 100)).fit_range == (5, 48)  # clipped to D
    bent = torch.cat([torch.ones(8), torch.full((8,), 1e-3)]).double()  # a step, not a power law
    assert metrics.alpha_req(_exact_spectrum(100, bent)).r2 < 0.9


# ---- Wasserstein uniformity -----------------------------------------------------------------


def test_wasserstein_uniformity_of_uniform_sphere_tends_to_zero():
    """The Gaussian fit's sampling error shrinks like sqrt(m / N): W2 -> 0 at that rate."""
    small, large = (metrics.wasserstein_uniformity(_sphere(n, 16, seed=n)) for n in (2500, 40000))
    assert large < 0.02 and 2.5 < small / large < 6.5  # sqrt(40000 / 2500) = 4


def test_wasserstein_uniformity_of_collapsed_is_its_maximum():
    z = _gauss(1, 16).repeat(100, 1) * torch.rand(100, 1, dtype=torch.float64).add(0.5)
    assert metrics.wasserstein_uniformity(z) == pytest.approx(math.sqrt(2), abs=1e-7)
    assert metrics.wasserstein_uniformity(z) >= metrics.wasserstein_uniformity(_sphere(500, 16))


@pytest.mark.parametrize("k", [2, 4, 8])
def test_wasserstein_uniformity_of_subsphere(k):
    """Uniform on the great sphere of a k-dim subspace of R^16: W2 = sqrt(2 - 2 sqrt(k/16))."""
    z = torch.cat([_sphere(40000, k, seed=k), torch.zeros(40000, 16 - k, dtype=torch.float64)], 1)
    expected = math.sqrt(2 - 2 * math.sqrt(k / 16))
    assert metrics.wasserstein_uniformity(z) == pytest.approx(expected, abs=0.01)


# ---- negative similarities and collapse signals ---------------------------------------------


def test_negative_similarity_stats_on_sphere():
    z1, z2 = _sphere(2000, 32, seed=1), _sphere(2000, 32, seed=2)
    s, p = losses.simclr_similarity(z1, z2)
    stats = metrics.negative_similarity_stats(s, p)
    assert abs(stats["mean"]) < 0.002
    assert stats["var"] == pytest.approx(1 / 32, rel=0.02)
    assert stats["anchor_var"] == pytest.approx(1 / 32, rel=0.02)
    sim = torch.tensor([[0.9, 0.1, 0.3], [0.2, 1.0, -0.2]], dtype=torch.float64)
    exact = metrics.negative_similarity_stats(sim, torch.tensor([0, 1]))
    assert exact == pytest.approx({"mean": 0.1, "var": 0.035, "anchor_var": 0.025})


def test_feature_std_sphere_and_collapse():
    assert metrics.feature_std(_sphere(40000, 16) * 7.0) == pytest.approx(0.25, rel=0.01)
    assert metrics.feature_std(_gauss(1, 16).repeat(10, 1)) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("n", [2, 8, 64])
def test_collapse_loss_is_nt_xent_of_identical_features(n):
    z = _gauss(1, 8).repeat(n, 1)
    for tau in (0.07, 0.5):
        assert losses.nt_xent(z, z, tau).item() == pytest.approx(metrics.collapse_loss(n),
                                                                rel=1e-12)
    assert metrics.collapse_loss(n) == pytest.approx(math.log(2 * n - 1))


# ---- validation -----------------------------------------------------------------------------


FEATURE_FUNCTIONS = [metrics.rankme, metrics.singular_spectrum, metrics.alpha_req,
                     metrics.wasserstein_uniformity, metrics.feature_std]


@pytest.mark.parametrize("fn", FEATURE_FUNCTIONS)
@pytest.mark.parametrize("bad, match", [
    (torch.zeros(5), "2-D"),
    (torch.zeros(2, 3, 4), "2-D"),
    (torch.zeros(5, 3, dtype=torch.long), "floating"),
    (torch.ones(1, 3), "N >= 2"),
    (torch.tensor([[1.0, 2.0], [math.nan, 0.0], [0.0, 1.0]]), "NaN/inf"),
    ([[1.0, 0.0], [0.0, 1.0]], "torch.Tensor"),
])
def test_bad_features_raise(fn, bad, match):
    with pytest.raises(ValueError, match=match):
        fn(bad)


@pytest.mark.parametrize("call, match", [
    (lambda z: metrics.wasserstein_uniformity(torch.cat([z, torch.zeros(1, 4)])), "all-zero"),
    (lambda z: metrics.alpha_req(z, fit_range=(3, 2)), "k_min < k_max"),
    (lambda z: metrics.alpha_req(z, fit_range=(0, 4)), "k_min < k_max"),
    (lambda z: metrics.alpha_req(z, fit_range=(1.5, 4)), "two ints"),
    (lambda z: metrics.alpha_req(z[:, :2]), ">= 3 non-null"),
    (lambda z: metrics.collapse_loss(1), "batch_size"),
    (lambda z: metrics.collapse_loss(2.5), "batch_size"),
    (lambda z: metrics.negative_similarity_stats(z, torch.zeros(3, dtype=torch.long)), "shape"),
])
def test_bad_arguments_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call(_gauss(10, 4, seed=9).float())
