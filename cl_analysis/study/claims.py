"""The paper's claims as data: measured, judged against seed noise and recorded, never asserted.

A notebook opens one :class:`Ledger` over its sweep's results, measures the quantities a claim
is about (:meth:`Ledger.measure`, one value per seed) and states the claim as an ordering
(:meth:`Ledger.compare`, :meth:`Ledger.increasing`). Each call returns a :class:`Claim` with a
verdict and appends it to ``<out_dir>/claims/<notebook>.json`` (rewritten atomically after every
claim). :func:`collect_ledger` reads every notebook's file back; :func:`ledger_markdown` and
:func:`ledger_json` render the whole ledger. Example, in a notebook::

    ledger = Ledger(RUNS, notebook="04_uniformity_tolerance")
    hard = ledger.measure("hard", 0.07, "tolerance_bank")
    ordinary = ledger.measure("info_nce", 0.07, "tolerance_bank")
    claim = ledger.compare("e@0.07", "the hard loss is less tolerant", "§5.3, Table 1, Fig. 7",
                           larger=ordinary, smaller=hard, paper={"ordinary": 0.04, "hard": 0.034})
    glue("claim_e_007", claim.summary())

**Verdict rule** (one comparison "A > B", d = mean(A) − mean(B); a two-sided test at 5 %):

* *Several seeds, the same seeds on both sides* (≥ 3): paired over seeds, d_i = A_i − B_i,
  SE = std(d_i, ddof=1) / √n, threshold t(0.975, n − 1) · SE (Student t: 4.30 for 3 seeds). Runs
  with the same seed share initialisation and data order, so pairing removes their common part.
* *Several seeds, not paired*: SE = √(s_A²/n_A + s_B²/n_B) with each side's measured seed-to-seed
  std (ddof = 1), threshold t(0.975, Welch–Satterthwaite dof) · SE.
* *One seed* on a side: that side's std is the committed noise floor of the metric
  (:class:`NoiseFloor`, ``noise_floor.json``: one run's seed-to-seed std measured once with ≥ 3
  seeds on the quick profile), SE as in the unpaired rule, threshold 1.96 · SE (the floor is
  treated as known).

The verdict is ``"holds"`` if d > threshold, ``"does not hold"`` if d < −threshold, else
``"within noise"``. A claim made of several comparisons (an ordering along τ, "lower than every
other run") holds if all hold and does not hold if any does not hold; its reported difference and
noise are those of the weakest comparison (smallest d / threshold).

Verdicts never raise. Plumbing errors do, with a ``ValueError`` that names the fix: an unknown run,
a missing metric column, a NaN where a value is needed, a metric with no noise floor when only one
seed was run, a claim id used twice.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = [
    "VERDICTS", "MARKS", "NoiseFloor", "Measured", "Comparison", "Claim", "Ledger",
    "collect_ledger", "ledger_markdown", "ledger_json", "CLAIMS_DIR",
]

VERDICTS = ("holds", "within noise", "does not hold")
MARKS = {"holds": "✓", "within noise": "≈", "does not hold": "✗"}
CLAIMS_DIR = "claims"
_ALPHA = 0.05
_Z = 1.959963984540054  # normal quantile 0.975


# --------------------------------------------------------------------------------------- noise
@dataclass(frozen=True)
class NoiseFloor:
    """Per-metric seed-to-seed standard deviation of one run, with where it comes from.

    Attributes:
        std: ``{metric column: std}`` (ddof = 1, same units as the results table: accuracies
            are fractions).
        provenance: free-form record (profile, seeds, date, commands, source).
    """

    std: Mapping[str, float]
    provenance: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> NoiseFloor:
        """Read a noise-floor JSON file; default: the committed ``study/noise_floor.json``.

        Raises:
            ValueError: if the file has no ``std`` mapping of finite non-negative numbers.
        """
        if path is None:
            text = resources.files(__package__).joinpath("noise_floor.json").read_text("utf-8")
            where = "cl_analysis/study/noise_floor.json"
        else:
            text, where = Path(path).read_text("utf-8"), str(path)
        data = json.loads(text)
        std = data.get("std")
        if not isinstance(std, Mapping) or not std:
            raise ValueError(f"{where} has no 'std' mapping {{metric: seed-to-seed std}}")
        for metric, value in std.items():
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{where}: std[{metric!r}] must be a finite number >= 0, "
                                 f"got {value!r}")
        return cls({k: float(v) for k, v in std.items()}, dict(data.get("provenance", {})))

    def __getitem__(self, metric: str) -> float:
        """The floor of ``metric``; raises ``ValueError`` naming the fix if it is not recorded."""
        if metric not in self.std:
            raise ValueError(
                f"no noise floor for metric {metric!r} (recorded: {sorted(self.std)}); with one "
                f"seed a claim on it cannot be judged: measure its seed-to-seed std with >= 3 "
                f"seeds and add it to noise_floor.json, or train several seeds")
        return self.std[metric]


# ------------------------------------------------------------------------------------ measured
@dataclass(frozen=True)
class Measured:
    """One quantity of this run, one value per seed.

    Attributes:
        label: what it is, as the ledger prints it, e.g. ``"hard τ=0.07"``.
        metric: the results column (or, for a derived quantity, the column whose noise floor
            applies, scaled by ``floor_scale``).
        values: one finite value per seed, in the order of ``seeds``.
        seeds: the seeds, ints, same length as ``values``.
        floor_scale: with one seed the noise is ``floor[metric] * floor_scale`` (√2 for a
            difference of two runs, for instance).
    """

    label: str
    metric: str
    values: tuple[float, ...]
    seeds: tuple[int, ...]
    floor_scale: float = 1.0

    def __post_init__(self):
        values = tuple(float(v) for v in self.values)
        seeds = tuple(int(s) for s in self.seeds)
        if not values or len(values) != len(seeds):
            raise ValueError(f"{self.label}: need one value per seed, got {len(values)} value(s) "
                             f"for seeds {list(seeds)}")
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"{self.label}: seed listed twice in {list(seeds)}")
        bad = [s for s, v in zip(seeds, values) if not math.isfinite(v)]
        if bad:
            raise ValueError(f"{self.label}: {self.metric} is NaN/inf for seed(s) {bad}; the "
                             f"evaluation did not record it, re-run `cl-analysis evaluate`")
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "seeds", seeds)

    @property
    def n(self) -> int:
        """Number of seeds."""
        return len(self.values)

    @property
    def mean(self) -> float:
        """Mean over seeds."""
        return sum(self.values) / self.n

    @property
    def std(self) -> float:
        """Seed-to-seed standard deviation (ddof = 1); NaN with one seed."""
        if self.n < 2:
            return math.nan
        m = self.mean
        return math.sqrt(sum((v - m) ** 2 for v in self.values) / (self.n - 1))

    def text(self, digits: int = 4) -> str:
        """``"0.1142 ± 0.0040 (3 seeds)"`` or ``"0.1142 (1 seed)"``."""
        if self.n < 2:
            return f"{self.mean:.{digits}f} (1 seed)"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f} ({self.n} seeds)"

    @staticmethod
    def combine(label: str, fn: Callable[..., float], *measures: Measured,
                metric: str | None = None, floor_scale: float = 1.0) -> Measured:
        """A derived quantity computed seed by seed, e.g. the range of a metric over τ.

        Args:
            label: the new quantity's label.
            fn: called with one value of each measure (same seed), returns a float.
            *measures: measured on the same seeds.
            metric: whose noise floor applies; default: the first measure's metric.
            floor_scale: scale of that floor for the derived quantity (one seed only).

        Raises:
            ValueError: if the measures were not run on the same seeds.
        """
        if not measures:
            raise ValueError("combine needs at least one measure")
        seeds = measures[0].seeds
        for m in measures[1:]:
            if m.seeds != seeds:
                raise ValueError(f"combine: {m.label} has seeds {list(m.seeds)} but "
                                 f"{measures[0].label} has {list(seeds)}; use the same seeds")
        values = tuple(float(fn(*[m.values[i] for m in measures])) for i in range(len(seeds)))
        return Measured(label, metric or measures[0].metric, values, seeds, floor_scale)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready record (std NaN -> None)."""
        return {"label": self.label, "metric": self.metric, "mean": self.mean,
                "std": None if self.n < 2 else self.std, "n": self.n,
                "values": list(self.values), "seeds": list(self.seeds)}


# ---------------------------------------------------------------------------------- comparison
@dataclass(frozen=True)
class Comparison:
    """One judged ordering ``larger > smaller``: difference, its noise, the rule, the verdict."""

    larger: str
    smaller: str
    difference: float
    se: float
    threshold: float
    rule: str
    verdict: str

    @property
    def strength(self) -> float:
        """``difference / threshold`` (> 1 holds, < −1 does not hold)."""
        if self.threshold > 0:
            return self.difference / self.threshold
        return math.copysign(math.inf, self.difference) if self.difference else 0.0


def _t_quantile(dof: float) -> float:
    if not math.isfinite(dof):
        return _Z
    from scipy import stats

    return float(stats.t.ppf(1 - _ALPHA / 2, dof))


def _verdict(d: float, threshold: float) -> str:
    if d > threshold:
        return "holds"
    if d < -threshold:
        return "does not hold"
    return "within noise"


def judge(larger: Measured, smaller: Measured, floor: NoiseFloor) -> Comparison:
    """Judge ``larger > smaller`` by the rule of the module docstring.

    Raises:
        ValueError: if a side has one seed and its metric has no noise floor.
    """
    if larger.seeds == smaller.seeds and larger.n >= 3:
        diffs = [a - b for a, b in zip(larger.values, smaller.values)]
        d = sum(diffs) / len(diffs)
        sd = math.sqrt(sum((x - d) ** 2 for x in diffs) / (len(diffs) - 1))
        se = sd / math.sqrt(len(diffs))
        k = _t_quantile(len(diffs) - 1)
        rule = f"paired over seeds {list(larger.seeds)}, t(0.975, {len(diffs) - 1}) = {k:.2f}"
    else:
        d = larger.mean - smaller.mean
        parts, floors = [], []
        for m in (larger, smaller):
            if m.n >= 2:
                parts.append((m.std ** 2 / m.n, m.n))
            else:
                std = floor[m.metric] * m.floor_scale
                floors.append(f"{std:.2g} ({m.metric})")
                parts.append((std ** 2, 1))
        se = math.sqrt(sum(v for v, _ in parts))
        if not floors:
            denom = sum(v ** 2 / (n - 1) for v, n in parts)
            dof = se ** 4 / denom if denom > 0 else math.inf
            k = _t_quantile(dof)
            rule = f"unpaired, measured seed spread, Welch t(0.975, {dof:.1f}) = {k:.2f}"
        else:
            k = _Z
            rule = f"one seed: committed noise floor {', '.join(dict.fromkeys(floors))}, z = 1.96"
    threshold = k * se
    return Comparison(larger.label, smaller.label, d, se, threshold, rule, _verdict(d, threshold))


# --------------------------------------------------------------------------------------- claim
@dataclass(frozen=True)
class Claim:
    """One claim of the paper, checked on this run.

    Attributes:
        id: short unique key, e.g. ``"04.e@0.07"``.
        notebook: the notebook that made it.
        statement: the paper's words (or a faithful paraphrase).
        where: section / table / figure, e.g. ``"§5.3, Table 1, Fig. 7"``.
        paper: the paper's value(s), ``{label: value}``, or a sentence when it gives none.
        measured: this run's quantities (:meth:`Measured.to_dict` records).
        comparisons: every judged ordering (:class:`Comparison` as dicts).
        difference: the weakest comparison's difference (larger − smaller).
        noise: that comparison's threshold (the difference it must exceed).
        rule: how the noise was obtained.
        verdict: one of :data:`VERDICTS`.
        explanation: the numbers in words, then the caller's explanation.
    """

    id: str
    notebook: str
    statement: str
    where: str
    paper: Mapping[str, float | None] | str
    measured: tuple[Mapping[str, Any], ...]
    comparisons: tuple[Mapping[str, Any], ...]
    difference: float
    noise: float
    rule: str
    verdict: str
    explanation: str

    @property
    def mark(self) -> str:
        """✓, ≈ or ✗."""
        return MARKS[self.verdict]

    def summary(self) -> str:
        """One sentence for the notebook's prose (e.g. via MyST-NB ``glue``)."""
        this = "; ".join(f"{m['label']} {_value_text(m)}" for m in self.measured)
        return (f"{self.mark} {self.verdict}: {this} (difference {self.difference:+.4g} against "
                f"a noise threshold of {self.noise:.2g})")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN -> None)."""
        return _clean(asdict(self))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Claim:
        """Inverse of :meth:`to_dict`; raises ``ValueError`` on a malformed record."""
        names = [f for f in cls.__dataclass_fields__]
        missing = [n for n in names if n not in d]
        if missing:
            raise ValueError(f"claim record {d.get('id', '?')!r} lacks field(s) {missing}")
        if d["verdict"] not in VERDICTS:
            raise ValueError(f"claim {d['id']!r}: verdict {d['verdict']!r} not in {VERDICTS}")
        kw = {n: d[n] for n in names}
        kw["measured"] = tuple(kw["measured"])
        kw["comparisons"] = tuple(kw["comparisons"])
        for n in ("difference", "noise"):
            kw[n] = math.nan if kw[n] is None else float(kw[n])
        return cls(**kw)


def _clean(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Mapping):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def _value_text(m: Mapping[str, Any], digits: int = 4) -> str:
    if m.get("std") is None or m.get("n", 1) < 2:
        return f"{m['mean']:.{digits}g} (1 seed)"
    return f"{m['mean']:.{digits}g} ± {m['std']:.2g} ({m['n']} seeds)"


# -------------------------------------------------------------------------------------- ledger
def _is_nan(x: Any) -> bool:
    try:
        return math.isnan(float(x))
    except (TypeError, ValueError):
        return x is None


class Ledger:
    """One notebook's claims over one sweep: measure, compare, record.

    Args:
        results: the sweep's results table (``load_results(runs_dir)``) or the runs folder.
        notebook: the notebook's name, e.g. ``"04_uniformity_tolerance"``; names the JSON file.
        out_dir: where ``claims/<notebook>.json`` is written; default: ``results`` when it is a
            folder; ``None`` with a DataFrame keeps the ledger in memory.
        noise: the one-seed noise floor; default: the committed :meth:`NoiseFloor.load`.
        dataset, regime: the defaults of :meth:`measure`; when None, the results must hold
            only one dataset / regime.

    Raises:
        ValueError: if ``results`` lacks a needed column or the folder has no results.
    """

    def __init__(self, results, *, notebook: str, out_dir: str | os.PathLike | None = None,
                 noise: NoiseFloor | None = None, dataset: str | None = None,
                 regime: str | None = None):
        import pandas as pd

        if isinstance(results, (str, os.PathLike)):
            from .sweep import load_results

            runs_dir = Path(results)
            results = load_results(runs_dir)
            if out_dir is None:
                out_dir = runs_dir
        if not isinstance(results, pd.DataFrame):
            raise ValueError(f"results must be a DataFrame or a runs folder, got "
                             f"{type(results).__name__}")
        needed = ("run", "dataset", "regime", "loss", "temperature", "seed")
        missing = [c for c in needed if c not in results.columns]
        if missing:
            raise ValueError(f"results lacks column(s) {missing}; pass load_results(runs_dir)")
        if not notebook or "/" in notebook or notebook.startswith("."):
            raise ValueError(f"notebook must be a plain name like '04_uniformity_tolerance', "
                             f"got {notebook!r}")
        self.results = results
        self.notebook = notebook
        self.noise = noise if noise is not None else NoiseFloor.load()
        self.dataset = dataset
        self.regime = regime
        self.path = None if out_dir is None else Path(out_dir) / CLAIMS_DIR / f"{notebook}.json"
        self.claims: list[Claim] = []
        if self.path is not None:
            self._write()  # a re-executed notebook starts its file afresh

    def _default(self, column: str, value: str | None) -> str:
        if value is not None:
            return value
        present = sorted(set(self.results[column].dropna()))
        if len(present) != 1:
            raise ValueError(f"results hold {column}s {present}; pass {column}=... to measure "
                             f"or to the Ledger")
        return present[0]

    def measure(self, loss: str, temperature: float | None = None,
                metric: str = "linear_top1", *, dataset: str | None = None,
                regime: str | None = None, label: str | None = None,
                table=None) -> Measured:
        """This run's ``metric`` for one configuration, one value per seed.

        Args:
            loss: registry name, e.g. ``"info_nce"``, ``"hard"``, ``"simple"``.
            temperature: τ; None (or NaN) for τ-free losses.
            metric: a column of the results table, e.g. ``"tolerance_bank"``.
            dataset: overrides the ledger's default dataset.
            regime: overrides the ledger's default regime.
            label: how the ledger prints it; default ``"<loss> τ=<t>"``.
            table: read ``metric`` from this table (same columns as the results, one row per
                run) instead, e.g. one epoch of :meth:`~cl_analysis.study.runs.SweepRuns.
                history_table`; the noise floor of ``metric`` still applies.

        Raises:
            ValueError: no such run (the message lists what there is), no such column, or a
                NaN value.
        """
        dataset = self._default("dataset", dataset if dataset is not None else self.dataset)
        regime = self._default("regime", regime if regime is not None else self.regime)
        r = self.results if table is None else table
        what = "results" if table is None else "table"
        if metric not in r.columns:
            raise ValueError(f"{what} have no column {metric!r}; columns: {list(r.columns)}")
        if table is not None and table.empty:
            raise ValueError("the table is empty: check the filter that made it (e.g. an epoch "
                             "that was not monitored)")
        rows = r[(r["dataset"] == dataset) & (r["regime"] == regime) & (r["loss"] == loss)]
        if _is_nan(temperature):
            rows = rows[rows["temperature"].isna()]
        else:
            t = rows["temperature"].astype(float)
            rows = rows[(t - float(temperature)).abs() <= 1e-9]
        if rows.empty:
            have = sorted({(lo, None if _is_nan(t) else float(t))
                           for lo, t in zip(r["loss"], r["temperature"])}, key=str)
            raise ValueError(f"no run with dataset={dataset}, regime={regime}, loss={loss!r}, "
                             f"temperature={temperature!r}; the sweep has (loss, τ) {have}: "
                             f"train it or fix the notebook's grid")
        if rows["run"].duplicated().any():
            raise ValueError(f"the {what} holds several rows per run for {loss!r} "
                             f"τ={temperature!r} (a history table?): pick one epoch, "
                             f"table[table['epoch'] == e]")
        rows = rows.sort_values("seed")
        try:
            values = rows[metric].astype(float).tolist()
        except (TypeError, ValueError):
            raise ValueError(f"{metric} does not hold one number per run (e.g. a histogram); "
                             f"measure a scalar column") from None
        nan_runs = [run for run, v in zip(rows["run"], values) if _is_nan(v)]
        if nan_runs:
            raise ValueError(f"{metric} is NaN for run(s) {nan_runs}; the evaluation did not "
                             f"record it: re-run `cl-analysis evaluate` on them")
        if label is None:
            label = loss if _is_nan(temperature) else f"{loss} τ={float(temperature):g}"
        return Measured(label, metric, tuple(values), tuple(int(s) for s in rows["seed"]))

    # -- claims
    def compare(self, id: str, statement: str, where: str, *,
                larger: Measured | Sequence[Measured], smaller: Measured | Sequence[Measured],
                paper: Mapping[str, float | None] | str | None = None, explanation: str = "",
                if_not: str = "") -> Claim:
        """Record the claim "every ``larger`` exceeds every ``smaller``".

        Args:
            id: unique within the ledger, e.g. ``"e@0.07"`` (stored as ``"<notebook>:<id>"``).
            statement: the paper's claim in its words.
            where: section / table / figure.
            larger: one or several :class:`Measured`; every (larger, smaller) pair is judged.
            smaller: one or several :class:`Measured`.
            paper: the paper's value(s) ``{label: value}``, or a sentence.
            explanation: why the paper expects it (always shown).
            if_not: what it means when it does not hold at this scale (shown unless it holds).

        Returns:
            The recorded :class:`Claim`, whatever its verdict.

        Raises:
            ValueError: plumbing only (duplicate id, missing noise floor, bad arguments).
        """
        big = [larger] if isinstance(larger, Measured) else list(larger)
        small = [smaller] if isinstance(smaller, Measured) else list(smaller)
        if not big or not small:
            raise ValueError(f"claim {id!r}: larger and smaller need at least one Measured each")
        pairs = [(a, b) for a in big for b in small]
        return self._record(id, statement, where, big + small, pairs, paper, explanation, if_not)

    def increasing(self, id: str, statement: str, where: str, measures: Sequence[Measured], *,
                   paper: Mapping[str, float | None] | str | None = None,
                   explanation: str = "", if_not: str = "") -> Claim:
        """Record the claim "``measures`` increase in the order given" (e.g. along τ).

        Each consecutive pair is one comparison; for "decreasing" pass the list reversed.
        Arguments and errors as :meth:`compare`; at least two measures.
        """
        ms = list(measures)
        if len(ms) < 2:
            raise ValueError(f"claim {id!r}: an ordering needs at least two measures")
        pairs = [(b, a) for a, b in zip(ms, ms[1:])]
        return self._record(id, statement, where, ms, pairs, paper, explanation, if_not)

    def _record(self, id, statement, where, measures, pairs, paper, explanation, if_not):
        full_id = f"{self.notebook}:{id}"
        if any(c.id == full_id for c in self.claims):
            raise ValueError(f"claim id {id!r} used twice in {self.notebook}; ids must be unique")
        for m in measures:
            if not isinstance(m, Measured):
                raise ValueError(f"claim {id!r}: expected Measured (ledger.measure(...)), got "
                                 f"{type(m).__name__}")
        comparisons = [judge(a, b, self.noise) for a, b in pairs]
        if any(c.verdict == "does not hold" for c in comparisons):
            verdict = "does not hold"
        elif all(c.verdict == "holds" for c in comparisons):
            verdict = "holds"
        else:
            verdict = "within noise"
        weakest = min(comparisons, key=lambda c: c.strength)
        words = (f"{weakest.larger} − {weakest.smaller} = {weakest.difference:+.4g}, noise "
                 f"threshold {weakest.threshold:.2g} ({weakest.rule})")
        if len(comparisons) > 1:
            counts = {v: sum(c.verdict == v for c in comparisons) for v in VERDICTS}
            words = (f"{len(comparisons)} comparisons: "
                     + ", ".join(f"{n} {v}" for v, n in counts.items() if n)
                     + f"; weakest: {words}")
        text = ". ".join(s for s in (words, explanation.strip(),
                                     "" if verdict == "holds" else if_not.strip()) if s)
        seen, measured = set(), []
        for m in measures:
            if m.label not in seen:
                seen.add(m.label)
                measured.append(m.to_dict())
        claim = Claim(
            id=full_id, notebook=self.notebook, statement=statement, where=where,
            paper=dict(paper) if isinstance(paper, Mapping) else (paper or ""),
            measured=tuple(measured), comparisons=tuple(asdict(c) for c in comparisons),
            difference=weakest.difference, noise=weakest.threshold, rule=weakest.rule,
            verdict=verdict, explanation=text)
        self.claims.append(claim)
        if self.path is not None:
            self._write()
        return claim

    def _write(self) -> None:
        from ..training.checkpoint import write_text_atomic

        payload = {"notebook": self.notebook, "claims": [c.to_dict() for c in self.claims]}
        write_text_atomic(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", self.path)

    def markdown(self) -> str:
        """This notebook's claims as a Markdown table (see :func:`ledger_markdown`)."""
        return ledger_markdown(self.claims)


# ------------------------------------------------------------------------------- whole ledger
def collect_ledger(directory: str | os.PathLike) -> list[Claim]:
    """Every claim recorded under ``directory/claims/*.json``, notebooks in name order.

    Raises:
        FileNotFoundError: if there is no claims file (no notebook recorded its claims).
        ValueError: if a file is not a ledger file (names the file).
    """
    folder = Path(directory) / CLAIMS_DIR
    files = sorted(folder.glob("*.json"))
    if not files:
        raise FileNotFoundError(f"no claims file in {folder}; run the notebooks with a Ledger "
                                f"whose out_dir is {directory}")
    claims = []
    for path in files:
        try:
            data = json.loads(path.read_text("utf-8"))
            records = data["claims"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"{path} is not a claims file ({exc}); delete it and re-run its "
                             f"notebook") from None
        claims.extend(Claim.from_dict(r) for r in records)
    return claims


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _paper_text(paper: Mapping[str, float | None] | str) -> str:
    if isinstance(paper, str):
        return paper or "—"
    return "; ".join(f"{k}: {'—' if v is None else f'{v:g}'}" for k, v in paper.items()) or "—"


def ledger_markdown(claims: Sequence[Claim], *, compact: bool = False) -> str:
    """The ledger as Markdown: a count line, then one table row per claim.

    Columns: mark (✓ holds, ≈ within noise, ✗ does not hold), claim id, the paper's statement and
    where, the paper's value(s), this run's value(s) ± seed spread, difference vs the noise
    threshold, verdict, explanation. ``compact=True`` (for narrow pages, e.g. the book) keeps
    mark, statement, where, difference and verdict in the table and lists each claim's values and
    explanation below it.
    """
    if compact:
        return _ledger_compact(claims)
    counts = {v: sum(c.verdict == v for c in claims) for v in VERDICTS}
    head = (f"{len(claims)} claims: {counts['holds']} ✓ hold, {counts['within noise']} ≈ within "
            f"noise, {counts['does not hold']} ✗ do not hold.\n\n")
    lines = ["| | claim | paper says (where) | paper | this run | difference (noise) | verdict "
             "| explanation |", "|---|---|---|---|---|---|---|---|"]
    for c in claims:
        this = "; ".join(f"{m['label']}: {_value_text(m)}" for m in c.measured)
        lines.append("| " + " | ".join(_cell(x) for x in (
            c.mark, c.id, f"{c.statement} ({c.where})", _paper_text(c.paper), this,
            f"{c.difference:+.4g} ({c.noise:.2g})", c.verdict, c.explanation)) + " |")
    return head + "\n".join(lines) + "\n"


def _ledger_compact(claims: Sequence[Claim]) -> str:
    counts = {v: sum(c.verdict == v for c in claims) for v in VERDICTS}
    out = [f"{len(claims)} claims: {counts['holds']} ✓ hold, {counts['within noise']} ≈ within "
           f"noise, {counts['does not hold']} ✗ do not hold.", "",
           "| | claim (paper) | where | difference (noise) | verdict |", "|---|---|---|---|---|"]
    for c in claims:
        out.append("| " + " | ".join(_cell(x) for x in (
            c.mark, f"{c.statement} ({c.id.split(':')[0][:2]}:{c.id.split(':', 1)[-1]})", c.where,
            f"{c.difference:+.3g} ({c.noise:.2g})", c.verdict)) + " |")
    out += ["", "**Details**", ""]
    for c in claims:
        this = "; ".join(f"{m['label']}: {_value_text(m)}" for m in c.measured)
        out.append(f"- {c.mark} **{c.id}**, {c.statement}. Paper: {_paper_text(c.paper)}. "
                   f"This run: {this}. {c.explanation}")
    return "\n".join(out) + "\n"


def ledger_json(claims: Sequence[Claim]) -> str:
    """The ledger as a JSON document ``{"counts": {...}, "claims": [...]}``."""
    counts = {v: sum(c.verdict == v for c in claims) for v in VERDICTS}
    return json.dumps({"counts": counts, "claims": [c.to_dict() for c in claims]}, indent=2,
                      ensure_ascii=False) + "\n"
