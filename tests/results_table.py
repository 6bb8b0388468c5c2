"""A sweep results table (columns of ``sweep.RESULT_COLUMNS``) from a few partial rows."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cl_analysis.study.sweep import RESULT_COLUMNS


def results_table(rows: list[dict]) -> pd.DataFrame:
    """Rows -> a DataFrame with every result column, NaN where a row does not set it."""
    frame = pd.DataFrame(rows)
    for col in RESULT_COLUMNS:
        if col not in frame:
            frame[col] = np.nan
    return frame[list(RESULT_COLUMNS)]


def run_row(loss: str, temperature: float, seed: int, **metrics) -> dict:
    """One cifar10 / memory-bank / quick run of ``loss`` at ``temperature``."""
    return {"run": f"{loss}-t{temperature}-s{seed}", "dataset": "cifar10",
            "regime": "memory_bank", "loss": loss, "temperature": temperature, "seed": seed,
            "profile": "quick", **metrics}
