"""Resumable sweeps over loss x temperature x seed, written down as data (``sweep.json``).

A sweep is a :class:`SweepSpec` — a base :class:`~cl_analysis.training.config.TrainConfig` and a
:class:`~cl_analysis.study.profiles.SweepGrid` — resolved into one full config per run. Each run
lives in ``out_root/<run>/`` (``cifar10-memory_bank-hard-t0.07-s0``); ``out_root/sweep.json``
holds the whole resolved spec, every run's full config included, so whoever reads the sweep later
(the notebooks, ``reproduce``) sees exactly what ran. A run is *finished* when its ``eval.json``
exists: finished runs are skipped (after checking their ``config.json`` agrees), an interrupted
run resumes from its checkpoint. ``results.csv`` / ``results.json`` (columns
:data:`RESULT_COLUMNS`) are rewritten atomically as each run finishes.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .. import registry
from ..training.checkpoint import read_jsonl
from ..training.checkpoint import write_text_atomic as _write_text_atomic
from ..training.config import LOCATION_FIELDS, TrainConfig
from .profiles import SweepGrid

__all__ = ["SweepSpec", "RESULT_COLUMNS", "SWEEP_FILE", "run_name", "run_sweep",
           "collect_results", "load_results", "load_spec"]

SWEEP_FILE = "sweep.json"
EVAL_FILE = "eval.json"
RUN_META_FILE = "sweep_run.json"
CHECKPOINT_FILE = "checkpoint.pt"
RESULT_COLUMNS = (
    "run", "dataset", "regime", "loss", "temperature", "seed", "linear_top1", "knn_top1",
    "knn_top5", "uniformity", "tolerance", "alignment", "penalty_entropy", "effective_negatives",
    "positive_similarity", "uniformity_bank", "tolerance_bank", "wall_time_s", "epochs",
    "profile",
)
_TEXT_COLUMNS = ("run", "dataset", "regime", "loss", "profile")


def run_name(config: TrainConfig) -> str:
    """Stable run directory name, e.g. ``cifar10-memory_bank-hard-t0.07-s0``.

    τ-free losses (:data:`cl_analysis.registry.TAU_FREE_LOSSES`) have no ``-t`` part.
    """
    name = f"{config.dataset}-{config.regime}-{config.loss}"
    if registry.get(config.loss).takes_temperature:
        name += f"-t{float(config.temperature)!r}"
    return f"{name}-s{config.seed}"


@dataclass(frozen=True)
class SweepSpec:
    """What to train: ``base`` with every loss x τ x seed of ``grid``.

    Attributes:
        base: the run config every run starts from (a profile's); the grid sets ``loss``,
            ``temperature`` and ``seed`` per run (τ-free losses keep ``base.temperature``, used
            only by their penalty-entropy monitor).
        grid: losses, τ grid and seeds.
        profile: the profile's name, stored in every results row (a label, not a setting).
    """

    base: TrainConfig = field(default_factory=TrainConfig)
    grid: SweepGrid = field(default_factory=SweepGrid)
    profile: str | None = None

    def __post_init__(self):
        if not isinstance(self.base, TrainConfig):
            raise ValueError(f"base must be a TrainConfig, got {type(self.base).__name__}")
        if not isinstance(self.grid, SweepGrid):
            raise ValueError(f"grid must be a SweepGrid, got {type(self.grid).__name__}")

    def runs(self) -> list[tuple[str, TrainConfig]]:
        """Ordered ``(run_name, config)``: loss, then τ, then seed."""
        out = []
        for loss in self.grid.losses:
            temps = (self.grid.temperatures if registry.get(loss).takes_temperature
                     else (self.base.temperature,))
            for t in temps:
                for seed in self.grid.seeds:
                    config = self.base.replace(loss=loss, temperature=t, seed=seed)
                    out.append((run_name(config), config))
        return out

    def to_dict(self) -> dict[str, Any]:
        """The resolved spec: profile, grid, base and every run's full config (``sweep.json``)."""
        return {"profile": self.profile,
                "grid": {k: list(v) for k, v in vars(self.grid).items()},
                "base": self.base.to_dict(),
                "runs": [{"name": n, "config": c.to_dict()} for n, c in self.runs()]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SweepSpec:
        """Inverse of :meth:`to_dict` (the ``runs`` list is re-derived and checked)."""
        spec = cls(base=TrainConfig.from_dict(d["base"]), grid=SweepGrid(**d["grid"]),
                   profile=d.get("profile"))
        listed = [r["name"] for r in d.get("runs", [])]
        if listed and listed != [n for n, _ in spec.runs()]:
            raise ValueError("sweep.json lists other runs than its grid gives; it was edited or "
                             "written by another version: rerun `cl-analysis sweep`")
        return spec


def load_spec(out_root: str | os.PathLike) -> SweepSpec:
    """The :class:`SweepSpec` recorded in ``out_root/sweep.json``.

    Raises:
        ValueError: if there is no sweep there (names the command that writes one).
    """
    path = Path(out_root) / SWEEP_FILE
    if not path.is_file():
        raise ValueError(f"no {SWEEP_FILE} in {out_root}: train the sweep first "
                         f"(cl-analysis sweep --out {out_root} ...)")
    return SweepSpec.from_dict(_read_json(path))


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


def _result_row(run_dir: Path, profile: str | None = None) -> dict[str, Any]:
    """One results row from ``run_dir/eval.json`` and the run's own ``config.json``.

    τ-free losses get temperature NaN. Missing values are NaN.
    """
    result = _read_json(run_dir / EVAL_FILE)
    config = _read_json(run_dir / "config.json") if (run_dir / "config.json").is_file() else {}
    meta_path = run_dir / RUN_META_FILE
    meta = _read_json(meta_path) if meta_path.is_file() else {}
    row = {col: _number(result.get(col)) for col in RESULT_COLUMNS}
    row.update({k: config[k] for k in ("dataset", "regime", "loss", "temperature", "seed")
                if k in config})
    row["profile"] = meta.get("profile", profile)
    if row["loss"] in registry.LOSSES and not registry.get(row["loss"]).takes_temperature:
        row["temperature"] = math.nan
    row.update(run=run_dir.name, wall_time_s=_number(meta.get("wall_time_s")))
    return row


def collect_results(out_root: str | os.PathLike, names: list[str] | None = None):
    """The results DataFrame of the finished runs under ``out_root``.

    Args:
        out_root: the sweep folder.
        names: run names to list first, in this order; other finished runs follow, sorted.

    Returns:
        pandas DataFrame with columns :data:`RESULT_COLUMNS`, one row per finished run.
    """
    import pandas as pd

    out_root = Path(out_root)
    names = list(names or [])
    finished = sorted(p.parent.name for p in out_root.glob(f"*/{EVAL_FILE}"))
    order = [n for n in names if n in finished] + [n for n in finished if n not in names]
    rows = [_result_row(out_root / n) for n in order]
    return pd.DataFrame(rows, columns=list(RESULT_COLUMNS))


def _write_results(df, out_root: Path) -> None:
    _write_text_atomic(df.to_csv(index=False), out_root / "results.csv")
    records = json.loads(df.to_json(orient="records"))  # NaN -> null
    _write_text_atomic(json.dumps(records, indent=2) + "\n", out_root / "results.json")


def load_results(out_root: str | os.PathLike):
    """Read ``out_root/results.csv`` (or rebuild it from the run folders if it is missing).

    Returns:
        pandas DataFrame with columns :data:`RESULT_COLUMNS` (NaN where a run lacks a metric).

    Raises:
        ValueError: if ``out_root`` does not exist.
    """
    import pandas as pd

    out_root = Path(out_root)
    if not out_root.is_dir():
        raise ValueError(f"no sweep folder at {out_root}; train one with "
                         f"`cl-analysis sweep --out {out_root}`")
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


def _check_finished(run_dir: Path, config: TrainConfig) -> None:
    """Refuse to skip a finished run whose saved config.json disagrees with the sweep's."""
    path = run_dir / "config.json"
    if not path.is_file():
        return
    saved = TrainConfig.from_dict(_read_json(path)).to_dict()  # fields added since: defaults
    wanted = config.to_dict()
    diffs = {k: (saved.get(k), v) for k, v in wanted.items()
             if k not in LOCATION_FIELDS and saved.get(k) != v}
    if diffs:
        listed = ", ".join(f"{k}: {old!r} → {new!r}" for k, (old, new) in diffs.items())
        raise ValueError(f"{run_dir} finished with a different config {{{listed}}}; delete its "
                         f"{EVAL_FILE} to continue it with the new settings (more epochs resume "
                         f"from the checkpoint), or use a new out_root")


def _default_train(*args, **kwargs):
    from ..training.pretrain import pretrain

    return pretrain(*args, **kwargs)


def _default_eval(*args, **kwargs):
    from ..evaluation.evaluate import evaluate_run

    return evaluate_run(*args, **kwargs)


class _DataCache:
    """Loads each (dataset, root) train/test pair once and keeps only the latest in memory."""

    def __init__(self, given):
        self.given, self.key, self.sets = given, None, None

    def __call__(self, config: TrainConfig) -> dict[str, Any]:
        if isinstance(self.given, Mapping):
            if config.dataset not in self.given:
                raise ValueError(f"data has no entry for dataset {config.dataset!r}; give "
                                 f"{{{config.dataset!r}: (train_set, test_set)}}")
            train_set, test_set = self.given[config.dataset]
            return {"train_set": train_set, "test_set": test_set}
        from ..training.data import load_dataset

        key = (config.dataset, config.data_root)
        if self.key != key:
            self.sets = None  # free the previous dataset first
            self.sets = {f"{split}_set": load_dataset(config.dataset, config.data_root, split)
                         for split in ("train", "test")}
            self.key = key
        return self.sets


def _meta(name: str, spec: SweepSpec, resume: bool) -> dict[str, Any]:
    return {"run": name, "profile": spec.profile, "resumed": resume}


def _train_and_evaluate(name: str, config: TrainConfig, out_root: Path, spec: SweepSpec,
                        progress: bool, train_fn, eval_fn, sets: dict) -> None:
    run_dir = out_root / name
    resume = (run_dir / CHECKPOINT_FILE).is_file()
    meta = _meta(name, spec, resume)
    _write_json(meta, run_dir / RUN_META_FILE)
    start = time.perf_counter()
    train_fn(config, run_dir, resume=resume, progress=progress, **sets)
    trained = time.perf_counter()
    result = eval_fn(run_dir, progress=progress, **sets)
    done = time.perf_counter()
    if not (run_dir / EVAL_FILE).is_file():
        _write_json(result or {}, run_dir / EVAL_FILE)
    meta.update(train_time_s=trained - start, eval_time_s=done - trained,
                wall_time_s=done - start, num_threads=config.num_threads, device=config.device)
    _write_json(meta, run_dir / RUN_META_FILE)


def assign_devices(workers: int, devices: Sequence[str | int] | None) -> list[str | None]:
    """The device of each of ``workers`` worker processes: round-robin over ``devices``.

    ``devices`` holds GPU indices (``0``, ``"1"``), device names (``"cuda:1"``, ``"cpu"``) or
    comma-separated lists of them (``"0,1"``); None or empty keeps every run's configured device
    (None per worker). With more workers than devices several runs share a GPU (worker i gets
    ``devices[i % len(devices)]``), e.g. 4 workers on ``0,1`` -> cuda:0, cuda:1, cuda:0, cuda:1.

    Raises:
        ValueError: an entry that is neither an index nor a device name.
    """
    names: list[str] = []
    for entry in devices or ():
        for part in str(entry).split(","):
            part = part.strip()
            if not part:
                continue
            name = f"cuda:{part}" if part.isdigit() else part
            if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", name):
                raise ValueError(f"devices: expected GPU indices or device names (0,1 or "
                                 f"cuda:0,cuda:1 or cpu), got {part!r}")
            names.append(name)
    if not names:
        return [None] * workers
    return [names[i % len(names)] for i in range(workers)]


_WORKER_DEVICE: str | None = None  # set once in each worker process by _init_worker


def _init_worker(slots) -> None:
    """Pool initializer: this worker process takes the next device of the queue ``slots``."""
    global _WORKER_DEVICE
    _WORKER_DEVICE = slots.get()


def run_sweep(spec: SweepSpec, out_root: str | os.PathLike, *, progress: bool = True,
              workers: int = 1, train_fn: Callable[..., Any] | None = None,
              eval_fn: Callable[..., Any] | None = None,
              data: Mapping[str, tuple[Any, Any]] | None = None,
              devices: Sequence[str | int] | None = None):
    """Train and evaluate every run of ``spec`` that is not finished yet; resumable.

    Writes ``out_root/sweep.json`` (the resolved spec) first. For each run of
    :meth:`SweepSpec.runs`: skip it if ``eval.json`` exists (after checking that its
    ``config.json`` agrees, location fields aside); otherwise ``train_fn(config, run_dir,
    resume=..., progress=..., **sets)`` then ``eval_fn(run_dir, progress=..., **sets)``; record
    the wall time in ``<run>/sweep_run.json`` and rewrite ``results.csv`` / ``results.json``.
    An exception propagates after the finished runs are saved; calling again continues.

    Args:
        spec: the sweep.
        out_root: folder holding one sub-folder per run plus ``sweep.json`` and the results.
        progress: tqdm bars: the sweep's (runs), and the epochs of the running runs.
        workers: runs trained at once, one process each with ``cpu_count // workers`` torch
            threads, recorded in each run's ``num_threads`` (needs the default functions and
            ``data=None``). With 1, runs train in this process.
        train_fn: defaults to :func:`cl_analysis.training.pretrain.pretrain`.
        eval_fn: defaults to :func:`cl_analysis.evaluation.evaluate.evaluate_run`.
        data: ``{dataset: (train_set, test_set)}`` passed to both functions (full splits: they
            apply the config's subset and resize). None: loaded once per dataset from each
            config's ``data_root`` by the default functions.
        devices: spread the workers over these devices (:func:`assign_devices`: ``["0", "1"]``
            -> cuda:0, cuda:1, round-robin; several workers may share one GPU); each run's
            ``device`` is replaced by its worker's (a location field: results do not depend on
            it beyond the device type) and recorded in its ``sweep_run.json``. None: the
            configured device. With ``workers == 1`` the first device is used.

    Returns:
        The results DataFrame (columns :data:`RESULT_COLUMNS`), one row per finished run.
    """
    if not isinstance(spec, SweepSpec):
        raise ValueError(f"spec must be a SweepSpec, got {type(spec).__name__}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    custom = train_fn is not None or eval_fn is not None or data is not None
    if workers > 1 and custom:
        raise ValueError("workers > 1 needs the default train/eval functions and data=None "
                         "(each worker loads its data from data_root)")
    out_root = Path(out_root)
    if out_root.exists() and not out_root.is_dir():
        raise ValueError(f"--out {out_root} is a file; give a folder for the sweep")
    slots = assign_devices(workers, devices)
    if workers == 1 and slots[0] is not None:
        spec = SweepSpec(spec.base.replace(device=slots[0]), spec.grid, spec.profile)
    if workers > 1 and spec.base.num_threads is None:
        threads = max(1, (os.cpu_count() or 1) // workers)
        spec = SweepSpec(spec.base.replace(num_threads=threads), spec.grid, spec.profile)
    _write_json(spec.to_dict(), out_root / SWEEP_FILE)
    runs = spec.runs()
    names = [n for n, _ in runs]
    todo = []
    for name, config in runs:
        if (out_root / name / EVAL_FILE).is_file():
            _check_finished(out_root / name, config)
        else:
            todo.append((name, config))
    bar = tqdm(total=len(runs), initial=len(runs) - len(todo), desc="sweep", unit="run",
               disable=not progress)
    try:
        if workers > 1:
            _run_parallel(spec, todo, out_root, workers, bar, names, slots)
        else:
            sets_for = _DataCache(data) if (data is not None or train_fn is None) else \
                (lambda c: {})
            for name, config in todo:
                bar.set_postfix_str(name)
                _train_and_evaluate(name, config, out_root, spec, progress,
                                    train_fn or _default_train, eval_fn or _default_eval,
                                    sets_for(config))
                bar.update(1)
                _write_results(collect_results(out_root, names), out_root)
    finally:
        bar.close()
    df = collect_results(out_root, names)
    _write_results(df, out_root)
    return df


def _run_one_in_worker(name: str, config: dict[str, Any], out_root: str,
                       spec: dict[str, Any]) -> str:
    """Train and evaluate one run in a worker process (see ``run_sweep(workers=...)``)."""
    if _WORKER_DEVICE is not None:
        config = {**config, "device": _WORKER_DEVICE}
    _train_and_evaluate(name, TrainConfig.from_dict(config), Path(out_root),
                        SweepSpec.from_dict(spec), False, _default_train, _default_eval, {})
    return name


def _epochs_done(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    try:
        return len(read_jsonl(path)) if path.is_file() else 0
    except (OSError, ValueError):
        return 0  # being rewritten right now


def _run_parallel(spec: SweepSpec, todo, out_root: Path, workers: int, bar, names,
                  slots: list[str | None]) -> None:
    """Run ``todo`` in ``workers`` processes; the bars and results move as each run finishes.

    The sweep bar advances per finished run; a second bar counts the epochs of every run (read
    from the running runs' ``metrics.jsonl``), with the running runs and their epoch shown.
    """
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    total_epochs = sum(c.epochs for _, c in todo)
    epoch_bar = tqdm(total=total_epochs, desc="epochs", unit="epoch", disable=bar.disable)
    shown = 0
    ctx = multiprocessing.get_context("spawn")
    spec_dict = spec.to_dict()
    finished: set[str] = set()
    queue = ctx.Queue()
    for slot in slots:  # one device per worker process, taken by _init_worker at its start
        queue.put(slot)
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                                 initargs=(queue,)) as pool:
            futures = {pool.submit(_run_one_in_worker, name, config.to_dict(), str(out_root),
                                   spec_dict): (name, config) for name, config in todo}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=2.0, return_when=FIRST_COMPLETED)
                for future in done:
                    name = future.result()  # re-raises a worker's error
                    finished.add(name)
                    bar.update(1)
                    _write_results(collect_results(out_root, names), out_root)
                counts = {n: (c.epochs if n in finished else _epochs_done(out_root / n))
                          for n, c in futures.values()}
                now = sum(counts.values())
                if now > shown:
                    epoch_bar.update(now - shown)
                    shown = now
                running = [f"{n} {counts[n]}/{c.epochs}" for n, c in futures.values()
                           if n not in finished and 0 < counts[n] < c.epochs]
                bar.set_postfix_str("; ".join(running[:workers]) or "starting")
    finally:
        epoch_bar.close()
