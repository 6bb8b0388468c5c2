"""The book: built from two tiny executed notebooks, then opened page by page in headless Chromium.

The browser part needs Debian's ``chromium`` (``.ci/run`` installs it when missing) and the
``playwright`` pip package, driven with ``executable_path`` set to the system browser
(playwright's own browser download is never used); it skips with the reason otherwise.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

pytest.importorskip("myst_nb", reason="the book needs the dev extra (pip install -e .[dev])")
nbformat = pytest.importorskip("nbformat")

from cl_analysis.book import REQUIRED_PROVENANCE, build_book  # noqa: E402
from cl_analysis.study.claims import Ledger, ledger_markdown  # noqa: E402

SECRET = "SECRET_PARAMETER_VALUE"
PLUMBING = "CI_PLUMBING_MARKER"
PROVENANCE = {"package_version": "0.1.0", "git_commit": "abc123def456", "profile": "quick",
              "seeds": [0, 1, 2], "device": "cpu", "threads": 1, "torch_version": "2.x",
              "data_source": "CIFAR-10 (JPEG export)", "date": "2025-01-01"}
SUMMARY = ("# cl-analysis summary\n\n## Table 1, paper | this run\n\n"
           "| loss | τ | paper linear | this run linear |\n|---|---|---|---|\n"
           "| info_nce | 0.07 | 79.75 | 42.10 |\n")


def _notebooks(folder: Path) -> list[Path]:
    """Two executed notebooks: a figure, a glued value, equations, tagged cells, a cross link."""
    from nbclient import NotebookClient

    v4 = nbformat.v4
    first = v4.new_notebook(cells=[
        v4.new_markdown_cell(
            "# First notebook\n\nThe loss is $\\mathcal{L} = -\\log \\frac{e^{s/\\tau}}"
            "{\\sum_k e^{s_k/\\tau}}$ and the relative penalty is\n\n$$\nr_{ij} = "
            "\\frac{\\exp(s_{ij}/\\tau)}{\\sum_k \\exp(s_{ik}/\\tau)}\n$$\n\n"
            "The best accuracy is {glue:text}`best_acc:.2f` %. "
            "See [the second notebook](02_second.ipynb)."),
        v4.new_code_cell(f"PROFILE = '{SECRET}'", metadata={"tags": ["parameters",
                                                                      "remove-cell"]}),
        v4.new_code_cell("%matplotlib inline\nimport matplotlib.pyplot as plt\n"
                         "from myst_nb import glue\nfig, ax = plt.subplots(figsize=(3, 2))\n"
                         "ax.plot([0, 1, 2], [1, 0, 2])\nplt.show()\n"
                         "glue('best_acc', 42.125, display=False)"),
        v4.new_markdown_cell("The figure above shows a line that dips and rises."),
    ])
    second = v4.new_notebook(cells=[
        v4.new_markdown_cell("# Second notebook\n\nInline math: $\\tau = 0.07$."),
        v4.new_code_cell(f"# NBVAL_CHECK_OUTPUT\nprint('{PLUMBING}')",
                         metadata={"tags": ["remove-cell"]}),
        v4.new_code_cell("print('visible output', 6 * 7)", metadata={"tags": ["hide-input"]}),
    ])
    paths = []
    for name, nb in (("01_first.ipynb", first), ("02_second.ipynb", second)):
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
        NotebookClient(nb, timeout=120, kernel_name="python3").execute()
        nbformat.write(nb, folder / name)
        paths.append(folder / name)
    return paths


def _ledger_md(tmp: Path) -> str:
    import pandas as pd

    rows = [{"run": f"{loss}-s{s}", "dataset": "cifar10", "regime": "memory_bank", "loss": loss,
             "temperature": 1.0, "seed": s, "linear_top1": acc + s / 1000}
            for s in range(3) for loss, acc in (("hard", 0.47), ("info_nce", 0.40))]
    ledger = Ledger(pd.DataFrame(rows), notebook="06_test", out_dir=tmp)
    ledger.compare("forced", "ordinary beats hard (forced to fail)", "test",
                   larger=ledger.measure("info_nce", 1.0), smaller=ledger.measure("hard", 1.0))
    ledger.compare("3", "hard beats ordinary at large τ", "Fig. 9",
                   larger=ledger.measure("hard", 1.0), smaller=ledger.measure("info_nce", 1.0),
                   paper={"hard": 84.19, "ordinary": 82.21})
    return ledger_markdown(ledger.claims)


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("book")
    notebooks = _notebooks(tmp)
    ledger_md = _ledger_md(tmp)
    start = time.perf_counter()
    index = build_book(notebooks, tmp / "out", ledger_md=ledger_md, summary_md=SUMMARY,
                       provenance=PROVENANCE)
    build_s = time.perf_counter() - start
    return {"index": index, "notebooks": notebooks, "ledger_md": ledger_md, "tmp": tmp,
            "build_s": build_s}


def test_book_pages_and_offline_assets(book):
    html = book["index"].parent
    assert book["index"].name == "index.html" and book["build_s"] < 60
    for page in ("01_first", "02_second", "ledger", "table1", "reproduce"):
        assert (html / f"{page}.html").is_file(), page
    index = (html / "index.html").read_text()
    for value in ("abc123def456", "CIFAR-10 (JPEG export)", "0, 1, 2", "2025-01-01"):
        assert value in index
    # navigation in reading order: notebooks, then ledger, Table 1, reproduce
    order = [index.find(f'href="{p}.html"') for p in ("01_first", "02_second", "ledger",
                                                       "table1", "reproduce")]
    assert all(i > 0 for i in order) and order == sorted(order), order
    everything = "".join(p.read_text() for p in html.glob("*.html"))
    assert SECRET not in everything and PLUMBING not in everything
    first = (html / "01_first.html").read_text()
    assert "42.12" in first and "_static/mathjax/tex-chtml.js" in first
    assert (html / "_static" / "mathjax" / "tex-chtml.js").is_file()
    assert "79.75" in (html / "table1.html").read_text()


def test_second_build_is_skipped_and_changes_rebuild(book, capsys):
    out = book["index"].parent.parent
    stamp = book["index"].stat().st_mtime_ns
    kw = dict(summary_md=SUMMARY, provenance=PROVENANCE)
    build_book(book["notebooks"], out, ledger_md=book["ledger_md"], **kw)
    assert "inputs unchanged" in capsys.readouterr().out
    assert book["index"].stat().st_mtime_ns == stamp
    build_book(book["notebooks"], out, ledger_md=book["ledger_md"] + "\nOne more line.\n", **kw)
    assert "book: built" in capsys.readouterr().out
    assert "One more line." in (book["index"].parent / "ledger.html").read_text()
    build_book(book["notebooks"], out, ledger_md=book["ledger_md"], **kw)  # restore


def test_plumbing_errors(book, tmp_path):
    blank = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")])
    nbformat.write(blank, tmp_path / "blank.ipynb")
    kw = dict(ledger_md="x", summary_md="y", provenance=PROVENANCE)
    with pytest.raises(ValueError, match="no outputs"):
        build_book([tmp_path / "blank.ipynb"], tmp_path / "o", **kw)
    with pytest.raises(ValueError, match="not an .ipynb"):
        build_book([tmp_path / "missing.ipynb"], tmp_path / "o", **kw)
    partial = {k: v for k, v in PROVENANCE.items() if k != "git_commit"}
    with pytest.raises(ValueError, match="provenance lacks \\['git_commit'\\]"):
        build_book(book["notebooks"], tmp_path / "o", ledger_md="x", summary_md="y",
                   provenance=partial)
    assert set(REQUIRED_PROVENANCE) == set(PROVENANCE)


def test_widget_outputs_are_replaced(tmp_path):
    from cl_analysis.book import _static_notebook

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("w")])
    nb.cells[0].outputs = [nbformat.v4.new_output(
        "display_data", data={"application/vnd.jupyter.widget-view+json": {"model_id": "x"},
                              "text/plain": "interactive(...)"})]
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    nbformat.write(nb, tmp_path / "w.ipynb")
    _static_notebook(tmp_path / "w.ipynb", tmp_path / "out.ipynb")
    out = json.loads((tmp_path / "out.ipynb").read_text())
    assert "widgets" not in out["metadata"]
    assert list(out["cells"][0]["outputs"][0]["data"]) == ["text/markdown"]


def _browser():
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium; "
                    ".ci/run does it when it runs as root)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright pip package is missing (pip install -e .[dev])")
    return exe, sync_playwright


def test_every_page_in_headless_chromium(book):
    exe, sync_playwright = _browser()
    html = book["index"].parent
    pages = sorted(html.glob("*.html"))
    start = time.perf_counter()
    problems, offsite = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        page = browser.new_page()
        page.on("console", lambda m: m.type == "error" and problems.append(
            f"{page.url}: console error: {m.text}"))
        page.on("pageerror", lambda e: problems.append(f"{page.url}: script error: {e}"))

        def guard(route):
            url = route.request.url
            if url.startswith(("file:", "data:", "blob:", "about:")):
                route.continue_()
            else:
                offsite.append(url)
                route.abort()

        page.route("**/*", guard)
        texts = {}
        for path in pages:
            page.goto(path.as_uri())
            page.wait_for_load_state("load")
            if page.evaluate("document.querySelector('.math') !== null"):
                page.wait_for_function("document.querySelectorAll('mjx-container').length > 0",
                                       timeout=20_000)
            broken = page.evaluate("""() => Array.from(document.images)
                .filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)""")
            problems += [f"{path.name}: image does not load: {src}" for src in broken]
            links = page.evaluate("""() => Array.from(document.querySelectorAll('a[href]'))
                .map(a => a.href).filter(h => h.startsWith('file:'))""")
            for href in links:
                target = Path(unquote(urlparse(href).path))
                if not target.exists():
                    problems.append(f"{path.name}: broken link {href}")
            texts[path.stem] = page.evaluate("document.body.innerText")
        # math typeset, not shown as raw LaTeX
        page.goto((html / "01_first.html").as_uri())
        page.wait_for_function("document.querySelectorAll('mjx-container').length >= 2",
                               timeout=20_000)
        assert "\\frac" not in page.evaluate("document.body.innerText")
        figures = page.evaluate("""() => Array.from(document.images)
            .filter(i => i.naturalWidth > 100).length""")
        assert figures >= 1, "the notebook's figure is missing"
        # navigation: the index's "next" link leads to the first notebook, and on to the second
        page.goto(book["index"].as_uri())
        page.click("a.right-next")
        page.wait_for_load_state("load")
        assert page.url.endswith("01_first.html")
        page.click("a.right-next")
        page.wait_for_load_state("load")
        assert page.url.endswith("02_second.html")
        browser.close()
    browse_s = time.perf_counter() - start
    assert not offsite, f"requests left file://: {offsite}"
    assert not problems, "\n".join(problems)
    assert "✗" in texts["ledger"] and "06_test:forced" in texts["ledger"]
    assert "does not hold" in texts["ledger"] and "✓" in texts["ledger"]
    assert "79.75" in texts["table1"] and "Table 1" in texts["table1"]
    assert "42.12" in texts["01_first"] and SECRET not in texts["01_first"]
    assert "visible output 42" in texts["02_second"] and PLUMBING not in texts["02_second"]
    assert browse_s < 60, f"browser test took {browse_s:.0f} s"
    print(f"book build {book['build_s']:.1f} s, browser {browse_s:.1f} s for {len(pages)} pages")
