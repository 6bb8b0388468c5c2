"""Figures of the analysis notebooks (01-03): the loss family, its gradients and its τ limits.

Every function returns a :class:`matplotlib.figure.Figure` drawn with pyplot (so Jupyter's inline
backend shows it once when assigned, ``fig = plot_...(...)``); nothing calls ``plt.show()``.
Figures are small (dpi 80) to keep executed notebooks light. Tensors and arrays are accepted
alike. Equation numbers are Wang & Liu (CVPR 2021).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from cl_analysis import gradients, weighting
from cl_analysis.toy import ToyRun

__all__ = [
    "plot_loss_values",
    "plot_circle_embeddings",
    "plot_sphere_embeddings",
    "plot_loss_curves",
    "plot_toy_metrics",
    "plot_gradient_check",
    "plot_gradient_ratio",
    "plot_penalty_entropy",
    "plot_gradient_ratio_panels",
    "gradient_ratio_explorer",
    "plot_limit_gaps",
    "plot_truncation",
    "plot_truncated_ratio",
    "plot_weighting_vs_temperature",
]

DPI = 80


def _np(x) -> np.ndarray:
    """A tensor / array / sequence as a float64 numpy array."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=float)


def _grid(n: int, ncols: int, size: float, projection: str | None = None):
    """A figure with ``n`` panels on a grid of at most ``ncols`` columns; returns (fig, axes)."""
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig = plt.figure(figsize=(size * ncols, size * nrows + 0.3), dpi=DPI)
    axes = [fig.add_subplot(nrows, ncols, i + 1, projection=projection) for i in range(n)]
    return fig, axes


def _embedding(value) -> tuple[np.ndarray, np.ndarray | None]:
    """Final embeddings ``(N, D)`` and, for a ToyRun, its trajectory ``(T, N, D)``."""
    if isinstance(value, ToyRun):
        return _np(value.embeddings), _np(value.trajectory)
    return _np(value), None


def plot_loss_values(values: Mapping[str, float], expected: Mapping[str, float] | None = None,
                     title: str = "loss values") -> Figure:
    """Horizontal bar chart of loss values, with optional closed-form values as markers.

    Args:
        values: loss name -> computed value.
        expected: loss name -> closed-form value, drawn as black diamonds where given.
        title: axes title.

    Returns:
        Figure with one axes.
    """
    names = list(values)
    vals = np.array([float(values[k]) for k in names])
    fig, ax = plt.subplots(figsize=(5.5, 0.32 * len(names) + 1.0), dpi=DPI)
    y = np.arange(len(names))
    ax.barh(y, vals, color=[f"C{i % 10}" for i in range(len(names))], alpha=0.8)
    if expected:
        ey = [i for i, k in enumerate(names) if k in expected]
        ax.scatter([float(expected[names[i]]) for i in ey], ey, marker="D", color="k", s=18,
                   zorder=3, label="closed form")
        ax.legend(fontsize=7, loc="lower right")
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0, color="0.4", lw=0.8)
    ax.set_xlabel("loss")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_circle_embeddings(embeddings: Mapping[str, object], labels=None, ncols: int = 4,
                           trajectories: bool = True) -> Figure:
    """2-D embeddings on the unit circle, one panel per entry, coloured by class.

    Args:
        embeddings: title -> ``(N, 2)`` embeddings or a :class:`~cl_analysis.toy.ToyRun` (whose
            trajectory is drawn faintly behind the final points when ``trajectories``).
        labels: ``(N,)`` class labels; ``None`` -> a ToyRun's labels, else one colour.
        ncols: panels per row.
        trajectories: draw ToyRun trajectories.

    Returns:
        Figure with ``len(embeddings)`` axes.
    """
    fig, axes = _grid(len(embeddings), ncols, 2.4)
    for ax, (title, value) in zip(axes, embeddings.items()):
        z, traj = _embedding(value)
        if z.ndim != 2 or z.shape[1] != 2:
            raise ValueError(f"{title!r}: need (N, 2) embeddings, got shape {z.shape}")
        lab = labels if labels is not None else getattr(value, "labels", None)
        colors = None if lab is None else _np(lab).astype(int) % 10
        ax.add_patch(plt.Circle((0, 0), 1, fill=False, color="0.75", lw=0.8))
        if trajectories and traj is not None:
            for i in range(traj.shape[1]):
                ax.plot(traj[:, i, 0], traj[:, i, 1], lw=0.5, alpha=0.35,
                        color="0.5" if colors is None else f"C{colors[i]}")
        ax.scatter(z[:, 0], z[:, 1], s=9, c=None if colors is None else [f"C{c}" for c in colors],
                   edgecolors="none", zorder=3)
        ax.set_aspect("equal")
        ax.set_xlim(-1.15, 1.15)
        ax.set_ylim(-1.15, 1.15)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return fig


def plot_sphere_embeddings(embeddings: Mapping[str, object], labels=None, ncols: int = 4,
                           elev: float = 20.0, azim: float = 35.0) -> Figure:
    """3-D embeddings on the unit sphere (3-D scatter), one panel per entry, coloured by class.

    Args:
        embeddings: title -> ``(N, 3)`` embeddings or a :class:`~cl_analysis.toy.ToyRun`.
        labels: ``(N,)`` class labels; ``None`` -> a ToyRun's labels, else one colour.
        ncols: panels per row.
        elev: camera elevation in degrees.
        azim: camera azimuth in degrees.

    Returns:
        Figure with ``len(embeddings)`` 3-D axes.
    """
    fig, axes = _grid(len(embeddings), ncols, 2.2, projection="3d")
    u, v = np.meshgrid(np.linspace(0, 2 * np.pi, 25), np.linspace(0, np.pi, 13))
    for ax, (title, value) in zip(axes, embeddings.items()):
        z, _ = _embedding(value)
        if z.ndim != 2 or z.shape[1] != 3:
            raise ValueError(f"{title!r}: need (N, 3) embeddings, got shape {z.shape}")
        lab = labels if labels is not None else getattr(value, "labels", None)
        colors = None if lab is None else [f"C{c % 10}" for c in _np(lab).astype(int)]
        ax.plot_wireframe(np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v),
                          color="0.85", lw=0.4)
        ax.scatter(z[:, 0], z[:, 1], z[:, 2], s=7, c=colors, depthshade=False)
        ax.view_init(elev=elev, azim=azim)
        ax.set_box_aspect((1, 1, 1), zoom=1.35)  # fill the panel; the axes are hidden
        ax.set_axis_off()
        ax.set_title(title, fontsize=8)
    fig.subplots_adjust(left=0, right=1, bottom=0, top=0.92, wspace=0, hspace=0.1)
    return fig


def plot_loss_curves(runs: Mapping[str, object], normalize: bool = True) -> Figure:
    """Training curves of toy runs on one axes.

    Args:
        runs: name -> :class:`~cl_analysis.toy.ToyRun` or a ``(steps,)`` loss history.
        normalize: plot (L_t - L_T) / (L_0 - L_T), the share of the total decrease still to
            come, so losses of different scales compare; else the raw values.

    Returns:
        Figure with one axes.
    """
    fig, ax = plt.subplots(figsize=(5.5, 3.2), dpi=DPI)
    for name, run in runs.items():
        hist = _np(run.losses if isinstance(run, ToyRun) else run)
        if normalize:
            span = hist[0] - hist[-1]
            hist = (hist - hist[-1]) / (span if abs(span) > 1e-12 else 1.0)
        ax.plot(np.arange(1, len(hist) + 1), hist, lw=1.2, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("gradient step")
    ax.set_ylabel("(L_t - L_T) / (L_0 - L_T)" if normalize else "loss")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_toy_metrics(metrics_by_run: Mapping[str, Mapping[str, float]], x: str = "uniformity",
                     y: str = "tolerance") -> Figure:
    """Scatter of two metrics (default: uniformity vs tolerance), one labelled point per run.

    The uniformity-tolerance dilemma of the paper (§4.2) in toy form: uniform runs sit to the
    right, runs that keep classes together sit high.

    Args:
        metrics_by_run: run name -> {metric name -> value}, e.g. from
            :func:`cl_analysis.toy.summarize_runs`.
        x: metric on the x axis.
        y: metric on the y axis.

    Returns:
        Figure with one axes.
    """
    fig, ax = plt.subplots(figsize=(6.0, 3.4), dpi=DPI)
    for i, (name, m) in enumerate(metrics_by_run.items()):
        ax.scatter(float(m[x]), float(m[y]), color=f"C{i % 10}", s=30,
                   marker="os^Dv<>p*h"[(i // 10) % 10], label=name)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_gradient_check(analytic, autograd) -> Figure:
    """Parity plot of the analytic gradient (Eq. 4) against autograd, positives vs negatives.

    Args:
        analytic: ``(N, M)`` analytic dL_i/ds_ij (``gradients.similarity_gradient``).
        autograd: ``(N, M)`` the same from ``torch.autograd``.

    Returns:
        Figure with one axes; negative entries are > 0, positive entries < 0.
    """
    a, b = _np(analytic).ravel(), _np(autograd).ravel()
    fig, ax = plt.subplots(figsize=(3.6, 3.4), dpi=DPI)
    ax.scatter(b[a >= 0], a[a >= 0], s=6, alpha=0.6, label="negatives  P_ij / τ")
    ax.scatter(b[a < 0], a[a < 0], s=14, color="C3", label="positive  -Σ P_ik / τ")
    lo, hi = min(a.min(), b.min()), max(a.max(), b.max())
    ax.plot([lo, hi], [lo, hi], color="0.4", lw=0.8, ls="--")
    ax.set_xlabel("autograd ∂L/∂s")
    ax.set_ylabel("analytic ∂L/∂s (Eq. 4)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _ratio_curve(similarity, positive, temperature: float) -> tuple[np.ndarray, np.ndarray]:
    """(s, r) of the negatives of every row, sorted by s, for one τ (Eq. 5)."""
    r = _np(gradients.gradient_ratio(similarity, positive, temperature))  # (N, M)
    s = _np(similarity)
    neg = np.ones_like(s, dtype=bool)
    neg[np.arange(s.shape[0]), _np(positive).astype(int)] = False
    order = np.argsort(s[neg])
    return s[neg][order], r[neg][order]


def plot_gradient_ratio(similarity, positive, temperatures: Sequence[float],
                        log: bool = True, ax=None) -> Figure:
    """Fig. 3: the relative penalty r(s_ij) (Eq. 5) against the negative similarity, per τ.

    Args:
        similarity: ``(N, M)`` similarities (Fig. 3: one row with negatives uniform in [-1, 1],
            from :func:`cl_analysis.toy.sample_similarities`).
        positive: ``(N,)`` positive columns.
        temperatures: τ values, one colour each; every row of ``similarity`` is its own line.
        log: logarithmic y axis (r spans many decades at small τ).
        ax: axes to draw on; ``None`` -> a new figure.

    Returns:
        The Figure holding the axes.
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.0, 3.4), dpi=DPI)
    else:
        fig = ax.figure
    for i, tau in enumerate(temperatures):
        for row in range(similarity.shape[0]):  # one line per anchor, never one zig-zag
            s, r = _ratio_curve(similarity[row:row + 1], positive[row:row + 1], tau)
            ax.plot(s, r, lw=1.4, color=f"C{i % 10}", label=f"τ = {tau:g}" if row == 0 else None)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("negative similarity $s_{i,j}$")
    ax.set_ylabel("relative penalty $r_i(s_{i,j})$")
    ax.set_title("Eq. 5 / Fig. 3: penalty on negatives", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_penalty_entropy(sweep: Mapping[str, object], num_negatives: int | None = None) -> Figure:
    """Entropy H(r) and effective number of negatives exp(H) against τ (log x axis).

    Args:
        sweep: output of :func:`cl_analysis.toy.penalty_sweep` (keys ``temperature``,
            ``entropy``, ``effective_negatives``).
        num_negatives: M - 1; draws the τ -> ∞ ceiling log(M - 1) / M - 1 when given.

    Returns:
        Figure with two axes.
    """
    tau = _np(sweep["temperature"])
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(7.6, 3.0), dpi=DPI)
    a1.plot(tau, _np(sweep["entropy"]), "o-", ms=3)
    a2.plot(tau, _np(sweep["effective_negatives"]), "o-", ms=3, color="C1")
    if num_negatives:
        a1.axhline(math.log(num_negatives), color="0.5", ls="--", lw=1, label="log(M-1)")
        a2.axhline(num_negatives, color="0.5", ls="--", lw=1, label="M-1")
        a1.legend(fontsize=7)
        a2.legend(fontsize=7)
    a2.set_yscale("log")
    for ax, name in ((a1, "entropy H(r) [nats]"), (a2, "effective negatives exp H")):
        ax.set_xscale("log")
        ax.set_xlabel("τ")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _ratio_panel_title(similarity, positive, temperature: float, sep: str = ", ") -> str:
    """Title of one τ panel: the largest r and the mean effective number of negatives exp H."""
    r = _np(gradients.gradient_ratio(similarity, positive, temperature))
    h = float(_np(gradients.effective_negatives(similarity, positive, temperature)).mean())
    return f"τ = {temperature:.3g}: max r = {r.max():.3g}{sep}effective negatives = {h:.1f}"


def plot_gradient_ratio_panels(similarity, positive, temperatures: Sequence[float],
                               log: bool = True) -> Figure:
    """Fig. 3 one τ per panel, each titled with max r and exp H: the static twin of the explorer.

    The panels are what :func:`gradient_ratio_explorer` draws at each of ``temperatures``, on a
    shared y axis so the panels compare; use it where widgets do not render (the static book).

    Args:
        similarity: ``(N, M)`` similarities.
        positive: ``(N,)`` positive columns.
        temperatures: τ values, one panel each (2 columns).
        log: logarithmic y axis.

    Returns:
        Figure with ``len(temperatures)`` axes.
    """
    fig, axes = _grid(len(temperatures), 2, 2.9)
    for i, (ax, tau) in enumerate(zip(axes, temperatures)):
        plot_gradient_ratio(similarity, positive, [tau], log=log, ax=ax)
        for line in ax.lines:
            line.set_color(f"C{i % 10}")
        ax.get_legend().remove()
        ax.set_title(_ratio_panel_title(similarity, positive, tau, sep="\n"), fontsize=8)
        if i % 2:
            ax.set_ylabel("")
    lo = min(ax.get_ylim()[0] for ax in axes)
    hi = max(ax.get_ylim()[1] for ax in axes)
    for ax in axes:
        ax.set_ylim(lo, hi)
    fig.tight_layout()
    return fig


def gradient_ratio_explorer(similarity, positive, temperature: float = 0.2,
                            min_temperature: float = 0.01, max_temperature: float = 10.0):
    """Interactive Fig. 3: a log-τ slider redrawing r(s) for one τ (ipywidgets).

    The callback runs once on creation with ``temperature``, so executing it headless (nbval,
    nbconvert, papermill) draws the initial figure and does not fail. The latest figure is kept
    in ``widget.figures[-1]`` (useful in tests).

    Args:
        similarity: ``(N, M)`` similarities (e.g. ``toy.sample_similarities()``).
        positive: ``(N,)`` positive columns.
        temperature: initial τ.
        min_temperature: left end of the slider.
        max_temperature: right end of the slider.

    Returns:
        An ``ipywidgets.interactive`` widget (slider + output); display it to use it.
    """
    import ipywidgets as widgets

    slider = widgets.FloatLogSlider(value=temperature, base=10, min=math.log10(min_temperature),
                                    max=math.log10(max_temperature), step=0.05,
                                    description="τ", continuous_update=False)
    figures: list[Figure] = []

    def draw(temperature: float) -> None:
        fig = plot_gradient_ratio(similarity, positive, [temperature])
        fig.axes[0].set_title(_ratio_panel_title(similarity, positive, temperature), fontsize=9)
        figures.append(fig)
        del figures[:-1]  # keep only the latest figure alive

    widget = widgets.interactive(draw, temperature=slider)
    widget.figures = figures
    return widget


def plot_limit_gaps(gaps: Mapping[str, object]) -> Figure:
    """Eq. 6-7: distance of τ·L from its τ -> 0 and τ -> ∞ limits, against τ on log-log axes.

    Args:
        gaps: output of :func:`cl_analysis.toy.limit_gaps` (``temperature``, ``zero_gap``,
            ``inf_gap``, ``zero_bound``, ``inf_asymptote``).

    Returns:
        Figure with two axes (left: τ -> 0, right: τ -> ∞).
    """
    tau = _np(gaps["temperature"])
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(7.6, 3.1), dpi=DPI)
    a1.plot(tau, np.maximum(_np(gaps["zero_gap"]), 1e-300), "o-", ms=3,
            label="|τL − max(s_max − s_ii, 0)|")
    a1.plot(tau, _np(gaps["zero_bound"]), "--", color="0.5", lw=1, label="τ log M")
    a1.set_title("τ → 0 (Eq. 6)", fontsize=9)
    a2.plot(tau, _np(gaps["inf_gap"]), "o-", ms=3, color="C1",
            label="|τ(L − log M) − (M−1)/M · L_simple|")
    a2.plot(tau, _np(gaps["inf_asymptote"]), "--", color="0.5", lw=1, label="Var(s) / 2τ")
    a2.set_title("τ → ∞ (Eq. 7)", fontsize=9)
    for ax in (a1, a2):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("τ")
        ax.set_ylabel("gap")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def plot_truncation(sweep: Mapping[str, object]) -> Figure:
    """Eq. 8: share of the penalty on the k hardest negatives, and what truncation changes, vs τ.

    Args:
        sweep: output of :func:`cl_analysis.toy.penalty_sweep` (``temperature``, ``topk_mass``,
            ``truncation_tv``, ``k``).

    Returns:
        Figure with one axes (log τ).
    """
    tau = _np(sweep["temperature"])
    k = int(_np(sweep["k"])[0])
    fig, ax = plt.subplots(figsize=(5.0, 3.2), dpi=DPI)
    ax.plot(tau, _np(sweep["topk_mass"]), "o-", ms=3, label=f"penalty mass on top-{k} negatives")
    ax.plot(tau, _np(sweep["truncation_tv"]), "s-", ms=3, color="C3",
            label="TV(r, truncated r)")
    ax.set_xscale("log")
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("τ")
    ax.set_title("Eq. 8: hard truncation matters only at large τ", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_truncated_ratio(similarity, positive, temperatures: Sequence[float], k: int) -> Figure:
    """r(s) (Eq. 5, solid) and its top-k truncation (Eq. 8, dashed), one panel per τ.

    Args:
        similarity: ``(N, M)`` similarities.
        positive: ``(N,)`` positive columns.
        temperatures: τ values, one panel each.
        k: hard negatives kept by the truncation.

    Returns:
        Figure with ``len(temperatures)`` axes.
    """
    fig, axes = _grid(len(temperatures), len(temperatures), 2.6)
    s = _np(similarity)
    neg = np.ones_like(s, dtype=bool)
    neg[np.arange(s.shape[0]), _np(positive).astype(int)] = False
    order = np.argsort(s[neg])
    for ax, tau in zip(axes, temperatures):
        r = _np(gradients.gradient_ratio(similarity, positive, tau))[neg][order]
        rt = _np(gradients.truncated_gradient_ratio(similarity, positive, tau, k=k))[neg][order]
        ax.plot(s[neg][order], r, lw=1.2, label="r (Eq. 5)")
        ax.plot(s[neg][order], rt, lw=1.2, ls="--", color="C3", label=f"top-{k} (Eq. 8)")
        ax.set_title(f"τ = {tau:g}", fontsize=8)
        ax.set_xlabel("$s_{i,j}$")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("relative penalty")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_weighting_vs_temperature(similarity, positive, temperatures: Sequence[float],
                                  methods: Sequence[str] = ("flat_nce", "macl",
                                                            "dual_temperature"),
                                  top: int = 40) -> Figure:
    """The weighting lens against τ: over negatives (r_i, Eq. 5) and over anchors (w_i).

    Panels: the mean sorted r_i of the hardest ``top`` negatives at the smallest, middle and
    largest τ; the mean entropy of r_i (nats) against τ; the std over anchors of log w_i of each
    method (:func:`cl_analysis.weighting.anchor_weights`) against τ; the distribution of
    FlatNCE's log w_i at the smallest and largest τ.

    Args:
        similarity: ``(N, M)`` similarities.
        positive: ``(N,)`` column of each row's positive.
        temperatures: strictly increasing τ grid (>= 2 values).
        methods: re-weighting methods (:data:`cl_analysis.weighting.WEIGHTING_METHODS`).
        top: how many of the hardest negatives the first panel shows.

    Returns:
        Figure with four axes.

    Raises:
        ValueError: if ``temperatures`` is not a strictly increasing grid of >= 2 values.
    """
    taus = [float(t) for t in temperatures]
    if len(taus) < 2 or any(a >= b for a, b in zip(taus, taus[1:])):
        raise ValueError(f"temperatures must be an increasing grid of >= 2 values, got {taus}")
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.4), dpi=DPI)
    for t in (taus[0], taus[len(taus) // 2], taus[-1]):
        r = gradients.gradient_ratio(similarity, positive, t).sort(1, descending=True).values
        axes[0].plot(_np(r.mean(0)[:top]), marker=".", label=f"τ = {t:g}")
    axes[0].set(xlabel="negative rank", ylabel="mean r_i", title="over negatives: r_i (Eq. 5)")
    axes[0].legend(fontsize=7)
    entropy = [float(gradients.penalty_entropy(similarity, positive, t).mean()) for t in taus]
    axes[1].plot(taus, entropy, marker="o")
    axes[1].set(xscale="log", xlabel="τ", ylabel="entropy of r_i (nats)",
                title="spread of the push")
    for m in methods:
        spread = [float(weighting.anchor_weights(similarity, positive, t, m, log=True).std())
                  for t in taus]
        axes[2].plot(taus, spread, marker="o", label=m)
    axes[2].set(xscale="log", xlabel="τ", ylabel="std over anchors of log w_i",
                title="over anchors: w_i")
    axes[2].legend(fontsize=7)
    for t in (taus[0], taus[-1]):
        w = weighting.anchor_weights(similarity, positive, t, "flat_nce", log=True)
        axes[3].hist(_np(w), bins=40, alpha=0.6, label=f"τ = {t:g}")
    axes[3].set(xlabel="log w_i (FlatNCE)", ylabel="anchors", title="distribution of log w_i")
    axes[3].legend(fontsize=7)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
