"""Tests for cl_analysis.gradients: Eq. 4, 5, 8 and the entropy of the relative penalty.

Oracle: autograd through a tiny float64 Eq. 1 written here (independent of losses.py).
"""

from __future__ import annotations

import math

import pytest
import torch

from cl_analysis import gradients as G


def eq1_per_anchor(similarity, positive, temperature):
    """Paper Eq. 1 per anchor, literally: -log(exp(s_ip/tau) / sum_k exp(s_ik/tau))."""
    e = torch.exp(similarity / temperature)                       # (N, M)
    pos = e.gather(1, positive.view(-1, 1)).squeeze(1)            # (N,)
    return -torch.log(pos / e.sum(dim=1))                         # (N,)


def random_problem(n=6, m=9, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    s = torch.rand(n, m, generator=g, dtype=dtype) * 2 - 1        # cosine-like in [-1, 1]
    p = torch.randint(0, m, (n,), generator=g)
    return s, p


def neg_mask(s, p):
    mask = torch.ones_like(s, dtype=torch.bool)
    mask[torch.arange(s.shape[0]), p] = False
    return mask


@pytest.mark.parametrize("tau", [0.05, 0.2, 1.0, 5.0])
def test_similarity_gradient_matches_autograd(tau):
    s, p = random_problem()
    s_req = s.clone().requires_grad_()
    (g_auto,) = torch.autograd.grad(eq1_per_anchor(s_req, p, tau).sum(), s_req)
    torch.testing.assert_close(G.similarity_gradient(s, p, tau), g_auto, rtol=1e-10, atol=1e-12)


def test_similarity_gradient_matches_losses_module_if_present():
    losses = pytest.importorskip("cl_analysis.losses")
    if not hasattr(losses, "info_nce"):
        pytest.skip("losses.info_nce not written yet")
    s, p = random_problem(seed=3)
    s_req = s.clone().requires_grad_()
    loss = losses.info_nce(s_req, p, temperature=0.3, reduction="sum")
    (g_auto,) = torch.autograd.grad(loss, s_req)
    torch.testing.assert_close(G.similarity_gradient(s, p, 0.3), g_auto)


@pytest.mark.parametrize("tau", [0.01, 0.1, 1.0])
def test_negative_push_balances_positive_pull(tau):
    s, p = random_problem(n=8, m=33, seed=1)
    g = G.similarity_gradient(s, p, tau)
    mask = neg_mask(s, p)
    push = (g.abs() * mask).sum(dim=1)                            # sum_{j != p} |dL/ds_ij|
    pull = g.gather(1, p.view(-1, 1)).squeeze(1).abs()            # |dL/ds_ip|
    torch.testing.assert_close(push, pull, rtol=1e-12, atol=0)
    assert (g[mask] > 0).all() and (g[~mask] <= 0).all()


def test_positive_gradient_precise_when_loss_is_tiny():
    s = torch.tensor([[1.0, -1.0, -1.0]], dtype=torch.float64)   # P_ip ~ 1 - 2e-87 at tau=0.01
    g = G.similarity_gradient(s, torch.tensor([0]), 0.01)
    assert g[0, 0] < 0 and g[0, 0] == pytest.approx(-g[0, 1:].sum().item(), rel=1e-12)


def test_gradient_ratio_is_softmax_over_negatives():
    s, p = random_problem(n=5, m=12, seed=2)
    tau = 0.2
    r = G.gradient_ratio(s, p, tau)
    mask = neg_mask(s, p)
    torch.testing.assert_close(r.sum(dim=1), torch.ones(5, dtype=torch.float64))
    assert (r[~mask] == 0).all()
    g = G.similarity_gradient(s, p, tau)
    pull = g.gather(1, p.view(-1, 1)).abs()                       # (N, 1)
    torch.testing.assert_close(r[mask], (g.abs() / pull)[mask])  # Eq. 5 as a ratio of Eq. 4
    e = torch.exp(s / tau) * mask
    torch.testing.assert_close(r, e / e.sum(dim=1, keepdim=True))


def test_gradient_ratio_stable_at_tiny_tau_and_float32():
    s, p = random_problem(dtype=torch.float32)
    r = G.gradient_ratio(s, p, 1e-4)
    assert r.dtype == torch.float32 and torch.isfinite(r).all()
    torch.testing.assert_close(r.sum(dim=1), torch.ones(s.shape[0]))
    assert G.similarity_gradient(s.half(), p, 0.1).dtype == torch.float32


@pytest.mark.parametrize("k", [1, 3, 8])
def test_truncated_ratio_keeps_top_k_and_renormalises(k):
    s, p = random_problem(n=7, m=9, seed=4)
    tau = 0.5
    r = G.truncated_gradient_ratio(s, p, tau, k=k)
    mask = neg_mask(s, p)
    top = s.masked_fill(~mask, -math.inf).topk(k, dim=1).indices  # (N, k) hardest negatives
    keep = torch.zeros_like(mask).scatter_(1, top, True)
    assert (r[~keep] == 0).all() and (r[keep] > 0).all()
    torch.testing.assert_close(r.sum(dim=1), torch.ones(7, dtype=torch.float64))
    e = torch.exp(s / tau) * keep
    torch.testing.assert_close(r, e / e.sum(dim=1, keepdim=True))
    if k == 8:  # keeping every negative gives back Eq. 5
        torch.testing.assert_close(r, G.gradient_ratio(s, p, tau))


def test_truncated_ratio_alpha_is_upper_quantile():
    s, p = random_problem(n=4, m=101, seed=5)
    by_alpha = G.truncated_gradient_ratio(s, p, 0.3, alpha=0.1)   # ceil(0.1 * 100) = 10
    torch.testing.assert_close(by_alpha, G.truncated_gradient_ratio(s, p, 0.3, k=10))
    assert ((by_alpha > 0).sum(dim=1) == 10).all()


BAD_K_ALPHA = [{}, {"k": 2, "alpha": 0.1}, {"k": 0}, {"k": 9}, {"k": 2.0}, {"alpha": 0.0},
               {"alpha": 1.5}]


@pytest.mark.parametrize("kwargs", BAD_K_ALPHA)
def test_truncated_ratio_rejects_bad_k_alpha(kwargs):
    s, p = random_problem(m=9)
    with pytest.raises(ValueError):
        G.truncated_gradient_ratio(s, p, 0.5, **kwargs)


def test_entropy_increases_strictly_with_tau():
    s, p = random_problem(n=16, m=50, seed=6)
    taus = torch.logspace(-1.3, 1.0, 25).tolist()                 # 0.05 .. 10
    h = torch.stack([G.penalty_entropy(s, p, t) for t in taus])   # (T, N)
    assert (h[1:] > h[:-1]).all()


def test_entropy_limits():
    n, m = 5, 40
    g = torch.Generator().manual_seed(7)
    # distinct similarities: a permuted grid with gaps of 0.05
    grid = torch.linspace(-0.95, 0.95, m, dtype=torch.float64)
    s = torch.stack([grid[torch.randperm(m, generator=g)] for _ in range(n)])
    p = torch.randint(0, m, (n,), generator=g)
    h_inf = G.penalty_entropy(s, p, 1e6)
    torch.testing.assert_close(h_inf, torch.full((n,), math.log(m - 1), dtype=torch.float64),
                               rtol=0, atol=1e-9)
    assert (G.penalty_entropy(s, p, 1e-3) < 1e-12).all()
    n_eff = G.effective_negatives(s, p, 1e-3)
    torch.testing.assert_close(n_eff, torch.ones(n, dtype=torch.float64))


@pytest.mark.parametrize("tau", [0.07, 0.3, 1.0])
def test_entropy_derivative_is_penalty_variance_over_tau_cubed(tau):
    s, p = random_problem(n=6, m=30, seed=8)
    h = 1e-6 * tau
    fd = (G.penalty_entropy(s, p, tau + h) - G.penalty_entropy(s, p, tau - h)) / (2 * h)
    r = G.gradient_ratio(s, p, tau)
    mean = (r * s).sum(dim=1, keepdim=True)
    var = (r * (s - mean) ** 2).sum(dim=1)                        # Var_r(s) over negatives
    torch.testing.assert_close(fd, var / tau**3, rtol=1e-6, atol=1e-9)


def test_entropy_matches_definition():
    s, p = random_problem(n=4, m=10, seed=9)
    r = G.gradient_ratio(s, p, 0.4)[neg_mask(s, p)].view(4, 9)
    torch.testing.assert_close(G.penalty_entropy(s, p, 0.4), -(r * r.log()).sum(dim=1))


def test_effective_negatives_of_equal_similarities():
    s = torch.full((3, 17), 0.3)
    n_eff = G.effective_negatives(s, torch.tensor([0, 5, 16]), 0.1)
    torch.testing.assert_close(n_eff, torch.full((3,), 16.0))
    r = G.truncated_gradient_ratio(s, torch.tensor([0, 5, 16]), 0.1, k=3)  # ties all kept
    torch.testing.assert_close(r.sum(dim=1), torch.ones(3))


@pytest.mark.parametrize(
    "fn", [G.similarity_gradient, G.gradient_ratio, G.penalty_entropy, G.effective_negatives]
)
def test_bad_input_raises(fn):
    s, p = random_problem()
    with pytest.raises(ValueError, match="temperature"):
        fn(s, p, 0.0)
    with pytest.raises(ValueError, match="positive"):
        fn(s, p[:-1], 0.1)
    with pytest.raises(ValueError, match="NaN"):
        fn(s.clone().fill_(math.nan), p, 0.1)
    with pytest.raises(ValueError, match="2-D"):
        fn(s[0], p, 0.1)
