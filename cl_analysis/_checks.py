"""Input validation shared by every module: ``ValueError``s that name the problem and the fix."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor


def check_temperature(temperature: float, name: str = "temperature") -> float:
    """Return ``temperature`` as a float, or raise if it is not a finite number > 0."""
    try:
        value = float(temperature)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {temperature!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(
            f"{name} must be finite and > 0 (the paper uses 0.05 to 1.0), got {temperature!r}"
        )
    return value


def check_finite(name: str, x: Tensor) -> None:
    """Raise if ``x`` holds NaN or inf (a diverged model or unnormalised garbage upstream)."""
    if not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(
            f"{name} contains {bad} NaN/inf value(s); check the model output or lower the lr"
        )


def check_matrix(name: str, x: Tensor) -> None:
    """Raise unless ``x`` is a 2-D floating tensor."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name} must be 2-D (N, M), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor, got dtype {x.dtype}")


def check_similarity(similarity: Tensor, positive: Tensor) -> None:
    """Validate the paper's similarity matrix (N, M) and the positive column of each row (N,)."""
    check_matrix("similarity", similarity)
    n, m = similarity.shape
    if not isinstance(positive, Tensor):
        raise ValueError(f"positive must be a LongTensor of shape ({n},), got {type(positive)}")
    if positive.shape != (n,):
        raise ValueError(
            f"positive must have shape (N,) = ({n},) to match similarity "
            f"{tuple(similarity.shape)}, got {tuple(positive.shape)}"
        )
    if positive.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"positive must hold integer column indices, got dtype {positive.dtype}")
    if m < 2:
        raise ValueError(
            f"similarity needs at least 2 columns (a positive and a negative), got {m}"
        )
    if n and (positive.min() < 0 or positive.max() >= m):
        raise ValueError(
            f"positive indices must lie in [0, {m - 1}] (columns of similarity), "
            f"got min {int(positive.min())} max {int(positive.max())}"
        )
    check_finite("similarity", similarity)


def check_choice(name: str, value: str, choices: Iterable[str]) -> str:
    """Raise unless ``value`` is one of ``choices``; the message lists the valid ones."""
    choices = list(choices)
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; valid options: {', '.join(map(str, choices))}")
    return value
