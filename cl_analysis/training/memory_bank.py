"""The InstDisc memory bank used by Wang & Liu (CVPR 2021, §5.1; Wu et al. 2018).

The bank holds one D-dim vector per training image, an exponential moving average of that image's
embedding: v_i <- normalize(m * v_i + (1 - m) * f(x_i)) with m = 0.5 in the authors' code. The
similarity of a batch against the whole bank, s_ij = f(x_i)^T v_j, is the (B, N) matrix every
loss in ``losses`` takes; the positive of row i is column ``indices[i]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import value_checks_enabled


class MemoryBank(nn.Module):
    """Memory bank of N entries of dimension D, stored as the buffer ``bank`` (N, D).

    Initialisation follows the authors: uniform(-stdv, stdv) with stdv = 1 / sqrt(D / 3). They do
    **not** normalise the bank at init (each row then has norm ~1 in expectation, since
    E[v_k^2] = stdv^2 / 3 = 1 / D); we follow them unless ``normalize_init=True``. Rows become
    unit vectors after their first ``update``.

    Args:
        size: number of entries N (the training-set size).
        dim: embedding dimension D (128 in the paper).
        momentum: m in v <- normalize(m v + (1 - m) z); 0.5 in the paper.
        generator: optional CPU ``torch.Generator`` for the random init.
        normalize_init: L2-normalise the rows at init (not what the authors do).
    """

    def __init__(self, size: int, dim: int, momentum: float = 0.5,
                 generator: torch.Generator | None = None, normalize_init: bool = False):
        super().__init__()
        if int(size) < 2 or int(dim) < 1:
            raise ValueError(f"a memory bank needs size >= 2 and dim >= 1, got size={size}, "
                             f"dim={dim}; use the training-set size and the embedding dim")
        if not 0.0 <= float(momentum) < 1.0:
            raise ValueError(f"momentum must lie in [0, 1) (the paper uses 0.5), got {momentum}")
        self.size, self.dim, self.momentum = int(size), int(dim), float(momentum)
        stdv = 1.0 / math.sqrt(dim / 3)
        bank = torch.rand(size, dim, generator=generator) * (2 * stdv) - stdv  # (N, D)
        if normalize_init:
            bank = F.normalize(bank, dim=1)
        self.register_buffer("bank", bank)

    def extra_repr(self) -> str:
        """Size, dim and momentum in the module's repr."""
        return f"size={self.size}, dim={self.dim}, momentum={self.momentum}"

    def _check(self, name: str, indices: Tensor | None, z: Tensor) -> None:
        if z.dim() != 2 or z.shape[1] != self.dim:
            raise ValueError(f"{name}: z: expected shape (B, {self.dim}), got {tuple(z.shape)}; "
                             f"pass the batch embeddings (B, D)")
        if indices is not None:
            if indices.dtype not in (torch.int64, torch.int32):
                raise ValueError(f"{name}: indices: expected an integer dtype, got "
                                 f"{indices.dtype}; pass indices.long()")
            if indices.shape != (z.shape[0],):
                raise ValueError(f"{name}: indices: expected shape ({z.shape[0]},) (one per row "
                                 f"of z), got {tuple(indices.shape)}")
            if not value_checks_enabled():  # the range check below is a host sync on a GPU
                return
            if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.size):
                raise ValueError(f"{name}: indices: expected values in [0, {self.size - 1}] "
                                 f"(dataset indices of the batch), got min {int(indices.min())} "
                                 f"max {int(indices.max())}")

    @staticmethod
    def _rounds(indices: Tensor) -> list[Tensor]:
        """Positions of ``indices`` split into rounds of distinct indices, in order of occurrence.

        Round r holds the r-th occurrence of every repeated index, so applying the rounds one
        after another is the sequential, in-order application of the writes.
        """
        order = torch.argsort(indices, stable=True)  # (B,) equal indices keep batch order
        sorted_idx = indices[order]
        first = torch.ones_like(sorted_idx, dtype=torch.bool)
        first[1:] = sorted_idx[1:] != sorted_idx[:-1]
        start = torch.cummax(torch.where(first, torch.arange(len(order), device=order.device),
                                         0), 0).values
        rank = torch.empty_like(order)
        rank[order] = torch.arange(len(order), device=order.device) - start  # occurrence number
        return [torch.nonzero(rank == r).squeeze(1) for r in range(int(rank.max(0).values) + 1)] \
            if len(order) else []

    def similarity(self, z: Tensor) -> Tensor:
        """Similarities of a batch to every bank entry, s_ij = z_i^T v_j (Wang & Liu §3).

        Computed in float32 outside autocast (a bf16 matmul would put ~0.004 error on every s_ij,
        i.e. ~0.06 on s/tau at tau = 0.07). Gradients flow into ``z`` only, never into the bank.

        Args:
            z: (B, D) embeddings, normally L2-normalised.

        Returns:
            (B, N) float32 similarity matrix.
        """
        self._check("similarity", None, z)
        with torch.autocast(device_type=z.device.type, enabled=False):
            return z.float() @ self.bank.detach().float().T  # (B, D) @ (D, N) -> (B, N)

    @torch.no_grad()
    def update(self, indices: Tensor, z: Tensor, *, distinct: bool = False) -> None:
        """EMA update of the batch's entries: v_i <- normalize(m v_i + (1 - m) z_i).

        Repeated indices are applied sequentially in batch order (rule of docs/conventions.md):
        ``update([3, 3], [z_a, z_b])`` gives v_3 <- normalize(m normalize(m v_3 + (1-m) z_a) +
        (1-m) z_b) on every device, never one write chosen by the scatter.

        Args:
            indices: (B,) dataset indices of the batch; repeats allowed (applied in order).
            z: (B, D) embeddings of the batch; detached here.
            distinct: the caller guarantees no repeated index (a training batch: a slice of one
                permutation). One vectorised write then replaces the rounds, whose construction
                reads values back (a host sync on a GPU); the result is the same.
        """
        self._check("update", indices, z)
        indices, z = indices.to(self.bank.device), z.detach().to(self.bank)
        if distinct:
            v = self.bank[indices] * self.momentum + z * (1 - self.momentum)
            self.bank[indices] = F.normalize(v, dim=1)  # (B, D)
            return
        for rows in self._rounds(indices):
            idx = indices[rows]
            v = self.bank[idx] * self.momentum + z[rows] * (1 - self.momentum)
            self.bank[idx] = F.normalize(v, dim=1)  # (b, D)

    @torch.no_grad()
    def fill(self, indices: Tensor, z: Tensor) -> None:
        """Set entries directly, v_i <- z_i (used to initialise the bank from the network).

        Repeated indices are applied in batch order, so the last write of an index wins.

        Args:
            indices: (B,) dataset indices; repeats allowed (the last one wins).
            z: (B, D) values to store (stored as given; pass L2-normalised embeddings).
        """
        self._check("fill", indices, z)
        indices, z = indices.to(self.bank.device), z.detach().to(self.bank)
        for rows in self._rounds(indices):
            self.bank[indices[rows]] = z[rows]
