import json
import math

import numpy as np
import pandas as pd
import pytest
from results_table import results_table as _results
from results_table import run_row as _run

from cl_analysis.study.claims import (
    Claim,
    Ledger,
    Measured,
    NoiseFloor,
    collect_ledger,
    judge,
    ledger_json,
    ledger_markdown,
)

FLOOR = NoiseFloor({"tolerance_bank": 0.005, "linear_top1": 0.006, "uniformity_bank": 0.01})


# issue 8's three-seed probe: hard − ordinary tolerance +0.006/+0.004/+0.003 at τ = 0.07 and
# −0.089/−0.085/−0.080 at τ = 1.0
ORD_007, HARD_007 = [0.1083, 0.1100, 0.1120], [0.1143, 0.1140, 0.1150]
ORD_1, HARD_1 = [0.160, 0.158, 0.161], [0.071, 0.073, 0.081]


@pytest.fixture
def three_seeds():
    rows = []
    for s in range(3):
        rows += [_run("info_nce", 0.07, s, tolerance_bank=ORD_007[s], linear_top1=0.42 + s / 100),
                 _run("hard", 0.07, s, tolerance_bank=HARD_007[s], linear_top1=0.43 + s / 100),
                 _run("info_nce", 1.0, s, tolerance_bank=ORD_1[s], linear_top1=0.40),
                 _run("hard", 1.0, s, tolerance_bank=HARD_1[s], linear_top1=0.47),
                 _run("simple", np.nan, s, tolerance_bank=0.2 + s / 1000, linear_top1=0.41)]
    return _results(rows)


def test_issue_probe_paired_verdicts(three_seeds, tmp_path):
    ledger = Ledger(three_seeds, notebook="04_test", out_dir=tmp_path, noise=FLOOR)
    kw = dict(statement="the hard loss is less tolerant than the ordinary loss",
              where="§5.3, Table 1, Fig. 7")
    low = ledger.compare("e@0.07", **kw, larger=ledger.measure("info_nce", 0.07, "tolerance_bank"),
                         smaller=ledger.measure("hard", 0.07, "tolerance_bank"),
                         paper={"ordinary": 0.04, "hard": 0.034}, if_not="at small τ they coincide")
    high = ledger.compare("e@1.0", **kw, larger=ledger.measure("info_nce", 1.0, "tolerance_bank"),
                          smaller=ledger.measure("hard", 1.0, "tolerance_bank"),
                          paper={"ordinary": 0.372, "hard": 0.030})
    # same sign in every seed, so paired over seeds the reversal is significant
    assert low.verdict == "does not hold" and low.mark == "✗"
    assert low.difference == pytest.approx(np.mean(np.subtract(ORD_007, HARD_007)))
    assert "paired over seeds [0, 1, 2]" in low.rule and "4.30" in low.rule
    assert "at small τ they coincide" in low.explanation
    assert high.verdict == "holds" and high.mark == "✓"
    assert "coincide" not in high.explanation
    m = low.measured[0]
    assert m["n"] == 3 and m["std"] == pytest.approx(np.std(ORD_007, ddof=1))
    assert "±" in low.summary() and "does not hold" in low.summary()


def test_forced_failing_claim_is_recorded_not_raised(three_seeds, tmp_path):
    ledger = Ledger(three_seeds, notebook="06_test", out_dir=tmp_path, noise=FLOOR)
    # deliberately reversed: "ordinary beats hard at τ = 1.0" is false in this table
    claim = ledger.compare("forced", "ordinary beats hard at τ = 1", "nowhere",
                           larger=ledger.measure("info_nce", 1.0),
                           smaller=ledger.measure("hard", 1.0), paper="(forced to fail)")
    assert claim.verdict == "does not hold"
    later = ledger.compare("after", "hard beats ordinary at τ = 1", "Fig. 9",
                           larger=ledger.measure("hard", 1.0),
                           smaller=ledger.measure("info_nce", 1.0))
    assert later.verdict == "holds"  # the ledger goes on after a ✗
    claims = collect_ledger(tmp_path)
    assert [c.id for c in claims] == ["06_test:forced", "06_test:after"]
    md = ledger_markdown(claims)
    assert "| ✗ | 06_test:forced |" in md and "| ✓ | 06_test:after |" in md
    assert md.startswith("2 claims: 1 ✓ hold, 0 ≈ within noise, 1 ✗ do not hold.")


def test_within_noise_and_identical_runs(three_seeds):
    ledger = Ledger(three_seeds, notebook="nb", noise=FLOOR)
    same = ledger.measure("hard", 1.0)  # linear_top1 0.47 in every seed: zero spread
    claim = ledger.compare("self", "a run beats itself", "-", larger=same, smaller=same)
    assert claim.verdict == "within noise" and claim.mark == "≈" and claim.difference == 0


def test_one_seed_uses_committed_floor(three_seeds):
    one = three_seeds[three_seeds["seed"] == 0]
    ledger = Ledger(one, notebook="nb", noise=FLOOR)
    a = ledger.measure("hard", 0.07, "tolerance_bank")
    b = ledger.measure("info_nce", 0.07, "tolerance_bank")
    claim = ledger.compare("e", "hard less tolerant", "Fig. 7", larger=b, smaller=a)
    # d = -0.006, threshold 1.96 * sqrt(2) * 0.005 = 0.0139: within noise with one seed
    assert claim.verdict == "within noise"
    assert claim.noise == pytest.approx(1.959964 * math.sqrt(2) * 0.005, rel=1e-5)
    assert "noise floor" in claim.rule and "1 seed" in ledger_markdown([claim])
    one = one.assign(knn_top1=0.4)
    ledger = Ledger(one, notebook="nb", noise=FLOOR)
    with pytest.raises(ValueError, match="no noise floor for metric 'knn_top1'"):
        ledger.compare("k", "-", "-", larger=ledger.measure("hard", 0.07, "knn_top1"),
                       smaller=ledger.measure("info_nce", 0.07, "knn_top1"))


def test_unpaired_welch_when_seeds_differ():
    a = Measured("a", "linear_top1", (0.50, 0.52, 0.51), (0, 1, 2))
    b = Measured("b", "linear_top1", (0.40, 0.41), (3, 4))
    c = judge(a, b, FLOOR)
    assert c.verdict == "holds" and "Welch" in c.rule
    se = math.sqrt(np.var([0.50, 0.52, 0.51], ddof=1) / 3 + np.var([0.40, 0.41], ddof=1) / 2)
    assert c.se == pytest.approx(se)


def test_increasing_and_multi_comparisons(three_seeds):
    ledger = Ledger(three_seeds, notebook="nb", noise=FLOOR)
    ordinary = [ledger.measure("info_nce", t, "tolerance_bank") for t in (0.07, 1.0)]
    rising = ledger.increasing("b", "tolerance rises with τ", "Fig. 5", ordinary)
    assert rising.verdict == "holds" and len(rising.comparisons) == 1
    simple = ledger.measure("simple", None, "tolerance_bank")
    assert simple.label == "simple"
    others = [ledger.measure(lo, t, "tolerance_bank")
              for lo in ("info_nce", "hard") for t in (0.07, 1.0)]
    highest = ledger.compare("c", "simple is the most tolerant", "Table 1", larger=simple,
                             smaller=others)
    assert highest.verdict == "holds" and len(highest.comparisons) == 4
    spread = Measured.combine("range", lambda x, y: y - x, *ordinary, floor_scale=math.sqrt(2))
    assert spread.values == pytest.approx(tuple(np.subtract(ORD_1, ORD_007)))


def test_persistence_is_rewritten_per_claim_and_per_execution(three_seeds, tmp_path):
    ledger = Ledger(three_seeds, notebook="05_x", out_dir=tmp_path, noise=FLOOR)
    path = tmp_path / "claims" / "05_x.json"
    assert json.loads(path.read_text())["claims"] == []
    ledger.compare("one", "s", "w", larger=ledger.measure("hard", 1.0),
                   smaller=ledger.measure("info_nce", 1.0))
    assert len(json.loads(path.read_text())["claims"]) == 1
    Ledger(three_seeds, notebook="05_x", out_dir=tmp_path, noise=FLOOR)  # re-executed notebook
    assert json.loads(path.read_text())["claims"] == []
    Ledger(three_seeds, notebook="04_y", out_dir=tmp_path, noise=FLOOR).compare(
        "two", "s", "w", larger=ledger.measure("hard", 1.0), smaller=ledger.measure("simple"))
    claims = collect_ledger(tmp_path)
    assert [c.notebook for c in claims] == ["04_y"]
    doc = json.loads(ledger_json(claims))
    assert doc["counts"] == {"holds": 1, "within noise": 0, "does not hold": 0}
    assert Claim.from_dict(doc["claims"][0]) == claims[0]


def test_plumbing_errors_raise_clearly(three_seeds, tmp_path):
    ledger = Ledger(three_seeds, notebook="nb", noise=FLOOR)
    with pytest.raises(ValueError, match=r"no run with .*loss='hard', temperature=0.3"):
        ledger.measure("hard", 0.3)
    with pytest.raises(ValueError, match="no column 'accuracy'"):
        ledger.measure("hard", 0.07, "accuracy")
    with pytest.raises(ValueError, match="NaN for run"):
        ledger.measure("hard", 0.07, "knn_top1")
    m = ledger.measure("hard", 1.0)
    ledger.compare("x", "s", "w", larger=m, smaller=ledger.measure("info_nce", 1.0))
    with pytest.raises(ValueError, match="used twice"):
        ledger.compare("x", "s", "w", larger=m, smaller=ledger.measure("info_nce", 1.0))
    with pytest.raises(ValueError, match="seed"):
        Ledger(three_seeds.drop(columns=["seed"]), notebook="nb")
    two = pd.concat([three_seeds, three_seeds.assign(dataset="svhn")])
    with pytest.raises(ValueError, match="pass dataset="):
        Ledger(two, notebook="nb", noise=FLOOR).measure("hard", 1.0)
    assert Ledger(two, notebook="nb", noise=FLOOR, dataset="svhn").measure("hard", 1.0).n == 3
    with pytest.raises(FileNotFoundError, match="no claims file"):
        collect_ledger(tmp_path)
    (tmp_path / "claims").mkdir()
    (tmp_path / "claims" / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json is not a claims file"):
        collect_ledger(tmp_path)


def test_committed_noise_floor_has_provenance():
    floor = NoiseFloor.load()
    assert floor.provenance["profile"] == "quick" and len(floor.provenance["seeds"]) >= 3
    for metric in ("tolerance_bank", "uniformity_bank", "linear_top1"):
        assert 0 < floor[metric] < 0.05


def test_compact_ledger_keeps_every_claim_and_its_details():
    from cl_analysis.study.claims import Claim, ledger_markdown

    claims = [Claim(id=f"nb:{i}", notebook="nb", statement=f"claim {i}", where="§5",
                    paper={"a": 1.0}, measured=({"label": "x", "metric": "m", "mean": 0.5,
                                                 "std": None, "n": 1, "values": [0.5],
                                                 "seeds": [0]},),
                    comparisons=(), difference=0.1 * i, noise=0.05, rule="r",
                    verdict=("holds", "within noise", "does not hold")[i], explanation=f"why {i}")
              for i in range(3)]
    text = ledger_markdown(claims, compact=True)
    table = [line for line in text.splitlines()
             if line.startswith("| ") and not line.startswith("| |") and "---" not in line]
    assert len(table) == 3 and [row[2] for row in table] == ["✓", "≈", "✗"]
    assert all(f"why {i}" in text for i in range(3)) and "3 claims: 1 ✓ hold" in text


def test_measure_reads_another_table_with_the_same_columns(three_seeds):
    """table= (one epoch of a history table) replaces the results for that measure only."""
    ledger = Ledger(three_seeds, notebook="07_weighting_lens", noise=FLOOR)
    epoch = three_seeds.copy()
    epoch["positive_probability"] = [0.1 * (i + 1) for i in range(len(epoch))]
    m = ledger.measure("hard", 0.07, "positive_probability", table=epoch)
    expected = epoch[(epoch["loss"] == "hard") & (epoch["temperature"] == 0.07)]
    assert m.values == tuple(expected.sort_values("seed")["positive_probability"])
    assert m.seeds == (0, 1, 2)
    with pytest.raises(ValueError, match="no column 'positive_probability'"):
        ledger.measure("hard", 0.07, "positive_probability")  # not in the results


def test_measure_refuses_a_table_with_several_rows_per_run(three_seeds):
    ledger = Ledger(three_seeds, notebook="07_weighting_lens", noise=FLOOR)
    history = pd.concat([three_seeds.assign(epoch=10), three_seeds.assign(epoch=20)])
    with pytest.raises(ValueError, match="pick one epoch"):
        ledger.measure("hard", 0.07, "tolerance_bank", table=history)


def test_measure_on_a_table_names_an_empty_table_and_a_non_scalar_column(three_seeds):
    ledger = Ledger(three_seeds, notebook="07_weighting_lens", noise=FLOOR)
    epoch = three_seeds.assign(hist=[[0.5, 0.5]] * len(three_seeds))
    with pytest.raises(ValueError, match="the table is empty"):
        ledger.measure("hard", 0.07, "hist", table=epoch.iloc[:0])
    with pytest.raises(ValueError, match="one number per run"):
        ledger.measure("hard", 0.07, "hist", table=epoch)
