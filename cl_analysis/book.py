"""One static HTML book from the executed notebooks, the claims ledger and Table 1 (an edge module).

The book is a Sphinx site built with MyST-NB (notebooks rendered from their stored outputs, never
re-executed: ``nb_execution_mode = "off"``) and the Sphinx Book Theme; both are ordinary pip
packages, no node and no binary download. Its pages, in navigation order: an introduction with
the run's provenance, the notebooks in the order given, the claims ledger, Table 1 side by side,
how to reproduce.

Offline by construction: equations are typeset in the browser by MathJax 3 bundled from the pip
package ``sphinx-mathjax-offline`` (copied into ``_static/mathjax``), ipywidgets outputs are
replaced by a note (their JavaScript lives on a CDN; each widget should have a static figure
beside it), and after the build every page is checked for ``<script src>`` / ``<link href>``
pointing at http(s) (a :class:`RuntimeError` if one does).

Notebook authors can use MyST-NB's ``glue`` (``from myst_nb import glue; glue("name", value)``
in a code cell, ``{glue:text}`name``` in Markdown) and the cell tags ``remove-cell`` (parameter
cells, CI plumbing), ``remove-input``, ``remove-output`` and ``hide-input``.

Caching: :func:`build_book` hashes its inputs (notebook bytes, Markdown, provenance, this module
and the versions of the build tools) and skips the build, saying so, when the hash matches the
previous build's and its ``index.html`` still exists.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .study.provenance import git_commit

__all__ = ["build_book", "book_provenance", "REQUIRED_PROVENANCE", "DATA_SOURCE"]

DATA_SOURCE = "CIFAR-10 (JPEG export)"
REQUIRED_PROVENANCE = ("package_version", "git_commit", "profile", "seeds", "device", "threads",
                       "torch_version", "data_source", "date")
_PROVENANCE_NAMES = {
    "package_version": "cl-analysis version", "git_commit": "git commit", "profile": "profile",
    "seeds": "seeds", "device": "device", "threads": "CPU threads",
    "torch_version": "torch version", "data_source": "data", "date": "notebooks executed",
}
_TOOLS = ("sphinx", "myst-nb", "myst-parser", "sphinx-book-theme", "pydata-sphinx-theme",
          "sphinx-mathjax-offline")
_HASH_FILE = ".book-inputs.sha256"
_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
_WIDGET_NOTE = ("*(Interactive widget: open the notebook in Jupyter to use it; the static "
                "figure beside it shows the same.)*")
_PAGES = ("ledger", "table1", "reproduce")


def book_provenance(profile: str, seeds: Sequence[int], device: str, threads: int, *,
                    date: str, data_source: str = DATA_SOURCE) -> dict[str, Any]:
    """The provenance record :func:`build_book` needs, with versions and commit filled in.

    Args:
        profile: the profile the runs used, e.g. ``"quick"``.
        seeds: the sweep's seeds.
        device: e.g. ``"cpu"`` or ``"cuda (NVIDIA H200)"``.
        threads: CPU threads per run.
        date: when the notebooks were executed (ISO date). Pass the execution's date, not
            today's: it is part of the book's cache key.
        data_source: the data set's description.

    Returns:
        ``{key: value}`` for every key of :data:`REQUIRED_PROVENANCE`.
    """
    import torch

    from . import __version__

    return {"package_version": __version__, "git_commit": git_commit(),
            "profile": profile, "seeds": [int(s) for s in seeds], "device": device,
            "threads": int(threads), "torch_version": torch.__version__,
            "data_source": data_source, "date": date}


def _tool_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in _TOOLS:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "missing"
    missing = [n for n, v in found.items() if v == "missing"]
    if missing:
        raise RuntimeError(f"the book needs {missing}; install them with "
                           f"`pip install -e .[dev]` (they are in pyproject.toml's dev extra)")
    return found


def _inputs_hash(notebooks: Sequence[Path], texts: Mapping[str, str],
                 provenance: Mapping[str, Any], tools: Mapping[str, str]) -> str:
    h = hashlib.sha256()

    def add(tag: str, data: bytes) -> None:
        h.update(tag.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)

    for nb in notebooks:
        add(f"notebook:{nb.name}", nb.read_bytes())
    for key in sorted(texts):
        add(f"text:{key}", texts[key].encode("utf-8"))
    add("provenance", json.dumps(provenance, sort_keys=True, default=str).encode())
    add("tools", json.dumps(dict(tools), sort_keys=True).encode())
    add("book.py", Path(__file__).read_bytes())
    return h.hexdigest()


def _static_notebook(source: Path, target: Path) -> None:
    """Copy a notebook, replacing ipywidgets outputs (CDN JavaScript) by a short note.

    Papermill's injected parameter cell (machine paths, CI plumbing) is hidden like the
    notebook's own parameter cell (``remove-cell``).
    """
    nb = json.loads(source.read_text("utf-8"))
    nb.get("metadata", {}).pop("widgets", None)
    for cell in nb.get("cells", []):
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            cell["metadata"]["tags"] = [*tags, "remove-cell"]
        outputs = cell.get("outputs") or []
        for i, out in enumerate(outputs):
            if _WIDGET_VIEW in (out.get("data") or {}):
                outputs[i] = {"output_type": "display_data", "metadata": {},
                              "data": {"text/markdown": _WIDGET_NOTE}}
    target.write_text(json.dumps(nb, ensure_ascii=False), encoding="utf-8")


def _md_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        value = ", ".join(str(v) for v in value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def _intro(provenance: Mapping[str, Any], stems: Sequence[str]) -> str:
    rows = "\n".join(f"| {_PROVENANCE_NAMES.get(k, k)} | {_md_value(v)} |"
                     for k, v in provenance.items())
    toc = "\n".join([*stems, *_PAGES])
    return f"""# Understanding the Behaviour of Contrastive Loss, executed

This book is the executed companion of Wang & Liu, *Understanding the Behaviour of Contrastive
Loss* (CVPR 2021) and SimCLR (Chen et al., ICML 2020), produced by the `cl-analysis` package:
every figure and number below was computed by the notebooks on the runs listed here. The
notebooks come first, in order; then the **claims ledger** (each claim of the paper, the paper's
value, this run's value with its seed spread, and a verdict: ✓ holds, ≈ within noise, ✗ does not
hold), **Table 1** of the paper side by side with this run, and **how to reproduce** the book.

## Provenance

| | |
|---|---|
{rows}

```{{toctree}}
:maxdepth: 1
:caption: Contents

{toc}
```
"""


def _reproduce(provenance: Mapping[str, Any]) -> str:
    profile = provenance.get("profile", "quick")
    return f"""# How to reproduce

From a fresh clone, with CIFAR-10 (the JPEG export, one folder per class) at `DATA`:

```bash
git clone <this repository> cl-analysis && cd cl-analysis
git checkout {str(provenance.get('git_commit', '')).split(' ')[0]}
make reproduce PROFILE={profile} DATA_ROOT=DATA
```

`make reproduce` creates the virtual environment (`make setup`), trains the sweep of the
profile (seeds {_md_value(provenance.get('seeds', ''))}), executes the notebooks in order,
writes `reports/summary.md` and the claims ledger, and builds this book; it ends by printing the
book's path. A second `make reproduce` with nothing changed re-executes nothing and does not
rebuild the book.

To run the tests instead (unit tests, then the notebooks in fast mode on synthetic data):
`make test`. The book's equations are rendered by a MathJax copy bundled in the book itself,
so it reads offline: open `index.html` in a browser.
"""


def _conf(title: str) -> str:
    return f"""# Generated by cl_analysis.book; rebuilt on every build.
project = {title!r}
author = "cl-analysis"
extensions = ["myst_nb", "sphinx-mathjax-offline"]
html_theme = "sphinx_book_theme"
html_title = {title!r}
html_theme_options = {{"show_toc_level": 2, "use_download_button": False,
                      "use_fullscreen_button": False, "navigation_with_keys": False}}
html_context = {{"default_mode": "light"}}  # an empty mode is a console error in the theme
html_copy_source = False
html_show_sourcelink = False
nb_execution_mode = "off"
nb_merge_streams = True
nb_ipywidgets_js = {{}}
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
"""


_EXTERNAL = re.compile(r"""<(?:script|link)\b[^>]*?\b(?:src|href)\s*=\s*["'](?:https?:)?//""",
                       re.IGNORECASE)


def _external_assets(html_dir: Path) -> list[str]:
    bad = []
    for page in sorted(html_dir.rglob("*.html")):
        for match in _EXTERNAL.finditer(page.read_text("utf-8", errors="replace")):
            bad.append(f"{page.relative_to(html_dir)}: {match.group(0)[:120]}")
    return bad


def _prune_mathjax(folder: Path) -> None:
    """Drop the bundled MathJax's other combined builds (~14 MB); pages load tex-chtml.js only."""
    if not (folder / "tex-chtml.js").is_file():
        raise RuntimeError(f"{folder}/tex-chtml.js is missing: sphinx-mathjax-offline did not "
                           f"copy MathJax; reinstall it (pip install -e .[dev])")
    for bundle in folder.glob("*.js"):
        if re.fullmatch(r"(tex|mml)-.*\.js|node-main\.js", bundle.name) and (
                bundle.name != "tex-chtml.js"):
            bundle.unlink()


def _warning_lines(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if "WARNING" in ln or "ERROR" in ln]


def build_book(executed_notebooks: Sequence[str | os.PathLike], out_dir: str | os.PathLike, *,
               ledger_md: str, summary_md: str, provenance: Mapping[str, Any],
               title: str = "cl-analysis: the behaviour of contrastive loss",
               reproduce_md: str | None = None, force: bool = False, quiet: bool = False) -> Path:
    """Build the static HTML book; return the path of its ``index.html``.

    Args:
        executed_notebooks: ``.ipynb`` files with their outputs, in reading order; file stems
            must be unique (they become the page names).
        out_dir: the book folder: ``html/`` (the site), ``_source/`` and ``_doctrees/``
            (build intermediates, rewritten on every build) and the inputs' hash.
        ledger_md: the claims ledger (:func:`cl_analysis.study.claims.ledger_markdown`).
        summary_md: Table 1 side by side (``reports/summary.md``); its first ``# `` heading
            is replaced by the page's own.
        provenance: every key of :data:`REQUIRED_PROVENANCE` (see :func:`book_provenance`);
            extra keys are shown too.
        title: the site's title.
        reproduce_md: the "how to reproduce" page; default: generated from ``provenance``.
        force: rebuild even when the inputs are unchanged.
        quiet: do not print the build summary.

    Returns:
        ``out_dir/html/index.html``.

    Raises:
        ValueError: a notebook is missing, not ``.ipynb``, not executed or named twice; a
            provenance key is missing.
        RuntimeError: the build tools are missing, Sphinx fails (its output tail is in the
            message), or a page loads a script or stylesheet from the network.
    """
    notebooks = [Path(p) for p in executed_notebooks]
    if not notebooks:
        raise ValueError("build_book needs at least one executed notebook")
    for nb in notebooks:
        if nb.suffix != ".ipynb" or not nb.is_file():
            raise ValueError(f"{nb} is not an .ipynb file; pass the executed notebooks "
                             f"(e.g. reports/*.ipynb)")
        cells = json.loads(nb.read_text("utf-8")).get("cells", [])
        if not any(c.get("outputs") for c in cells if c.get("cell_type") == "code"):
            raise ValueError(f"{nb} has no outputs: the book renders stored outputs and never "
                             f"executes; pass the executed copy")
    stems = [nb.stem for nb in notebooks]
    clash = sorted({s for s in stems if stems.count(s) > 1 or s in (*_PAGES, "index")})
    if clash:
        raise ValueError(f"notebook names {clash} repeat or clash with the book's own pages "
                         f"{('index', *_PAGES)}; rename them")
    missing = [k for k in REQUIRED_PROVENANCE if k not in provenance]
    if missing:
        raise ValueError(f"provenance lacks {missing}; build it with "
                         f"cl_analysis.book.book_provenance(...)")

    out = Path(out_dir)
    html_dir = out / "html"
    index = html_dir / "index.html"
    reproduce_md = _reproduce(provenance) if reproduce_md is None else reproduce_md
    tools = _tool_versions()
    texts = {"ledger": ledger_md, "summary": summary_md, "reproduce": reproduce_md,
             "title": title}
    digest = _inputs_hash(notebooks, texts, provenance, tools)
    hash_file = out / _HASH_FILE
    if (not force and index.is_file() and hash_file.is_file()
            and hash_file.read_text().strip() == digest):
        if not quiet:
            print(f"book: inputs unchanged (sha256 {digest[:12]}), not rebuilt: {index}")
        return index

    start = time.perf_counter()
    src = out / "_source"
    for folder in (src, html_dir, out / "_doctrees"):
        shutil.rmtree(folder, ignore_errors=True)
    src.mkdir(parents=True)
    hash_file.unlink(missing_ok=True)
    for nb in notebooks:
        _static_notebook(nb, src / nb.name)
    (src / "conf.py").write_text(_conf(title), encoding="utf-8")
    (src / "index.md").write_text(_intro(provenance, stems), encoding="utf-8")
    (src / "ledger.md").write_text("# Claims ledger\n\n" + ledger_md, encoding="utf-8")
    summary_body = re.sub(r"\A\s*# [^\n]*\n", "", summary_md)
    (src / "table1.md").write_text("# Table 1, paper and this run side by side\n\n"
                                   + summary_body, encoding="utf-8")
    (src / "reproduce.md").write_text(reproduce_md, encoding="utf-8")

    warnings_file = out / "_doctrees" / "warnings.txt"
    warnings_file.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-d", str(out / "_doctrees"),
           "-w", str(warnings_file), str(src), str(html_dir)]
    env = {**os.environ, "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    warnings = warnings_file.read_text("utf-8") if warnings_file.is_file() else ""
    if proc.returncode != 0 or not index.is_file():
        tail = (proc.stdout + proc.stderr)[-3000:]
        raise RuntimeError(f"sphinx failed (exit {proc.returncode}) building {src}:\n{tail}")
    _prune_mathjax(html_dir / "_static" / "mathjax")
    external = _external_assets(html_dir)
    if external:
        raise RuntimeError("the book would load assets from the network, which breaks it "
                           "offline:\n  " + "\n  ".join(external[:10]))
    hash_file.write_text(digest + "\n")
    if not quiet:
        notes = _warning_lines(warnings)
        print(f"book: built {len(notebooks)} notebook(s) + {len(_PAGES) + 1} pages in "
              f"{time.perf_counter() - start:.1f} s, {len(notes)} warning(s) (not errors): "
              f"{index}")
        for line in notes[:10]:
            print(f"  {line}")
        if len(notes) > 10:
            print(f"  ... and {len(notes) - 10} more in {warnings_file}")
    return index
