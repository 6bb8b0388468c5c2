"""The sweep a results notebook (04–06) stands on: resolve its settings, train-or-load, load.

Notebooks 04–06 share one setup: the papermill parameters (profile, data root, runs folder) are
resolved against the environment (``CL_FAST``, ``CL_DATA_ROOT``), the profile's sweep is trained
where runs are missing (finished runs are only loaded), and the results table is read. The fast
mode (nbval in CI) swaps in the ``smoke`` profile and, when no CIFAR-10 copy is configured,
``data.synthetic_dataset`` images.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .sweep import SweepSpec, load_results, run_sweep
from .profiles import get_profile, profile_sweep

SYNTHETIC_TRAIN_PER_CLASS, SYNTHETIC_TEST_PER_CLASS = 40, 30


@dataclass
class SweepRuns:
    """A loaded sweep: its settings, the spec, the data it used and its results table."""

    profile: str
    data_root: str | None  # None: synthetic images (fast mode only)
    runs_dir: Path
    spec: SweepSpec
    sets: dict[str, tuple[Any, Any]] | None  # the synthetic (train, test) sets, else None
    results: Any  # pandas.DataFrame, one row per run of ``spec``

    @property
    def names(self) -> list[str]:
        """The sweep's run names, in order."""
        return [name for name, _ in self.spec.runs()]

    def describe(self) -> str:
        """One paragraph for the notebook's output: profile, data, runs folder."""
        data = self.data_root or "synthetic (data.synthetic_dataset)"
        return (f"profile {self.profile!r}: {get_profile(self.profile)['description']}\n"
                f"data {data}; {len(self.results)} runs in {self.runs_dir}")


def load_sweep_runs(profile: str = "quick", data_root: str | None = None,
                    runs_dir: str | os.PathLike | None = None, dataset: str = "cifar10", *,
                    fast: bool = False, seed: int = 0, temperatures=None,
                    repo: str | os.PathLike | None = None, progress: bool = False) -> SweepRuns:
    """Train-or-load ``profile``'s sweep and return it with its results.

    Args:
        profile: the profile of the committed run (``"quick"``); ``fast`` replaces it by smoke.
        data_root: dataset root; None reads ``CL_DATA_ROOT``. Without either, only the fast mode
            runs (on synthetic images); otherwise ``ValueError`` says how to point at the data.
        runs_dir: sweep folder; None: ``<repo>/runs/<profile>`` (``smoke-synthetic`` without data).
        dataset: dataset name of :mod:`cl_analysis.data`.
        fast: the notebooks' fast mode (CI): smoke profile, synthetic data without a data root.
        seed: the sweep's seed (0 is the default and left out of the configs, as the CLI does).
        temperatures: the τ grid; None: the profile's (quick: 0.07, 0.3, 1.0).
        repo: folder holding ``runs/``; None: the parent of the working directory (notebooks run
            in ``notebooks/``).
        progress: tqdm bars while training missing runs.
    """
    from ..training import data

    profile = "smoke" if fast else profile
    data_root = data_root or os.environ.get("CL_DATA_ROOT")
    if not data_root and not fast:
        raise ValueError("no dataset: set DATA_ROOT (papermill -p DATA_ROOT /path/to/cifar10) or "
                         "CL_DATA_ROOT to a CIFAR-10 copy, or run the fast mode (CL_FAST=1), "
                         "which falls back to synthetic images")
    sets = None
    if not data_root:
        sets = {dataset: (data.synthetic_dataset(SYNTHETIC_TRAIN_PER_CLASS, split="train",
                                                 seed=seed),
                          data.synthetic_dataset(SYNTHETIC_TEST_PER_CLASS, split="test",
                                                 seed=seed))}
    repo = Path(repo) if repo else Path.cwd().resolve().parent
    runs_dir = Path(runs_dir or repo / "runs" / (profile if data_root else "smoke-synthetic"))
    spec = profile_sweep(profile, data_root=data_root, datasets=(dataset,), seed=seed or None,
                         temperatures=temperatures)
    workers = get_profile(profile)["workers"] if sets is None else 1
    run_sweep(spec, runs_dir, data=sets, progress=progress, workers=workers)  # train-or-load
    results = load_results(runs_dir)
    names = [name for name, _ in spec.runs()]
    results = results[results["run"].isin(names)].reset_index(drop=True)  # this sweep only
    return SweepRuns(profile, data_root, runs_dir, spec, sets, results)
