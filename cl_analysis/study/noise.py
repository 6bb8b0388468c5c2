"""The seed-to-seed noise floor of a profile, measured from a sweep trained with several seeds.

A claim judged on one seed (:mod:`cl_analysis.study.claims`) needs to know how much one run's
metric moves when only the seed changes. :func:`measure_noise_floor` reads a sweep folder whose
grid has ≥ 3 seeds and returns, for every metric a claim uses, the pooled seed-to-seed standard
deviation over all (loss, τ) configurations: √(mean over configurations of the per-configuration
variance, ddof = 1), together with the smallest and largest per-configuration std. Besides the
results columns it covers the derived quantities the notebooks judge: Fig. 8's bank-protocol
gap and positive similarity (``separation_gap_bank``, ``separation_pos_bank``, from each run's
``embeddings_test.pt``) and the 2-D density runs' test uniformity (``density_uniformity``, from
``<runs>/density``), and the weighting lens of notebook 07 at each run's last monitored epoch
(:data:`HISTORY_METRICS`, from ``metrics.jsonl``; for :data:`LOG_HISTORY_METRICS` also of their
log10, as ``log10_<key>``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

__all__ = ["CLAIM_METRICS", "HISTORY_METRICS", "LOG_HISTORY_METRICS", "measure_noise_floor"]

CLAIM_METRICS = ("linear_top1", "knn_top1", "uniformity", "tolerance", "uniformity_bank",
                 "tolerance_bank", "penalty_entropy", "effective_negatives")
# per-epoch monitor keys judged by notebook 07, taken at each run's last monitored epoch
HISTORY_METRICS = ("positive_probability", "anchor_log_weight_std_flat_nce")
# of these, the ones whose values span orders of magnitude over τ also get a floor of their
# log10, recorded as "log10_<key>" (a claim across τ compares them on that scale)
LOG_HISTORY_METRICS = ("anchor_log_weight_std_flat_nce",)


def _pooled(groups: list[list[float]]) -> dict[str, float]:
    variances = []
    for values in groups:
        n = len(values)
        if n >= 2:
            m = sum(values) / n
            variances.append(sum((v - m) ** 2 for v in values) / (n - 1))
    if not variances:
        raise ValueError("no configuration has two or more seeds with finite values")
    stds = [math.sqrt(v) for v in variances]
    return {"std": math.sqrt(sum(variances) / len(variances)), "min": min(stds),
            "max": max(stds), "configurations": len(variances)}


def measure_noise_floor(runs_dir: str | os.PathLike, *, min_seeds: int = 3) -> dict[str, Any]:
    """Pooled seed-to-seed std of every claim metric of the sweep in ``runs_dir``.

    Args:
        runs_dir: a sweep folder (``sweep.json``) whose grid has at least ``min_seeds`` seeds;
            its ``density/`` sub-sweep is used when present.
        min_seeds: the fewest seeds accepted.

    Returns:
        ``{"std": {metric: pooled std}, "detail": {metric: {std, min, max, configurations}},
        "seeds": [...], "profile": ...}`` (accuracies as fractions).

    Raises:
        ValueError: fewer seeds than ``min_seeds``, or unfinished runs (see ``load_sweep``).
    """
    import numpy as np
    import torch

    from .runs import load_sweep

    sweep = load_sweep(runs_dir)
    seeds = sweep.spec.grid.seeds
    if len(seeds) < min_seeds:
        raise ValueError(f"{runs_dir} was trained with seeds {list(seeds)}; a noise floor needs "
                         f"at least {min_seeds} (cl-analysis sweep --seeds 0 1 2 ...)")
    df = sweep.results
    key = df["temperature"].fillna(-1.0)
    detail: dict[str, Any] = {}
    for metric in CLAIM_METRICS:
        if metric in df and df[metric].notna().any():
            groups = [g[metric].dropna().tolist()
                      for _, g in df.groupby([df["loss"], key])]
            detail[metric] = _pooled(groups)
    # Fig. 8's statistics of the ordinary loss, bank protocol
    ordinary = df[df["loss"] == "info_nce"]
    for stat in ("gap", "pos"):
        groups = []
        for _, g in ordinary.groupby("temperature"):
            vals = []
            for run in g["run"]:
                arrays = torch.load(Path(runs_dir) / run / "embeddings_test.pt",
                                    map_location="cpu", weights_only=True)
                s = arrays.get("local_separation_bank", arrays["local_separation"]).double()
                vals.append(float((s[:, 0] - s[:, 1:].mean(1)).mean()) if stat == "gap"
                            else float(s[:, 0].mean()))
            groups.append(vals)
        detail[f"separation_{stat}_bank"] = _pooled(groups)
    try:
        history = sweep.history_table(HISTORY_METRICS)
    except ValueError as err:  # runs trained before the weighting lens was logged: skip it
        if "logged no epoch" not in str(err) and "has the key(s)" not in str(err):
            raise
        history = None
    if history is not None:
        last = history.sort_values("epoch").groupby("run").tail(1)
        key = last["temperature"].fillna(-1.0)
        groups = [g for _, g in last.groupby([last["loss"], key])]
        for metric in HISTORY_METRICS:
            detail[metric] = _pooled([g[metric].tolist() for g in groups])
        for metric in LOG_HISTORY_METRICS:
            detail[f"log10_{metric}"] = _pooled([[math.log10(v) for v in g[metric] if v > 0]
                                                 for g in groups])
    density = Path(runs_dir) / "density"
    if (density / "sweep.json").is_file():
        d = load_sweep(density).results
        detail["density_uniformity"] = _pooled(
            [g["uniformity"].dropna().tolist() for _, g in d.groupby("temperature")])
    return {"std": {m: float(np.round(v["std"], 6)) for m, v in detail.items()},
            "detail": detail, "seeds": list(seeds), "profile": sweep.spec.profile}
