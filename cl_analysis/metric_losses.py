"""Metric-learning and hard-negative contrastive losses (paper.md §7-8), re-exported by ``losses``.

Each function names the paper and equation it follows. This module is the lower layer:
:mod:`cl_analysis.losses` imports it (and the small numeric helpers below), so it must never
import ``losses``. As there, math runs in float32 at least with autocast off, and results are
float32 (float64 for float64 inputs).

Rules shared by every loss here and in :mod:`cl_analysis.losses` (docs/conventions.md):

* **Empty batch.** ``reduction="mean"`` over nothing is a graph-connected 0 (backward gives zero
  gradients, never NaN), ``"sum"`` is 0, ``"none"`` is an empty ``(0,)`` tensor.
* **Temperature** may be a 0-dim tensor that requires grad; dL/dtau flows. The other
  hyperparameters (``margin``, ``beta``, ``tau_plus``, ``lam``) are constants: a requires-grad
  tensor is refused with a ValueError.
* **Zero distance.** Distances are differentiated with the subgradient 0 at coincident points,
  so no NaN reaches an encoder.
* Hyperparameters after the tensors and the temperature are **keyword-only**.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import (
    check_choice,
    check_constant,
    check_finite,
    check_index_vector,
    check_matrix,
    check_temperature,
)

__all__ = ["margin_contrastive", "triplet", "batch_hard_triplet", "semi_hard_triplet", "supcon",
           "debiased_info_nce", "hcl_info_nce"]

REDUCTIONS = ("mean", "sum", "none")


def _dtype(*xs: Tensor) -> torch.dtype:
    """Math dtype for ``xs``: float64 if any input is float64, else float32 (bf16/fp16 upcast)."""
    return torch.float64 if any(x.dtype == torch.float64 for x in xs) else torch.float32


def _no_autocast(x: Tensor) -> torch.autocast:
    """Context that switches autocast off on ``x``'s device so the loss math stays >= float32."""
    return torch.autocast(x.device.type, enabled=False)


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    """Apply ``reduction`` ("mean" | "sum" | "none") to per-sample losses ``(N,)``.

    "mean" of an empty batch is the graph-connected 0 ``loss.sum()`` (the empty-batch rule).
    """
    if reduction == "mean":
        return loss.mean() if loss.numel() else loss.sum()
    return loss.sum() if reduction == "sum" else loss


def _same_shape(name1: str, x1: Tensor, name2: str, x2: Tensor) -> None:
    """Raise unless ``x1`` and ``x2`` are finite 2-D floating tensors of one shape."""
    check_matrix(name1, x1)
    check_matrix(name2, x2)
    if x1.shape != x2.shape:
        raise ValueError(f"{name1} and {name2} must have the same shape (N, D), got "
                         f"{tuple(x1.shape)} and {tuple(x2.shape)}")
    check_finite(name1, x1)
    check_finite(name2, x2)


def _two_views(z1: Tensor, z2: Tensor) -> Tensor:
    """Validate SimCLR's two views ``(N, D)`` each; return ``(2N, D)`` L2-normalised rows."""
    _same_shape("z1", z1, "z2", z2)
    with _no_autocast(z1):
        return F.normalize(torch.cat([z1, z2]).to(_dtype(z1, z2)), dim=1)  # (2N, D)


def _check_labels(name: str, labels: Tensor, n: int) -> Tensor:
    """Raise unless ``labels`` is an integer or bool tensor of shape ``(n,)``; return it."""
    return check_index_vector(name, labels, n, allow_bool=True)


def _check_nonneg(name: str, value: float, upper: float = math.inf) -> float:
    """Return ``value`` as a float, or raise unless 0 <= value < ``upper`` and finite.

    A tensor that requires grad is refused (only the temperature is learnable).
    """
    check_constant(name, value)
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if not (math.isfinite(v) and 0.0 <= v < upper):
        bound = f" and < {upper:g}" if math.isfinite(upper) else ""
        raise ValueError(f"{name}: expected a finite number >= 0{bound}, got {value!r}")
    return v


def _distances(x: Tensor, squared: bool) -> Tensor:
    """Pairwise Euclidean distances ``(N, N)`` from exact differences (zero on the diagonal)."""
    d = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")  # (N, N)
    return d.square() if squared else d


def margin_contrastive(
    x1: Tensor, x2: Tensor, same: Tensor, *, margin: float = 1.0, reduction: str = "mean"
) -> Tensor:
    """Margin contrastive loss (Chopra et al. 2005; Hadsell et al. 2006), paper.md §8.1.

    L = same * d^2 + (1 - same) * max(0, margin - d)^2 with d = ||x1 - x2||_2 (Weng's form;
    Hadsell et al. scale both terms by 1/2).

    Args:
        x1: ``(N, D)`` first embeddings.
        x2: ``(N, D)`` second embeddings.
        same: ``(N,)`` bool (or 0/1 numbers): 1 if the pair shares a class.
        margin: distance below which different-class pairs are penalised, >= 0.
        reduction: "mean" | "sum" | "none" (-> ``(N,)``).

    Returns:
        The reduced loss, float32 (float64 for float64 inputs).
    """
    _same_shape("x1", x1, "x2", x2)
    n = x1.shape[0]
    if not isinstance(same, Tensor) or same.shape != (n,) or not ((same == 0) | (same == 1)).all():
        got = tuple(same.shape) if isinstance(same, Tensor) else type(same).__name__
        raise ValueError(f"same: expected a bool (or 0/1) tensor of shape ({n},), got {got}; pass "
                         f"labels1 == labels2")
    margin = _check_nonneg("margin", margin)
    check_choice("reduction", reduction, REDUCTIONS)
    with _no_autocast(x1):
        diff = x1.to(_dtype(x1, x2)) - x2.to(_dtype(x1, x2))  # (N, D)
        d = torch.linalg.vector_norm(diff, dim=1)  # (N,)
        loss = torch.where(same.bool(), diff.square().sum(1), (margin - d).clamp_min(0).square())
    return _reduce(loss, reduction)


def triplet(anchor: Tensor, positive: Tensor, negative: Tensor, *, margin: float = 0.2,
            squared: bool = False, reduction: str = "mean") -> Tensor:
    """Triplet hinge loss of FaceNet (Schroff et al. 2015, §3), the formula of paper.md §8.2.

    L = max(0, d(a, p) - d(a, n) + margin); FaceNet uses squared distances (``squared=True``),
    the default is the plain Euclidean distance of ``torch.nn.TripletMarginLoss``.

    Args:
        anchor: ``(N, D)`` anchors.
        positive: ``(N, D)`` positives, same class as the anchor.
        negative: ``(N, D)`` negatives.
        margin: alpha >= 0 (FaceNet: 0.2).
        squared: use squared Euclidean distances.
        reduction: "mean" | "sum" | "none" (-> ``(N,)``).

    Returns:
        The reduced loss, float32 (float64 for float64 inputs).
    """
    _same_shape("anchor", anchor, "positive", positive)
    _same_shape("anchor", anchor, "negative", negative)
    margin = _check_nonneg("margin", margin)
    check_choice("reduction", reduction, REDUCTIONS)
    dtype = _dtype(anchor, positive, negative)
    with _no_autocast(anchor):
        a, p, n = anchor.to(dtype), positive.to(dtype), negative.to(dtype)
        d_ap = torch.linalg.vector_norm(a - p, dim=1)  # (N,)
        d_an = torch.linalg.vector_norm(a - n, dim=1)  # (N,)
        if squared:
            d_ap, d_an = d_ap.square(), d_an.square()
        loss = (d_ap - d_an + margin).clamp_min(0)  # (N,)
    return _reduce(loss, reduction)


def _label_masks(embeddings: Tensor, labels: Tensor, margin: float) -> tuple[Tensor, Tensor, float]:
    """Validate a labelled batch; return (same-label mask ``(N, N)``, positive mask, margin)."""
    check_matrix("embeddings", embeddings)
    check_finite("embeddings", embeddings)
    labels = _check_labels("labels", labels, embeddings.shape[0])
    same = labels[:, None] == labels[None, :]  # (N, N)
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same, same & ~eye, _check_nonneg("margin", margin)


def _mean_or_zero(loss: Tensor, embeddings: Tensor) -> Tensor:
    """Mean of ``loss``, or a graph-connected 0 when there is nothing to average."""
    return loss.mean() if loss.numel() else embeddings.sum() * 0.0


def batch_hard_triplet(
    embeddings: Tensor, labels: Tensor, *, margin: float = 0.2, squared: bool = False
) -> Tensor:
    """Batch-hard triplet loss L_BH (Hermans, Beyer & Leibe 2017, "In Defense of the Triplet Loss").

    For each anchor a: max(0, margin + max_{p: y_p = y_a, p != a} d(a, p) - min_{n: y_n != y_a}
    d(a, n)), averaged over the anchors that have both a positive and a negative.

    Args:
        embeddings: ``(N, D)`` embeddings.
        labels: ``(N,)`` integer class labels.
        margin: hinge margin >= 0.
        squared: use squared Euclidean distances (Hermans et al. use plain ones).

    Returns:
        Scalar mean loss, float32 (float64 for float64 inputs).
    """
    same, pos_mask, margin = _label_masks(embeddings, labels, margin)
    if not len(labels):  # empty batch: nothing to mine
        return _mean_or_zero(embeddings.new_zeros(0), embeddings)
    with _no_autocast(embeddings):
        d = _distances(embeddings.to(_dtype(embeddings)), squared)  # (N, N)
        hardest_pos = d.masked_fill(~pos_mask, -math.inf).amax(1)  # (N,)
        hardest_neg = d.masked_fill(same, math.inf).amin(1)  # (N,)
        valid = pos_mask.any(1) & ~same.all(1)  # (N,) anchors with a positive and a negative
        loss = (hardest_pos - hardest_neg + margin)[valid].clamp_min(0)
    return _mean_or_zero(loss, embeddings)


SEMI_HARD_FALLBACKS = ("beyond", "hardest", "drop")


def semi_hard_triplet(
    embeddings: Tensor, labels: Tensor, *, margin: float = 0.2, squared: bool = False,
    fallback: str = "beyond",
) -> Tensor:
    """Semi-hard triplet loss (FaceNet, Schroff et al. 2015, §3.2) over all anchor-positive pairs.

    For each pair (a, p) the negative is the closest one farther than the positive,
    d(a, n) > d(a, p) (FaceNet's semi-hard condition; the hinge is nonzero only if it also lies
    within the margin). ``fallback`` says what a pair with *no* negative beyond d(a, p) uses:

    * ``"beyond"`` (default, TensorFlow Addons' ``triplet_semihard_loss``, following FaceNet's
      rule of avoiding the hardest negatives): the farthest negative, max_n d(a, n).
    * ``"hardest"``: a pair without a negative inside (d(a, p), d(a, p) + margin) takes the
      hardest negative min_n d(a, n) (this package before issue 9).
    * ``"drop"``: a pair without a negative inside (d(a, p), d(a, p) + margin) is left out of the
      mean (pytorch-metric-learning's semi-hard miner keeps no triplet for it).

    Example (issue 9): points [[0], [1], [0.5], [3]], labels [0, 0, 1, 1], margin 0.2: pair (0, 1)
    has d_ap = 1 and takes the negative at 3, loss 0 (the "hardest" fallback would give 0.7).
    The loss max(0, d(a, p) - d(a, n) + margin) is averaged over the pairs kept whose anchor has a
    negative; with none, a graph-connected 0.

    Args:
        embeddings: ``(N, D)`` embeddings.
        labels: ``(N,)`` integer class labels.
        margin: hinge margin >= 0.
        squared: use squared Euclidean distances (as FaceNet does).
        fallback: "beyond" | "hardest" | "drop", see above.

    Returns:
        Scalar mean loss, float32 (float64 for float64 inputs).
    """
    check_choice("fallback", fallback, SEMI_HARD_FALLBACKS)
    same, pos_mask, margin = _label_masks(embeddings, labels, margin)
    n = len(labels)
    with _no_autocast(embeddings):
        d = _distances(embeddings.to(_dtype(embeddings)), squared)  # (N, N)
        neg_sorted = d.masked_fill(same, math.inf).sort(1).values  # (N, N) negatives ascending
        first = torch.searchsorted(neg_sorted.detach(), d.detach(), right=True)  # (N, N) > d(a,p)
        nearest = neg_sorted.gather(1, first.clamp_max(n - 1))  # (N, N) closest farther negative
        n_neg = (~same).sum(1, keepdim=True)  # (N, 1) negatives of each anchor
        beyond = first < n_neg  # (N, N) a negative lies beyond d(a, p)
        farthest = neg_sorted.gather(1, (n_neg - 1).clamp_min(0))  # (N, 1)
        semi = beyond & (nearest < d + margin)  # (N, N) inside (d(a, p), d(a, p) + margin)
        valid = pos_mask & (n_neg > 0)  # (N, N) pairs whose anchor has a negative
        if fallback == "beyond":
            d_an = torch.where(beyond, nearest, farthest)  # (N, N)
        elif fallback == "hardest":
            d_an = torch.where(semi, nearest, neg_sorted[:, :1])  # (N, N)
        else:
            d_an, valid = nearest, valid & semi
        loss = (d - d_an + margin)[valid].clamp_min(0)
    return _mean_or_zero(loss, embeddings)


def supcon(z: Tensor, labels: Tensor, temperature: float | Tensor) -> Tensor:
    """Supervised contrastive loss L^sup_out (Khosla et al. 2020, Eq. 2), paper.md §8.9.

    L_i = -1/|P(i)| sum_{p in P(i)} log[exp(z_i.z_p/tau) / sum_{k != i} exp(z_i.z_k/tau)], with
    P(i) the other samples (all views) of anchor i's class; anchors without positives are left
    out of the mean. The reference code's extra factor tau/base_temperature is omitted.

    Args:
        z: ``(N, D)`` embeddings, or ``(N, V, D)`` with V views per sample (normalised here).
        labels: ``(N,)`` integer class labels (shared by all views of a sample).
        temperature: tau > 0, a float or a 0-dim tensor (dL/dtau is kept).

    Returns:
        Scalar mean loss, float32 (float64 for float64 inputs).
    """
    temperature = check_temperature(temperature)
    if not isinstance(z, Tensor) or z.dim() not in (2, 3) or not z.is_floating_point():
        shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
        raise ValueError(f"z must be a floating (N, D) or (N, V, D) tensor, got {shape}")
    check_finite("z", z)
    labels = _check_labels("labels", labels, z.shape[0])
    if z.dim() == 3:  # views stacked view-major: (V*N, D), labels repeated per view
        labels = labels.repeat(z.shape[1])
        z = z.transpose(0, 1).reshape(-1, z.shape[2])
    eye = torch.eye(len(labels), dtype=torch.bool, device=z.device)
    pos_mask = (labels[:, None] == labels[None, :]) & ~eye  # (A, A)
    with _no_autocast(z):
        u = F.normalize(z.to(_dtype(z)), dim=1)  # (A, D)
        logits = (u @ u.T / temperature).masked_fill(eye, -math.inf)  # (A, A) no self-pairs
        log_prob = F.log_softmax(logits, dim=1)  # (A, A)
        n_pos = pos_mask.sum(1)  # (A,)
        has_pos = n_pos > 0
        pos_log_prob = torch.where(pos_mask, log_prob, 0.0).sum(1)  # (A,)
        loss = -(pos_log_prob[has_pos] / n_pos[has_pos])
    return _mean_or_zero(loss, z)


def _in_batch_logits(z1: Tensor, z2: Tensor,
                     temperature: float | Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """SimCLR logits ``(2N, 2N)``, positive logits ``(2N,)`` and the mask of the 2N-2 negatives."""
    u = _two_views(z1, z2)  # (2N, D)
    n2 = u.shape[0]
    rows = torch.arange(n2, device=u.device)
    target = rows.roll(n2 // 2)  # (2N,) i <-> i + N
    neg_mask = torch.ones(n2, n2, dtype=torch.bool, device=u.device)
    neg_mask[rows, rows] = False
    neg_mask[rows, target] = False  # (2N, 2N)
    with _no_autocast(u):
        logits = u @ u.T / temperature  # (2N, 2N)
    return logits, logits[rows, target], neg_mask


def _debiased(l_pos: Tensor, log_neg: Tensor, num_neg: int, tau_plus: float,
              tau: float | Tensor) -> Tensor:
    """-log[e^l_pos / (e^l_pos + Ng)] with DCL's clamped Ng, from log(sum of negative terms)."""
    # Ng = max((S - tau+ * Nn * e^l_pos) / (1 - tau+), Nn * e^{-1/tau}), S = e^log_neg, in logs
    log_ng = log_neg
    if tau_plus > 0:
        r = l_pos - log_neg + math.log(tau_plus * num_neg)  # log of the subtracted fraction of S
        ok = r < 0
        r = torch.where(ok, r, -1.0)  # keep the discarded branch finite (no NaN gradients)
        log_ng = torch.where(ok, log_neg + torch.log(-torch.expm1(r)), -math.inf)
        log_ng = log_ng - math.log1p(-tau_plus)
    log_ng = log_ng.clamp_min(math.log(num_neg) - 1.0 / tau)  # the clamp at Nn * e^{-1/tau}
    return torch.logaddexp(l_pos, log_ng) - l_pos


def debiased_info_nce(
    z1: Tensor, z2: Tensor, temperature: float | Tensor, *, tau_plus: float,
    reduction: str = "mean",
) -> Tensor:
    """Debiased contrastive loss (Chuang et al. 2020): L^{N,M}_Debiased of paper.md §7.1, M = 1.

    In-batch SimCLR negatives (Nn = 2N-2 per anchor): Ng = max((sum_n e^{s_n/tau} - tau+ Nn
    e^{s_p/tau}) / (1 - tau+), Nn e^{-1/tau}) and L = -log[e^{s_p/tau} / (e^{s_p/tau} + Ng)],
    computed in log space. tau_plus = 0 gives ``nt_xent`` (the clamp is then never active for
    cosine similarities). Not Yeh et al.'s *decoupled* loss (``losses.decoupled_info_nce``).

    Args:
        z1: ``(N, D)`` projections of view 1 (normalised here).
        z2: ``(N, D)`` projections of view 2.
        temperature: tau > 0, a float or a 0-dim tensor (dL/dtau is kept).
        tau_plus: class prior tau+ in [0, 1).
        reduction: "mean" | "sum" | "none" (-> ``(2N,)``).

    Returns:
        The reduced loss, float32 (float64 for float64 inputs).
    """
    return hcl_info_nce(z1, z2, temperature, beta=0.0, tau_plus=tau_plus, reduction=reduction)


def hcl_info_nce(
    z1: Tensor, z2: Tensor, temperature: float | Tensor, *, beta: float, tau_plus: float,
    reduction: str = "mean",
) -> Tensor:
    """Hard-negative contrastive loss (Robinson et al. 2021): the objective of paper.md §7.2, M = 1.

    DCL with the negatives importance-weighted by w_n = e^{beta s_n/tau} / mean(w): the negative
    sum becomes sum_n w_n e^{s_n/tau}, i.e. log S = logsumexp((1+beta) s/tau) -
    logsumexp(beta s/tau) + log Nn. beta = 0 gives ``debiased_info_nce``; beta = tau+ = 0 gives
    ``nt_xent``.

    Args:
        z1: ``(N, D)`` projections of view 1 (normalised here).
        z2: ``(N, D)`` projections of view 2.
        temperature: tau > 0, a float or a 0-dim tensor (dL/dtau is kept).
        beta: concentration (hardness) beta >= 0.
        tau_plus: class prior tau+ in [0, 1).
        reduction: "mean" | "sum" | "none" (-> ``(2N,)``).

    Returns:
        The reduced loss, float32 (float64 for float64 inputs).
    """
    temperature = check_temperature(temperature)
    beta = _check_nonneg("beta", beta)
    tau_plus = _check_nonneg("tau_plus", tau_plus, upper=1.0)
    check_choice("reduction", reduction, REDUCTIONS)
    logits, l_pos, neg_mask = _in_batch_logits(z1, z2, temperature)
    num_neg = logits.shape[0] - 2
    if num_neg <= 0:  # N <= 1: no negatives, Ng = 0 and -log[e^l / e^l] = 0 (empty-batch rule)
        return _reduce(l_pos * 0.0, reduction)

    def log_sum(c: float) -> Tensor:  # logsumexp_n(c * s_n / tau) over the negatives, (2N,)
        return torch.logsumexp((c * logits).masked_fill(~neg_mask, -math.inf), 1)

    with _no_autocast(logits):
        if beta == 0:
            log_neg = log_sum(1.0)  # (2N,) log of the plain negative sum (DCL)
        else:
            log_neg = log_sum(1.0 + beta) - log_sum(beta) + math.log(num_neg)  # (2N,)
        loss = _debiased(l_pos, log_neg, num_neg, tau_plus, temperature)  # (2N,)
    return _reduce(loss, reduction)
