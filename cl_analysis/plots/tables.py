"""Table 1 of the paper side by side with this run, as a DataFrame, markdown and HTML."""

from __future__ import annotations

import math

import numpy as np

from cl_analysis._checks import check_choice
from cl_analysis.plots.experiments import _column, _percent
from cl_analysis.registry import TAU_FREE_LOSSES as _TAU_FREE
from cl_analysis.study import paper_results as pr

__all__ = ["table1_side_by_side", "table_to_markdown", "table_to_html"]

_TABLE_METRICS = (("linear acc", "linear_top1"), ("kNN acc", "knn_top1"),
                  ("uniformity", "uniformity"), ("tolerance", "tolerance"))


def _table1_label(loss: str, temperature) -> str:
    if loss in _TAU_FREE:
        return {"simple": "Simple", "hard_simple": "HardSimple"}[loss]
    return f"{'C' if loss == 'info_nce' else 'H'} {float(temperature)!r}"


def _run_cell(frame, loss: str, temperature, column: str) -> float:
    rows = frame[frame["loss"] == loss]
    if loss not in _TAU_FREE:
        rows = rows[np.isclose(rows["temperature"].astype(float), temperature)]
    values = rows[column].dropna() if column in rows else []
    return float(values.mean()) if len(values) else math.nan  # the mean over seeds


def table1_side_by_side(results, dataset: str = "cifar10", regime: str | None = None,
                        protocol: str = "auto"):
    """Table 1 of the paper next to this run's numbers, in Table 1's layout.

    Args:
        results: results DataFrame (``experiments.load_results``), or None for paper rows only.
        dataset: dataset key.
        regime: which regime's runs to show; None picks the only one present (an error if the
            results hold several for ``dataset``).
        protocol: uniformity/tolerance source, as in :func:`plot_uniformity_tolerance`.

    Returns:
        DataFrame indexed by (metric, source) with metric in linear acc / kNN acc / uniformity /
        tolerance and source "paper" / "this run"; columns ``C 0.07 ... Simple, H 0.07 ...
        HardSimple``. Accuracies in percent; cells without a value are NaN (the paper's kNN
        comes from the Fig. 9 sweeps and exists only for CIFAR10/100 and SVHN, τ-dependent losses).
    """
    import pandas as pd

    check_choice("dataset", dataset, pr.DATASETS)
    check_choice("protocol", protocol, ("auto", "bank", "test"))
    frame = None
    if results is not None and len(results):
        frame = results[results["dataset"] == dataset]
        regimes = sorted(frame["regime"].dropna().unique())
        if regime is None and len(regimes) > 1:
            raise ValueError(f"results for {dataset} hold several regimes {regimes}; pass regime=")
        if regime is not None:
            frame = frame[frame["regime"] == regime]
    fig9 = pr.paper_rows(dataset, None, "fig9")
    knn = {(r["loss"], r["temperature"]): r["knn_top1"] for r in fig9}
    columns, cells = [], {}
    for row in pr.paper_rows(dataset, None, "table1"):
        loss, t = row["loss"], row["temperature"]
        label = _table1_label(loss, t)
        columns.append(label)
        for name, metric in _TABLE_METRICS:
            paper = knn.get((loss, t), math.nan) if metric == "knn_top1" else row[metric]
            run = math.nan
            if frame is not None:
                run = _run_cell(frame, loss, t, _column(frame, metric, protocol))
                run = float(_percent(np.array([run]))[0]) if metric.endswith("top1") else run
            cells[(name, "paper", label)] = paper
            cells[(name, "this run", label)] = run
    index = pd.MultiIndex.from_tuples(
        [(name, src) for name, _ in _TABLE_METRICS for src in ("paper", "this run")],
        names=["metric", "source"])
    data = [[cells[(m, s, c)] for c in columns] for m, s in index]
    return pd.DataFrame(data, index=index, columns=columns, dtype=float)


def _formatted(df):
    flat = df.reset_index() if df.index.nlevels > 1 or df.index.name else df.copy()
    return flat.astype(object).map(
        lambda v: "–" if isinstance(v, float) and math.isnan(v)
        else (f"{v:.4g}" if isinstance(v, float) else str(v)))


def table_to_markdown(df) -> str:
    """A (side-by-side) table as GitHub markdown; NaN shows as "–", numbers with 4 digits.

    Uses ``DataFrame.to_markdown`` when ``tabulate`` is installed, else formats by hand.
    """
    text = _formatted(df)
    try:
        import tabulate  # noqa: F401
    except ImportError:
        header = [str(c) for c in text.columns]
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in text.itertuples(index=False)]
        return "\n".join(lines)
    return text.to_markdown(index=False)


def table_to_html(df) -> str:
    """A (side-by-side) table as HTML via ``DataFrame.to_html`` (NaN as "–")."""
    return df.to_html(na_rep="–", float_format=lambda v: f"{v:.4g}")
