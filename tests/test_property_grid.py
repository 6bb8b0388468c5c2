"""Issue 9's property grid: every public loss, gradient function and metric over dtypes, sizes,
degenerate rows and temperatures 0.01-100 (float and tensor with grad).

Invariants: finite values and gradients; agreement with the float64 loop references
(tests/reference.py); low-precision inputs give the float64 result of their (upcast) values;
permutation equivariance (anchors with their positives); scale invariance of the cosine losses;
symmetry in the two views. Profiles are registered in conftest.py ("ci" default, fixed seed;
CL_HYPOTHESIS_PROFILE=long for more examples).
"""

from __future__ import annotations

import math

import reference as ref
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from cl_analysis import gradients as G
from cl_analysis import losses
from cl_analysis import metrics as M

DTYPES = [torch.float64, torch.float32, torch.bfloat16, torch.float16]
PATTERNS = ["random", "tied", "identical", "zero", "antipodal"]


@st.composite
def temperatures(draw):
    tau = 10 ** draw(st.floats(-2, 2))
    return (torch.tensor(tau, dtype=torch.float64, requires_grad=True)
            if draw(st.booleans()) else tau)


@st.composite
def similarity_case(draw, min_rows=0):
    n = draw(st.sampled_from([x for x in (0, 1, 2, 5) if x >= min_rows]))
    m = draw(st.sampled_from([2, 3, 6]))
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    s = torch.rand(n, m, generator=g, dtype=torch.float64) * 2 - 1
    pattern = draw(st.sampled_from(PATTERNS))
    if pattern == "tied":
        s = s.round(decimals=0) / 2  # few distinct values: many ties
    elif pattern == "identical":
        s = s[:1].expand(n, m).clone() if n else s
    elif pattern == "zero":
        s = torch.zeros(n, m, dtype=torch.float64)
    elif pattern == "antipodal":
        s = torch.where(s >= 0, 1.0, -1.0).to(torch.float64)
    pos = torch.randint(0, m, (n,), generator=g)
    return s.to(draw(st.sampled_from(DTYPES))), pos, seed


def _k(m):
    return max(1, (m - 1) // 2)


SIM_LOSSES = {  # name: (our call, float64 reference per anchor or None)
    "info_nce": (lambda s, p, t: losses.info_nce(s, p, t, reduction="none"),
                 lambda s, p, t: ref.info_nce(s, p, t)),
    "hard_info_nce": (lambda s, p, t: losses.hard_info_nce(s, p, t, k=_k(s.shape[1]),
                                                           reduction="none"),
                      lambda s, p, t: ref.hard_info_nce(s, p, t, _k(len(s[0])))),
    "simple": (lambda s, p, t: losses.simple(s, p, reduction="none"),
               lambda s, p, t: ref.simple(s, p)),
    "hard_simple": (lambda s, p, t: losses.hard_simple(s, p, k=_k(s.shape[1]), reduction="none"),
                    lambda s, p, t: ref.hard_simple(s, p, _k(len(s[0])))),
    "tau_zero_limit": (lambda s, p, t: losses.tau_zero_limit(s, p, reduction="none"),
                       lambda s, p, t: ref.tau_zero_limit(s, p)),
}
GRAD_FUNCTIONS = {
    "similarity_gradient": G.similarity_gradient,
    "gradient_ratio": G.gradient_ratio,
    "truncated_gradient_ratio": lambda s, p, t: G.truncated_gradient_ratio(s, p, t,
                                                                           k=_k(s.shape[1])),
    "penalty_entropy": G.penalty_entropy,
    "effective_negatives": G.effective_negatives,
    "local_separation": lambda s, p, t: M.local_separation(s, p, k=_k(s.shape[1])),
}


def _float(t):
    return t.item() if isinstance(t, torch.Tensor) else t


def _check_finite_with_grads(out, leaves):
    assert torch.isfinite(out).all()
    leaves = [x for x in leaves if isinstance(x, torch.Tensor) and x.requires_grad]
    if out.requires_grad and leaves:
        grads = torch.autograd.grad(out.double().sum(), leaves, allow_unused=True)
        assert all(g is None or torch.isfinite(g).all() for g in grads)


@given(similarity_case(), temperatures(), st.sampled_from(sorted(SIM_LOSSES)))
def test_similarity_losses(case, tau, name):
    s, pos, _ = case
    ours, oracle = SIM_LOSSES[name]
    leaf = s.clone().requires_grad_()
    out = ours(leaf, pos, tau)
    assert out.shape == (len(pos),)
    _check_finite_with_grads(out, [leaf, tau])
    exact = s.double()
    expected = torch.tensor(oracle(exact, pos, _float(tau)) if len(pos) else [],
                            dtype=torch.float64)
    tol = 1e-9 if s.dtype == torch.float64 else 2e-5
    torch.testing.assert_close(out.detach().double(), expected, rtol=tol,
                               atol=tol * (1 + 1 / _float(tau)))
    # the mean follows the empty-batch rule and is finite
    mean = ours(s, pos, tau).mean() if len(pos) else ours(s, pos, tau).sum()
    assert torch.isfinite(mean)
    if len(pos) > 1:  # permuting anchors with their positives permutes the losses
        perm = torch.arange(len(pos)).flip(0)
        torch.testing.assert_close(ours(s[perm], pos[perm], tau).detach(), out.detach()[perm])


@given(similarity_case(), temperatures(), st.sampled_from(sorted(GRAD_FUNCTIONS)))
def test_gradient_functions_and_local_separation(case, tau, name):
    s, pos, _ = case
    fn = GRAD_FUNCTIONS[name]
    out = fn(s, pos, tau)
    assert out.shape[0] == len(pos)
    _check_finite_with_grads(out, [tau])
    # low precision: the float64 result of the same (upcast) values
    torch.testing.assert_close(out.detach().double(), fn(s.double(), pos, _float(tau)).double(),
                               rtol=1e-5, atol=1e-6)
    if name in ("gradient_ratio", "truncated_gradient_ratio") and len(pos):
        torch.testing.assert_close(out.detach().double().sum(1),
                                   torch.ones(len(pos), dtype=torch.float64))
    if len(pos) > 1:
        perm = torch.arange(len(pos)).flip(0)
        torch.testing.assert_close(fn(s[perm], pos[perm], tau).detach(), out.detach()[perm])


@st.composite
def view_case(draw):
    n = draw(st.sampled_from([0, 1, 2, 5]))
    d = draw(st.sampled_from([2, 4]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    z1 = torch.randn(n, d, generator=g, dtype=torch.float64)
    z2 = torch.randn(n, d, generator=g, dtype=torch.float64)
    pattern = draw(st.sampled_from(PATTERNS))
    if pattern in ("tied", "identical"):
        z2 = z1.clone()
    elif pattern == "zero":
        z1 = torch.zeros_like(z1)
    elif pattern == "antipodal":
        z2 = -z1
    labels = torch.randint(0, 2, (n,), generator=g)
    return z1.to(draw(st.sampled_from(DTYPES))), z2.to(z1.dtype if n else z1.dtype), labels


IN_BATCH = {  # cosine-based, symmetric in the two views
    "nt_xent": (lambda a, b, t: losses.nt_xent(a, b, t), lambda a, b, t: ref.nt_xent(a, b, t)),
    "debiased": (lambda a, b, t: losses.debiased_info_nce(a, b, t, tau_plus=0.1),
                 lambda a, b, t: ref.debiased(a, b, t, 0.1)),
    "hcl": (lambda a, b, t: losses.hcl_info_nce(a, b, t, beta=1.0, tau_plus=0.1),
            lambda a, b, t: ref.hcl(a, b, t, 1.0, 0.1)),
}


@given(view_case(), temperatures(), st.sampled_from(sorted(IN_BATCH)))
def test_in_batch_losses(case, tau, name):
    z1, z2, _ = case
    z2 = z2.to(z1.dtype)
    ours, oracle = IN_BATCH[name]
    a, b = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    out = ours(a, b, tau)
    n = len(z1)
    zero_rows = n and bool((z1.double().norm(dim=1) == 0).any())
    # a zero row has no direction: normalize's gradient there is ~1/eps (1e12), finite in
    # float32/64 but beyond the range of a half-precision leaf (known limitation, see report)
    half = z1.dtype in (torch.float16, torch.bfloat16)
    _check_finite_with_grads(out, [tau] if zero_rows and half else [a, b, tau])
    if z1.dtype == torch.float64 and n >= 2 and not zero_rows:
        torch.testing.assert_close(out.detach(), torch.tensor(ref.mean(oracle(z1, z2, _float(tau))),
                                                              dtype=torch.float64),
                                   rtol=1e-8, atol=1e-8)
    if n:
        tol = dict(rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ours(z2, z1, tau), out.detach(), **tol)  # view symmetry
        torch.testing.assert_close(ours(2 * z1, 0.5 * z2, tau), out.detach(), **tol)  # scale
        perm = torch.arange(n).flip(0)
        torch.testing.assert_close(ours(z1[perm], z2[perm], tau), out.detach(), **tol)


@given(view_case(), temperatures())
def test_supcon(case, tau):
    z, _, labels = case
    leaf = z.clone().requires_grad_()
    out = losses.supcon(leaf, labels, tau)
    zero_rows = len(z) and bool((z.double().norm(dim=1) == 0).any())
    half = z.dtype in (torch.float16, torch.bfloat16)
    _check_finite_with_grads(out, [tau] if zero_rows and half else [leaf, tau])
    if len(z):
        torch.testing.assert_close(losses.supcon(2 * z, labels, tau), out.detach(),
                                   rtol=1e-5, atol=1e-5)
        perm = torch.arange(len(z)).flip(0)
        torch.testing.assert_close(losses.supcon(z[perm], labels[perm], tau), out.detach(),
                                   rtol=1e-5, atol=1e-5)
    expected = ref.supcon(z, labels, _float(tau)) if len(z) and not zero_rows else []
    if z.dtype == torch.float64 and expected:
        torch.testing.assert_close(out.detach(), torch.tensor(ref.mean(expected),
                                                              dtype=torch.float64))


@given(view_case(), st.floats(0.0, 2.0), st.booleans())
def test_distance_losses(case, margin, squared):
    z1, z2, labels = case
    z2 = z2.to(z1.dtype)
    a, b = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    same = labels.bool()
    calls = {
        "margin": (lambda: losses.margin_contrastive(a, b, same, margin=margin, reduction="none"),
                   lambda x, y: ref.margin_contrastive(x, y, same.long(), margin)),
        "triplet": (lambda: losses.triplet(a, b, b.flip(0), margin=margin, squared=squared,
                                           reduction="none"),
                    lambda x, y: ref.triplet(x, y, y.flip(0), margin, squared)),
    }
    for ours, oracle in calls.values():
        out = ours()
        _check_finite_with_grads(out, [a, b])
        expected = torch.tensor(oracle(z1.double(), z2.double()) if len(z1) else [],
                                dtype=torch.float64)
        tol = 1e-9 if z1.dtype == torch.float64 else 1e-5
        torch.testing.assert_close(out.detach().double(), expected, rtol=tol, atol=tol)
    for fn in (losses.batch_hard_triplet, losses.semi_hard_triplet):
        out = fn(a, labels, margin=margin, squared=squared)
        _check_finite_with_grads(out, [a])


@given(view_case(), st.sampled_from([0.5, 1.0, 1.5, 2.0]))
def test_metrics(case, alpha):
    z1, z2, labels = case
    if len(z1) == 0 or bool((z1.double().norm(dim=1) == 0).any()):
        return  # metrics need unit rows (checked elsewhere: they refuse zero rows)
    u1, u2 = F.normalize(z1.double(), dim=1), F.normalize(z2.double(), dim=1)
    a = u1.clone().requires_grad_()
    out = M.alignment(a, u2, alpha=alpha)
    _check_finite_with_grads(out, [a])
    expected = ref.mean([ref.dist(x, y) ** alpha for x, y in zip(u1.tolist(), u2.tolist())])
    assert math.isclose(out.item(), expected, rel_tol=1e-9, abs_tol=1e-12)
    if len(u1) >= 2:
        unif = M.uniformity_loss(a, t=2.0)
        _check_finite_with_grads(unif, [a])
        perm = torch.arange(len(u1)).flip(0)
        torch.testing.assert_close(M.uniformity(u1[perm]), M.uniformity(u1))
        if (labels.bincount() > 1).any():
            assert -1 - 1e-9 <= M.tolerance(u1, labels).item() <= 1 + 1e-9
