"""Analytic gradients of the contrastive loss and the relative penalty on negatives.

Wang & Liu (CVPR 2021), Sec. 3-4. Every function takes the paper's similarity matrix:
``similarity`` is ``(N, M)`` with row i holding s_ij of anchor i against M candidates, and
``positive`` is ``(N,)`` int64 holding the column of each row's positive; all other columns are
negatives. The loss differentiated throughout is the per-anchor Eq. 1,

    L_i = -log[exp(s_ip / tau) / sum_k exp(s_ik / tau)]     (k over all M columns, p = positive),

not the batch mean (divide by N to get the gradient of ``reduction="mean"``).

All computations go through (log-)softmax, so they are stable for any tau > 0. Inputs in
float16/bfloat16 are upcast; float32 and float64 are kept.

Rules (docs/conventions.md): ``temperature`` may be a 0-dim tensor that requires grad (the
result stays differentiable in tau); similarities outside [-1, 1] are refused unless
``unnormalized=True``; ``k`` / ``alpha`` / ``unnormalized`` are keyword-only; N = 0 rows give
``(0, M)`` / ``(0,)`` results; ties at Eq. 8-9's K-th value share the remaining slots
(see :mod:`cl_analysis.losses`).
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

from cl_analysis._checks import check_constant, check_similarity, check_temperature
from cl_analysis.losses import _top_k_weights

__all__ = [
    "similarity_gradient",
    "gradient_ratio",
    "truncated_gradient_ratio",
    "penalty_entropy",
    "effective_negatives",
]


def _prepare(
    similarity: Tensor, positive: Tensor, temperature: float | Tensor, unnormalized: bool = False
) -> tuple[Tensor, Tensor, float | Tensor]:
    """Validate; return (similarity upcast to >= float32, (N, M) bool mask of the positive, tau)."""
    check_similarity(similarity, positive, unnormalized)
    tau = check_temperature(temperature)
    if similarity.dtype not in (torch.float32, torch.float64):
        similarity = similarity.float()
    cols = torch.arange(similarity.shape[1], device=similarity.device)                      # (M,)
    is_pos = cols.unsqueeze(0) == positive.to(similarity.device).long().unsqueeze(1)  # (N, M)
    return similarity, is_pos, tau


def _negative_logits(similarity: Tensor, is_pos: Tensor, tau: float | Tensor) -> Tensor:
    """Logits s / tau with the positive column set to -inf: the logits of r_i (Eq. 5)."""
    return (similarity / tau).masked_fill(is_pos, float("-inf"))          # (N, M)


def similarity_gradient(similarity: Tensor, positive: Tensor, temperature: float | Tensor, *,
                        unnormalized: bool = False) -> Tensor:
    """Analytic gradient dL_i/ds_ij of the per-anchor contrastive loss (paper Eq. 4).

    With P_ij = softmax_j(s_ij / tau) over all M columns (Eq. 2):
    dL_i/ds_ij = P_ij / tau on negatives, and dL_i/ds_ip = -(1/tau) sum_{k != p} P_ik at the
    positive. The positive entry is summed from the negatives rather than computed as
    (P_ip - 1) / tau, which avoids cancellation when P_ip is close to 1.

    Args:
        similarity: (N, M) similarities s_ij.
        positive: (N,) int64 column of each row's positive.
        temperature: tau > 0, a float or a 0-dim tensor (dL/dtau is kept).
        unnormalized: accept similarities outside [-1, 1] (otherwise a ValueError).

    Returns:
        (N, M) gradient of L_i (Eq. 1, per anchor, not averaged) with respect to s_ij. Each row
        sums to zero: the positive's pull balances the total push on the negatives.

    Raises:
        ValueError: on a malformed similarity/positive pair or a non-positive temperature.
    """
    s, is_pos, tau = _prepare(similarity, positive, temperature, unnormalized)
    p = torch.softmax(s / tau, dim=1)                                     # (N, M) Eq. 2
    neg = p.masked_fill(is_pos, 0.0)                                      # (N, M) P_ij, j != p
    pull = -neg.sum(dim=1, keepdim=True)                                  # (N, 1) -sum_{k!=p} P_ik
    return torch.where(is_pos, pull, neg) / tau                           # (N, M)


def gradient_ratio(similarity: Tensor, positive: Tensor, temperature: float | Tensor, *,
                   unnormalized: bool = False) -> Tensor:
    """Relative penalty r_i(s_ij) on each negative (paper Eq. 5).

    r_i(s_ij) = |dL_i/ds_ij| / |dL_i/ds_ip| = exp(s_ij/tau) / sum_{k != p} exp(s_ik/tau), a
    Boltzmann distribution over the negatives: smaller tau concentrates it on the hardest ones.

    Args:
        similarity: (N, M) similarities s_ij.
        positive: (N,) int64 column of each row's positive.
        temperature: tau > 0, a float or a 0-dim tensor (dL/dtau is kept).
        unnormalized: accept similarities outside [-1, 1] (otherwise a ValueError).

    Returns:
        (N, M) ratios; each row sums to 1 over the negatives and is 0 at the positive.
    """
    s, is_pos, tau = _prepare(similarity, positive, temperature, unnormalized)
    return torch.softmax(_negative_logits(s, is_pos, tau), dim=1)        # (N, M)


def truncated_gradient_ratio(
    similarity: Tensor,
    positive: Tensor,
    temperature: float | Tensor,
    *,
    k: int | None = None,
    alpha: float | None = None,
    unnormalized: bool = False,
) -> Tensor:
    """Relative penalty under explicit hard-negative truncation (paper Eq. 8).

    Only the informative interval [s_alpha, 1] keeps a penalty, renormalised over it:
    r_i(s_il) = exp(s_il/tau) / sum_{s_ik >= s_alpha} exp(s_ik/tau); negatives below s_alpha get 0.
    The threshold s_alpha is the k-th largest negative similarity of the row. Give either ``k``
    (the k hardest negatives; the paper's code keeps 4095) or ``alpha`` (the upper-alpha quantile
    of the negatives, k = ceil(alpha * (M - 1))). Ties at the threshold follow the package's
    Eq. 9 rule: the n_t negatives equal to s_alpha share the K - n_above remaining slots (weight
    (K - n_above) / n_t each), so this is exactly the normalised gradient of
    ``losses.hard_info_nce(..., k=k)`` on its negatives, on any device.

    Args:
        similarity: (N, M) similarities s_ij.
        positive: (N,) int64 column of each row's positive.
        temperature: tau > 0, a float or a 0-dim tensor (dL/dtau is kept).
        unnormalized: accept similarities outside [-1, 1] (otherwise a ValueError).
        k: number of hardest negatives kept, 1 <= k <= M - 1.
        alpha: fraction of negatives kept, 0 < alpha <= 1.

    Returns:
        (N, M) truncated ratios: rows sum to 1, zero at the positive and outside the interval.

    Raises:
        ValueError: unless exactly one of ``k`` / ``alpha`` is given and in range.
    """
    s, is_pos, tau = _prepare(similarity, positive, temperature, unnormalized)
    m = s.shape[1]
    if (k is None) == (alpha is None):
        raise ValueError("k, alpha: expected exactly one of them, got "
                         f"k={k!r}, alpha={alpha!r}; pass k= (hardest negatives kept) or alpha=")
    if alpha is not None:
        check_constant("alpha", alpha)
        if not 0.0 < float(alpha) <= 1.0:
            raise ValueError(f"alpha: expected a fraction in (0, 1], got {alpha!r}; the paper "
                             f"uses 0.0819")
        k = max(1, math.ceil(round(float(alpha) * (m - 1), 9)))
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= m - 1:
        raise ValueError(f"k: expected an int in [1, M - 1] = [1, {m - 1}], got {k!r}; lower k")
    logits = _negative_logits(s, is_pos, tau)                             # (N, M)
    w = _top_k_weights(s.masked_fill(is_pos, float("-inf")), int(k))     # (N, M) tie-shared
    return torch.softmax(logits + w.log(), dim=1)                         # (N, M)


def penalty_entropy(similarity: Tensor, positive: Tensor, temperature: float | Tensor, *,
                    unnormalized: bool = False) -> Tensor:
    """Shannon entropy (nats) of the relative penalty distribution r_i (paper Eq. 5).

    H(r_i) = -sum_{j != p} r_ij log r_ij. It grows strictly with tau (unless all negatives are
    equally similar): dH/dtau = Var_{r_i}(s_i) / tau^3 >= 0. It tends to log(M - 1) as
    tau -> inf (uniform penalty, the simple loss of Eq. 3) and to 0 as tau -> 0 with distinct
    similarities (only the hardest negative is penalised, Eq. 6).

    Args:
        similarity: (N, M) similarities s_ij.
        positive: (N,) int64 column of each row's positive.
        temperature: tau > 0, a float or a 0-dim tensor (dL/dtau is kept).
        unnormalized: accept similarities outside [-1, 1] (otherwise a ValueError).

    Returns:
        (N,) entropy of each anchor's penalty distribution, in [0, log(M - 1)].
    """
    s, is_pos, tau = _prepare(similarity, positive, temperature, unnormalized)
    log_r = torch.log_softmax(_negative_logits(s, is_pos, tau), dim=1)   # (N, M), -inf at p
    r = log_r.exp()                                                       # (N, M), 0 at p
    plogp = r * log_r.masked_fill(is_pos, 0.0)                            # (N, M), 0 at p
    return (-plogp.sum(dim=1)).clamp_min(0.0)                             # (N,)


def effective_negatives(similarity: Tensor, positive: Tensor, temperature: float | Tensor, *,
                        unnormalized: bool = False) -> Tensor:
    """Effective number of penalised negatives, exp(H(r_i)) (perplexity of Eq. 5).

    Equals M - 1 when every negative is penalised equally and 1 when a single hardest negative
    takes the whole penalty. The bound M - 1 is the number of negatives in *this* similarity
    matrix, not the training bank: evaluated on test-vs-test similarities (M = 10,000 for
    CIFAR-10, as ``evaluation.evaluate_model``'s ``effective_negatives``) it can exceed a
    5,000-entry bank; the bank-protocol value is ``effective_negatives_bank``.

    Args:
        similarity: (N, M) similarities s_ij.
        positive: (N,) int64 column of each row's positive.
        temperature: tau > 0, a float or a 0-dim tensor (dL/dtau is kept).
        unnormalized: accept similarities outside [-1, 1] (otherwise a ValueError).

    Returns:
        (N,) values in [1, M - 1].
    """
    return penalty_entropy(similarity, positive, temperature,
                           unnormalized=unnormalized).exp()               # (N,)
