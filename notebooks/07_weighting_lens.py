# %% [markdown] tags=[]
# # 07 · The weighting lens: over negatives (r_i) and over anchors (w_i)
#
# Wang & Liu's relative penalty r_i (Eq. 5) distributes one anchor's push over its negatives.
# The methods that followed re-weight the same InfoNCE gradient *across anchors* with a factor
# w_i (`cl_analysis.weighting`): FlatNCE and the decoupled loss 1/(1 − P_ii), MACL the same at an
# alignment-driven τ, Dual Temperature (1 − P_ii^{mτ})/(1 − P_ii^{τ}). This notebook shows both
# distributions against τ on a toy embedding, and checks the identity
# "gradient = InfoNCE gradient × w_i" with autograd. All code lives in the package.

# %% tags=["parameters", "remove-cell"]
SEED = 0
FAST = False
N_CLASSES = 8
PER_CLASS = 64
DIM = 32
NOISE = 0.3
TAUS = [0.05, 0.07, 0.1, 0.2, 0.3, 0.5, 1.0]

# %% tags=["remove-cell"]
# nbval cannot inject parameters: CI sets CL_FAST=1 for the fast mode (fewer points).
import os

FAST = FAST or os.environ.get("CL_FAST") == "1"
if FAST:
    PER_CLASS = 16

# %% tags=[]
import matplotlib.pyplot as plt
import torch

from cl_analysis import gradients, losses, toy, weighting

torch.manual_seed(SEED)
data = toy.make_toy_dataset(N_CLASSES, PER_CLASS, dim=DIM, noise=NOISE, seed=SEED)
S = losses.cosine_similarity(data.views[0], data.views[1]).double()  # (N, N) float64
pos = torch.arange(S.shape[0])  # the other view of the same point is the positive
print(f"similarity matrix {tuple(S.shape)}, mean positive {S.diag().mean():.2f}"
      + (" (fast mode)" if FAST else ""))

# %% [markdown] tags=[]
# ## 1. Over negatives: r_i flattens as τ grows
#
# The entropy of r_i (nats) counts the negatives that share an anchor's push: few at small τ
# (hardness-aware), all of them at large τ (Eq. 7, the simple loss).
#
# **Claim.** The mean entropy of r_i increases with τ.

# %% tags=[]
entropy = [float(gradients.penalty_entropy(S, pos, t).mean()) for t in TAUS]
fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
for t in (TAUS[0], TAUS[len(TAUS) // 2], TAUS[-1]):
    r = gradients.gradient_ratio(S, pos, t).sort(1, descending=True).values.mean(0)
    axes[0].plot(r[:40].numpy(), marker=".", label=f"τ = {t:g}")
axes[0].set(xlabel="negative rank", ylabel="mean r_i", title="over negatives: r_i (Eq. 5)")
axes[0].legend()
axes[1].plot(TAUS, entropy, marker="o")
axes[1].set(xscale="log", xlabel="τ", ylabel="entropy of r_i (nats)", title="spread of the push")
plt.show()
assert all(a < b for a, b in zip(entropy, entropy[1:])), entropy
print("Claim holds: entropy of r_i", [f"{e:.2f}" for e in entropy])

# %% [markdown] tags=[]
# ## 2. Over anchors: w_i against τ
#
# InfoNCE gives every anchor weight 1. FlatNCE / the decoupled loss give 1/(1 − P_ii): an anchor
# whose positive already dominates (P_ii → 1) keeps a full-size gradient instead of a vanishing
# one. The effect is strongest at small τ, where P_ii is close to 0 or 1.
#
# **Claim.** The FlatNCE weights are >= 1, and their spread across anchors (std of log w_i)
# shrinks as τ grows.

# %% tags=[]
methods = ("flat_nce", "macl", "dual_temperature")
spread = {m: [] for m in methods}
for t in TAUS:
    for m in methods:
        spread[m].append(float(weighting.anchor_weights(S, pos, t, m, log=True).std()))
fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
for m in methods:
    axes[0].plot(TAUS, spread[m], marker="o", label=m)
axes[0].set(xscale="log", xlabel="τ", ylabel="std over anchors of log w_i",
            title="over anchors: w_i")
axes[0].legend()
for t in (TAUS[0], TAUS[-1]):
    w = weighting.anchor_weights(S, pos, t, "flat_nce", log=True)
    axes[1].hist(w.numpy(), bins=40, alpha=0.6, label=f"τ = {t:g}")
axes[1].set(xlabel="log w_i (FlatNCE)", ylabel="anchors", title="distribution of log w_i")
axes[1].legend()
plt.show()
for t in TAUS:
    assert (weighting.anchor_weights(S, pos, t, "flat_nce", log=True) >= -1e-12).all()
assert spread["flat_nce"][0] > spread["flat_nce"][-1], spread["flat_nce"]
print("Claim holds: std of log w_i (FlatNCE)", [f"{s:.2f}" for s in spread["flat_nce"]])

# %% [markdown] tags=[]
# ## 3. The identity, by autograd
#
# **Claim.** For every method, dL_i/ds_ij = w_i · dL_i^InfoNCE/ds_ij (MACL: both at τ_A).

# %% tags=[]
def row_grads(loss_fn, tau):
    s = S.clone().requires_grad_(True)
    loss_fn(s, pos, tau, reduction="sum").backward()
    return s.grad


TAU = 0.2
base = row_grads(losses.info_nce, TAU)
tau_a = float(weighting.macl_temperature(S, pos, TAU))
for name, fn, b in (("flat_nce", weighting.flat_nce, base),
                    ("decoupled", weighting.decoupled_info_nce, base),
                    ("dual_temperature", weighting.dual_temperature_info_nce, base),
                    ("macl", weighting.macl, row_grads(losses.info_nce, tau_a))):
    w = weighting.anchor_weights(S, pos, TAU, "decoupled" if name == "decoupled" else name)
    assert torch.allclose(row_grads(fn, TAU), w[:, None] * b, rtol=1e-6, atol=1e-12), name
print("Claim holds: each gradient is InfoNCE's times w_i (float64, autograd)")

# %% [markdown] tags=[]
# **Reading.** r_i decides *which negatives* an anchor pushes (τ sets the hardness); w_i decides
# *which anchors* push at all. Small τ buys uniformity through hard negatives, but InfoNCE then
# stops pushing the anchors whose positive already wins (P_ii → 1), which is where tolerance is
# lost. FlatNCE/decoupled and MACL keep those anchors' gradients (w_i = 1/(1 − P_ii)), MACL
# raising τ as the batch aligns; Dual Temperature takes the anchor weight from a larger τ. The
# same run of this notebook on a trained model's similarities (over training) is left to the
# quick-run study (issue 11 §1).
