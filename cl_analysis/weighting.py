"""The weighting lens: later InfoNCE variants as per-anchor re-weightings of one gradient.

Wang & Liu's relative penalty r_i (Eq. 5, :func:`cl_analysis.gradients.gradient_ratio`) spreads
one anchor's push over its negatives. The methods here keep that spread and re-weight the
InfoNCE gradient *across anchors* (beyond.md §1.2): for every anchor i and column j

    dL_i^method / ds_ij = w_i * dL_i^InfoNCE / ds_ij,      P_ip = softmax_j(s_ij / tau)[p],

with w_i = 1 (InfoNCE), 1/(1 - P_ip) (FlatNCE, decoupled loss), a detached 1/(1 - P_ip) at an
alignment-driven tau (MACL) and the detached (1 - P_ip^{(m tau)}) / (1 - P_ip^{(tau)}) (Dual
Temperature). Since 1/(1 - P_ip) * dCE_i = dDCL_i (the decoupled loss below), every loss here is
written as "value, plus a zero-valued term carrying c_i * dDCL_i", which stays finite where w_i
itself overflows (P_ip -> 1 at small tau).

All losses take the similarity-matrix contract of :func:`cl_analysis.losses.info_nce`:
``similarity`` ``(N, M)``, ``positive`` ``(N,)`` int64 column of each row's positive, the
temperature (a float, or a scalar tensor whose gradient is kept: a learnable tau is a normal use),
and ``reduction`` "mean" | "sum" | "none". Math runs in float32 at least with autocast off;
results are float32 (float64 for float64 inputs). They are re-exported by
:mod:`cl_analysis.losses`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import check_choice, check_similarity, check_temperature, value_checks
from .metric_losses import REDUCTIONS, _dtype, _no_autocast, _reduce

__all__ = [
    "WEIGHTING_METHODS",
    "ANCHOR_STATISTICS",
    "anchor_weights",
    "anchor_statistics",
    "macl_temperature",
    "decoupled_info_nce",
    "flat_nce",
    "macl",
    "dual_temperature_info_nce",
]

WEIGHTING_METHODS = ("info_nce", "flat_nce", "decoupled", "macl", "dual_temperature")
# the columns of :func:`anchor_statistics`: P_ip, then log w_i of each re-weighting method
ANCHOR_STATISTICS = ("positive_probability", "flat_nce", "macl", "dual_temperature")


def _temperature(temperature: float | Tensor, name: str = "temperature", *,
                 read: bool = True) -> float | Tensor:
    """Validate tau > 0; a scalar tensor is returned as a 0-dim tensor (its gradient kept).

    ``read=False``: a tensor's value is not read back (shape and dtype checked only).
    """
    if isinstance(temperature, Tensor):
        if temperature.numel() != 1 or not temperature.is_floating_point():
            raise ValueError(f"{name} must be a number or a floating scalar tensor, got "
                             f"shape {tuple(temperature.shape)} dtype {temperature.dtype}")
        if read:
            check_temperature(temperature.detach().item(), name)
        return temperature.reshape(())
    return check_temperature(temperature, name)


def _prepare(similarity: Tensor, positive: Tensor, reduction: str) -> tuple[Tensor, Tensor]:
    """Validate; return the similarities upcast to >= float32 and the ``(N, M)`` positive mask."""
    check_similarity(similarity, positive)
    check_choice("reduction", reduction, REDUCTIONS)
    s = similarity.to(_dtype(similarity))
    cols = torch.arange(s.shape[1], device=s.device)
    return s, cols.unsqueeze(0) == positive.to(s.device).long().unsqueeze(1)  # (N, M), (N, M)


def _scale(s: Tensor, tau: float | Tensor) -> Tensor:
    """Logits s / tau in the dtype of ``s`` (a tensor tau keeps its graph)."""
    return s / (tau.to(s.dtype) if isinstance(tau, Tensor) else tau)


def _log_sums(logits: Tensor, is_pos: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per row: the positive logit, logsumexp over all columns and over the negatives, ``(N,)``."""
    l_pos = logits.masked_fill(~is_pos, 0.0).sum(1)  # (N,) exactly one positive per row
    lse_all = torch.logsumexp(logits, 1)  # (N,)
    lse_neg = torch.logsumexp(logits.masked_fill(is_pos, float("-inf")), 1)  # (N,)
    return l_pos, lse_all, lse_neg


def _row_sums(
    similarity: Tensor, positive: Tensor, temperature: float | Tensor, reduction: str
) -> tuple[Tensor, Tensor, Tensor]:
    """Validate everything; return ``_log_sums`` of s / tau, computed with autocast off."""
    tau = _temperature(temperature)
    s, is_pos = _prepare(similarity, positive, reduction)
    with _no_autocast(s):
        return _log_sums(_scale(s, tau), is_pos)


def _log1m_p(l_pos: Tensor, lse_all: Tensor, lse_neg: Tensor) -> Tensor:
    """log(1 - P_ip) from :func:`_log_sums`' terms, ``(N,)``, accurate at both ends.

    Near P_ip = 1: logsumexp_neg - logsumexp_all (no cancellation). Near P_ip = 0 that
    difference of two nearly equal numbers cancels (float32, many columns), so log1p(-P_ip),
    with P_ip = exp(l_pos - logsumexp_all), is used below P_ip = 1/2.
    """
    p = torch.exp(l_pos - lse_all)  # (N,) P_ip
    return torch.where(p < 0.5, torch.log1p(-p.clamp(max=0.5)), lse_neg - lse_all)


def _log_one_minus_p(s: Tensor, is_pos: Tensor, tau: float | Tensor) -> Tensor:
    """log(1 - P_ip) at ``tau``, ``(N,)`` (:func:`_log1m_p`)."""
    return _log1m_p(*_log_sums(_scale(s, tau), is_pos))


def _weighted_info_nce(log_c: Tensor, logits: Tensor, is_pos: Tensor) -> Tensor:
    """Per-anchor sg(c_i / (1 - P_ip)) * CE_i, ``(N,)``: value from logs, gradient c_i * dDCL_i.

    ``log_c`` is the detached log of the factor c_i in (0, 1]; 1/(1 - P_ip) * dCE_i = dDCL_i
    holds for every parameter entering through the logits (similarities and tau alike).
    """
    l_pos, lse_all, lse_neg = _log_sums(logits, is_pos)
    dcl = lse_neg - l_pos  # (N,) the decoupled loss
    with torch.no_grad():
        # log CE = log softplus(dcl); below -20, log softplus(x) = x to 1e-9 relative
        log_ce = torch.where(dcl < -20, dcl, torch.log(F.softplus(dcl.clamp_min(-20))))
        value = torch.exp(log_c + (lse_all - lse_neg) + log_ce)  # (N,) c_i * w_i * CE_i
    return value + log_c.exp() * (dcl - dcl.detach())


def macl_temperature(
    similarity: Tensor, positive: Tensor, temperature: float | Tensor, *,
    alpha: float = 0.5, a0: float = 0.0,
) -> Tensor:
    """MACL's alignment-driven temperature tau_A = tau_0 * (1 + alpha * (A - A_0)).

    Huang et al., "Model-Aware Contrastive Learning: Towards Escaping the Dilemmas" (ICML 2023),
    the linear form that lightly's ``MACLLoss`` implements: A is the detached mean positive
    similarity of the batch (the alignment magnitude), A_0 a threshold. Well aligned batches get a
    larger tau (more tolerance), poorly aligned ones a smaller tau (more uniformity).

    Args:
        similarity: ``(N, M)`` similarities.
        positive: ``(N,)`` int64 column of each row's positive.
        temperature: tau_0 > 0 (float or scalar tensor, gradient kept).
        alpha: sensitivity, in [0, 1].
        a0: threshold A_0, in [0, 1].

    Returns:
        0-dim tensor tau_A, float32 (float64 for float64 inputs).

    Raises:
        ValueError: on bad input, alpha or a0 outside [0, 1], or tau_A <= 0.
    """
    tau0 = _temperature(temperature)
    s, is_pos = _prepare(similarity, positive, "mean")
    for name, value in (("alpha", alpha), ("a0", a0)):
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1] (MACL's range), got {value!r}")
    align = s.detach().masked_fill(~is_pos, 0.0).sum(1).mean()  # A, mean positive similarity
    tau_a = tau0 * (1.0 + float(alpha) * (align - float(a0)))  # 0-dim; a tensor tau_0 keeps grad
    if not float(tau_a.detach()) > 0:
        raise ValueError(f"MACL temperature tau_A = tau_0 (1 + alpha (A - A_0)) is "
                         f"{float(tau_a.detach()):.3g} <= 0 (A = {float(align):.3g}); "
                         "lower alpha or A_0")
    return tau_a


def anchor_weights(
    similarity: Tensor, positive: Tensor, temperature: float | Tensor, method: str, *,
    m: float = 10.0, alpha: float = 0.5, a0: float = 0.0, log: bool = False,
) -> Tensor:
    """Per-anchor factor w_i: dL_i^method / ds_ij = w_i * dL_i^InfoNCE / ds_ij (beyond.md §1.2).

    With P_ip the positive's softmax probability (paper Eq. 2) at tau:

    * ``"info_nce"``: w_i = 1.
    * ``"flat_nce"`` (Chen et al. 2021) and ``"decoupled"`` (Yeh et al. 2022):
      w_i = 1 / (1 - P_ip); the negatives' gradients become r_i(s_ij) / tau (paper Eq. 5).
    * ``"macl"`` (Huang et al. 2023): w_i = 1 / (1 - P_ip) at tau_A (:func:`macl_temperature`);
      the InfoNCE gradient it multiplies is also taken at tau_A.
    * ``"dual_temperature"`` (Zhang et al. CVPR 2022):
      w_i = (1 - P_ip^{(m tau)}) / (1 - P_ip^{(tau)}).

    Args:
        similarity: ``(N, M)`` similarities.
        positive: ``(N,)`` int64 column of each row's positive.
        temperature: tau > 0 (float or scalar tensor).
        method: one of ``WEIGHTING_METHODS``.
        m: Dual Temperature's ratio of the inter-anchor to the intra-anchor tau, > 0.
        alpha: MACL's sensitivity of tau_A to the alignment (:func:`macl_temperature`).
        a0: MACL's alignment threshold A_0.
        log: return log w_i instead; use it at small tau, where 1 / (1 - P_ip) ~
            exp((s_ip - max_j s_ij) / tau) overflows float32.

    Returns:
        ``(N,)`` weights w_i > 0 (or their logs), float32 (float64 for float64 inputs). They are
        >= 1 for FlatNCE, the decoupled loss and MACL; Dual Temperature's exceeds 1 for an anchor
        whose positive is its most similar candidate (m > 1) and falls below 1 otherwise.

    Raises:
        ValueError: on bad input or an unknown method.
    """
    check_choice("method", method, WEIGHTING_METHODS)
    tau = _temperature(temperature)
    s, is_pos = _prepare(similarity, positive, "none")
    with _no_autocast(s):
        if method == "info_nce":
            log_w = torch.zeros(s.shape[0], dtype=s.dtype, device=s.device)
        elif method in ("flat_nce", "decoupled"):
            log_w = -_log_one_minus_p(s, is_pos, tau)
        elif method == "macl":
            tau_a = macl_temperature(similarity, positive, tau, alpha=alpha, a0=a0)
            log_w = -_log_one_minus_p(s, is_pos, tau_a)
        else:
            log_c = _log_one_minus_p(s, is_pos, tau * _check_m(m))  # (N,) at m * tau
            log_w = log_c - _log_one_minus_p(s, is_pos, tau)
    return log_w if log else log_w.exp()


def anchor_statistics(
    similarity: Tensor, positive: Tensor, temperature: float | Tensor, *,
    m: float = 10.0, alpha: float = 0.5, a0: float = 0.0,
    macl_base: float | Tensor | None = None, validate: bool = True,
) -> Tensor:
    """Per anchor: P_ip and log w_i of FlatNCE, MACL and Dual Temperature, without a host sync.

    The training monitor's view of the weighting lens (notebook 07): one row per anchor, columns
    :data:`ANCHOR_STATISTICS` = (P_ip, the positive's softmax probability at tau (paper Eq. 2);
    log w_i of ``"flat_nce"`` (= ``"decoupled"``), ``"macl"`` and ``"dual_temperature"``, as
    :func:`anchor_weights` with ``log=True``). With ``validate=False`` it checks shapes and dtypes
    only and reads no value back to the host (MACL's tau_A stays a tensor), so the trainer can
    call it inside a step on a GPU; the similarities are taken as given (a memory bank's rows may
    be unnormalised at first; NaN similarities give NaN rows).

    Args:
        similarity: ``(N, M)`` similarities, M >= 2 (detached or not; the result is detached).
        positive: ``(N,)`` int64 column of each row's positive.
        temperature: tau > 0: a float (checked) or a 0-dim tensor (used as given: the
            trainer's clamped learnable tau).
        m: Dual Temperature's tau ratio, > 0.
        alpha: MACL's sensitivity, in [0, 1].
        a0: MACL's alignment threshold A_0, in [0, 1].
        macl_base: tau_0 of the MACL column, tau_A = tau_0 (1 + alpha (A - A_0)) with A the
            mean positive similarity clamped to [-1, 1] (as the trainer's MACL schedule); None:
            ``temperature``. Pass the run's base tau when ``temperature`` already is a tau_A.
            Where 1 + alpha (A - A_0) <= 0 (:func:`macl_temperature` refuses it) the factor is
            clamped at 1e-6 instead of raising: this is a monitor.
        validate: also check values (reads them back): finite similarities, positives within
            ``[0, M)``, a tensor ``temperature`` / ``macl_base`` finite and > 0. The trainer
            passes False.

    Returns:
        ``(N, 4)`` float32 (float64 for float64 inputs), detached.

    Raises:
        ValueError: on a bad shape, non-integer positives, a float tau <= 0, m <= 0, or
            alpha / a0 outside [0, 1]; with ``validate``, also non-finite similarities,
            positives out of range or a tensor tau <= 0.
    """
    with value_checks(validate):  # shapes and dtypes always; values only when validating
        check_similarity(similarity, positive, unnormalized=True)
    tau = _temperature(temperature, read=validate)  # no graph: all of it runs under no_grad
    tau0 = tau if macl_base is None else _temperature(macl_base, "macl_base", read=validate)
    m = _check_m(m)
    for name, value in (("alpha", alpha), ("a0", a0)):
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1] (MACL's range), got {value!r}")
    with torch.no_grad():
        s = similarity.detach().to(_dtype(similarity))
        cols = torch.arange(s.shape[1], device=s.device)
        is_pos = cols.unsqueeze(0) == positive.to(s.device).long().unsqueeze(1)  # (N, M)
        with _no_autocast(s):
            l_pos, lse_all, lse_neg = _log_sums(_scale(s, tau), is_pos)
            p = torch.exp(l_pos - lse_all)  # (N,) P_ip
            flat = -_log1m_p(l_pos, lse_all, lse_neg)  # (N,) -log(1 - P_ip)
            align = s.masked_fill(~is_pos, 0.0).sum(1).clamp(-1, 1).mean()  # A
            factor = (1.0 + float(alpha) * (align - float(a0))).clamp_min(1e-6)
            macl_w = -_log_one_minus_p(s, is_pos, tau0 * factor)
            dual = _log_one_minus_p(s, is_pos, tau * m) + flat
        return torch.stack([p, flat, macl_w, dual], dim=1)  # (N, 4)


def _check_m(m: float) -> float:
    """Return Dual Temperature's tau ratio m as a float, or raise unless finite and > 0."""
    try:
        value = float(m)
    except (TypeError, ValueError):
        value = float("nan")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"m: Dual Temperature's ratio of the inter- to the intra-anchor τ must "
                         f"be a finite number > 0 (Zhang et al. use 10), got {m!r}")
    return value


def decoupled_info_nce(
    similarity: Tensor, positive: Tensor, temperature: float | Tensor, *, reduction: str = "mean",
) -> Tensor:
    """Decoupled contrastive loss (Yeh et al., "Decoupled Contrastive Learning", ECCV 2022, Eq. 6).

    L_i = -s_ip / tau + log sum_{j != p} exp(s_ij / tau): InfoNCE with the positive taken out of
    the denominator, = info_nce + log(1 - P_ip), so it can be negative. Its gradient is InfoNCE's
    times 1 / (1 - P_ip), the same as FlatNCE's. On ``simclr_similarity`` it equals lightly's
    ``DCLLoss`` without a weight function. Not the *debiased* loss of Chuang et al. 2020
    (``losses.debiased_info_nce``, which corrects the negatives for same-class samples); both are
    called "DCL" in the literature.

    Args:
        similarity: ``(N, M)`` similarities, M >= 2.
        positive: ``(N,)`` int64 column of each row's positive.
        temperature: tau > 0 (float or scalar tensor, gradient kept).
        reduction: "mean" | "sum" | "none" (-> ``(N,)``).

    Returns:
        The reduced loss, float32 (float64 for float64 inputs).
    """
    l_pos, _, lse_neg = _row_sums(similarity, positive, temperature, reduction)
    return _reduce(lse_neg - l_pos, reduction)


def flat_nce(
    similarity: Tensor, positive: Tensor, temperature: float | Tensor, *, reduction: str = "mean",
) -> Tensor:
    """FlatNCE (Chen et al. 2021, "Simpler, Faster, Stronger: Breaking the log-K Curse", Alg. 1).

    With v_i = logsumexp_{j != p}((s_ij - s_ip) / tau) (= the decoupled loss), FlatNCE is
    exp(v_i - sg v_i), whose value is always 1 and whose gradient dv_i is InfoNCE's times
    1 / (1 - P_ip): r_i(s_ij) / tau on each negative (paper Eq. 5), -1/tau on the positive.
    As in FlatCLR, the reported value is InfoNCE's (detached):
    L_i = sg(CE_i) + exp(v_i - sg v_i) - 1.

    Args:
        similarity: ``(N, M)`` similarities, M >= 2.
        positive: ``(N,)`` int64 column of each row's positive.
        temperature: tau > 0 (float or scalar tensor, gradient kept).
        reduction: "mean" | "sum" | "none" (-> ``(N,)``).

    Returns:
        The reduced loss (value = ``info_nce``), float32 (float64 for float64 inputs).
    """
    l_pos, lse_all, lse_neg = _row_sums(similarity, positive, temperature, reduction)
    v = lse_neg - l_pos  # (N,)
    return _reduce((lse_all - l_pos).detach() + torch.expm1(v - v.detach()), reduction)


def macl(
    similarity: Tensor, positive: Tensor, temperature: float | Tensor, *,
    alpha: float = 0.5, a0: float = 0.0, reduction: str = "mean",
) -> Tensor:
    """Model-aware contrastive loss (Huang et al., ICML 2023; lightly's ``MACLLoss``).

    L_i = -sg(w_i) * log P_ip at tau_A = tau_0 (1 + alpha (A - A_0)) (:func:`macl_temperature`),
    with w_i = 1 / (1 - P_ip) = 1 / sum_{k != p} P_ik. The value is computed in log space and the
    gradient as the decoupled loss's at tau_A (equal, see the module docstring), so both stay
    finite where w_i overflows. lightly adds 1e-8 to 1 - P_ip; this does not.

    Args:
        similarity: ``(N, M)`` similarities, M >= 2.
        positive: ``(N,)`` int64 column of each row's positive.
        temperature: tau_0 > 0 (float or scalar tensor, gradient kept).
        alpha: sensitivity of tau_A to the alignment, in [0, 1] (lightly: 0.5).
        a0: alignment threshold A_0, in [0, 1].
        reduction: "mean" | "sum" | "none" (-> ``(N,)``).

    Returns:
        The reduced loss, float32 (float64 for float64 inputs).
    """
    if similarity.dim() == 2 and similarity.shape[0] == 0:  # no anchors: no alignment A either
        s, _ = _prepare(similarity, positive, reduction)
        return _reduce(s.sum(dim=1), reduction)  # the empty-batch rule: a graph-connected 0
    tau_a = macl_temperature(similarity, positive, temperature, alpha=alpha, a0=a0)
    s, is_pos = _prepare(similarity, positive, reduction)
    with _no_autocast(s):
        zero = torch.zeros(s.shape[0], dtype=s.dtype, device=s.device)
        return _reduce(_weighted_info_nce(zero, _scale(s, tau_a), is_pos), reduction)


def dual_temperature_info_nce(
    similarity: Tensor, positive: Tensor, temperature: float | Tensor, *, m: float = 10.0,
    reduction: str = "mean",
) -> Tensor:
    """Dual Temperature InfoNCE (Zhang et al., CVPR 2022).

    "Dual Temperature Helps Contrastive Learning Without Many Negative Samples".
    L_i = sg[(1 - P_ip^{(m tau)}) / (1 - P_ip^{(tau)})] * CE_i(tau): the intra-anchor hardness
    (over negatives) comes from tau, the inter-anchor weight from the larger m * tau. The value is
    computed in log space and the gradient as (1 - P_ip^{(m tau)}) times the decoupled loss's.

    Args:
        similarity: ``(N, M)`` similarities, M >= 2.
        positive: ``(N,)`` int64 column of each row's positive.
        temperature: tau > 0 (float or scalar tensor, gradient kept).
        m: ratio of the inter-anchor to the intra-anchor temperature, > 0 (paper: 10).
        reduction: "mean" | "sum" | "none" (-> ``(N,)``).

    Returns:
        The reduced loss, float32 (float64 for float64 inputs).
    """
    tau = _temperature(temperature)
    m = _check_m(m)
    s, is_pos = _prepare(similarity, positive, reduction)
    with _no_autocast(s):
        log_c = _log_one_minus_p(s, is_pos, tau * m).detach()  # (N,) log(1 - P_ip at m tau)
        return _reduce(_weighted_info_nce(log_c, _scale(s, tau), is_pos), reduction)
