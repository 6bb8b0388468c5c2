"""Data-parallel training under ``torchrun``: process group, rank slices, exact gathers, global BN.

A run launched as ``torchrun --nproc-per-node W -m cl_analysis pretrain ...`` trains one model on W
processes (gloo on CPU, nccl on CUDA) and computes what one process computes with the same global
batch (Wang & Liu's memory-bank step and SimCLR's in-batch step alike):

* **One random stream.** Every rank draws the permutation and the augmentation parameters of the
  whole global batch from the same seeded generators (as one process does) and applies its slice
  ``torch.tensor_split(batch, W)[rank]``, so the views do not depend on the number of processes.
* **Exact negatives.** Embeddings are gathered *with* gradient by
  ``torch.distributed.nn.functional.all_gather``, whose backward sums the gradients of every
  rank's loss (a reduce-scatter); each rank's loss is the mean over its own anchors, scaled by
  ``W · n_rank / n_global`` (1 for equal slices), and DDP's 1/W average of the parameter gradients
  then gives exactly the gradient of the global-batch mean (beyond.md §3.1; peers' bugs: a gather
  whose backward keeps only the local slice, lightly#1528; per-rank label offsets, solo-learn#206).
* **Global batch statistics.** BatchNorm layers become ``torch.nn.SyncBatchNorm`` on CUDA; on the
  CPU, where PyTorch's SyncBatchNorm has no kernels, :class:`GlobalBatchNorm` computes the same
  statistics with autograd-aware all-reduces.

Nothing here is used by a single-process run: with ``world_size() == 1`` every helper is the
identity, and single-process results are bit-identical to those of the code before DDP existed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
from torch import Tensor, nn

__all__ = ["init_from_env", "is_distributed", "world_size", "rank", "is_main", "backend",
           "local_slice", "slice_sizes", "gather_rows", "all_reduce_sum", "gather_objects",
           "GlobalBatchNorm", "convert_batchnorm", "barrier"]

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def _quiet_deprecation():
    """Silence torch's FutureWarning on ``torch.distributed.nn.functional`` (and nothing else).

    torch 2.14 marks it deprecated, yet it is the autograd-aware collective API the project
    uses (beyond.md §3.4; its backward is the sum this module relies on, tested in
    tests/training/test_scale.py).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"torch\.distributed\.nn\.functional",
                                category=FutureWarning)
        yield


def is_distributed() -> bool:
    """True inside an initialised process group with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """Rank 0: the one process that writes checkpoints, metrics and evaluations."""
    return rank() == 0


def backend() -> str | None:
    """The process group's backend (``gloo`` / ``nccl``), None without one."""
    return str(dist.get_backend()) if dist.is_available() and dist.is_initialized() else None


def barrier() -> None:
    """``dist.barrier()`` under DDP; a no-op otherwise."""
    if is_distributed():
        dist.barrier()


def init_from_env(device: str) -> tuple[bool, str]:
    """Join the process group ``torchrun`` describes in the environment, if it describes one.

    Reads ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` (and ``MASTER_ADDR`` / ``MASTER_PORT``) as set
    by ``torchrun``; with ``WORLD_SIZE`` unset or 1, or a group already initialised, nothing
    happens. The backend is nccl for CUDA devices, gloo otherwise.

    Args:
        device: the run's configured device (``auto``, ``cpu``, ``cuda``, ``cuda:N``).

    Returns:
        ``(started, device)``: whether this call created the group (the caller then destroys
        it), and the device this rank should use (``cuda:LOCAL_RANK`` for a CUDA run).

    Raises:
        ValueError: ``device=cuda:N`` under torchrun (each rank takes its own GPU), or more
            ranks on this machine than visible GPUs.
    """
    if dist.is_available() and dist.is_initialized():
        return False, _rank_device(device)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False, device
    if not dist.is_available():
        raise ValueError("WORLD_SIZE > 1 but this torch build has no torch.distributed; run "
                         "without torchrun")
    local = _rank_device(device)
    use_cuda = local.startswith("cuda")
    if use_cuda:
        torch.cuda.set_device(torch.device(local))
    dist.init_process_group("nccl" if use_cuda else "gloo")
    logger.info("joined process group: rank %d of %d (%s) on %s", rank(), world_size(),
                backend(), local)
    return True, local


def _rank_device(device: str) -> str:
    """The device of this rank: ``cuda:LOCAL_RANK`` for cuda/auto with GPUs, else ``device``."""
    if device.startswith("cuda:"):
        raise ValueError(f"device={device!r} under torchrun: every rank takes GPU LOCAL_RANK; "
                         f"pass --device cuda (and CUDA_VISIBLE_DEVICES to choose the GPUs)")
    want_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if not want_cuda:
        return device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if local_rank >= torch.cuda.device_count():
        raise ValueError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPU(s) "
                         f"are visible; lower --nproc-per-node")
    return f"cuda:{local_rank}"


def slice_sizes(n: int, world: int | None = None) -> list[int]:
    """Rows of every rank when ``n`` rows are split as ``torch.tensor_split`` does."""
    w = world_size() if world is None else world
    return [n // w + (1 if r < n % w else 0) for r in range(w)]


def local_slice(n: int) -> slice:
    """This rank's rows ``[start, stop)`` of a global batch of ``n`` rows."""
    sizes = slice_sizes(n)
    start = sum(sizes[: rank()])
    return slice(start, start + sizes[rank()])


def gather_rows(x: Tensor, sizes: Sequence[int], *, grad: bool) -> Tensor:
    """Concatenate every rank's rows in rank order: the global batch as one process holds it.

    Args:
        x: ``(sizes[rank], ...)`` this rank's rows.
        sizes: rows of every rank (host integers: no sync), e.g. :func:`slice_sizes`.
        grad: gather with gradient (``torch.distributed.nn.functional.all_gather``, whose
            backward sums every rank's gradient into the owner's slice) or without.

    Returns:
        ``(sum(sizes), ...)``; ``x`` itself without a process group.
    """
    if not is_distributed():
        return x
    top = max(sizes)
    if x.shape[0] < top:  # all_gather needs equal shapes: pad, and cut the padding off after
        x = torch.cat([x, x.new_zeros((top - x.shape[0], *x.shape[1:]))])
    x = x.contiguous()  # pytorch#120386: a non-contiguous gather buffer lost its gradient
    if grad:
        with _quiet_deprecation():
            parts = dist_nn.all_gather(x)
    else:
        parts = [torch.empty_like(x) for _ in sizes]
        dist.all_gather(parts, x)
    return torch.cat([p[:n] for p, n in zip(parts, sizes)])


def all_reduce_sum(x: Tensor) -> Tensor:
    """Sum of ``x`` over ranks (in place; ``x`` itself without a process group)."""
    if is_distributed():
        dist.all_reduce(x)
    return x


def gather_objects(obj) -> list:
    """Every rank's ``obj`` in rank order (``[obj]`` without a process group)."""
    if not is_distributed():
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over the global batch of all ranks, for CPU (gloo) runs.

    PyTorch's ``SyncBatchNorm`` has no CPU kernels; this computes the same statistics with two
    autograd-aware all-reduces (``torch.distributed.nn.functional.all_reduce``): the global mean,
    then the global biased variance of the centred values (two passes, as accurate as one-process
    BN). Gradients flow through both reductions, so the backward equals one-process BN on the
    concatenated batch. Running statistics are updated as ``F.batch_norm`` does (unbiased
    variance, ``momentum`` or the cumulative average). Outside training, or without a process
    group, it is ``F.batch_norm``. Same parameters and buffers as the layer it replaces.

    Input: ``(B, C)`` or ``(B, C, H, W)``.
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() not in (2, 3, 4, 5):
            raise ValueError(f"expected a (B, C, ...) input, got shape {tuple(input.shape)}")

    def forward(self, input: Tensor) -> Tensor:  # noqa: D102  (documented on the class)
        if not (self.training and is_distributed()):
            return super().forward(input)
        self._check_input_dim(input)
        dims = [0, *range(2, input.dim())]
        shape = [1, -1] + [1] * (input.dim() - 2)
        count = input.numel() // input.shape[1]  # values per channel on this rank
        total = torch.tensor([float(count)], device=input.device)
        dist.all_reduce(total)  # a tiny CPU collective; this class only serves CPU runs
        n = float(total.item())
        with _quiet_deprecation():
            mean = dist_nn.all_reduce(input.sum(dims)) / n  # (C,)
            centred = input - mean.view(shape)
            var = dist_nn.all_reduce(centred.pow(2).sum(dims)) / n  # (C,) biased
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                     else self.momentum)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * (n / max(n - 1, 1)), alpha=m)
        return out


def convert_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm layer of ``module`` computing global-batch statistics under DDP.

    CUDA: ``torch.nn.SyncBatchNorm.convert_sync_batchnorm``. CPU: :class:`GlobalBatchNorm`
    (same parameters and buffers, so checkpoints load into the plain model).
    """
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and \
            not isinstance(module, GlobalBatchNorm):
        new = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
        new.load_state_dict(module.state_dict())
        new.train(module.training)
        return new
    for name, child in module.named_children():
        module.add_module(name, convert_batchnorm(child, device))
    return module

