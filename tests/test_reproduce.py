"""The command line (cl_analysis.cli) and the main job's pieces (cl_analysis.reproduce)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cl_analysis import cli, reproduce
from cl_analysis.study.sweep import RESULT_COLUMNS
from cl_analysis.study.profiles import PROFILES


def _subparsers():
    parser = cli.build_parser()
    (action,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return parser, action.choices


def _write_tree(root: Path, train_per_class=100, test_per_class=8, size=16) -> Path:
    """root/{train,test}/<class>/*.png: two classes, a bright and a dark one, with noise."""
    rng = np.random.default_rng(0)
    for split, n in (("train", train_per_class), ("test", test_per_class)):
        for k, cls in enumerate(("bright", "dark")):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                base = 200 if k == 0 else 50
                arr = np.clip(base + rng.normal(0, 30, (size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(arr).save(folder / f"{i:04d}.png")
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """200 training images (the smoke profile's subset size) and 16 test images."""
    return _write_tree(tmp_path_factory.mktemp("data") / "tiny")


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.delenv("CL_DATA_ROOT", raising=False)
    monkeypatch.setenv("CL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


# --------------------------------------------------------------------------- --help, profiles
def test_top_level_help_lists_every_command(capsys):
    _, commands = _subparsers()
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert set(commands) == {"pretrain", "evaluate", "sweep", "reproduce", "profiles"}
    for name in commands:
        assert name in out
    assert "examples:" in out


@pytest.mark.parametrize("command", ["pretrain", "evaluate", "sweep", "reproduce", "profiles"])
def test_help_lists_every_option(command, capsys):
    _, commands = _subparsers()
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    options = [s for a in commands[command]._actions for s in a.option_strings]
    assert "--help" in options
    for option in options:
        assert option in out, f"{command} --help does not show {option}"
    for action in commands[command]._actions:  # every option is explained
        assert action.help, f"{command}: {action.option_strings} has no help text"


def test_profiles_command(capsys):
    assert cli.main(["profiles"]) == 0
    out = capsys.readouterr().out
    for name, profile in PROFILES.items():
        assert f"{name}: {profile['description']}" in out
    assert out.count("train:") == len(PROFILES) and "'subset': 5000" in out


# --------------------------------------------------------------------------- pretrain, evaluate
def test_pretrain_then_evaluate_on_an_image_folder(tree, tmp_path, capsys):
    run = tmp_path / "run"
    code = cli.main(["pretrain", "--profile", "smoke", "--dataset", "imagefolder", "--data-root",
                     str(tree), "--loss", "info_nce", "--temperature", "0.5", "--epochs", "1",
                     "--device", "cpu", "--out", str(run), "--no-progress"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["out_dir"] == str(run) and printed["last_epoch"]["epoch"] == 1
    assert math.isfinite(printed["last_epoch"]["loss"])
    config = json.loads((run / "config.json").read_text())
    assert config["dataset"] == "imagefolder" and config["temperature"] == 0.5
    assert config["subset"] == PROFILES["smoke"]["train"]["subset"] and config["epochs"] == 1
    assert (run / "checkpoint.pt").is_file() and len((run / "metrics.jsonl").read_text()
                                                     .splitlines()) == 1

    code = cli.main(["evaluate", "--out", str(run), "--probe-epochs", "2", "--device", "cpu",
                     "--no-progress"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    saved = json.loads((run / "eval.json").read_text())
    assert result["linear_top1"] == saved["linear_top1"] and saved["linear_epochs"] == 2
    assert (saved["n_train"], saved["n_test"]) == (200, 16)
    for key in ("knn_top1", "uniformity", "tolerance", "uniformity_bank", "tolerance_bank"):
        assert math.isfinite(saved[key]), key
    assert 0 <= saved["linear_top1"] <= 1 and (run / "embeddings_test.pt").is_file()

    # resuming a finished run returns at once; --evaluate evaluates after training
    assert cli.main(["pretrain", "--profile", "smoke", "--dataset", "imagefolder", "--data-root",
                     str(tree), "--loss", "info_nce", "--temperature", "0.5", "--epochs", "2",
                     "--device", "cpu", "--out", str(run), "--resume", "--evaluate",
                     "--no-progress"]) == 0
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    assert json.loads((run / "eval.json").read_text())["pretrain_epochs"] == 2


def test_sweep_command_on_an_image_folder(tree, tmp_path, capsys):
    out = tmp_path / "sweep"
    assert cli.main(["sweep", "--profile", "smoke", "--dataset", "imagefolder", "--data-root",
                     str(tree), "--losses", "info_nce", "simple", "--temperatures", "0.5",
                     "--epochs", "1", "--device", "cpu", "--out", str(out), "--no-progress"]) == 0
    assert f"results: {out / 'results.csv'}" in capsys.readouterr().out
    df = pd.read_csv(out / "results.csv")
    assert sorted(df["run"]) == ["imagefolder-memory_bank-info_nce-t0.5",
                                 "imagefolder-memory_bank-simple"]
    assert (df["profile"] == "smoke").all()


# --------------------------------------------------------------------------- clean errors
def test_missing_data_root_is_a_clean_error(tmp_path, capsys):
    missing = tmp_path / "no-such-folder"
    code = cli.main(["pretrain", "--profile", "smoke", "--data-root", str(missing),
                     "--out", str(tmp_path / "run"), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("cl-analysis pretrain: error:") and "does not exist" in err
    assert str(missing) in err and "Traceback" not in err


def test_no_data_root_at_all_is_a_clean_error(tmp_path, capsys):
    code = cli.main(["pretrain", "--profile", "smoke", "--out", str(tmp_path / "run")])
    assert code == 2
    err = capsys.readouterr().err
    assert "error:" in err and "CL_DATA_ROOT" in err
    assert cli.main(["reproduce", "--profile", "smoke", "--out", str(tmp_path / "r")]) == 2
    assert "--data-root" in capsys.readouterr().err


def test_unknown_loss_is_a_clean_error(tree, tmp_path, capsys):
    code = cli.main(["pretrain", "--profile", "smoke", "--dataset", "imagefolder", "--data-root",
                     str(tree), "--loss", "no_such_loss", "--out", str(tmp_path / "run")])
    assert code == 2
    err = capsys.readouterr().err
    assert "no_such_loss" in err and "info_nce" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_bad_choice_exits_2_via_argparse(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["pretrain", "--profile", "huge", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_exit_code_2_from_the_installed_module(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "cl_analysis", "pretrain", "--profile", "smoke",
                           "--data-root", str(tmp_path / "missing"), "--loss", "nope",
                           "--out", str(tmp_path / "run")], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2
    assert "error:" in proc.stderr and "Traceback" not in proc.stderr


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
def _fake_results(folder: Path) -> Path:
    rows = []
    for loss in ("info_nce", "hard", "simple", "hard_simple"):
        for t in ([math.nan] if loss in ("simple", "hard_simple") else [0.07, 0.3, 1.0]):
            row = dict.fromkeys(RESULT_COLUMNS, math.nan)
            row.update(run=f"cifar10-memory_bank-{loss}" + ("" if math.isnan(t) else f"-t{t}"),
                       dataset="cifar10", regime="memory_bank", loss=loss, temperature=t,
                       linear_top1=0.4321 if loss == "info_nce" else 0.3, knn_top1=0.35,
                       uniformity=3.5, tolerance=0.2, uniformity_bank=3.25, tolerance_bank=0.125,
                       penalty_entropy=7.5, wall_time_s=60.0, epochs=100, profile="quick")
            rows.append(row)
    folder.mkdir(parents=True)
    pd.DataFrame(rows, columns=list(RESULT_COLUMNS)).to_csv(folder / "results.csv", index=False)
    return folder


def test_write_summary_on_a_fake_results_folder(tmp_path):
    runs = _fake_results(tmp_path / "runs")
    md_path, html_path = reproduce.write_summary(runs, tmp_path / "reports", "quick")
    assert (md_path, html_path) == (tmp_path / "reports" / "summary.md",
                                    tmp_path / "reports" / "summary.html")
    md = md_path.read_text(encoding="utf-8")
    assert md.startswith("# cl-analysis summary — profile `quick`, cifar10")
    assert "## Table 1, paper | this run" in md and "## Every run" in md
    assert "83.27" in md and "C 0.3" in md and "HardSimple" in md  # the paper's column
    assert "43.21" in md  # this run's accuracy, fraction -> percent
    assert "3.25" in md  # bank-protocol uniformity in Table 1 (the paper's protocol)
    assert "cifar10-memory_bank-hard-t0.3" in md and "–" in md  # every run; τ 0.7 missing
    html = html_path.read_text(encoding="utf-8")
    assert html.startswith("<h1>cl-analysis summary: profile quick, cifar10</h1>")
    assert html.count("<table") == 2 and "83.27" in html


def test_write_summary_needs_a_results_folder(tmp_path):
    with pytest.raises(ValueError, match="no sweep folder"):
        reproduce.write_summary(tmp_path / "missing", tmp_path / "out", "quick")


def test_write_summary_for_a_dataset_outside_table1(tmp_path):
    runs = _fake_results(tmp_path / "runs")
    df = pd.read_csv(runs / "results.csv").assign(dataset="imagefolder")
    df.to_csv(runs / "results.csv", index=False)
    md_path, html_path = reproduce.write_summary(runs, tmp_path / "reports", "quick",
                                                 dataset="imagefolder")
    md = md_path.read_text(encoding="utf-8")
    assert "## Table 1" not in md and "## Every run" in md  # no paper column for this data
    assert "cifar10-memory_bank-hard-t0.3" in md
    assert html_path.read_text(encoding="utf-8").count("<table") == 1


def test_reproduce_command_end_to_end(tree, tmp_path, capsys):
    nbs = tmp_path / "nbs"
    _notebook(nbs / "00_check.ipynb",
              "import pandas as pd\n"
              "df = pd.read_csv(f'{RUNS_DIR}/results.csv')\n"
              "assert PROFILE == 'smoke' and FAST is True and len(df) == 6, (PROFILE, FAST, df)\n"
              "print(DATA_ROOT)",
              parameters="PROFILE = 'quick'\nDATA_ROOT = None\nRUNS_DIR = None\nFAST = False")
    code = cli.main(["reproduce", "--profile", "smoke", "--dataset", "cifar10",  # tree as cifar10
                     "--data-root", str(tree), "--device", "cpu", "--epochs", "1",
                     "--runs", str(tmp_path / "runs"), "--notebooks", str(nbs),
                     "--out", str(tmp_path / "reports"), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    assert "summary:" in capsys.readouterr().out
    assert (tmp_path / "reports" / "00_check.ipynb").is_file()
    assert (tmp_path / "reports" / "00_check.html").is_file()


def test_reproduce_with_a_relative_data_root(tree, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tree.parent)
    nbs = tmp_path / "nbs"
    _notebook(nbs / "00_load.ipynb",
              "from cl_analysis.study.sweep import run_sweep\n"
              "from cl_analysis.study.profiles import profile_sweep\n"
              "spec = profile_sweep(PROFILE, data_root=DATA_ROOT, epochs=1, device='cpu',\n"
              "                     losses=('info_nce',), temperatures=(0.07,))\n"
              "run_sweep(spec, RUNS_DIR, progress=False)  # all finished: loads only",
              parameters="PROFILE = 'quick'\nDATA_ROOT = None\nRUNS_DIR = None")
    code = cli.main(["reproduce", "--profile", "smoke", "--data-root", tree.name,
                     "--device", "cpu", "--epochs", "1", "--runs", str(tmp_path / "runs"),
                     "--notebooks", str(nbs), "--out", str(tmp_path / "reports"),
                     "--no-progress"])
    assert code == 0, capsys.readouterr().err
    resolved = str(tree.resolve())  # the sweep and the notebooks both get the absolute path
    config = json.loads((tmp_path / "runs" / "cifar10-memory_bank-info_nce-t0.07" /
                         "config.json").read_text())
    assert config["data_root"] == resolved
    nb = nbformat.read(tmp_path / "reports" / "00_load.ipynb", as_version=4)
    (injected,) = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert f'DATA_ROOT = "{resolved}"' in injected.source


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
