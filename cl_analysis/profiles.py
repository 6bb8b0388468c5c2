"""Run profiles: ``paper`` (exact setup, GPU), ``quick`` (CPU minutes), ``smoke`` (seconds).

A profile bundles the :class:`~cl_analysis.train.TrainConfig` overrides, the τ grid and losses
of the sweep, and the evaluation settings. Every notebook and CLI command takes a profile name,
so the paper's full experiment is one parameter away from the quick one.
"""

from __future__ import annotations

import copy
from typing import Any

from ._checks import check_choice

PAPER_HARD_FRACTION = 4095 / 50000  # K = 4095 of a 50,000-image bank (paper.md §1, Eq. 9)

PROFILES: dict[str, dict[str, Any]] = {
    # Wang & Liu §5.1 exactly: ResNet-18 (CIFAR stem), linear head 512->128, InstDisc bank
    # (m = 0.5), 200 epochs, batch 128, SGD lr 0.03 x0.1 at 160/190, wd 5e-4, K = 4095.
    "paper": {
        "train": dict(model="resnet18", head="linear", image_size=32, subset=None, epochs=200,
                      batch_size=128, lr=0.03, lr_milestones=(160, 190), weight_decay=5e-4,
                      hard_k=4095, hard_fraction=None, knn_every=1),
        "sweep": dict(losses=("info_nce", "hard", "simple", "hard_simple"),
                      temperatures=(0.07, 0.2, 0.3, 0.5, 0.7, 1.0)),
        "eval": dict(linear_probe=True, probe_epochs=100),
        "workers": 1,
        "description": "the paper's setup (ResNet-18, full CIFAR, 200 epochs): GPU work",
    },
    # CPU profile: a 4-block ConvNet on a stratified 5,000-image CIFAR-10 subset, 16x16 crops cut
    # from the 32x32 images. The hard loss keeps the paper's fraction of the bank (8.19 %). The
    # schedule is the paper's, scaled to 80 epochs (x0.1 at 80 % and 95 % of training).
    # head="bn_linear": with the paper's plain linear head, the post-ReLU features share one large
    # mean, every image starts at nearly the same z (mean cosine > 0.9), the bank fills with that
    # point within an epoch and low-τ runs sit collapsed (uniformity ≈ 0) for tens of epochs.
    # Centring the features first starts training spread out (see docs/quick_profile.md).
    "quick": {
        "train": dict(model="convnet", head="bn_linear", convnet_widths=(32, 64, 128, 256),
                      image_size=16, crop_from_full=True, subset=5000, epochs=80, batch_size=128,
                      lr=0.03, lr_milestones=(64, 76), weight_decay=5e-4, hard_k=None,
                      hard_fraction=PAPER_HARD_FRACTION, knn_every=10, monitor_size=2000),
        "sweep": dict(losses=("info_nce", "hard", "simple", "hard_simple"),
                      temperatures=(0.07, 0.3, 1.0)),
        "eval": dict(linear_probe=True, probe_epochs=100),
        "workers": 2,
        "description": "CPU minutes: ConvNet, 5,000 CIFAR-10 images, 16x16 crops, 80 epochs",
    },
    # Seconds: for tests, CI and the notebooks' fast mode. Shows nothing about the paper.
    "smoke": {
        "train": dict(model="convnet", head="linear", convnet_widths=(8, 16, 16, 16),
                      image_size=16, subset=200, epochs=2, batch_size=32, lr=0.03,
                      lr_milestones=(160, 190), weight_decay=5e-4, hard_k=None,
                      hard_fraction=PAPER_HARD_FRACTION, knn_every=1, monitor_size=200),
        "sweep": dict(losses=("info_nce", "hard", "simple", "hard_simple"),
                      temperatures=(0.07, 1.0)),
        "eval": dict(linear_probe=True, probe_epochs=5),
        "workers": 1,
        "description": "seconds: a tiny ConvNet on 200 images, 2 epochs (plumbing only)",
    },
}


def get_profile(name: str) -> dict[str, Any]:
    """A deep copy of profile ``name`` (``"paper" | "quick" | "smoke"``)."""
    check_choice("profile", name, PROFILES)
    return copy.deepcopy(PROFILES[name])


def profile_config(name: str, **overrides: Any):
    """The :class:`~cl_analysis.train.TrainConfig` of a profile, with ``overrides`` applied."""
    from .train import TrainConfig

    return TrainConfig(**{**get_profile(name)["train"], **overrides})


def profile_sweep(name: str, *, data_root: str | None = None, datasets=("cifar10",),
                  regimes=("memory_bank",), losses=None, temperatures=None, seed: int | None = None,
                  device: str | None = None, epochs: int | None = None):
    """The :class:`~cl_analysis.experiments.SweepSpec` of a profile (its losses, τ grid, eval)."""
    from .experiments import SweepSpec

    prof = get_profile(name)
    base = dict(prof["train"])
    for key, value in (("data_root", data_root), ("seed", seed), ("device", device),
                       ("epochs", epochs)):
        if value is not None:
            base[key] = value
    return SweepSpec(losses=tuple(losses or prof["sweep"]["losses"]),
                     temperatures=tuple(temperatures or prof["sweep"]["temperatures"]),
                     datasets=tuple(datasets), regimes=tuple(regimes), base=base,
                     linear_probe=prof["eval"]["linear_probe"],
                     probe_epochs=prof["eval"]["probe_epochs"], profile=name)
