"""Loop-based float64 reference implementations, written straight from the equations.

Test oracles for cl_analysis.losses / metric_losses: plain Python floats and ``math``, one anchor
at a time, no vectorisation and no import from the package. Each function returns the list of
per-anchor (or per-pair) losses; ``mean`` averages it. Inputs are tensors or nested lists.
"""

from __future__ import annotations

import math


def _rows(x) -> list[list[float]]:
    """Nested list of Python floats (float64) from a 2-D tensor or list."""
    return [[float(v) for v in row] for row in (x.tolist() if hasattr(x, "tolist") else x)]


def _ints(x) -> list[int]:
    return [int(v) for v in (x.tolist() if hasattr(x, "tolist") else x)]


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def dot(u: list[float], v: list[float]) -> float:
    return sum(a * b for a, b in zip(u, v))


def dist(u: list[float], v: list[float]) -> float:
    return math.sqrt(sum((a - b) ** 2 for a, b in zip(u, v)))


def cos(u: list[float], v: list[float]) -> float:
    return dot(u, v) / (math.sqrt(dot(u, u)) * math.sqrt(dot(v, v)))


def cosine_similarity(a, b) -> list[list[float]]:
    return [[cos(u, v) for v in _rows(b)] for u in _rows(a)]


# ---- the paper's losses on the similarity matrix (Wang & Liu, Eq. 1, 3, 6, 9) -----------------


def info_nce(sim, pos, tau: float) -> list[float]:
    """Eq. 1: -log[exp(s_ip/tau) / (sum_{k != p} exp(s_ik/tau) + exp(s_ip/tau))]."""
    out = []
    for row, p in zip(_rows(sim), _ints(pos)):
        numerator = math.exp(row[p] / tau)
        negatives = sum(math.exp(s / tau) for k, s in enumerate(row) if k != p)
        out.append(-math.log(numerator / (negatives + numerator)))
    return out


def simple(sim, pos, lam: float | None = None) -> list[float]:
    """Eq. 3: -s_ip + lam * sum_{j != p} s_ij, lam = 1/(M-1) by default."""
    out = []
    for row, p in zip(_rows(sim), _ints(pos)):
        weight = 1.0 / (len(row) - 1) if lam is None else lam
        out.append(-row[p] + weight * sum(s for j, s in enumerate(row) if j != p))
    return out


def _top_negatives(row: list[float], p: int, k: int) -> list[float]:
    return sorted((s for j, s in enumerate(row) if j != p), reverse=True)[:k]


def hard_info_nce(sim, pos, tau: float, k: int) -> list[float]:
    """Eq. 9 with the k most similar negatives in the denominator."""
    out = []
    for row, p in zip(_rows(sim), _ints(pos)):
        numerator = math.exp(row[p] / tau)
        hard = sum(math.exp(s / tau) for s in _top_negatives(row, p, k))
        out.append(-math.log(numerator / (hard + numerator)))
    return out


def hard_simple(sim, pos, k: int, lam: float | None = None) -> list[float]:
    """Eq. 3 over the k hardest negatives, lam = 1/k by default."""
    out = []
    for row, p in zip(_rows(sim), _ints(pos)):
        weight = 1.0 / k if lam is None else lam
        out.append(-row[p] + weight * sum(_top_negatives(row, p, k)))
    return out


def tau_zero_limit(sim, pos) -> list[float]:
    """Eq. 6: max(max_{j != p} s_ij - s_ip, 0)."""
    return [max(max(s for j, s in enumerate(row) if j != p) - row[p], 0.0)
            for row, p in zip(_rows(sim), _ints(pos))]


# ---- SimCLR NT-Xent and its debiased / hard-negative variants (paper.md §5, §7) --------------


def _two_views(z1, z2) -> list[list[float]]:
    return _rows(z1) + _rows(z2)


def nt_xent(z1, z2, tau: float) -> list[float]:
    """SimCLR: l(i, j) = -log[exp(sim_ij/tau) / sum_{k != i} exp(sim_ik/tau)], z1 then z2."""
    z = _two_views(z1, z2)
    n = len(z) // 2
    out = []
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        denominator = sum(math.exp(cos(z[i], z[k]) / tau) for k in range(2 * n) if k != i)
        out.append(-math.log(math.exp(cos(z[i], z[j]) / tau) / denominator))
    return out


def hcl(z1, z2, tau: float, beta: float, tau_plus: float) -> list[float]:
    """HCL (Robinson et al.) as in the authors' code; beta = 0 is DCL (Chuang et al.)."""
    z = _two_views(z1, z2)
    n = len(z) // 2
    num_neg = 2 * n - 2
    out = []
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        pos = math.exp(cos(z[i], z[j]) / tau)
        neg = [math.exp(cos(z[i], z[k]) / tau) for k in range(2 * n) if k not in (i, j)]
        imp = [e ** beta for e in neg]  # exp(beta * s / tau)
        reweight_neg = sum(w * e for w, e in zip(imp, neg)) / mean(imp)
        ng = max((-tau_plus * num_neg * pos + reweight_neg) / (1 - tau_plus),
                 num_neg * math.exp(-1 / tau))
        out.append(-math.log(pos / (pos + ng)))
    return out


def debiased(z1, z2, tau: float, tau_plus: float) -> list[float]:
    """DCL (Chuang et al. 2020), M = 1, written out separately from ``hcl``."""
    z = _two_views(z1, z2)
    n = len(z) // 2
    num_neg = 2 * n - 2
    out = []
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        pos = math.exp(cos(z[i], z[j]) / tau)
        neg = sum(math.exp(cos(z[i], z[k]) / tau) for k in range(2 * n) if k not in (i, j))
        ng = max((neg - tau_plus * num_neg * pos) / (1 - tau_plus), num_neg * math.exp(-1 / tau))
        out.append(-math.log(pos / (pos + ng)))
    return out


# ---- metric-learning losses (paper.md §8) ---------------------------------------------------


def margin_contrastive(x1, x2, same, margin: float) -> list[float]:
    """same -> d^2, different -> max(0, margin - d)^2."""
    return [dist(u, v) ** 2 if s else max(0.0, margin - dist(u, v)) ** 2
            for u, v, s in zip(_rows(x1), _rows(x2), _ints(same))]


def triplet(anchor, positive, negative, margin: float, squared: bool = False) -> list[float]:
    """FaceNet hinge max(0, d(a, p) - d(a, n) + margin)."""
    power = 2 if squared else 1
    return [max(0.0, dist(a, p) ** power - dist(a, n) ** power + margin)
            for a, p, n in zip(_rows(anchor), _rows(positive), _rows(negative))]


def batch_hard_triplet(x, labels, margin: float, squared: bool = False) -> list[float]:
    """Brute force over all (p, n) for each anchor: hardest positive, hardest negative."""
    x, y = _rows(x), _ints(labels)
    power = 2 if squared else 1
    out = []
    for a in range(len(x)):
        pos = [dist(x[a], x[p]) ** power for p in range(len(x)) if p != a and y[p] == y[a]]
        neg = [dist(x[a], x[n]) ** power for n in range(len(x)) if y[n] != y[a]]
        if pos and neg:
            out.append(max(0.0, max(pos) - min(neg) + margin))
    return out


def semi_hard_triplet(x, labels, margin: float, squared: bool = False,
                      fallback: str = "hardest") -> list[float]:
    """FaceNet semi-hard per (a, p). "hardest": closest n with d_ap < d_an < d_ap + margin, else
    the hardest n. "beyond" (TF Addons): closest n with d_an > d_ap, else the farthest n.
    "drop": closest n with d_ap < d_an < d_ap + margin, else the pair is skipped."""
    x, y = _rows(x), _ints(labels)
    power = 2 if squared else 1
    out = []
    for a in range(len(x)):
        neg = [dist(x[a], x[n]) ** power for n in range(len(x)) if y[n] != y[a]]
        if not neg:
            continue
        for p in range(len(x)):
            if p == a or y[p] != y[a]:
                continue
            d_ap = dist(x[a], x[p]) ** power
            semi = [d for d in neg if d_ap < d < d_ap + margin]
            if fallback == "beyond":
                beyond = [d for d in neg if d > d_ap]
                d_an = min(beyond) if beyond else max(neg)
            elif semi or fallback == "hardest":
                d_an = min(semi) if semi else min(neg)
            else:
                continue
            out.append(max(0.0, d_ap - d_an + margin))
    return out


def supcon(z, labels, tau: float) -> list[float]:
    """Khosla et al. L_out for (N, D) or (N, V, D) z; anchors without positives are skipped."""
    nested = z.tolist() if hasattr(z, "tolist") else z
    if isinstance(nested[0][0], list):  # (N, V, D): one sample per (view, item)
        items = [(view[v], label) for v in range(len(nested[0]))
                 for view, label in zip(nested, _ints(labels))]
    else:
        items = list(zip(nested, _ints(labels)))
    out = []
    for i, (zi, yi) in enumerate(items):
        denominator = sum(math.exp(cos(zi, zk) / tau) for k, (zk, _) in enumerate(items) if k != i)
        logs = [math.log(math.exp(cos(zi, zp) / tau) / denominator)
                for p, (zp, yp) in enumerate(items) if p != i and yp == yi]
        if logs:
            out.append(-mean(logs))
    return out
