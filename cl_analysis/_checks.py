"""Input validation shared by every module.

Every error is a ``ValueError`` in one style (docs/conventions.md): *what* is wrong, what was
*expected*, what was *got*, and *how to fix* it, e.g. ``"labels: expected an integer dtype, got
torch.float32; pass labels.long()"``.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterable, Iterator

import torch
from torch import Tensor

#: |s| may exceed 1 by this much (per dtype) before similarities count as unnormalised.
_ROUNDING = {torch.float64: 1e-6, torch.float32: 1e-4, torch.float16: 4e-3, torch.bfloat16: 3e-2}

_UNNORMALISED_HINT = (
    "similarities of L2-normalised vectors lie in [-1, 1]; did you pass embeddings (N, D) where "
    "the similarity matrix belongs, or unnormalised dot products q @ b.T of raw features? Use "
    "losses.cosine_similarity(a, b), or pass unnormalized=True if the values are scaled on "
    "purpose (e.g. logits already divided by a temperature)"
)


_STATE = threading.local()  # per thread: are value-dependent (host-syncing) checks on?


def value_checks_enabled() -> bool:
    """Whether value-dependent checks run (on by default; see :func:`value_checks`)."""
    return getattr(_STATE, "enabled", True)


@contextlib.contextmanager
def value_checks(enabled: bool) -> Iterator[None]:
    """Switch the checks that read tensor *values* (ranges, finiteness) on or off in a block.

    Shape and dtype checks always run: they read Python metadata, not tensor values. The value
    checks (``check_finite``, the range checks of ``check_similarity``) need ``bool(tensor)``:
    on a GPU that is a host sync, which stalls a training step until the GPU has caught up. The
    trainer validates its first step with them on and runs the remaining steps inside
    ``value_checks(False)``, checking the loss for NaN once per epoch instead. Thread-local;
    the previous setting is restored on exit.
    """
    previous = value_checks_enabled()
    _STATE.enabled = bool(enabled)
    try:
        yield
    finally:
        _STATE.enabled = previous


def check_temperature(temperature: float | Tensor, name: str = "temperature") -> float | Tensor:
    """Validate tau > 0 and finite; return a float, or the tensor itself so its gradient survives.

    Rule (docs/conventions.md, "learnable temperature"): a 0-dim floating tensor is accepted and
    returned unchanged — never ``float()``-ed — so a learnable tau (CLIP's logit scale, MACL)
    receives dL/dtau. Its value is checked without touching the autograd graph: on the CPU
    directly, on an accelerator with ``torch._assert_async`` (no host sync).
    """
    if isinstance(temperature, Tensor):
        if temperature.numel() != 1 or not temperature.is_floating_point():
            raise ValueError(
                f"{name}: expected a positive number or a 0-dim floating tensor, got a "
                f"{temperature.dtype} tensor of shape {tuple(temperature.shape)}; pass e.g. "
                f"torch.tensor(0.2, requires_grad=True)")
        tau = temperature.reshape(())
        ok = torch.isfinite(tau.detach()) & (tau.detach() > 0)
        if tau.device.type == "cpu":
            if not bool(ok):
                raise ValueError(f"{name}: expected a finite value > 0 (the paper uses 0.05 to "
                                 f"1.0), got {tau.item()!r}; parametrise it as exp(log_tau)")
        else:
            torch._assert_async(ok, f"{name} must be finite and > 0")
        return tau
    try:
        value = float(temperature)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a positive number, got {temperature!r}; pass a float "
                         f"such as 0.2") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(
            f"{name}: expected a finite number > 0 (the paper uses 0.05 to 1.0), got "
            f"{temperature!r}; pass e.g. 0.2")
    return value


def check_constant(name: str, value) -> None:
    """Refuse a hyperparameter tensor that requires grad where only tau carries a gradient.

    Rule (docs/conventions.md): temperature is the one learnable hyperparameter; lam, margin,
    beta, tau_plus, alpha and t are constants, and a requires-grad tensor for them would be
    silently detached by ``float()``, so it is refused.
    """
    if isinstance(value, Tensor) and value.requires_grad:
        raise ValueError(
            f"{name}: expected a constant (float), got a tensor that requires grad; only "
            f"temperature carries a gradient in cl_analysis — pass {name}.item() or learn tau "
            f"instead")


def check_finite(name: str, x: Tensor) -> None:
    """Raise if ``x`` holds NaN or inf (a diverged model or unnormalised garbage upstream).

    Skipped inside ``value_checks(False)`` (it reads a tensor value: a host sync on a GPU).
    """
    if value_checks_enabled() and not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(
            f"{name}: expected finite values, got {bad} NaN/inf value(s); check the model output "
            f"or lower the learning rate")


def check_matrix(name: str, x: Tensor, dims: str = "(N, D)") -> None:
    """Raise unless ``x`` is a 2-D floating tensor; ``dims`` names its axes in the message."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor of shape {dims}, got "
                         f"{type(x).__name__}; wrap it with torch.as_tensor")
    if x.dim() != 2:
        raise ValueError(f"{name}: expected a 2-D tensor of shape {dims}, got shape "
                         f"{tuple(x.shape)}; reshape it (one row per sample)")
    if not x.is_floating_point():
        raise ValueError(f"{name}: expected a floating dtype, got {x.dtype}; pass {name}.float()")


def check_index_vector(name: str, x: Tensor, n: int, allow_bool: bool = False) -> Tensor:
    """Raise unless ``x`` is an integer (or bool) tensor of shape ``(n,)`` (dtype checked first)."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name}: expected an integer tensor of shape ({n},), got "
                         f"{type(x).__name__}; wrap it with torch.as_tensor(..., dtype=torch.long)")
    if x.is_floating_point() or x.is_complex() or (x.dtype == torch.bool and not allow_bool):
        raise ValueError(f"{name}: expected an integer dtype, got {x.dtype}; pass {name}.long()")
    if tuple(x.shape) != (n,):
        raise ValueError(f"{name}: expected shape ({n},) (one per row), got {tuple(x.shape)}")
    return x


def check_similarity(similarity: Tensor, positive: Tensor, unnormalized: bool = False) -> None:
    """Validate the paper's similarity matrix (N, M) and the positive column of each row (N,).

    Rule (docs/conventions.md, "similarities"): values must be finite and, unless
    ``unnormalized=True``, lie in [-1, 1] up to the rounding of their dtype — the cosine
    similarities of Wang & Liu §3. One host sync checks both; inside ``value_checks(False)``
    only the shapes and dtypes are checked (no sync).
    """
    check_matrix("similarity", similarity, "(N, M)")
    n, m = similarity.shape
    check_index_vector("positive", positive, n)
    if m < 2:
        raise ValueError(f"similarity: expected at least 2 columns (a positive and a negative), "
                         f"got shape {tuple(similarity.shape)}; add negatives")
    if not value_checks_enabled():  # the value checks below sync a GPU (see value_checks)
        return
    if n and (positive.min() < 0 or positive.max() >= m):
        raise ValueError(
            f"positive: expected column indices in [0, {m - 1}], got min {int(positive.min())} "
            f"max {int(positive.max())}; index the columns of similarity")
    s = similarity.detach()
    finite = torch.isfinite(s).all()
    tol = _ROUNDING.get(s.dtype, 1e-4)
    inside = (s.abs() <= 1 + tol).all() if n else torch.ones((), dtype=torch.bool, device=s.device)
    finite, inside = torch.stack([finite, inside]).tolist()
    if not finite:
        check_finite("similarity", similarity)
    if not unnormalized and not inside:
        top = float(s.abs().max())
        raise ValueError(f"similarity: expected values in [-1, 1], got max |s| = {top:.4g}; "
                         + _UNNORMALISED_HINT)


def check_choice(name: str, value: str, choices: Iterable[str]) -> str:
    """Raise unless ``value`` is one of ``choices``; the message lists the valid ones."""
    choices = list(choices)
    if value not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(map(str, choices))}, got {value!r}")
    return value
