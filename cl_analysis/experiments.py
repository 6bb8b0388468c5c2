"""Resumable sweeps over loss x temperature x dataset x regime, and their results table.

A sweep is a list of runs, each a directory ``out_root/<run>/`` named like
``cifar10-memory_bank-hard-t0.07``. A run is *finished* when its ``eval.json`` exists; finished runs
are skipped, an interrupted run resumes from its checkpoint, so a killed sweep simply continues when
called again. After every run the table of finished runs is rewritten atomically to
``out_root/results.csv`` and ``out_root/results.json`` (columns :data:`RESULT_COLUMNS`).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from cl_analysis._checks import check_temperature
from cl_analysis.checkpoint import write_text_atomic as _write_text_atomic

__all__ = [
    "TAU_FREE_LOSSES",
    "RESULT_COLUMNS",
    "SweepSpec",
    "run_name",
    "run_sweep",
    "collect_results",
    "load_results",
]

# Eq. 3, its top-K version and the tau -> 0 limit (Eq. 6) have no temperature: run once.
TAU_FREE_LOSSES = ("simple", "hard_simple", "tau_zero_limit")
EVAL_FILE = "eval.json"
RUN_META_FILE = "sweep_run.json"
CHECKPOINT_FILE = "checkpoint.pt"
_SWEEP_KEYS = ("dataset", "regime", "loss", "temperature")
_LOCATION_KEYS = ("data_root", "device", "num_threads", "progress")
RESULT_COLUMNS = (
    "run", "dataset", "regime", "loss", "temperature", "linear_top1", "knn_top1", "uniformity",
    "tolerance", "alignment", "penalty_entropy", "effective_negatives", "positive_similarity",
    "uniformity_bank", "tolerance_bank", "wall_time_s", "epochs", "profile",
)
_TEXT_COLUMNS = ("run", "dataset", "regime", "loss", "profile")


def _nonempty_strings(name: str, values: Sequence[str]) -> tuple[str, ...]:
    if isinstance(values, str):
        values = (values,)
    values = tuple(values)
    if not values or not all(isinstance(v, str) and v for v in values):
        raise ValueError(f"{name} must be a non-empty sequence of names, got {values!r}")
    if len(set(values)) != len(values):
        raise ValueError(f"{name} has duplicates: {values!r}")
    return values


def run_name(dataset: str, regime: str, loss: str, temperature: float | None = None) -> str:
    """Stable run directory name, e.g. ``cifar10-memory_bank-hard-t0.07`` or ``...-simple``."""
    name = f"{dataset}-{regime}-{loss}"
    return name if temperature is None else f"{name}-t{float(temperature)!r}"


@dataclass(frozen=True)
class SweepSpec:
    """What to train: every dataset x regime x loss x temperature, τ-free losses once.

    Attributes:
        losses: loss names of :mod:`cl_analysis.train`; those in :data:`TAU_FREE_LOSSES` run
            once (their config keeps the default τ, used only by the penalty-entropy monitor).
        temperatures: the τ grid for the other losses (the paper's Table 1 uses 0.07/0.3/0.7/1.0).
        datasets: dataset names of :mod:`cl_analysis.data`.
        regimes: ``"memory_bank"`` (the paper) and/or ``"simclr"``.
        base: ``TrainConfig`` overrides shared by every run (e.g. a profile's settings); must not
            set dataset/regime/loss/temperature, which the sweep sets per run.
        linear_probe: train the linear probe in evaluation (False: kNN and metrics only).
        probe_epochs: linear-probe epochs (None: the paper's 100).
        profile: a label stored in every results row (e.g. ``"quick"``); not a config key.
    """

    losses: tuple[str, ...] = ("info_nce", "hard", "simple", "hard_simple")
    temperatures: tuple[float, ...] = (0.07, 0.3, 0.7, 1.0)
    datasets: tuple[str, ...] = ("cifar10",)
    regimes: tuple[str, ...] = ("memory_bank",)
    base: Mapping[str, Any] = field(default_factory=dict)
    linear_probe: bool = True
    probe_epochs: int | None = None
    profile: str | None = None

    def __post_init__(self):
        set_ = object.__setattr__  # frozen dataclass: normalise in place
        set_(self, "losses", _nonempty_strings("losses", self.losses))
        set_(self, "datasets", _nonempty_strings("datasets", self.datasets))
        set_(self, "regimes", _nonempty_strings("regimes", self.regimes))
        temps = tuple(check_temperature(t) for t in self.temperatures)
        if len(set(temps)) != len(temps):
            raise ValueError(f"temperatures has duplicates: {temps!r}")
        if not temps and any(loss not in TAU_FREE_LOSSES for loss in self.losses):
            raise ValueError("temperatures is empty but some losses need one; give a τ grid")
        set_(self, "temperatures", temps)
        if not isinstance(self.base, Mapping):
            raise ValueError(f"base must be a dict of TrainConfig overrides, got {self.base!r}")
        clash = sorted(set(self.base) & set(_SWEEP_KEYS))
        if clash:
            raise ValueError(f"base must not set {clash}: the sweep sets them per run; put them "
                             f"in losses/temperatures/datasets/regimes instead")
        set_(self, "base", dict(self.base))
        pe = self.probe_epochs
        if pe is not None and (isinstance(pe, bool) or not isinstance(pe, int) or pe < 1):
            raise ValueError(f"probe_epochs must be a positive int or None, got {pe!r}")

    def runs(self) -> list[tuple[str, dict[str, Any]]]:
        """Ordered ``(run_name, TrainConfig overrides)``: dataset, regime, loss, then τ."""
        out = []
        for dataset in self.datasets:
            for regime in self.regimes:
                for loss in self.losses:
                    temps = (None,) if loss in TAU_FREE_LOSSES else self.temperatures
                    for t in temps:
                        overrides = {**self.base, "dataset": dataset, "regime": regime,
                                     "loss": loss}
                        if t is not None:
                            overrides["temperature"] = t
                        out.append((run_name(dataset, regime, loss, t), overrides))
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (saved as ``out_root/sweep.json``)."""
        return asdict(self)


def _write_json(obj: Any, path: Path) -> None:
    _write_text_atomic(json.dumps(obj, indent=2, default=str) + "\n", path)


def _read_json(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _number(value: Any) -> Any:
    """JSON value -> table cell: numbers and strings kept, None / lists / dicts -> NaN."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return math.nan
    return value


def _result_row(run_dir: Path, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One results row from ``run_dir/eval.json`` plus the sweep's own record of the run.

    The sweep's overrides (dataset, regime, loss, temperature, profile) win over eval.json's
    echo of the config; τ-free losses get temperature NaN. Missing values are NaN.
    """
    result = _read_json(run_dir / EVAL_FILE)
    meta_path = run_dir / RUN_META_FILE
    meta = _read_json(meta_path) if meta_path.is_file() else {}
    given = {**meta.get("overrides", {}), **(overrides or {})}
    row = {col: _number(result.get(col)) for col in RESULT_COLUMNS}
    row.update({k: given[k] for k in _SWEEP_KEYS if k in given})
    if meta.get("profile") is not None:
        row["profile"] = meta["profile"]
    if row["loss"] in TAU_FREE_LOSSES:
        row["temperature"] = math.nan
    row.update(run=run_dir.name, wall_time_s=_number(meta.get("wall_time_s")))
    return row


def collect_results(out_root: str | os.PathLike,
                    runs: Sequence[tuple[str, Mapping[str, Any]]] = ()):
    """Build the results DataFrame from every finished run under ``out_root``.

    Args:
        out_root: the sweep folder.
        runs: ``SweepSpec.runs()``-style ``(name, overrides)`` pairs to list first, in this order
            (their overrides fill dataset/regime/loss/temperature); other finished runs follow,
            sorted by name.

    Returns:
        pandas DataFrame with columns :data:`RESULT_COLUMNS`, one row per finished run.
    """
    import pandas as pd

    out_root = Path(out_root)
    known = dict(runs)
    finished = sorted(p.parent.name for p in out_root.glob(f"*/{EVAL_FILE}"))
    names = [n for n in known if n in finished] + [n for n in finished if n not in known]
    rows = [_result_row(out_root / n, known.get(n)) for n in names]
    return pd.DataFrame(rows, columns=list(RESULT_COLUMNS))


def _write_results(df, out_root: Path) -> None:
    _write_text_atomic(df.to_csv(index=False), out_root / "results.csv")
    records = json.loads(df.to_json(orient="records"))  # NaN -> null
    _write_text_atomic(json.dumps(records, indent=2) + "\n", out_root / "results.json")


def load_results(out_root: str | os.PathLike):
    """Read ``out_root/results.csv`` (or rebuild it from the run folders if it is missing).

    Args:
        out_root: the sweep folder given to :func:`run_sweep`.

    Returns:
        pandas DataFrame with columns :data:`RESULT_COLUMNS` (NaN where a run lacks a metric).

    Raises:
        ValueError: if ``out_root`` does not exist.
    """
    import pandas as pd

    out_root = Path(out_root)
    if not out_root.is_dir():
        raise ValueError(f"no sweep folder at {out_root}; run run_sweep(spec, {str(out_root)!r})")
    path = out_root / "results.csv"
    if not path.is_file():
        return collect_results(out_root)
    df = pd.read_csv(path, dtype={c: "string" for c in _TEXT_COLUMNS})
    for col in RESULT_COLUMNS:
        if col not in df:
            df[col] = math.nan
    for col in _TEXT_COLUMNS:
        df[col] = df[col].astype(object).where(df[col].notna(), None)
    return df[list(RESULT_COLUMNS)]


def _check_finished(run_dir: Path, overrides: Mapping[str, Any]) -> None:
    """Refuse to skip a finished run whose saved config.json disagrees with the sweep's."""
    path = run_dir / "config.json"
    if not path.is_file():
        return
    saved = _read_json(path)
    canon = lambda v: json.loads(json.dumps(v, default=str))  # noqa: E731  (tuples == lists)
    # where the data lives and which hardware ran it do not change a finished result
    diffs = {k: (saved[k], v) for k, v in overrides.items()
             if k in saved and k not in _LOCATION_KEYS and canon(saved[k]) != canon(v)}
    if diffs:
        listed = ", ".join(f"{k}: {old!r} → {new!r}" for k, (old, new) in diffs.items())
        raise ValueError(f"{run_dir} finished with a different config {{{listed}}}; delete its "
                         f"{EVAL_FILE} to continue it with the new settings (more epochs resume "
                         f"from the checkpoint), or use a new out_root")


def _default_config(overrides: Mapping[str, Any]):
    from cl_analysis.train import TrainConfig

    return TrainConfig(**overrides)


def _default_train(*args, **kwargs):
    from cl_analysis.train import pretrain

    return pretrain(*args, **kwargs)


def _default_eval(*args, **kwargs):
    from cl_analysis.evaluate import evaluate_run

    return evaluate_run(*args, **kwargs)


class _DataCache:
    """Loads each (dataset, root) train/test pair once and keeps only the latest in memory."""

    def __init__(self, given):
        self.given, self.key, self.sets = given, None, None

    def __call__(self, config) -> dict[str, Any]:
        if callable(self.given):
            train_set, test_set = self.given(config)
            return {"train_set": train_set, "test_set": test_set}
        if isinstance(self.given, Mapping):
            if config.dataset not in self.given:
                raise ValueError(f"data has no entry for dataset {config.dataset!r}; give "
                                 f"{{{config.dataset!r}: (train_set, test_set)}}")
            train_set, test_set = self.given[config.dataset]
            return {"train_set": train_set, "test_set": test_set}
        root = getattr(config, "data_root", None) or os.environ.get("CL_DATA_ROOT")
        if not root:
            return {}  # pretrain raises its own clear error about the missing data
        if self.key != (config.dataset, root):
            from cl_analysis.data import load_dataset

            self.sets = None  # free the previous dataset first
            self.sets = {f"{split}_set": load_dataset(config.dataset, root, split)
                         for split in ("train", "test")}
            self.key = (config.dataset, root)
        return self.sets


def run_sweep(
    spec: SweepSpec,
    out_root: str | os.PathLike,
    *,
    progress: bool = True,
    train_fn: Callable[..., Any] | None = None,
    eval_fn: Callable[..., Any] | None = None,
    config_fn: Callable[[dict[str, Any]], Any] | None = None,
    data: Mapping[str, tuple[Any, Any]] | Callable[[Any], tuple[Any, Any]] | None = None,
    workers: int = 1,
):
    """Train and evaluate every run of ``spec`` that is not finished yet; resumable.

    For each run in :meth:`SweepSpec.runs` order: skip it if ``out_root/<run>/eval.json`` exists
    (after checking that its ``config.json`` agrees with the overrides); otherwise
    ``train_fn(config, run_dir, resume=<checkpoint.pt exists>, progress=..., **sets)``
    then ``eval_fn(run_dir, linear=..., probe_epochs=..., progress=..., **sets)``, record the
    wall time (train + eval of this call; a resumed run counts only the resumed part) in
    ``<run>/sweep_run.json`` and rewrite ``results.csv``/``results.json`` atomically. An exception
    propagates after the finished runs are saved; calling again continues with the failed run.

    Args:
        spec: the sweep.
        out_root: folder holding one sub-folder per run plus the results files.
        progress: show tqdm bars (the sweep's and the runs').
        train_fn: defaults to :func:`cl_analysis.train.pretrain`.
        eval_fn: defaults to :func:`cl_analysis.evaluate.evaluate_run`; must leave ``eval.json``
            in the run folder (if it does not, its returned dict is written there).
        config_fn: builds the training config from the overrides; defaults to ``TrainConfig(**o)``.
        data: ``{dataset: (train_set, test_set)}`` or ``config -> (train_set, test_set)``, passed
            to both functions as ``train_set=``/``test_set=`` (full splits: they apply the
            config's subset/resize). None: with the default ``train_fn`` each dataset is loaded
            once from ``data_root`` / ``CL_DATA_ROOT``; with a custom one nothing is passed.
        workers: runs trained at once, each in its own process with ``cpu_count // workers``
            torch threads (small CPU models use cores better this way than with threads).
            Needs the default train/eval/config functions and ``data=None``.

    Returns:
        The results DataFrame (columns :data:`RESULT_COLUMNS`), one row per finished run.
    """
    if not isinstance(spec, SweepSpec):
        raise ValueError(f"spec must be a SweepSpec, got {type(spec).__name__}")
    if workers > 1 and any(f is not None for f in (train_fn, eval_fn, config_fn, data)):
        raise ValueError("workers > 1 needs the default train/eval/config functions and "
                         "data=None (each worker loads its data from data_root)")
    sets_for = _DataCache(data) if data is not None or train_fn is None else (lambda c: {})
    train_fn = train_fn or _default_train
    eval_fn = eval_fn or _default_eval
    config_fn = config_fn or _default_config
    out_root = Path(out_root)
    _write_json(spec.to_dict(), out_root / "sweep.json")
    runs = spec.runs()
    if workers > 1:
        return _run_parallel(spec, runs, out_root, workers, progress)
    bar = tqdm(runs, desc="sweep", disable=not progress, unit="run")
    for name, overrides in bar:
        run_dir = out_root / name
        if (run_dir / EVAL_FILE).is_file():
            _check_finished(run_dir, overrides)
            continue
        bar.set_postfix_str(name)
        config = config_fn(dict(overrides))
        sets = sets_for(config)
        resume = (run_dir / CHECKPOINT_FILE).is_file()
        meta = {"run": name, "overrides": overrides, "profile": spec.profile, "resumed": resume}
        _write_json(meta, run_dir / RUN_META_FILE)
        start = time.perf_counter()
        train_fn(config, run_dir, resume=resume, progress=progress, **sets)
        trained = time.perf_counter()
        result = eval_fn(run_dir, linear=spec.linear_probe, probe_epochs=spec.probe_epochs,
                         progress=progress, **sets)
        done = time.perf_counter()
        if not (run_dir / EVAL_FILE).is_file():
            _write_json(result or {}, run_dir / EVAL_FILE)
        meta.update(train_time_s=trained - start, eval_time_s=done - trained,
                    wall_time_s=done - start)
        _write_json(meta, run_dir / RUN_META_FILE)
        _write_results(collect_results(out_root, runs), out_root)
    df = collect_results(out_root, runs)
    _write_results(df, out_root)
    return df


def _run_one_in_worker(name: str, overrides: dict[str, Any], out_root: str, linear: bool,
                       probe_epochs: int | None, profile: str | None, threads: int) -> str:
    """Train and evaluate one run in a worker process (see ``run_sweep(workers=...)``)."""
    import torch

    torch.set_num_threads(threads)
    run_dir = Path(out_root) / name
    config = _default_config(dict(overrides))
    resume = (run_dir / CHECKPOINT_FILE).is_file()
    meta = {"run": name, "overrides": overrides, "profile": profile, "resumed": resume}
    _write_json(meta, run_dir / RUN_META_FILE)
    start = time.perf_counter()
    _default_train(config, run_dir, resume=resume, progress=False)
    trained = time.perf_counter()
    _default_eval(run_dir, linear=linear, probe_epochs=probe_epochs, progress=False)
    done = time.perf_counter()
    meta.update(train_time_s=trained - start, eval_time_s=done - trained,
                wall_time_s=done - start, workers_threads=threads)
    _write_json(meta, run_dir / RUN_META_FILE)
    return name


def _run_parallel(spec: SweepSpec, runs, out_root: Path, workers: int, progress: bool):
    """``run_sweep`` with ``workers`` processes; results are rewritten as each run finishes."""
    import multiprocessing
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

    todo = []
    for name, overrides in runs:
        if (out_root / name / EVAL_FILE).is_file():
            _check_finished(out_root / name, overrides)
        else:
            todo.append((name, overrides))
    threads = max(1, (os.cpu_count() or 1) // workers)
    bar = tqdm(total=len(runs), initial=len(runs) - len(todo), desc="sweep", unit="run",
               disable=not progress)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        pending = {pool.submit(_run_one_in_worker, name, dict(overrides), str(out_root),
                               spec.linear_probe, spec.probe_epochs, spec.profile, threads)
                   for name, overrides in todo}
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                bar.update(1)
                bar.set_postfix_str(future.result())  # re-raises a worker's error
                _write_results(collect_results(out_root, runs), out_root)
    bar.close()
    df = collect_results(out_root, runs)
    _write_results(df, out_root)
    return df
