"""The loss registry: one table of the trainable similarity-matrix losses of Wang & Liu (CVPR 2021).

Every layer that names a loss reads this table: the trainer (:func:`compute`), the run
configuration and the CLI (the valid ``loss`` choices), the sweeps (which losses take a
temperature and run once per τ), the toy simulations and the plots (labels, colours). The number K
of hard negatives kept by Eq. 9 is computed in one place, :func:`hard_k`.

Run names are short (``"hard"``); the library function is ``losses.hard_info_nce``; both spellings
are accepted everywhere through :func:`canonical`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from . import losses

__all__ = ["LossSpec", "LOSSES", "LOSS_NAMES", "TAU_FREE_LOSSES", "PAPER_HARD_FRACTION",
           "canonical", "get", "hard_k", "compute"]

# K = 4095 hardest negatives of a 50,000-entry memory bank (Wang & Liu §5.1, Eq. 9).
PAPER_HARD_FRACTION = 4095 / 50000


@dataclass(frozen=True)
class LossSpec:
    """One trainable loss on the (N, M) similarity matrix.

    Attributes:
        name: the run/table name (``"info_nce"``, ``"hard"``, ...).
        function: the library function of :mod:`cl_analysis.losses`.
        label: the paper's word for it, used in plots and tables.
        equation: where the paper defines it.
        takes_temperature: True if the loss has a temperature τ (swept per τ); False: run once.
        takes_k: True if the loss keeps only the K hardest negatives (Eq. 9, :func:`hard_k`).
        color: matplotlib colour of its curves.
        aliases: other accepted spellings (the library function's name, SimCLR's name).
    """

    name: str
    function: Callable[..., Tensor]
    label: str
    equation: str
    takes_temperature: bool
    takes_k: bool
    color: str
    aliases: tuple[str, ...] = ()


LOSSES: dict[str, LossSpec] = {s.name: s for s in (
    LossSpec("info_nce", losses.info_nce, "ordinary", "Eq. 1", True, False, "C0",
             ("nt_xent",)),
    LossSpec("hard", losses.hard_info_nce, "hard", "Eq. 9", True, True, "C3",
             ("hard_info_nce",)),
    LossSpec("simple", losses.simple, "simple", "Eq. 3", False, False, "C2"),
    LossSpec("hard_simple", losses.hard_simple, "hard simple", "Eq. 3 on Eq. 9's negatives",
             False, True, "C1"),
    LossSpec("tau_zero_limit", losses.tau_zero_limit, "τ → 0 limit", "Eq. 6", False, False,
             "C4"),
)}
LOSS_NAMES: tuple[str, ...] = tuple(LOSSES)
TAU_FREE_LOSSES: tuple[str, ...] = tuple(n for n, s in LOSSES.items() if not s.takes_temperature)
_ALIASES = {alias: spec.name for spec in LOSSES.values() for alias in spec.aliases}


def canonical(name: str) -> str:
    """The registry name of ``name`` (``"hard_info_nce"`` -> ``"hard"``).

    Raises:
        ValueError: if ``name`` is neither a registry name nor an alias.
    """
    if name in LOSSES:
        return name
    if name in _ALIASES:
        return _ALIASES[name]
    valid = ", ".join([*LOSSES, *_ALIASES])
    raise ValueError(f"unknown loss {name!r}; expected one of: {valid}")


def get(name: str) -> LossSpec:
    """The :class:`LossSpec` of ``name`` or of one of its aliases."""
    return LOSSES[canonical(name)]


def hard_k(columns: int, *, k: int | None = None, fraction: float | None = None) -> int:
    """K of Eq. 9 for a similarity matrix with ``columns`` candidates (1 positive + negatives).

    Args:
        columns: M, the candidates per anchor (bank size, or 2B − 1 in-batch).
        k: an absolute K (the paper: 4095); must not exceed the M − 1 negatives.
        fraction: K = round(fraction · M), clipped to [1, M − 1]. With neither ``k`` nor
            ``fraction``, the paper's fraction 4095 / 50,000 (8.19 %) is used.

    Returns:
        K, an int in [1, M − 1].

    Raises:
        ValueError: ``k`` and ``fraction`` both given, ``k`` above the number of negatives,
            or fewer than 2 columns.
    """
    negatives = int(columns) - 1
    if negatives < 1:
        raise ValueError(f"the hard loss needs at least one negative per anchor, got {columns} "
                         f"column(s)")
    if k is not None and fraction is not None:
        raise ValueError("give hard_k or hard_fraction, not both")
    if k is not None:
        if k > negatives:
            raise ValueError(f"hard_k={k} exceeds the {negatives} negatives per anchor; lower "
                             f"hard_k or give hard_fraction")
        return int(k)
    frac = PAPER_HARD_FRACTION if fraction is None else float(fraction)
    return min(max(1, round(frac * columns)), negatives)


def compute(name: str, similarity: Tensor, positive: Tensor, *, temperature: float,
            k: int | None = None, fraction: float | None = None,
            lam: float | None = None, unnormalized: bool = False) -> Tensor:
    """The mean loss ``name`` on a (N, M) similarity matrix with positives at ``positive`` (N,).

    ``temperature`` is ignored by τ-free losses; ``k`` / ``fraction`` set K of the hard losses
    (:func:`hard_k`); ``lam`` is λ of the simple losses (None: the library default);
    ``unnormalized=True`` accepts similarities outside [−1, 1] (a memory bank whose rows are not
    unit-norm yet: the authors' random initialisation).
    """
    spec = get(name)
    kwargs = {"unnormalized": unnormalized}
    if spec.takes_temperature:
        kwargs["temperature"] = temperature
    if spec.takes_k:
        kwargs["k"] = hard_k(similarity.shape[1], k=k, fraction=fraction)
    if lam is not None and spec.name in ("simple", "hard_simple"):
        kwargs["lam"] = lam
    return spec.function(similarity, positive, **kwargs)
