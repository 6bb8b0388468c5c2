"""What a results notebook (04–08) opens first: its sweep, seed means, claims ledger.

One call replaces the set-up each results notebook would otherwise repeat: open the sweep as the
parameter cell asks (:func:`~cl_analysis.study.runs.open_sweep`), fold the seeds
(:func:`~cl_analysis.study.results.seed_means`), open the notebook's claims ledger
(:class:`~cl_analysis.study.claims.Ledger`, written to ``RUNS_DIR/claims/<notebook>.json``) and
print what the numbers come from (the sweep and its provenance).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from .claims import Ledger
from .provenance import provenance, provenance_text
from .results import seed_means
from .runs import SweepRuns, open_sweep

__all__ = ["NotebookRuns", "open_results"]


@dataclass
class NotebookRuns:
    """A results notebook's inputs.

    Attributes:
        sweep: the loaded sweep.
        raw: one row per run (loss × τ × seed); without a memory bank the ``*_bank`` columns
            hold the test protocol (:meth:`SweepRuns.results_by_protocol`).
        results: one row per (loss, τ), metrics averaged over seeds.
        ledger: the notebook's claims ledger (None when no notebook name was given).
    """

    sweep: SweepRuns
    raw: Any
    results: Any
    ledger: Ledger | None


def open_results(runs_dir: str | os.PathLike | None = None, *, notebook: str | None = None,
                 fast: bool = False, train_profile: str | None = None,
                 data_root: str | None = None) -> NotebookRuns:
    """Open a results notebook's sweep, fold its seeds, open its ledger and print its origin.

    Args and training rules as :func:`~cl_analysis.study.runs.open_sweep`; ``notebook`` names
    the ledger file (None: no ledger).
    """
    sweep = open_sweep(runs_dir, fast=fast, train_profile=train_profile, data_root=data_root)
    raw = sweep.results_by_protocol()
    ledger = Ledger(raw, notebook=notebook, out_dir=sweep.runs_dir) if notebook else None
    print(sweep.describe())
    print(provenance_text(provenance(sweep)))  # what produced these numbers
    if not sweep.has_bank:  # SimCLR's in-batch regime: no memory bank, no bank protocol
        print("no memory bank in this regime: every 'bank' protocol below shows the test "
              "protocol")
    return NotebookRuns(sweep, raw, seed_means(raw), ledger)
