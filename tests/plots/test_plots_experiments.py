import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from cl_analysis.plots import experiments as pe  # noqa: E402
from cl_analysis.plots import tables as pt  # noqa: E402
from cl_analysis.study.sweep import RESULT_COLUMNS  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _results(regimes=("memory_bank",), fraction=False):
    rows = []
    for regime in regimes:
        for loss in ("info_nce", "hard", "simple", "hard_simple"):
            temps = [math.nan] if loss in ("simple", "hard_simple") else [0.07, 0.3, 0.7, 1.0]
            for t in temps:
                acc = 40.0 + (0 if math.isnan(t) else 10 * t)
                row = dict.fromkeys(RESULT_COLUMNS, math.nan)
                row.update(run=f"cifar10-{regime}-{loss}", dataset="cifar10", regime=regime,
                           loss=loss, temperature=t, linear_top1=acc / 100 if fraction else acc,
                           knn_top1=35.0, uniformity=3.5, tolerance=0.2, uniformity_bank=3.7)
                rows.append(row)
    return pd.DataFrame(rows, columns=list(RESULT_COLUMNS))


def _lines(ax, dashed):
    return [ln for ln in ax.get_lines() if (ln.get_linestyle() == "--") == dashed]


def test_uniformity_tolerance_paper_and_run():
    fig = pe.plot_uniformity_tolerance(_results(), loss="info_nce", dataset="cifar10")
    unif, tol = fig.axes
    assert len(fig.axes) == 2
    assert len(_lines(unif, dashed=True)) == 1 and len(_lines(unif, dashed=False)) == 1
    paper = _lines(unif, dashed=True)[0]
    assert len(paper.get_xdata()) == 12  # the §3.2 sweep, not only Table 1
    run = _lines(unif, dashed=False)[0]
    assert np.allclose(run.get_ydata(), 3.7)  # the memory-bank (paper-protocol) column
    run_test = _lines(pe.plot_uniformity_tolerance(_results(), protocol="test").axes[0], False)[0]
    assert np.allclose(run_test.get_ydata(), 3.5)
    labels = tol.get_legend_handles_labels()[1]
    assert any("paper" in s for s in labels) and any("this run" in s for s in labels)


def test_uniformity_tolerance_falls_back_to_table1():
    fig = pe.plot_uniformity_tolerance(None, loss="hard", dataset="svhn")
    (line,) = fig.axes[0].get_lines()
    assert list(line.get_xdata()) == [0.07, 0.3, 0.7, 1.0]
    assert list(line.get_ydata()) == [3.89, 3.91, 3.90, 3.88]


def test_ordinary_vs_hard_overlays_losses_and_reference_lines():
    fig = pe.plot_ordinary_vs_hard(_results(regimes=("memory_bank", "simclr")), "cifar10")
    tol = fig.axes[1]
    # paper: info_nce + hard curves + simple + hard_simple lines (4); run: 4 losses x 2 regimes
    assert len(_lines(tol, dashed=True)) == 4 and len(_lines(tol, dashed=False)) == 8
    horizontal = [ln for ln in tol.get_lines() if len(set(ln.get_ydata())) == 1
                  and len(ln.get_xdata()) == 2 and ln.get_xdata()[1] == 1]
    assert len(horizontal) >= 4  # axhline reference lines (x in axes coordinates)


def test_accuracy_vs_temperature_twin_axes_and_percent():
    fig = pe.plot_accuracy_vs_temperature(_results(fraction=True), "cifar10")
    assert len(fig.axes) == 2
    paper_ax, run_ax = fig.axes
    paper_lines = [ln for ln in paper_ax.get_lines() if len(ln.get_xdata()) > 2]
    assert sorted(len(ln.get_xdata()) for ln in paper_lines) == [12, 16]  # ordinary, hard
    run_curves = [ln for ln in run_ax.get_lines() if len(ln.get_xdata()) == 4]
    assert np.allclose(run_curves[0].get_ydata(), [40.7, 43.0, 47.0, 50.0])  # fractions -> %
    assert "this run" in run_ax.get_ylabel() and "paper" in paper_ax.get_ylabel()
    assert len(pe.plot_accuracy_vs_temperature(None, "imagenet100").axes) == 2
    with pytest.raises(ValueError, match="metric"):
        pe.plot_accuracy_vs_temperature(None, metric="top5")


def test_local_separation_boxplots():
    rng = np.random.default_rng(0)
    seps = {0.07: rng.uniform(0.4, 1, (50, 11)), 0.3: torch.rand(50, 11)}
    fig = pe.plot_local_separation(seps)
    assert len(fig.axes) == 2
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert ticks == ["pos"] + [f"n{j}" for j in range(1, 11)]
    assert len(fig.axes[0].patches) == 11
    fig = pe.plot_local_separation({0.2: rng.uniform(size=(10, 3))}, ylim=(0.4, 1))
    assert fig.axes[0].get_ylim() == (0.4, 1)
    with pytest.raises(ValueError, match="k\\+1"):
        pe.plot_local_separation({0.1: np.zeros(5)})
    with pytest.raises(ValueError, match="empty"):
        pe.plot_local_separation({})


def _clusters(n=60, d=8, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), n // 3)
    z = rng.normal(size=(n, d)) + 4 * np.eye(d)[labels]
    return z, labels


def test_embedding_2d_tsne():
    z, y = _clusters()
    fig = pe.plot_embedding_2d({0.07: (torch.tensor(z), torch.tensor(y)), 0.2: (z, y)},
                               method="tsne", class_names=["a", "b", "c"])
    assert len(fig.axes) == 2
    assert len(fig.axes[0].collections) == 3  # one scatter per class
    assert fig.axes[1].get_legend_handles_labels()[1] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="method"):
        pe.plot_embedding_2d({0.1: (z, y)}, method="pca")
    with pytest.raises(ValueError, match="labels"):
        pe.plot_embedding_2d({0.1: (z, y[:-1])})


@pytest.mark.slow  # umap-learn's numba JIT compile takes ~30 s on first use
def test_embedding_2d_umap():
    pytest.importorskip("umap")
    z, y = _clusters(n=45)
    fig = pe.plot_embedding_2d({0.5: (z, y)}, method="umap")
    assert len(fig.axes) == 1 and len(fig.axes[0].collections) == 3


def test_sphere_density_2d_and_3d():
    rng = np.random.default_rng(0)
    fig = pe.plot_sphere_density(rng.normal(size=(200, 2)), labels=rng.integers(0, 3, 200))
    circle_ax, kde_ax = fig.axes
    assert len(circle_ax.collections) == 1
    density_line = kde_ax.get_lines()[0]
    x, dens = density_line.get_xdata(), density_line.get_ydata()
    assert np.trapezoid(dens, x) == pytest.approx(1.0, abs=0.02)  # wrapped KDE integrates to 1
    fig3 = pe.plot_sphere_density(torch.randn(300, 3))
    assert len(fig3.axes) == 2  # 3-D scatter, (azimuth, elevation) histogram
    assert fig3.axes[0].name == "3d"
    with pytest.raises(ValueError, match="\\(N, 2\\) or \\(N, 3\\)"):
        pe.plot_sphere_density(np.ones((5, 4)))
    with pytest.raises(ValueError, match="zero rows"):
        pe.plot_sphere_density(np.zeros((5, 2)))


def test_table1_side_by_side_paper_and_run():
    df = pt.table1_side_by_side(_results(fraction=True), "cifar10")
    assert df.shape == (8, 10)
    assert list(df.columns) == ["C 0.07", "C 0.3", "C 0.7", "C 1.0", "Simple",
                                "H 0.07", "H 0.3", "H 0.7", "H 1.0", "HardSimple"]
    assert df.loc[("linear acc", "paper"), "C 0.3"] == 83.27
    assert df.loc[("linear acc", "paper"), "HardSimple"] == 84.84
    assert df.loc[("tolerance", "paper"), "H 0.3"] == 0.0267
    assert df.loc[("kNN acc", "paper"), "C 0.3"] == 79.92  # Fig. 9 sweep
    assert math.isnan(df.loc[("kNN acc", "paper"), "Simple"])
    assert df.loc[("linear acc", "this run"), "C 0.3"] == pytest.approx(43.0)
    assert df.loc[("linear acc", "this run"), "Simple"] == pytest.approx(40.0)
    assert df.loc[("uniformity", "this run"), "H 1.0"] == 3.7  # bank protocol by default
    assert pt.table1_side_by_side(_results(), protocol="test").loc[
        ("uniformity", "this run"), "H 1.0"] == 3.5


def test_table1_side_by_side_missing_cells_and_regimes():
    partial = _results().iloc[:2]  # only info_nce at 0.07 and 0.3
    df = pt.table1_side_by_side(partial)
    assert df.loc[("linear acc", "this run")].notna().sum() == 2
    paper_only = pt.table1_side_by_side(None, "imagenet100")
    assert paper_only.loc[("linear acc", "paper"), "C 0.3"] == 75.10
    assert paper_only.loc[("kNN acc", "paper")].isna().all()
    assert paper_only.xs("this run", level="source").isna().all().all()
    both = _results(regimes=("memory_bank", "simclr"))
    with pytest.raises(ValueError, match="regime"):
        pt.table1_side_by_side(both)
    assert pt.table1_side_by_side(both, regime="simclr").shape == (8, 10)


def test_table_to_markdown_and_html():
    df = pt.table1_side_by_side(_results(), "cifar10")
    md = pt.table_to_markdown(df)
    lines = md.splitlines()
    assert len(lines) == 2 + 8
    assert "metric" in lines[0] and "C 0.07" in lines[0] and "HardSimple" in lines[0]
    assert "83.27" in md and "0.0267" in md and "–" in md
    html = pt.table_to_html(df)
    assert html.startswith("<table") and "83.27" in html


def test_metrics_vs_temperature_run_only():
    results = _results()
    results["penalty_entropy"] = 5.0 + results["temperature"].fillna(2.0)
    results["effective_negatives"] = np.exp(results["penalty_entropy"])
    fig = pe.plot_metrics_vs_temperature(results)
    ent_ax, eff_ax = fig.axes
    assert not _lines(ent_ax, dashed=True)  # no paper points for these metrics
    curves = [ln for ln in ent_ax.get_lines() if len(ln.get_xdata()) == 4]
    assert len(curves) == 2  # ordinary and hard; simple / hard simple are horizontal lines
    assert np.allclose(curves[0].get_ydata(), [5.07, 5.3, 5.7, 6.0])
    assert eff_ax.get_yscale() == "log" and ent_ax.get_yscale() == "linear"
    assert "penalty entropy" in ent_ax.get_ylabel()
    with pytest.raises(ValueError, match="no column"):
        pe.plot_metrics_vs_temperature(results, metrics=("nope",))
    with pytest.raises(ValueError, match="empty"):
        pe.plot_metrics_vs_temperature(results, metrics=())


def test_training_curves_skip_unmonitored_epochs():
    rows = [{"epoch": e, "loss": 9.0 - e, "uniformity": None if e % 2 else 2.0 + e,
             "tolerance": None if e % 2 else 0.1 * e} for e in range(1, 7)]
    frame = pd.DataFrame(rows)  # None -> NaN, as pd.read_json(lines=True) gives
    fig = pe.plot_training_curves({"τ=0.07": rows, "τ=1.0": frame})
    unif, tol = fig.axes
    lines = unif.get_lines()
    assert len(lines) == 2
    assert list(lines[0].get_xdata()) == [2, 4, 6] and list(lines[1].get_ydata()) == [4, 6, 8]
    assert np.allclose(tol.get_lines()[0].get_ydata(), [0.2, 0.4, 0.6])
    assert unif.get_xlabel() == "epoch"
    fig = pe.plot_training_curves({"a": rows}, metrics=("loss",))
    assert len(fig.axes) == 1 and len(fig.axes[0].get_lines()[0].get_xdata()) == 6
    with pytest.raises(ValueError, match="metric"):
        pe.plot_training_curves({})


def test_title_overrides_the_default():
    results = _results()
    assert pe.plot_ordinary_vs_hard(results, title="X")._suptitle.get_text() == "X"
    assert pe.plot_uniformity_tolerance(results, title="Y")._suptitle.get_text() == "Y"
    assert "uniformity and tolerance" in pe.plot_ordinary_vs_hard(results)._suptitle.get_text()
    assert pe.plot_accuracy_vs_temperature(results, title="Z").axes[0].get_title() == "Z"
    seps = {0.1: np.random.default_rng(0).uniform(size=(10, 3))}
    assert pe.plot_local_separation(seps, title="L")._suptitle.get_text() == "L"
    rows = [{"epoch": 1, "uniformity": 1.0, "tolerance": 0.1}]
    assert pe.plot_training_curves({"a": rows}, title="T")._suptitle.get_text() == "T"
    fig = pe.plot_sphere_density(np.random.default_rng(0).normal(size=(20, 2)), title="S")
    assert fig._suptitle.get_text() == "S"
    collapsed = pe.plot_sphere_density(np.ones((3, 2)))  # identical points: floored bandwidth
    assert collapsed._suptitle is None
    assert np.isfinite(collapsed.axes[1].get_lines()[0].get_ydata()).all()


def _lens(taus=(0.07, 1.0), seeds=(0, 1, 2), epochs=(10, 20), bins=4):
    """A history_table-shaped frame: P_ip rises with the epoch, falls with τ."""
    rows = []
    for t in taus:
        for s in seeds:
            for e in epochs:
                p = 0.01 * e / (1.0 if t != t else t) / 100 + 0.001 * s
                hist = np.zeros(bins)
                hist[min(int(e / 10), bins - 1)] = 1.0
                rows.append({"run": f"r-{t}-{s}", "dataset": "cifar10", "regime": "memory_bank",
                             "loss": "info_nce", "temperature": t, "seed": s, "epoch": e,
                             "positive_probability": p, "positive_probability_hist": list(hist),
                             **{f"anchor_log_weight_std_{m}": p / 2
                                for m in ("flat_nce", "macl", "dual_temperature")}})
    return pd.DataFrame(rows)


def test_weighting_over_training_draws_seed_means_per_tau():
    table = _lens()
    fig = pe.plot_weighting_over_training(table)
    axes = fig.axes
    assert len(axes) == 4 and axes[0].get_yscale() == "log"
    line = axes[0].get_lines()[0]  # τ = 0.07: the mean over the three seeds, per epoch
    expected = table[table["temperature"] == 0.07].groupby("epoch")["positive_probability"].mean()
    np.testing.assert_allclose(line.get_ydata(), expected.to_numpy())
    assert [ln.get_label() for ln in axes[1].get_lines()] == ["τ = 0.07", "τ = 1"]


def test_positive_probability_histograms_one_panel_per_tau():
    fig = pe.plot_positive_probability_histograms(_lens(), (-5.0, 0.0))
    assert len([ax for ax in fig.axes if ax.get_title()]) == 2
    stairs = [p for p in fig.axes[0].patches]
    assert len(stairs) == 2  # the first and the last monitored epoch
    np.testing.assert_allclose(stairs[1].get_data().values, [0, 0, 1, 0])  # epoch 20 -> bin 2
    with pytest.raises(ValueError, match=r"epoch\(s\) \[15\] were not monitored"):
        pe.plot_positive_probability_histograms(_lens(), (-5.0, 0.0), epochs=[15])
    with pytest.raises(ValueError, match="no run of loss 'hard'"):
        pe.plot_weighting_over_training(_lens(), loss="hard")
    with pytest.raises(ValueError, match="history_table"):
        pe.plot_weighting_over_training(_lens().drop(columns=["positive_probability"]))


def test_weighting_plots_take_one_seed_and_a_tau_free_loss():
    """One seed: no band, no NaN; a τ-free loss (NaN τ) is drawn last with its own label."""
    one = _lens(seeds=(0,))
    free = _lens(taus=(float("nan"),), seeds=(0,)).assign(run="simple")
    table = pd.concat([one, free.assign(loss="info_nce")])
    fig = pe.plot_weighting_over_training(table)
    labels = [ln.get_label() for ln in fig.axes[0].get_lines()]
    assert labels == ["τ = 0.07", "τ = 1", "τ-free loss (monitor at the base τ)"]
    assert all(np.isfinite(ln.get_ydata()).all() for ln in fig.axes[0].get_lines())
    fig = pe.plot_positive_probability_histograms(table)  # the trainer's range by default
    assert len([ax for ax in fig.axes if ax.get_title()]) == 3


def test_weighting_plots_accept_an_int_epoch_and_the_decoupled_alias_and_refuse_a_bad_range():
    fig = pe.plot_positive_probability_histograms(_lens(), epochs=20)
    assert len(fig.axes[0].patches) == 1
    one_epoch = _lens(epochs=(10,))
    assert len(pe.plot_positive_probability_histograms(one_epoch).axes[0].patches) == 1
    with pytest.raises(ValueError, match="low < high"):
        pe.plot_positive_probability_histograms(_lens(), (0.0, -5.0))
    fig = pe.plot_weighting_over_training(_lens(), methods=("decoupled",))
    assert fig.axes[1].get_title() == "flat_nce"
