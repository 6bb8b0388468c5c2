"""The main job end to end with a real kernel: claims are data, a failing claim never stops it,
an unchanged second run executes nothing, and the book is built."""

from __future__ import annotations

import json

import nbformat
from helpers import write_tree

from cl_analysis import cli

NOTEBOOK = '''
from cl_analysis.study.claims import Ledger, NoiseFloor
from cl_analysis.study.runs import load_sweep

sweep = load_sweep(RUNS_DIR)
# a noise floor of ~0 makes any difference decisive: the claim below is built to fail
ledger = Ledger(sweep.results, notebook="01_claims", out_dir=RUNS_DIR,
                noise=NoiseFloor({"uniformity": 1e-12}))
a, b = (ledger.measure("info_nce", t, "uniformity") for t in (0.07, 1.0))
big, small = (a, b) if a.mean > b.mean else (b, a)
claim = ledger.compare("forced", "the smaller uniformity is the larger one", "a test",
                       larger=small, smaller=big, if_not="built to fail")
print(claim.summary())
'''


def _notebooks(folder):
    folder.mkdir()
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("RUNS_DIR = None")
    params.metadata["tags"] = ["parameters", "remove-cell"]
    nb.cells = [nbformat.v4.new_markdown_cell("# A claim made to fail\n\nIts verdict is data."),
                params, nbformat.v4.new_code_cell(NOTEBOOK)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, folder / "01_claims.ipynb")
    return folder


def test_failing_claim_is_reported_and_an_unchanged_rerun_executes_nothing(tmp_path, capsys,
                                                                         monkeypatch):
    monkeypatch.delenv("CL_DATA_ROOT", raising=False)
    tree = write_tree(tmp_path / "data", train_per_class=70, test_per_class=10)
    notebooks = _notebooks(tmp_path / "notebooks")
    runs, reports = tmp_path / "runs", tmp_path / "reports"
    argv = ["reproduce", "--profile", "smoke", "--epochs", "1", "--dataset", "imagefolder",
            "--data-root", str(tree), "--losses", "info_nce", "--temperatures", "0.07", "1.0",
            "--subset", "60", "--eval-test-size", "30", "--probe-epochs", "2", "--device", "cpu",
            "--workers", "1", "--runs", str(runs), "--out", str(reports),
            "--notebooks", str(notebooks), "--no-progress"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "1 executed, 0 unchanged" in out
    assert "1 ✗ do not hold" in out  # the job completed although the claim does not hold
    ledger = json.loads((reports / "ledger.json").read_text())
    claims = ledger["claims"] if isinstance(ledger, dict) else ledger
    assert [c["verdict"] for c in claims] == ["does not hold"]
    assert "✗" in (reports / "ledger.md").read_text()
    assert "✗" in (reports / "summary.md").read_text()
    index = reports / "book" / "html" / "index.html"
    assert index.is_file()
    executed = nbformat.read(reports / "01_claims.ipynb", as_version=4)
    stamp = executed.metadata["cl_analysis"]["inputs_sha256"]

    assert cli.main(argv) == 0, capsys.readouterr().err  # nothing changed: nothing re-executed
    out = capsys.readouterr().out
    assert "0 executed, 1 unchanged" in out
    again = nbformat.read(reports / "01_claims.ipynb", as_version=4)
    assert again.metadata["cl_analysis"]["inputs_sha256"] == stamp

    nb = nbformat.read(notebooks / "01_claims.ipynb", as_version=4)  # a code change re-executes
    nb.cells[-1].source += "\nprint('changed')"
    nbformat.write(nb, notebooks / "01_claims.ipynb")
    assert cli.main(argv) == 0, capsys.readouterr().err
    assert "1 executed, 0 unchanged" in capsys.readouterr().out
