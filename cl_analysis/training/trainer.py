"""The training engine behind ``train.pretrain``: model, bank, optimiser, one epoch, monitoring.

Split from :mod:`cl_analysis.train` (which holds ``TrainConfig`` and the run-directory logic) to
keep modules small. The step order of the memory-bank regime follows the authors (Wang & Liu
§5.1, InstDisc): loss against the bank, backward, SGD step, then the bank update.
"""

from __future__ import annotations

import contextlib
import math
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from .. import diagnostics, gradients, losses, metrics, registry, weighting
from . import augment, data
from .memory_bank import MemoryBank
from .models import ContrastiveModel, build_model
from .schedules import cosine_temperature, lr_at

if TYPE_CHECKING:
    from .config import TrainConfig

MONITOR_QUERIES = 1000  # augmented train anchors per epoch scored against the bank (authors: 1000)
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

    def autocast(self):
        """bf16 autocast on CUDA when ``config.amp``; a no-op elsewhere."""
        enabled = self.cuda and self.config.amp
        return torch.autocast("cuda", dtype=torch.bfloat16) if enabled else contextlib.nullcontext()

    def _embed_views(self, views: torch.Tensor) -> torch.Tensor:
        if self.config.channels_last:
            views = views.contiguous(memory_format=torch.channels_last)
        with self.autocast():
            return self.model(views)  # (B, D) float32, unit norm

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
        return {"format": 1, "config": self.config.to_dict(), "epoch": epoch,
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "bank": self.bank.state_dict() if self.bank is not None else None,
                "rng": rng, "history": history,
                "log_temperature": None if self.log_temperature is None
                else self.log_temperature.detach().clone()}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore a ``state()`` dict (possibly saved on another device)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.bank is not None:
            self.bank.load_state_dict(state["bank"])
        if self.log_temperature is not None:
            with torch.no_grad():
                self.log_temperature.copy_(state["log_temperature"])
        torch.set_rng_state(state["rng"]["torch"])
        self.generator.set_state(state["rng"]["data"])
        if self.cuda and "cuda" in state["rng"]:
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)

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
        """One SGD step on the images ``indices`` (B,); returns (loss, similarity, positive, z)."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x = self.images[indices]  # (B, 3, H, W) uint8
        if self.bank is not None:
            z = self._embed_views(self.augment(x, generator=self.generator))  # (B, D)
            similarity, positive = self.bank.similarity(z), indices  # (B, N), (B,)
        else:
            views = self.augment(torch.cat([x, x]), generator=self.generator)  # (2B, 3, S, S)
            z = self._embed_views(views)  # (2B, D): both views through one BN pass
            similarity, positive = losses.simclr_similarity(z[: len(x)], z[len(x):])  # (2B, 2B-1)
        tau = self.step_temperature(similarity, positive)
        self.last_temperature = tau
        loss = compute_loss(self.config, similarity, positive, tau)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.log_temperature is not None:  # clamp after the step, as CLIP's logit scale
            with torch.no_grad():
                self.log_temperature.clamp_(math.log(self.config.temperature_min),
                                            math.log(self.config.temperature_max))
        if self.bank is not None:  # after the step, as the authors: the loss saw the old bank
            self.bank.update(indices, z.detach())
        return loss.detach(), similarity.detach(), positive, z.detach()

    def train_epoch(self, epoch: int, progress: bool = True) -> dict[str, Any]:
        """One pass over a fresh permutation; returns the epoch's log row (no kNN yet)."""
        cfg, n = self.config, len(self.images)
        perm = torch.randperm(n, generator=self.generator)  # (N,) CPU
        if cfg.regime == "simclr":
            if n < cfg.batch_size:
                raise ValueError(f"the simclr regime drops partial batches; {n} images < "
                                 f"batch_size={cfg.batch_size}: lower batch_size")
            perm = perm[: n - n % cfg.batch_size]
        batches = perm.split(cfg.batch_size)
        sums = torch.zeros(4, device=self.device)  # loss, entropy, positive sim, anchors
        tau_sum = torch.zeros((), dtype=torch.float64, device=self.device)  # τ of every step
        if cfg.temperature_schedule == "cosine":
            self._epoch_temperature = cosine_temperature(
                epoch, tau_min=cfg.temperature_min, tau_max=cfg.temperature_max,
                period=cfg.temperature_period)
        queries, query_labels = [], []
        bar = tqdm(batches, desc=f"epoch {epoch + 1}", leave=False, disable=not progress)
        for step, idx in enumerate(bar):
            lr = lr_at(cfg.schedule, epoch, step, len(batches), base_lr=cfg.lr,
                       total_epochs=cfg.epochs, milestones=cfg.lr_milestones,
                       gamma=cfg.lr_gamma, warmup_epochs=cfg.warmup_epochs)
            idx = idx.to(self.device)
            loss, sim, pos, z = self.train_step(idx, lr)
            sums[0] += loss
            tau = self.last_temperature
            tau = tau.detach() if isinstance(tau, torch.Tensor) else tau
            if cfg.temperature_schedule != "constant":
                tau_sum += tau
            if cfg.log_metrics:
                rows = torch.arange(len(pos), device=self.device)
                sums[1] += gradients.penalty_entropy(sim, pos, tau, unnormalized=True).sum()
                sums[2] += sim[rows, pos].float().sum()
                sums[3] += len(pos)
                have = sum(len(q) for q in queries)
                if self.bank is not None and have < MONITOR_QUERIES:
                    queries.append(z[: MONITOR_QUERIES - have])
                    query_labels.append(self.labels[idx[: MONITOR_QUERIES - have]])
            if progress and step % 10 == 0:
                bar.set_postfix(loss=f"{loss.item():.4f}")
        s = sums.tolist()
        row = {"epoch": epoch + 1, "loss": s[0] / len(batches), "lr": lr,
               "penalty_entropy": s[1] / s[3] if s[3] else None,
               "positive_similarity": s[2] / s[3] if s[3] else None,
               "temperature": cfg.temperature if cfg.temperature_schedule == "constant"
               else float(tau_sum) / len(batches)}  # mean τ of the epoch's steps
        self._queries = (torch.cat(queries), torch.cat(query_labels)) if queries else None
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
