"""Issue 9: each failing input of the issue, as the value or error its rule gives (items 1-10)."""

from __future__ import annotations

import math

import matplotlib
import pytest
import reference as ref
import torch
import torch.nn.functional as F

from cl_analysis import gradients as G
from cl_analysis import losses
from cl_analysis import metrics as M
from cl_analysis.training.memory_bank import MemoryBank

matplotlib.use("Agg")


def _sim(n, m, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, m, generator=g, dtype=torch.float64) * 2 - 1,
            torch.randint(0, m, (n,), generator=g))


def _unit(n, d, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)


def _fd(f, tau, h=1e-6):
    """Central finite difference of a float function of tau (float64 loop references)."""
    return (f(tau + h) - f(tau - h)) / (2 * h)


# ---- 1. a tensor temperature keeps its gradient ----------------------------------------------


def test_issue_input_info_nce_tensor_tau_has_gradient_equal_to_closed_form():
    s, p = _sim(5, 7)
    tau = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    losses.info_nce(s, p, tau, reduction="sum").backward()
    # closed form, one anchor at a time: dL_i/dtau = (s_ip - sum_k P_ik s_ik) / tau^2
    expected = 0.0
    for row, col in zip(s.tolist(), p.tolist()):
        w = [math.exp(v / 0.2) for v in row]
        expected += (row[col] - sum(wi * v for wi, v in zip(w, row)) / sum(w)) / 0.04
    assert tau.grad is not None
    assert tau.grad.item() == pytest.approx(expected, rel=1e-9)
    assert tau.grad.item() == pytest.approx(_fd(lambda t: sum(ref.info_nce(s, p, t)), 0.2),
                                            rel=1e-6)


@pytest.mark.parametrize("name, call, oracle", [
    ("hard_info_nce", lambda s, p, z1, z2, y, t: losses.hard_info_nce(s, p, t, k=3,
                                                                      reduction="sum"),
     lambda s, p, z1, z2, y, t: sum(ref.hard_info_nce(s, p, t, 3))),
    ("nt_xent", lambda s, p, z1, z2, y, t: losses.nt_xent(z1, z2, t, reduction="sum"),
     lambda s, p, z1, z2, y, t: sum(ref.nt_xent(z1, z2, t))),
    ("supcon", lambda s, p, z1, z2, y, t: losses.supcon(z1, y, t),
     lambda s, p, z1, z2, y, t: ref.mean(ref.supcon(z1, y, t))),
    ("debiased", lambda s, p, z1, z2, y, t: losses.debiased_info_nce(
        z1, z2, t, tau_plus=0.1, reduction="sum"),
     lambda s, p, z1, z2, y, t: sum(ref.debiased(z1, z2, t, 0.1))),
    ("hcl", lambda s, p, z1, z2, y, t: losses.hcl_info_nce(
        z1, z2, t, beta=1.0, tau_plus=0.1, reduction="sum"),
     lambda s, p, z1, z2, y, t: sum(ref.hcl(z1, z2, t, 1.0, 0.1))),
])
def test_every_tau_loss_carries_dl_dtau_matching_the_loop_reference(name, call, oracle):
    s, p = _sim(4, 9, seed=1)
    z1, z2, y = _unit(6, 5, seed=2), _unit(6, 5, seed=3), torch.tensor([0, 1, 1, 2, 0, 2])
    tau = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(call(s, p, z1, z2, y, tau), tau)
    assert grad.item() == pytest.approx(_fd(lambda t: oracle(s, p, z1, z2, y, t), 0.3), rel=1e-5)


@pytest.mark.parametrize("fn", [G.similarity_gradient, G.gradient_ratio, G.penalty_entropy,
                                G.effective_negatives,
                                lambda s, p, t: G.truncated_gradient_ratio(s, p, t, k=3)])
def test_gradient_functions_are_differentiable_in_tau(fn):
    s, p = _sim(3, 6, seed=4)
    tau = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(fn(s, p, tau).sum(), tau)
    expected = _fd(lambda t: fn(s, p, t).sum().item(), 0.5)
    assert grad.item() == pytest.approx(expected, rel=1e-5, abs=1e-8)


@pytest.mark.parametrize("call, name", [
    (lambda s, p, v: losses.simple(s, p, lam=v), "lam"),
    (lambda s, p, v: losses.hard_simple(s, p, k=2, lam=v), "lam"),
    (lambda s, p, v: losses.margin_contrastive(s, s, p > 2, margin=v), "margin"),
    (lambda s, p, v: losses.hcl_info_nce(s, s, 0.5, beta=v, tau_plus=0.1), "beta"),
    (lambda s, p, v: losses.debiased_info_nce(s, s, 0.5, tau_plus=v), "tau_plus"),
    (lambda s, p, v: M.alignment(F.normalize(s, dim=1), F.normalize(s, dim=1), alpha=v), "alpha"),
])
def test_other_hyperparameters_refuse_a_tensor_that_requires_grad(call, name):
    s, p = _sim(4, 6)
    with pytest.raises(ValueError, match=f"{name}: expected a constant.*requires grad"):
        call(s, p, torch.tensor(0.1, dtype=torch.float64, requires_grad=True))


def test_bad_tensor_temperature_is_refused():
    s, p = _sim(2, 4)
    with pytest.raises(ValueError, match="temperature: expected a finite value > 0"):
        losses.info_nce(s, p, torch.tensor(-0.1))
    with pytest.raises(ValueError, match="0-dim floating tensor"):
        losses.info_nce(s, p, torch.tensor([0.1, 0.2]))


# ---- 2. zero distance: gradient 0, never NaN -------------------------------------------------


@pytest.mark.parametrize("alpha", [1.0, 1.5, 2.0, 0.5])
def test_issue_input_alignment_at_coincident_rows_has_zero_gradient(alpha):
    z1 = _unit(4, 3, seed=5).requires_grad_()
    z2 = torch.cat([z1.detach()[:1], _unit(3, 3, seed=6)])  # z2[0] == z1[0]
    M.alignment(z1, z2, alpha=alpha).backward()
    assert torch.isfinite(z1.grad).all()
    assert torch.equal(z1.grad[0], torch.zeros(3, dtype=torch.float64))
    # the other rows keep the analytic gradient (alpha/N) ||d||^(alpha-2) d
    d = z1.detach()[1] - z2[1]
    torch.testing.assert_close(z1.grad[1], alpha / 4 * d.norm() ** (alpha - 2) * d)


def test_distance_losses_at_coincident_points_have_finite_zero_gradients():
    x = torch.zeros(4, 3, dtype=torch.float64, requires_grad=True)  # every point coincides
    y = torch.tensor([0, 0, 1, 1])
    for out in (losses.margin_contrastive(x, x, torch.tensor([1, 0, 1, 0])),
                losses.triplet(x, x, x), losses.triplet(x, x, x, squared=True),
                losses.batch_hard_triplet(x, y), losses.semi_hard_triplet(x, y),
                M.uniformity_loss(F.normalize(torch.ones(4, 3, dtype=torch.float64)
                                              + x, dim=1))):
        (g,) = torch.autograd.grad(out, x)
        assert torch.isfinite(g).all()
        torch.testing.assert_close(g, torch.zeros_like(g), rtol=0, atol=1e-12)


# ---- 3. repeated indices in a memory-bank write ----------------------------------------------


def test_issue_input_repeated_update_is_applied_in_order():
    bank = MemoryBank(8, 3, momentum=0.5, generator=torch.Generator().manual_seed(0))
    v3 = bank.bank[3].clone()
    z_a, z_b = F.normalize(torch.tensor([1.0, 0, 0]), dim=0), F.normalize(torch.ones(3), dim=0)
    bank.update(torch.tensor([3, 3]), torch.stack([z_a, z_b]))
    first = F.normalize(0.5 * v3 + 0.5 * z_a, dim=0)
    torch.testing.assert_close(bank.bank[3], F.normalize(0.5 * first + 0.5 * z_b, dim=0))


def test_repeated_fill_keeps_the_last_write_and_others_are_untouched():
    bank = MemoryBank(6, 2, generator=torch.Generator().manual_seed(1))
    before = bank.bank.clone()
    z = torch.tensor([[1.0, 0], [0, 1.0], [0.6, 0.8], [-1.0, 0]])
    bank.fill(torch.tensor([2, 4, 2, 2]), z)
    torch.testing.assert_close(bank.bank[2], z[3])
    torch.testing.assert_close(bank.bank[4], z[1])
    keep = torch.tensor([0, 1, 3, 5])
    torch.testing.assert_close(bank.bank[keep], before[keep])


# ---- 4. ties in Eq. 9's top-K ----------------------------------------------------------------


def test_issue_input_tied_top_k_shares_the_gradient_evenly():
    s = torch.tensor([[0.2, 0.5, 0.5, 0.5, 0.1, -0.3]], dtype=torch.float64, requires_grad=True)
    p = torch.tensor([0])
    loss = losses.hard_info_nce(s, p, 0.5, k=2)
    # value: exactly the top-2 value (two of the three 0.5's)
    assert loss.item() == pytest.approx(ref.hard_info_nce(s.detach(), p, 0.5, 2)[0], rel=1e-12)
    (g,) = torch.autograd.grad(loss, s)
    shares = g[0, 1:4] / g[0, 1:4].sum()
    torch.testing.assert_close(shares, torch.full((3,), 1 / 3, dtype=torch.float64))
    assert g[0, 4].item() == 0 and g[0, 5].item() == 0
    # truncated_gradient_ratio is the normalised gradient of the same rule
    ratio = G.truncated_gradient_ratio(s.detach(), p, 0.5, k=2)
    torch.testing.assert_close(ratio[0, 1:], g[0, 1:] / g[0, 1:].sum())
    # hard_simple: value the mean of the top 2 negatives, gradient 1/3 each on the ties
    hs = losses.hard_simple(s, p, k=2)
    assert hs.item() == pytest.approx(-0.2 + 0.5, rel=1e-12)
    (gs,) = torch.autograd.grad(hs, s)
    torch.testing.assert_close(gs[0, 1:4], torch.full((3,), 1 / 3, dtype=torch.float64))
    # Fig. 8's local separation: the top-2 values, whatever columns tie
    torch.testing.assert_close(M.local_separation(s.detach(), p, k=2),
                               torch.tensor([[0.2, 0.5, 0.5]], dtype=torch.float64))


def test_tie_rule_does_not_depend_on_column_order():
    s = torch.tensor([[0.2, 0.5, 0.5, 0.5, 0.1, -0.3]], dtype=torch.float64)
    perm = torch.tensor([0, 4, 2, 5, 1, 3])
    ratio = G.truncated_gradient_ratio(s, torch.tensor([0]), 0.5, k=2)
    permuted = G.truncated_gradient_ratio(s[:, perm], torch.tensor([0]), 0.5, k=2)
    torch.testing.assert_close(permuted, ratio[:, perm])


# ---- 5. empty batch --------------------------------------------------------------------------


def test_issue_input_empty_info_nce_is_a_graph_connected_zero():
    s = torch.zeros(0, 3, requires_grad=True)
    out = losses.info_nce(s, torch.zeros(0, dtype=torch.long), 0.1)
    assert out.item() == 0.0 and out.requires_grad
    out.backward()
    assert s.grad.shape == (0, 3)


@pytest.mark.parametrize("call", [
    lambda s, p, z, y: losses.hard_info_nce(s, p, 0.1, k=1),
    lambda s, p, z, y: losses.simple(s, p),
    lambda s, p, z, y: losses.hard_simple(s, p, k=2),
    lambda s, p, z, y: losses.tau_zero_limit(s, p),
    lambda s, p, z, y: losses.nt_xent(z, z, 0.1),
    lambda s, p, z, y: losses.debiased_info_nce(z, z, 0.1, tau_plus=0.1),
    lambda s, p, z, y: losses.hcl_info_nce(z, z, 0.1, beta=1.0, tau_plus=0.1),
    lambda s, p, z, y: losses.margin_contrastive(z, z, y),
    lambda s, p, z, y: losses.triplet(z, z, z),
    lambda s, p, z, y: losses.batch_hard_triplet(z, y),
    lambda s, p, z, y: losses.semi_hard_triplet(z, y),
    lambda s, p, z, y: losses.supcon(z, y, 0.1),
])
def test_every_loss_on_an_empty_batch_is_zero_with_zero_gradient(call):
    s, p = torch.zeros(0, 4, requires_grad=True), torch.zeros(0, dtype=torch.long)
    z, y = torch.zeros(0, 3, requires_grad=True), torch.zeros(0, dtype=torch.long)
    out = call(s, p, z, y)
    assert out.shape == () and out.item() == 0.0 and not torch.isnan(out)
    out.backward()


def test_one_pair_in_batch_losses_gives_zero_like_peers():
    z1, z2 = _unit(1, 4, seed=7), _unit(1, 4, seed=8)
    assert losses.nt_xent(z1, z2, 0.5).item() == 0.0
    assert losses.debiased_info_nce(z1, z2, 0.5, tau_plus=0.1).item() == 0.0


def test_metrics_over_nothing_raise():
    with pytest.raises(ValueError, match="at least 1 row"):
        M.alignment(torch.zeros(0, 3), torch.zeros(0, 3))
    with pytest.raises(ValueError, match="at least 2 row"):
        M.uniformity(_unit(1, 3))


# ---- 6. semi-hard fallback -------------------------------------------------------------------


def test_issue_input_semi_hard_default_follows_tf_addons():
    x = torch.tensor([[0.0], [1.0], [0.5], [3.0]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1])
    for fallback in ("beyond", "hardest", "drop"):
        expected = ref.semi_hard_triplet(x, y, 0.2, fallback=fallback)
        got = losses.semi_hard_triplet(x, y, margin=0.2, fallback=fallback)
        assert got.item() == pytest.approx(ref.mean(expected) if expected else 0.0, abs=1e-12)
    # pair (0, 1) alone: d_ap = 1, no negative in (1, 1.2); TF Addons takes the one at 3 -> 0
    pair = ref.semi_hard_triplet(x[:2].tolist() + x[2:].tolist(), y, 0.2, fallback="beyond")
    assert pair[0] == 0.0
    assert ref.semi_hard_triplet(x, y, 0.2, fallback="hardest")[0] == pytest.approx(0.7)
    with pytest.raises(ValueError, match="fallback: expected one of"):
        losses.semi_hard_triplet(x, y, fallback="easy")


@pytest.mark.parametrize("fallback", ["beyond", "hardest", "drop"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_semi_hard_fallbacks_match_loop_reference(fallback, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(10, 2, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (10,), generator=g)
    expected = ref.semi_hard_triplet(x, y, 0.5, fallback=fallback)
    got = losses.semi_hard_triplet(x, y, margin=0.5, fallback=fallback)
    assert got.item() == pytest.approx(ref.mean(expected) if expected else 0.0, abs=1e-12)


# ---- 8. partial-epoch monitor and kNN top-5 --------------------------------------------------


def test_knn_top5_and_tensor_return():
    # 6 classes on a circle; each test point sits between its class and the next one
    angles = torch.arange(6, dtype=torch.float64) * (2 * math.pi / 6)
    train = torch.stack([angles.cos(), angles.sin()], 1)
    ytr = torch.arange(6)
    test = torch.stack([(angles + 0.6).cos(), (angles + 0.6).sin()], 1)  # nearer class i+1
    yte = torch.arange(6)
    top1 = M.knn_accuracy(train, ytr, test, yte, k=2, weighting="uniform")
    top5 = M.knn_accuracy(train, ytr, test, yte, k=2, weighting="uniform", top=5)
    assert isinstance(top1, torch.Tensor) and top1.dim() == 0
    # uniform vote of 2 neighbours ties the two classes: ties go to the smaller label
    pred = M.knn_predict(train, ytr, test, k=2, weighting="uniform")
    assert top1.item() == pytest.approx((pred == yte).double().mean().item())
    assert top5.item() == 1.0
    with pytest.raises(ValueError, match="top: expected a positive int"):
        M.knn_accuracy(train, ytr, test, yte, k=2, top=0)


def test_monitor_normalises_a_partially_updated_bank(monkeypatch):
    from cl_analysis.training import trainer as T

    class Fake:  # the Trainer's state the bank branch of ``monitor`` reads
        bank = MemoryBank(20, 4, generator=torch.Generator().manual_seed(0))  # init: not unit
        labels = torch.arange(20) % 4
        _queries = (_unit(5, 4, seed=9).float(), torch.arange(5) % 4)
        device = torch.device("cpu")

        def embed(self, images):
            return _unit(len(images), 4, seed=10).float()

        def embed_both(self, images):  # backbone h and projection z of the test images
            return _unit(len(images), 6, seed=12).float(), self.embed(images)

        def diagnostics(self, h, z):
            return {}

    Fake.bank.update(torch.tensor([0, 1]), _unit(2, 4, seed=11).float())  # partial epoch
    test = type("TS", (), {"images": torch.zeros(6, 1), "labels": torch.arange(6) % 4,
                           "__len__": lambda self: 6})()
    out = T.Trainer.monitor(Fake(), test)
    assert 0.0 <= out["knn_accuracy"] <= 1.0 and isinstance(out["knn_accuracy"], float)
    assert math.isfinite(out["uniformity"]) and math.isfinite(out["tolerance"])


# ---- 9. plausible numbers from wrong inputs --------------------------------------------------


def test_issue_input_embeddings_or_raw_dot_products_are_refused_with_the_cause():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(32, 128, generator=g)
    with pytest.raises(ValueError, match="did you pass embeddings"):
        losses.info_nce(z, torch.arange(32), 0.2)
    q, b = torch.randn(32, 128, generator=g), torch.randn(64, 128, generator=g)
    for call in (lambda s: losses.info_nce(s, torch.arange(32), 0.2),
                 lambda s: G.gradient_ratio(s, torch.arange(32), 0.2),
                 lambda s: losses.simple(s, torch.arange(32)),
                 lambda s: M.local_separation(s, torch.arange(32))):
        with pytest.raises(ValueError, match="unnormalised dot products"):
            call(q @ b.T)
    # on purpose: the explicit keyword gives the plain formula
    s = q @ b.T
    out = losses.info_nce(s, torch.arange(32), 0.2, unnormalized=True)
    expected = ref.mean(ref.info_nce(s.double(), torch.arange(32), 0.2))
    assert out.item() == pytest.approx(expected, rel=1e-4)
    # rounding above 1 is not an error
    unit = F.normalize(q, dim=1)
    losses.info_nce(unit @ unit.T * (1 + 5e-5), torch.arange(32), 0.2)


def test_issue_input_ambiguous_hyperparameters_are_keyword_only():
    s, p = _sim(3, 5)
    with pytest.raises(TypeError):
        losses.simple(s, p, 0.2)
    with pytest.raises(TypeError):
        losses.hard_simple(s, p, 0.2, k=2)
    with pytest.raises(TypeError):
        losses.hard_info_nce(s, p, 0.2, 2)
    with pytest.raises(TypeError):
        G.truncated_gradient_ratio(s, p, 0.2, 2)
    with pytest.raises(TypeError):
        M.local_separation(s, p, 2)
    assert losses.simple(s, p, lam=0.2).item() == pytest.approx(
        ref.mean(ref.simple(s, p, 0.2)), rel=1e-12)


# ---- 10. messages, units, return types -------------------------------------------------------


@pytest.mark.parametrize("call, match", [
    (lambda: M.tolerance(_unit(32, 4), torch.zeros(32)),
     r"labels: expected an integer dtype, got torch.float32; pass labels.long\(\)"),
    (lambda: M.tolerance(_unit(32, 4), torch.zeros(31, dtype=torch.long)),
     r"labels: expected shape \(32,\)"),
    (lambda: losses.batch_hard_triplet(_unit(4, 2), torch.zeros(4)), "integer dtype"),
    (lambda: M.uniformity(torch.zeros(3)), r"z: expected a 2-D tensor of shape \(N, D\)"),
    (lambda: losses.info_nce(torch.zeros(3), torch.zeros(3, dtype=torch.long), 0.1),
     r"similarity: expected a 2-D tensor of shape \(N, M\)"),
    (lambda: M.knn_accuracy(_unit(20, 3), torch.arange(20) % 2, _unit(4, 3), torch.arange(4) % 2),
     r"got k=200 \(protocol 'instdisc' default\); pass k=min"),
    (lambda: M.knn_accuracy(_unit(20, 3), torch.arange(20) % 2, _unit(4, 3), torch.arange(4) % 2,
                            k=30), r"got k=30 \(you passed\)"),
    (lambda: MemoryBank(4, 2).update(torch.tensor([0.0]), torch.zeros(1, 2)),
     "indices: expected an integer dtype"),
])
def test_messages_name_what_expected_got_and_fix(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_effective_negatives_bounded_by_the_columns_it_was_given():
    s, p = _sim(4, 11)
    eff = G.effective_negatives(s, p, 100.0)
    assert (eff <= 10 + 1e-9).all() and (eff > 9).all()  # near-uniform: close to M - 1 = 10


def test_plot_gradient_ratio_draws_one_line_per_row():
    try:
        from cl_analysis.plots import analysis as pa
    except ImportError as err:  # plots/__init__ imports study.sweep, mid-restructure
        pytest.skip(f"cl_analysis.plots does not import: {err}")
    s, p = _sim(3, 8)
    fig = pa.plot_gradient_ratio(s, p, [0.1, 1.0])
    lines = fig.axes[0].get_lines()
    assert len(lines) == 6  # 3 rows x 2 temperatures
    assert all(len(line.get_xdata()) == 7 for line in lines)
    assert len(fig.axes[0].get_legend().get_texts()) == 2
