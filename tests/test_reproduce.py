"""The main job (cl_analysis.reproduce): sweep, notebooks with RUNS_DIR only, summary.

The command line's own tests are in test_cli.py.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import papermill
import pytest
from helpers import write_tree

from cl_analysis import cli, reproduce
from cl_analysis.study.profiles import SweepGrid
from cl_analysis.study.sweep import RESULT_COLUMNS, SweepSpec, load_spec
from cl_analysis.training.config import TrainConfig


def _write_tree(root: Path, per_class=10, classes=3, size=16, train_per_class=None) -> Path:
    """root/{train,test}/<class>/*.png: per_class images of each class in each split."""
    return write_tree(root, train_per_class or per_class, per_class, classes, size, digits=4)


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.delenv("CL_DATA_ROOT", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


# --------------------------------------------------------------------------- the main job
def test_reproduce_passes_only_runs_dir_and_trains_nothing_twice(tmp_path, monkeypatch, capsys):
    """`reproduce --profile smoke --epochs 1 --regime simclr --seed 3` on a class-folder tree."""
    # 70 training images per class: the smoke density study takes a 200-image subset whatever
    # --subset says (see test_density_study_fits_a_small_subset); the sweep itself uses 30
    tree = _write_tree(tmp_path / "data", train_per_class=70)
    given, executed = [], {}
    real_execute = reproduce.execute_notebooks

    def record_execute(out_dir, parameters, **kwargs):
        given.append(dict(parameters))
        return real_execute(out_dir, parameters, **kwargs)

    def fake_papermill(source, target, parameters=None, **kwargs):  # no kernels: record only
        executed[Path(source).name] = dict(parameters or {})

    monkeypatch.setattr(reproduce, "execute_notebooks", record_execute)
    monkeypatch.setattr(papermill, "execute_notebook", fake_papermill)
    # the faked notebooks write no claims and no outputs: an empty ledger, no book
    monkeypatch.setattr("cl_analysis.study.claims.collect_ledger", lambda directory: [])
    runs, reports = tmp_path / "runs", tmp_path / "reports"
    argv = ["reproduce", "--profile", "smoke", "--epochs", "1", "--regime", "simclr", "--seed",
            "3", "--dataset", "imagefolder", "--data-root", str(tree), "--subset", "30",
            "--batch-size", "10", "--device", "cpu", "--num-threads", "1", "--workers", "1",
            "--runs", str(runs), "--out", str(reports), "--no-progress", "--no-book"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    assert "summary:" in capsys.readouterr().out

    # the notebooks got the runs folder and nothing else
    assert given == [{"RUNS_DIR": str(runs.resolve())}]
    assert sorted(executed) == sorted(p.name for p in reproduce.notebook_paths())
    for name, params in executed.items():
        if name[:2] in ("04", "05", "06", "07", "08"):  # the notebooks that read runs
            assert params == {"RUNS_DIR": str(runs.resolve())}, name
        else:
            assert params == {}, name
    # sweep.json records what ran: every run simclr, seed 3, 1 epoch
    recorded = json.loads((runs / "sweep.json").read_text())
    assert recorded["profile"] == "smoke" and recorded["runs"]
    for run in recorded["runs"]:
        config = run["config"]
        assert (config["regime"], config["seed"], config["epochs"]) == ("simclr", 3, 1), run
        assert config["dataset"] == "imagefolder" and config["batch_size"] == 10
        assert run["name"].endswith("-s3") and "-simclr-" in run["name"]
    folders = sorted(p.name for p in runs.iterdir() if p.is_dir() and p.name != "density")
    assert folders == sorted(r["name"] for r in recorded["runs"])
    assert not [p for p in runs.glob("*memory_bank*")]  # no second, memory-bank sweep
    df = pd.read_csv(runs / "results.csv")
    assert (df["seed"] == 3).all() and (df["regime"] == "simclr").all() and len(df) == len(folders)
    assert load_spec(runs).base.regime == "simclr"
    assert (reports / "summary.md").is_file()

    # a second call trains nothing: every checkpoint is left as it was
    stamps = {p: p.stat().st_mtime_ns for p in runs.rglob("checkpoint.pt")}
    assert len(stamps) == len(folders) + len(list((runs / "density").glob("*/checkpoint.pt")))
    assert cli.main(argv) == 0, capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert given[-1] == {"RUNS_DIR": str(runs.resolve())}


def test_density_study_fits_a_small_subset():
    from cl_analysis.study.runs import density_spec

    spec = SweepSpec(TrainConfig(subset=30, epochs=1, lr_milestones=()),
                     SweepGrid(temperatures=(0.07, 1.0)), "smoke")
    assert density_spec(spec).base.subset <= 30


def test_missing_data_root_is_a_clean_error(tmp_path, capsys):
    missing = tmp_path / "no-such-folder"
    code = cli.main(["reproduce", "--profile", "smoke", "--data-root", str(missing),
                     "--out", str(tmp_path / "r"), "--runs", str(tmp_path / "runs"),
                     "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("cl-analysis reproduce: error:") and "does not exist" in err
    assert str(missing) in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # refused before any work


def test_exit_code_2_from_the_installed_module(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "cl_analysis", "pretrain", "--profile", "smoke",
                           "--data-root", str(tmp_path / "missing"), "--loss", "nope",
                           "--out", str(tmp_path / "run")], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2
    assert "loss" in proc.stdout + proc.stderr and "Traceback" not in proc.stderr


# --------------------------------------------------------------------------- notebooks
def _notebook(path: Path, source: str, parameters: str | None = None) -> Path:
    cells = [nbformat.v4.new_markdown_cell("# a throwaway notebook")]
    if parameters is not None:
        cells.append(nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}))
    cells.append(nbformat.v4.new_code_cell(source))
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def test_notebook_paths_are_ordered_and_required(tmp_path):
    for name in ("02_b.ipynb", "01_a.ipynb", "notes.ipynb"):
        _notebook(tmp_path / "nbs" / name, "pass")
    assert [p.name for p in reproduce.notebook_paths(tmp_path / "nbs")] == ["01_a.ipynb",
                                                                            "02_b.ipynb"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no NN_"):
        reproduce.notebook_paths(tmp_path / "empty")
    assert [p.name for p in reproduce.notebook_paths()][:3] == [
        "01_contrastive_losses.ipynb", "02_gradient_analysis.ipynb",
        "03_temperature_limits.ipynb"]


def test_execute_notebooks_injects_declared_parameters(tmp_path):
    nbs = tmp_path / "nbs"
    _notebook(nbs / "00_tiny.ipynb", "assert X == 5, X\nprint(f'{LABEL}:{X * 2}')",
              parameters="X = 1\nLABEL = 'default'")
    _notebook(nbs / "01_plain.ipynb", "print('no parameters here')")
    written = reproduce.execute_notebooks(tmp_path / "out", {"X": 5, "LABEL": "run", "UNUSED": 7},
                                          notebook_dir=nbs, progress=False)
    assert [p.name for p in written] == ["00_tiny.ipynb", "01_plain.ipynb"]
    nb = nbformat.read(written[0], as_version=4)
    (injected,) = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert "X = 5" in injected.source and 'LABEL = "run"' in injected.source
    assert "UNUSED" not in injected.source
    assert "run:10" in nb.cells[-1].outputs[0]["text"]
    html = written[0].with_suffix(".html")
    assert html.is_file() and "run:10" in html.read_text(encoding="utf-8")
    plain = nbformat.read(written[1], as_version=4)
    assert not any("injected-parameters" in c.metadata.get("tags", []) for c in plain.cells)
    assert (nbs / "00_tiny.ipynb").read_text() != written[0].read_text()  # source left alone


def test_execute_notebooks_fails_loudly_and_can_skip_html(tmp_path):
    import papermill

    nbs = tmp_path / "nbs"
    _notebook(nbs / "00_claim.ipynb", "assert CLAIM, 'the claim does not hold'",
              parameters="CLAIM = True")
    written = reproduce.execute_notebooks(tmp_path / "ok", {"CLAIM": True}, notebook_dir=nbs,
                                          progress=False, html=False)
    assert written[0].is_file() and not written[0].with_suffix(".html").exists()
    with pytest.raises(papermill.PapermillExecutionError, match="the claim does not hold"):
        reproduce.execute_notebooks(tmp_path / "bad", {"CLAIM": False}, notebook_dir=nbs,
                                    progress=False)


# --------------------------------------------------------------------------- summary
def _fake_results(folder: Path, dataset: str = "cifar10") -> Path:
    """results.csv and the sweep.json it belongs to (quick profile, 4 losses x 3 τ)."""
    spec = SweepSpec(TrainConfig(dataset=dataset, epochs=100, lr_milestones=(80, 95)),
                     SweepGrid(temperatures=(0.07, 0.3, 1.0)), "quick")
    rows = []
    for name, config in spec.runs():
        tau_free = config.loss in ("simple", "hard_simple")
        row = dict.fromkeys(RESULT_COLUMNS, math.nan)
        row.update(run=name, dataset=dataset, regime="memory_bank", loss=config.loss,
                   temperature=math.nan if tau_free else config.temperature, seed=0,
                   linear_top1=0.4321 if config.loss == "info_nce" else 0.3, knn_top1=0.35,
                   uniformity=3.5, tolerance=0.2, uniformity_bank=3.25, tolerance_bank=0.125,
                   penalty_entropy=7.5, wall_time_s=60.0, epochs=100, profile="quick")
        rows.append(row)
    folder.mkdir(parents=True)
    pd.DataFrame(rows, columns=list(RESULT_COLUMNS)).to_csv(folder / "results.csv", index=False)
    (folder / "sweep.json").write_text(json.dumps(spec.to_dict()))
    return folder


def test_write_summary_on_a_fake_results_folder(tmp_path):
    runs = _fake_results(tmp_path / "runs")
    md_path, html_path = reproduce.write_summary(runs, tmp_path / "reports")
    assert (md_path, html_path) == (tmp_path / "reports" / "summary.md",
                                    tmp_path / "reports" / "summary.html")
    md = md_path.read_text(encoding="utf-8")
    assert md.startswith("# cl-analysis summary — profile `quick`, cifar10")
    assert "## Table 1, paper | this run" in md and "## Every run" in md
    assert "83.27" in md and "C 0.3" in md and "HardSimple" in md  # the paper's column
    assert "43.21" in md  # this run's accuracy, fraction -> percent
    assert "3.25" in md  # bank-protocol uniformity in Table 1 (the paper's protocol)
    assert "cifar10-memory_bank-hard-t0.3-s0" in md and "–" in md  # every run; τ 0.7 missing
    html = html_path.read_text(encoding="utf-8")
    assert html.startswith("<h1>cl-analysis summary: profile quick, cifar10</h1>")
    assert html.count("<table") == 2 and "83.27" in html


def test_write_summary_needs_a_sweep(tmp_path):
    with pytest.raises(ValueError, match="no sweep.json"):
        reproduce.write_summary(tmp_path / "missing", tmp_path / "out")


def test_write_summary_for_a_dataset_outside_table1(tmp_path):
    runs = _fake_results(tmp_path / "runs", dataset="imagefolder")
    md_path, html_path = reproduce.write_summary(runs, tmp_path / "reports")
    md = md_path.read_text(encoding="utf-8")
    assert "## Table 1" not in md and "## Every run" in md  # no paper column for this data
    assert "imagefolder-memory_bank-hard-t0.3-s0" in md
    assert html_path.read_text(encoding="utf-8").count("<table") == 1


def test_reproduce_resolves_a_relative_data_root(tmp_path, monkeypatch, capsys):
    tree = _write_tree(tmp_path / "tiny")
    monkeypatch.chdir(tmp_path)
    seen = {}

    def fake_reproduce(spec, runs_dir, out_dir, **kwargs):
        seen.update(spec=spec, runs_dir=runs_dir)
        return ["done"]

    monkeypatch.setattr(reproduce, "reproduce", fake_reproduce)
    assert cli.main(["reproduce", "--profile", "smoke", "--dataset", "imagefolder",
                     "--data-root", "tiny", "--device", "cpu", "--epochs", "1",
                     "--out", "reports", "--no-progress"]) == 0, capsys.readouterr().err
    assert seen["spec"].base.data_root == str(tree.resolve())
    assert seen["runs_dir"] == (tmp_path / "runs" / "smoke").resolve()  # default: runs/<profile>
    assert seen["spec"].profile == "smoke" and seen["spec"].base.epochs == 1


def test_execute_notebooks_without_a_kernelspec(tmp_path):
    """jupytext pairing with notebook_metadata_filter="-all" drops the kernelspec: still runs."""
    nbs = tmp_path / "nbs"
    path = _notebook(nbs / "00_bare.ipynb", "print(f'got {X}')", parameters="X = 0")
    nb = nbformat.read(path, as_version=4)
    del nb.metadata["kernelspec"]
    nbformat.write(nb, path)
    (written,) = reproduce.execute_notebooks(tmp_path / "out", {"X": 3}, notebook_dir=nbs,
                                             progress=False, html=False)
    assert "got 3" in nbformat.read(written, as_version=4).cells[-1].outputs[0]["text"]
