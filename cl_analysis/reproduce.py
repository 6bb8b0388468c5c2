"""The main job: run a sweep, execute every notebook with papermill, write a summary.

The notebooks receive one parameter, ``RUNS_DIR``: they read the sweep's ``sweep.json`` (the
resolved config of every run) and its results, so every option given to ``reproduce`` reaches
them, and they never train.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"


def reproduce(spec, runs_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
              workers: int = 1, notebook_dir: str | os.PathLike | None = None,
              progress: bool = True) -> list[str]:
    """Train ``spec`` (resumable) and its density study into ``runs_dir``, run every notebook.

    Returns:
        Lines for the user: the executed notebooks, the summary, the runs folder.
    """
    from .study.runs import density_spec
    from .study.sweep import run_sweep

    runs_dir = Path(runs_dir)
    run_sweep(spec, runs_dir, progress=progress, workers=workers)
    run_sweep(density_spec(spec), runs_dir / "density", progress=progress, workers=workers)
    notebooks = execute_notebooks(out_dir, {"RUNS_DIR": str(runs_dir)},
                                  notebook_dir=notebook_dir, progress=progress)
    md, html = write_summary(runs_dir, out_dir)
    return [f"runs: {runs_dir}", f"executed notebooks: {', '.join(str(p) for p in notebooks)}",
            f"summary: {md} and {html}"]


def notebook_paths(notebook_dir: str | os.PathLike | None = None) -> list[Path]:
    """The ordered ``NN_*.ipynb`` notebooks."""
    folder = Path(notebook_dir) if notebook_dir else NOTEBOOK_DIR
    paths = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        raise FileNotFoundError(f"no NN_*.ipynb notebooks in {folder}; run from a source checkout "
                                f"or pass --notebooks pointing at the notebooks folder")
    return paths


def execute_notebooks(out_dir: str | os.PathLike, parameters: dict[str, Any], *,
                      notebook_dir: str | os.PathLike | None = None, progress: bool = True,
                      html: bool = True) -> list[Path]:
    """Execute each notebook with papermill into ``out_dir`` (and HTML beside it).

    Only the parameters a notebook declares in its ``parameters`` cell are injected.
    """
    import papermill

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in tqdm(notebook_paths(notebook_dir), desc="notebooks", disable=not progress):
        target = out / path.name
        _with_python_kernel(path, target)  # jupytext pairing may strip the kernelspec
        declared = papermill.inspect_notebook(str(target))
        params = {k: v for k, v in parameters.items() if k in declared}
        papermill.execute_notebook(str(target), str(target), parameters=params,
                                   cwd=str(path.parent), progress_bar=False,
                                   kernel_name="python3")
        if html:
            _to_html(target)
        written.append(target)
    return written


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


def write_summary(runs_dir: str | os.PathLike, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Table 1 side by side (paper | this run) as ``summary.md`` and ``summary.html``.

    The profile and dataset come from the sweep's ``sweep.json``; Table 1 is shown only for the
    paper's datasets, every run's row always.
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
    head = (f"# cl-analysis summary — profile `{profile}`, {dataset}\n\n"
            f"Runs in `{Path(runs_dir).name}/`; generated {time.strftime('%Y-%m-%d %H:%M')}.\n\n")
    md = head
    if table is not None:
        md += "## Table 1, paper | this run\n\n" + table_to_markdown(table) + "\n\n"
    md += "## Every run\n\n" + table_to_markdown(results[cols].round(4))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md_path, html_path = out / "summary.md", out / "summary.html"
    md_path.write_text(md + "\n", encoding="utf-8")
    table_html = ("" if table is None else
                  f"<h2>Table 1, paper | this run</h2>{table_to_html(table)}")
    html_path.write_text(f"<h1>cl-analysis summary: profile {profile}, {dataset}</h1>"
                         f"{table_html}"
                         f"<h2>Every run</h2>{results[cols].round(4).to_html(index=False)}",
                         encoding="utf-8")
    return md_path, html_path

