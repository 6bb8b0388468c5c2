"""Embedding metrics: uniformity, alignment, tolerance, local separation and kNN accuracy.

Wang & Liu (CVPR 2021) Eq. 10-11 and Fig. 8; Wang & Isola (ICML 2020) Sec. 4. ``z`` is ``(N, D)``
with L2-normalised rows; ``similarity`` / ``positive`` follow the package's ``(N, M)`` / ``(N,)``
convention. Half-precision inputs are upcast to float32, float64 is kept. The pairwise metrics
work in tiles (``chunk_size``) and never build an N x N matrix; ``uniformity_loss`` and
``alignment`` stay differentiable so they can be trained on.

Rules (docs/conventions.md): every metric returns a tensor (scalar metrics a 0-dim tensor;
accuracies are fractions in [0, 1], never percentages); a metric over too few rows raises a
ValueError (there is nothing to measure) instead of returning NaN; hyperparameters are constants
(a requires-grad tensor is refused) and keyword-only after the data; distances and norms are
differentiated with the subgradient 0 at coincident points.
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F
from torch import Tensor

from cl_analysis._checks import (
    check_choice,
    check_constant,
    check_finite,
    check_index_vector,
    check_matrix,
    check_similarity,
    check_temperature,
)

__all__ = [
    "uniformity", "uniformity_loss", "uniformity_bank", "alignment", "tolerance",
    "tolerance_bank", "local_separation", "knn_predict", "knn_accuracy", "KNN_PROTOCOLS",
]

KNN_PROTOCOLS: dict[str, dict] = {  # peers.md 3.7; unset keys fall back to _KNN_DEFAULTS
    "instdisc": dict(k=200, temperature=0.07),  # Wu et al. 2018; the paper's kNN monitor
    "lightly": dict(k=200, temperature=0.1),
    "solo": dict(k=20, temperature=0.07, metric="euclidean", weighting="inverse"),
    "dkobak": dict(k=10, weighting="uniform"),
}
_KNN_DEFAULTS = dict(k=200, temperature=0.07, weighting="exp", metric="cosine")
_UNIT_TOL = 1e-3


def _features(name: str, z: Tensor, min_rows: int = 1, unit: bool = True) -> Tensor:
    """Validate (N, D) features (finite, >= min_rows, unit rows if asked); upcast half."""
    check_matrix(name, z, "(N, D)")
    if z.shape[0] < min_rows:
        raise ValueError(f"{name}: expected at least {min_rows} row(s) of shape (N, D), got shape "
                         f"{tuple(z.shape)}; pass more samples")
    check_finite(name, z)
    if unit:
        err = (z.detach().norm(dim=1) - 1).abs().max().item()
        if err > _UNIT_TOL:
            raise ValueError(
                f"{name}: expected rows of unit norm, got max |norm - 1| = {err:.3g}; "
                "L2-normalise the features first (torch.nn.functional.normalize)"
            )
    return z if z.dtype in (torch.float32, torch.float64) else z.float()


def _labels(name: str, y: Tensor, n: int, device: torch.device) -> Tensor:
    """Validate a (n,) integer label vector; return it as int64 on ``device``."""
    return check_index_vector(name, y, n).to(device=device, dtype=torch.long)


def _positive_number(name: str, value: float) -> float:
    check_constant(name, value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ValueError(f"{name}: expected a finite number > 0, got {value!r}; Wang & Isola "
                         f"use 2")
    return float(value)


def _tiles(n: int, chunk_size: int) -> range:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size: expected a positive int, got {chunk_size!r}; pass e.g. "
                         f"4096")
    return range(0, n, chunk_size)


def _add_tile(acc: Tensor | None, logits: Tensor) -> Tensor:
    """Streaming log-sum-exp: fold log sum exp(logits) of a fresh tile into ``acc`` (in place)."""
    m = logits.max().detach()                                     # shift; LSE is invariant to it
    tile = logits.sub_(m).exp_().sum().log() + m                  # scalar
    return tile if acc is None else torch.logaddexp(acc, tile)


def uniformity_loss(z: Tensor, *, t: float = 2.0, chunk_size: int = 4096) -> Tensor:
    """Wang & Isola's uniformity loss log E_{i<j} exp(-t ||z_i - z_j||^2) (paper Eq. 10).

    Signed as Wang & Isola sign it (<= 0, lower is more uniform) and differentiable. Exact over
    the N(N-1)/2 distinct pairs (self-pairs excluded, as with ``torch.pdist``), computed in
    upper-triangle tiles with ||x - y||^2 = 2 - 2 x.y and a streaming log-sum-exp. The value
    equals Wang & Isola's ``pdist`` form on unit rows; the gradient with respect to a unit-norm
    *leaf* differs by a radial component (2 - 2 x.y drops the |x|^2 + |y|^2 terms), which
    vanishes once z = normalize(f(x)) is differentiated through the normalisation. Coincident
    rows give finite gradients (no square root).

    Args:
        z: (N, D) L2-normalised features, N >= 2.
        t: Gaussian-potential scale t > 0.
        chunk_size: tile side; extra memory is O(chunk_size^2).

    Returns:
        Scalar tensor, equal to ``-uniformity(z, t)``.
    """
    t = _positive_number("t", t)
    z = _features("z", z, min_rows=2)
    n = z.shape[0]
    z2t = z * (2 * t)                                             # (N, D): tile = 2t s_ij
    acc = None
    for a in _tiles(n, chunk_size):
        for b in range(a, n, chunk_size):
            logits = z2t[a:a + chunk_size] @ z[b:b + chunk_size].T  # (ca, cb) 2t s_ij
            if b == a:                                            # keep i < j on the diagonal
                if logits.shape[0] == 1:
                    continue
                lower = torch.ones_like(logits, dtype=torch.bool).tril()
                logits = logits.masked_fill_(lower, float("-inf"))
            acc = _add_tile(acc, logits)
    return acc - 2 * t - math.log(n * (n - 1) / 2)                # log mean exp(2t s - 2t)


def uniformity(z: Tensor, *, t: float = 2.0, chunk_size: int = 4096) -> Tensor:
    """Uniformity as the paper reports it, -log E_{i<j} exp(-t ||z_i - z_j||^2) (Eq. 10).

    The sign of Table 1 and Figs. 4, 6: larger is more uniform, about 3.9375 for 128-d features
    uniform on the sphere at t = 2. Exact over distinct pairs and bounded in memory
    (50,000 x 128 features need O(chunk_size^2) extra); see ``uniformity_loss``.

    Args:
        z: (N, D) L2-normalised features, N >= 2.
        t: Gaussian-potential scale t > 0 (the authors' code uses 2).
        chunk_size: tile side.

    Returns:
        Scalar tensor (no grad).

    Raises:
        ValueError: if N < 2, values are NaN/inf, or rows are not unit norm (tolerance 1e-3).
    """
    with torch.no_grad():
        return -uniformity_loss(z, t=t, chunk_size=chunk_size)


@torch.no_grad()
def uniformity_bank(
    queries: Tensor, bank: Tensor, *, t: float = 2.0, chunk_size: int = 4096
) -> Tensor:
    """Uniformity in the authors' protocol: -log mean_{q,b} exp(2t s_qb - 2t) (Eq. 10, code form).

    The authors average over all (augmented training feature) x (memory bank) pairs, each
    query's own bank entry included (negligible for a 50k bank).

    Args:
        queries: (Q, D) L2-normalised query features.
        bank: (B, D) L2-normalised bank features.
        t: Gaussian-potential scale t > 0.
        chunk_size: tile side.

    Returns:
        Scalar tensor.
    """
    t = _positive_number("t", t)
    q, bk = _features("queries", queries), _features("bank", bank)
    if q.shape[1] != bk.shape[1]:
        raise ValueError(f"queries {tuple(q.shape)} and bank {tuple(bk.shape)} differ in D")
    q2t, bk = q * (2 * t), bk.to(q.dtype)                         # (Q, D), (B, D)
    acc = None
    for a in _tiles(q.shape[0], chunk_size):
        for b in range(0, bk.shape[0], chunk_size):
            acc = _add_tile(acc, q2t[a:a + chunk_size] @ bk[b:b + chunk_size].T)  # (cq, cb)
    return 2 * t + math.log(q.shape[0] * bk.shape[0]) - acc


def alignment(z1: Tensor, z2: Tensor, *, alpha: float = 2.0) -> Tensor:
    """Wang & Isola's alignment loss E_i ||z1_i - z2_i||^alpha over positive pairs.

    At a coincident pair (z1_i = z2_i) the gradient is 0 for every alpha (the true gradient for
    alpha > 1, the subgradient 0 otherwise), never the NaN of differentiating a root at 0.

    Args:
        z1: (N, D) L2-normalised features of view 1.
        z2: (N, D) L2-normalised features of view 2; row i is the positive of z1[i].
        alpha: exponent alpha > 0.

    Returns:
        Differentiable scalar in [0, 2^alpha]; lower is better aligned.
    """
    alpha = _positive_number("alpha", alpha)
    z1, z2 = _features("z1", z1), _features("z2", z2)
    if z1.shape != z2.shape:
        raise ValueError(f"z1 {tuple(z1.shape)} and z2 {tuple(z2.shape)} must match row for row")
    sq = (z1 - z2).pow(2).sum(dim=1)                              # (N,) ||z1_i - z2_i||^2
    if alpha == 2.0:
        return sq.mean()
    nonzero = sq > 0
    safe = torch.where(nonzero, sq, torch.ones_like(sq))         # no pow'(0) in the graph
    return torch.where(nonzero, safe.pow(alpha / 2), 0.0).mean()  # mean_i (||.||^2)^(alpha/2)


def _dot_class_sum(z: Tensor, cls: Tensor, sums: Tensor, chunk_size: int) -> Tensor:
    """Row-wise z_i . sums[cls_i] in row chunks (never an (N, C) or second (N, D) matrix)."""
    return torch.cat([(z[a:a + chunk_size] * sums[cls[a:a + chunk_size]]).sum(dim=1)
                      for a in _tiles(z.shape[0], chunk_size)])          # (N,)


@torch.no_grad()
def tolerance(z: Tensor, labels: Tensor, chunk_size: int = 4096) -> Tensor:
    """Tolerance as the paper's Table 1 reports it: the class-conditional mean cosine (Eq. 11).

    Eq. 11 writes the joint expectation E_{x,y}[f(x)^T f(y) I(l(x) = l(y))], about 1/C smaller;
    the authors' code (and Table 1) instead averages each anchor's similarity to the other
    members of its class, then averages over anchors. Exact in O(N D) via per-class sums:
    (z_i . sum_{j in c(i)} z_j - |z_i|^2) / (n_c(i) - 1). Anchors alone in their class are skipped.

    Args:
        z: (N, D) L2-normalised features.
        labels: (N,) integer class labels.
        chunk_size: rows per chunk.

    Returns:
        Scalar tensor.

    Raises:
        ValueError: on bad shapes or values, or if no class has two members.
    """
    z = _features("z", z)
    _, cls = torch.unique(_labels("labels", labels, z.shape[0], z.device), return_inverse=True)
    c = int(cls.max()) + 1
    sums = z.new_zeros(c, z.shape[1]).index_add_(0, cls, z)               # (C, D)
    n_c = torch.bincount(cls, minlength=c)[cls]                           # (N,) class sizes
    keep = n_c > 1
    if not keep.any():
        raise ValueError("tolerance needs a class with at least two samples; check the labels")
    own = (z * z).sum(dim=1)                                              # (N,) s_ii ~ 1
    total = _dot_class_sum(z, cls, sums, chunk_size) - own                # (N,) sum_{j != i}
    return (total / (n_c - 1).clamp_min(1))[keep].mean()


@torch.no_grad()
def tolerance_bank(
    queries: Tensor, query_labels: Tensor, bank: Tensor, bank_labels: Tensor,
    chunk_size: int = 4096,
) -> Tensor:
    """Tolerance in the authors' protocol: each query's mean similarity to same-class bank entries.

    As in the authors' code every same-label bank entry counts, the query's own entry
    included. Queries whose class is absent from the bank are skipped.

    Args:
        queries: (Q, D) L2-normalised query features.
        query_labels: (Q,) integer labels.
        bank: (B, D) L2-normalised bank features.
        bank_labels: (B,) integer labels.
        chunk_size: rows per chunk.

    Returns:
        Scalar tensor.
    """
    q, bk = _features("queries", queries), _features("bank", bank)
    if q.shape[1] != bk.shape[1]:
        raise ValueError(f"queries {tuple(q.shape)} and bank {tuple(bk.shape)} differ in D")
    yq = _labels("query_labels", query_labels, q.shape[0], q.device)
    yb = _labels("bank_labels", bank_labels, bk.shape[0], q.device)
    _, cls = torch.unique(torch.cat([yq, yb]), return_inverse=True)
    cq, cb, c = cls[: q.shape[0]], cls[q.shape[0]:], int(cls.max()) + 1
    sums = q.new_zeros(c, q.shape[1]).index_add_(0, cb, bk.to(q.dtype))  # (C, D)
    n_c = torch.bincount(cb, minlength=c)[cq]                             # (Q,) bank class sizes
    keep = n_c > 0
    if not keep.any():
        raise ValueError("no query label occurs in bank_labels; check the labels")
    return (_dot_class_sum(q, cq, sums, chunk_size) / n_c.clamp_min(1))[keep].mean()


@torch.no_grad()
def local_separation(similarity: Tensor, positive: Tensor, *, k: int = 10,
                     unnormalized: bool = False) -> Tensor:
    """Positive similarity and the k hardest negative similarities of each anchor (Fig. 8).

    The k values are the top-k multiset of the negatives, so ties (which column of equal values
    is "chosen") cannot change them: consistent with Eq. 9's tie rule in ``losses``.

    Args:
        similarity: (N, M) similarities s_ij.
        positive: (N,) int64 column of each row's positive.
        k: number of nearest negatives, 1 <= k <= M - 1 (the paper shows 10).
        unnormalized: accept similarities outside [-1, 1] (otherwise a ValueError).

    Returns:
        (N, k + 1): column 0 is s_ip, columns 1..k the top-k negatives in descending order.
    """
    check_similarity(similarity, positive, unnormalized)
    m = similarity.shape[1]
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= m - 1:
        raise ValueError(f"k: expected an int in [1, M - 1] = [1, {m - 1}], got {k!r}; lower k")
    s = similarity if similarity.dtype in (torch.float32, torch.float64) else similarity.float()
    pos = positive.to(s.device).long().view(-1, 1)                        # (N, 1)
    negs = s.scatter(1, pos, float("-inf")).topk(int(k), dim=1).values    # (N, k) descending
    return torch.cat([s.gather(1, pos), negs], dim=1)                     # (N, k + 1)


def _knn_options(protocol: str, n_train: int, **given) -> dict:
    """Resolve kNN settings: explicit kwargs > KNN_PROTOCOLS[protocol] > InstDisc defaults."""
    check_choice("protocol", protocol, KNN_PROTOCOLS)
    opts = {**_KNN_DEFAULTS, **KNN_PROTOCOLS[protocol]}
    opts.update({key: v for key, v in given.items() if v is not None})
    check_choice("weighting", opts["weighting"], ("exp", "uniform", "inverse"))
    check_choice("metric", opts["metric"], ("cosine", "euclidean"))
    k = opts["k"]
    source = "you passed" if given.get("k") is not None else f"protocol {protocol!r} default"
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"k: expected a positive int (neighbours), got {k!r} ({source})")
    if k > n_train:
        raise ValueError(f"k: expected at most len(train_z) = {n_train} neighbours, got k={k} "
                         f"({source}); pass k=min(k, len(train_z)) for a small bank")
    if opts["weighting"] == "exp":
        check_temperature(opts["temperature"])
    return opts


def _knn_votes(train_z, train_y, test_z, k, temperature, weighting, metric, protocol,
               num_classes, chunk_size) -> tuple[Tensor, Tensor]:
    """Validated (class votes (T, C), train labels) of the weighted kNN vote."""
    tr = _features("train_z", train_z, unit=False)
    te = _features("test_z", test_z, min_rows=0, unit=False).to(tr.dtype)
    if tr.shape[1] != te.shape[1]:
        raise ValueError(f"test_z: expected D = {tr.shape[1]} columns like train_z "
                         f"{tuple(tr.shape)}, got {tuple(te.shape)}; embed both with one model")
    ytr = _labels("train_y", train_y, tr.shape[0], tr.device)
    if ytr.min() < 0:
        raise ValueError("train_y: expected class indices >= 0, got a negative label; remap them")
    opts = _knn_options(protocol, tr.shape[0], k=k, temperature=temperature,
                        weighting=weighting, metric=metric)
    c = int(ytr.max()) + 1 if num_classes is None else int(num_classes)
    if c <= int(ytr.max()):
        raise ValueError(f"num_classes: expected > max(train_y) = {int(ytr.max())}, got {c}; "
                         f"leave it None")
    cosine = opts["metric"] == "cosine"
    tr = F.normalize(tr, dim=1) if cosine else tr
    votes = [te.new_zeros(0, c)]
    for a in _tiles(te.shape[0], chunk_size):
        x = te[a:a + chunk_size]                                          # (c, D)
        score = F.normalize(x, dim=1) @ tr.T if cosine else -torch.cdist(x, tr)  # (c, N)
        top, idx = score.topk(int(opts["k"]), dim=1)                      # (c, k) nearest first
        if opts["weighting"] == "exp":
            w = torch.exp((top - top[:, :1]) / opts["temperature"])       # (c, k) e^(s/tau) / max
        elif opts["weighting"] == "inverse":
            w = 1.0 / ((1.0 - top if cosine else -top) + 1e-5)            # (c, k) 1/(d + eps)
        else:
            w = torch.ones_like(top)                                      # (c, k)
        votes.append(top.new_zeros(x.shape[0], c).scatter_add_(1, ytr[idx], w))  # (c, C)
    return torch.cat(votes), ytr


def _ranked_classes(votes: Tensor, n: int) -> Tensor:
    """The ``n`` classes with most votes per row ``(T, n)``; vote ties go to the smaller label."""
    return votes.sort(dim=1, descending=True, stable=True).indices[:, :n]


@torch.no_grad()
def knn_predict(
    train_z: Tensor, train_y: Tensor, test_z: Tensor, *,
    k: int | None = None, temperature: float | None = None,
    weighting: str | None = None, metric: str | None = None,
    protocol: str = "instdisc", num_classes: int | None = None, chunk_size: int = 1024,
) -> Tensor:
    """Weighted k-nearest-neighbour class predictions (the InstDisc monitor and its variants).

    Each test point takes its k nearest training points; each neighbour votes for its label with
    weight exp(s/tau) ("exp", InstDisc; s is the cosine, or minus the Euclidean distance), 1
    ("uniform", majority vote) or 1/(d + 1e-5) ("inverse", solo-learn's Euclidean vote; d is the
    distance, 1 - cosine for "cosine"). Settings left None come from ``KNN_PROTOCOLS[protocol]``,
    then from the InstDisc defaults k=200, temperature=0.07, weighting="exp", metric="cosine".
    "cosine" L2-normalises both sets; "euclidean" uses the features as given. Vote ties go to
    the smaller label.

    Args:
        train_z: (N, D) training (bank) features.
        train_y: (N,) integer labels in [0, num_classes).
        test_z: (T, D) query features.
        k: neighbours, 1 <= k <= N (a protocol default above N is an error naming its source).
        temperature: tau of the "exp" vote.
        weighting: "exp" | "uniform" | "inverse".
        metric: "cosine" | "euclidean".
        protocol: a key of ``KNN_PROTOCOLS``.
        num_classes: C; max label + 1 when None.
        chunk_size: test rows per (chunk, N) score block.

    Returns:
        (T,) int64 predicted labels.
    """
    votes, _ = _knn_votes(train_z, train_y, test_z, k, temperature, weighting, metric, protocol,
                          num_classes, chunk_size)
    return _ranked_classes(votes, 1)[:, 0]


@torch.no_grad()
def knn_accuracy(
    train_z: Tensor, train_y: Tensor, test_z: Tensor, test_y: Tensor, *,
    k: int | None = None, temperature: float | None = None,
    weighting: str | None = None, metric: str | None = None, top: int = 1,
    protocol: str = "instdisc", num_classes: int | None = None, chunk_size: int = 1024,
) -> Tensor:
    """Top-``top`` accuracy of the ``knn_predict`` vote (see it for the arguments).

    ``protocol`` picks a peer setting from ``KNN_PROTOCOLS`` (default "instdisc": k=200,
    exp(s/0.07) votes on cosine similarity); explicit keyword arguments override it. A test
    point counts as correct at ``top`` = 5 if its label is among the 5 classes with most votes
    (ties to the smaller label), as lightly and solo-learn report "top-5".

    Args:
        train_z: (N, D) training (bank) features.
        train_y: (N,) integer labels.
        test_z: (T, D) query features.
        test_y: (T,) integer labels of ``test_z``.
        k: neighbours; temperature, weighting, metric: the vote (see ``knn_predict``).
        temperature: tau of the "exp" vote.
        weighting: "exp" | "uniform" | "inverse".
        metric: "cosine" | "euclidean".
        top: 1 (top-1) or more (top-5: ``top=5``); at most the number of classes.
        protocol: a key of ``KNN_PROTOCOLS``.
        num_classes: C; max label + 1 when None.
        chunk_size: test rows per score block.

    Returns:
        0-dim float64 tensor: the fraction of test points classified correctly, in [0, 1]
        (a fraction like every accuracy in the package; ``float()`` it for JSON).
    """
    check_matrix("test_z", test_z, "(T, D)")
    if test_z.shape[0] == 0:
        raise ValueError("test_z: expected at least one test row, got shape "
                         f"{tuple(test_z.shape)}; pass the test features")
    y = _labels("test_y", test_y, test_z.shape[0], test_z.device)
    votes, _ = _knn_votes(train_z, train_y, test_z, k, temperature, weighting, metric, protocol,
                          num_classes, chunk_size)
    if isinstance(top, bool) or not isinstance(top, numbers.Integral) or top < 1:
        raise ValueError(f"top: expected a positive int (1 for top-1, 5 for top-5), got {top!r}")
    ranked = _ranked_classes(votes, min(int(top), votes.shape[1]))  # (T, top)
    hit = (ranked == y.to(ranked.device)[:, None]).any(dim=1)
    return hit.double().mean()


def per_class_accuracy(predictions: Tensor, labels: Tensor,
                       num_classes: int | None = None) -> list[float | None]:
    """Accuracy of each class: the fraction of its rows predicted as it (recall per class).

    For long-tailed data, where the mean accuracy hides the tail (issue 11 §3).

    Args:
        predictions: (T,) int predicted labels.
        labels: (T,) int true labels.
        num_classes: C; max label + 1 when None.

    Returns:
        C entries, a fraction in [0, 1] per class, None for a class without rows.

    Raises:
        ValueError: on shapes that differ or non-integer labels.
    """
    pred = torch.as_tensor(predictions)
    y = _labels("labels", torch.as_tensor(labels), pred.shape[0], pred.device)
    if pred.dim() != 1 or pred.is_floating_point():
        raise ValueError(f"predictions: expected (T,) integer labels, got {pred.dtype} "
                         f"{tuple(pred.shape)}")
    c = int(max(int(y.max()), int(pred.max())) + 1) if num_classes is None else int(num_classes)
    total = torch.bincount(y, minlength=c)  # (C,)
    hits = torch.bincount(y[pred.long() == y], minlength=c)  # (C,)
    return [None if int(n) == 0 else int(h) / int(n) for h, n in zip(hits.tolist(), total.tolist())]


# Label-free diagnostics (issue 11) live in diagnostics.py.
from .diagnostics import (  # noqa: E402
    AlphaReq,
    alpha_req,
    collapse_loss,
    feature_std,
    negative_similarity_stats,
    rankme,
    singular_spectrum,
    wasserstein_uniformity,
)

__all__ += ["per_class_accuracy"]
__all__ += ["AlphaReq", "rankme", "alpha_req", "singular_spectrum", "wasserstein_uniformity",
            "negative_similarity_stats", "feature_std", "collapse_loss"]
