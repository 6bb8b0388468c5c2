"""Learning-rate schedules as pure functions of (epoch, step_in_epoch, steps_per_epoch).

Being stateless, they resume trivially: the lr of any step is recomputed from its position.
Epochs are 0-based.

* ``step_lr`` — Wang & Liu §5.1: lr 0.03, x0.1 at epochs 160 and 190, 200 epochs (per epoch).
* ``warmup_cosine_lr`` — SimCLR (Chen et al. 2020, §4 and App. B.9): linear warm-up, then cosine
  decay to 0 without restarts, stepped per iteration.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .._checks import check_choice

SCHEDULES = ("step", "cosine")


def _check_position(epoch: int, step_in_epoch: int, steps_per_epoch: int) -> None:
    if steps_per_epoch < 1 or epoch < 0 or not 0 <= step_in_epoch < steps_per_epoch:
        raise ValueError(f"need epoch >= 0, steps_per_epoch >= 1 and 0 <= step_in_epoch < "
                         f"steps_per_epoch, got ({epoch}, {step_in_epoch}, {steps_per_epoch})")


def _warmup_factor(epoch: int, step_in_epoch: int, steps_per_epoch: int,
                   warmup_epochs: float) -> float:
    """Linear ramp (k + 1) / warmup_steps over the first ``warmup_epochs``; 1 afterwards."""
    warmup_steps = round(warmup_epochs * steps_per_epoch)
    k = epoch * steps_per_epoch + step_in_epoch  # global step
    return (k + 1) / warmup_steps if k < warmup_steps else 1.0


def step_lr(epoch: int, step_in_epoch: int = 0, steps_per_epoch: int = 1, *,
            base_lr: float = 0.03, milestones: Sequence[int] = (160, 190), gamma: float = 0.1,
            warmup_epochs: float = 0) -> float:
    """Step schedule of the paper: ``base_lr * gamma ** #{m in milestones : epoch >= m}``.

    Args:
        epoch: 0-based epoch; epochs 0..159 use 0.03, 160..189 0.003, 190.. 0.0003 by default.
        step_in_epoch: step within the epoch (only used by the optional warm-up).
        steps_per_epoch: iterations per epoch.
        base_lr: initial lr (0.03 in the paper).
        milestones: epochs at which the lr is multiplied by ``gamma``.
        gamma: decay factor (0.1).
        warmup_epochs: optional linear warm-up (0 in the paper).

    Returns:
        The learning rate for that step.
    """
    _check_position(epoch, step_in_epoch, steps_per_epoch)
    decays = sum(1 for m in milestones if epoch >= m)
    warm = _warmup_factor(epoch, step_in_epoch, steps_per_epoch, warmup_epochs)
    return base_lr * gamma**decays * warm


def warmup_cosine_lr(epoch: int, step_in_epoch: int, steps_per_epoch: int, *, base_lr: float,
                     total_epochs: int, warmup_epochs: float = 0, final_lr: float = 0.0) -> float:
    """SimCLR's schedule: linear warm-up, then cosine from ``base_lr`` to ``final_lr``.

    With W warm-up steps and T total steps, step k gets ``base_lr * (k + 1) / W`` for k < W and
    ``final_lr + (base_lr - final_lr) * (1 + cos(pi * (k - W) / (T - W))) / 2`` otherwise, so the
    lr reaches ``final_lr`` at k = T (the end of training).

    Args:
        epoch: 0-based epoch.
        step_in_epoch: step within the epoch.
        steps_per_epoch: iterations per epoch.
        base_lr: peak lr, reached at the end of the warm-up.
        total_epochs: length of the run.
        warmup_epochs: warm-up length in epochs (SimCLR: 10 of 100 on ImageNet).
        final_lr: lr at the end of training (0 in SimCLR).

    Returns:
        The learning rate for that step.
    """
    _check_position(epoch, step_in_epoch, steps_per_epoch)
    if total_epochs < 1 or not 0 <= warmup_epochs <= total_epochs:
        raise ValueError(f"need total_epochs >= 1 and 0 <= warmup_epochs <= total_epochs, got "
                         f"total_epochs={total_epochs}, warmup_epochs={warmup_epochs}")
    warmup_steps = round(warmup_epochs * steps_per_epoch)
    total_steps = total_epochs * steps_per_epoch
    k = epoch * steps_per_epoch + step_in_epoch
    if k < warmup_steps:
        return base_lr * (k + 1) / warmup_steps
    progress = min((k - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
    return final_lr + (base_lr - final_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def lr_at(schedule: str, epoch: int, step_in_epoch: int, steps_per_epoch: int, *,
          base_lr: float, total_epochs: int, milestones: Sequence[int] = (160, 190),
          gamma: float = 0.1, warmup_epochs: float = 0) -> float:
    """Dispatch to ``step_lr`` or ``warmup_cosine_lr`` by name ("step" | "cosine")."""
    check_choice("schedule", schedule, SCHEDULES)
    if schedule == "step":
        return step_lr(epoch, step_in_epoch, steps_per_epoch, base_lr=base_lr,
                       milestones=milestones, gamma=gamma, warmup_epochs=warmup_epochs)
    return warmup_cosine_lr(epoch, step_in_epoch, steps_per_epoch, base_lr=base_lr,
                            total_epochs=total_epochs, warmup_epochs=warmup_epochs)


# --- temperature dynamics (issue 11 §3)
TEMPERATURE_SCHEDULES = ("constant", "cosine", "learnable", "macl")


def cosine_temperature(epoch: int, *, tau_min: float, tau_max: float, period: int) -> float:
    """Kukleva et al. (ICLR 2023) cosine temperature of 0-based ``epoch``, constant within it.

    "Temperature Schedules for Self-Supervised Contrastive Methods on Long-Tail Data" (repo
    ``Annusha/temperature_schedules``, ``--adj_tau cos``):

        tau(e) = tau_min + (tau_max - tau_min) * (1 + cos(2 pi e / period)) / 2,

    so tau starts at tau_max, reaches tau_min at e = period / 2 and is back at tau_max at
    e = period (Kukleva's ``--t_max`` T is the half period: period = 2 T; CIFAR: T = 200).

    Args:
        epoch: 0-based epoch >= 0.
        tau_min: lowest temperature, > 0.
        tau_max: highest temperature, >= tau_min.
        period: full period in epochs, >= 1.

    Returns:
        tau(epoch) in [tau_min, tau_max].

    Raises:
        ValueError: on a negative epoch, period < 1 or not 0 < tau_min <= tau_max.
    """
    if epoch < 0 or period < 1 or not 0 < tau_min <= tau_max:
        raise ValueError(f"cosine_temperature needs epoch >= 0, period >= 1 and "
                         f"0 < tau_min <= tau_max, got epoch={epoch}, period={period}, "
                         f"tau_min={tau_min}, tau_max={tau_max}")
    return tau_min + (tau_max - tau_min) * 0.5 * (1.0 + math.cos(2.0 * math.pi * epoch / period))
