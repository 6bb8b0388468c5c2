"""Run profiles: ``paper`` (exact setup, GPU), ``simclr``, ``quick`` (CPU minutes), ``smoke``.

A :class:`Profile` is typed data: a :class:`~cl_analysis.training.config.TrainConfig` (the fields
that differ from the paper's defaults), a :class:`SweepGrid` (losses x τ x seeds) and the number
of runs trained at once. Every notebook and CLI command takes a profile name, so the paper's full
experiment is one parameter away from the quick one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import registry
from .._checks import check_choice, check_temperature
from ..training.config import TrainConfig, scale_milestones

__all__ = ["Profile", "SweepGrid", "PROFILES", "get_profile", "profile_config"]


@dataclass(frozen=True)
class SweepGrid:
    """What a sweep varies: every loss x τ x seed; τ-free losses run once per seed.

    Attributes:
        losses: registry names (:data:`cl_analysis.registry.LOSS_NAMES`).
        temperatures: the τ grid of the losses that take one.
        seeds: run seeds; several seeds give the seed-to-seed spread of every metric.
    """

    losses: tuple[str, ...] = ("info_nce", "hard", "simple", "hard_simple")
    temperatures: tuple[float, ...] = (0.07, 0.3, 0.7, 1.0)
    seeds: tuple[int, ...] = (0,)

    def __post_init__(self):
        losses = tuple(registry.canonical(n) for n in _as_tuple("losses", self.losses))
        temps = tuple(check_temperature(t) for t in _as_tuple("temperatures", self.temperatures,
                                                              allow_empty=True))
        seeds = _as_tuple("seeds", self.seeds)
        for name, values in (("losses", losses), ("temperatures", temps), ("seeds", seeds)):
            if len(set(values)) != len(values):
                raise ValueError(f"{name} has duplicates: {list(values)}")
        if any(isinstance(s, bool) or int(s) != s or s < 0 for s in seeds):
            raise ValueError(f"seeds must be integers >= 0, got {list(seeds)}")
        if not temps and any(registry.get(n).takes_temperature for n in losses):
            raise ValueError("temperatures is empty but some losses take one; give a τ grid")
        object.__setattr__(self, "losses", losses)
        object.__setattr__(self, "temperatures", temps)
        object.__setattr__(self, "seeds", tuple(int(s) for s in seeds))


@dataclass(frozen=True)
class Profile:
    """A named run configuration plus the sweep grid and parallelism of its studies."""

    name: str
    description: str
    run: TrainConfig
    grid: SweepGrid = field(default_factory=SweepGrid)
    workers: int = 1  # runs trained at once (one process each)

    def config(self, **overrides: Any) -> TrainConfig:
        """This profile's run config with ``overrides`` (validated).

        Overriding ``epochs`` without ``lr_milestones`` scales the step milestones and warm-up
        to the new length (:func:`~cl_analysis.training.config.scale_milestones`).
        """
        base = self.run
        if "epochs" in overrides and "lr_milestones" not in overrides:
            base = scale_milestones(base, int(overrides["epochs"]))
        return base.replace(**overrides)


def _as_tuple(name: str, values, allow_empty: bool = False) -> tuple:
    if isinstance(values, (str, int, float)):
        values = (values,)
    values = tuple(values)
    if not values and not allow_empty:
        raise ValueError(f"{name} must not be empty")
    return values


_CONVNET = dict(model="convnet", image_size=16, subset=5000)
PROFILES: dict[str, Profile] = {p.name: p for p in (
    # Wang & Liu §5.1 exactly: ResNet-18 (CIFAR stem), linear head 512->128, InstDisc bank
    # (m = 0.5), 200 epochs, batch 128, SGD lr 0.03 x0.1 at 160/190, wd 5e-4, K = 4095 of 50,000.
    # GPU work: one CPU epoch takes ~19 min on 2 cores (2.6 days for 200 epochs).
    Profile("paper", "the paper's setup (ResNet-18, full CIFAR-10, 200 epochs): GPU work",
            TrainConfig(device="cuda"),
            SweepGrid(temperatures=(0.07, 0.2, 0.3, 0.5, 0.7, 1.0))),
    # SimCLR's CIFAR-10 setup (Chen et al. 2020, App. B.9): ResNet-18 CIFAR stem, MLP head,
    # in-batch negatives, batch 512, LARS replaced by SGD lr 0.06 x batch/256 = 0.5 (as the
    # SimCLR CIFAR reproductions do), cosine schedule with 10 warm-up epochs, wd 1e-6 (5e-4 for
    # SGD), τ = 0.5, colour strength s = 0.5, no blur; kNN monitor.
    Profile("simclr", "SimCLR's CIFAR-10 setup (ResNet-18, MLP head, batch 512, τ=0.5): GPU work",
            TrainConfig(regime="simclr", augment="simclr", head="mlp", batch_size=512, lr=0.5,
                        schedule="cosine", warmup_epochs=10, lr_milestones=(),
                        weight_decay=5e-4, temperature=0.5, epochs=500, device="cuda",
                        knn_every=10),
            SweepGrid(losses=("info_nce",), temperatures=(0.1, 0.2, 0.5, 1.0))),
    # CPU profile: a 4-block ConvNet on a stratified 5,000-image CIFAR-10 subset, 16x16 crops cut
    # from the 32x32 images, the paper's schedule scaled to 80 epochs (x0.1 at 64 and 76).
    # head="bn_linear": with the paper's plain linear head every image starts at nearly the same
    # z (mean cosine > 0.9) and low-τ runs sit collapsed for tens of epochs (docs/quick_profile.md).
    Profile("quick", "CPU minutes: ConvNet, 5,000 CIFAR-10 images, 16x16 crops, 80 epochs",
            TrainConfig(**_CONVNET, head="bn_linear", crop_from_full=True, epochs=80,
                        lr_milestones=(64, 76), knn_every=10, monitor_size=2000),
            SweepGrid(temperatures=(0.07, 0.3, 1.0)), workers=2),
    # Seconds: for tests, CI and the notebooks' fast mode. Shows nothing about the paper.
    Profile("smoke", "seconds: a tiny ConvNet on 200 images, 2 epochs (plumbing only)",
            TrainConfig(model="convnet", convnet_widths=(8, 16, 16, 16), image_size=16,
                        subset=200, epochs=2, batch_size=32, lr_milestones=(), knn_every=1,
                        monitor_size=200, probe_epochs=5, eval_test_size=500),
            SweepGrid(temperatures=(0.07, 1.0))),
)}


def get_profile(name: str) -> Profile:
    """The :class:`Profile` called ``name`` (``paper | simclr | quick | smoke``)."""
    check_choice("profile", name, PROFILES)
    return PROFILES[name]


def profile_config(name: str, **overrides: Any) -> TrainConfig:
    """The :class:`TrainConfig` of profile ``name`` with ``overrides`` (:meth:`Profile.config`)."""
    return get_profile(name).config(**overrides)
