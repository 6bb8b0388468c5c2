"""Seed aggregation of a sweep's results table: mean, spread and count per configuration.

A sweep (:mod:`cl_analysis.study.sweep`) trains every (loss, τ) once per seed; its results table
(:func:`~cl_analysis.study.sweep.load_results`) has one row per run. :func:`aggregate` folds the
seeds: one row per (dataset, regime, loss, temperature) with, for every metric column ``m``,
``m_mean``, ``m_std`` (sample standard deviation, ddof = 1, the seed-to-seed spread of one run;
NaN with a single seed) and ``m_n`` (how many seeds had a finite value).
"""

from __future__ import annotations

import math

__all__ = ["GROUP_COLUMNS", "METRIC_COLUMNS", "aggregate", "seed_means"]

GROUP_COLUMNS = ("dataset", "regime", "loss", "temperature")
METRIC_COLUMNS = (
    "linear_top1", "knn_top1", "knn_top5", "uniformity", "tolerance", "alignment",
    "penalty_entropy", "effective_negatives", "positive_similarity", "uniformity_bank",
    "tolerance_bank", "wall_time_s", "epochs",
)


def aggregate(results, metrics: tuple[str, ...] | None = None):
    """Mean, seed-to-seed standard deviation and count per (dataset, regime, loss, temperature).

    Args:
        results: pandas DataFrame with one row per run, as returned by
            :func:`cl_analysis.study.sweep.load_results`: at least :data:`GROUP_COLUMNS`,
            ``seed`` and the metric columns. τ-free losses have temperature NaN; they form their
            own group.
        metrics: metric columns to aggregate; default: every column of :data:`METRIC_COLUMNS`
            that ``results`` has.

    Returns:
        DataFrame, one row per configuration, sorted by dataset, regime, loss, temperature (NaN
        last), with columns ``dataset, regime, loss, temperature, n_seeds, seeds`` (``seeds``: a
        sorted tuple of ints) and, for each metric ``m``: ``m_mean``, ``m_std`` (ddof = 1; NaN
        when fewer than two seeds have a finite value) and ``m_n`` (finite values). NaN metric
        values are left out of mean/std (and counted out of ``m_n``).

    Raises:
        ValueError: if a grouping column, ``seed`` or a requested metric column is missing, if
            ``results`` is empty, or if one configuration lists the same seed twice (a run
            counted twice would understate the spread).
    """
    import numpy as np
    import pandas as pd

    if not isinstance(results, pd.DataFrame):
        raise ValueError(f"results must be a pandas DataFrame (load_results(runs_dir)), got "
                         f"{type(results).__name__}")
    required = (*GROUP_COLUMNS, "seed")
    missing = [c for c in required if c not in results.columns]
    if missing:
        raise ValueError(f"results lacks column(s) {missing}; pass the table of "
                         f"cl_analysis.study.sweep.load_results(runs_dir)")
    if metrics is None:
        metrics = tuple(c for c in METRIC_COLUMNS if c in results.columns)
    else:
        metrics = tuple(metrics)
        absent = [m for m in metrics if m not in results.columns]
        if absent:
            raise ValueError(f"results has no metric column(s) {absent}; available: "
                             f"{[c for c in results.columns if c not in required]}")
    if results.empty:
        raise ValueError("results is empty: no finished run to aggregate; train the sweep first")

    frame = results.copy()
    frame["temperature"] = pd.to_numeric(frame["temperature"], errors="coerce").astype(float)
    # Group τ with a rounded key so 0.3 and 0.30000000000000004 fall together; NaN is its own key.
    frame["_t_key"] = frame["temperature"].round(9).fillna(-1.0)
    rows = []
    for _, group in frame.groupby(["dataset", "regime", "loss", "_t_key"], sort=False,
                                  dropna=False):
        first = group.iloc[0]
        seeds = [int(s) for s in group["seed"]]
        if len(set(seeds)) != len(seeds):
            raise ValueError(
                f"configuration {first['dataset']}/{first['regime']}/{first['loss']}/"
                f"τ={first['temperature']} lists seed(s) {sorted(seeds)} more than once; each "
                f"run must appear once in the results table (rebuild it with collect_results)")
        row = {c: first[c] for c in GROUP_COLUMNS}
        row["n_seeds"] = len(seeds)
        row["seeds"] = tuple(sorted(seeds))
        for m in metrics:
            values = pd.to_numeric(group[m], errors="coerce").to_numpy(dtype=float)
            values = values[np.isfinite(values)]
            row[f"{m}_mean"] = float(values.mean()) if values.size else math.nan
            row[f"{m}_std"] = float(values.std(ddof=1)) if values.size >= 2 else math.nan
            row[f"{m}_n"] = int(values.size)
        rows.append(row)
    out = pd.DataFrame(rows)
    out = out.sort_values(["dataset", "regime", "loss", "temperature"], na_position="last",
                          kind="stable").reset_index(drop=True)
    return out


def seed_means(results):
    """The results table with the seeds folded: one row per configuration, metric means.

    Same columns as ``results`` (so tables and plots written for one seed work unchanged),
    metric columns replaced by their mean over seeds; ``run`` names the first seed's run, ``seed``
    is the first seed and ``n_seeds`` counts them. The spread lives in :func:`aggregate` and the
    claims (:mod:`cl_analysis.study.claims`).

    Raises:
        ValueError: as :func:`aggregate`.
    """
    agg = aggregate(results)
    out = results.drop_duplicates(subset=list(GROUP_COLUMNS)).copy()
    keyed = agg.set_index(list(GROUP_COLUMNS))
    for col in METRIC_COLUMNS:
        if col in out.columns and f"{col}_mean" in keyed.columns:
            out[col] = [keyed.loc[tuple(k), f"{col}_mean"] for k in
                        out[list(GROUP_COLUMNS)].itertuples(index=False)]
    out["n_seeds"] = [int(keyed.loc[tuple(k), "n_seeds"]) for k in
                      out[list(GROUP_COLUMNS)].itertuples(index=False)]
    return out.reset_index(drop=True)
