import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from cl_analysis import gradients, toy  # noqa: E402
from cl_analysis.plots import analysis as pa  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def row():
    return toy.sample_similarities(2, 300, seed=0)


@pytest.fixture(scope="module")
def runs():
    ds2 = toy.make_toy_dataset(n_classes=3, per_class=5, dim=2, seed=0)
    ds3 = toy.make_toy_dataset(n_classes=3, per_class=5, dim=3, seed=0)
    return {
        "circle": {"nce": toy.optimise_embedding("info_nce", 0.2, 10, 0.02, ds2, record_every=5),
                   "simple": toy.optimise_embedding("simple", None, 10, 0.1, ds2)},
        "sphere": {"nce": toy.optimise_embedding("info_nce", 0.2, 10, 0.02, ds3),
                   "init": ds3.views[0]},
        "labels": ds3.labels,
    }


def test_all_is_exported_and_callable():
    assert all(callable(getattr(pa, name)) for name in pa.__all__)


def test_plot_loss_values_bars_and_closed_form_markers():
    fig = pa.plot_loss_values({"info_nce": 1.2, "simple": -0.3, "tz": 0.0}, {"info_nce": 1.2})
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    assert len(ax.patches) == 3
    assert [t.get_text() for t in ax.get_yticklabels()] == ["info_nce", "simple", "tz"]
    assert len(ax.collections) == 1  # the closed-form markers


def test_plot_circle_embeddings_panels_and_trajectories(runs):
    fig = pa.plot_circle_embeddings(runs["circle"], ncols=2)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert [ax.get_title() for ax in fig.axes] == ["nce", "simple"]
    assert len(fig.axes[0].get_lines()) == 15  # one trajectory per instance
    fig = pa.plot_circle_embeddings({"z": torch.randn(7, 2)}, trajectories=False)
    assert len(fig.axes) == 1 and not fig.axes[0].get_lines()


def test_plot_circle_embeddings_rejects_3d(runs):
    with pytest.raises(ValueError, match="N, 2"):
        pa.plot_circle_embeddings(runs["sphere"])


def test_plot_sphere_embeddings_3d_axes(runs):
    fig = pa.plot_sphere_embeddings(runs["sphere"], labels=runs["labels"])
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert all(ax.name == "3d" for ax in fig.axes)
    with pytest.raises(ValueError, match="N, 3"):
        pa.plot_sphere_embeddings(runs["circle"])


def test_plot_loss_curves_normalised_from_one_to_zero(runs):
    fig = pa.plot_loss_curves(runs["circle"])
    lines = fig.axes[0].get_lines()
    assert len(lines) == 2
    for line in lines:
        y = line.get_ydata()
        assert y[0] == pytest.approx(1.0) and y[-1] == pytest.approx(0.0)
    raw = pa.plot_loss_curves({"h": torch.tensor([3.0, 2.0, 1.5])}, normalize=False)
    assert list(raw.axes[0].get_lines()[0].get_ydata()) == [3.0, 2.0, 1.5]


def test_plot_toy_metrics_one_point_per_run(runs):
    fig = pa.plot_toy_metrics(toy.summarize_runs(runs["circle"]))
    ax = fig.axes[0]
    assert len(ax.collections) == 2
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["nce", "simple"]
    assert ax.get_xlabel() == "uniformity" and ax.get_ylabel() == "tolerance"


def test_plot_gradient_check(row):
    s, pos = row
    g = gradients.similarity_gradient(s, pos, 0.5)
    fig = pa.plot_gradient_check(g, g)
    assert isinstance(fig, Figure) and len(fig.axes[0].collections) == 2


def test_plot_gradient_ratio_one_sorted_curve_per_row_and_tau(row):
    s, pos = row
    fig = pa.plot_gradient_ratio(s, pos, [0.07, 0.5, 1.0])
    ax = fig.axes[0]
    lines = ax.get_lines()
    # one line per (τ, anchor): several rows are never joined into one zig-zag line
    assert len(lines) == 3 * s.shape[0] and ax.get_yscale() == "log"
    for line in lines:
        x, y = line.get_xdata(), line.get_ydata()
        assert len(x) == s.shape[1] - 1 and (x[1:] >= x[:-1]).all() and (y > 0).all()
    assert len(ax.get_legend().get_texts()) == 3  # one legend entry per τ
    _, ax2 = plt.subplots()
    assert pa.plot_gradient_ratio(s, pos, [0.2], log=False, ax=ax2) is ax2.figure


def test_plot_penalty_entropy_two_log_axes(row):
    sw = toy.penalty_sweep(*row, [0.1, 1.0, 10.0])
    fig = pa.plot_penalty_entropy(sw, num_negatives=300)
    assert len(fig.axes) == 2 and all(ax.get_xscale() == "log" for ax in fig.axes)
    assert len(fig.axes[0].get_lines()) == 2  # curve + log(M-1) ceiling


def test_gradient_ratio_explorer_draws_on_creation_and_on_change(row):
    import ipywidgets as widgets

    w = pa.gradient_ratio_explorer(*row, temperature=0.3)
    assert isinstance(w, widgets.interactive)
    slider = w.children[0]
    assert isinstance(slider, widgets.FloatLogSlider) and slider.value == pytest.approx(0.3)
    assert len(w.figures) == 1 and "τ = 0.3" in w.figures[-1].axes[0].get_title()
    slider.value = 2.0
    assert "τ = 2" in w.figures[-1].axes[0].get_title()


def test_plot_limit_gaps_log_log(row):
    g = toy.limit_gaps(*row, [0.01, 0.1, 1.0, 10.0])
    fig = pa.plot_limit_gaps(g)
    assert len(fig.axes) == 2
    for ax in fig.axes:
        assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
        assert len(ax.get_lines()) == 2


def test_plot_truncation_and_truncated_ratio(row):
    s, pos = row
    fig = pa.plot_truncation(toy.penalty_sweep(s, pos, [0.05, 0.5, 5.0], k=30))
    assert len(fig.axes) == 1 and len(fig.axes[0].get_lines()) == 2
    assert "top-30" in fig.axes[0].get_lines()[0].get_label()
    fig = pa.plot_truncated_ratio(s, pos, [0.1, 1.0], k=30)
    assert len(fig.axes) == 2 and all(len(ax.get_lines()) == 2 for ax in fig.axes)
    dashed = fig.axes[1].get_lines()[1].get_ydata()
    assert (dashed > 0).sum() == 2 * 30  # only the top-k of each row keep a penalty


def test_plot_gradient_ratio_panels_one_panel_per_tau(row):
    s, pos = row
    fig = pa.plot_gradient_ratio_panels(s, pos, [0.05, 0.2, 1.0])
    axes = [ax for ax in fig.axes if ax.get_lines()]
    assert len(axes) == 3
    assert all("τ = " in ax.get_title() for ax in axes)


def test_plot_weighting_vs_temperature_curves_match_the_library():
    from cl_analysis import weighting

    g = torch.Generator().manual_seed(0)
    s = torch.rand(12, 20, generator=g, dtype=torch.float64) * 2 - 1
    pos = torch.arange(12)
    taus = [0.1, 0.3, 1.0]
    fig = pa.plot_weighting_vs_temperature(s, pos, taus)
    assert isinstance(fig, Figure) and len(fig.axes) == 4
    entropy = fig.axes[1].get_lines()[0].get_ydata()
    expected = [float(gradients.penalty_entropy(s, pos, t).mean()) for t in taus]
    assert list(entropy) == pytest.approx(expected)
    flat = fig.axes[2].get_lines()[0].get_ydata()
    assert list(flat) == pytest.approx(
        [float(weighting.anchor_weights(s, pos, t, "flat_nce", log=True).std()) for t in taus])
    with pytest.raises(ValueError, match="increasing grid"):
        pa.plot_weighting_vs_temperature(s, pos, [1.0, 0.1])
