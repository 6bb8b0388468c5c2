"""The training engine behind ``train.pretrain``: model, bank, optimiser, one epoch, monitoring.

Split from :mod:`cl_analysis.train` (which holds ``TrainConfig`` and the run-directory logic) to
keep modules small. The step order of the memory-bank regime follows the authors (Wang & Liu
§5.1, InstDisc): loss against the bank, backward, SGD step, then the bank update.

**No host sync in the step.** On a GPU the host must never wait for the device inside the loop:
the epoch's permutation travels once, the augmentation parameters in one non-blocking copy, the
input checks that read values (ranges, finiteness) run on the first step only (the loss is
checked for NaN once per epoch), the penalty-entropy and weighting-lens monitors run only in
monitored epochs (sums on the device, read back once per epoch), the
bank update of a batch of distinct indices is one vectorised write, constant tensors are built
once, and the loss is read back only at the end of the epoch (the progress bar shows the last
value whose copy has finished). ``tests/training/test_scale.py`` counts the syncs of a step.

**Data parallel** (``torchrun``, :mod:`.distributed`): every rank draws the global batch's
permutation and augmentation parameters from the same generator and embeds its slice; SimCLR
gathers every rank's embeddings with gradient, the memory bank is updated on every rank from the
gathered batch; the result equals one process with the same global batch.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from .. import diagnostics, gradients, losses, metrics, registry, weighting
from .._checks import value_checks
from . import augment, data, distributed
from .memory_bank import MemoryBank
from .models import ContrastiveModel, build_model
from .schedules import cosine_temperature, lr_at

if TYPE_CHECKING:
    from .config import TrainConfig

MONITOR_QUERIES = 1000  # augmented train anchors per epoch scored against the bank (authors: 1000)
# the logged histogram of log10 P_ip (the weighting lens): POSITIVE_BINS equal bins over
# POSITIVE_LOG10_RANGE, the first and last also holding what lies beyond (P_ip ~ 1/M at large τ)
POSITIVE_BINS = 20
POSITIVE_LOG10_RANGE = (-5.0, 0.0)
WEIGHT_METHODS = weighting.ANCHOR_STATISTICS[1:]  # the anchor weights logged per monitored epoch
WEIGHTING_KEYS = ("positive_probability", "positive_probability_hist",
                  *(f"anchor_log_weight_{stat}_{m}" for m in WEIGHT_METHODS
                    for stat in ("mean", "std")))  # the keys of Trainer._weighting_row
DIAGNOSTIC_ROWS = 2000  # monitor-set rows of the per-epoch label-free diagnostics (seeded subset)
DIAGNOSTIC_KEYS = tuple(f"{space}_{name}" for space in ("backbone", "projection") for name in (
    "rankme", "feature_std", "w2_uniformity", "neg_sim_mean", "neg_sim_var"))


def compute_loss(config: TrainConfig, similarity: torch.Tensor, positive: torch.Tensor,
                 temperature: float | torch.Tensor | None = None) -> torch.Tensor:
    """The configured loss (mean over anchors) on a (B, M) similarity matrix (via the registry).

    ``temperature``: this step's τ (a float, or the learnable 0-dim tensor); None: config's.
    """
    tau = config.temperature if temperature is None else temperature
    return registry.compute(config.loss, similarity, positive, temperature=tau,
                            k=config.hard_k, fraction=config.hard_fraction, lam=config.simple_lam,
                            # the authors' bank starts with random rows of norm != 1
                            unnormalized=config.regime == "memory_bank")


def simclr_rows(z: torch.Tensor, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's rows of SimCLR's global in-batch similarity matrix, with exact gradients.

    One process: ``losses.simclr_similarity(z[:batch], z[batch:])``. Under DDP, ``z`` holds this
    rank's ``[view 1; view 2]`` embeddings ``(2 b, D)`` of its slice of the global batch; every
    rank's rows are gathered with gradient (one collective whose backward sums every rank's
    gradient into the owner's rows), put in one process's order (all view-1 rows, then all
    view-2 rows), and this rank's anchors are selected from the global ``(2B, 2B - 1)`` matrix,
    positives included (no per-rank offset to get wrong). The mean loss over the returned rows,
    averaged over ranks (DDP), is the one-process loss and has its gradient (beyond.md §3.1).

    Args:
        z: ``(2 b, D)`` this rank's embeddings, view 1 then view 2 of the same b images.
        batch: the global batch size B (images).

    Returns:
        ``(similarity (2b, 2B - 1), positive (2b,))`` this rank's anchors.
    """
    if not distributed.is_distributed():
        return losses.simclr_similarity(z[:batch], z[batch:])
    sizes = distributed.slice_sizes(batch)
    gathered = distributed.gather_rows(z, [2 * n for n in sizes], grad=True)  # (2B, D)
    order, rows = _simclr_index(batch, distributed.world_size(), distributed.rank(), z.device)
    u = gathered[order]  # (2B, D): all view-1 rows, then all view-2 rows
    similarity, positive = losses.simclr_similarity(u[:batch], u[batch:])  # (2B, 2B - 1)
    return similarity[rows], positive[rows]


@functools.lru_cache(maxsize=16)
def _simclr_index(batch: int, world: int, rank: int,
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Constant index tensors of :func:`simclr_rows`, built (and copied to the device) once."""
    sizes = distributed.slice_sizes(batch, world)
    starts = [2 * sum(sizes[:r]) for r in range(world)]  # rank r holds [v1 of n_r; v2 of n_r]
    order = torch.cat([torch.arange(s, s + n) for s, n in zip(starts, sizes)]
                      + [torch.arange(s + n, s + 2 * n) for s, n in zip(starts, sizes)])
    start = sum(sizes[:rank])
    mine = torch.arange(start, start + sizes[rank])
    return order.to(device), torch.cat([mine, mine + batch]).to(device)


class Trainer:
    """Model, bank, optimiser, augmentation and RNG of one run; ``train_epoch`` does one epoch."""

    def __init__(self, config: TrainConfig, train_set: data.ImageDataset, device: torch.device):
        self.config, self.device = config, device
        self.cuda = device.type == "cuda"
        self.images = train_set.images.to(device)  # (N, 3, H, W) uint8, resident on the device
        self.labels = train_set.labels.to(device)  # (N,)
        torch.manual_seed(config.seed)
        self.model: ContrastiveModel = build_model(config.model, config.head, config.embedding_dim,
                                                   config.convnet_widths).to(device)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.world, self.rank = distributed.world_size(), distributed.rank()
        if self.world > 1 and config.sync_batchnorm:  # global-batch BN: as one process
            self.model = distributed.convert_batchnorm(self.model, device)
        self.net: torch.nn.Module = self.model  # what the training step calls
        if self.world > 1:
            ddp = torch.nn.parallel.DistributedDataParallel
            # global BN keeps the buffers equal on every rank: no per-step buffer broadcast
            sync = ("forward_sync_buffers" if "forward_sync_buffers" in
                    inspect.signature(ddp.__init__).parameters else "broadcast_buffers")
            self.net = ddp(self.model, device_ids=[device] if self.cuda else None,
                           **{sync: not config.sync_batchnorm})
        if config.compile and self.cuda:
            self.net = torch.compile(self.net)
        self.bank = None
        if config.regime == "memory_bank":
            g = torch.Generator().manual_seed(config.seed + 1)
            self.bank = MemoryBank(len(train_set), config.embedding_dim, config.bank_momentum,
                                   generator=g).to(device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=config.lr,
                                         momentum=config.momentum,
                                         weight_decay=config.weight_decay)
        self.log_temperature: torch.nn.Parameter | None = None
        if config.temperature_schedule == "learnable":  # log τ, optimised with the model
            self.log_temperature = torch.nn.Parameter(
                torch.tensor(math.log(config.temperature), device=device))
            self.optimizer.add_param_group({"params": [self.log_temperature],
                                            "weight_decay": 0.0})
        self._epoch_temperature = config.temperature  # the cosine schedule's τ of this epoch
        size = config.image_size
        self.augment = (augment.PaperAugment(size) if config.augment == "paper"
                        else augment.SimCLRAugment(size, strength=0.5)).to(device)
        self.eval_transform = augment.EvalTransform(size).to(device)
        self.generator = torch.Generator().manual_seed(config.seed + 2)  # data order + augment
        columns = len(self.images) if self.bank is not None else 2 * config.batch_size - 1
        if registry.get(config.loss).takes_k:  # fail before training if K exceeds the negatives
            config.hard_k_for(columns)
        self._queries: tuple[torch.Tensor, torch.Tensor] | None = None  # last epoch's anchors
        self._validated = False  # the first step runs the value checks (then: no host syncs)
        self._constants: dict[tuple, torch.Tensor] = {}  # index tensors built once per shape

    def autocast(self):
        """bf16 autocast on CUDA when ``config.amp``; a no-op elsewhere."""
        enabled = self.cuda and self.config.amp
        return torch.autocast("cuda", dtype=torch.bfloat16) if enabled else contextlib.nullcontext()

    def _embed_views(self, views: torch.Tensor, net: torch.nn.Module | None = None) -> torch.Tensor:
        if self.config.channels_last:
            views = views.contiguous(memory_format=torch.channels_last)
        with self.autocast():
            return (net or self.model)(views)  # (B, D) float32, unit norm

    @torch.no_grad()
    def embed_both(self, images: torch.Tensor,
                   batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
        """Eval-mode backbone h (N, F) and z (N, D) of uint8 images, one pass; z is ``embed``'s."""
        was_training = self.model.training
        self.model.eval()
        hs, zs = [], []
        for chunk in images.split(batch_size):
            views = self.eval_transform(chunk.to(self.device))
            if self.config.channels_last:
                views = views.contiguous(memory_format=torch.channels_last)
            with self.autocast():
                h = self.model.backbone(views)  # (b, F)
                z = torch.nn.functional.normalize(self.model.head(h).float(), dim=1)  # as forward
            hs.append(h.float())
            zs.append(z)
        self.model.train(was_training)
        return torch.cat(hs), torch.cat(zs)

    @torch.no_grad()
    def embed(self, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """Eval-mode z of uint8 images (no augmentation): (N, D) float32 on the device."""
        was_training = self.model.training
        self.model.eval()
        out = [self._embed_views(self.eval_transform(chunk.to(self.device)))
               for chunk in images.split(batch_size)]
        self.model.train(was_training)
        return torch.cat(out)

    def init_bank_from_features(self) -> None:
        """``bank_init="features"``: fill the bank with eval-mode embeddings of the images."""
        self.bank.fill(torch.arange(len(self.images), device=self.device), self.embed(self.images))

    def state(self, epoch: int, history: list[dict]) -> dict[str, Any]:
        """Everything needed to resume after ``epoch`` completed epochs."""
        rng = {"torch": torch.get_rng_state(), "data": self.generator.get_state()}
        if self.cuda:
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        out = {"format": 1, "config": self.config.to_dict(), "epoch": epoch,
               "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
               "bank": self.bank.state_dict() if self.bank is not None else None,
               "rng": rng, "history": history,
               "log_temperature": None if self.log_temperature is None
               else self.log_temperature.detach().clone()}
        if self.world > 1:  # a collective: every rank calls state(); rank 0 writes it
            out["rng_ranks"] = distributed.gather_objects(rng)
            out["world_size"] = self.world
        return out

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore a ``state()`` dict (possibly saved on another device)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.bank is not None:
            self.bank.load_state_dict(state["bank"])
        if self.log_temperature is not None:
            with torch.no_grad():
                self.log_temperature.copy_(state["log_temperature"])
        ranks = state.get("rng_ranks")  # a DDP checkpoint: each rank its own (same world size)
        rng = ranks[self.rank] if ranks is not None and len(ranks) == self.world else state["rng"]
        torch.set_rng_state(rng["torch"])
        self.generator.set_state(rng["data"])
        if self.cuda and "cuda" in rng:
            torch.cuda.set_rng_state(rng["cuda"], self.device)

    def _constant(self, key: tuple, build) -> torch.Tensor:
        """A constant tensor (e.g. an index list) built once per ``key`` and kept."""
        t = self._constants.get(key)
        if t is None:
            t = self._constants[key] = build()
        return t

    def _rank_rows(self, batch: int, copies: int) -> torch.Tensor:
        """This rank's rows (CPU int64) of the ``copies * batch`` views of a global batch.

        View copy c of image i is row ``c * batch + i``, as one process stacks them.
        """
        def build():
            sl = distributed.local_slice(batch)
            return torch.cat([torch.arange(sl.start, sl.stop) + c * batch for c in range(copies)])
        return self._constant(("rows", batch, copies), build)

    def _views(self, indices: torch.Tensor, copies: int) -> torch.Tensor:
        """Augmented views of this rank's share of the global batch ``indices`` (B,).

        The parameters of all ``copies * B`` views are drawn (one stream for any number of
        processes); this rank applies those of its rows. Returns ``(copies * b, 3, S, S)``.
        """
        batch = len(indices)
        height, width = self.images.shape[-2:]
        params = self.augment.sample_params(copies * batch, height, width,
                                            generator=self.generator)
        if self.world > 1:
            rows = self._rank_rows(batch, copies)
            params = {k: v.index_select(0, rows.to(v.device)) for k, v in params.items()}
            indices = indices[distributed.local_slice(batch)]
        x = self.images[indices]  # (b, 3, H, W) uint8
        if copies == 2:
            x = torch.cat([x, x])
        return self.augment.apply(x, params)

    def step_temperature(self, similarity: torch.Tensor,
                         positive: torch.Tensor) -> float | torch.Tensor:
        """τ of one step under ``config.temperature_schedule`` (issue 11 §3).

        constant: ``config.temperature`` itself (the float, so the arithmetic is the same as
        before the schedules existed); cosine: :func:`~.schedules.cosine_temperature` of the
        epoch; learnable: exp(log τ), a 0-dim tensor whose gradient reaches log τ (clamped to
        [temperature_min, temperature_max] after every step); macl: τ_A = τ (1 + α (A − A0))
        of :func:`cl_analysis.weighting.macl_temperature`, A = the batch's mean positive
        similarity (detached), applied to the configured loss (the MACL loss's anchor
        re-weighting is ``weighting.macl``).
        """
        cfg = self.config
        schedule = cfg.temperature_schedule
        if schedule == "constant":
            return cfg.temperature
        if schedule == "cosine":
            return self._epoch_temperature
        if schedule == "learnable":
            return self.log_temperature.exp()
        # macl_temperature reads only the positive column: pass (B, 2) [s_ip, 0], positive at 0;
        # a bank row not yet unit-norm (the authors' init) can give |s| slightly above 1
        pos = similarity.detach().gather(1, positive.view(-1, 1).long()).float().clamp(-1, 1)
        two = torch.cat([pos, torch.zeros_like(pos)], dim=1)  # (B, 2)
        first = torch.zeros(len(two), dtype=torch.long, device=two.device)
        return float(weighting.macl_temperature(two, first, cfg.temperature,
                                                alpha=cfg.macl_alpha, a0=cfg.macl_a0))

    def train_step(self, indices: torch.Tensor, lr: float) -> tuple[torch.Tensor, torch.Tensor,
                                                                   torch.Tensor, torch.Tensor]:
        """One SGD step on the global batch ``indices`` (B,) of distinct dataset indices.

        Returns ``(loss, similarity, positive, z)``: this rank's loss (its mean over its anchors
        times ``W n_rank / n_global``, whose average over ranks is the global-batch loss; one
        process: the loss), this rank's similarity rows and positives, and the detached
        embeddings (memory bank: of the whole global batch, rows in the order of ``indices``;
        SimCLR: this rank's views).
        """
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batch = len(indices)
        sizes = distributed.slice_sizes(batch) if self.world > 1 else [batch]
        if self.bank is not None:
            z = self._embed_views(self._views(indices, 1), self.net)  # (b, D)
            local = indices[distributed.local_slice(batch)] if self.world > 1 else indices
            similarity, positive = self.bank.similarity(z), local  # (b, N), (b,)
        else:
            views = self._views(indices, 2)  # (2b, 3, S, S): both views through one BN pass
            z = self._embed_views(views, self.net)  # (2b, D)
            similarity, positive = simclr_rows(z, batch)  # (2b, 2B-1), (2b,)
        tau = self.step_temperature(similarity, positive)
        self.last_temperature = tau
        loss = compute_loss(self.config, similarity, positive, tau)
        if self.world > 1 and sizes[self.rank] * self.world != batch:  # unequal slices
            loss = loss * (sizes[self.rank] * self.world / batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.world > 1 and self.log_temperature is not None and \
                self.log_temperature.grad is not None:  # outside DDP's model: average by hand
            distributed.all_reduce_sum(self.log_temperature.grad).div_(self.world)
        self.optimizer.step()
        if self.log_temperature is not None:  # clamp after the step, as CLIP's logit scale
            with torch.no_grad():
                self.log_temperature.clamp_(math.log(self.config.temperature_min),
                                            math.log(self.config.temperature_max))
        z = z.detach()
        if self.bank is not None:  # after the step, as the authors: the loss saw the old bank
            z = distributed.gather_rows(z, sizes, grad=False)  # (B, D): the same on every rank
            self.bank.update(indices, z, distinct=True)  # a batch is a slice of a permutation
        return loss.detach(), similarity.detach(), positive, z

    def _batches(self, perm: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The epoch's global batches on the device (one transfer for the whole epoch)."""
        cfg, n = self.config, len(perm)
        if cfg.regime == "simclr":
            if n < cfg.batch_size:
                raise ValueError(f"the simclr regime drops partial batches; {n} images < "
                                 f"batch_size={cfg.batch_size}: lower batch_size")
            perm = perm[: n - n % cfg.batch_size]
        elif self.world > 1 and 0 < n % cfg.batch_size < self.world:
            perm = perm[: n - n % cfg.batch_size]  # a last batch too small to give every rank one
        if self.cuda:
            perm = perm.pin_memory().to(self.device, non_blocking=True)
        else:
            perm = perm.to(self.device)
        return perm.split(cfg.batch_size)

    def train_epoch(self, epoch: int, progress: bool = True,
                    monitored: bool = True) -> dict[str, Any]:
        """One pass over a fresh permutation; returns the epoch's log row (no kNN yet).

        Args:
            epoch: 0-based epoch (sets the learning rate).
            progress: a tqdm bar over the batches (rank 0 only).
            monitored: compute the per-step monitor (penalty entropy, positive similarity, the
                weighting lens of ``WEIGHTING_KEYS``, the bank monitor's queries); False leaves
                them None (an epoch without monitor).

        Raises:
            ValueError: if the loss became NaN or inf during the epoch.
        """
        cfg = self.config
        perm = torch.randperm(len(self.images), generator=self.generator)  # (N,) CPU
        batches = self._batches(perm)
        sums = torch.zeros(4, device=self.device)  # loss, entropy, positive sim, anchors
        # the weighting lens: sum of P_ip, its histogram, per method the sums of log w_i and of
        # its square (float64: the variance comes from sums of squares); one read-back for both
        lens = torch.zeros(1 + POSITIVE_BINS + 2 * len(WEIGHT_METHODS), dtype=torch.float64,
                           device=self.device)
        tau_sum = torch.zeros((), dtype=torch.float64, device=self.device)  # τ of every step
        if cfg.temperature_schedule == "cosine":
            self._epoch_temperature = cosine_temperature(
                epoch, tau_min=cfg.temperature_min, tau_max=cfg.temperature_max,
                period=cfg.temperature_period)
        queries, query_labels = [], []
        log = cfg.log_metrics and monitored
        show = progress and self.rank == 0
        bar = tqdm(batches, desc=f"epoch {epoch + 1}", leave=False, disable=not show)
        shown = _LazyScalar(self.device) if show else None
        for step, idx in enumerate(bar):
            lr = lr_at(cfg.schedule, epoch, step, len(batches), base_lr=cfg.lr,
                       total_epochs=cfg.epochs, milestones=cfg.lr_milestones,
                       gamma=cfg.lr_gamma, warmup_epochs=cfg.warmup_epochs)
            with value_checks(not self._validated):
                loss, sim, pos, z = self.train_step(idx, lr)
                self._validated = True
                sums[0] += loss
                tau = self.last_temperature
                tau = tau.detach() if isinstance(tau, torch.Tensor) else tau
                if cfg.temperature_schedule != "constant":
                    tau_sum += tau
                if log:
                    rows = self._constant(("arange", len(pos), str(self.device)),
                                          lambda: torch.arange(len(pos), device=self.device))
                    sums[1] += gradients.penalty_entropy(sim, pos, tau,
                                                         unnormalized=True).sum()
                    sums[2] += sim[rows, pos].float().sum()
                    sums[3] += len(pos)
                    self._accumulate_weighting(lens, sim, pos, tau)
                    have = sum(len(q) for q in queries)
                    if self.bank is not None and have < MONITOR_QUERIES:
                        queries.append(z[: MONITOR_QUERIES - have])
                        query_labels.append(self.labels[idx[: MONITOR_QUERIES - have]])
            if shown is not None and step % 10 == 0:
                value = shown.read()
                if value is not None:
                    bar.set_postfix(loss=f"{value:.4f}")
                shown.record(loss)
        # the epoch's one read-back (float32 sums widen exactly to float64)
        s = distributed.all_reduce_sum(torch.cat([sums.double(), lens])).tolist()
        if not all(map(math.isfinite, s[:3])):
            raise ValueError(f"the loss became NaN or inf in epoch {epoch + 1} (sum {s[0]}); "
                             f"lower the learning rate (--lr) or check the data")
        loss_sum = s[0] / self.world if self.world > 1 else s[0]
        row = {"epoch": epoch + 1, "loss": loss_sum / len(batches), "lr": lr,
               "penalty_entropy": s[1] / s[3] if s[3] else None,
               "positive_similarity": s[2] / s[3] if s[3] else None,
               "temperature": cfg.temperature if cfg.temperature_schedule == "constant"
               else float(tau_sum) / len(batches)}  # mean τ of the epoch's steps
        row.update(self._weighting_row(s[3], s[4:]))
        self._queries = (torch.cat(queries), torch.cat(query_labels)) if queries else None
        return row

    def _accumulate_weighting(self, lens: torch.Tensor, sim: torch.Tensor, pos: torch.Tensor,
                              tau: float | torch.Tensor) -> None:
        """Add one step's weighting-lens sums to ``lens`` (no host sync; see train_epoch).

        The MACL column uses the config's α, A_0 and, under the MACL schedule (where ``tau``
        already is τ_A), the configured τ as its τ_0; otherwise the step's τ.
        """
        cfg = self.config
        stats = weighting.anchor_statistics(
            sim, pos, tau, alpha=cfg.macl_alpha, a0=cfg.macl_a0,
            macl_base=cfg.temperature if cfg.temperature_schedule == "macl" else None,
            validate=False,  # no value read back inside the epoch
        ).to(lens.dtype)  # (b, 4)
        p = stats[:, 0]
        lens[0] += p.sum()
        lo, hi = POSITIVE_LOG10_RANGE
        x = (torch.log10(p.clamp_min(torch.finfo(p.dtype).tiny)) - lo) * (POSITIVE_BINS / (hi - lo))
        x = torch.nan_to_num(x, nan=0.0)  # a NaN step is reported at the epoch's end, not here
        bins = x.floor().clamp_(0, POSITIVE_BINS - 1).long()  # (b,) log10 P_ip's bin
        lens[1:1 + POSITIVE_BINS].scatter_add_(0, bins, torch.ones_like(p))  # exact counts
        lw = stats[:, 1:]  # (b, methods) log w_i
        k, n_w = 1 + POSITIVE_BINS, len(WEIGHT_METHODS)
        lens[k:k + n_w] += lw.sum(0)
        lens[k + n_w:k + 2 * n_w] += (lw * lw).sum(0)

    @staticmethod
    def _weighting_row(n: float, lens: list[float]) -> dict[str, Any]:
        """The weighting lens of an epoch's ``n`` monitored anchors, from its ``lens`` sums.

        ``positive_probability``: mean P_ip (the positive's softmax probability at the step's
        τ, paper Eq. 2) over the epoch's anchors; ``positive_probability_hist``: the fraction of
        anchors in each of ``POSITIVE_BINS`` equal bins of log10 P_ip over
        ``POSITIVE_LOG10_RANGE`` (the end bins open); per method of
        ``WEIGHT_METHODS``, ``anchor_log_weight_mean_<m>`` / ``anchor_log_weight_std_<m>``:
        mean and population std (ddof = 0) over anchors of log w_i
        (:func:`cl_analysis.weighting.anchor_weights`). All None in an epoch without monitor.
        """
        if not n:
            return dict.fromkeys(WEIGHTING_KEYS)
        row: dict[str, Any] = {"positive_probability": lens[0] / n,
                               "positive_probability_hist": [c / n for c in
                                                             lens[1:1 + POSITIVE_BINS]]}
        k, n_w = 1 + POSITIVE_BINS, len(WEIGHT_METHODS)  # the layout of _accumulate_weighting
        for j, m in enumerate(WEIGHT_METHODS):
            mean = lens[k + j] / n
            var = max(lens[k + n_w + j] / n - mean * mean, 0.0)
            row[f"anchor_log_weight_mean_{m}"] = mean
            row[f"anchor_log_weight_std_{m}"] = math.sqrt(var)
        return row

    @torch.no_grad()
    def monitor(self, test_set: data.ImageDataset | None) -> dict[str, Any]:
        """Monitor: kNN accuracy on the test set, uniformity and tolerance (Eq. 10, 11).

        Memory bank: the authors' protocol, this epoch's first ``MONITOR_QUERIES`` augmented
        training embeddings against the bank; kNN uses the bank as the training features.
        SimCLR: eval-mode embeddings of (up to ``monitor_size``) training images.
        """
        out: dict[str, Any] = {"knn_accuracy": None, "uniformity": None, "tolerance": None}
        if self.bank is not None:
            # rows not yet updated (a partial epoch) keep the authors' unnormalised init
            train_z = torch.nn.functional.normalize(self.bank.bank, dim=1)  # (N, D) unit rows
            train_y = self.labels  # (N,)
            if self._queries is not None:
                q, qy = self._queries
                out["uniformity"] = float(metrics.uniformity_bank(q, train_z))
                out["tolerance"] = float(metrics.tolerance_bank(q, qy, train_z, train_y))
        else:
            n, cap = len(self.images), self.config.monitor_size
            g = torch.Generator().manual_seed(self.config.seed)  # the same subset every epoch
            idx = torch.randperm(n, generator=g)[:cap] if cap is not None and cap < n else \
                torch.arange(n)
            idx = idx.to(self.device)
            train_z, train_y = self.embed(self.images[idx]), self.labels[idx]  # (n, D), (n,)
            out["uniformity"] = float(metrics.uniformity(train_z))
            out["tolerance"] = float(metrics.tolerance(train_z, train_y))
        if test_set is not None and len(test_set):
            test_h, test_z = self.embed_both(test_set.images)  # (T, F), (T, D)
            out.update(self.diagnostics(test_h, test_z))
            out["knn_accuracy"] = float(metrics.knn_accuracy(
                train_z, train_y, test_z, test_set.labels.to(self.device),
                k=min(200, len(train_z)), temperature=0.07))  # the InstDisc monitor
        else:  # no test set: the diagnostics on (up to DIAGNOSTIC_ROWS) training images
            g = torch.Generator().manual_seed(self.config.seed)
            idx = torch.randperm(len(self.images), generator=g)[:DIAGNOSTIC_ROWS]
            out.update(self.diagnostics(*self.embed_both(self.images[idx.to(self.device)])))
        return out

    @torch.no_grad()
    def diagnostics(self, h: torch.Tensor, z: torch.Tensor) -> dict[str, float]:
        """The cheap label-free diagnostics (issue 11 §2) of backbone h and projection z.

        On a seeded subset of at most ``DIAGNOSTIC_ROWS`` monitor rows, L2-normalised: RankMe
        (Garrido et al. 2023), feature std (1/sqrt(dim) uniform, 0 collapsed), W2 uniformity
        (Fang et al. 2024; 0 uniform, sqrt(2) collapsed), mean and variance of the pairwise
        cosine similarities of distinct rows (the negatives). Keys: ``DIAGNOSTIC_KEYS``.
        """
        g = torch.Generator().manual_seed(self.config.seed)
        pick = torch.randperm(len(z), generator=g)[:DIAGNOSTIC_ROWS].to(z.device)
        out: dict[str, float] = {}
        for space, x in (("backbone", h), ("projection", z)):
            u = torch.nn.functional.normalize(x[pick].double(), dim=1)  # (n, dim)
            sim = (u @ u.T).clamp(-1, 1)  # (n, n); the diagonal is each row's "positive"
            neg = diagnostics.negative_similarity_stats(sim, torch.arange(len(u), device=u.device))
            out.update({f"{space}_rankme": diagnostics.rankme(u),
                        f"{space}_feature_std": diagnostics.feature_std(u),
                        f"{space}_w2_uniformity": diagnostics.wasserstein_uniformity(u),
                        f"{space}_neg_sim_mean": neg["mean"], f"{space}_neg_sim_var": neg["var"]})
        return out


class _LazyScalar:
    """A loss value for the progress bar, read without a host sync.

    ``record`` starts a non-blocking copy to pinned host memory and records a CUDA event;
    ``read`` returns the last recorded value once its event has completed (``event.query()``
    does not block), else None. On a CPU the value is read directly.
    """

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.buffer = torch.zeros((), pin_memory=self.cuda)
        self.event = torch.cuda.Event() if self.cuda else None
        self.pending = False

    def record(self, value: torch.Tensor) -> None:
        """Start copying the 0-dim ``value`` to the host."""
        self.buffer.copy_(value.detach().float(), non_blocking=self.cuda)
        if self.event is not None:
            self.event.record()
        self.pending = True

    def read(self) -> float | None:
        """The last recorded value if its copy has finished, else None."""
        if not self.pending or (self.event is not None and not self.event.query()):
            return None
        return float(self.buffer)
