"""The main job: run a sweep, execute every notebook with papermill, write a summary.

The notebooks receive one parameter, ``RUNS_DIR``: they read the sweep's ``sweep.json`` (the
resolved config of every run) and its results, so every option given to ``reproduce`` reaches
them, and they never train.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"


def reproduce(spec, runs_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
              workers: int = 1, notebook_dir: str | os.PathLike | None = None,
              progress: bool = True, book: bool = True, devices=None) -> list[str]:
    """The main job: train ``spec`` and its density study, execute the notebooks, write the rest.

    Trains (resumably) into ``runs_dir``; executes every notebook into ``out_dir`` unless its
    code and inputs are unchanged since its last execution there; collects every notebook's
    claims into ``ledger.md`` / ``ledger.json``; writes ``summary.md`` / ``.html`` (Table 1 and
    the ledger); builds the book (``out_dir/book/html/index.html``). A claim that does not hold
    is a ✗ in the ledger, never an error: the job always completes unless something is broken.

    ``workers`` / ``devices``: as :func:`cl_analysis.study.sweep.run_sweep` (several runs at
    once, spread over GPUs).

    Returns:
        Lines for the user: runs, notebooks (executed or reused), ledger verdicts, summary, book.
    """
    from .study.claims import collect_ledger, ledger_json, ledger_markdown
    from .study.runs import density_spec
    from .study.sweep import run_sweep
    from .training.checkpoint import write_text_atomic

    runs_dir, out = Path(runs_dir), Path(out_dir)
    run_sweep(spec, runs_dir, progress=progress, workers=workers, devices=devices)
    run_sweep(density_spec(spec), runs_dir / "density", progress=progress, workers=workers,
              devices=devices)
    notebooks, reused = execute_notebooks(out, {"RUNS_DIR": str(runs_dir)},
                                          notebook_dir=notebook_dir, progress=progress,
                                          inputs=_run_inputs(runs_dir), report_reuse=True)
    claims = collect_ledger(runs_dir)
    ledger_md = ledger_markdown(claims)
    write_text_atomic(ledger_md + "\n", out / "ledger.md")
    write_text_atomic(ledger_json(claims), out / "ledger.json")
    md, html = write_summary(runs_dir, out, ledger_md=ledger_md)
    counts = {v: sum(c.verdict == v for c in claims) for v in ("holds", "within noise",
                                                               "does not hold")}
    lines = [f"runs: {runs_dir}",
             f"notebooks: {len(notebooks) - len(reused)} executed, {len(reused)} unchanged "
             f"(not re-executed) in {out}",
             f"ledger: {len(claims)} claims — {counts['holds']} ✓ hold, {counts['within noise']} "
             f"≈ within noise, {counts['does not hold']} ✗ do not hold: {out / 'ledger.md'}",
             f"summary: {md} and {html}"]
    if book:
        index = _book(notebooks, out, runs_dir, ledger_markdown(claims, compact=True), md)
        lines.append(f"book: {index}")
    return lines


def _run_inputs(runs_dir: Path) -> list[Path]:
    """The files a notebook's output depends on besides its own code: what ran and its results."""
    files = []
    for folder in (runs_dir, runs_dir / "density"):
        files += [folder / "sweep.json", folder / "results.json"]
    return [f for f in files if f.is_file()]


def _book(notebooks: list[Path], out: Path, runs_dir: Path, ledger_md: str, summary: Path) -> Path:
    import nbformat

    from .book import build_book
    from .study.provenance import provenance
    from .study.runs import load_sweep

    executed = nbformat.read(notebooks[-1], as_version=4).metadata.get("cl_analysis", {})
    record = provenance(load_sweep(runs_dir), date=executed.get("executed"))
    return build_book(notebooks, out / "book", ledger_md=ledger_md,
                      summary_md=summary.read_text(encoding="utf-8"), provenance=record)


def notebook_paths(notebook_dir: str | os.PathLike | None = None) -> list[Path]:
    """The ordered ``NN_*.ipynb`` notebooks."""
    folder = Path(notebook_dir) if notebook_dir else NOTEBOOK_DIR
    paths = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        raise FileNotFoundError(f"no NN_*.ipynb notebooks in {folder}; run from a source checkout "
                                f"or pass --notebooks pointing at the notebooks folder")
    return paths


def _inputs_key(source: Path, parameters: dict[str, Any], inputs: list[Path]) -> str:
    """sha256 of a notebook's cells, its parameters, the package's source and its input files.

    Not the git commit: a commit that changes no code (docs, notebooks of others) must not make
    every notebook run again; the package's own files are hashed instead.
    """
    import hashlib
    import json

    import nbformat

    nb = nbformat.read(source, as_version=4)
    h = hashlib.sha256()
    for cell in nb.cells:
        h.update(cell.cell_type.encode() + b"\0" + cell.source.encode() + b"\0")
    h.update(json.dumps(parameters, sort_keys=True, default=str).encode())
    package = Path(__file__).resolve().parent
    for path in sorted([*package.rglob("*.py"), *package.rglob("*.json")]):  # what it imports
        h.update(path.relative_to(package).as_posix().encode() + path.read_bytes())
    for path in inputs:
        h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def execute_notebooks(out_dir: str | os.PathLike, parameters: dict[str, Any], *,
                      notebook_dir: str | os.PathLike | None = None, progress: bool = True,
                      html: bool = True, inputs: list[Path] = (), report_reuse: bool = False):
    """Execute each notebook with papermill into ``out_dir`` (and HTML beside it).

    Only the parameters a notebook declares in its ``parameters`` cell are injected. A notebook
    whose code, parameters, package source and ``inputs`` files hash to the key stored in its
    previous output (``metadata.cl_analysis.inputs_sha256``) is not executed again.

    Returns:
        The executed notebooks in order; with ``report_reuse`` also the list of those reused.
    """
    import datetime

    import nbformat
    import papermill

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written, reused = [], []
    for path in tqdm(notebook_paths(notebook_dir), desc="notebooks", disable=not progress):
        target = out / path.name
        key = _inputs_key(path, parameters, list(inputs))
        if target.is_file():
            old = nbformat.read(target, as_version=4).metadata.get("cl_analysis", {})
            if old.get("inputs_sha256") == key:
                written.append(target)
                reused.append(target)
                continue
        _with_python_kernel(path, target)  # jupytext pairing may strip the kernelspec
        declared = papermill.inspect_notebook(str(target))
        params = {k: v for k, v in parameters.items() if k in declared}
        papermill.execute_notebook(str(target), str(target), parameters=params,
                                   cwd=str(path.parent), progress_bar=False,
                                   kernel_name="python3")
        nb = nbformat.read(target, as_version=4)
        nb.metadata["cl_analysis"] = {"inputs_sha256": key,
                                      "executed": datetime.date.today().isoformat()}
        nbformat.write(nb, target)
        if html:
            _to_html(target)
        written.append(target)
    return (written, reused) if report_reuse else written


def _with_python_kernel(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target``, naming the python3 kernel where the notebook names none."""
    import nbformat

    nb = nbformat.read(source, as_version=4)
    nb.metadata.setdefault("kernelspec", {"name": "python3", "display_name": "Python 3",
                                          "language": "python"})
    nb.metadata.setdefault("language_info", {"name": "python"})
    nbformat.write(nb, target)


def _to_html(notebook: Path) -> Path:
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nbformat.read(notebook, as_version=4))
    target = notebook.with_suffix(".html")
    target.write_text(body, encoding="utf-8")
    return target


def write_summary(runs_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
                  ledger_md: str | None = None) -> tuple[Path, Path]:
    """Table 1 side by side (paper | this run) as ``summary.md`` and ``summary.html``.

    The profile and dataset come from the sweep's ``sweep.json``; Table 1 (means over seeds) is
    shown only for the paper's datasets; the claims ledger (``ledger_md``) when given; the mean
    ± seed-to-seed std of every (loss, τ) when several seeds ran; every run's row always.
    """
    from .plots import table1_side_by_side, table_to_html, table_to_markdown
    from .study.paper_results import DATASETS as PAPER_DATASETS
    from .study.sweep import load_results, load_spec

    spec = load_spec(runs_dir)
    profile, dataset = spec.profile, spec.base.dataset
    results = load_results(runs_dir)
    # Table 1 only for the paper's datasets; other data gets the per-run table alone
    table = table1_side_by_side(results, dataset=dataset) if dataset in PAPER_DATASETS else None
    cols = [c for c in ("run", "loss", "temperature", "linear_top1", "knn_top1", "uniformity",
                        "tolerance", "uniformity_bank", "tolerance_bank", "penalty_entropy",
                        "seed", "wall_time_s") if c in results.columns]
    seeds = list(spec.grid.seeds)
    head = (f"# cl-analysis summary — profile `{profile}`, {dataset}\n\n"
            f"Runs in `{Path(runs_dir).name}/`, seeds {seeds}. Accuracies are fractions.\n\n")
    md = head
    if table is not None:
        md += ("## Table 1, paper | this run\n\n" + table_to_markdown(table)
               + ("\n\nThis run's values are means over the seeds." if len(seeds) > 1 else "")
               + "\n\n")
    if ledger_md:
        md += "## The paper's claims at this scale\n\n" + ledger_md + "\n\n"
    if len(seeds) > 1:
        from .study.results import aggregate

        agg = aggregate(results)
        spread = agg[["loss", "temperature", "n_seeds"]].copy()
        for m in ("linear_top1", "knn_top1", "uniformity_bank", "tolerance_bank"):
            spread[m] = [f"{a:.4f} ± {b:.4f}" for a, b in zip(agg[f"{m}_mean"], agg[f"{m}_std"])]
        md += "## Mean ± seed-to-seed std\n\n" + table_to_markdown(spread) + "\n\n"
    md += "## Every run\n\n" + table_to_markdown(results[cols].round(4))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md_path, html_path = out / "summary.md", out / "summary.html"
    md_path.write_text(md + "\n", encoding="utf-8")
    table_html = ("" if table is None else
                  f"<h2>Table 1, paper | this run</h2>{table_to_html(table)}")
    html_path.write_text(f"<h1>cl-analysis summary: profile {profile}, {dataset}</h1>"
                         f"{table_html}"
                         + ("" if not ledger_md else
                            f"<h2>The paper's claims at this scale</h2><pre>{ledger_md}</pre>") +
                         f"<h2>Every run</h2>{results[cols].round(4).to_html(index=False)}",
                         encoding="utf-8")
    return md_path, html_path

