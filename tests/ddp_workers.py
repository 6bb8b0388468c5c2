"""Worker functions of the 2-process gloo tests in tests/training/test_scale.py (run by mp.spawn).

Each worker joins a gloo group on localhost, does one task and writes what the parent compares
(``torch.save``) into ``out``; the parent computes the one-process reference itself.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def run(rank: int, world: int, port: int, task: str, out: str, kwargs: dict) -> None:
    """``torch.multiprocessing.spawn`` entry: join the group, run ``task``, leave the group."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        TASKS[task](rank, world, out, **kwargs)
    finally:
        dist.destroy_process_group()


def _embeddings(batch: int, dim: int, seed: int = 0) -> torch.Tensor:
    """Global view-1 and view-2 embeddings (2B, D), float64; rank-asymmetric by construction."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2 * batch, dim, generator=g, dtype=torch.float64)


class _LocalSliceGather(torch.autograd.Function):
    """lightly#1528's bug: all_gather whose backward keeps only the local slice (no sum)."""

    @staticmethod
    def forward(ctx, x):
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad):
        return grad.chunk(dist.get_world_size())[dist.get_rank()]


def simclr_loss_grad(rank: int, world: int, out: str, batch: int, dim: int, loss: str) -> None:
    """SimCLR loss and embedding gradients of this rank's slice through ``simclr_rows``.

    Also computes two peers' bugs on the same inputs (a gather backward that keeps only the local
    slice; positives indexed per rank without the global offset) so the parent can check that
    the test tells them apart.
    """
    from cl_analysis import losses, registry
    from cl_analysis.training import distributed
    from cl_analysis.training.trainer import simclr_rows

    u = _embeddings(batch, dim)
    sl = distributed.local_slice(batch)
    z_local = torch.cat([u[:batch][sl], u[batch:][sl]]).clone().requires_grad_(True)  # (2b, D)
    kw = dict(temperature=0.2, k=3 if loss == "hard" else None)
    sizes = distributed.slice_sizes(batch)
    scale = world * sizes[rank] / batch  # the trainer's rescaling of unequal slices (1 if equal)
    sim, pos = simclr_rows(z_local, batch)
    value = registry.compute(loss, sim, pos, **kw) * scale
    value.backward()
    total = value.detach().clone()
    dist.all_reduce(total)
    result = {"loss_mean": total / world, "grad": z_local.grad / world, "rows": sim.shape}
    if len(set(sizes)) > 1:  # the buggy variants below need equal slices
        torch.save(result, os.path.join(out, f"rank{rank}.pt"))
        return
    # bug 1: the gather's backward returns only the local slice
    zb = z_local.detach().clone().requires_grad_(True)
    g = _LocalSliceGather.apply(zb)  # (2B, D) rank blocks [v1_r; v2_r]
    starts = [2 * sum(sizes[:r]) for r in range(world)]
    order = torch.cat([torch.arange(s, s + n) for s, n in zip(starts, sizes)]
                      + [torch.arange(s + n, s + 2 * n) for s, n in zip(starts, sizes)])
    v = g[order]
    s_all, p_all = losses.simclr_similarity(v[:batch], v[batch:])
    rows = torch.cat([torch.arange(sl.start, sl.stop), torch.arange(sl.start, sl.stop) + batch])
    (registry.compute(loss, s_all[rows], p_all[rows], **kw) * scale).backward()
    result["grad_local_backward_bug"] = zb.grad / world
    # bug 2 (solo-learn#206): the positives of the local batch, without the rank's offset
    _, p_local = losses.simclr_similarity(z_local[: len(z_local) // 2].detach(),
                                          z_local[len(z_local) // 2:].detach())
    bug = registry.compute(loss, s_all[rows].detach(), p_local, **kw) * scale
    dist.all_reduce(bug)
    result["loss_offset_bug"] = bug / world
    torch.save(result, os.path.join(out, f"rank{rank}.pt"))


def train_steps(rank: int, world: int, out: str, config: dict, data: dict) -> None:
    """One epoch (3 optimizer steps) of a Trainer on the shared data; rank 0 saves the state."""
    from cl_analysis.training.config import TrainConfig
    from cl_analysis.training.data import ImageDataset
    from cl_analysis.training.trainer import Trainer

    train = ImageDataset(data["images"], data["labels"], [str(k) for k in range(4)], "synthetic",
                         "train", "test")
    trainer = Trainer(TrainConfig.from_dict(config), train, torch.device("cpu"))
    row = trainer.train_epoch(0, progress=False)
    state = {"model": trainer.model.state_dict(), "row": row,
             "bank": trainer.bank.bank.clone() if trainer.bank is not None else None}
    torch.save(state, os.path.join(out, f"rank{rank}.pt"))


def pretrain_resume(rank: int, world: int, out: str, config: dict, data: dict,
                    kill_epoch: int) -> None:
    """An uninterrupted DDP run into out/full; a run killed at ``kill_epoch`` and resumed into
    out/resumed."""
    from cl_analysis.training.config import TrainConfig
    from cl_analysis.training.data import ImageDataset
    from cl_analysis.training.pretrain import pretrain
    from cl_analysis.training.trainer import Trainer

    train = ImageDataset(data["images"], data["labels"], [str(k) for k in range(4)], "synthetic",
                         "train", "test")
    cfg = TrainConfig.from_dict(config)
    pretrain(cfg, os.path.join(out, "full"), train_set=train, progress=False)
    original = Trainer.train_epoch

    def killed(self, epoch, *args, **kwargs):
        if epoch == kill_epoch:
            raise KeyboardInterrupt(f"killed in epoch {epoch + 1}")
        return original(self, epoch, *args, **kwargs)

    Trainer.train_epoch = killed
    try:
        pretrain(cfg, os.path.join(out, "resumed"), train_set=train, progress=False)
    except KeyboardInterrupt:
        pass
    finally:
        Trainer.train_epoch = original
    dist.barrier()
    pretrain(cfg, os.path.join(out, "resumed"), train_set=train, resume=True, progress=False)


TASKS = {"simclr_loss_grad": simclr_loss_grad, "train_steps": train_steps,
         "pretrain_resume": pretrain_resume}
