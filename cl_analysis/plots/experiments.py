"""Figures and tables of the experiments: the paper's points beside "this run".

Every ``results`` argument is the DataFrame of :func:`cl_analysis.experiments.load_results`
(columns ``dataset, regime, loss, temperature, linear_top1, knn_top1, uniformity, tolerance,
uniformity_bank, tolerance_bank, ...``). Paper values come from :mod:`cl_analysis.paper_results`
and are drawn dashed with hollow markers; this run's are solid with filled markers. The τ-free
losses (``simple``, ``hard_simple``) are horizontal reference lines.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np

from cl_analysis._checks import check_choice
from cl_analysis.registry import LOSSES as _LOSSES
from cl_analysis.registry import TAU_FREE_LOSSES as _TAU_FREE
from cl_analysis.study import paper_results as pr

__all__ = [
    "plot_embedding_2d", "plot_uniformity_tolerance", "plot_ordinary_vs_hard",
    "plot_local_separation", "plot_accuracy_vs_temperature", "plot_sphere_density",
    "plot_metrics_vs_temperature", "plot_training_curves", "plot_weighting_over_training",
    "plot_positive_probability_histograms",
]

LOSS_COLORS = {name: spec.color for name, spec in _LOSSES.items()}  # from the loss registry
LOSS_LABELS = {name: spec.label for name, spec in _LOSSES.items()}
_PAPER = dict(ls="--", mfc="none", alpha=0.8)
_METRIC_NAMES = {"linear_top1": "linear top-1 (%)", "knn_top1": "kNN top-1 (%)",
                 "uniformity": "uniformity  $-\\mathcal{L}_{uniformity}$", "tolerance": "tolerance",
                 "penalty_entropy": "penalty entropy (nats)",
                 "effective_negatives": "effective negatives  $e^{H}$",
                 "knn_accuracy": "kNN accuracy (monitor)", "loss": "training loss"}


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def _percent(values: np.ndarray) -> np.ndarray:
    """Accuracies as percent (a run storing fractions in [0, 1] is scaled by 100)."""
    values = np.asarray(values, dtype=float)
    finite = values[np.isfinite(values)]
    return values * 100 if finite.size and finite.max() <= 1.0 else values


def _column(frame, metric: str, protocol: str) -> str:
    """The results column for ``metric``: the memory-bank (paper) or the test-set version."""
    bank = f"{metric}_bank"
    if metric not in ("uniformity", "tolerance") or protocol == "test" or bank not in frame:
        return metric
    return bank if protocol == "bank" or frame[bank].notna().any() else metric


def _run_points(results, dataset: str, loss: str, metric: str, protocol: str = "auto"):
    """{regime: (temperatures, mean, std)} of this run over seeds, sorted by τ, NaN dropped.

    ``std`` is the seed-to-seed standard deviation (ddof = 1; NaN with one seed).
    """
    out = {}
    if results is None or len(results) == 0:
        return out
    frame = results[(results["dataset"] == dataset) & (results["loss"] == loss)]
    column = _column(frame, metric, protocol)
    if column not in frame:
        return out
    for regime, group in frame.groupby("regime", sort=True):
        group = group[group[column].notna()]
        if group.empty:
            continue
        key = group["temperature"].fillna(-1.0)  # τ-free losses: one group
        stats = group.groupby(key)[column].agg(["mean", "std"]).sort_index()
        temps = stats.index.to_numpy(dtype=float).copy()
        temps[temps == -1.0] = np.nan
        mean, std = stats["mean"].to_numpy(dtype=float), stats["std"].to_numpy(dtype=float)
        if metric.endswith("top1"):
            scale = 100.0 if np.nanmax(mean) <= 1.0 else 1.0
            mean, std = mean * scale, std * scale
        out[regime] = (temps, mean, std)
    return out


def _paper_points(dataset: str, loss: str, metric: str):
    """(temperatures, values) of the paper: the §3.2 sweeps when given, else Table 1."""
    source = {"uniformity": "uniformity_tolerance", "tolerance": "uniformity_tolerance"}.get(
        metric, "fig9")
    if dataset not in pr.DATASETS or loss not in pr.LOSSES:  # e.g. imagefolder, tau_zero_limit
        return np.array([]), np.array([])
    for src in (source, "table1"):
        if src == "table1" and metric == "knn_top1":
            break
        rows = [r for r in pr.paper_rows(dataset, loss, src) if r.get(metric) is not None]
        if rows:
            t = np.array([math.nan if r["temperature"] is None else r["temperature"] for r in rows])
            return t, np.array([r[metric] for r in rows], dtype=float)
    return np.array([]), np.array([])


def _draw(ax, temps, values, loss: str, label: str, paper: bool, marker: str = "o",
          spread=None) -> None:
    """One curve; ``spread`` (seed-to-seed std, same shape) draws error bars / a band."""
    style = dict(color=LOSS_COLORS.get(loss, "k"), label=label, **(_PAPER if paper else {}))
    has_spread = spread is not None and np.isfinite(spread).any()
    if loss in _TAU_FREE or np.isnan(temps).all():
        mean = float(np.nanmean(values))
        ax.axhline(mean, lw=1.2, **{k: v for k, v in style.items() if k != "mfc"})
        if has_spread:
            sd = float(np.nanmax(spread))
            ax.axhspan(mean - sd, mean + sd, color=style["color"], alpha=0.12, lw=0)
    elif has_spread:
        ax.errorbar(temps, values, yerr=np.nan_to_num(spread), marker=marker, ms=4, capsize=2,
                    **style)
    else:
        ax.plot(temps, values, marker=marker, ms=4, **style)


def _metric_panel(ax, results, dataset, losses, metric, paper, protocol, ax_run=None) -> None:
    ax_run = ax_run or ax
    for loss in losses:
        name = LOSS_LABELS.get(loss, loss)
        if paper:
            t, v = _paper_points(dataset, loss, metric)
            if len(v):
                _draw(ax, t, v, loss, f"{name} (paper)", paper=True)
        for regime, (t, v, sd) in _run_points(results, dataset, loss, metric, protocol).items():
            _draw(ax_run, t, v, loss, f"{name} (this run, {regime})", paper=False,
                  marker="s" if regime == "simclr" else "o", spread=sd)
    ax.set_xlabel("temperature τ")
    ax.set_ylabel(_METRIC_NAMES.get(metric, metric))


def _legend(fig, axes) -> None:
    """One figure legend right of the axes, from every axes' labelled artists."""
    handles = {}
    for ax in axes:
        handles.update(zip(*ax.get_legend_handles_labels()[::-1]))
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside right center", fontsize=7)


def plot_uniformity_tolerance(results, loss: str = "info_nce", dataset: str = "cifar10",
                              paper: bool = True, protocol: str = "auto", title: str | None = None):
    """Figs. 4-7: uniformity (left) and tolerance (right) against τ for one loss.

    Args:
        results: results DataFrame (``experiments.load_results``); None for paper points only.
        loss: ``"info_nce"`` (Figs. 4, 5), ``"hard"`` (Figs. 6, 7), ``"simple"``, ``"hard_simple"``.
        dataset: dataset key, e.g. ``"cifar10"``.
        paper: also draw the paper's values (dashed, hollow markers).
        protocol: ``"bank"`` (the paper's memory-bank metrics), ``"test"`` (test-set features) or
            ``"auto"`` (bank where the results have it).
        title: figure title; None keeps the default one.

    Returns:
        matplotlib Figure with two axes.
    """
    return plot_ordinary_vs_hard(results, dataset, paper=paper, protocol=protocol, losses=(loss,),
                                 title=title)


def plot_ordinary_vs_hard(results, dataset: str = "cifar10", paper: bool = True,
                          protocol: str = "auto",
                          losses=("info_nce", "hard", "simple", "hard_simple"),
                          title: str | None = None):
    """Figs. 4+6 and 5+7 overlaid: uniformity and tolerance vs τ for several losses.

    Args:
        results: results DataFrame, or None.
        dataset: dataset key.
        paper: also draw the paper's values.
        protocol: see :func:`plot_uniformity_tolerance`.
        losses: which losses; the τ-free ones are horizontal lines.
        title: figure title; None keeps the default one.

    Returns:
        matplotlib Figure with two axes (uniformity, tolerance).
    """
    check_choice("protocol", protocol, ("auto", "bank", "test"))
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), layout="constrained")
    for ax, metric in zip(axes, ("uniformity", "tolerance")):
        _metric_panel(ax, results, dataset, losses, metric, paper, protocol)
    _legend(fig, axes)
    fig.suptitle(title or f"{dataset}: uniformity and tolerance vs τ (paper dashed, this run "
                          f"solid)")
    return fig


def plot_accuracy_vs_temperature(results, dataset: str = "cifar10", metric: str = "linear_top1",
                                 paper: bool = True,
                                 losses=("info_nce", "hard", "simple", "hard_simple"),
                                 title: str | None = None):
    """Fig. 9: accuracy vs τ, ordinary vs hard CL; paper on the left axis, this run on the right.

    The two y-axes differ because a quick run (few epochs, small subset) has much lower absolute
    accuracy than the paper's 200-epoch ResNet-18; compare the shapes of the curves.

    Args:
        results: results DataFrame, or None.
        dataset: dataset key.
        metric: ``"linear_top1"`` or ``"knn_top1"`` (percent).
        paper: also draw the paper's points (Fig. 9 sweeps, Table 1 for ImageNet100).
        losses: which losses; the τ-free ones are horizontal lines.
        title: figure title; None keeps the default one.

    Returns:
        matplotlib Figure with two axes (the twin axes: paper left, this run right).
    """
    check_choice("metric", metric, ("linear_top1", "knn_top1"))
    fig, ax = plt.subplots(figsize=(9, 4), layout="constrained")
    ax_run = ax.twinx()
    _metric_panel(ax, results, dataset, losses, metric, paper, "auto", ax_run=ax_run)
    ax.set_ylabel(f"paper: {_METRIC_NAMES[metric]}  (dashed)")
    ax_run.set_ylabel(f"this run: {_METRIC_NAMES[metric]}  (solid)")
    _legend(fig, (ax, ax_run))
    ax.set_title(title or f"{dataset}: accuracy vs τ (paper left axis, this run right axis)",
                 fontsize=10)
    return fig


def _reduce_2d(z: np.ndarray, method: str, seed: int) -> np.ndarray:
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(30, max(2, (len(z) - 1) // 3)))
        return TSNE(2, init="pca", perplexity=perplexity, random_state=seed).fit_transform(z)
    import umap

    reducer = umap.UMAP(n_components=2, n_neighbors=min(15, len(z) - 1), random_state=seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
        return reducer.fit_transform(z)


def plot_embedding_2d(embeddings_by_temperature: Mapping, method: str = "tsne",
                      class_names=None, seed: int = 0, title: str | None = None):
    """Fig. 2: 2-D t-SNE (or UMAP) maps of embeddings, one panel per τ, coloured by class.

    Args:
        embeddings_by_temperature: ``{τ: (z, labels)}`` with z ``(N, D)`` (tensor or array) and
            integer labels ``(N,)``.
        method: ``"tsne"`` (scikit-learn) or ``"umap"`` (umap-learn).
        class_names: optional names for the legend, indexed by label.
        seed: random state of the reduction.
        title: figure title; None keeps the default one.

    Returns:
        matplotlib Figure with one axes per τ.
    """
    check_choice("method", method, ("tsne", "umap"))
    if not embeddings_by_temperature:
        raise ValueError("embeddings_by_temperature is empty; pass {temperature: (z, labels)}")
    n = len(embeddings_by_temperature)
    fig, axes = plt.subplots(1, n, figsize=(4 * n, 4), squeeze=False)
    for ax, (tau, (z, labels)) in zip(axes[0], embeddings_by_temperature.items()):
        z, labels = _numpy(z).astype(np.float32), _numpy(labels).astype(int)
        if z.ndim != 2 or len(z) != len(labels) or len(z) < 5:
            raise ValueError(f"τ={tau}: need z (N, D) with N >= 5 and labels (N,), got "
                             f"{z.shape} and {labels.shape}")
        xy = _reduce_2d(z, method, seed)
        cmap = plt.get_cmap("tab10" if labels.max() < 10 else "tab20")
        for c in np.unique(labels):
            name = class_names[c] if class_names is not None else str(c)
            m = labels == c
            ax.scatter(xy[m, 0], xy[m, 1], s=3, color=cmap(c % cmap.N), label=name)
        ax.set_title(f"τ = {tau}")
        ax.set_xticks([]), ax.set_yticks([])
    axes[0, -1].legend(markerscale=4, fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.suptitle(title or f"{method.upper()} of the embeddings")
    fig.tight_layout()
    return fig


def plot_local_separation(local_sep_by_temperature: Mapping, ylim=None, title: str | None = None):
    """Fig. 8: box plots of the positive and the 10 nearest negative similarities, per τ.

    Args:
        local_sep_by_temperature: ``{τ: (N, k + 1) array}`` from ``metrics.local_separation``
            (column 0 the positive, then the k hardest negatives).
        ylim: optional y-limits; None is automatic (the paper used (0.4, 1.0)).
        title: figure title; None keeps the default one.

    Returns:
        matplotlib Figure with one axes per τ.
    """
    if not local_sep_by_temperature:
        raise ValueError("local_sep_by_temperature is empty; pass {temperature: (N, k+1) array}")
    n = len(local_sep_by_temperature)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.4), squeeze=False, sharey=True)
    for ax, (tau, sep) in zip(axes[0], local_sep_by_temperature.items()):
        sep = _numpy(sep).astype(float)
        if sep.ndim != 2 or sep.shape[1] < 2:
            raise ValueError(f"τ={tau}: expected an (N, k+1) array, got shape {sep.shape}")
        names = ["pos"] + [f"n{j}" for j in range(1, sep.shape[1])]
        box = ax.boxplot(sep, tick_labels=names, showfliers=False, patch_artist=True)
        for patch, name in zip(box["boxes"], names):
            patch.set_facecolor("C2" if name == "pos" else "C0")
            patch.set_alpha(0.6)
        ax.set_title(f"τ = {tau}")
        ax.tick_params(axis="x", labelsize=7)
        if ylim is not None:
            ax.set_ylim(*ylim)
    axes[0, 0].set_ylabel("similarity")
    fig.suptitle(title or "local separation: positive vs nearest negatives")
    fig.tight_layout()
    return fig


def _unit_rows(z) -> np.ndarray:
    z = _numpy(z).astype(float)
    if z.ndim != 2 or z.shape[1] not in (2, 3) or len(z) < 2:
        raise ValueError(f"z must be (N, 2) or (N, 3) with N >= 2, got shape {z.shape}")
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError("z has zero rows that cannot be projected onto the sphere")
    return z / norms


def plot_sphere_density(z, labels=None, bandwidth=None, title: str | None = None):
    """Wang & Isola-style view of 2-D / 3-D embeddings on the circle / sphere.

    2-D: the points on the unit circle (left) and a wrapped Gaussian KDE of their angle (right).
    3-D: the points on the sphere (left, 3-D scatter) and a 2-D histogram over
    (azimuth, elevation) (right). Rows are L2-normalised first.

    Args:
        z: ``(N, 2)`` or ``(N, 3)`` embeddings.
        labels: optional ``(N,)`` integer labels to colour the points.
        bandwidth: kernel standard deviation in radians of the angle KDE (2-D only); None is
            Scott's rule on the angles.
        title: optional figure title (none by default).

    Returns:
        matplotlib Figure with two axes.
    """
    from scipy.stats import gaussian_kde

    u = _unit_rows(z)
    colors = None
    if labels is not None:
        labels = _numpy(labels).astype(int)
        cmap = plt.get_cmap("tab10" if labels.max() < 10 else "tab20")
        colors = cmap(labels % cmap.N)
    fig = plt.figure(figsize=(9, 4))
    if u.shape[1] == 2:
        ax = fig.add_subplot(1, 2, 1)
        ax.add_patch(plt.Circle((0, 0), 1, fill=False, color="0.7"))
        ax.scatter(u[:, 0], u[:, 1], s=6, c=colors)
        ax.set_aspect("equal"), ax.set_xlim(-1.15, 1.15), ax.set_ylim(-1.15, 1.15)
        theta = np.arctan2(u[:, 1], u[:, 0])
        # Scott's rule (std * n^(-1/5)), floored so that a collapsed embedding still draws
        sigma = bandwidth or max(float(np.std(theta, ddof=1)) * len(theta) ** -0.2, 0.01)
        wrapped = np.concatenate([theta - 2 * np.pi, theta, theta + 2 * np.pi])
        kde = gaussian_kde(wrapped, bw_method=sigma / wrapped.std(ddof=1))
        grid = np.linspace(-np.pi, np.pi, 361)
        density = 3 * kde(grid)  # the 3 shifted copies hold the mass once each
        ax2 = fig.add_subplot(1, 2, 2)
        ax2.plot(grid, density, color="C0")
        ax2.fill_between(grid, density, alpha=0.3)
        ax2.axhline(1 / (2 * np.pi), color="0.5", ls="--", lw=1, label="uniform")
        ax2.set_xlabel("angle θ"), ax2.set_ylabel("density"), ax2.legend(fontsize=7)
    else:
        ax = fig.add_subplot(1, 2, 1, projection="3d")
        ax.scatter(u[:, 0], u[:, 1], u[:, 2], s=4, c=colors)
        ax.set_box_aspect((1, 1, 1))
        azimuth, elevation = np.arctan2(u[:, 1], u[:, 0]), np.arcsin(np.clip(u[:, 2], -1, 1))
        ax2 = fig.add_subplot(1, 2, 2)
        # sin(elevation) bins have equal area on the sphere, so a uniform sphere is flat here.
        ax2.hist2d(azimuth, np.sin(elevation), bins=(36, 18),
                   range=((-np.pi, np.pi), (-1, 1)), cmap="viridis")
        ax2.set_xlabel("azimuth"), ax2.set_ylabel("sin(elevation)")
    ax.set_title("embeddings on the " + ("circle" if u.shape[1] == 2 else "sphere"))
    ax2.set_title("density")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_metrics_vs_temperature(results, metrics=("penalty_entropy", "effective_negatives"),
                                dataset: str = "cifar10",
                                losses=("info_nce", "hard", "simple", "hard_simple"),
                                logy=("effective_negatives",), title: str | None = None):
    """This run's values of any results columns against τ, one panel per metric (no paper points).

    Args:
        results: results DataFrame (``experiments.load_results``).
        metrics: column names, e.g. ``penalty_entropy``, ``effective_negatives``, ``alignment``.
        dataset: dataset key.
        losses: which losses; the τ-free ones are horizontal lines.
        logy: metrics drawn on a log y-axis.
        title: figure title; None keeps the default one.

    Returns:
        matplotlib Figure with one axes per metric.
    """
    metrics = tuple(metrics)
    if not metrics:
        raise ValueError("metrics is empty; pass results column names such as 'penalty_entropy'")
    missing = [m for m in metrics if results is None or m not in results]
    if missing:
        raise ValueError(f"results have no column(s) {missing}; pass a load_results DataFrame")
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics) + 2, 3.6),
                             layout="constrained", squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        _metric_panel(ax, results, dataset, losses, metric, False, "test")
        if metric in logy:
            ax.set_yscale("log")
    _legend(fig, axes[0])
    fig.suptitle(title or f"{dataset}: this run's {', '.join(metrics)} vs τ")
    return fig


def plot_training_curves(histories: Mapping, metrics=("uniformity", "tolerance"),
                         title: str | None = None):
    """Per-epoch curves of runs (their ``metrics.jsonl`` rows), one panel per metric.

    Epochs without a value (monitoring runs every ``knn_every`` epochs) are skipped, so sparse
    metrics are drawn through the epochs that have them.

    Args:
        histories: ``{label: rows}`` with rows a list of dicts or a DataFrame holding an
            ``epoch`` column and the metric columns.
        metrics: row keys to draw, e.g. ``uniformity``, ``tolerance``, ``loss``, ``knn_accuracy``.
        title: figure title; None keeps the default one.

    Returns:
        matplotlib Figure with one axes per metric.
    """
    metrics = tuple(metrics)
    if not histories or not metrics:
        raise ValueError("pass {label: metrics.jsonl rows} and at least one metric name")
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics) + 2, 3.4),
                             layout="constrained", squeeze=False)
    for j, (label, rows) in enumerate(histories.items()):
        rows = rows.to_dict("records") if hasattr(rows, "to_dict") else list(rows)
        for ax, metric in zip(axes[0], metrics):
            points = [(r["epoch"], r[metric]) for r in rows
                      if r.get(metric) is not None and np.isfinite(float(r[metric]))]
            if points:
                x, y = np.array(points, dtype=float).T
                ax.plot(x, y, marker="o", ms=3, color=f"C{j % 10}", label=str(label))
    for ax, metric in zip(axes[0], metrics):
        ax.set_xlabel("epoch")
        ax.set_ylabel(_METRIC_NAMES.get(metric, metric))
    _legend(fig, axes[0])
    fig.suptitle(title or "per-epoch monitoring (metrics.jsonl)")
    return fig


def _by_temperature(table, loss: str, columns: tuple[str, ...]):
    """{τ: DataFrame of ``table`` rows of ``loss`` at τ}, τ ascending (τ-free: key NaN)."""
    missing = [c for c in ("loss", "temperature", "seed", "epoch", *columns) if c not in table]
    if missing:
        raise ValueError(f"table has no column(s) {missing}; pass SweepRuns.history_table(...)")
    rows = table[table["loss"] == loss]
    if rows.empty:
        raise ValueError(f"no run of loss {loss!r} in the table; losses: "
                         f"{sorted(set(table['loss']))}")
    groups = dict(list(rows.groupby("temperature", dropna=False)))
    return {t: groups[t] for t in sorted(groups, key=lambda t: (t != t, t))}  # NaN last


def _tau_label(tau) -> str:
    return "τ-free loss (monitor at the base τ)" if tau != tau else f"τ = {tau:g}"


def plot_weighting_over_training(table, loss: str = "info_nce",
                                 methods=("flat_nce", "macl", "dual_temperature"),
                                 title: str | None = None):
    """The weighting lens of trained runs over epochs, one line per τ (notebook 07).

    Panels: the mean positive probability P_ip at the run's τ (log axis) and, per method, the
    std over anchors of log w_i (:func:`cl_analysis.weighting.anchor_weights`), as logged by the
    trainer on its monitored epochs. Lines: means over seeds; bands: ± one seed std.

    Args:
        table: :meth:`cl_analysis.study.runs.SweepRuns.history_table` with the keys
            ``positive_probability`` and ``anchor_log_weight_std_<method>``.
        loss: which loss's runs.
        methods: re-weighting methods logged by the trainer.
        title: figure title; None keeps the default one.

    Returns:
        matplotlib Figure with ``1 + len(methods)`` axes.

    Raises:
        ValueError: a missing column or no run of ``loss``.
    """
    methods = tuple("flat_nce" if m == "decoupled" else m for m in methods)  # same weights
    cols = ("positive_probability", *(f"anchor_log_weight_std_{m}" for m in methods))
    groups = _by_temperature(table, loss, cols)
    fig, axes = plt.subplots(1, len(cols), figsize=(4.2 * len(cols), 3.4), layout="constrained",
                             squeeze=False)
    for j, (tau, rows) in enumerate(groups.items()):
        stats = rows.groupby("epoch")[list(cols)].agg(["mean", "std"])
        for k, (ax, col) in enumerate(zip(axes[0], cols)):
            mean, std = stats[(col, "mean")], stats[(col, "std")].fillna(0.0)  # 1 seed: no band
            low = np.maximum(mean - std, mean / 10) if k == 0 else mean - std  # log axis: > 0
            ax.plot(stats.index, mean, marker="o", ms=3, color=f"C{j % 10}",
                    label=_tau_label(tau))
            ax.fill_between(stats.index, low, mean + std, color=f"C{j % 10}", alpha=0.2)
    axes[0][0].set(yscale="log", ylabel="mean $P_{ip}$ (positive's softmax probability)")
    for ax, m in zip(axes[0][1:], methods):
        ax.set(ylabel="std over anchors of log $w_i$", title=m)
    for ax in axes[0]:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    _legend(fig, axes[0])
    fig.suptitle(title or f"{LOSS_LABELS.get(loss, loss)}: the weighting lens over training")
    return fig


def plot_positive_probability_histograms(table, log10_range: tuple[float, float] | None = None,
                                         loss: str = "info_nce", epochs=None,
                                         title: str | None = None):
    """Distribution over anchors of log10 P_ip at chosen epochs, one panel per τ (notebook 07).

    Args:
        table: :meth:`cl_analysis.study.runs.SweepRuns.history_table` with the key
            ``positive_probability_hist`` (fractions of anchors in equal bins of log10 P_ip).
        log10_range: the bins' span, as logged; None: the trainer's
            (``cl_analysis.training.trainer.POSITIVE_LOG10_RANGE``). The end bins also hold
            what lies beyond.
        loss: which loss's runs.
        epochs: an epoch or a list of epochs to draw; None: each τ's first and last
            monitored epoch.
        title: figure title; None keeps the default one.

    Returns:
        matplotlib Figure, one axes per τ; bars are means over seeds.

    Raises:
        ValueError: a missing column, no run of ``loss``, an epoch that was not logged or a
            range with low >= high.
    """
    if log10_range is None:
        from cl_analysis.training.trainer import POSITIVE_LOG10_RANGE as log10_range
    lo, hi = (float(v) for v in log10_range)
    if not lo < hi:
        raise ValueError(f"log10_range must be (low, high) with low < high, got {log10_range}")
    if epochs is not None:
        epochs = [epochs] if isinstance(epochs, (int, np.integer)) else list(epochs)
    groups = _by_temperature(table, loss, ("positive_probability_hist",))
    chosen = {}
    for tau, rows in groups.items():
        logged = sorted(set(rows["epoch"]))
        chosen[tau] = sorted({logged[0], logged[-1]}) if epochs is None else epochs
        absent = [e for e in chosen[tau] if e not in logged]
        if absent:
            raise ValueError(f"epoch(s) {absent} were not monitored for {_tau_label(tau)}; "
                             f"logged: {logged}")
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.2),
                             layout="constrained", squeeze=False, sharey=True)
    for ax, (tau, rows) in zip(axes[0], groups.items()):
        for j, e in enumerate(chosen[tau]):
            hists = np.array(rows[rows["epoch"] == e]["positive_probability_hist"].tolist())
            mean = hists.mean(0)
            edges = np.linspace(lo, hi, len(mean) + 1)
            ax.stairs(mean, edges, color=f"C{j % 10}", lw=1.5, label=f"epoch {e}")
        ax.set(title=_tau_label(tau), xlabel="log10 $P_{ip}$")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("fraction of anchors")
    _legend(fig, axes[0])
    fig.suptitle(title or f"{LOSS_LABELS.get(loss, loss)}: where the positives' probability "
                          f"lies (end bins open)")
    return fig
