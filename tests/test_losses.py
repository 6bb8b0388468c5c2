"""Tests for cl_analysis.losses: the paper's loss family (Eq. 1, 3, 6, 7, 9) and NT-Xent.

Oracle: the float64 loops of tests/reference.py, plus torch.autograd.gradcheck in float64.
"""

from __future__ import annotations

import math

import pytest
import reference as ref
import torch
import torch.nn.functional as F

from cl_analysis import losses

TAUS = [0.01, 0.1, 1.0, 10.0, 100.0]


def _sim(n: int, m: int, seed: int = 0, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine-range similarities ``(n, m)`` and random positive columns ``(n,)``."""
    g = torch.Generator().manual_seed(seed)
    s = torch.rand(n, m, generator=g, dtype=torch.float64) * 2 - 1
    return s.to(dtype), torch.randint(0, m, (n,), generator=g)


def _views(n: int, d: int = 8, seed: int = 0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(n, d, generator=g, dtype=dtype) for _ in range(2))


def _close(actual: torch.Tensor, expected, rtol: float = 1e-9, atol: float = 1e-9) -> None:
    expected = torch.as_tensor(expected, dtype=torch.float64)
    torch.testing.assert_close(actual.double(), expected, rtol=rtol, atol=atol)


# ---- against the loop references ------------------------------------------------------------


@pytest.mark.parametrize("n, m", [(1, 2), (4, 7), (6, 16)])
@pytest.mark.parametrize("tau", TAUS)
def test_temperature_losses_match_reference(n, m, tau):
    s, p = _sim(n, m, seed=n * m)
    _close(losses.info_nce(s, p, tau, reduction="none"), ref.info_nce(s, p, tau))
    for k in sorted({1, m - 1, max(1, m // 2)}):
        _close(losses.hard_info_nce(s, p, tau, k=k, reduction="none"),
               ref.hard_info_nce(s, p, tau, k))


@pytest.mark.parametrize("n, m", [(1, 2), (4, 7), (6, 16)])
def test_tau_free_losses_match_reference(n, m):
    s, p = _sim(n, m, seed=n + m)
    _close(losses.simple(s, p, reduction="none"), ref.simple(s, p))
    _close(losses.simple(s, p, lam=1 / n, reduction="none"), ref.simple(s, p, lam=1 / n))
    _close(losses.tau_zero_limit(s, p, reduction="none"), ref.tau_zero_limit(s, p))
    for k in sorted({1, m - 1, max(1, m // 2)}):
        _close(losses.hard_simple(s, p, k=k, reduction="none"), ref.hard_simple(s, p, k))
        _close(losses.hard_simple(s, p, k=k, lam=0.5, reduction="none"),
               ref.hard_simple(s, p, k, lam=0.5))


@pytest.mark.parametrize("reduction, fold", [("mean", ref.mean), ("sum", sum)])
def test_reductions(reduction, fold):
    s, p = _sim(5, 9)
    _close(losses.info_nce(s, p, 0.2, reduction=reduction), fold(ref.info_nce(s, p, 0.2)))
    _close(losses.simple(s, p, reduction=reduction), fold(ref.simple(s, p)))
    _close(losses.hard_info_nce(s, p, 0.2, k=3, reduction=reduction),
           fold(ref.hard_info_nce(s, p, 0.2, 3)))
    _close(losses.tau_zero_limit(s, p, reduction=reduction), fold(ref.tau_zero_limit(s, p)))


def test_alpha_selects_upper_fraction_of_negatives():
    s, p = _sim(4, 31)  # 30 negatives
    for alpha, k in [(0.1, 3), (0.0819, 3), (0.5, 15), (1e-6, 1), (1.0, 30)]:
        _close(losses.hard_info_nce(s, p, 0.3, alpha=alpha), losses.hard_info_nce(s, p, 0.3, k=k))
        _close(losses.hard_simple(s, p, alpha=alpha), ref.mean(ref.hard_simple(s, p, k)))


def test_hard_defaults_to_all_negatives():
    s, p = _sim(5, 8)
    _close(losses.hard_info_nce(s, p, 0.5), losses.info_nce(s, p, 0.5))
    _close(losses.hard_info_nce(s, p, 0.5, k=7), losses.info_nce(s, p, 0.5))
    _close(losses.hard_simple(s, p), losses.simple(s, p))


def test_hard_gradient_flows_only_through_selected_entries():
    s, p = _sim(3, 10)
    s.requires_grad_(True)
    losses.hard_info_nce(s, p, 0.2, k=2, reduction="sum").backward()
    negatives = s.detach().scatter(1, p[:, None], -math.inf)
    top2 = negatives.topk(2, dim=1).indices
    expected = torch.zeros_like(s, dtype=torch.bool).scatter(1, top2, True)
    expected.scatter_(1, p[:, None], True)
    assert torch.equal(s.grad != 0, expected)


def test_cosine_similarity_matches_reference():
    a, b = _views(5, 6)[0], _views(7, 6, seed=1)[0]
    _close(losses.cosine_similarity(a, b), ref.cosine_similarity(a, b))


def test_simclr_similarity_layout():
    z1, z2 = _views(4)
    s, p = losses.simclr_similarity(z1, z2)
    assert s.shape == (8, 7) and p.tolist() == [3, 4, 5, 6, 0, 1, 2, 3]
    full = ref.cosine_similarity(torch.cat([z1, z2]), torch.cat([z1, z2]))
    expected = [[v for j, v in enumerate(row) if j != i] for i, row in enumerate(full)]
    _close(s, expected)
    _close(s[torch.arange(8), p], (F.normalize(z1) * F.normalize(z2)).sum(1).repeat(2))


@pytest.mark.parametrize("n", [2, 3, 8])
@pytest.mark.parametrize("tau", TAUS)
def test_nt_xent_matches_reference_and_info_nce(n, tau):
    z1, z2 = _views(n, seed=n)
    expected = ref.nt_xent(z1, z2, tau)
    _close(losses.nt_xent(z1, z2, tau, reduction="none"), expected)
    _close(losses.nt_xent(z1, z2, tau), ref.mean(expected))
    _close(losses.nt_xent(z1, z2, tau, reduction="sum"), sum(expected))
    _close(losses.info_nce(*losses.simclr_similarity(z1, z2), tau, reduction="none"), expected)


# ---- autograd -------------------------------------------------------------------------------


@pytest.mark.parametrize("name, kwargs", [
    ("info_nce", {"temperature": 0.3}),
    ("simple", {}),
    ("hard_info_nce", {"temperature": 0.3, "k": 3}),
    ("hard_simple", {"alpha": 0.5}),
    ("tau_zero_limit", {}),
])
def test_gradcheck_similarity_losses(name, kwargs):
    s, p = _sim(4, 7, seed=3)
    fn = getattr(losses, name)
    assert torch.autograd.gradcheck(lambda x: fn(x, p, reduction="none", **kwargs),
                                    (s.requires_grad_(),))


def test_gradcheck_embedding_functions():
    z1, z2 = (z.requires_grad_() for z in _views(3, 4))
    assert torch.autograd.gradcheck(lambda a, b: losses.nt_xent(a, b, 0.5, reduction="none"),
                                    (z1, z2))
    assert torch.autograd.gradgradcheck(lambda a, b: losses.nt_xent(a, b, 0.5), (z1, z2))
    assert torch.autograd.gradcheck(lambda a, b: losses.simclr_similarity(a, b)[0], (z1, z2))
    assert torch.autograd.gradcheck(losses.cosine_similarity, (z1, z2))


# ---- closed forms and invariances -----------------------------------------------------------


@pytest.mark.parametrize("m", [2, 5, 64])
def test_collapsed_similarities_give_log_m(m):
    s, p = torch.full((3, m), 0.7), torch.zeros(3, dtype=torch.long)
    assert losses.info_nce(s, p, 0.1).item() == pytest.approx(math.log(m), rel=1e-6)


@pytest.mark.parametrize("n", [2, 8])
def test_nt_xent_of_collinear_vectors_is_log_2n_minus_1(n):
    z = torch.ones(n, 4) * torch.arange(1, n + 1)[:, None]  # same direction, different lengths
    assert losses.nt_xent(z, 3 * z, 0.5).item() == pytest.approx(math.log(2 * n - 1), rel=1e-6)


def test_nt_xent_symmetric_and_scale_invariant():
    z1, z2 = _views(6)
    a = losses.nt_xent(z1, z2, 0.2)
    _close(losses.nt_xent(z2, z1, 0.2), a, rtol=1e-12)
    _close(losses.nt_xent(3 * z1, 0.01 * z2, 0.2), a, rtol=1e-12)
    per_anchor = losses.nt_xent(z1, z2, 0.2, reduction="none")
    _close(losses.nt_xent(z2, z1, 0.2, reduction="none"), per_anchor.roll(6), rtol=1e-12)


# ---- the limits of Eq. 6 and Eq. 7 ----------------------------------------------------------


def test_tau_to_zero_limit_eq6():
    s, p = _sim(6, 12, seed=5)
    limit = losses.tau_zero_limit(s, p, reduction="none")
    gaps = []
    for tau in [1.0, 0.3, 0.1, 0.03, 0.01, 3e-3, 1e-3, 1e-4]:
        gap = tau * losses.info_nce(s, p, tau, reduction="none") - limit  # (N,)
        assert (gap >= -1e-12).all() and (gap <= tau * math.log(12) + 1e-12).all()  # exact bound
        gaps.append(gap.max().item())
    assert all(b <= a + 1e-12 for a, b in zip(gaps, gaps[1:]))  # shrinks monotonically
    assert gaps[-1] < 1e-6


def test_tau_to_infinity_limit_eq7():
    m = 12
    s, p = _sim(6, m, seed=6)
    target = (m - 1) / m * losses.simple(s, p, reduction="none")  # lam = 1/(M-1)
    half_var = s.var(1, unbiased=False) / 2  # second-order Taylor term: gap ~ Var(s) / (2 tau)
    gaps = []
    for tau in [1.0, 10.0, 100.0, 1e3, 1e4]:
        gap = tau * (losses.info_nce(s, p, tau, reduction="none") - math.log(m)) - target
        gaps.append(gap.abs().max().item())
        if tau >= 100:
            torch.testing.assert_close(tau * gap, half_var, rtol=2e-2, atol=1e-6)  # O(1/tau)
    assert all(b < a for a, b in zip(gaps, gaps[1:]))
    assert gaps[-1] < 1e-4


# ---- dtype and temperature robustness -------------------------------------------------------


@pytest.mark.parametrize("tau", TAUS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_low_precision_inputs_upcast(tau, dtype):
    s64, p = _sim(8, 33, seed=7)
    s = s64.to(dtype)
    exact = s.double()  # the reference sees the same rounded inputs
    rtol, atol = 1e-5, 1e-5
    for out, expected in [
        (losses.info_nce(s, p, tau, reduction="none"), ref.info_nce(exact, p, tau)),
        (losses.hard_info_nce(s, p, tau, k=4, reduction="none"),
         ref.hard_info_nce(exact, p, tau, 4)),
        (losses.simple(s, p, reduction="none"), ref.simple(exact, p)),
        (losses.tau_zero_limit(s, p, reduction="none"), ref.tau_zero_limit(exact, p)),
    ]:
        assert out.dtype == torch.float32 and torch.isfinite(out).all()
        _close(out, expected, rtol=rtol, atol=atol)


@pytest.mark.parametrize("tau", TAUS)
def test_bf16_autocast_keeps_float32_math(tau):
    z1, z2 = _views(6, 16, seed=8, dtype=torch.float32)
    expected = ref.nt_xent(z1, z2, tau)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = losses.nt_xent(z1, z2, tau, reduction="none")
        s, p = losses.simclr_similarity(z1, z2)
        via_sim = losses.info_nce(s, p, tau, reduction="none")
        from_bf16 = losses.nt_xent(z1.bfloat16(), z2.bfloat16(), tau)  # bf16 model outputs
    assert out.dtype == via_sim.dtype == from_bf16.dtype == torch.float32
    _close(out, expected, rtol=1e-5, atol=1e-5)
    _close(via_sim, expected, rtol=1e-5, atol=1e-5)
    expected_bf16 = ref.mean(ref.nt_xent(z1.bfloat16(), z2.bfloat16(), tau))
    _close(from_bf16, expected_bf16, rtol=1e-5, atol=1e-5)


def test_float64_in_float64_out_and_huge_logits_stay_finite():
    s, p = _sim(3, 5)
    assert losses.info_nce(s, p, 0.5).dtype == torch.float64
    big = torch.tensor([[1e3, -1e3, 5e2]], dtype=torch.float32)  # s/tau up to 1e5: exp overflows
    pos = torch.tensor([1])
    out = losses.info_nce(big, pos, 0.01, unnormalized=True)
    assert torch.isfinite(out) and out.item() == pytest.approx(2e3 / 0.01, rel=1e-6)
    assert torch.isfinite(losses.hard_info_nce(big, pos, 0.01, k=1, unnormalized=True))


# ---- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize("call, match", [
    (lambda s, p: losses.info_nce(s, p, 0.0), "temperature"),
    (lambda s, p: losses.info_nce(s, p, -1.0), "temperature"),
    (lambda s, p: losses.info_nce(s, p, math.inf), "temperature"),
    (lambda s, p: losses.info_nce(s, p, math.nan), "temperature"),
    (lambda s, p: losses.info_nce(s[0], p, 0.1), "2-D"),
    (lambda s, p: losses.info_nce(s, p[:2], 0.1), "positive: expected shape"),
    (lambda s, p: losses.info_nce(s, p + 10, 0.1), "positive: expected column indices"),
    (lambda s, p: losses.info_nce(s, p - 10, 0.1), "positive: expected column indices"),
    (lambda s, p: losses.info_nce(s, p.float(), 0.1), "integer"),
    (lambda s, p: losses.info_nce(s[:, :1], p * 0, 0.1), "at least 2 columns"),
    (lambda s, p: losses.info_nce(s.index_fill(1, p[:1], math.nan), p, 0.1), "NaN/inf"),
    (lambda s, p: losses.simple(s.index_fill(1, p[:1], math.inf), p), "NaN/inf"),
    (lambda s, p: losses.info_nce(s, p, 0.1, reduction="avg"), "reduction: expected one of"),
    (lambda s, p: losses.simple(s, p, reduction="max"), "reduction: expected one of"),
    (lambda s, p: losses.simple(s, p, lam=-1.0), "lam"),
    (lambda s, p: losses.hard_info_nce(s, p, 0.1, k=6), "k: expected an integer in"),
    (lambda s, p: losses.hard_info_nce(s, p, 0.1, k=0), "k: expected an integer in"),
    (lambda s, p: losses.hard_info_nce(s, p, 0.1, k=2.5), "integer"),
    (lambda s, p: losses.hard_info_nce(s, p, 0.1, k=2, alpha=0.5), "got both"),
    (lambda s, p: losses.hard_info_nce(s, p, 0.1, alpha=0.0), "alpha"),
    (lambda s, p: losses.hard_info_nce(s, p, 0.1, alpha=1.5), "alpha"),
    (lambda s, p: losses.hard_simple(s, p, k=9), "k: expected an integer in"),
    (lambda s, p: losses.hard_simple(s, p, alpha=math.nan), "alpha"),
    (lambda s, p: losses.tau_zero_limit(s, p, reduction=""), "reduction: expected one of"),
])
def test_bad_similarity_input_raises(call, match):
    s, p = _sim(3, 6)
    with pytest.raises(ValueError, match=match):
        call(s, p)


@pytest.mark.parametrize("call, match", [
    (lambda a, b: losses.nt_xent(a, b[:3], 0.1), "same shape"),
    (lambda a, b: losses.simclr_similarity(a[:1], b[:1]), "N >= 2"),
    (lambda a, b: losses.nt_xent(a, b, 0.0), "temperature"),
    (lambda a, b: losses.nt_xent(a, b, 0.1, reduction="mean "), "reduction: expected one of"),
    (lambda a, b: losses.nt_xent(a[0], b[0], 0.1), "2-D"),
    (lambda a, b: losses.nt_xent(a.long(), b.long(), 0.1), "floating"),
    (lambda a, b: losses.nt_xent(a * math.nan, b, 0.1), "NaN/inf"),
    (lambda a, b: losses.simclr_similarity(a, b[:, :2]), "same shape"),
    (lambda a, b: losses.cosine_similarity(a, b[:, :2]), "same dim"),
    (lambda a, b: losses.cosine_similarity(a, b / 0), "NaN/inf"),
])
def test_bad_embedding_input_raises(call, match):
    z1, z2 = _views(4)
    with pytest.raises(ValueError, match=match):
        call(z1, z2)


# ---- cross-checks against peer libraries ----------------------------------------------------


@pytest.mark.parametrize("tau", [0.07, 0.5])
def test_nt_xent_equals_lightly(tau):
    lightly_loss = pytest.importorskip("lightly.loss")
    z1, z2 = _views(16, 32, seed=9, dtype=torch.float32)
    expected = lightly_loss.NTXentLoss(temperature=tau)(z1, z2)
    torch.testing.assert_close(losses.nt_xent(z1, z2, tau), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("tau", [0.07, 0.5])
def test_nt_xent_equals_pytorch_metric_learning(tau):
    """PML's NTXentLoss takes one batch plus labels: a positive pair is any two same-label rows and
    its denominator holds only the *different-label* rows besides the positive. With SimCLR labels
    (two views per label) that is exactly NT-Xent; with more views per label other positives drop
    out of the denominator, unlike ``supcon``. PML also adds a tiny eps inside the log."""
    pml = pytest.importorskip("pytorch_metric_learning.losses")
    z1, z2 = _views(16, 32, seed=10, dtype=torch.float32)
    labels = torch.arange(16).repeat(2)
    expected = pml.NTXentLoss(temperature=tau)(torch.cat([z1, z2]), labels)
    torch.testing.assert_close(losses.nt_xent(z1, z2, tau), expected, rtol=1e-5, atol=1e-6)
