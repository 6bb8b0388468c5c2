"""The paper's published numbers as plain data, so notebooks can put "paper" beside "this run".

Sources (tags as in ``docs``' research digest):

* **P**: Wang & Liu, "Understanding the Behaviour of Contrastive Loss", CVPR 2021, Table 1 and
  §5.5 text.
* **C**: the authors' research code ``WangFeng18/InvariancePropagation`` (branch ``master``),
  notebook outputs ``CLS/PosStatistics.ipynb``, ``CLS/visualization.ipynb`` and ``CLS/info.csv``.
  Not printed in the paper; rows shared with Table 1 agree exactly.
* **S**: Chen et al., SimCLR (ICML 2020), Table 5.

Conventions: accuracies are top-1 in percent; uniformity is ``-L_uniformity`` with t = 2 (larger is
more uniform, at most ~3.94 for 128-d); tolerance is the class-conditional mean cosine. Loss names
match :mod:`cl_analysis.losses`: ``"info_nce"`` (Eq. 1), ``"hard"`` (Eq. 9), ``"simple"`` (Eq. 3)
and ``"hard_simple"`` (Eq. 3 over the 4095 nearest negatives); the last two have no temperature,
stored as ``None``. Dataset keys are ``"cifar10"``, ``"cifar100"``, ``"svhn"``, ``"imagenet100"``.
Everything here is pandas-free; ``*_frame()`` helpers return DataFrames on demand.
"""

from __future__ import annotations

from types import MappingProxyType

from .._checks import check_choice

__all__ = [
    "DATASETS",
    "LOSSES",
    "TABLE1_TEMPERATURES",
    "TABLE1",
    "FIG9_SWEEPS",
    "FIG9_LINEAR",
    "CIFAR100_HARD_T07_800_EPOCHS",
    "HARD_TOPK_ABLATION_CIFAR100",
    "UNIFORMITY_TOLERANCE_SWEEPS",
    "POSITIVE_SIMILARITY_CIFAR100",
    "SIMCLR_TABLE5",
    "SIMPLE_VS_ORDINARY",
    "paper_rows",
    "paper_value",
    "table1_frame",
    "fig9_frame",
    "uniformity_tolerance_frame",
]

DATASETS = ("cifar10", "cifar100", "svhn", "imagenet100")
LOSSES = ("info_nce", "simple", "hard", "hard_simple")
TABLE1_TEMPERATURES = (0.07, 0.3, 0.7, 1.0)  # [P, C] the ar5iv header's "·" is an artefact

# --- Table 1 [P], columns: C 0.07, C 0.3, C 0.7, C 1.0, Simple, H 0.07, H 0.3, H 0.7, H 1.0,
# HardSimple; rows: linear top-1 (%), -L_uniformity (t=2), tolerance.
_TABLE1_COLUMNS = (
    [("info_nce", t) for t in TABLE1_TEMPERATURES]
    + [("simple", None)]
    + [("hard", t) for t in TABLE1_TEMPERATURES]
    + [("hard_simple", None)]
)
_TABLE1_RAW = {
    "cifar10": (
        (79.75, 83.27, 82.69, 82.21, 74.83, 79.2, 83.63, 84.19, 84.19, 84.84),
        (3.86, 3.60, 3.17, 2.96, 1.68, 3.88, 3.89, 3.87, 3.86, 3.85),
        (0.04, 0.178, 0.333, 0.372, 0.61, 0.034, 0.0267, 0.030, 0.030, 0.030),
    ),
    "cifar100": (
        (51.82, 56.44, 50.99, 48.33, 39.31, 50.77, 56.55, 57.54, 56.77, 55.71),
        (3.86, 3.60, 3.18, 2.96, 2.12, 3.87, 3.88, 3.87, 3.86, 3.86),
        (0.10, 0.269, 0.331, 0.343, 0.39, 0.088, 0.124, 0.158, 0.172, 0.174),
    ),
    "svhn": (
        (92.55, 95.47, 94.17, 92.07, 70.83, 91.82, 94.79, 95.02, 95.26, 94.99),
        (3.88, 3.65, 3.27, 3.05, 1.50, 3.89, 3.91, 3.90, 3.88, 3.85),
        (0.032, 0.137, 0.186, 0.197, 0.074, 0.025, 0.021, 0.021, 0.023, 0.026),
    ),
    "imagenet100": (
        (71.53, 75.10, 69.03, 63.57, 48.09, 68.33, 74.21, 74.70, 74.28, 74.31),
        (3.917, 3.693, 3.323, 3.08, 1.742, 3.929, 3.932, 3.927, 3.923, 3.917),
        (0.093, 0.380, 0.427, 0.456, 0.528, 0.067, 0.096, 0.121, 0.134, 0.157),
    ),
}
TABLE1 = tuple(
    MappingProxyType(
        {
            "dataset": dataset,
            "loss": loss,
            "temperature": temperature,
            "linear_top1": acc[j],
            "uniformity": unif[j],
            "tolerance": tol[j],
        }
    )
    for dataset, (acc, unif, tol) in _TABLE1_RAW.items()
    for j, (loss, temperature) in enumerate(_TABLE1_COLUMNS)
)

# --- Fig. 9 sweeps [C CLS/PosStatistics.ipynb]: linear top-1 and kNN top-1 (K=200, sigma=0.07,
# memory bank). Per (dataset, loss): one (linear, knn) pair per temperature of _FIG9_TEMPS.
_FIG9_TEMPS = (0.05, 0.07, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
_FIG9_RAW = {
    ("cifar10", "info_nce"): (
        (76.10, 78.65), (79.75, 80.91), (81.82, 81.53), (83.78, 81.04), (83.27, 79.92),
        (83.22, 78.00), (82.54, 76.23), (82.97, 75.82), (82.69, 75.09), (82.67, 74.50),
        (81.97, 72.55), (82.21, 72.00),
    ),
    ("cifar100", "info_nce"): (
        (49.80, 49.90), (51.82, 51.77), (52.46, 52.19), (56.05, 48.90), (56.44, 44.81),
        (55.47, 40.87), (54.17, 37.85), (53.05, 34.60), (50.99, 30.97), (50.08, 28.66),
        (50.21, 28.67), (48.33, 26.29),
    ),
    ("svhn", "info_nce"): (
        (88.96, 87.89), (92.55, 92.17), (94.21, 93.38), (95.46, 93.76), (95.47, 93.30),
        (95.36, 91.90), (94.66, 87.14), (94.47, 83.90), (94.17, 82.74), (93.22, 80.63),
        (92.66, 79.21), (92.07, 77.48),
    ),
    ("cifar10", "hard"): (
        (76.22, 77.52), (79.20, 80.75), (80.40, 81.86), (83.28, 82.50), (83.63, 83.19),
        (84.14, 83.19), (84.31, 83.40), (84.60, 83.46), (84.19, 83.31), (84.60, 83.40),
        (84.45, 83.23), (84.19, 83.25),
    ),
    ("cifar100", "hard"): (
        (49.21, 49.42), (50.77, 52.36), (51.91, 53.09), (55.61, 53.12), (56.55, 53.42),
        (55.66, 53.72), (57.37, 53.19), (57.17, 52.69), (57.54, 53.44), (57.15, 52.56),
        (56.53, 52.85), (56.77, 52.52),
    ),
    ("svhn", "hard"): (
        (89.07, 87.86), (91.82, 91.64), (93.37, 93.39), (94.58, 94.15), (94.79, 94.13),
        (94.62, 93.92), (94.93, 94.10), (95.06, 93.85), (95.02, 93.93), (95.03, 93.95),
        (95.08, 94.07), (95.26, 94.13),
    ),
}
# [C] CIFAR10 hard CL was also run at tau 1.1-1.4.
_FIG9_CIFAR10_HARD_HIGH_T = {
    1.1: (84.18, 83.17), 1.2: (84.17, 83.37), 1.3: (84.89, 83.49), 1.4: (84.47, 83.04),
}


def _fig9_rows():
    rows = []
    for (dataset, loss), pairs in _FIG9_RAW.items():
        points = dict(zip(_FIG9_TEMPS, pairs))
        if (dataset, loss) == ("cifar10", "hard"):
            points.update(_FIG9_CIFAR10_HARD_HIGH_T)
        for temperature, (linear, knn) in points.items():
            rows.append(
                MappingProxyType(
                    {"dataset": dataset, "loss": loss, "temperature": temperature,
                     "linear_top1": linear, "knn_top1": knn}
                )
            )
    return tuple(rows)


FIG9_SWEEPS = _fig9_rows()
# {(dataset, loss): {temperature: linear top-1}}, the curves of Fig. 9 (R-18 datasets).
FIG9_LINEAR = MappingProxyType(
    {
        key: MappingProxyType(
            {r["temperature"]: r["linear_top1"] for r in FIG9_SWEEPS
             if (r["dataset"], r["loss"]) == key}
        )
        for key in _FIG9_RAW
    }
)
# [C] CIFAR100, hard loss, tau = 0.7 trained for 800 epochs instead of 200: linear top-1.
CIFAR100_HARD_T07_800_EPOCHS = 58.92
# [C] Hard-negative K ablation, CIFAR100, tau = 0.2: K -> (kNN top-1, linear top-1 or None).
HARD_TOPK_ABLATION_CIFAR100 = MappingProxyType(
    {512: (52.96, None), 1024: (53.67, None), 2048: (54.05, 54.65), 8192: (53.17, 56.48)}
)

# --- Uniformity / tolerance sweeps [C CLS/visualization.ipynb]; None = not reported.
_UT_GRID = (0.05, 0.07, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
_UT_RAW = (
    ("cifar10", "info_nce", _UT_GRID,
     (3.852, 3.862, 3.850, 3.739, 3.595, 3.454, 3.338, 3.260, 3.172, 3.085, 2.946, 2.964),
     (0.0511, 0.0436, 0.0496, 0.1070, 0.1777, 0.2363, 0.2694, 0.3062, 0.3332, 0.3557, 0.3980,
      0.3717)),
    ("cifar100", "info_nce", _UT_GRID,
     (3.849, 3.862, 3.848, 3.725, 3.604, 3.473, 3.396, 3.305, 3.181, 3.080, 3.107, 2.961),
     (None,) * len(_UT_GRID)),
    ("imagenet100", "info_nce", (0.07, 0.2, 0.3, 0.5, 0.6, 0.7),
     (3.917, 3.816, 3.693, 3.482, 3.394, 3.323),
     (0.093, 0.283, 0.380, 0.401, 0.416, 0.427)),
    ("imagenet100", "hard", (0.07, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8),
     (3.929, 3.933, 3.932, 3.930, 3.929, 3.928, 3.927, 3.926),
     (0.067, 0.082, 0.096, 0.103, 0.108, 0.113, 0.121, 0.124)),
    ("imagenet100", "simple", (None,), (1.742,), (0.528,)),
)
UNIFORMITY_TOLERANCE_SWEEPS = tuple(
    MappingProxyType(
        {"dataset": dataset, "loss": loss, "temperature": t, "uniformity": u, "tolerance": tol}
    )
    for dataset, loss, temps, unifs, tols in _UT_RAW
    for t, u, tol in zip(temps, unifs, tols)
)

# --- [C CLS/info.csv] CIFAR100, ordinary loss, epoch-190 snapshot: mean positive similarity.
POSITIVE_SIMILARITY_CIFAR100 = MappingProxyType(
    {0.07: 0.8586, 0.2: 0.9045, 0.3: 0.9143, 0.5: 0.9215, 0.7: 0.9227, 1.0: 0.9309}
)

# --- [S] SimCLR Table 5 (ImageNet, 4096-example contrastive distribution).
SIMCLR_TABLE5 = tuple(
    MappingProxyType(
        {"l2_norm": norm, "temperature": t, "entropy": h, "contrastive_acc": c, "top1": a}
    )
    for norm, t, h, c, a in (
        (True, 0.05, 1.0, 90.5, 59.7),
        (True, 0.1, 4.5, 87.8, 64.4),
        (True, 0.5, 8.2, 68.2, 60.7),
        (True, 1.0, 8.3, 59.1, 58.0),
        (False, 10.0, 0.5, 91.7, 57.2),
        (False, 100.0, 0.5, 92.1, 57.0),
    )
)

# --- [P §5.5] L_simple vs the best ordinary CL (tau = 0.3), and HardSimple, linear top-1 (%).
SIMPLE_VS_ORDINARY = MappingProxyType(
    {
        "cifar10": MappingProxyType({"simple": 74.83, "info_nce": 83.27, "hard_simple": 84.84}),
        "cifar100": MappingProxyType({"simple": 39.31, "info_nce": 56.44, "hard_simple": 55.71}),
        "svhn": MappingProxyType({"simple": 70.83, "info_nce": 95.47, "hard_simple": 94.99}),
        "imagenet100": MappingProxyType(
            {"simple": 48.09, "info_nce": 75.10, "hard_simple": 74.31}
        ),
    }
)

_SOURCES = {
    "table1": TABLE1,
    "fig9": FIG9_SWEEPS,
    "uniformity_tolerance": UNIFORMITY_TOLERANCE_SWEEPS,
}


def paper_rows(
    dataset: str | None = None, loss: str | None = None, source: str = "table1"
) -> list[dict]:
    """Rows of one of the paper's tables, filtered by dataset and/or loss.

    Args:
        dataset: ``"cifar10" | "cifar100" | "svhn" | "imagenet100"``, or None for all.
        loss: ``"info_nce" | "simple" | "hard" | "hard_simple"``, or None for all.
        source: ``"table1"`` (:data:`TABLE1`), ``"fig9"`` (:data:`FIG9_SWEEPS`) or
            ``"uniformity_tolerance"`` (:data:`UNIFORMITY_TOLERANCE_SWEEPS`).

    Returns:
        A list of plain dicts (copies), in the table's order; empty if nothing matches.
    """
    check_choice("source", source, _SOURCES)
    if dataset is not None:
        check_choice("dataset", dataset, DATASETS)
    if loss is not None:
        check_choice("loss", loss, LOSSES)
    return [
        dict(row)
        for row in _SOURCES[source]
        if (dataset is None or row["dataset"] == dataset) and (loss is None or row["loss"] == loss)
    ]


def paper_value(
    dataset: str, loss: str, temperature: float | None = None, metric: str = "linear_top1"
) -> float:
    """One Table 1 cell, e.g. ``paper_value("cifar10", "info_nce", 0.3) == 83.27``.

    Args:
        dataset: a key of :data:`DATASETS`.
        loss: a key of :data:`LOSSES`; ``temperature`` must be None for simple/hard_simple.
        temperature: one of :data:`TABLE1_TEMPERATURES` for info_nce/hard.
        metric: ``"linear_top1" | "uniformity" | "tolerance"``.

    Raises:
        ValueError: if Table 1 has no such cell.
    """
    check_choice("metric", metric, ("linear_top1", "uniformity", "tolerance"))
    for row in paper_rows(dataset, loss, "table1"):
        t = row["temperature"]
        if (t is None and temperature is None) or (
            t is not None and temperature is not None and abs(t - float(temperature)) < 1e-9
        ):
            return row[metric]
    raise ValueError(
        f"Table 1 has no {loss!r} column at temperature {temperature!r}; temperatures are "
        f"{TABLE1_TEMPERATURES} for info_nce/hard and None for simple/hard_simple"
    )


def _frame(rows):
    import pandas as pd

    return pd.DataFrame([dict(r) for r in rows])


def table1_frame():
    """Table 1 as a long pandas DataFrame (dataset, loss, temperature, linear_top1, ...)."""
    return _frame(TABLE1)


def fig9_frame():
    """The Fig. 9 accuracy sweeps as a long DataFrame (dataset, loss, temperature, linear, kNN)."""
    return _frame(FIG9_SWEEPS)


def uniformity_tolerance_frame():
    """The uniformity/tolerance sweeps as a long DataFrame (NaN where not reported)."""
    return _frame(UNIFORMITY_TOLERANCE_SWEEPS)
