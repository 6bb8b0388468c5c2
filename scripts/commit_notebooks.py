"""Copy executed notebooks (a `reproduce --out DIR` folder) over the committed ones, outputs kept.

Usage: python scripts/commit_notebooks.py reports-seeds [notebooks]

Drops papermill's injected-parameters cell and its run metadata, keeps each cell's tags (the
jupytext pairing filter) and the committed notebook's own metadata, so that the committed
.ipynb stays paired with its reviewed .py and records the run's outputs. Refuses a notebook
whose .py differs from the executed code (re-run `reproduce` first).
"""

import sys
from pathlib import Path

import nbformat


def _code(nb) -> list[str]:
    return [c.source for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]


def main(executed: str, committed: str = "notebooks") -> None:
    import jupytext

    sources = sorted(Path(executed).glob("[0-9][0-9]_*.ipynb"))
    if not sources:
        sys.exit(f"no executed NN_*.ipynb in {executed}: pass the --out folder of a reproduce run")
    plan = []
    for src in sources:  # check every notebook before writing any
        target = Path(committed) / src.name
        if not target.is_file() or not target.with_suffix(".py").is_file():
            sys.exit(f"{target} or its paired .py is missing: is {committed} the notebooks folder?")
        nb = nbformat.read(src, as_version=4)
        if _code(nb) != [c.source for c in jupytext.read(target.with_suffix(".py")).cells]:
            sys.exit(f"{src} was executed from other code than {target.with_suffix('.py')}: "
                     f"run `cl-analysis reproduce` again first")
        plan.append((src, target, nb))
    for src, target, nb in plan:
        nb.cells = [c for c in nb.cells
                    if "injected-parameters" not in c.metadata.get("tags", [])]
        for cell in nb.cells:
            cell.metadata = {"tags": list(cell.metadata.get("tags", []))}
        nb.metadata = nbformat.read(target, as_version=4).metadata
        nbformat.write(nb, target)
        print(f"{src} -> {target}")


if __name__ == "__main__":
    if not 2 <= len(sys.argv) <= 3:
        sys.exit(__doc__)
    main(*sys.argv[1:3])
