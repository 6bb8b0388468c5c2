"""Label-free embedding diagnostics: rank, spectrum, Wasserstein uniformity, collapse signals.

Each function names its paper (beyond.md §1.1): RankMe (Garrido et al., ICML 2023), alpha-ReQ
(Agrawal et al., NeurIPS 2022), the spectrum of dimensional collapse (Jing et al., ICLR 2022), the
Wasserstein uniformity (Fang et al., ICLR 2024), the negative-similarity statistics of Lee et al.
(2025) and the collapse signals users ask for (lightly PR #817, SupContrast #106). ``z`` is
``(N, D)`` features with N >= 2; the computations run in float64 on detached copies and return
Python floats (or a float64 tensor for the spectrum), ready for ``metrics.jsonl``. Re-exported by
:mod:`cl_analysis.metrics`.
"""

from __future__ import annotations

import math
import operator
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import check_finite, check_matrix, check_similarity

__all__ = [
    "AlphaReq",
    "rankme",
    "singular_spectrum",
    "alpha_req",
    "wasserstein_uniformity",
    "negative_similarity_stats",
    "feature_std",
    "collapse_loss",
]


def _features(z: Tensor, name: str = "z") -> Tensor:
    """Validate ``(N, D)`` finite floating features with N >= 2; return a detached float64 copy."""
    check_matrix(name, z)
    if z.shape[0] < 2 or z.shape[1] < 1:
        raise ValueError(f"{name} needs N >= 2 rows and D >= 1 columns, got {tuple(z.shape)}")
    check_finite(name, z)
    return z.detach().to(torch.float64)


def _unit(z: Tensor) -> Tensor:
    """L2-normalised rows; a zero row has no direction and is an error."""
    norms = z.norm(dim=1)
    if (norms == 0).any():
        raise ValueError(f"z has {int((norms == 0).sum())} all-zero row(s); they cannot be "
                         "L2-normalised")
    return F.normalize(z, dim=1)


def _covariance_eigenvalues(z: Tensor) -> Tensor:
    """Eigenvalues ``(D,)`` of the covariance (1/N) sum (z - mean)(z - mean)^T, descending, >= 0."""
    n, d = z.shape
    sv = torch.linalg.svdvals((z - z.mean(0)) / math.sqrt(n))  # (min(N, D),) accurate when tiny
    return F.pad(sv.square(), (0, d - sv.numel()))  # (D,)


def rankme(z: Tensor, eps: float = 1e-7) -> float:
    """RankMe, the smooth rank of Garrido et al. (ICML 2023).

    Garrido et al., "RankMe: Assessing the Downstream Performance of Pretrained Self-Supervised
    Representations by Their Rank". RankMe(Z) = exp(-sum_k p_k log p_k), p_k = sigma_k / ||sigma||_1
    + eps, with sigma_k the singular values of the ``(N, D)`` feature matrix as given (uncentred,
    not normalised, as in the paper; pass ``F.normalize(z, dim=1)`` for the normalised variant). A
    smooth rank: D for isotropic features (N >> D), k for rank-k features, 1 when all rows are
    collinear.

    Args:
        z: ``(N, D)`` features, N >= 2.
        eps: the paper's smoothing constant (1e-7).

    Returns:
        RankMe in [1, min(N, D)] (up to eps), or 0.0 when every feature is zero.

    Raises:
        ValueError: on a non-2-D or non-floating input, N < 2, or NaN/inf values.
    """
    sv = torch.linalg.svdvals(_features(z))  # (min(N, D),)
    total = sv.sum()
    if total == 0:
        return 0.0
    p = sv / total + eps
    return math.exp(float(-(p * p.log()).sum()))


def singular_spectrum(z: Tensor, normalize: bool = True) -> Tensor:
    """Singular-value spectrum of L2-normalised features: dimensional collapse (Jing et al. 2022).

    Jing et al., "Understanding Dimensional Collapse in Contrastive Self-supervised Learning" (ICLR
    2022; facebookresearch/directclr ``spectrum.py``). The singular values of the ``(D, D)``
    covariance C = (1/N) sum_i (z_i - mean)(z_i - mean)^T of the L2-normalised features (C is
    symmetric PSD, so they are its eigenvalues), in descending order. Jing et al. plot their log:
    collapsed dimensions show as a cliff to ~0. For unit rows they sum to 1 - ||mean||^2.

    Args:
        z: ``(N, D)`` features, N >= 2 (L2-normalised here unless ``normalize=False``).
        normalize: L2-normalise the rows first (the paper's setting).

    Returns:
        ``(D,)`` float64 tensor, descending, >= 0 (zeros past rank N - 1).

    Raises:
        ValueError: on bad input (see :func:`rankme`) or an all-zero row when normalising.
    """
    x = _features(z)
    return _covariance_eigenvalues(_unit(x) if normalize else x)


class AlphaReq(NamedTuple):
    """Result of :func:`alpha_req`: exponent, the fit's R^2, the 1-based rank range fitted."""

    alpha: float
    r2: float
    fit_range: tuple[int, int]


def alpha_req(
    z: Tensor, fit_range: tuple[int, int] | None = None, rtol: float = 1e-10
) -> AlphaReq:
    """alpha-ReQ, the power-law decay of the eigenspectrum (Agrawal et al., NeurIPS 2022).

    Agrawal et al., "alpha-ReQ: Assessing Representation Quality in Self-Supervised Learning by
    Measuring Eigenspectrum Decay". Fits the power law lambda_k ~ c * k^(-alpha) to the eigenvalues
    lambda_1 >= lambda_2 >= ... of the feature covariance (1/N, centred; features as given) by least
    squares on log lambda_k against log k over ranks k_min..k_max (inclusive). Smaller alpha means
    a flatter (higher-rank) spectrum; which alpha is "good" is read differently by the paper (near
    1) and reptrix (lower), so compare runs rather than thresholds. Check ``r2`` before trusting
    alpha.

    Args:
        z: ``(N, D)`` features, N >= 2.
        fit_range: 1-based ranks ``(k_min, k_max)``; ``None``: every non-null eigenvalue. k_max is
            clipped to the non-null ones (reptrix's default is (5, 100)).
        rtol: eigenvalues <= rtol * lambda_1 count as null (numerical rank).

    Returns:
        ``AlphaReq(alpha, r2, fit_range)`` with the range actually fitted.

    Raises:
        ValueError: on bad input (see :func:`rankme`), a malformed range, or fewer than 3
            non-null eigenvalues in it.
    """
    eig = _covariance_eigenvalues(_features(z))  # (D,)
    rank = int((eig > rtol * eig[0]).sum()) if eig[0] > 0 else 0
    k_min, k_max = (1, rank) if fit_range is None else _check_range(fit_range)
    k_max = min(k_max, rank)
    if k_max - k_min + 1 < 3:
        raise ValueError(f"alpha-ReQ needs >= 3 non-null eigenvalues in the fit range; ranks "
                         f"{k_min}..{k_max} of {rank} non-null (of D = {eig.numel()})")
    x = torch.arange(k_min, k_max + 1, dtype=torch.float64).log()
    y = eig[k_min - 1:k_max].log()
    xc, yc = x - x.mean(), y - y.mean()
    slope = (xc * yc).sum() / xc.square().sum()
    ss_res = (yc - slope * xc).square().sum()
    ss_tot = yc.square().sum()
    r2 = 1.0 - float(ss_res / ss_tot) if ss_tot > 0 else 1.0
    return AlphaReq(alpha=-float(slope), r2=r2, fit_range=(k_min, k_max))


def _check_range(fit_range: tuple[int, int]) -> tuple[int, int]:
    """Return ``(k_min, k_max)`` as ints with 1 <= k_min < k_max, or raise."""
    try:
        k_min, k_max = (operator.index(k) for k in fit_range)
    except (TypeError, ValueError):
        raise ValueError(f"fit_range must be two ints (k_min, k_max), got {fit_range!r}") from None
    if not 1 <= k_min < k_max:
        raise ValueError(f"fit_range needs 1 <= k_min < k_max (1-based ranks), got {fit_range!r}")
    return k_min, k_max


def wasserstein_uniformity(z: Tensor) -> float:
    """Wasserstein uniformity of Fang et al. (ICLR 2024), lower is more uniform.

    Fang et al., "Rethinking the Uniformity Metric in Self-Supervised Learning"
    (statsle/WassersteinSSL ``calc_wasserstein_distance``). W2 between the Gaussian fit N(mu, Sigma)
    of the L2-normalised features (mean, 1/N covariance) and N(0, I/m), the Gaussian fit of the
    uniform distribution on S^{m-1}:

        W2 = sqrt(||mu||^2 + 1 + tr Sigma - (2 / sqrt(m)) tr Sigma^{1/2}).

    0 for the uniform sphere; sqrt(2 - 2 sqrt(k/m)) for the uniform sphere of a k-dimensional
    subspace; sqrt(2), the maximum, for collapsed features (all rows equal). Lower is more uniform
    (Fang et al. report -W2). Unlike Wang & Isola's t = 2 uniformity it sees dimensional collapse.

    Args:
        z: ``(N, D)`` features, N >= 2 (L2-normalised here); m = D.

    Returns:
        W2 in [0, sqrt(2)].

    Raises:
        ValueError: on bad input (see :func:`rankme`) or an all-zero row.
    """
    u = _unit(_features(z))
    m = u.shape[1]
    eig = _covariance_eigenvalues(u)  # (D,)
    w2_sq = u.mean(0).square().sum() + 1.0 + eig.sum() - 2.0 / math.sqrt(m) * eig.sqrt().sum()
    return math.sqrt(max(float(w2_sq), 0.0))


def negative_similarity_stats(similarity: Tensor, positive: Tensor) -> dict[str, float]:
    """Mean and variance of the negative similarities (Lee et al. 2025; beyond.md §1.1).

    Over all N * (M - 1) negative entries s_ij, j != positive column of row i. For features
    uniform on S^{d-1} the mean is 0 and the variance 1/d; smaller batches give a larger
    variance of the batch estimate. ``anchor_var`` averages the within-anchor variances.

    Args:
        similarity: ``(N, M)`` similarities, M >= 2.
        positive: ``(N,)`` int64 column of each row's positive.

    Returns:
        ``{"mean": ..., "var": ..., "anchor_var": ...}`` (population variances).

    Raises:
        ValueError: on a malformed similarity/positive pair or NaN/inf values.
    """
    check_similarity(similarity, positive)
    s = similarity.detach().to(torch.float64)
    keep = torch.ones_like(s, dtype=torch.bool)
    keep[torch.arange(s.shape[0]), positive.long()] = False
    neg = s[keep].view(s.shape[0], -1)  # (N, M-1)
    return {"mean": float(neg.mean()), "var": float(neg.var(correction=0)),
            "anchor_var": float(neg.var(dim=1, correction=0).mean())}


def feature_std(z: Tensor) -> float:
    """Collapse signal: std over the batch of the L2-normalised features, averaged over dims.

    lightly's ``std_of_l2_normalized`` (PR #817) with the population std: 1/sqrt(D) for features
    uniform on the sphere, 0 for collapsed ones (all rows pointing the same way).

    Args:
        z: ``(N, D)`` features, N >= 2 (L2-normalised here).

    Returns:
        The mean over the D dimensions of the per-dimension std, in [0, 1/sqrt(D)] (the
        per-dimension variances of unit rows sum to at most 1).

    Raises:
        ValueError: on bad input (see :func:`rankme`) or an all-zero row.
    """
    return float(_unit(_features(z)).std(dim=0, correction=0).mean())


def collapse_loss(batch_size: int) -> float:
    """NT-Xent of collapsed (identical) features: log(2N - 1) at any tau (SupContrast #106).

    Each of the 2N anchors then sees its positive and 2N - 2 negatives at one similarity, so
    P_ip = 1 / (2N - 1). A training loss stuck at this value means the features collapsed.

    Args:
        batch_size: N >= 2, the number of image pairs in the batch.

    Returns:
        log(2N - 1), in nats.

    Raises:
        ValueError: unless ``batch_size`` is an int >= 2.
    """
    try:
        n = operator.index(batch_size)
    except TypeError:
        raise ValueError(f"batch_size must be an int >= 2, got {batch_size!r}") from None
    if n < 2:
        raise ValueError(f"batch_size must be >= 2 (a negative per anchor), got {n}")
    return math.log(2 * n - 1)
