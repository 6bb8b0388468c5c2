"""Tests for cl_analysis.weighting: the per-anchor weights and the re-weighted InfoNCE losses.

Oracles: the identity "gradient of the method = InfoNCE gradient x w_i" against autograd in
float64; loop references in plain Python floats written from the papers' formulas (below, no
import from the package); lightly's ``DCLLoss`` and ``MACLLoss``.
"""

from __future__ import annotations

import math

import pytest
import torch

from cl_analysis import gradients, losses, weighting

TAUS = [0.01, 0.1, 1.0, 10.0, 100.0]
LOSSES = {
    "decoupled": losses.decoupled_info_nce,
    "flat_nce": losses.flat_nce,
    "macl": losses.macl,
    "dual_temperature": losses.dual_temperature_info_nce,
}


def _sim(n: int, m: int, seed: int = 0, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine-range similarities ``(n, m)`` and random positive columns ``(n,)``."""
    g = torch.Generator().manual_seed(seed)
    s = torch.rand(n, m, generator=g, dtype=torch.float64) * 2 - 1
    return s.to(dtype), torch.randint(0, m, (n,), generator=g)


# ---- loop references (Python floats) --------------------------------------------------------


def _lse(xs: list[float]) -> float:
    top = max(xs)
    return top + math.log(math.fsum(math.exp(x - top) for x in xs))


def _row_terms(row: list[float], p: int, tau: float) -> tuple[float, float, float]:
    """(positive logit, log sum over all, log sum over negatives) of one anchor at tau."""
    logits = [x / tau for x in row]
    return logits[p], _lse(logits), _lse([v for j, v in enumerate(logits) if j != p])


def _ref_macl_tau(sim, pos, tau: float, alpha: float, a0: float) -> float:
    rows, ps = sim.tolist(), pos.tolist()
    align = math.fsum(r[p] for r, p in zip(rows, ps)) / len(rows)
    return tau * (1 + alpha * (align - a0))


def ref_weights(sim, pos, tau: float, method: str, m: float = 10.0, alpha=0.5, a0=0.0):
    """w_i from P_ip: 1, 1/(1-P), 1/(1-P) at tau_A, (1-P(m tau))/(1-P(tau))."""
    if method == "macl":
        tau = _ref_macl_tau(sim, pos, tau, alpha, a0)
    out = []
    for row, p in zip(sim.tolist(), pos.tolist()):
        _, lse_all, lse_neg = _row_terms(row, p, tau)
        one_minus_p = math.exp(lse_neg - lse_all)
        if method == "info_nce":
            out.append(1.0)
        elif method == "dual_temperature":
            _, lse_all_m, lse_neg_m = _row_terms(row, p, m * tau)
            out.append(math.exp(lse_neg_m - lse_all_m) / one_minus_p)
        else:
            out.append(1 / one_minus_p)
    return out


def ref_loss(sim, pos, tau: float, method: str, m: float = 10.0, alpha=0.5, a0=0.0):
    """Per-anchor values: DCL = -s_p/tau + lse_neg; FlatNCE reports CE; MACL/DT are w * CE."""
    weights = ref_weights(sim, pos, tau, method, m, alpha, a0)
    if method == "macl":
        tau = _ref_macl_tau(sim, pos, tau, alpha, a0)
    out = []
    for row, p, w in zip(sim.tolist(), pos.tolist(), weights):
        l_pos, lse_all, lse_neg = _row_terms(row, p, tau)
        if method == "decoupled":
            out.append(lse_neg - l_pos)
        elif method == "flat_nce":
            out.append(lse_all - l_pos)
        else:
            x = lse_neg - l_pos  # CE = log(1 + e^x); the product w * CE in logs (w can be huge)
            log_ce = x if x < -30 else math.log(math.log1p(math.exp(x)))
            out.append(math.exp(math.log(w) + log_ce))
    return torch.tensor(out, dtype=torch.float64)


def _ce(s: torch.Tensor, pos: torch.Tensor, tau) -> torch.Tensor:
    """Per-anchor InfoNCE (Eq. 1) with a float or tensor tau, for the identity oracle."""
    logits = s / tau
    return torch.logsumexp(logits, 1) - logits.gather(1, pos[:, None]).squeeze(1)


# ---- the identity: gradient = InfoNCE gradient x w_i ----------------------------------------


@pytest.mark.parametrize("method", list(LOSSES))
@pytest.mark.parametrize("tau", [0.05, 0.3, 1.0, 10.0])
def test_gradient_is_info_nce_gradient_times_anchor_weight(method, tau):
    """Autograd in float64 on the similarities and on a learnable tau."""
    s0, p = _sim(6, 9, seed=int(tau * 100))
    s = s0.clone().requires_grad_(True)
    t = torch.tensor(tau, dtype=torch.float64, requires_grad=True)
    g_s, g_t = torch.autograd.grad(LOSSES[method](s, p, t, reduction="sum"), (s, t))

    s_ref = s0.clone().requires_grad_(True)
    t_ref = torch.tensor(tau, dtype=torch.float64, requires_grad=True)
    eff = weighting.macl_temperature(s_ref, p, t_ref) if method == "macl" else t_ref
    w = weighting.anchor_weights(s0, p, tau, method)  # (N,)
    target = (w * _ce(s_ref, p, eff)).sum()
    e_s, e_t = torch.autograd.grad(target, (s_ref, t_ref))
    torch.testing.assert_close(g_s, e_s, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g_t, e_t, rtol=1e-10, atol=1e-12)
    # and the float-tau path gives the same similarity gradient
    s_f = s0.clone().requires_grad_(True)
    LOSSES[method](s_f, p, tau, reduction="sum").backward()
    torch.testing.assert_close(s_f.grad, g_s, rtol=1e-12, atol=1e-14)


def test_flat_nce_gradient_is_relative_penalty_over_tau():
    """FlatNCE pushes each negative by r_i(s_ij) / tau (Eq. 5), pulls the positive by 1/tau."""
    s0, p = _sim(5, 11, seed=3)
    for tau in (0.07, 0.5):
        s = s0.clone().requires_grad_(True)
        losses.flat_nce(s, p, tau, reduction="sum").backward()
        expected = gradients.gradient_ratio(s0, p, tau) / tau
        expected[torch.arange(5), p] = -1 / tau
        torch.testing.assert_close(s.grad, expected, rtol=1e-12, atol=1e-14)


def test_info_nce_weights_are_one_and_decoupled_equals_flat():
    s, p = _sim(4, 6, seed=1)
    torch.testing.assert_close(weighting.anchor_weights(s, p, 0.2, "info_nce"),
                               torch.ones(4, dtype=torch.float64))
    torch.testing.assert_close(weighting.anchor_weights(s, p, 0.2, "decoupled"),
                               weighting.anchor_weights(s, p, 0.2, "flat_nce"))


# ---- values against the loop references -----------------------------------------------------


@pytest.mark.parametrize("method", weighting.WEIGHTING_METHODS)
@pytest.mark.parametrize("tau", TAUS)
def test_anchor_weights_match_reference(method, tau):
    s, p = _sim(5, 8, seed=11)
    expected = torch.tensor(ref_weights(s, p, tau, method), dtype=torch.float64)
    log_w = weighting.anchor_weights(s, p, tau, method, log=True)
    torch.testing.assert_close(log_w, expected.log(), rtol=1e-10, atol=1e-10)
    if expected.max() < 1e300:
        torch.testing.assert_close(weighting.anchor_weights(s, p, tau, method), expected,
                                   rtol=1e-10, atol=0)


@pytest.mark.parametrize("method", list(LOSSES))
@pytest.mark.parametrize("tau", TAUS)
@pytest.mark.parametrize("n, m", [(1, 2), (6, 16)])
def test_losses_match_reference(method, tau, n, m):
    s, p = _sim(n, m, seed=n * m)
    expected = ref_loss(s, p, tau, method)
    torch.testing.assert_close(LOSSES[method](s, p, tau, reduction="none"), expected,
                               rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(LOSSES[method](s, p, tau), expected.mean(), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(LOSSES[method](s, p, tau, reduction="sum"), expected.sum(),
                               rtol=1e-9, atol=1e-9)


def test_decoupled_is_info_nce_plus_log_one_minus_p():
    s, p = _sim(7, 10, seed=5)
    w = weighting.anchor_weights(s, p, 0.2, "decoupled")
    torch.testing.assert_close(losses.decoupled_info_nce(s, p, 0.2, reduction="none"),
                               losses.info_nce(s, p, 0.2, reduction="none") - w.log())


@pytest.mark.parametrize("kwargs", [dict(m=1.0), dict(m=3.0)])
def test_dual_temperature_with_m_one_is_info_nce(kwargs):
    s, p = _sim(5, 9, seed=6)
    out = losses.dual_temperature_info_nce(s, p, 0.2, reduction="none", **kwargs)
    if kwargs["m"] == 1.0:
        torch.testing.assert_close(out, losses.info_nce(s, p, 0.2, reduction="none"))
    else:
        torch.testing.assert_close(out, ref_loss(s, p, 0.2, "dual_temperature", m=3.0))


def test_macl_with_alpha_zero_weights_info_nce_at_tau():
    s, p = _sim(5, 9, seed=8)
    tau_a = weighting.macl_temperature(s, p, 0.3, alpha=0.0)
    assert tau_a.item() == pytest.approx(0.3, rel=1e-15)
    torch.testing.assert_close(
        losses.macl(s, p, 0.3, alpha=0.0, reduction="none"),
        weighting.anchor_weights(s, p, 0.3, "flat_nce")
        * losses.info_nce(s, p, 0.3, reduction="none"))


# ---- stability grid: tau 0.01-100, float32 / bf16 / fp16 ------------------------------------


@pytest.mark.parametrize("method", list(LOSSES))
@pytest.mark.parametrize("tau", TAUS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_low_precision_inputs_upcast(method, tau, dtype):
    s64, p = _sim(8, 33, seed=7)
    s = s64.to(dtype).requires_grad_(True)
    exact = s.detach().double().requires_grad_(True)  # the same rounded inputs in float64
    out = LOSSES[method](s, p, tau, reduction="none")
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    torch.testing.assert_close(out.double(), ref_loss(exact.detach(), p, tau, method),
                               rtol=1e-5, atol=1e-5)
    out.sum().backward()
    LOSSES[method](exact, p, tau, reduction="sum").backward()
    assert s.grad.dtype == dtype and torch.isfinite(s.grad).all()
    scale = exact.grad.abs().max()
    tol = 1e-5 if dtype == torch.float32 else 1e-2  # the gradient is rounded back to 16 bits
    assert ((s.grad.double() - exact.grad).abs().max() / scale) < tol


@pytest.mark.parametrize("tau", TAUS)
def test_bf16_autocast_keeps_float32_math(tau):
    s, p = _sim(6, 12, seed=9, dtype=torch.float32)
    for method, fn in LOSSES.items():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = fn(s, p, tau, reduction="none")
            w = weighting.anchor_weights(s, p, tau, method, log=True)
        assert out.dtype == w.dtype == torch.float32
        torch.testing.assert_close(out.double(), ref_loss(s.double(), p, tau, method),
                                   rtol=1e-5, atol=1e-5)


def test_huge_logits_stay_finite():
    """s / tau up to 1e5: exp and 1/(1 - P) overflow float32, the losses and gradients do not."""
    big = torch.tensor([[1.0, -1.0, 0.5], [0.9, 0.1, -0.5]], dtype=torch.float32)
    pos = torch.tensor([0, 0])
    for method, fn in LOSSES.items():
        s = big.clone().requires_grad_(True)
        out = fn(s, pos, 1e-5, reduction="none")
        out.sum().backward()
        assert torch.isfinite(out).all() and torch.isfinite(s.grad).all(), method
    log_w = weighting.anchor_weights(big, pos, 1e-5, "flat_nce", log=True)
    assert log_w[0].item() == pytest.approx(0.5 / 1e-5, rel=1e-5)  # w = 1/(1-P) ~ e^{(s_p-s_n)/tau}


# ---- peers: lightly's DCLLoss and MACLLoss --------------------------------------------------


def _views(n: int, d: int, seed: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, d, generator=g, dtype=dtype).requires_grad_(True) for _ in range(2)]


def _compare_with_peer(ours, peer, n: int = 16, d: int = 32, seed: int = 0) -> float:
    """Values and gradients (w.r.t. both views) of ``ours(sim, pos)`` and ``peer(z1, z2)``."""
    z1, z2 = _views(n, d, seed)
    expected = peer(z1, z2)
    e_grads = torch.autograd.grad(expected, (z1, z2))
    out = ours(*losses.simclr_similarity(z1, z2))
    grads = torch.autograd.grad(out, (z1, z2))
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-8)
    for g, e in zip(grads, e_grads):
        torch.testing.assert_close(g, e, rtol=1e-6, atol=1e-9)
    return max((out - expected).abs().item(), *((g - e).abs().max().item()
                                                  for g, e in zip(grads, e_grads)))


@pytest.mark.parametrize("tau", [0.07, 0.1, 0.5])
def test_decoupled_equals_lightly_dcl(tau):
    lightly_loss = pytest.importorskip("lightly.loss")
    _compare_with_peer(lambda s, p: losses.decoupled_info_nce(s, p, tau),
                       lightly_loss.DCLLoss(temperature=tau), seed=int(tau * 100))


@pytest.mark.parametrize("tau, alpha, a0", [(0.1, 0.5, 0.0), (0.2, 1.0, 0.3), (0.5, 0.0, 0.0)])
def test_macl_equals_lightly(tau, alpha, a0):
    lightly_loss = pytest.importorskip("lightly.loss")
    _compare_with_peer(lambda s, p: losses.macl(s, p, tau, alpha=alpha, a0=a0),
                       lightly_loss.MACLLoss(temperature=tau, alpha=alpha, A_0=a0), seed=3)


# ---- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize("call, match", [
    (lambda s, p: losses.flat_nce(s, p, 0.0), "temperature"),
    (lambda s, p: losses.macl(s, p, math.nan), "temperature"),
    (lambda s, p: losses.decoupled_info_nce(s, p, torch.tensor([0.1, 0.2])), "scalar"),
    (lambda s, p: losses.decoupled_info_nce(s, p, torch.tensor(-0.1)), "temperature"),
    (lambda s, p: losses.decoupled_info_nce(s, p, torch.tensor(1)), "floating"),
    (lambda s, p: losses.dual_temperature_info_nce(s, p, 0.1, m=0.0), "m"),
    (lambda s, p: losses.macl(s, p, 0.1, alpha=1.5), "alpha"),
    (lambda s, p: losses.macl(s, p, 0.1, a0=-0.1), "a0"),
    (lambda s, p: losses.macl(s * 0 - 1, p, 0.1, alpha=1.0, a0=1.0), "tau_A"),
    (lambda s, p: losses.flat_nce(s, p, 0.1, reduction="avg"), "reduction"),
    (lambda s, p: losses.flat_nce(s[0], p, 0.1), "2-D"),
    (lambda s, p: losses.macl(s, p[:2], 0.1), "positive"),
    (lambda s, p: losses.dual_temperature_info_nce(s, p + 10, 0.1), "positive"),
    (lambda s, p: losses.decoupled_info_nce(s[:, :1], p * 0, 0.1), "at least 2 columns"),
    (lambda s, p: losses.flat_nce(s.index_fill(1, p[:1], math.nan), p, 0.1), "NaN/inf"),
    (lambda s, p: weighting.anchor_weights(s, p, 0.1, "infonce"), "method"),
    (lambda s, p: weighting.anchor_weights(s, p, -1.0, "macl"), "temperature"),
])
def test_bad_input_raises(call, match):
    s, p = _sim(3, 6)
    with pytest.raises(ValueError, match=match):
        call(s, p)


def test_every_reweighted_loss_gives_a_connected_zero_on_an_empty_batch():
    for fn in (losses.macl, losses.flat_nce, losses.decoupled_info_nce,
               losses.dual_temperature_info_nce):
        s = torch.zeros(0, 3, requires_grad=True)
        out = fn(s, torch.zeros(0, dtype=torch.long), temperature=0.1)
        assert out.item() == 0.0 and out.requires_grad, fn.__name__
        out.backward()


# ---- anchor_statistics: the training monitor's view ------------------------------------------


@pytest.mark.parametrize("tau", [0.05, 0.3, 2.0])
def test_anchor_statistics_equal_the_loop_reference(tau):
    """Column 0 is P_ip (softmax of the positive), columns 1-3 log w_i of each method."""
    s, p = _sim(7, 13, seed=int(tau * 10))
    stats = weighting.anchor_statistics(s, p, tau)
    assert stats.shape == (7, len(weighting.ANCHOR_STATISTICS)) and stats.dtype == torch.float64
    expected_p = [math.exp(lp - la) for lp, la, _ in
                  (_row_terms(r, q, tau) for r, q in zip(s.tolist(), p.tolist()))]
    torch.testing.assert_close(stats[:, 0], torch.tensor(expected_p, dtype=torch.float64),
                               rtol=1e-12, atol=1e-15)
    for j, method in enumerate(weighting.ANCHOR_STATISTICS[1:], start=1):
        ref = torch.tensor(ref_weights(s, p, tau, method), dtype=torch.float64).log()
        torch.testing.assert_close(stats[:, j], ref, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(stats[:, j],
                                   weighting.anchor_weights(s, p, tau, method, log=True),
                                   rtol=1e-12, atol=1e-14)


def test_anchor_statistics_read_nothing_back_and_keep_no_graph(monkeypatch):
    """A tensor τ (learnable) is used as given: no .item(), no graph to the similarities."""
    s, p = _sim(5, 8, seed=4, dtype=torch.float32)
    s.requires_grad_(True)
    tau = torch.tensor(0.2, requires_grad=True)
    calls = []
    for name in ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__",
                 "nonzero"):
        real = getattr(torch.Tensor, name)

        def counted(self, *args, _real=real, _name=name, **kwargs):
            calls.append(_name)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    out = weighting.anchor_statistics(s, p, tau, macl_base=tau * 2, validate=False)
    assert not calls and not out.requires_grad and out.dtype == torch.float32
    monkeypatch.undo()
    torch.testing.assert_close(out, weighting.anchor_statistics(s.detach(), p, 0.2,
                                                                macl_base=0.4))


@pytest.mark.parametrize("kwargs,match", [
    (dict(similarity=torch.zeros(3)), r"similarity: expected a 2-D tensor of shape \(N, M\)"),
    (dict(positive=torch.zeros(2, dtype=torch.long)), r"positive: expected shape \(3,\)"),
    (dict(temperature=0.0), "temperature"),
    (dict(m=-1.0), r"^m: Dual Temperature's ratio"),
    (dict(alpha=1.5), "alpha must lie in"),
    (dict(macl_base=0.0), r"^macl_base: expected"),
])
def test_anchor_statistics_bad_input(kwargs, match):
    args = dict(similarity=torch.zeros(3, 4), positive=torch.zeros(3, dtype=torch.long),
                temperature=0.1)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        weighting.anchor_statistics(**args)


def test_anchor_statistics_macl_column_uses_its_own_base_and_never_reaches_tau_zero():
    """macl_base sets MACL's tau_0; a factor 1 + alpha (A - A_0) <= 0 is clamped, not raised."""
    s, p = _sim(6, 10, seed=5)
    base = weighting.anchor_statistics(s, p, 0.05, macl_base=0.3)[:, 2]
    torch.testing.assert_close(base, weighting.anchor_weights(s, p, 0.3, "macl", log=True))
    low = torch.full((4, 5), 0.1, dtype=torch.float64)
    low[:, 0] = -1.0  # every positive at -1: A = -1, 1 + 1 * (-1 - 1) < 0
    out = weighting.anchor_statistics(low, torch.zeros(4, dtype=torch.long), 0.2, alpha=1.0,
                                      a0=1.0)
    assert torch.isfinite(out).all()


def test_anchor_statistics_keep_float32_accurate_with_many_negatives():
    """P_ip ~ 1/M: -log(1 - P_ip) must not come from two nearly equal logsumexps (float32)."""
    g = torch.Generator().manual_seed(0)
    s = (torch.rand(64, 20000, generator=g, dtype=torch.float64) * 2 - 1) * 0.3
    pos = torch.randint(0, 20000, (64,), generator=g)
    exact = weighting.anchor_statistics(s, pos, 1.0)
    single = weighting.anchor_statistics(s.float(), pos, 1.0).double()
    for j in range(1, 4):  # the spread over anchors is ~1e-6: relative accuracy matters
        assert single[:, j].std() == pytest.approx(float(exact[:, j].std()), rel=1e-3)
        torch.testing.assert_close(single[:, j], exact[:, j], rtol=1e-4, atol=1e-10)
        torch.testing.assert_close(weighting.anchor_weights(s.float(), pos, 1.0, method := (
            weighting.ANCHOR_STATISTICS[j]), log=True).double(), exact[:, j], rtol=1e-4,
            atol=1e-10, msg=method)


def test_anchor_statistics_validate_values_unless_told_not_to():
    s, p = _sim(4, 6, seed=2)
    with pytest.raises(ValueError, match=r"column indices in \[0, 5\]"):
        weighting.anchor_statistics(s, p + 6, 0.2)
    with pytest.raises(ValueError, match="temperature: expected a finite (value|number) > 0"):
        weighting.anchor_statistics(s, p, torch.tensor(-1.0))
    with pytest.raises(ValueError, match="macl_base: expected a finite (value|number) > 0"):
        weighting.anchor_statistics(s, p, 0.2, macl_base=torch.tensor(0.0))
    broken = s.clone()
    broken[1, 3] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        weighting.anchor_statistics(broken, p, 0.2)
    for bad in (p.double(), p > 2):
        with pytest.raises(ValueError, match="positive: expected an integer dtype"):
            weighting.anchor_statistics(s, bad, 0.2, validate=False)
    out = weighting.anchor_statistics(broken, p, 0.2, validate=False)  # the trainer's path
    assert torch.isnan(out[1]).all() and torch.isfinite(out[[0, 2, 3]]).all()
