"""Tests for cl_analysis.metric_losses (re-exported by cl_analysis.losses).

Oracle: the float64 loops of tests/reference.py (brute force for the mined triplet losses),
torch.autograd.gradcheck in float64, and the reductions DCL/HCL -> NT-Xent.
"""

from __future__ import annotations

import math

import pytest
import reference as ref
import torch

from cl_analysis import losses, metric_losses


def _x(*shape: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _labels(n: int, classes: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, classes, (n,), generator=torch.Generator().manual_seed(seed))


def _close(actual: torch.Tensor, expected, rtol: float = 1e-9, atol: float = 1e-9) -> None:
    expected = torch.as_tensor(expected, dtype=torch.float64)
    torch.testing.assert_close(actual.double(), expected, rtol=rtol, atol=atol)


def test_reexported_from_losses():
    for name in metric_losses.__all__:
        assert getattr(losses, name) is getattr(metric_losses, name) and name in losses.__all__


# ---- against the loop references ------------------------------------------------------------


@pytest.mark.parametrize("margin", [0.0, 0.5, 3.0])
def test_margin_contrastive_matches_reference(margin):
    x1, x2, same = _x(9, 5), _x(9, 5, seed=1), _labels(9, 2)
    _close(metric_losses.margin_contrastive(x1, x2, same, margin=margin, reduction="none"),
           ref.margin_contrastive(x1, x2, same, margin))
    for same_as in (same.bool(), same.float()):
        _close(metric_losses.margin_contrastive(x1, x2, same_as, margin=margin),
               ref.mean(ref.margin_contrastive(x1, x2, same, margin)))


@pytest.mark.parametrize("squared", [False, True])
@pytest.mark.parametrize("margin", [0.0, 0.2, 2.0])
def test_triplet_matches_reference(squared, margin):
    a, p, n = _x(7, 4), _x(7, 4, seed=1), _x(7, 4, seed=2)
    expected = ref.triplet(a, p, n, margin, squared)
    _close(metric_losses.triplet(a, p, n, margin=margin, squared=squared, reduction="none"),
           expected)
    _close(metric_losses.triplet(a, p, n, margin=margin, squared=squared, reduction="sum"),
           sum(expected))


@pytest.mark.parametrize("n, classes", [(6, 2), (12, 3), (16, 8)])
@pytest.mark.parametrize("squared", [False, True])
def test_batch_hard_triplet_matches_brute_force(n, classes, squared):
    x, y = _x(n, 3, seed=n), _labels(n, classes, seed=n)
    for margin in [0.1, 1.0]:
        _close(metric_losses.batch_hard_triplet(x, y, margin=margin, squared=squared),
               ref.mean(ref.batch_hard_triplet(x, y, margin, squared)))


@pytest.mark.parametrize("n, classes", [(6, 2), (12, 3), (16, 8)])
@pytest.mark.parametrize("squared", [False, True])
def test_semi_hard_triplet_matches_brute_force(n, classes, squared):
    x, y = _x(n, 3, seed=n + 1), _labels(n, classes, seed=n + 1)
    for margin in [0.05, 0.5, 5.0]:  # few, some and all negatives semi-hard
        _close(metric_losses.semi_hard_triplet(x, y, margin=margin, squared=squared,
                                               fallback="hardest"),
               ref.mean(ref.semi_hard_triplet(x, y, margin, squared)))


def test_mined_triplets_without_valid_anchor_are_zero():
    x = _x(4, 3).requires_grad_()
    for fn in (metric_losses.batch_hard_triplet, metric_losses.semi_hard_triplet):
        for labels in (torch.zeros(4, dtype=torch.long), torch.arange(4)):  # no neg / no pos
            out = fn(x, labels, margin=0.2)
            out.backward()
            assert out.item() == 0.0 and torch.equal(x.grad, torch.zeros_like(x))


@pytest.mark.parametrize("tau", [0.05, 0.5, 5.0])
@pytest.mark.parametrize("views", [None, 2, 3])
def test_supcon_matches_reference(tau, views):
    z = _x(10, 5) if views is None else _x(10, views, 5)
    y = _labels(10, 4, seed=3)
    _close(metric_losses.supcon(z, y, tau), ref.mean(ref.supcon(z, y, tau)))


def test_supcon_excludes_anchors_without_positives():
    z, y = _x(5, 4), torch.tensor([0, 0, 1, 2, 3])  # only anchors 0 and 1 have a positive
    _close(metric_losses.supcon(z, y, 0.1), ref.mean(ref.supcon(z, y, 0.1)))
    assert len(ref.supcon(z, y, 0.1)) == 2
    assert metric_losses.supcon(z, torch.arange(5), 0.1).item() == 0.0


@pytest.mark.parametrize("n", [2, 5])
@pytest.mark.parametrize("tau", [0.1, 0.5, 2.0])
@pytest.mark.parametrize("tau_plus", [0.0, 0.05, 0.3, 0.9])
def test_debiased_matches_reference(n, tau, tau_plus):
    z1, z2 = _x(n, 6, seed=n), _x(n, 6, seed=n + 7)
    _close(metric_losses.debiased_info_nce(z1, z2, tau, tau_plus=tau_plus, reduction="none"),
           ref.debiased(z1, z2, tau, tau_plus))


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 6.0])
@pytest.mark.parametrize("tau_plus", [0.0, 0.1, 0.5])
def test_hcl_matches_reference(beta, tau_plus):
    z1, z2 = _x(6, 6, seed=4), _x(6, 6, seed=5)
    _close(metric_losses.hcl_info_nce(z1, z2, 0.5, beta=beta, tau_plus=tau_plus, reduction="none"),
           ref.hcl(z1, z2, 0.5, beta, tau_plus))


def test_debiased_clamp_is_reached():
    z1 = _x(4, 6)
    out = metric_losses.debiased_info_nce(z1, z1, 0.5, tau_plus=0.9,
                                          reduction="none")  # pos = e^{1/tau}
    floor = math.log1p(6 * math.exp(-2.0) / math.exp(2.0))  # Ng = Nn e^{-1/tau}
    assert torch.isclose(out, torch.tensor(floor, dtype=torch.float64)).any()
    _close(out, ref.debiased(z1, z1, 0.5, 0.9))


def test_reductions_to_nt_xent():
    z1, z2 = _x(8, 6, seed=1), _x(8, 6, seed=2)
    for tau in [0.05, 0.5, 5.0]:
        nt = losses.nt_xent(z1, z2, tau)
        _close(metric_losses.debiased_info_nce(z1, z2, tau, tau_plus=0.0), nt)
        _close(metric_losses.hcl_info_nce(z1, z2, tau, beta=0.0, tau_plus=0.0), nt)
        for tau_plus in [0.0, 0.1]:
            _close(metric_losses.hcl_info_nce(z1, z2, tau, beta=0.0, tau_plus=tau_plus),
                   metric_losses.debiased_info_nce(z1, z2, tau, tau_plus=tau_plus))


# ---- autograd -------------------------------------------------------------------------------


def test_gradcheck_pair_losses():
    x1, x2, x3 = (_x(6, 3, seed=s).requires_grad_() for s in range(3))
    same = _labels(6, 2)
    assert torch.autograd.gradcheck(
        lambda a, b: metric_losses.margin_contrastive(a, b, same, margin=2.0,
                                                      reduction="none"), (x1, x2))
    for squared in (False, True):
        assert torch.autograd.gradcheck(
            lambda a, p, n: metric_losses.triplet(a, p, n, margin=1.0, squared=squared,
                                                  reduction="none"), (x1, x2, x3))


def test_gradcheck_batch_losses():
    x, y = _x(10, 3, seed=2).requires_grad_(), _labels(10, 3, seed=2)
    for fn in (metric_losses.batch_hard_triplet, metric_losses.semi_hard_triplet):
        assert torch.autograd.gradcheck(lambda e: fn(e, y, margin=0.5), (x,))
    assert torch.autograd.gradcheck(lambda e: metric_losses.supcon(e, y, 0.3), (x,))
    views = _x(5, 2, 3, seed=3).requires_grad_()
    assert torch.autograd.gradcheck(lambda e: metric_losses.supcon(e, y[:5], 0.3), (views,))


@pytest.mark.parametrize("beta, tau_plus", [(0.0, 0.1), (1.0, 0.1), (2.0, 0.0)])
def test_gradcheck_debiased_and_hcl(beta, tau_plus):
    z1, z2 = _x(4, 3, seed=6).requires_grad_(), _x(4, 3, seed=7).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda a, b: metric_losses.hcl_info_nce(a, b, 0.5, beta=beta, tau_plus=tau_plus,
                                                reduction="none"), (z1, z2))


def test_gradients_finite_at_degenerate_points():
    x = _x(4, 3).requires_grad_()
    metric_losses.margin_contrastive(x, x, torch.tensor([1, 0, 1, 0]), margin=1.0).backward()
    assert torch.isfinite(x.grad).all()  # d = 0 for both kinds of pair
    z = _x(4, 3).requires_grad_()
    metric_losses.debiased_info_nce(z, z, 0.5, tau_plus=0.9).backward()  # clamp active everywhere
    assert torch.isfinite(z.grad).all()


# ---- dtype robustness -----------------------------------------------------------------------


@pytest.mark.parametrize("tau", [0.01, 0.1, 1.0, 10.0, 100.0])
def test_float32_and_bf16_autocast(tau):
    z1, z2 = _x(6, 8, seed=1, dtype=torch.float32), _x(6, 8, seed=2, dtype=torch.float32)
    y = torch.arange(6) % 3
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outs = [
            (metric_losses.hcl_info_nce(z1, z2, tau, beta=1.0, tau_plus=0.1),
             ref.hcl(z1, z2, tau, 1.0, 0.1)),
            (metric_losses.debiased_info_nce(z1, z2, tau, tau_plus=0.1),
             ref.debiased(z1, z2, tau, 0.1)),
            (metric_losses.supcon(z1.half(), y, tau), ref.supcon(z1.half(), y, tau)),
        ]
    for out, expected in outs:
        assert out.dtype == torch.float32 and torch.isfinite(out)
        _close(out, ref.mean(expected), rtol=1e-5, atol=1e-5)


# ---- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize("call, match", [
    (lambda x, y: metric_losses.margin_contrastive(x, x[:3], y), "same shape"),
    (lambda x, y: metric_losses.margin_contrastive(x, x, y[:2]), "shape"),
    (lambda x, y: metric_losses.margin_contrastive(x, x, y.tolist()), "tensor"),
    (lambda x, y: metric_losses.margin_contrastive(x, x, y + 2), "0/1"),
    (lambda x, y: metric_losses.margin_contrastive(x, x, y, margin=-1.0), "margin"),
    (lambda x, y: metric_losses.margin_contrastive(x, x, y, reduction="avg"), "reduction"),
    (lambda x, y: metric_losses.triplet(x, x, x[:, :2]), "same shape"),
    (lambda x, y: metric_losses.triplet(x, x * math.inf, x), "NaN/inf"),
    (lambda x, y: metric_losses.triplet(x, x, x, margin=math.nan), "margin"),
    (lambda x, y: metric_losses.batch_hard_triplet(x, y.float()), "integer dtype"),
    (lambda x, y: metric_losses.batch_hard_triplet(x[0], y), "2-D"),
    (lambda x, y: metric_losses.semi_hard_triplet(x, y[:3]), "shape"),
    (lambda x, y: metric_losses.semi_hard_triplet(x * math.nan, y), "NaN/inf"),
    (lambda x, y: metric_losses.supcon(x[0], y, 0.1), "tensor"),
    (lambda x, y: metric_losses.supcon(x, y, 0.0), "temperature"),
    (lambda x, y: metric_losses.supcon(x, y[1:], 0.1), "shape"),
    (lambda x, y: metric_losses.debiased_info_nce(x, x, 0.5, tau_plus=1.0), "tau_plus"),
    (lambda x, y: metric_losses.debiased_info_nce(x, x, 0.5, tau_plus=-0.1), "tau_plus"),
    (lambda x, y: metric_losses.debiased_info_nce(x, x, -0.5, tau_plus=0.1), "temperature"),
    (lambda x, y: metric_losses.hcl_info_nce(x, x, 0.5, beta=-1.0, tau_plus=0.1), "beta"),
    (lambda x, y: metric_losses.hcl_info_nce(x, x, 0.5, beta=math.inf, tau_plus=0.1), "beta"),
    (lambda x, y: metric_losses.hcl_info_nce(x, x[:2], 0.5, beta=1.0, tau_plus=0.1), "same shape"),
])
def test_bad_input_raises(call, match):
    x, y = _x(4, 3), torch.tensor([0, 1, 1, 0])
    with pytest.raises(ValueError, match=match):
        call(x, y)


# ---- cross-check against a peer library -----------------------------------------------------


def test_supcon_equals_pytorch_metric_learning():
    pml = pytest.importorskip("pytorch_metric_learning.losses")
    z, y = _x(12, 8, seed=4, dtype=torch.float32), _labels(12, 4, seed=4)
    torch.testing.assert_close(metric_losses.supcon(z, y, 0.1), pml.SupConLoss(0.1)(z, y),
                               rtol=1e-5, atol=1e-6)
