import math

import numpy as np
import pandas as pd
import pytest
from results_table import results_table as _table
from results_table import run_row as _row

from cl_analysis.study.results import aggregate


def test_mean_std_and_count_per_configuration():
    results = _table([
        _row("hard", 0.07, 0, tolerance_bank=0.10, linear_top1=0.40),
        _row("hard", 0.07, 1, tolerance_bank=0.12, linear_top1=0.44),
        _row("hard", 0.07, 2, tolerance_bank=0.14, linear_top1=0.42),
        _row("info_nce", 0.07, 0, tolerance_bank=0.20, linear_top1=0.30),
        _row("simple", np.nan, 0, tolerance_bank=0.50, linear_top1=0.35),
        _row("simple", np.nan, 1, tolerance_bank=0.54, linear_top1=np.nan),
    ])
    agg = aggregate(results)
    assert len(agg) == 3
    hard = agg[agg["loss"] == "hard"].iloc[0]
    assert hard["n_seeds"] == 3 and hard["seeds"] == (0, 1, 2)
    assert hard["tolerance_bank_mean"] == pytest.approx(0.12)
    assert hard["tolerance_bank_std"] == pytest.approx(0.02)  # ddof = 1
    assert hard["tolerance_bank_n"] == 3
    assert hard["linear_top1_std"] == pytest.approx(np.std([0.40, 0.44, 0.42], ddof=1))
    single = agg[agg["loss"] == "info_nce"].iloc[0]
    assert single["tolerance_bank_mean"] == pytest.approx(0.20)
    assert math.isnan(single["tolerance_bank_std"]) and single["tolerance_bank_n"] == 1
    simple = agg[agg["loss"] == "simple"].iloc[0]
    assert math.isnan(simple["temperature"]) and simple["n_seeds"] == 2
    assert simple["tolerance_bank_mean"] == pytest.approx(0.52)
    # a NaN metric is left out, not averaged in
    assert simple["linear_top1_n"] == 1 and simple["linear_top1_mean"] == pytest.approx(0.35)
    assert math.isnan(simple["linear_top1_std"])
    # τ-free losses sort last within the dataset/regime, rows sorted by loss
    assert list(agg["loss"]) == ["hard", "info_nce", "simple"]
    for m in ("knn_top1", "uniformity", "wall_time_s", "epochs"):
        assert {f"{m}_mean", f"{m}_std", f"{m}_n"} <= set(agg.columns)


def test_float_noise_in_temperature_groups_together():
    results = _table([_row("hard", 0.3, 0, tolerance=0.1),
                      _row("hard", 0.1 + 0.2, 1, tolerance=0.3)])
    agg = aggregate(results, metrics=("tolerance",))
    assert len(agg) == 1 and agg.iloc[0]["tolerance_n"] == 2
    assert list(agg.columns) == ["dataset", "regime", "loss", "temperature", "n_seeds", "seeds",
                                 "tolerance_mean", "tolerance_std", "tolerance_n"]


def test_plumbing_errors_are_named():
    results = _table([_row("hard", 0.3, 0, tolerance=0.1)])
    with pytest.raises(ValueError, match="seed"):
        aggregate(results.drop(columns=["seed"]))
    with pytest.raises(ValueError, match="no metric column"):
        aggregate(results, metrics=("accuracy",))
    with pytest.raises(ValueError, match="empty"):
        aggregate(results.iloc[:0])
    with pytest.raises(ValueError, match="more than once"):
        aggregate(pd.concat([results, results]))
    with pytest.raises(ValueError, match="DataFrame"):
        aggregate(results.to_dict("records"))
