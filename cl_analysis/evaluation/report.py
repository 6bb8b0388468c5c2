"""Analyse any encoder's features: one JSON and one self-contained HTML report (issue 11 §4).

``analyze_features`` takes ``(N, D)`` features and their labels (optionally augmented views)
and writes ``report.json`` and ``report.html`` (figures inline as PNG) with the paper's metrics
(uniformity Eq. 10 and the Wasserstein form, tolerance Eq. 11, alignment, kNN top-1/top-5), the
label-free diagnostics of :mod:`cl_analysis.diagnostics`, the singular spectrum, Fig. 8-style
local separation, similarity histograms, a t-SNE map and the profile of the relative penalty r_i
(Eq. 5) at a chosen tau. ``cl-analysis analyze`` (:mod:`cl_analysis.study.analyze`) feeds it
from a run, a checkpoint or a features file.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .. import diagnostics, gradients, losses, metrics
from .._checks import check_temperature

__all__ = ["analyze_features"]

_UNIT_TOL = 1e-3
_MAX_PAIRS_ROWS = 2000  # rows used for similarity histograms and the r_i profile
_SEPARATION_K = 10  # hardest negatives of the local-separation plot (the paper's Fig. 8)
_COLLAPSE_STD = 0.1  # collapsed when feature_std * sqrt(D) (1 when uniform) falls below this


def _as_tensor(name: str, x: Any) -> Tensor:
    """A tensor from a tensor or array, or a ValueError naming the input."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    return x


def _check_features(name: str, z: Any, n: int | None = None) -> Tensor:
    """Validate ``(N, D)`` features: floating, N >= 2 (or ``n``), no NaN/inf rows; float64."""
    z = _as_tensor(name, z)
    if z.dim() != 2 or not z.is_floating_point():
        raise ValueError(f"{name} must be a floating (N, D) array, got shape {tuple(z.shape)} "
                         f"dtype {z.dtype}")
    if z.shape[0] < 2 or (n is not None and z.shape[0] != n):
        need = "N >= 2 rows" if n is None else f"{n} rows (one per feature row)"
        raise ValueError(f"{name} needs {need}, got shape {tuple(z.shape)}")
    bad = (~torch.isfinite(z)).any(1).nonzero().flatten()
    if bad.numel():
        raise ValueError(f"{name} has NaN/inf in {bad.numel()} row(s), first rows "
                         f"{bad[:10].tolist()}; drop or fix them")
    zero = (z.norm(dim=1) == 0).nonzero().flatten()
    if zero.numel():
        raise ValueError(f"{name} has {zero.numel()} all-zero row(s), first rows "
                         f"{zero[:10].tolist()}; they have no direction")
    return z.detach().to(torch.float64)


def _check_labels(labels: Any, n: int) -> Tensor:
    y = _as_tensor("labels", labels)
    if y.dim() != 1 or y.shape[0] != n:
        raise ValueError(f"labels must have shape ({n},), one per feature row, got "
                         f"{tuple(y.shape)}")
    if y.is_floating_point() or y.is_complex():
        raise ValueError(f"labels must hold integers, got dtype {y.dtype}")
    return y.long()


def _png(fig) -> str:
    """The figure as an inline ``data:`` URI (base64 PNG); the figure is closed."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _pairs(u: Tensor, y: Tensor, views: tuple[Tensor, Tensor] | None, tau: float):
    """Similarity histograms and the mean sorted r_i profile on at most ``_MAX_PAIRS_ROWS`` rows."""
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(u.shape[0], generator=g)[:_MAX_PAIRS_ROWS]
    a, ya = u[idx], y[idx]
    sim = a @ a.T  # (n, n)
    eye = torch.eye(len(idx), dtype=torch.bool)
    same = (ya[:, None] == ya[None, :]) & ~eye
    groups = {"same class": sim[same], "other class": sim[~same & ~eye]}
    if views is not None:  # SimCLR layout: each row's positive is its other view
        s, pos = losses.simclr_similarity(views[0][idx], views[1][idx])
        groups = {"positive (other view)": s.gather(1, pos[:, None]).flatten(), **groups}
    else:  # proxy positive: the nearest same-class row (rows alone in their class dropped)
        keep = same.any(1)
        if not keep.any():
            raise ValueError("every label is unique: need a class with >= 2 rows (or views)")
        m = len(idx) - 1
        s = sim[~eye].view(-1, m)[keep]  # (n', n-1) the other rows as candidates
        pos = s.masked_fill(~same[~eye].view(-1, m)[keep], -3.0).argmax(1)
    ratio = gradients.gradient_ratio(s, pos, tau)  # (n, M)
    profile = ratio.sort(1, descending=True).values.mean(0)[: min(50, ratio.shape[1] - 1)]
    return groups, profile, s, pos


def analyze_features(
    z: Any, labels: Any, out_dir: str | Path, *, temperature: float = 0.2,
    class_names: list[str] | None = None, views: Any = None, test_fraction: float = 0.2,
    tsne_points: int = 1000, source: dict[str, Any] | None = None, feature_name: str = "z",
) -> dict[str, Any]:
    """Analyse ``(N, D)`` features: write ``report.json`` and a self-contained ``report.html``.

    Metrics: uniformity (paper Eq. 10, t = 2) and the Wasserstein uniformity, tolerance (Eq. 11,
    class-conditional), alignment (alpha = 2, with ``views``), kNN top-1 and top-5
    (``metrics.knn_accuracy``, InstDisc protocol, on a seeded ``test_fraction`` split), RankMe,
    alpha-ReQ (with R^2 and range), feature std, negative-similarity mean/variance, the mean
    local separation (positive and the 10 hardest negatives, Fig. 8) and the collapse verdict.
    Figures: the singular spectrum (log), the similarity histograms (positives when ``views`` is
    given, same-class, other-class), the local-separation box plot, the mean sorted relative
    penalty r_i (Eq. 5) at ``temperature`` and a t-SNE map (sklearn) coloured by label. Without
    views an anchor's positive is its nearest same-class row (a proxy, said in the report).
    Features that are not unit-norm are L2-normalised, with a note. Features count as
    "collapsed" when feature_std * sqrt(D) (1 for uniform features, 0 for identical ones) is
    below 0.1.

    Args:
        z: ``(N, D)`` features (tensor or numpy array), N >= 2.
        labels: ``(N,)`` integer class labels.
        out_dir: folder for ``report.json`` and ``report.html`` (created).
        temperature: tau > 0 of the r_i profile.
        class_names: optional names of the classes (listed in the report).
        views: optional ``(N, D)`` second augmented view of each row (``z`` is the first), or a
            pair ``(v1, v2)`` of two augmented views of each row (``z`` then clean features).
        test_fraction: share of rows held out for the kNN accuracy, in (0, 1).
        tsne_points: rows of the t-SNE map (a seeded subset; 0: no map).
        source: what the features are (input kind, paths, layout); stored as ``source``.
        feature_name: how error messages name ``z`` (the CLI passes ``--features FILE``).

    Returns:
        The report as a dict (what ``report.json`` holds).

    Raises:
        ValueError: on a wrong shape, NaN/inf or all-zero rows, labels of another length,
            non-integer labels, or a bad temperature / test_fraction.
    """
    import matplotlib.pyplot as plt

    tau = check_temperature(temperature)
    x = _check_features(feature_name, z)  # messages name what the caller calls it
    n, d = x.shape
    y = _check_labels(labels, n)
    pair = isinstance(views, (tuple, list))
    if pair and len(views) != 2:
        raise ValueError(f"views must be one (N, D) array or a pair (v1, v2), got {len(views)}")
    vs = None if views is None else [_check_features(f"views[{i}]", v, n)
                                     for i, v in enumerate(views if pair else [views])]
    if vs is not None and any(v.shape[1] != d for v in vs):
        raise ValueError(f"views must have D = {d} columns like z, got "
                         f"{[tuple(v.shape) for v in vs]}")
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")
    notes = []
    norms = x.norm(dim=1)
    if (norms - 1).abs().max() > _UNIT_TOL:
        notes.append(f"features were not unit-norm (norms {norms.min():.3g} to "
                     f"{norms.max():.3g}); they were L2-normalised for this report")
    u = F.normalize(x, dim=1)
    v = None if vs is None else tuple(F.normalize(w, dim=1) for w in (vs if pair else [u, vs[0]]))

    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    n_test = min(n - 1, max(1, round(n * float(test_fraction))))
    te, tr = perm[:n_test], perm[n_test:]
    alpha = None
    try:
        fit = diagnostics.alpha_req(u)
        alpha = {"alpha": fit.alpha, "r2": fit.r2, "fit_range": list(fit.fit_range)}
    except ValueError as err:
        notes.append(f"alpha-ReQ not fitted: {err}")
    groups, profile, s, pos = _pairs(u, y, v, tau)
    sep_k = min(_SEPARATION_K, s.shape[1] - 1)
    separation = metrics.local_separation(s, pos, k=sep_k)  # (n, k + 1)
    std = diagnostics.feature_std(u)
    knn_k = min(200, len(tr))
    report: dict[str, Any] = {
        "source": source or {"input": "features"},
        "n": n, "dim": d, "temperature": tau,
        "classes": class_names if class_names is not None else sorted(set(y.tolist())),
        "uniformity": float(metrics.uniformity(u)),
        "wasserstein_uniformity": diagnostics.wasserstein_uniformity(u),
        "tolerance": float(metrics.tolerance(u, y)),
        "knn_top1": float(metrics.knn_accuracy(u[tr], y[tr], u[te], y[te], k=knn_k)),
        "knn_top5": float(metrics.knn_accuracy(u[tr], y[tr], u[te], y[te], k=knn_k, top=5)),
        "knn_split": {"train": len(tr), "test": n_test, "seed": 0, "k": knn_k},
        "rankme": diagnostics.rankme(u),
        "alpha_req": alpha,
        "feature_std": std,
        "negative_similarity": diagnostics.negative_similarity_stats(s, pos),
        "local_separation_mean": separation.mean(0).tolist(),
        "local_separation_positive": "other view" if v is not None else "nearest same-class row",
        "spectrum": diagnostics.singular_spectrum(u).tolist(),
        "gradient_ratio_profile": profile.tolist(),
    }
    if v is not None:
        report["alignment"] = float(metrics.alignment(v[0], v[1]))
    else:
        notes.append("no augmented views: alignment not measured; the local separation and "
                     "r_i profile take each anchor's nearest same-class row as its positive")
    collapsed = std * math.sqrt(d) < _COLLAPSE_STD
    report["collapsed"] = collapsed
    if collapsed:
        notes.insert(0, f"collapsed: feature std {std:.3g} (uniform features: "
                        f"{1 / math.sqrt(d):.3g}), RankMe {report['rankme']:.3g} of D = {d}, "
                        f"W2 uniformity {report['wasserstein_uniformity']:.3g} (max 1.41)")
    report["notes"] = notes

    figs = {}
    fig, ax = plt.subplots(figsize=(5, 3.2))
    spec = np.maximum(np.array(report["spectrum"]), 1e-30)
    ax.semilogy(np.arange(1, d + 1), spec)
    ax.set(xlabel="rank k", ylabel="eigenvalue of cov(z)", title="singular spectrum")
    figs["Singular spectrum (Jing et al. 2022)"] = _png(fig)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for name, vals in groups.items():
        if vals.numel():
            ax.hist(vals.numpy(), bins=60, range=(-1, 1), density=True, alpha=0.5, label=name)
    ax.set(xlabel="cosine similarity", ylabel="density", title="similarities")
    ax.legend()
    figs["Similarity histograms"] = _png(fig)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(np.arange(1, len(profile) + 1), profile.numpy(), marker=".")
    ax.set(xlabel="negative rank", ylabel="mean r_i", title=f"relative penalty at tau={tau:g}")
    figs["Gradient-ratio profile (Eq. 5)"] = _png(fig)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.boxplot(separation.numpy(), showfliers=False)
    ax.set_xticks(range(1, sep_k + 2), ["pos"] + [f"n{i}" for i in range(1, sep_k + 1)])
    ax.set(ylabel="cosine similarity", title="local separation: positive vs hardest negatives")
    figs["Local separation (Fig. 8)"] = _png(fig)
    if tsne_points and n >= 5:
        figs["t-SNE map"] = _tsne(u, y, int(tsne_points), report)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.html").write_text(_html(report, figs))
    return report


def _tsne(u: Tensor, y: Tensor, points: int, report: dict[str, Any]) -> str:
    """A t-SNE map (sklearn, PCA init, seed 0) of a seeded subset of ``points`` rows."""
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    idx = torch.randperm(u.shape[0], generator=torch.Generator().manual_seed(0))[:points]
    perplexity = min(30.0, (len(idx) - 1) / 3)
    xy = TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=0).fit_transform(
        u[idx].numpy())  # (n, 2)
    report["tsne"] = {"points": len(idx), "perplexity": perplexity, "seed": 0}
    fig, ax = plt.subplots(figsize=(5, 4.5))
    sc = ax.scatter(xy[:, 0], xy[:, 1], c=y[idx].numpy(), s=4, cmap="tab10")
    ax.legend(*sc.legend_elements(num=None), fontsize=6, markerscale=0.7, loc="best")
    ax.set(xticks=[], yticks=[], title=f"t-SNE of {len(idx)} rows (perplexity {perplexity:g})")
    return _png(fig)


def _html(report: dict[str, Any], figs: dict[str, str]) -> str:
    """One HTML page: notes, a metrics table, the inline figures."""
    skip = {"spectrum", "gradient_ratio_profile", "notes", "local_separation_mean"}
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(json.dumps(v))}</td></tr>"
                   for k, v in report.items() if k not in skip)
    notes = "".join(f"<li>{html.escape(t)}</li>" for t in report["notes"])
    images = "".join(f"<h2>{html.escape(t)}</h2><img alt='{html.escape(t)}' src='{uri}'>"
                     for t, uri in figs.items())
    verdict = "collapsed" if report["collapsed"] else "not collapsed"
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>cl-analysis report"
            f"</title></head><body><h1>cl-analysis report: {verdict}</h1><ul>{notes}</ul>"
            f"<table border='1'>{rows}</table>{images}</body></html>")
