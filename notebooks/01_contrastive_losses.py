# %% [markdown] tags=[]
# # 01 · The contrastive loss family
#
# Reproduces §3 of Wang & Liu, *Understanding the Behaviour of Contrastive Loss* (CVPR 2021):
# the contrastive loss (Eq. 1), the simple loss (Eq. 3), its τ → 0 limit (Eq. 6) and the hard
# contrastive loss (Eq. 9), next to SimCLR's NT-Xent and the metric-learning / hard-negative
# losses it is usually compared with. First the values on small hand-made inputs, checked
# against closed forms; then what each loss *does* to free embeddings on the circle and the
# sphere. All code lives in `cl_analysis`; this notebook sets parameters, calls the package,
# plots, and asserts the paper's claims.

# %% tags=["parameters", "remove-cell"]
SEED = 0
FAST = False
N_CLASSES = 4
PER_CLASS = 32
NOISE = 0.3
STEPS = 300
LR = 0.1
TAUS = [0.1, 0.2, 0.5, 1.0]
K_HARD = 8
SIMILARITY = "bank"

# %% tags=["remove-cell"]
# Test plumbing, hidden in the book: nbval cannot inject parameters, so CI sets CL_FAST=1 to
# select the fast mode (smaller toy problems, same claims).
import os

FAST = FAST or os.environ.get("CL_FAST") == "1"
if FAST:
    PER_CLASS, STEPS = 12, 100

# %% tags=[]
import math

import torch

from cl_analysis.study.provenance import provenance, provenance_text
from cl_analysis import losses, toy
from cl_analysis.plots import analysis as pa

print(provenance_text(provenance()))  # package version, commit, torch, date
torch.manual_seed(SEED)
print(f"{N_CLASSES} classes x {PER_CLASS} points, {STEPS} steps, τ in {TAUS}"
      + (" (fast mode)" if FAST else ""))

# %% [markdown] tags=[]
# ## 1. The losses on a hand-made similarity matrix
#
# Three anchors against five candidates; `positive[i]` is the column of anchor i's positive.
# With $s_{i,p}$ the positive and $M$ columns, the losses of the paper are
#
# $$\mathcal{L}(x_i) = \log\sum_{k} e^{s_{i,k}/\tau} - s_{i,p}/\tau \quad\text{(Eq. 1)},\qquad
# \mathcal{L}_{simple}(x_i) = -s_{i,p} + \lambda\sum_{j\neq p} s_{i,j}\quad\text{(Eq. 3)},$$
#
# $$\lim_{\tau\to0^+}\tau\mathcal{L}(x_i) = \max(s_{max}-s_{i,p}, 0)\quad\text{(Eq. 6)},$$
# and the hard loss (Eq. 9) keeps only the $k$ most similar negatives in the denominator.

# %% tags=["nbval-check-output"]
S = torch.tensor([[0.9, 0.2, -0.1, 0.4, -0.5],
                  [0.1, 0.8, 0.7, -0.3, 0.0],
                  [-0.2, 0.3, 0.6, 0.75, 0.1]], dtype=torch.float64)
pos = torch.tensor([0, 1, 2])
TAU = 0.2
values = {
    "info_nce": losses.info_nce(S, pos, TAU),
    "hard_info_nce k=2": losses.hard_info_nce(S, pos, TAU, k=2),
    "simple": losses.simple(S, pos),
    "hard_simple k=2": losses.hard_simple(S, pos, k=2),
    "tau_zero_limit": losses.tau_zero_limit(S, pos),
}
{name: round(v.item(), 4) for name, v in values.items()}

# %% [markdown] tags=[]
# **Claim (Eq. 1, 3, 6).** The package's losses equal the formulas written out by hand: the
# log-sum-exp form of Eq. 1, Eq. 3 with λ = 1/(M−1) (the mean over negatives), and the hinge of
# Eq. 6. The hard loss with all M−1 negatives is the ordinary loss. The bar chart after the check
# shows each loss's value on S; a black diamond marks the hand-written formula where there is one,
# and it sits at the end of its bar.

# %% tags=[]
s_pos = S.gather(1, pos[:, None]).squeeze(1)
negatives = S.scatter(1, pos[:, None], float("-inf"))  # positive masked out
by_hand = {
    "info_nce": (torch.logsumexp(S / TAU, 1) - s_pos / TAU).mean(),
    "simple": (-s_pos + (S.sum(1) - s_pos) / (S.shape[1] - 1)).mean(),
    "tau_zero_limit": (negatives.amax(1) - s_pos).clamp_min(0).mean(),
}
for name, expected in by_hand.items():
    torch.testing.assert_close(values[name], expected)
torch.testing.assert_close(losses.hard_info_nce(S, pos, TAU, k=4), values["info_nce"])

# %% tags=[]
fig = pa.plot_loss_values({k: v.item() for k, v in values.items()},
                          {k: v.item() for k, v in by_hand.items()},
                          title=f"hand-made S (3 x 5), τ = {TAU}")

# %% [markdown] tags=[]
# **Claim (Eq. 6).** τ·L tends to the hinge against the hardest negative as τ → 0, and so does
# τ times the hard loss with a single negative (k = 1): the τ → 0 loss only sees the nearest
# negative.

# %% tags=[]
for tau in (1e-2, 1e-3):
    gap_full = (tau * losses.info_nce(S, pos, tau) - values["tau_zero_limit"]).abs().item()
    gap_k1 = (tau * losses.hard_info_nce(S, pos, tau, k=1) - values["tau_zero_limit"]).abs().item()
    print(f"τ={tau:g}: |τL - limit| = {gap_full:.2e}, |τL_hard(k=1) - limit| = {gap_k1:.2e}")
    assert gap_full <= tau * math.log(S.shape[1]) and gap_k1 <= tau * math.log(2)

# %% [markdown] tags=[]
# **Claim (collapse).** When every similarity is equal (a collapsed embedding), a loss built on
# a softmax cannot tell the positive from the negatives: Eq. 1 equals log M for every τ, the hard
# loss log(k+1), and the linear losses are 0.

# %% tags=[]
collapsed = torch.ones(4, 6, dtype=torch.float64)
cpos = torch.zeros(4, dtype=torch.long)
M = collapsed.shape[1]
checks = {
    "info_nce τ=0.07": (losses.info_nce(collapsed, cpos, 0.07), math.log(M)),
    "info_nce τ=5": (losses.info_nce(collapsed, cpos, 5.0), math.log(M)),
    "hard_info_nce k=2": (losses.hard_info_nce(collapsed, cpos, 0.2, k=2), math.log(3)),
    "simple": (losses.simple(collapsed, cpos), 0.0),
    "hard_simple k=2": (losses.hard_simple(collapsed, cpos, k=2), 0.0),
    "tau_zero_limit": (losses.tau_zero_limit(collapsed, cpos), 0.0),
}
for name, (value, expected) in checks.items():
    assert math.isclose(value.item(), expected, abs_tol=1e-12), name

# %% [markdown] tags=[]
# ## 2. NT-Xent and the metric-learning family on embeddings
#
# SimCLR's NT-Xent is Eq. 1 on the in-batch similarity matrix of 2N views (each anchor's positive
# is its other view, the other 2N−2 samples are negatives). The debiased (Chuang et al. 2020) and
# HCL (Robinson et al. 2021) losses reweight those negatives, SupCon uses class labels, and the
# margin and triplet losses work on distances instead of a softmax.

# %% tags=["nbval-check-output"]
angle1 = torch.tensor([0.0, 1.6, 3.0], dtype=torch.float64)  # three instances on the circle
angle2 = angle1 + torch.tensor([0.5, -0.4, 0.7], dtype=torch.float64)  # their second views
z1 = torch.stack([angle1.cos(), angle1.sin()], 1)  # (N, 2), unit norm
z2 = torch.stack([angle2.cos(), angle2.sin()], 1)
labels = torch.tensor([0, 1, 1])
sim, spos = losses.simclr_similarity(z1, z2)  # (2N, 2N-1), positive = the other view
embedding_values = {
    "nt_xent": losses.nt_xent(z1, z2, TAU),
    "debiased τ+=0.1": losses.debiased_info_nce(z1, z2, TAU, tau_plus=0.1),
    "hcl β=1 τ+=0.1": losses.hcl_info_nce(z1, z2, TAU, beta=1.0, tau_plus=0.1),
    "supcon": losses.supcon(torch.stack([z1, z2], 1), labels, TAU),
    "margin_contrastive": losses.margin_contrastive(  # 3 positive pairs, 3 negative pairs
        torch.cat([z1, z1]), torch.cat([z2, z2.roll(1, 0)]), torch.tensor([1, 1, 1, 0, 0, 0])),
    "triplet": losses.triplet(z1, z2, z2.roll(1, 0), margin=1.0),
}
{name: round(v.item(), 4) for name, v in embedding_values.items()}

# %% [markdown] tags=[]
# **Claim.** NT-Xent is the contrastive loss (Eq. 1) on SimCLR's similarity matrix, and HCL /
# the debiased loss reduce to it without reweighting (β = τ⁺ = 0). The bar chart shows the six
# embedding losses on the three hand-made pairs of views; their scales differ (the softmax losses
# are log-probabilities, the margin and triplet losses squared or hinged distances), so the bars
# show each loss's value, not a ranking of the losses.

# %% tags=[]
nt = embedding_values["nt_xent"]
torch.testing.assert_close(nt, losses.info_nce(sim, spos, TAU))
torch.testing.assert_close(losses.debiased_info_nce(z1, z2, TAU, tau_plus=0.0), nt)
torch.testing.assert_close(losses.hcl_info_nce(z1, z2, TAU, beta=0.0, tau_plus=0.0), nt)
fig = pa.plot_loss_values({k: v.item() for k, v in embedding_values.items()},
                          title=f"hand-made 2-D views (N = 3), τ = {TAU}")

# %% [markdown] tags=[]
# **Claim (collapse, embeddings).** If all 2N embeddings coincide, every softmax loss equals
# log(2N − 1) (the positive is one of 2N − 1 equal candidates; the debiasing correction cancels),
# the margin contrastive loss is margin² on negative pairs and 0 on positive ones, and the
# triplet loss equals its margin.

# %% tags=[]
n = 5
same_z = torch.ones(n, 3, dtype=torch.float64)
same = torch.tensor([1, 0, 1, 0, 0])
collapsed_embeddings = {
    "nt_xent": (losses.nt_xent(same_z, same_z, 0.3), math.log(2 * n - 1)),
    "debiased": (losses.debiased_info_nce(same_z, same_z, 0.3, tau_plus=0.1), math.log(2 * n - 1)),
    "hcl": (losses.hcl_info_nce(same_z, same_z, 0.3, beta=1.0, tau_plus=0.1), math.log(2 * n - 1)),
    "supcon": (losses.supcon(torch.stack([same_z, same_z], 1), torch.arange(n), 0.3),
               math.log(2 * n - 1)),
    "margin_contrastive": (losses.margin_contrastive(same_z, same_z, same, margin=0.5),
                           0.5**2 * (same == 0).double().mean().item()),
    "triplet": (losses.triplet(same_z, same_z, same_z, margin=0.2), 0.2),
}
for name, (value, expected) in collapsed_embeddings.items():
    assert math.isclose(value.item(), expected, rel_tol=1e-9, abs_tol=1e-12), name

# %% [markdown] tags=[]
# ## 3. What each loss does to embeddings on the circle
#
# Free unit vectors in 2-D, four classes with two "augmented" views per instance, moved by
# projected gradient descent (`toy.optimise_embedding`; memory-bank similarity as in the paper,
# bank momentum 0.5). The gradients of Eq. 1 scale like 1/τ (Eq. 4), so τ-losses step with
# lr·τ: we compare the geometry each loss prefers, not step sizes.
#
# The first figure shows the first view of every instance before training ("initial") and the
# final embeddings of each loss, coloured by class, with the faint paths the points took. The
# second shows the training curves, each rescaled to the share of its total decrease still to
# come (1 at the first step, 0 at the last), so losses of different scales share one axis.

# %% tags=[]
circle = toy.make_toy_dataset(N_CLASSES, PER_CLASS, dim=2, noise=NOISE, seed=SEED)
specs = {f"info_nce τ={t}": ("info_nce", t, LR * t, None) for t in TAUS}  # name, τ, lr, kwargs
specs["simple"] = ("simple", None, LR, None)
specs["tau_zero_limit"] = ("tau_zero_limit", None, LR * TAUS[0], None)
specs["hard_simple"] = ("hard_simple", None, LR, {"k": K_HARD})
runs2 = {key: toy.optimise_embedding(name, t, STEPS, lr, circle, similarity=SIMILARITY,
                                     loss_kwargs=kw) for key, (name, t, lr, kw) in specs.items()}
m2 = toy.summarize_runs(runs2)
fig = pa.plot_circle_embeddings({"initial": circle.views[0], **runs2}, labels=circle.labels)

# %% tags=[]
fig = pa.plot_loss_curves(runs2)
assert all(run.losses[-1] < run.losses[0] for run in runs2.values()), "every loss must decrease"

# %% [markdown] tags=[]
# **Claim (§4, uniformity-tolerance dilemma).** The hardness-aware loss at small τ spreads the
# points more uniformly (higher −L_uniformity, Eq. 10) than the simple loss, which has no
# hardness-awareness and keeps same-class points closer (higher tolerance, Eq. 11). Tolerance
# grows with τ.
#
# The scatter places every run by uniformity (x, larger is more uniform) and tolerance (y, the
# mean cosine between same-class points): hardness-aware runs lie to the right, the simple loss
# higher up.

# %% tags=[]
low, high = f"info_nce τ={TAUS[0]}", f"info_nce τ={TAUS[-1]}"
fig = pa.plot_toy_metrics(m2)
assert m2[low]["uniformity"] > m2["simple"]["uniformity"] + 0.03
assert m2["simple"]["tolerance"] > m2[low]["tolerance"] + 0.05
assert m2[low]["uniformity"] > m2[high]["uniformity"]
tol = [m2[f"info_nce τ={t}"]["tolerance"] for t in TAUS]
assert all(a < b for a, b in zip(tol, tol[1:])), tol

# %% [markdown] tags=[]
# **Claim (Eq. 6, §3.2).** The τ → 0 limit "can not learn any useful information": its loss is 0
# as soon as every positive beats its single nearest negative, and from then on nothing moves.
# **Claim (§5.5).** Restricting the simple loss to the nearest negatives (HardSimple) restores
# the uniformity the simple loss lacks.

# %% tags=[]
print({name: round(m2[name]["displacement"], 3) for name in (low, "simple", "tau_zero_limit")})
assert runs2["tau_zero_limit"].losses[-1] < 1e-6
assert m2["tau_zero_limit"]["displacement"] < 0.1 * m2[low]["displacement"]
assert m2["hard_simple"]["uniformity"] > m2["simple"]["uniformity"] + 0.03

# %% [markdown] tags=[]
# ## 4. The same on the sphere
#
# In 3-D there is room to spread: small τ reaches at least the uniformity of i.i.d. uniform
# points on the sphere, $-\log\mathbb{E}[e^{-2\|u-v\|^2}] = 4 - \log(\sinh 4 / 4)$, while the
# simple loss stays below it. The figure shows the initial first views on the sphere and the final
# embeddings of Eq. 1 at the smallest τ, the simple loss and HardSimple, coloured by class.

# %% tags=[]
sphere = toy.make_toy_dataset(N_CLASSES, PER_CLASS, dim=3, noise=NOISE, seed=SEED)
runs3 = {key: toy.optimise_embedding(name, t, STEPS, lr, sphere, similarity=SIMILARITY,
                                     loss_kwargs=kw) for key, (name, t, lr, kw) in specs.items()}
m3 = toy.summarize_runs(runs3)
fig = pa.plot_sphere_embeddings({"initial": sphere.views[0], low: runs3[low],
                                 "simple": runs3["simple"], "hard_simple": runs3["hard_simple"]},
                                labels=sphere.labels)

# %% tags=[]
uniform_sphere = 4 - math.log(math.sinh(4) / 4)
print(f"uniform sphere {uniform_sphere:.3f}, " + ", ".join(
    f"{k}: {v['uniformity']:.3f}" for k, v in m3.items()))
assert m3[low]["uniformity"] > uniform_sphere > m3["simple"]["uniformity"]
assert m3["simple"]["tolerance"] > m3[low]["tolerance"] + 0.1
assert m3["hard_simple"]["uniformity"] > m3["simple"]["uniformity"] + 0.1

# %% [markdown] tags=[]
# ## 5. The metric-learning family on the sphere (in-batch)
#
# The same data, every loss on the two views in-batch. NT-Xent follows exactly the trajectory of
# Eq. 1 on SimCLR's similarity matrix. SupCon is supervised (it is told the classes), so it
# collapses each class: the extreme of tolerance. The scatter below adds the in-batch losses to
# the uniformity-tolerance plane, next to two memory-bank runs of §4 for reference.

# %% tags=[]
embedding_runs = {
    "nt_xent": ("nt_xent", TAUS[0], None),
    "debiased": ("debiased_info_nce", 0.5, {"tau_plus": 0.1}),
    "hcl": ("hcl_info_nce", 0.5, {"beta": 1.0, "tau_plus": 0.1}),
    "supcon": ("supcon", 0.5, None),
    "margin_contrastive": ("margin_contrastive", None, {"margin": 1.0}),
    "triplet": ("triplet", None, {"margin": 0.2}),
    "batch_hard_triplet": ("batch_hard_triplet", None, None),
}
runs_e = {k: toy.optimise_embedding(name, t, STEPS, LR * (t or 0.5), sphere, loss_kwargs=kw)
          for k, (name, t, kw) in embedding_runs.items()}
me = toy.summarize_runs(runs_e)
fig = pa.plot_toy_metrics({**me, "simple (bank)": m3["simple"], low + " (bank)": m3[low]})

# %% tags=[]
same_loss = toy.optimise_embedding("info_nce", TAUS[0], STEPS, LR * TAUS[0], sphere,
                                   similarity="batch")
torch.testing.assert_close(runs_e["nt_xent"].embeddings, same_loss.embeddings, atol=1e-4, rtol=0)
assert all(run.losses[-1] < run.losses[0] for run in runs_e.values())
assert me["supcon"]["tolerance"] > 0.95
assert me["supcon"]["tolerance"] > max(v["tolerance"] for k, v in me.items() if k != "supcon")
assert min(me[k]["uniformity"] for k in ("nt_xent", "debiased", "hcl")) > uniform_sphere

# %% [markdown] tags=[]
# The final embeddings of four of these losses on the sphere, coloured by class: NT-Xent and HCL
# spread the points over the whole sphere, SupCon gathers each class into a tight cluster (it is
# told the labels), and the triplet loss, which stops pushing a negative once the positive beats
# it by the margin, leaves same-class points closer together than NT-Xent and HCL do.

# %% tags=[]
fig = pa.plot_sphere_embeddings({k: runs_e[k] for k in ("nt_xent", "hcl", "supcon", "triplet")},
                                labels=sphere.labels)
