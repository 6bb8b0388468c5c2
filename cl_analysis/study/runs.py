"""Runs and sweeps as objects you load: what notebooks and users read after training.

``load_run(dir)`` gives a run's config, per-epoch history, evaluation, environment, the model
(on demand) and its test embeddings with labels and class names. ``load_sweep(dir)`` reads a
sweep folder's ``sweep.json`` (the resolved spec of what ran) and its results. Neither trains.
``train_sweep`` is the one place a notebook may train, and only when its parameter cell asks
(the fast mode of CI: the smoke profile, on synthetic images when no data folder is given).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..training.checkpoint import load_checkpoint, read_jsonl
from ..training.config import TrainConfig
from .profiles import SweepGrid, get_profile
from .sweep import SWEEP_FILE, SweepSpec, load_results, load_spec, run_sweep

__all__ = ["Run", "SweepRuns", "load_run", "load_sweep", "train_sweep", "open_sweep",
           "density_spec",
           "SYNTHETIC_TRAIN_PER_CLASS", "SYNTHETIC_TEST_PER_CLASS"]

SYNTHETIC_TRAIN_PER_CLASS, SYNTHETIC_TEST_PER_CLASS = 40, 30


@dataclass
class Run:
    """A trained (and usually evaluated) run directory.

    Attributes:
        path: the run directory.
        config: its :class:`TrainConfig` (``config.json``).
        history: one dict per trained epoch (``metrics.jsonl``).
        evaluation: ``eval.json`` (None before evaluation); accuracies are fractions.
        environment: ``environment.json`` (device, versions, threads; None for older runs).
    """

    path: Path
    config: TrainConfig
    history: list[dict[str, Any]]
    evaluation: dict[str, Any] | None
    environment: dict[str, Any] | None
    _arrays: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """The run directory's name."""
        return self.path.name

    def model(self, map_location: Any = "cpu"):
        """The trained :class:`~cl_analysis.training.models.ContrastiveModel`, in eval mode."""
        from ..training.models import build_model

        state = load_checkpoint(self.path / "checkpoint.pt", map_location=map_location)
        c = self.config
        model = build_model(c.model, c.head, c.embedding_dim, c.convnet_widths)
        model.load_state_dict(state["model"])
        return model.to(map_location).eval()

    @property
    def arrays(self) -> dict[str, Any]:
        """``embeddings_test.pt`` (z, labels, local separation rows); loaded once."""
        if self._arrays is None:
            path = self.path / "embeddings_test.pt"
            if not path.is_file():
                raise ValueError(f"{self.path} has no embeddings_test.pt: evaluate it first "
                                 f"(cl-analysis evaluate --run {self.path})")
            self._arrays = torch.load(path, map_location="cpu", weights_only=True)
        return self._arrays

    @property
    def class_names(self) -> list[str] | None:
        """Class names of the test labels (``classes[k]`` names label k), if recorded."""
        return (self.evaluation or {}).get("class_names")

    def test_embeddings(self, n: int | None = None, seed: int = 0) -> tuple[torch.Tensor,
                                                                            torch.Tensor]:
        """Test projections ``z`` (n, D) float32 and labels (n,), ``n`` rows drawn at random.

        The stored rows are in the test set's order, which is class-sorted for class folders
        (the first rows hold the first classes only): never take a prefix; this draws a seeded
        random subset instead (all rows, in stored order, when ``n`` is None).
        """
        z, labels = self.arrays["z"].float(), self.arrays["labels"]
        if n is None or n >= len(labels):
            return z, labels
        pick = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))[:n]
        return z[pick], labels[pick]


def load_run(run_dir: str | os.PathLike) -> Run:
    """Load a run directory (no training, no data needed).

    Raises:
        ValueError: if ``run_dir`` holds no ``config.json``.
    """
    path = Path(run_dir)
    if not (path / "config.json").is_file():
        raise ValueError(f"{path} is not a run directory (no config.json); pass a folder written "
                         f"by `cl-analysis pretrain` or one run of a sweep")
    config = TrainConfig.from_dict(json.loads((path / "config.json").read_text()))
    history = read_jsonl(path / "metrics.jsonl") if (path / "metrics.jsonl").is_file() else []

    def _json(name):
        p = path / name
        return json.loads(p.read_text()) if p.is_file() else None

    return Run(path, config, history, _json("eval.json"), _json("environment.json"))


@dataclass
class SweepRuns:
    """A loaded sweep: its folder, the recorded spec and the results of its runs."""

    runs_dir: Path
    spec: SweepSpec
    results: Any  # pandas.DataFrame, one row per finished run of ``spec``, in spec order

    @property
    def names(self) -> list[str]:
        """The sweep's run names, in order."""
        return [name for name, _ in self.spec.runs()]

    @property
    def config(self) -> TrainConfig:
        """The base config every run of the sweep shares (loss, τ, seed aside)."""
        return self.spec.base

    @property
    def has_bank(self) -> bool:
        """True in the memory-bank regime, where the authors' bank protocol exists."""
        return self.spec.base.regime == "memory_bank"

    def results_by_protocol(self):
        """``results``, with ``*_bank`` columns from the test protocol when there is no bank.

        In the SimCLR regime the authors' bank protocol does not exist; filling its columns from
        the test protocol lets the paper's figures be drawn for either regime.
        """
        df = self.results.copy()
        if not self.has_bank:
            for col in ("uniformity", "tolerance", "positive_similarity", "penalty_entropy",
                        "effective_negatives"):
                if col in df:
                    df[f"{col}_bank"] = df[col]
        return df

    def run(self, name: str) -> Run:
        """One run of the sweep, loaded."""
        return load_run(self.runs_dir / name)

    def history_table(self, keys: list[str] | tuple[str, ...]):
        """The runs' per-epoch monitor (``metrics.jsonl``) as one table, for over-training plots.

        Args:
            keys: history keys, e.g. ``["positive_probability", "penalty_entropy"]``. Keys that
                name a run column (``loss``, ``temperature``: the epoch's training loss and
                mean τ) come out as ``logged_loss``, ``logged_temperature``.

        Returns:
            pandas.DataFrame, one row per (run, epoch in which every key was logged), columns
            ``run, dataset, regime, loss, temperature, seed, epoch`` (as ``results``: τ NaN for
            τ-free losses) and ``keys``; rows in spec order, then by epoch.

        Raises:
            ValueError: ``keys`` a string or empty; a key no run logged (the message lists the
                keys there are); a run that logged none of its epochs with every key (trained
                with ``log_metrics=False`` or before the key existed), naming run and key.
        """
        import pandas as pd

        if isinstance(keys, str) or not list(keys):
            raise ValueError(f"keys must be a non-empty list of history keys, got {keys!r}; "
                             f"e.g. ['positive_probability']")
        keys = list(keys)
        meta = ["run", "dataset", "regime", "loss", "temperature", "seed"]
        column = {k: f"logged_{k}" if k in meta + ["epoch"] else k for k in keys}
        rows, seen = [], set()
        for _, res in self.results[meta].iterrows():
            history = self.run(res["run"]).history
            for h in history:
                seen.update(h)
            unknown = [k for k in keys if all(k not in h for h in history)]
            if unknown and history:
                raise ValueError(f"no epoch of run {res['run']} has the key(s) {unknown}; its "
                                 f"metrics.jsonl has {sorted(seen)} (a typo? a run from an "
                                 f"older version lacks the newer keys: train it again)")
            kept = [h for h in history if all(h.get(k) is not None for k in keys)]
            if not kept:
                absent = [k for k in keys if all(h.get(k) is None for h in history)]
                raise ValueError(f"run {res['run']} logged no epoch with {absent or keys}: it "
                                 f"was trained with log_metrics=False or by an older version; "
                                 f"train it again (the sweep's runs folder: {self.runs_dir})")
            rows += [{**res.to_dict(), "epoch": int(h["epoch"]),
                      **{column[k]: h[k] for k in keys}} for h in kept]
        return pd.DataFrame(rows, columns=meta + ["epoch"] + [column[k] for k in keys])

    def describe(self) -> str:
        """One paragraph for a notebook: profile, data, grid, where the runs are."""
        c, g = self.spec.base, self.spec.grid
        data = c.data_root and Path(c.data_root).name or "synthetic images (fast mode)"
        return (f"profile {self.spec.profile!r}: {c.model}/{c.head}, {c.regime} regime, "
                f"{c.epochs} epochs, batch {c.batch_size}, dataset {c.dataset} ({data}); grid: "
                f"losses {list(g.losses)}, τ {list(g.temperatures)}, seeds {list(g.seeds)}; "
                f"{len(self.results)} of {len(self.names)} runs finished in "
                f"{self.runs_dir.name}/")


def load_sweep(runs_dir: str | os.PathLike) -> SweepRuns:
    """Load the sweep in ``runs_dir`` (its ``sweep.json`` and results); never trains.

    Raises:
        ValueError: no ``sweep.json`` there, or runs of the spec are not finished (named, with
            the command that trains them).
    """
    runs_dir = Path(runs_dir)
    spec = load_spec(runs_dir)
    results = load_results(runs_dir)
    names = [n for n, _ in spec.runs()]
    missing = [n for n in names if n not in set(results["run"])]
    if missing:
        raise ValueError(f"{len(missing)} run(s) of {runs_dir / SWEEP_FILE} are not finished "
                         f"({', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''}); "
                         f"train them with `cl-analysis sweep --config ... --out {runs_dir}` or "
                         f"`make reproduce`, or set TRAIN_IF_MISSING = True in the notebook")
    results = results[results["run"].isin(names)]
    results = results.set_index("run").loc[names].reset_index()  # spec order
    return SweepRuns(runs_dir, spec, results)


def density_spec(spec: SweepSpec) -> SweepSpec:
    """The 2-D embedding study of notebook 05 derived from a sweep: ordinary loss, τ_min and τ_max.

    Same data, model and regime as ``spec``; ``embedding_dim=2``, 20 epochs (1 for the smoke
    profile) on 2,000 images (200), no linear probe, every seed of the sweep.
    """
    temps = spec.grid.temperatures
    smoke = spec.profile == "smoke"
    base = spec.base.replace(embedding_dim=2, epochs=1 if smoke else 20, lr_milestones=(),
                             warmup_epochs=0,
                             subset=min(200 if smoke else 2000, spec.base.subset or 10**9),
                             linear_probe=False, knn_every=1 if smoke else 5)
    grid = SweepGrid(losses=("info_nce",), temperatures=(min(temps), max(temps)),
                     seeds=spec.grid.seeds)
    return SweepSpec(base, grid, spec.profile)


def train_sweep(runs_dir: str | os.PathLike | None = None, *, profile: str = "smoke",
                data_root: str | None = None, progress: bool = False) -> SweepRuns:
    """Train (or finish) a profile's sweep and its density study, then load it.

    The one place a notebook trains, when its parameter cell says ``TRAIN_IF_MISSING``. Without
    ``data_root`` only the smoke profile runs, on ``data.synthetic_dataset`` images.

    Args:
        runs_dir: sweep folder; None: ``../runs/<profile>`` (``smoke-synthetic`` without data).
        profile: profile name.
        data_root: dataset folder; None: synthetic images (smoke profile only).
        progress: tqdm bars.
    """
    from ..training import data

    prof = get_profile(profile)
    base = prof.run
    sets = None
    if data_root is None:
        if profile != "smoke":
            raise ValueError(f"the {profile} profile needs data: pass data_root (the notebook's "
                             f"DATA_ROOT / CL_DATA_ROOT); only the smoke profile runs on "
                             f"synthetic images")
        sets = {base.dataset: (
            data.synthetic_dataset(SYNTHETIC_TRAIN_PER_CLASS, split="train", seed=0),
            data.synthetic_dataset(SYNTHETIC_TEST_PER_CLASS, split="test", seed=0))}
        base = base.replace(eval_test_size=None)
    else:
        base = base.replace(data_root=str(data_root))
    default = f"{profile}-synthetic" if data_root is None else profile
    runs_dir = Path(runs_dir or Path.cwd().resolve().parent / "runs" / default)
    spec = SweepSpec(base, prof.grid, profile)
    workers = 1 if sets is not None else prof.workers
    run_sweep(spec, runs_dir, data=sets, progress=progress, workers=workers)
    run_sweep(density_spec(spec), runs_dir / "density", data=sets, progress=progress,
              workers=1)
    return load_sweep(runs_dir)


def open_sweep(runs_dir: str | os.PathLike | None = None, *, fast: bool = False,
               train_profile: str | None = None, data_root: str | None = None,
               default: str | os.PathLike = "../runs/quick") -> SweepRuns:
    """The sweep a results notebook shows, as its parameter cell asks.

    Loaded from ``runs_dir`` (``default`` when None: the main job's runs, seen from
    ``notebooks/``); trained first only in CI's fast mode (``fast``: the smoke profile) or when
    ``train_profile`` names a profile to train into ``runs_dir``.
    """
    if fast or train_profile:
        return train_sweep(runs_dir, profile="smoke" if fast else train_profile,
                           data_root=data_root)
    return load_sweep(runs_dir or default)
