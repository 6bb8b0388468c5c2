# %% [markdown] tags=[]
# # 08 · Analyse any encoder: the paper's lens without labels
#
# The paper judges an embedding by uniformity and tolerance (which needs labels) and by linear
# accuracy (which needs labels and a probe). A researcher with their *own* model often has
# neither at hand during training. This notebook does two things with the package only:
#
# 1. runs `cl-analysis analyze` (`cl_analysis.study.analyze.analyze`) on a trained run and on a
#    features file (what a user would export from any encoder), and on collapsed features;
# 2. asks, over every run of the sweep, **which label-free diagnostic best predicts the runs'
#    accuracy** (Spearman rank correlation across runs): RankMe (Garrido et al. 2023), α-ReQ
#    (Agrawal et al. 2022), Wasserstein uniformity (Fang et al. 2024), feature std, the mean
#    negative similarity, and the paper's own label-free metric, uniformity (Eq. 10).
#
# Committed outputs: the quick-profile sweep of CIFAR-10 (JPEG export); CI's fast mode uses the
# smoke profile (plumbing only).

# %% tags=["parameters", "remove-cell"]
RUNS_DIR = None  # sweep folder (sweep.json + runs); None: ../runs/quick (or the fast-mode sweep)
TRAIN_PROFILE = None  # e.g. "quick": train that profile's sweep into RUNS_DIR if it is missing
DATA_ROOT = None  # dataset folder, only used when training (TRAIN_PROFILE or the fast mode)

# %% tags=["remove-cell"]
# nbval cannot inject parameters: CI sets CL_FAST=1 (the smoke sweep, trained here)
import os

FAST = os.environ.get("CL_FAST") == "1"
DATA_ROOT = DATA_ROOT or os.environ.get("CL_DATA_ROOT")

# %% tags=[]
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown
from scipy.stats import spearmanr

from cl_analysis import metrics
from cl_analysis.study.analyze import analyze
from cl_analysis.study.notebook import open_results

opened = open_results(RUNS_DIR, fast=FAST, train_profile=TRAIN_PROFILE, data_root=DATA_ROOT)
sweep = opened.sweep
RUNS_DIR = sweep.runs_dir
OUT = Path(tempfile.mkdtemp(prefix="analyze-"))  # reports go to a scratch folder

# %% [markdown] tags=[]
# ## 1. One trained run
#
# `analyze(out, run=...)` embeds a seeded, stratified subset of the test images (or, when the
# run's data folder is not there, uses the stored test embeddings), and writes `report.html` and
# `report.json`. The same from the command line: `cl-analysis analyze --run RUN --out R`.

# %% tags=[]
ordinary = sweep.results[sweep.results["loss"] == "info_nce"].sort_values("temperature")
name = ordinary["run"].iloc[0]
report = analyze(OUT / "run", run=str(RUNS_DIR / name), max_images=500 if FAST else 2000,
                 tsne_points=200 if FAST else 1000)
keys = ["n", "dim", "collapsed", "knn_top1", "knn_top5", "uniformity", "wasserstein_uniformity",
        "tolerance", "alignment", "rankme"]
pd.Series({k: report.get(k) for k in keys}, name=name).to_frame()

# %% [markdown] tags=[]
# The table lists what the report measured on this run: kNN top-1/top-5 (a seeded split of the
# embedded images), the paper's uniformity and tolerance, alignment of two augmented views, and
# RankMe, the effective rank of the embedding.

# %% tags=[]
assert (OUT / "run" / "report.html").is_file() and (OUT / "run" / "report.json").is_file()
assert not report["collapsed"] and 0 <= report["knn_top1"] <= report["knn_top5"] <= 1

# %% [markdown] tags=[]
# ## 2. A features file, as exported from any encoder
#
# Any (N, D) array with (N,) labels works: `.npy`, `.npz` or `.pt`. Here the run's stored test
# projections are exported and read back, as a user would from their own model. Then the same
# features collapsed onto one direction plus a little noise: the report says "collapsed".

# %% tags=[]
z, labels = sweep.run(name).test_embeddings(n=2000, seed=0)
np.save(OUT / "z.npy", z.numpy())
np.save(OUT / "y.npy", labels.numpy())
from_file = analyze(OUT / "features", features=str(OUT / "z.npy"), labels=str(OUT / "y.npy"),
                    tsne_points=200)
g = torch.Generator().manual_seed(0)
collapsed = torch.nn.functional.normalize(torch.ones_like(z) + 1e-3 * torch.randn(
    z.shape, generator=g), dim=1)
np.save(OUT / "collapsed.npy", collapsed.numpy())
bad = analyze(OUT / "collapsed", features=str(OUT / "collapsed.npy"),
              labels=str(OUT / "y.npy"), tsne_points=200)
pd.DataFrame({"exported features": {k: from_file.get(k) for k in keys},
              "collapsed": {k: bad.get(k) for k in keys}})

# %% [markdown] tags=[]
# The two columns: the exported features reproduce the run's own numbers; the collapsed ones
# have RankMe near 1, uniformity near 0, W2 uniformity near its maximum √2, and are flagged.

# %% tags=[]
assert from_file["n"] == len(labels) and not from_file["collapsed"]
assert bad["collapsed"] and bad["rankme"] < 2 and "collapsed" in (
    OUT / "collapsed" / "report.html").read_text().lower()

# %% [markdown] tags=[]
# ## 3. Which label-free diagnostic predicts accuracy?
#
# For every run of the sweep (every loss and τ), the diagnostics are computed on its stored
# test projections (2,000 seeded rows), and ranked against its linear and kNN accuracy. A
# diagnostic that tracks accuracy across runs could choose τ without labels. With a handful
# of runs the rank correlations are coarse: read them as a ranking, not a test.

# %% tags=[]
rows = []
for r in opened.results.itertuples():
    zr, _ = sweep.run(r.run).test_embeddings(n=2000, seed=0)  # stored in float16
    zr = torch.nn.functional.normalize(zr.double(), dim=1)
    neg = metrics.negative_similarity_stats((zr @ zr.T).clamp(-1, 1), torch.arange(len(zr)))
    rows.append({"run": r.run, "loss": r.loss, "temperature": r.temperature,
                 "linear_top1": r.linear_top1, "knn_top1": r.knn_top1,
                 "rankme": float(metrics.rankme(zr)), "alpha_req": metrics.alpha_req(zr).alpha,
                 "w2_uniformity": float(metrics.wasserstein_uniformity(zr)),
                 "feature_std": float(metrics.feature_std(zr)),
                 "neg_similarity_mean": float(neg["mean"]),
                 "uniformity": float(metrics.uniformity(zr))})
diag = pd.DataFrame(rows)
DIAGNOSTICS = ["rankme", "alpha_req", "w2_uniformity", "feature_std", "neg_similarity_mean",
               "uniformity"]
corr = pd.DataFrame({acc: {d: spearmanr(diag[d], diag[acc]).statistic for d in DIAGNOSTICS}
                     for acc in ("linear_top1", "knn_top1")})
diag.round(4)

# %% tags=[]
corr.round(3)

# %% [markdown] tags=[]
# The first table lists each run's diagnostics beside its accuracies; the second the Spearman
# rank correlation of each diagnostic with each accuracy across the runs (+1: ranks runs exactly
# as the accuracy does; −1: exactly reversed, which predicts just as well once the sign is known).

# %% tags=[]
best = corr["knn_top1"].abs().idxmax()
best_linear = corr["linear_top1"].abs().idxmax()
Markdown(f"**This sweep** ({len(diag)} runs): the diagnostic that best ranks runs by kNN "
         f"accuracy is **{best}** (Spearman {corr.loc[best, 'knn_top1']:+.2f}); by linear "
         f"accuracy **{best_linear}** ({corr.loc[best_linear, 'linear_top1']:+.2f}).")

# %% tags=[]
assert len(diag) == len(opened.results) and np.isfinite(
    diag[DIAGNOSTICS].to_numpy(dtype=float)).all()
assert corr.abs().le(1 + 1e-9).all().all()
print(json.dumps({"best_for_knn": best, "best_for_linear": best_linear}))
