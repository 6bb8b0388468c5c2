import math

import pytest

from cl_analysis.study import paper_results as pr


@pytest.mark.parametrize(
    "dataset, loss, temperature, metric, expected",
    [
        ("cifar10", "info_nce", 0.3, "linear_top1", 83.27),
        ("cifar10", "hard_simple", None, "linear_top1", 84.84),
        ("cifar10", "simple", None, "uniformity", 1.68),
        ("cifar10", "hard", 0.3, "tolerance", 0.0267),
        ("cifar100", "hard", 0.7, "linear_top1", 57.54),
        ("cifar100", "simple", None, "tolerance", 0.39),
        ("svhn", "info_nce", 0.3, "linear_top1", 95.47),
        ("svhn", "hard", 0.3, "uniformity", 3.91),
        ("imagenet100", "info_nce", 0.3, "linear_top1", 75.10),
        ("imagenet100", "hard", 0.3, "uniformity", 3.932),
        ("imagenet100", "info_nce", 1.0, "tolerance", 0.456),
    ],
)
def test_table1_spot_checks(dataset, loss, temperature, metric, expected):
    assert pr.paper_value(dataset, loss, temperature, metric) == expected


def test_table1_shape_and_ranges():
    assert len(pr.TABLE1) == 4 * 10
    for row in pr.TABLE1:
        assert row["loss"] in pr.LOSSES
        assert (row["temperature"] is None) == (row["loss"] in ("simple", "hard_simple"))
        assert 0 < row["uniformity"] <= 3.94  # d = 128 maximum is ~3.9375
        assert 0 <= row["tolerance"] <= 1
        assert 0 < row["linear_top1"] <= 100


def test_table1_frame():
    df = pr.table1_frame()
    assert df.shape == (40, 6)
    assert df["temperature"].isna().sum() == 8
    best = df[df.dataset == "cifar10"].sort_values("linear_top1").iloc[-1]
    assert best["loss"] == "hard_simple" and best["linear_top1"] == 84.84


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100", "svhn"])
@pytest.mark.parametrize("loss", ["info_nce", "hard"])
def test_fig9_matches_table1(dataset, loss):
    for t in pr.TABLE1_TEMPERATURES:
        assert pr.FIG9_LINEAR[(dataset, loss)][t] == pytest.approx(
            pr.paper_value(dataset, loss, t), abs=1e-9
        )


def test_fig9_spot_checks_and_extras():
    assert pr.FIG9_LINEAR[("cifar10", "info_nce")][0.2] == 83.78  # CIFAR10 linear optimum
    knn = {(r["dataset"], r["loss"], r["temperature"]): r["knn_top1"] for r in pr.FIG9_SWEEPS}
    assert knn[("cifar100", "info_nce", 1.0)] == 26.29
    assert knn[("svhn", "hard", 0.05)] == 87.86
    hard10 = pr.FIG9_LINEAR[("cifar10", "hard")]
    assert [hard10[t] for t in (1.1, 1.2, 1.3, 1.4)] == [84.18, 84.17, 84.89, 84.47]
    assert knn[("cifar10", "hard", 1.3)] == 83.49
    assert len(pr.FIG9_SWEEPS) == 6 * 12 + 4
    assert pr.CIFAR100_HARD_T07_800_EPOCHS == 58.92
    assert pr.HARD_TOPK_ABLATION_CIFAR100[8192] == (53.17, 56.48)
    # Paper's text claim: ordinary CL accuracy is reverse-U, best at tau 0.2 or 0.3.
    for dataset in ("cifar10", "cifar100", "svhn"):
        curve = pr.FIG9_LINEAR[(dataset, "info_nce")]
        assert max(curve, key=curve.get) in (0.2, 0.3)


def test_uniformity_tolerance_sweeps():
    rows = pr.paper_rows("cifar10", "info_nce", source="uniformity_tolerance")
    assert len(rows) == 12
    by_t = {r["temperature"]: r for r in rows}
    assert by_t[0.3]["tolerance"] == 0.1777  # Table 1 rounds this to 0.178
    assert by_t[0.05]["uniformity"] == 3.852
    c100 = pr.paper_rows("cifar100", "info_nce", source="uniformity_tolerance")
    assert all(r["tolerance"] is None for r in c100) and c100[-1]["uniformity"] == 2.961
    hard = pr.paper_rows("imagenet100", "hard", source="uniformity_tolerance")
    assert [r["temperature"] for r in hard] == [0.07, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    (simple,) = pr.paper_rows("imagenet100", "simple", source="uniformity_tolerance")
    assert simple["temperature"] is None and simple["uniformity"] == 1.742
    for r in pr.UNIFORMITY_TOLERANCE_SWEEPS:
        assert r["uniformity"] <= 3.94
        assert r["tolerance"] is None or 0 <= r["tolerance"] <= 1
    # Sweeps agree with Table 1 to Table 1's rounding.
    for r in rows:
        if r["temperature"] in pr.TABLE1_TEMPERATURES:
            paper = pr.paper_value("cifar10", "info_nce", r["temperature"], "uniformity")
            assert r["uniformity"] == pytest.approx(paper, abs=0.006)
    df = pr.uniformity_tolerance_frame()
    assert df["tolerance"].isna().sum() == 12


def test_other_constants():
    assert pr.POSITIVE_SIMILARITY_CIFAR100[0.07] == 0.8586
    sims = [pr.POSITIVE_SIMILARITY_CIFAR100[t] for t in sorted(pr.POSITIVE_SIMILARITY_CIFAR100)]
    assert sims == sorted(sims)  # larger tau pushes the positive closer to 1
    best = max(pr.SIMCLR_TABLE5, key=lambda r: r["top1"])
    assert best["temperature"] == 0.1 and best["top1"] == 64.4
    for dataset, row in pr.SIMPLE_VS_ORDINARY.items():
        assert row["simple"] == pr.paper_value(dataset, "simple")
        assert row["info_nce"] == pr.paper_value(dataset, "info_nce", 0.3)
        assert row["hard_simple"] == pr.paper_value(dataset, "hard_simple")


def test_rows_are_copies_and_read_only():
    rows = pr.paper_rows("svhn")
    rows[0]["linear_top1"] = math.nan
    assert pr.paper_value("svhn", "info_nce", 0.07) == 92.55
    with pytest.raises(TypeError):
        pr.TABLE1[0]["linear_top1"] = 0.0


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="dataset"):
        pr.paper_rows("mnist")
    with pytest.raises(ValueError, match="loss"):
        pr.paper_rows(loss="nt_xent")
    with pytest.raises(ValueError, match="source"):
        pr.paper_rows(source="fig3")
    with pytest.raises(ValueError, match="temperature"):
        pr.paper_value("cifar10", "info_nce", 0.2)
    with pytest.raises(ValueError, match="metric"):
        pr.paper_value("cifar10", "info_nce", 0.3, metric="knn_top1")
