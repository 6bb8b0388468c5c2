"""docs/coming_from_peers.md, one test per row: the peer call and the mapped call here agree.

lightly and pytorch-metric-learning are dev dependencies and are called directly. For peers not
installed (SupContrast, solo-learn, align_uniform, DCL/HCL, TensorFlow Addons) the test restates
the peer's documented formula in float64 loops; it is not their code.
"""

from __future__ import annotations

import math

import pytest
import reference as ref
import torch
import torch.nn.functional as F

from cl_analysis import losses
from cl_analysis import metrics as M


def _x(n, d, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=dtype)


def _close(a, b, tol=1e-6):
    torch.testing.assert_close(torch.as_tensor(a, dtype=torch.float64),
                               torch.as_tensor(b, dtype=torch.float64), rtol=tol, atol=tol)


# ---- lightly ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 8])
def test_lightly_ntxent(n):
    lightly_loss = pytest.importorskip("lightly.loss")
    z0, z1 = _x(n, 16, 1, torch.float32), _x(n, 16, 2, torch.float32)
    _close(losses.nt_xent(z0, z1, 0.5), lightly_loss.NTXentLoss(temperature=0.5)(z0, z1))


def test_lightly_dcl_is_the_decoupled_loss():
    """lightly's DCLLoss (Yeh et al., decoupled) drops the positive from the denominator:
    L' = L + log(1 - exp(-L)) per anchor, with L our nt_xent term."""
    lightly_loss = pytest.importorskip("lightly.loss")
    z0, z1 = _x(8, 16, 3, torch.float32), _x(8, 16, 4, torch.float32)
    per_anchor = losses.nt_xent(z0.double(), z1.double(), 0.1, reduction="none")
    decoupled = (per_anchor + torch.log(-torch.expm1(-per_anchor))).mean()
    _close(decoupled, lightly_loss.DCLLoss(temperature=0.1)(z0, z1), tol=1e-4)


# ---- pytorch-metric-learning -----------------------------------------------------------------


def test_pml_ntxent():
    pml = pytest.importorskip("pytorch_metric_learning.losses")
    z1, z2 = _x(8, 16, 5, torch.float32), _x(8, 16, 6, torch.float32)
    expected = pml.NTXentLoss(temperature=0.07)(torch.cat([z1, z2]), torch.arange(8).repeat(2))
    _close(losses.nt_xent(z1, z2, 0.07), expected, tol=1e-5)


def test_pml_supcon():
    pml = pytest.importorskip("pytorch_metric_learning.losses")
    z, y = _x(12, 8, 7, torch.float32), torch.tensor([0, 1, 1, 2, 0, 3, 3, 3, 1, 2, 0, 4])
    _close(losses.supcon(z, y, 0.1), pml.SupConLoss(temperature=0.1)(z, y), tol=1e-5)


def test_pml_triplet_margin_loss_explicit_triplets():
    """PML normalises embeddings and averages only the non-zero triplet terms."""
    pml = pytest.importorskip("pytorch_metric_learning.losses")
    x, y = _x(10, 4, 8, torch.float32), torch.tensor([0, 0, 1, 1, 2, 2, 0, 1, 2, 0])
    a, p, n = torch.tensor([0, 2, 4, 6, 1]), torch.tensor([1, 3, 5, 0, 9]), \
        torch.tensor([2, 4, 0, 8, 3])
    expected = pml.TripletMarginLoss(margin=0.2)(x, y, indices_tuple=(a, p, n))
    u = F.normalize(x, dim=1)
    terms = losses.triplet(u[a], u[p], u[n], margin=0.2, reduction="none")
    _close(terms[terms > 0].mean(), expected, tol=1e-5)


# ---- SupContrast (HobbitLong), restated ------------------------------------------------------


def _supcontrast(z, labels, tau, base_tau):
    """SupContrast SupConLoss, one view: anchors without positives count with 0 in the mean, and
    the loss is scaled by tau / base_temperature."""
    u = F.normalize(z, dim=1).tolist()
    y = labels.tolist()
    total = 0.0
    for i in range(len(u)):
        denom = sum(math.exp(ref.dot(u[i], u[k]) / tau) for k in range(len(u)) if k != i)
        logs = [ref.dot(u[i], u[p]) / tau - math.log(denom)
                for p in range(len(u)) if p != i and y[p] == y[i]]
        total += -(tau / base_tau) * (sum(logs) / len(logs) if logs else 0.0)
    return total / len(u)


def test_supcontrast_issue_input():
    z, y = _x(4, 6, 9), torch.tensor([0, 1, 1, 2])
    ours = losses.supcon(z, y, 0.1)
    with_pos = 2  # anchors 1 and 2 have a positive
    _close(ours * with_pos / 4, _supcontrast(z, y, 0.1, base_tau=0.1))
    _close(ours * with_pos / 4 * (0.1 / 0.07), _supcontrast(z, y, 0.1, base_tau=0.07))


# ---- solo-learn, restated --------------------------------------------------------------------


def _solo_simclr(z, indexes, tau):
    """solo-learn simclr_loss_func: -mean_i log(pos_i / (pos_i + neg_i)), pos_i the SUM of
    exp(s/tau) over same-index samples (L_in form), neg_i over different-index samples."""
    u = F.normalize(z, dim=1).tolist()
    idx = indexes.tolist()
    out = []
    for i in range(len(u)):
        e = [math.exp(ref.dot(u[i], u[k]) / tau) for k in range(len(u))]
        pos = sum(e[k] for k in range(len(u)) if k != i and idx[k] == idx[i])
        neg = sum(e[k] for k in range(len(u)) if idx[k] != idx[i])
        out.append(-math.log(pos / (pos + neg)))
    return ref.mean(out)


def test_solo_learn_simclr_two_views_is_nt_xent():
    z1, z2 = _x(6, 8, 10), _x(6, 8, 11)
    _close(losses.nt_xent(z1, z2, 0.2), _solo_simclr(torch.cat([z1, z2]),
                                                      torch.arange(6).repeat(2), 0.2))


# ---- align_uniform (Wang & Isola), restated --------------------------------------------------


def test_align_uniform_values_and_gradient_through_normalize():
    x = F.normalize(_x(10, 5, 12), dim=1)
    y = F.normalize(_x(10, 5, 13), dim=1)
    for alpha in (1.0, 2.0):
        align = ref.mean([ref.dist(a, b) ** alpha for a, b in zip(x.tolist(), y.tolist())])
        _close(M.alignment(x, y, alpha=alpha), align, tol=1e-12)
    rows = x.tolist()
    pairs = [math.exp(-2 * ref.dist(rows[i], rows[j]) ** 2)
             for i in range(10) for j in range(i + 1, 10)]
    _close(M.uniformity_loss(x, t=2.0), math.log(ref.mean(pairs)), tol=1e-12)
    # gradients agree once z = normalize(raw) is differentiated through the normalisation
    raw = _x(10, 5, 14).requires_grad_()
    (ours,) = torch.autograd.grad(M.uniformity_loss(F.normalize(raw, dim=1), t=2.0), raw)
    (theirs,) = torch.autograd.grad(
        torch.pdist(F.normalize(raw, dim=1)).pow(2).mul(-2.0).exp().mean().log(), raw)
    _close(ours, theirs, tol=1e-10)


# ---- DCL (Chuang et al.), HCL (Robinson et al.), TensorFlow Addons ---------------------------


def test_dcl_and_hcl_restated():
    z1, z2 = _x(5, 6, 15), _x(5, 6, 16)
    _close(losses.debiased_info_nce(z1, z2, 0.5, tau_plus=0.1),
           ref.mean(ref.debiased(z1, z2, 0.5, 0.1)), tol=1e-10)
    _close(losses.hcl_info_nce(z1, z2, 0.5, beta=1.0, tau_plus=0.1),
           ref.mean(ref.hcl(z1, z2, 0.5, 1.0, 0.1)), tol=1e-10)


def test_tf_addons_semihard():
    x = torch.tensor([[0.0], [1.0], [0.5], [3.0]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1])
    _close(losses.semi_hard_triplet(x, y, margin=0.2),
           ref.mean(ref.semi_hard_triplet(x, y, 0.2, fallback="beyond")), tol=1e-12)
