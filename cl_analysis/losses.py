"""The contrastive-loss family of Wang & Liu (CVPR 2021) and SimCLR's NT-Xent, as pure functions.

Similarity-matrix losses follow docs/architecture.md: ``similarity`` is ``(N, M)``, row i holding
s_ij of anchor i against M candidates; ``positive`` is ``(N,)`` int64, the column of each row's
positive; every other column is a negative. Equation numbers are the paper's (paper.md §1), NT-Xent
is SimCLR's (paper.md §5). All math runs in float32 at least: bf16/fp16 inputs are upcast and
autocast is switched off inside, so results are float32 (float64 for float64 inputs). The
metric-learning and debiased/hard-negative losses live in :mod:`cl_analysis.metric_losses` and are
re-exported here.

Rules (docs/conventions.md; each is a test in tests/test_robustness.py):

* **Similarities** must lie in [-1, 1] up to rounding, or a ValueError names the likely cause
  (embeddings or unnormalised dot products passed as ``similarity``); ``unnormalized=True``
  accepts other values on purpose.
* **Keyword-only hyperparameters**: ``(similarity, positive[, temperature])`` are positional,
  everything else (``k``, ``alpha``, ``lam``, ``reduction``, ``unnormalized``) is keyword-only,
  so ``simple(S, pos, 0.2)`` cannot take 0.2 as lambda by accident.
* **Learnable temperature**: a 0-dim tensor tau keeps its gradient; ``lam`` refuses a
  requires-grad tensor.
* **Empty batch**: "mean" over N = 0 anchors is a graph-connected 0 (see ``metric_losses``).
* **Ties in Eq. 9's top-K** are shared: with the K-th largest negative similarity t, every
  negative above t enters with weight 1 and the n_t negatives equal to t share the remaining
  K - n_above slots, weight (K - n_above) / n_t each. The value equals the top-K value; the
  gradient is split evenly over the tied columns, so it is device-independent and
  permutation-equivariant (``hard_info_nce``, ``hard_simple``,
  ``gradients.truncated_gradient_ratio``; ``metrics.local_separation`` reports values, which
  ties do not change).
"""

from __future__ import annotations

import math
import operator

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import (
    check_choice,
    check_constant,
    check_finite,
    check_matrix,
    check_similarity,
    check_temperature,
)
from .metric_losses import (  # the metric family, re-exported, and shared numeric helpers
    REDUCTIONS,
    _dtype,
    _no_autocast,
    _reduce,
    _two_views,
    batch_hard_triplet,
    debiased_info_nce,
    hcl_info_nce,
    margin_contrastive,
    semi_hard_triplet,
    supcon,
    triplet,
)

__all__ = [
    "REDUCTIONS",
    "info_nce",
    "simple",
    "hard_info_nce",
    "hard_simple",
    "tau_zero_limit",
    "cosine_similarity",
    "simclr_similarity",
    "nt_xent",
    "margin_contrastive",
    "triplet",
    "batch_hard_triplet",
    "semi_hard_triplet",
    "supcon",
    "debiased_info_nce",
    "hcl_info_nce",
]


def _prepare(similarity: Tensor, positive: Tensor, reduction: str,
             unnormalized: bool = False) -> tuple[Tensor, Tensor]:
    """Validate the paper's similarity matrix; return it upcast and ``positive`` as ``(N, 1)``."""
    check_similarity(similarity, positive, unnormalized)
    check_choice("reduction", reduction, REDUCTIONS)
    return similarity.to(_dtype(similarity)), positive.long().unsqueeze(1)


def _num_hard(num_negatives: int, k: int | None, alpha: float | None) -> int:
    """Number of hard negatives of Eq. 9: ``k``, ``max(1, ceil(alpha * (M-1)))``, or all."""
    if k is not None and alpha is not None:
        raise ValueError("k and alpha: expected one of them, got both; pass k (top-k negatives) "
                         "or alpha (a fraction of them)")
    if alpha is not None:
        check_constant("alpha", alpha)
        a = float(alpha)
        if not 0.0 < a <= 1.0:  # also rejects NaN
            raise ValueError(f"alpha: expected a fraction in (0, 1], got {alpha!r}; the paper "
                             f"keeps 4095 / 50000 = 0.0819")
        return max(1, math.ceil(round(a * num_negatives, 9)))  # round: 0.1 * 30 -> 3, not 4
    if k is None:
        return num_negatives
    try:
        k = operator.index(k)
    except TypeError:
        raise ValueError(f"k: expected an integer, got {k!r}; pass e.g. k=4095") from None
    if not 1 <= k <= num_negatives:
        raise ValueError(f"k: expected an integer in [1, {num_negatives}] (the number of "
                         f"negatives), got {k}; lower k or pass alpha")
    return k


def _top_k_weights(negatives: Tensor, k: int) -> Tensor:
    """Weights ``(N, M)`` of Eq. 9's K hardest entries per row, ties shared (the tie rule).

    ``negatives`` is ``(N, M)`` with excluded entries (the positive) at -inf. With t the K-th
    largest value of a row: weight 1 above t, (K - n_above) / n_tied on entries equal to t, 0
    below. Each row's weights sum to K; the weights carry no gradient.
    """
    x = negatives.detach()
    t = x.topk(k, dim=1).values[:, -1:]  # (N, 1) K-th largest (values are device-independent)
    above, tied = x > t, x == t  # (N, M)
    n_above = above.sum(1, keepdim=True).to(x.dtype)  # (N, 1)
    share = (k - n_above) / tied.sum(1, keepdim=True).to(x.dtype)  # (N, 1) in x's precision
    return torch.where(above, 1.0, torch.where(tied, share, 0.0)).to(x.dtype)


def _check_lam(lam: float) -> float:
    """Return the weight lambda of Eq. 3 as a float, or raise if it is not finite and >= 0."""
    check_constant("lam", lam)
    value = float(lam)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"lam: expected a finite number >= 0, got {lam!r}; the default 1/(M-1) "
                         f"averages the negatives")
    return value


def info_nce(
    similarity: Tensor, positive: Tensor, temperature: float | Tensor, *,
    reduction: str = "mean", unnormalized: bool = False,
) -> Tensor:
    """Contrastive (InfoNCE) loss of Eq. 1, positive in the denominator.

    L_i = -log[exp(s_ip/tau) / sum_k exp(s_ik/tau)] = logsumexp_k(s_ik/tau) - s_ip/tau, evaluated
    with the fused, max-shifted log-softmax kernel (never exp-then-log).

    Args:
        temperature: tau > 0, a float or a 0-dim tensor (dL/dtau is kept).
        similarity: ``(N, M)`` similarities in [-1, 1] of N anchors against M candidates.
        positive: ``(N,)`` int64 column of each row's positive.
        reduction: "mean" | "sum" | "none" (-> ``(N,)``); "mean" of N = 0 is a graph-connected 0.
        unnormalized: accept values outside [-1, 1] (otherwise a ValueError names the likely
            cause: embeddings or unnormalised dot products passed as ``similarity``).

    Returns:
        The reduced loss, float32 (float64 for float64 inputs).

    Raises:
        ValueError: malformed inputs, tau <= 0, or similarities outside [-1, 1].
    """
    temperature = check_temperature(temperature)
    s, pos = _prepare(similarity, positive, reduction, unnormalized)
    with _no_autocast(s):
        loss = F.cross_entropy(s / temperature, pos.squeeze(1), reduction="none")  # (N,)
    return _reduce(loss, reduction)


def simple(
    similarity: Tensor, positive: Tensor, *, lam: float | None = None, reduction: str = "mean",
    unnormalized: bool = False,
) -> Tensor:
    """Simple contrastive loss of Eq. 3, L_i = -s_ip + lam * sum_{j != p} s_ij (not hardness-aware).

    The paper leaves lambda open; the default 1/(M-1) averages over the negatives, which makes
    ((M-1)/M) * simple the tau -> inf limit of tau * (info_nce - log M) (Eq. 7). The authors' code
    (``FlatLoss``) instead uses lambda = 1/N summed over all bank entries including the positive.
    ``lam`` is keyword-only (``simple(S, pos, 0.2)`` is a TypeError, not lambda = 0.2).

    Args:
        lam: weight of the negative sum, a constant >= 0; ``None`` -> 1/(M-1).
        similarity: ``(N, M)`` similarities in [-1, 1] of N anchors against M candidates.
        positive: ``(N,)`` int64 column of each row's positive.
        reduction: "mean" | "sum" | "none" (-> ``(N,)``); "mean" of N = 0 is a graph-connected 0.
        unnormalized: accept values outside [-1, 1] (otherwise a ValueError names the likely
            cause: embeddings or unnormalised dot products passed as ``similarity``).

    Returns:
        The reduced loss, float32 (float64 for float64 inputs).
    """
    s, pos = _prepare(similarity, positive, reduction, unnormalized)
    lam = 1.0 / (s.shape[1] - 1) if lam is None else _check_lam(lam)
    with _no_autocast(s):
        s_pos = s.gather(1, pos).squeeze(1)  # (N,)
        loss = -s_pos + lam * (s.sum(1) - s_pos)  # (N,)
    return _reduce(loss, reduction)


def _hard_weights(s: Tensor, pos: Tensor, k: int) -> Tensor:
    """Eq. 9's tie-shared weights ``(N, M)`` of the ``k`` hardest negatives (0 at the positive)."""
    return _top_k_weights(s.scatter(1, pos, float("-inf")), k)


def hard_info_nce(
    similarity: Tensor, positive: Tensor, temperature: float | Tensor, *,
    k: int | None = None, alpha: float | None = None, reduction: str = "mean",
    unnormalized: bool = False,
) -> Tensor:
    """Hard contrastive loss of Eq. 9: only the hardest negatives and the positive in the softmax.

    The hard set is the ``k`` most similar negatives, or with ``alpha`` the upper-alpha fraction of
    them, k = max(1, ceil(alpha * (M-1))). With neither, all negatives are kept (= ``info_nce``).
    Ties at the K-th value share the remaining slots evenly (module docstring): for the row
    [0.2 (positive), 0.5, 0.5, 0.5, 0.1, -0.3], k = 2, each 0.5 gets weight 2/3 and a third of
    the gradient on any device. The paper's runs use k = 4095.

    Args:
        temperature: tau > 0, a float or a 0-dim tensor (dL/dtau is kept).
        k: number of hard negatives, 1 <= k <= M-1.
        alpha: fraction of hard negatives in (0, 1]; exclusive with ``k``.
        similarity: ``(N, M)`` similarities in [-1, 1] of N anchors against M candidates.
        positive: ``(N,)`` int64 column of each row's positive.
        reduction: "mean" | "sum" | "none" (-> ``(N,)``); "mean" of N = 0 is a graph-connected 0.
        unnormalized: accept values outside [-1, 1] (otherwise a ValueError names the likely
            cause: embeddings or unnormalised dot products passed as ``similarity``).

    Returns:
        The reduced loss, float32 (float64 for float64 inputs).
    """
    if k is None and alpha is None:
        return info_nce(similarity, positive, temperature, reduction=reduction,
                        unnormalized=unnormalized)
    temperature = check_temperature(temperature)
    s, pos = _prepare(similarity, positive, reduction, unnormalized)
    num_hard = _num_hard(s.shape[1] - 1, k, alpha)
    with _no_autocast(s):
        w = _hard_weights(s, pos, num_hard)  # (N, M), sums to k per row
        logits = s / temperature + w.log()  # (N, M) log(w e^{s/tau}), -inf off the hard set
        logits = logits.scatter(1, pos, s.gather(1, pos) / temperature)  # positive, weight 1
        loss = torch.logsumexp(logits, 1) - logits.gather(1, pos).squeeze(1)  # (N,)
    return _reduce(loss, reduction)


def hard_simple(
    similarity: Tensor, positive: Tensor, *, k: int | None = None, alpha: float | None = None,
    lam: float | None = None, reduction: str = "mean", unnormalized: bool = False,
) -> Tensor:
    """HardSimple (paper §5.5): Eq. 3 over the k hardest negatives, -s_ip + lam * sum_{top-k} s_ij.

    Ties at the K-th value share the remaining slots (module docstring), as in ``hard_info_nce``.

    Args:
        k: number of hard negatives, 1 <= k <= M-1 (``None`` and no ``alpha`` -> all).
        alpha: fraction of hard negatives in (0, 1], k = max(1, ceil(alpha * (M-1))).
        lam: weight of the hard-negative sum, a constant >= 0; ``None`` -> 1/k (their mean).
        similarity: ``(N, M)`` similarities in [-1, 1] of N anchors against M candidates.
        positive: ``(N,)`` int64 column of each row's positive.
        reduction: "mean" | "sum" | "none" (-> ``(N,)``); "mean" of N = 0 is a graph-connected 0.
        unnormalized: accept values outside [-1, 1] (otherwise a ValueError names the likely
            cause: embeddings or unnormalised dot products passed as ``similarity``).

    Returns:
        The reduced loss, float32 (float64 for float64 inputs).
    """
    s, pos = _prepare(similarity, positive, reduction, unnormalized)
    num_hard = _num_hard(s.shape[1] - 1, k, alpha)
    lam = 1.0 / num_hard if lam is None else _check_lam(lam)
    with _no_autocast(s):
        w = _hard_weights(s, pos, num_hard)  # (N, M)
        hard = torch.where(w > 0, w * s, 0.0).sum(1)  # (N,) sum of the top-k values
        loss = -s.gather(1, pos).squeeze(1) + lam * hard  # (N,)
    return _reduce(loss, reduction)


def tau_zero_limit(similarity: Tensor, positive: Tensor, *, reduction: str = "mean",
                   unnormalized: bool = False) -> Tensor:
    """The tau -> 0+ limit of tau * info_nce (Eq. 6): max(max_{j != p} s_ij - s_ip, 0).

    A triplet loss with margin 0 against the single nearest negative.

    Args:
        similarity: ``(N, M)`` similarities in [-1, 1] of N anchors against M candidates.
        positive: ``(N,)`` int64 column of each row's positive.
        reduction: "mean" | "sum" | "none" (-> ``(N,)``); "mean" of N = 0 is a graph-connected 0.
        unnormalized: accept values outside [-1, 1] (otherwise a ValueError names the likely
            cause: embeddings or unnormalised dot products passed as ``similarity``).

    Returns:
        The reduced loss, float32 (float64 for float64 inputs).
    """
    s, pos = _prepare(similarity, positive, reduction, unnormalized)
    with _no_autocast(s):
        s_max = s.scatter(1, pos, float("-inf")).amax(1)  # (N,) nearest negative
        loss = (s_max - s.gather(1, pos).squeeze(1)).clamp_min(0)  # (N,)
    return _reduce(loss, reduction)


def cosine_similarity(a: Tensor, b: Tensor) -> Tensor:
    """Cosine similarities of every row of ``a`` with every row of ``b`` (rows L2-normalised).

    Args:
        a: ``(N, D)`` anchors.
        b: ``(M, D)`` candidates.

    Returns:
        ``(N, M)`` similarities in [-1, 1], float32 (float64 if an input is float64).
    """
    check_matrix("a", a)
    check_matrix("b", b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b need the same dim D, got {tuple(a.shape)} and {tuple(b.shape)}")
    check_finite("a", a)
    check_finite("b", b)
    dtype = _dtype(a, b)
    with _no_autocast(a):
        return F.normalize(a.to(dtype), dim=1) @ F.normalize(b.to(dtype), dim=1).T  # (N, M)


def simclr_similarity(z1: Tensor, z2: Tensor) -> tuple[Tensor, Tensor]:
    """SimCLR's in-batch similarity matrix without self-pairs, for the whole loss family.

    Row a of the 2N anchors (z1 then z2) holds its cosine similarity to the 2N-1 other samples;
    its positive is the other view of the same image. ``info_nce`` on it is ``nt_xent``.

    Args:
        z1: ``(N, D)`` projections of view 1.
        z2: ``(N, D)`` projections of view 2; z2[i] is the positive of z1[i].

    Returns:
        ``(similarity (2N, 2N-1), positive (2N,) int64)``.
    """
    u = _two_views(z1, z2)  # (2N, D)
    n2 = u.shape[0]
    if n2 < 4:
        raise ValueError(f"z1, z2: expected N >= 2 pairs (each anchor needs a negative), got "
                         f"N = {n2 // 2}; nt_xent / debiased_info_nce accept N < 2 (loss 0)")
    with _no_autocast(u):
        full = u @ u.T  # (2N, 2N)
    # Dropping element 0 lines the off-diagonal entries up as (2N-1, 2N+1) rows whose last entry
    # is the next diagonal element: drop that column too and re-read as (2N, 2N-1).
    similarity = full.flatten()[1:].view(n2 - 1, n2 + 1)[:, :-1].reshape(n2, n2 - 1)
    half = torch.arange(n2 // 2, device=u.device)
    positive = torch.cat([half + n2 // 2 - 1, half])  # (2N,) columns shift left past the self
    return similarity, positive


def nt_xent(z1: Tensor, z2: Tensor, temperature: float | Tensor, *,
            reduction: str = "mean") -> Tensor:
    """SimCLR's NT-Xent loss (Chen et al. 2020, paper.md §5).

    l(i, j) = -log[exp(sim(z_i, z_j)/tau) / sum_{k != i} exp(sim(z_i, z_k)/tau)] over the 2N
    samples: each anchor has one positive (its other view, kept in the denominator) and 2N-2
    negatives; the mean runs over all 2N anchors. Equal to
    ``info_nce(*simclr_similarity(z1, z2), temperature)``, but computed faster: one ``(2N, 2N)``
    matmul with 1/tau folded into the ``(2N, D)`` factor, the self-pairs masked to -inf in place,
    and the fused log-softmax cross-entropy (no sliced or concatenated copies of the logits).
    A single pair (N = 1) has no negatives and gives exactly 0, like lightly and
    pytorch-metric-learning; N = 0 gives the graph-connected 0 of the empty-batch rule.

    Args:
        z1: ``(N, D)`` projections of view 1 (normalised here).
        z2: ``(N, D)`` projections of view 2; z2[i] is the positive of z1[i].
        temperature: tau > 0, a float or a 0-dim tensor (dL/dtau is kept).
        reduction: "mean" | "sum" | "none" (-> ``(2N,)``, z1's anchors first).

    Returns:
        The reduced loss, float32 (float64 for float64 inputs).
    """
    temperature = check_temperature(temperature)
    check_choice("reduction", reduction, REDUCTIONS)
    u = _two_views(z1, z2)  # (2N, D)
    n = z1.shape[0]
    with _no_autocast(u):
        logits = torch.mm(u * (1.0 / temperature), u.T)  # (2N, 2N)
        logits.fill_diagonal_(-math.inf)  # self-pairs leave the softmax
        target = torch.arange(2 * n, device=u.device).roll(n)  # (2N,) i <-> i + N
        loss = F.cross_entropy(logits, target, reduction="none")  # (2N,)
    return _reduce(loss, reduction)

# The weighting lens (issue 11): re-weighted InfoNCE variants live in weighting.py.
from .weighting import decoupled_info_nce, dual_temperature_info_nce, flat_nce, macl  # noqa: E402

__all__ += ["decoupled_info_nce", "flat_nce", "macl", "dual_temperature_info_nce"]
