# %% [markdown] tags=[]
# # 04 · The uniformity–tolerance dilemma on CIFAR-10
#
# Reproduces §5.2–5.4 of Wang & Liu, *Understanding the Behaviour of Contrastive Loss*
# (CVPR 2021): **Figs 4–5** (uniformity and tolerance of the ordinary contrastive loss against
# τ), **Figs 6–7** (the same for the hard contrastive loss, Eq. 9) and the uniformity / tolerance
# rows of **Table 1**, from models pre-trained with the paper's InstDisc memory bank. Uniformity
# is $-\mathcal{L}_{uniformity}$ (Eq. 10, t = 2; larger is more uniform, at most ≈ 3.94 in
# 128-d), tolerance the class-conditional mean cosine (Eq. 11).
#
# Every metric is shown in two protocols: **bank** (the authors' own: augmented *training* images
# as queries against the whole memory bank, training labels; `uniformity_bank`,
# `tolerance_bank`) and **test** (clean L2-normalised projections of the test images;
# `uniformity`, `tolerance`). Each claim names the protocol it is judged on.
#
# **Committed outputs: a real quick-profile run on CIFAR-10 (JPEG export)** (a 4-block ConvNet on a
# stratified 5,000-image subset at 16×16; the settings and τ grid are printed below and by
# `cl-analysis profiles`). The **fast mode** (`FAST=True` or `CL_FAST=1`, as in CI / nbval) loads
# the `smoke` profile instead (200 images, 2 epochs: plumbing only, it shows nothing about the
# paper) on CIFAR-10 when `DATA_ROOT` / `CL_DATA_ROOT` is set, else on `data.synthetic_dataset`
# images; it checks only structural facts (one row per run, finite values, valid ranges) and that
# every claim gets a verdict. All code
# lives in `cl_analysis`; this notebook loads the runs (training them only if missing), plots, and
# asserts.

# %% tags=["parameters"]
RUNS_DIR = None  # sweep folder (sweep.json + runs); None: ../runs/quick (or the fast-mode sweep)
TRAIN_PROFILE = None  # e.g. "quick": train that profile's sweep into RUNS_DIR if it is missing
DATA_ROOT = None  # dataset folder, only used when training (TRAIN_PROFILE or the fast mode)

# %% tags=[]
import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cl_analysis.study import paper_results as pr
from IPython.display import Markdown, display
from myst_nb import glue

from cl_analysis.study.claims import VERDICTS, Measured
from cl_analysis.study.notebook import open_results
from cl_analysis.study.runs import load_sweep
from cl_analysis.plots import experiments as pe
from cl_analysis.plots import table1_side_by_side

# the sweep that ran, as recorded in RUNS_DIR/sweep.json; this notebook only loads it. CI's fast
# mode (CL_FAST=1; nbval cannot inject parameters) trains the smoke profile here instead.
FAST = os.environ.get("CL_FAST") == "1"
DATA_ROOT = DATA_ROOT or os.environ.get("CL_DATA_ROOT")
opened = open_results(RUNS_DIR, notebook="04_uniformity_tolerance", fast=FAST,
                      train_profile=TRAIN_PROFILE, data_root=DATA_ROOT)
sweep, raw, results, ledger = opened.sweep, opened.raw, opened.results, opened.ledger
PROFILE, DATASET, RUNS_DIR = sweep.spec.profile, sweep.config.dataset, sweep.runs_dir
names = sweep.names
FAST = FAST or PROFILE == "smoke"  # plumbing only: the paper's claims are not judged

# %% [markdown] tags=[]
# The runs: one row per loss × τ (the τ-free simple / hard-simple losses once). Structural
# checks, in every mode: one finished run per sweep entry, finite metrics, uniformity in
# [0, 4t] = [0, 8] and tolerance in [−1, 1] in both protocols.

# %% tags=[]
METRICS = ["uniformity_bank", "tolerance_bank", "uniformity", "tolerance"]
results[["run", "loss", "temperature", *METRICS]].round(4)

# %% tags=[]
assert sorted(raw["run"]) == sorted(names), "one row per run of the sweep"
values = results[METRICS].to_numpy(dtype=float)
assert np.isfinite(values).all(), results[METRICS]
assert (results[["uniformity_bank", "uniformity"]].to_numpy() >= 0).all()
assert (results[["uniformity_bank", "uniformity"]].to_numpy() <= 8).all()
assert (np.abs(results[["tolerance_bank", "tolerance"]].to_numpy()) <= 1 + 1e-6).all()
ordinary = results[results["loss"] == "info_nce"].set_index("temperature").sort_index()
hard = results[results["loss"] == "hard"].set_index("temperature").sort_index()
simple = results[results["loss"] == "simple"].iloc[0]
TAUS = list(ordinary.index)
t_lo, t_hi = TAUS[0], TAUS[-1]
assert list(hard.index) == TAUS and len(TAUS) >= 2
print(f"τ grid {TAUS}")

# %% [markdown] tags=[]
# ## Table 1, uniformity and tolerance rows (paper | this run)
#
# The paper's CIFAR-10 columns are τ ∈ {0.07, 0.3, 0.7, 1.0}; a τ missing from this run's grid
# is "–" (NaN). First the bank protocol (the one Table 1 used), then the test-set protocol.
# Absolute values are not comparable (a small ConvNet on 5,000 16×16 images vs
# ResNet-18 for 200 epochs on 50,000 32×32 images): compare the orderings.

# %% tags=[]
table_bank = table1_side_by_side(results, DATASET, protocol="bank")
table_bank.loc[["uniformity", "tolerance"]].round(3)

# %% tags=[]
table_test = table1_side_by_side(results, DATASET, protocol="test")
table_test.loc[["uniformity", "tolerance"]].xs("this run", level="source").round(3)

# %% [markdown] tags=[]
# ## Claim (a), Fig. 4: uniformity falls as τ grows (ordinary loss)
#
# Paper (Table 1, CIFAR-10): −L_uniformity = 3.86 / 3.60 / 3.17 / 2.96 at τ = 0.07 / 0.3 /
# 0.7 / 1.0; the authors' full sweep falls from 3.862 (τ = 0.07) to 2.964 (τ = 1.0). Small τ
# concentrates the penalty on the nearest negatives and pushes them away (hardness-awareness),
# which spreads the embedding. **Judged on the bank protocol** (the paper's): uniformity at
# the smallest τ exceeds that at the largest τ by more than 0.1. The test protocol is printed.

# %% tags=[]
paper_unif = {r["temperature"]: r["uniformity"] for r in
              pr.paper_rows("cifar10", "info_nce", "uniformity_tolerance")}
print(f"paper (cifar10): τ={t_lo}: {paper_unif.get(t_lo)}, τ={t_hi}: {paper_unif.get(t_hi)}")
fig = pe.plot_uniformity_tolerance(results, "info_nce", DATASET, protocol="bank",
                                   title="Figs 4-5, ordinary loss, bank protocol (paper dashed)")

# %% tags=[]
fig = pe.plot_uniformity_tolerance(results, "info_nce", DATASET, protocol="test",
                                   title="Figs 4-5, ordinary loss, test protocol (paper dashed)")

# %% tags=[]
# CLAIM (a): ordinary loss, uniformity falls along the τ grid [bank protocol]
for col in ("uniformity_bank", "uniformity"):
    print(f"{col:16s}", {t: round(v, 3) for t, v in ordinary[col].items()})
claim_a = ledger.increasing(
    "a", "uniformity falls as τ grows (ordinary loss)", "§5.2, Fig. 4, Table 1",
    [ledger.measure("info_nce", t, "uniformity_bank") for t in reversed(TAUS)],
    paper={f"τ={t}": paper_unif.get(t) for t in TAUS},
    explanation="small τ concentrates the penalty on the nearest negatives (Eq. 5) and spreads "
                "the embedding")
print(claim_a.summary())
glue("claim_a", Markdown(claim_a.summary()), display=False)

# %% [markdown] tags=[]
# ## Claim (b), Fig. 5: tolerance rises with τ (ordinary loss)
#
# Paper (Table 1, CIFAR-10): tolerance = 0.04 / 0.178 / 0.333 / 0.372 at τ = 0.07 / 0.3 / 0.7 /
# 1.0. A large τ penalises all negatives alike, so semantically similar samples (same class) may
# stay close. **Judged on the bank protocol**: tolerance strictly increases along this run's τ
# grid. The test protocol is printed (figures above, right panels).

# %% tags=[]
# CLAIM (b): ordinary loss, tolerance increases with τ along the grid [bank protocol]
paper_tol = {r["temperature"]: r["tolerance"] for r in
             pr.paper_rows("cifar10", "info_nce", "uniformity_tolerance")}
print(f"paper (cifar10): τ={t_lo}: {paper_tol.get(t_lo)}, τ={t_hi}: {paper_tol.get(t_hi)}")
for col in ("tolerance_bank", "tolerance"):
    print(f"{col:16s}", {t: round(v, 3) for t, v in ordinary[col].items()})
claim_b = ledger.increasing(
    "b", "tolerance rises with τ (ordinary loss)", "§5.2, Fig. 5, Table 1",
    [ledger.measure("info_nce", t, "tolerance_bank") for t in TAUS],
    paper={f"τ={t}": paper_tol.get(t) for t in TAUS},
    explanation="a large τ penalises all negatives alike, so same-class samples may stay close")
print(claim_b.summary())
glue("claim_b", Markdown(claim_b.summary()), display=False)

# %% [markdown] tags=[]
# ## Claim (c): the simple loss (Eq. 3) has the lowest uniformity and the highest tolerance
#
# Paper (Table 1, CIFAR-10): the simple loss has uniformity 1.68 (every other column ≥ 2.96)
# and tolerance 0.61 (every other column ≤ 0.372). Without hardness-awareness nothing pushes
# the nearest negatives away, so the embedding stays clumped. **Judged on the bank protocol**
# over every run of the sweep (ordinary, hard and hard-simple at every τ).

# %% tags=[]
fig = pe.plot_ordinary_vs_hard(results, DATASET, protocol="bank",
                               title="Figs 4-7 overlaid, bank protocol (paper dashed)")

# %% tags=[]
fig = pe.plot_ordinary_vs_hard(results, DATASET, protocol="test",
                               title="Figs 4-7 overlaid, test-set protocol (paper dashed)")

# %% tags=[]
# CLAIM (c): simple has the lowest uniformity and the highest tolerance of all runs [bank]
others = results[results["loss"] != "simple"]
for col in METRICS:
    print(f"{col:16s} simple {simple[col]:.3f}   others {others[col].min():.3f} .. "
          f"{others[col].max():.3f}")
configs = [(r.loss, None if r.loss in ("simple", "hard_simple") else r.temperature)
           for r in others.itertuples()]
claim_c1 = ledger.compare(
    "c-uniformity", "the simple loss has the lowest uniformity of all runs", "§5.2, Table 1",
    larger=[ledger.measure(lo, t, "uniformity_bank") for lo, t in configs],
    smaller=ledger.measure("simple", None, "uniformity_bank"),
    paper="simple 1.68; every other column ≥ 2.96",
    explanation="without hardness-awareness nothing pushes the nearest negatives away")
claim_c2 = ledger.compare(
    "c-tolerance", "the simple loss has the highest tolerance of all runs", "§5.2, Table 1",
    larger=ledger.measure("simple", None, "tolerance_bank"),
    smaller=[ledger.measure(lo, t, "tolerance_bank") for lo, t in configs],
    paper="simple 0.61; every other column ≤ 0.372")
print(claim_c1.summary(), claim_c2.summary(), sep="\n")
glue("claim_c", Markdown(f"{claim_c1.summary()}; {claim_c2.summary()}"), display=False)

# %% [markdown] tags=[]
# This run, judged against the seed-to-seed noise: (a) {glue:md}`claim_a`; (b)
# {glue:md}`claim_b`; (c) {glue:md}`claim_c`. At quick scale the values are compressed against
# the paper's (its tolerance reaches 0.372): a small model learns less class structure.
#
# ## Claim (d), Fig. 6: the hard loss's uniformity hardly depends on τ
#
# Paper (Table 1, CIFAR-10): the hard loss (Eq. 9, the 4095 nearest negatives of 50,000,
# i.e. 8.19 % of the bank, as in this run) keeps uniformity at 3.88 / 3.89 / 3.87 / 3.86 over
# τ = 0.07 … 1.0 (range 0.03), where the ordinary loss spans 3.86 … 2.96 (range 0.90): the
# explicit truncation guarantees uniformity, so τ is free to buy tolerance. **Judged on the
# bank protocol**: the range (max − min over this run's τ grid) of the hard loss's uniformity
# is smaller than the ordinary loss's.

# %% tags=[]
# CLAIM (d): range over τ of uniformity, hard < ordinary [bank protocol]
spread = pd.DataFrame({name: {col: frame[col].max() - frame[col].min() for col in METRICS[::2]}
                       for name, frame in (("ordinary", ordinary), ("hard", hard))})
print("range of uniformity over τ", spread.round(3).to_dict())
print("hard, uniformity_bank", {t: round(v, 3) for t, v in hard["uniformity_bank"].items()})
rng = {name: Measured.combine(f"{name} range over τ", lambda *v: max(v) - min(v),
                              *[ledger.measure(loss, t, "uniformity_bank") for t in TAUS],
                              floor_scale=2 ** 0.5)  # a difference of two runs
       for name, loss in (("ordinary", "info_nce"), ("hard", "hard"))}
claim_d = ledger.compare(
    "d", "the hard loss's uniformity hardly depends on τ (smaller range than ordinary)",
    "§5.3, Fig. 6, Table 1", larger=rng["ordinary"], smaller=rng["hard"],
    paper={"hard range": 0.03, "ordinary range": 0.90},
    explanation="Eq. 9's explicit truncation guarantees uniformity, so τ is free to buy tolerance")
print(claim_d.summary())
glue("claim_d", Markdown(claim_d.summary()), display=False)
glue("hard_uniformity", " / ".join(f"{v:.2f}" for v in hard["uniformity_bank"]), display=False)

# %% [markdown] tags=[]
# ## Claim (e), Fig. 7: the hard loss is less tolerant than the ordinary loss at the same τ
#
# Paper (Table 1, CIFAR-10): hard vs ordinary tolerance 0.034 vs 0.04 (τ = 0.07), 0.0267 vs
# 0.178 (0.3), 0.030 vs 0.333 (0.7), 0.030 vs 0.372 (1.0): the gap is small at τ = 0.07, where
# the ordinary loss is already hardness-aware, and large at larger τ. **Judged on the bank
# protocol** at every τ of the grid.
#
# This run: (d) {glue:md}`claim_d` — the hard loss's bank uniformity along the grid is
# {glue:text}`hard_uniformity`, where the paper's stays flat. (e) is judged at every τ below. At
# the smallest τ the two losses are expected to nearly coincide: the softmax already concentrates
# the penalty on a few hundred negatives (the effective negatives of notebook 06), well inside the
# 8 % of the bank the hard loss keeps; the paper's 0.034 vs 0.04 is as close.

# %% tags=[]
# CLAIM (e): tolerance, hard < ordinary at every τ [bank protocol]
both = pd.DataFrame({"ordinary bank": ordinary["tolerance_bank"],
                     "hard bank": hard["tolerance_bank"],
                     "ordinary test": ordinary["tolerance"], "hard test": hard["tolerance"]})
print(both.round(4))
paper_hard = {r["temperature"]: r["tolerance"]  # Table 1 (no fuller sweep for the hard loss)
              for r in pr.paper_rows("cifar10", "hard", "table1")}
for tau in TAUS:
    claim = ledger.compare(
        f"e@{tau}", "the hard loss is less tolerant than the ordinary loss", "§5.3, Fig. 7, Table 1",
        larger=ledger.measure("info_nce", tau, "tolerance_bank"),
        smaller=ledger.measure("hard", tau, "tolerance_bank"),
        paper={"ordinary": paper_tol.get(tau), "hard": paper_hard.get(tau)},
        if_not="at small τ the ordinary loss already concentrates its penalty on the hardest "
               "negatives (Eq. 5), so Eq. 9 keeps almost all of the softmax mass and the two "
               "losses nearly coincide")
    print(claim.summary())

# %% [markdown] tags=[]
# ## Over training: uniformity and tolerance per epoch (low-τ runs)
#
# `metrics.jsonl` logs, every `knn_every` epochs (10 in the quick profile, 1 in smoke), the
# bank-protocol uniformity and tolerance of that epoch's first 1,000 augmented training queries,
# and, on the same epochs, the mean positive similarity and the penalty entropy (Eq. 5) of the
# training batches (notebook 07 follows the anchor weights on them). An *early collapse* would show as low uniformity / high tolerance / positive
# similarity near 1 in the first epochs that later recovers (`docs/quick_profile.md` records
# why the quick profile centres the features before the head: with the paper's plain linear head
# low-τ runs started collapsed). Shown for the ordinary and hard losses at the smallest τ, with
# the largest τ for contrast.

# %% tags=[]
curve_runs = {f"{loss} τ={t}": results.set_index(["loss", "temperature"]).loc[(loss, t), "run"]
              for loss in ("info_nce", "hard") for t in (t_lo, t_hi)}
histories = {label: pd.read_json(RUNS_DIR / run / "metrics.jsonl", lines=True)
             for label, run in curve_runs.items()}
fig = pe.plot_training_curves(histories, ("uniformity", "tolerance"),
                              title="bank-protocol uniformity and tolerance per monitored epoch")

# %% tags=[]
fig = pe.plot_training_curves(histories, ("positive_similarity", "penalty_entropy"),
                              title="training batches: positive similarity and penalty entropy")

# %% tags=[]
summary = pd.DataFrame({label: {
    "epochs": len(h), "first monitored uniformity": h["uniformity"].dropna().iloc[0],
    "min uniformity": h["uniformity"].min(), "at epoch": h.loc[h["uniformity"].idxmin(), "epoch"],
    "final uniformity": h["uniformity"].dropna().iloc[-1],
    "max tolerance": h["tolerance"].max(), "final tolerance": h["tolerance"].dropna().iloc[-1],
    "max positive similarity": h["positive_similarity"].max()} for label, h in histories.items()})
summary.round(3)

# %% [markdown] tags=[]
# In the quick profile the smallest-τ runs pass through a crowded phase (low uniformity, high
# tolerance in the first tens of epochs) before they spread out and end the most uniform of the
# ordinary runs, so the orderings of claims (a) and (b) hold only late in training, while the
# largest-τ runs are flat early (docs/quick_profile.md has the probes behind this).

# %% tags=[]
for label, h in histories.items():
    assert list(h["epoch"]) == list(range(1, len(h) + 1)), label
    monitored = h[["uniformity", "tolerance"]].dropna().to_numpy()
    assert len(monitored) >= 1 and np.isfinite(monitored).all(), label
    entropy = h["penalty_entropy"].dropna()  # measured on monitored epochs (knn_every)
    assert np.isfinite(h["loss"]).all() and len(entropy) and np.isfinite(entropy).all(), label
    assert (np.abs(monitored[:, 1]) <= 1 + 1e-6).all(), label

# %% [markdown] tags=[]
# ## Why the hard loss's tolerance does not rise with τ here (a targeted run)
#
# The paper's Fig. 7 has the hard loss's tolerance below the ordinary loss's but still rising
# with τ; at quick scale it stays at its floor from τ = 0.3 on (table above). Hypothesis: Eq. 9
# keeps K = 8.19 % of the bank, 410 of 5,000 entries here, fewer than one class (500 images). A
# trained embedding puts same-class images nearest, so the K negatives are mostly same-class
# neighbours whatever τ is, and pushing all of them away pins the tolerance; τ only reweights
# inside that set. If so, a larger K should let τ buy tolerance again. `scripts/fidelity.sh`
# trains the hard loss at τ = 0.3 and 1.0 with **K = half the bank** (`--hard-fraction 0.5`),
# one seed, into `runs/fidelity`; loaded here when present.

# %% tags=[]
FIDELITY_DIR = RUNS_DIR.parent / "fidelity"
if not FAST and (FIDELITY_DIR / "sweep.json").is_file():
    fid = load_sweep(FIDELITY_DIR).results.set_index("temperature")
    k_table = pd.DataFrame({
        "hard, K = 8.19 % (tolerance_bank)": hard["tolerance_bank"],
        "hard, K = 50 % (tolerance_bank)": fid["tolerance_bank"],
        "ordinary, K = all (tolerance_bank)": ordinary["tolerance_bank"]}).loc[fid.index]
    rise = {name: col.iloc[-1] - col.iloc[0] for name, col in k_table.items()}
    glue("k_rise_small", f"{rise['hard, K = 8.19 % (tolerance_bank)']:+.3f}", display=False)
    glue("k_rise_half", f"{rise['hard, K = 50 % (tolerance_bank)']:+.3f}", display=False)
    print("rise of tolerance from the smallest to the largest τ:",
          {k: round(v, 4) for k, v in rise.items()})
    display(k_table.round(4))
else:
    print(f"the targeted runs are not in {FIDELITY_DIR.name}/ (scripts/fidelity.sh DATA_ROOT)")
    for key in ("k_rise_small", "k_rise_half"):
        glue(key, "(not measured in this run)", display=False)

# %% [markdown] tags=[]
# The table compares the tolerance of the hard loss with the paper's K and with half the bank,
# next to the ordinary loss (all negatives), at the τ of the targeted runs: with K = 8.19 %
# tolerance moves by {glue:text}`k_rise_small` between them, with K = 50 % by
# {glue:text}`k_rise_half`. docs/quick_profile.md records the outcome.

# %% [markdown] tags=[]
# ## This notebook's claims
#
# Every claim above, with the paper's value, this run's value (± the seed-to-seed spread when
# several seeds ran) and its verdict: ✓ holds, ≈ within noise, ✗ does not hold at this scale
# (see `cl_analysis.study.claims` for the rule). `make reproduce` collects the ledgers of all
# notebooks into `reports/ledger.md` and the book.

# %% tags=[]
Markdown(ledger.markdown())

# %% tags=[]
assert ledger.claims and all(c.verdict in VERDICTS for c in ledger.claims)
assert ledger.path.is_file()  # RUNS_DIR/claims/04_uniformity_tolerance.json
