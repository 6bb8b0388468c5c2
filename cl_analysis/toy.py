"""Small simulations behind the analysis notebooks: toy embeddings, sampled similarities, τ sweeps.

Nothing here trains a network. ``make_toy_dataset`` draws class-structured points on the circle
(``dim=2``) or sphere (``dim=3``) with two augmented views per instance; ``optimise_embedding``
moves *free* unit-norm embeddings by projected gradient descent on one of the package's losses,
so the pure effect of a loss (uniformity vs tolerance, paper §4-5) shows in a few hundred steps.
``sample_similarities`` draws Fig. 3's similarity rows, and ``penalty_sweep`` / ``limit_gaps``
tabulate the temperature behaviour of Eq. 5-8 with :mod:`cl_analysis.gradients` and
:mod:`cl_analysis.losses`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from cl_analysis import gradients, losses, metrics
from cl_analysis._checks import check_choice, check_temperature

__all__ = [
    "ToyDataset",
    "ToyRun",
    "SIMILARITY_LOSSES",
    "EMBEDDING_LOSSES",
    "TOY_LOSSES",
    "make_toy_dataset",
    "optimise_embedding",
    "summarize_runs",
    "sample_similarities",
    "penalty_sweep",
    "limit_gaps",
]

# Losses on the paper's (A, M) similarity matrix; ``None``: the loss takes no temperature.
SIMILARITY_LOSSES = {
    "info_nce": True, "hard_info_nce": True, "simple": False, "hard_simple": False,
    "tau_zero_limit": False,
}
# Losses on the embeddings of the two views (in-batch, SimCLR style).
EMBEDDING_LOSSES = {
    "nt_xent": True, "debiased_info_nce": True, "hcl_info_nce": True, "supcon": True,
    "margin_contrastive": False, "triplet": False, "batch_hard_triplet": False,
    "semi_hard_triplet": False,
}
TOY_LOSSES = (*SIMILARITY_LOSSES, *EMBEDDING_LOSSES)  # names accepted by optimise_embedding
_SIMILARITIES = ("batch", "bank")


@dataclass
class ToyDataset:
    """Class-structured unit vectors with two augmented views per instance.

    Attributes:
        centers: ``(C, D)`` unit class centres.
        points: ``(N, D)`` unit instance points, ``N = C * per_class``, class-major order.
        views: ``(2, N, D)`` unit augmented views of every instance.
        labels: ``(N,)`` int64 class labels.
    """

    centers: Tensor
    points: Tensor
    views: Tensor
    labels: Tensor


@dataclass
class ToyRun:
    """Result of :func:`optimise_embedding`.

    Attributes:
        loss_name: the loss optimised.
        temperature: its τ (``None`` for τ-free losses).
        losses: ``(steps,)`` loss value before each step.
        steps: ``(T,)`` step index of each snapshot (0 = initial state, last = ``steps``).
        trajectory: ``(T, N, D)`` embeddings of view 1 (bank mode: the free embeddings).
        embeddings: ``(N, D)`` final embeddings of view 1, unit norm.
        views: ``(2, N, D)`` final embeddings of both views (bank mode: embeddings and bank).
        labels: ``(N,)`` class labels of the instances.
    """

    loss_name: str
    temperature: float | None
    losses: Tensor
    steps: Tensor
    trajectory: Tensor
    embeddings: Tensor
    views: Tensor
    labels: Tensor


def _spread_centres(n_classes: int, dim: int, gen: torch.Generator, tries: int = 64) -> Tensor:
    """Class centres ``(C, D)``: even angles on the circle, else the best of ``tries`` draws."""
    if dim == 2:
        offset = torch.rand(1, generator=gen)                              # random rotation
        theta = 2 * math.pi * (torch.arange(n_classes) + offset) / n_classes
        return torch.stack([theta.cos(), theta.sin()], dim=1)            # (C, 2)
    best, best_gap = None, -math.inf
    for _ in range(tries):  # keep the draw whose two closest centres are farthest apart
        c = F.normalize(torch.randn(n_classes, dim, generator=gen), dim=1)  # (C, D)
        gap = (2 - 2 * (c @ c.T).fill_diagonal_(-1)).min().item() if n_classes > 1 else 0.0
        if gap > best_gap:
            best, best_gap = c, gap
    return best


def make_toy_dataset(
    n_classes: int = 4,
    per_class: int = 16,
    dim: int = 2,
    noise: float = 0.3,
    seed: int = 0,
    view_noise: float | None = None,
) -> ToyDataset:
    """Draw a labelled toy dataset on the unit circle / sphere with two views per instance.

    Instance i of class c is ``normalize(centre_c + noise * eps_i)`` and its two "augmented"
    views are ``normalize(point_i + view_noise * eps')``, so views of one instance are closer than
    instances of one class, which are closer than classes.

    Args:
        n_classes: number of classes C >= 1.
        per_class: instances per class (>= 1); N = C * per_class.
        dim: ambient dimension D >= 2 (2: circle, 3: sphere).
        noise: spread of the instances around their class centre (>= 0).
        seed: seed of the private generator (the global RNG is untouched).
        view_noise: spread of the views around their instance; ``None`` -> ``noise / 2``.

    Returns:
        A :class:`ToyDataset` in float32.

    Raises:
        ValueError: on non-positive sizes, ``dim < 2`` or negative noise.
    """
    if n_classes < 1 or per_class < 1 or n_classes * per_class < 2:
        raise ValueError(f"need n_classes >= 1, per_class >= 1 and N >= 2, got {n_classes}, "
                         f"{per_class}")
    if dim < 2:
        raise ValueError(f"dim must be >= 2 (2: circle, 3: sphere), got {dim}")
    view_noise = noise / 2 if view_noise is None else view_noise
    if noise < 0 or view_noise < 0:
        raise ValueError(f"noise and view_noise must be >= 0, got {noise}, {view_noise}")
    gen = torch.Generator().manual_seed(seed)
    centers = _spread_centres(n_classes, dim, gen)                       # (C, D)
    labels = torch.arange(n_classes).repeat_interleave(per_class)         # (N,)
    n = labels.numel()
    points = F.normalize(centers[labels] + noise * torch.randn(n, dim, generator=gen), dim=1)
    jitter = view_noise * torch.randn(2, n, dim, generator=gen)           # (2, N, D)
    views = F.normalize(points.unsqueeze(0) + jitter, dim=2)              # (2, N, D)
    return ToyDataset(centers=centers, points=points, views=views, labels=labels)


def _similarity_loss(name: str, s: Tensor, pos: Tensor, temperature: float | None,
                     kwargs: dict) -> Tensor:
    """Scalar loss ``name`` on the similarity matrix ``s`` ``(A, M)`` with positives ``pos``."""
    fn = getattr(losses, name)
    return fn(s, pos, temperature, **kwargs) if SIMILARITY_LOSSES[name] else fn(s, pos, **kwargs)


def _embedding_loss(name: str, z1: Tensor, z2: Tensor, labels: Tensor,
                    temperature: float | None, kwargs: dict, gen: torch.Generator) -> Tensor:
    """Scalar in-batch loss ``name`` on the two views ``z1``, ``z2`` ``(N, D)``."""
    n = z1.shape[0]
    instance = torch.arange(n)
    if name == "nt_xent":
        return losses.nt_xent(z1, z2, temperature, **kwargs)
    if name == "debiased_info_nce":
        return losses.debiased_info_nce(z1, z2, temperature, **{"tau_plus": 0.1, **kwargs})
    if name == "hcl_info_nce":
        return losses.hcl_info_nce(z1, z2, temperature, **{"beta": 1.0, "tau_plus": 0.1, **kwargs})
    if name == "supcon":  # supervised: every view of the same class is a positive
        return losses.supcon(torch.stack([z1, z2], dim=1), labels, temperature, **kwargs)
    if name in ("batch_hard_triplet", "semi_hard_triplet"):  # instances are the "classes"
        return getattr(losses, name)(torch.cat([z1, z2]), instance.repeat(2), **kwargs)
    # pairs with a random other instance: a fresh derangement every step
    other = torch.randperm(n, generator=gen)                              # (N,)
    other = torch.where(other == instance, (other + 1) % n, other)        # (N,) no self-pairs
    if name == "triplet":
        return losses.triplet(z1, z2, z2[other], **kwargs)
    # margin_contrastive: the positive pairs (same = 1) and as many negative pairs (same = 0)
    x1, x2 = torch.cat([z1, z1]), torch.cat([z2, z2[other]])              # (2N, D)
    same = torch.cat([torch.ones(n), torch.zeros(n)]).long()              # (2N,)
    return losses.margin_contrastive(x1, x2, same, **kwargs)


@torch.no_grad()
def _project_(z: Tensor) -> None:
    """Project rows of ``z`` back onto the unit sphere, in place."""
    z.div_(z.norm(dim=-1, keepdim=True).clamp_min(1e-12))


def optimise_embedding(
    loss_name: str,
    temperature: float | None = None,
    steps: int = 200,
    lr: float = 0.05,
    dataset: ToyDataset | None = None,
    *,
    similarity: str = "batch",
    bank_momentum: float = 0.5,
    record_every: int = 10,
    loss_kwargs: dict | None = None,
    seed: int = 0,
) -> ToyRun:
    """Projected gradient descent on free unit-norm embeddings under one contrastive loss.

    The embeddings start at the dataset's two views and are the only parameters, so the run
    shows what the loss itself does to the geometry. Each step: loss, gradient, ``z -= lr * grad``,
    rows renormalised to the sphere.

    ``similarity="batch"`` (SimCLR): similarity-matrix losses see
    :func:`cl_analysis.losses.simclr_similarity` of the two views, ``(2N, 2N-1)``, positive = the
    other view. ``similarity="bank"`` (InstDisc, the paper's setup): one free embedding per
    instance against a memory bank initialised to view 2 and updated as
    ``v <- normalize(m v + (1 - m) z)`` after every step; the positive is the instance's own bank
    entry. Embedding losses (``EMBEDDING_LOSSES``: nt_xent, debiased/hcl, supcon with the class
    labels, triplets and margin contrastive on instance pairs) always use the two views in-batch.

    Args:
        loss_name: one of ``TOY_LOSSES``.
        temperature: τ for the losses that take one (required there, ignored otherwise).
        steps: number of gradient steps (>= 1).
        lr: step size (> 0).
        dataset: initial embeddings; ``None`` -> ``make_toy_dataset(seed=seed)``.
        similarity: "batch" or "bank" (similarity-matrix losses only).
        bank_momentum: m of the memory-bank update (the paper's code uses 0.5).
        record_every: snapshot period of the trajectory, in steps.
        loss_kwargs: extra keyword arguments of the loss (``k``, ``alpha``, ``lam``, ``margin``,
            ...).
        seed: seed of the negatives drawn by ``triplet`` / ``margin_contrastive``.

    Returns:
        A :class:`ToyRun`. Deterministic for fixed inputs.

    Raises:
        ValueError: on an unknown loss or similarity, a missing temperature, or bad sizes.
    """
    check_choice("loss_name", loss_name, TOY_LOSSES)
    check_choice("similarity", similarity, _SIMILARITIES)
    needs_tau = {**SIMILARITY_LOSSES, **EMBEDDING_LOSSES}[loss_name]
    if needs_tau:
        temperature = check_temperature(temperature)
    else:
        temperature = None
    if steps < 1 or record_every < 1 or not lr > 0:
        raise ValueError(f"need steps >= 1, record_every >= 1 and lr > 0, got {steps}, "
                         f"{record_every}, {lr}")
    data = make_toy_dataset(seed=seed) if dataset is None else dataset
    kwargs = dict(loss_kwargs or {})
    gen = torch.Generator().manual_seed(seed)
    bank_mode = similarity == "bank" and loss_name in SIMILARITY_LOSSES
    z = data.views.detach().clone().float()                               # (2, N, D)
    _project_(z)
    params = z[:1].clone() if bank_mode else z.clone()                    # (V, N, D)
    params.requires_grad_(True)
    bank = z[1].clone()                                                   # (N, D) memory bank
    n = z.shape[1]
    history, snaps, snap_steps = [], [params[0].detach().clone()], [0]
    for step in range(1, steps + 1):
        if bank_mode:
            s = params[0] @ bank.T                                        # (N, N) z_i . v_j
            loss = _similarity_loss(loss_name, s, torch.arange(n), temperature, kwargs)
        elif loss_name in SIMILARITY_LOSSES:
            s, pos = losses.simclr_similarity(params[0], params[1])       # (2N, 2N-1), (2N,)
            loss = _similarity_loss(loss_name, s, pos, temperature, kwargs)
        else:
            loss = _embedding_loss(loss_name, params[0], params[1], data.labels, temperature,
                                   kwargs, gen)
        (grad,) = torch.autograd.grad(loss, params)
        history.append(loss.item())
        with torch.no_grad():
            params -= (lr * n) * grad                                     # descend N * mean loss
            _project_(params)
            if bank_mode:
                bank.mul_(bank_momentum).add_((1 - bank_momentum) * params[0])
                _project_(bank)
        if step % record_every == 0 or step == steps:
            snaps.append(params[0].detach().clone())
            snap_steps.append(step)
    final = params.detach().clone()
    views = torch.stack([final[0], bank]) if bank_mode else final         # (2, N, D)
    return ToyRun(loss_name=loss_name, temperature=temperature, losses=torch.tensor(history),
                  steps=torch.tensor(snap_steps), trajectory=torch.stack(snaps),
                  embeddings=final[0], views=views, labels=data.labels.clone())


def summarize_runs(runs: Mapping[str, ToyRun], t: float = 2.0) -> dict[str, dict[str, float]]:
    """Embedding metrics of the final state of each toy run.

    Args:
        runs: name -> :class:`ToyRun`.
        t: scale of the uniformity potential (Wang & Isola; the paper's code uses 2).

    Returns:
        name -> {"uniformity": -L_uniformity (higher = more uniform), "tolerance": mean
        same-class cosine (higher = classes kept together), "alignment": mean squared distance
        of the two views, "final_loss": last loss value}.
    """
    out = {}
    for name, run in runs.items():
        out[name] = {
            "uniformity": float(metrics.uniformity(run.embeddings, t=t)),
            "tolerance": float(metrics.tolerance(run.embeddings, run.labels)),
            "alignment": float(metrics.alignment(run.views[0], run.views[1])),
            "displacement": float((run.trajectory[-1] - run.trajectory[0]).norm(dim=1).mean()),
            "final_loss": float(run.losses[-1]),
        }
    return out


def sample_similarities(
    n_anchors: int = 1,
    num_negatives: int = 4096,
    positive_similarity: float = 1.0,
    low: float = -1.0,
    high: float = 1.0,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> tuple[Tensor, Tensor]:
    """Similarity rows with negatives uniform in ``[low, high]``, as in the paper's Fig. 3.

    Args:
        n_anchors: rows N >= 1.
        num_negatives: negatives per row (>= 1); M = num_negatives + 1.
        positive_similarity: s_ii, placed in column 0.
        low: lower end of the negative similarities.
        high: upper end.
        seed: seed of the private generator.
        dtype: floating dtype of the result.

    Returns:
        ``(similarity (N, M), positive (N,) int64 zeros)``.
    """
    if n_anchors < 1 or num_negatives < 1 or not low < high:
        raise ValueError(f"need n_anchors >= 1, num_negatives >= 1 and low < high, got "
                         f"{n_anchors}, {num_negatives}, [{low}, {high}]")
    gen = torch.Generator().manual_seed(seed)
    neg = low + (high - low) * torch.rand(n_anchors, num_negatives, generator=gen, dtype=dtype)
    pos = torch.full((n_anchors, 1), float(positive_similarity), dtype=dtype)
    return torch.cat([pos, neg], dim=1), torch.zeros(n_anchors, dtype=torch.long)


def penalty_sweep(
    similarity: Tensor, positive: Tensor, temperatures: Sequence[float], k: int | None = None
) -> dict[str, Tensor]:
    """How the relative penalty r (Eq. 5) and its truncation (Eq. 8) change with τ.

    Args:
        similarity: ``(N, M)`` similarities.
        positive: ``(N,)`` int64 positive columns.
        temperatures: τ grid.
        k: hard negatives kept by the truncation; ``None`` -> ``max(1, (M - 1) // 10)``.

    Returns:
        Dict of ``(len(temperatures),)`` float64 tensors, each averaged over the N anchors:
        ``temperature``; ``entropy`` H(r) in nats; ``effective_negatives`` exp(H);
        ``topk_mass``, the share of the total penalty that falls on the k hardest negatives;
        ``truncation_tv``, the total-variation distance between r and its Eq. 8 truncation;
        ``hardest`` r of the single hardest negative; and ``k`` (constant).
    """
    m = similarity.shape[1]
    k = max(1, (m - 1) // 10) if k is None else int(k)
    out = {key: [] for key in ("entropy", "effective_negatives", "topk_mass", "truncation_tv",
                               "hardest")}
    for tau in temperatures:
        r = gradients.gradient_ratio(similarity, positive, tau).double()  # (N, M)
        r_k = gradients.truncated_gradient_ratio(similarity, positive, tau, k=k).double()
        top = r.topk(k, dim=1).values                                      # (N, k)
        out["entropy"].append(gradients.penalty_entropy(similarity, positive, tau).double().mean())
        out["effective_negatives"].append(
            gradients.effective_negatives(similarity, positive, tau).double().mean())
        out["topk_mass"].append(top.sum(1).mean())
        out["truncation_tv"].append(0.5 * (r - r_k).abs().sum(1).mean())
        out["hardest"].append(top[:, 0].mean())
    res = {key: torch.stack(v) for key, v in out.items()}
    res["temperature"] = torch.tensor([float(t) for t in temperatures], dtype=torch.float64)
    res["k"] = torch.full_like(res["temperature"], float(k))
    return res


def limit_gaps(
    similarity: Tensor, positive: Tensor, temperatures: Sequence[float]
) -> dict[str, Tensor]:
    """Distance of the contrastive loss from its τ -> 0 (Eq. 6) and τ -> ∞ (Eq. 7) limits.

    ``zero_gap`` = mean |τ·info_nce − tau_zero_limit|, which lies in [0, τ log M];
    ``inf_gap`` = mean |τ·(info_nce − log M) − ((M−1)/M)·simple|, which behaves like
    Var_k(s_ik) / (2τ) for large τ (second-order Taylor term of Eq. 7).

    Args:
        similarity: ``(N, M)`` similarities (use float64 for large τ).
        positive: ``(N,)`` int64 positive columns.
        temperatures: τ grid.

    Returns:
        Dict of ``(len(temperatures),)`` tensors: ``temperature``, ``zero_gap``, ``inf_gap``,
        ``zero_bound`` (τ log M) and ``inf_asymptote`` (mean_i Var_k(s_ik) / (2τ)).
    """
    m = similarity.shape[1]
    zero = losses.tau_zero_limit(similarity, positive, reduction="none")          # (N,)
    flat = (m - 1) / m * losses.simple(similarity, positive, reduction="none")    # (N,)
    var = similarity.double().var(dim=1, unbiased=False).mean()
    taus = torch.tensor([float(t) for t in temperatures], dtype=torch.float64)
    zero_gap, inf_gap = [], []
    for tau in taus.tolist():
        loss = losses.info_nce(similarity, positive, tau, reduction="none")        # (N,)
        zero_gap.append((tau * loss - zero).abs().mean().double())
        inf_gap.append((tau * (loss - math.log(m)) - flat).abs().mean().double())
    return {"temperature": taus, "zero_gap": torch.stack(zero_gap),
            "inf_gap": torch.stack(inf_gap), "zero_bound": taus * math.log(m),
            "inf_asymptote": var / (2 * taus)}
