"""The command line (cl_analysis.cli): flags generated from TrainConfig, clean errors, exit codes.

Real training here is tiny: the smoke profile on a class-folder tree of 3 x 12 PNGs (16 px).
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import fields
from pathlib import Path

import pytest
import torch
from helpers import write_tree

from cl_analysis import cli
from cl_analysis.study.profiles import PROFILES, get_profile
from cl_analysis.training.config import TrainConfig
from cl_analysis.training.environment import PAPER_CPU_DAYS

# smoke profile, on the tree: 36 training images, 1 epoch, CPU, one thread
SMOKE = ["--profile", "smoke", "--dataset", "imagefolder", "--subset", "36", "--epochs", "1",
         "--device", "cpu", "--num-threads", "1", "--no-progress"]


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path):
    monkeypatch.delenv("CL_DATA_ROOT", raising=False)
    monkeypatch.setenv("COLUMNS", "250")  # tyro's error boxes: keep each message on one line


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return write_tree(tmp_path_factory.mktemp("data") / "tree")


@pytest.fixture(scope="module")
def run_x(tree, tmp_path_factory) -> Path:
    """A finished 1-epoch smoke run trained through the CLI (do not modify: copy it)."""
    out = tmp_path_factory.mktemp("runs") / "x"
    assert cli.main(["pretrain", *SMOKE, "--data-root", str(tree), "--loss", "hard",
                     "--temperature", "0.3", "--hard-k", "4", "--seed", "2",
                     "--out", str(out)]) == 0
    return out


def _copy(run: Path, to: Path) -> Path:
    shutil.copytree(run, to)
    return to


def _config(run: Path) -> TrainConfig:
    return TrainConfig.from_dict(json.loads((run / "config.json").read_text()))


def _exit_code(argv) -> int:
    """cli.main's status, whether returned or raised by tyro as SystemExit."""
    try:
        return cli.main(argv)
    except SystemExit as e:
        return e.code


def _flat(text: str) -> str:
    """Help / error text without rich's box drawing, whitespace collapsed."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


# --------------------------------------------------------------------------- help, version
def _shown(value) -> str:
    return " ".join(map(str, value)) if isinstance(value, tuple) else str(value)


@pytest.mark.parametrize("profile", ["quick", "simclr"])
def test_pretrain_help_lists_every_field_with_its_default(profile, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["pretrain", "--profile", profile, "--help"])
    assert exit_info.value.code == 0
    text = _flat(capsys.readouterr().out)
    defaults = get_profile(profile).run  # the profile's values are the defaults shown
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        match = re.search(rf"(?<![\w-]){re.escape(flag)}(?=[ ,])", text)
        assert match, f"pretrain --help does not list {flag}"
        shown = re.search(r"\(default: (.*?)\)", text[match.end():])
        assert shown and shown.group(1) == _shown(getattr(defaults, f.name)), (
            flag, shown and shown.group(1), getattr(defaults, f.name))
    assert "temperature τ > 0" in text  # help comes from the field comments


def test_top_level_help_and_version(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in cli.COMMANDS:
        assert command in out
    assert "CL_CACHE_DIR" in out and "CL_DATA_ROOT" in out
    assert cli.main([]) == 2
    capsys.readouterr()
    assert cli.main(["--version"]) == 0
    assert re.fullmatch(r"cl-analysis \d+\.\d+\S*\n", capsys.readouterr().out)
    assert cli.main(["train"]) == 2
    assert "unknown command 'train'" in capsys.readouterr().err


def test_profiles_command(capsys):
    assert cli.main(["profiles"]) == 0
    out = capsys.readouterr().out
    for name, profile in PROFILES.items():
        assert f"{name}: {profile.description}" in out


# --------------------------------------------------------------------------- bad values
@pytest.mark.parametrize("flags, field", [
    (["--momentum", "1.5"], "momentum"),
    (["--lr-gamma", "0"], "lr_gamma"),
    (["--lr", "nan"], "lr"),
    (["--lr-milestones", "76", "64"], "lr_milestones"),
    (["--lr-milestones", "64", "90"], "lr_milestones"),  # past the quick profile's 80 epochs
    (["--warmup-epochs", "-1"], "warmup_epochs"),
    (["--hard-k", "8.9"], "hard-k"),  # tyro refuses the non-integer itself
    (["--hard-k", "8", "--hard-fraction", "0.1"], "hard_fraction"),
    (["--dataset", "imagenet9000"], "dataset"),
    (["--device", "gpu"], "device"),
    (["--epochs", "abc"], "epochs"),
    (["--loss", "no_such_loss"], "loss"),
])
def test_bad_value_exits_2_naming_the_field(flags, field, tmp_path, capsys):
    assert _exit_code(["pretrain", "--out", str(tmp_path / "run"), *flags]) == 2
    captured = capsys.readouterr()
    text = _flat(captured.out + captured.err)
    assert field in text, text
    assert "Traceback" not in text
    assert not (tmp_path / "run").exists()  # refused before any work


def test_unknown_profile_and_bad_config_file_are_clean_errors(tmp_path, capsys):
    assert cli.main(["pretrain", "--profile", "huge", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cl-analysis pretrain: error: unknown profile 'huge'")
    assert "smoke" in err
    (tmp_path / "bad.json").write_text('{"momentum": 1.5}')
    assert _exit_code(["pretrain", "--config", str(tmp_path / "bad.json"),
                       "--out", str(tmp_path / "r")]) == 2
    captured = capsys.readouterr()
    assert "momentum" in captured.err + captured.out
    assert "Traceback" not in captured.err + captured.out
    assert cli.main(["pretrain", "--config", str(tmp_path / "missing.json"),
                     "--out", str(tmp_path / "r")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_out_naming_a_file_is_a_clean_error(tree, tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    for command in ("pretrain", "sweep"):
        code = cli.main([command, *SMOKE, "--data-root", str(tree), "--out",
                         str(tmp_path / "file")])
        assert code == 2
        err = capsys.readouterr().err
        assert err.startswith(f"cl-analysis {command}: error:") and "is a file" in err
        assert "Traceback" not in err


# --------------------------------------------------------------------------- config and resume
def test_threads_flag_sets_num_threads():
    assert cli.parse("pretrain", ["--out", "r", "--threads", "1"]).run.num_threads == 1
    assert cli.parse("pretrain", ["--out", "r", "--threads=3"]).run.num_threads == 3
    assert cli.parse("pretrain", ["--out", "r"]).run.num_threads is None


def test_epochs_override_scales_the_profile_milestones():
    run = cli.parse("pretrain", ["--out", "r", "--epochs", "40"]).run  # quick: 64/76 of 80
    assert run.epochs == 40 and run.lr_milestones == (32, 38)
    run = cli.parse("pretrain", ["--out", "r", "--epochs", "40", "--lr-milestones", "10"]).run
    assert run.lr_milestones == (10,)


def test_simclr_regime_on_the_simclr_profile_is_simclrs_setup():
    run = cli.parse("pretrain", ["--profile", "simclr", "--regime", "simclr", "--out", "r"]).run
    assert run == get_profile("simclr").run
    assert (run.regime, run.augment, run.head, run.batch_size) == ("simclr", "simclr", "mlp", 512)
    assert (run.schedule, run.warmup_epochs, run.lr_milestones) == ("cosine", 10, ())
    assert run.temperature == 0.5 and run.lr == 0.5
    assert run.log_metrics and run.knn_every >= 1  # kNN monitor on


def test_config_file_then_flags_reproduce_run_x(run_x, tmp_path, capsys):
    """--config runs/x/config.json --epochs 3 reproduces run x with 3 epochs."""
    out = tmp_path / "x3"
    assert cli.main(["pretrain", "--config", str(run_x / "config.json"), "--epochs", "3",
                     "--no-progress", "--out", str(out)]) == 0
    assert "trained 3/3 epochs" in capsys.readouterr().out
    x = _config(run_x)
    assert (x.loss, x.temperature, x.hard_k, x.seed, x.subset) == ("hard", 0.3, 4, 2, 36)
    assert _config(out) == x.replace(epochs=3)
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3


def test_resume_reads_the_runs_config(run_x, tmp_path, capsys):
    run = _copy(run_x, tmp_path / "x")
    # no options but the new length: everything else comes from run x's config.json
    assert cli.main(["pretrain", "--out", str(run), "--resume", "--epochs", "2",
                     "--no-progress"]) == 0
    assert "trained 2/2 epochs" in capsys.readouterr().out
    assert _config(run) == _config(run_x).replace(epochs=2)
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    # an option that changes the run is refused, naming it
    assert cli.main(["pretrain", "--out", str(run), "--resume", "--epochs", "3", "--lr", "0.1",
                     "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "refusing to resume" in err and "lr: 0.03 → 0.1" in err


def test_pretrain_twice_without_resume_is_refused(run_x, tmp_path, capsys):
    run = _copy(run_x, tmp_path / "x")
    assert cli.main(["pretrain", "--config", str(run / "config.json"), "--out", str(run),
                     "--no-progress"]) == 2
    assert "pass --resume" in capsys.readouterr().err


# --------------------------------------------------------------------------- evaluate
def test_evaluate_prints_a_short_summary(run_x, tmp_path, capsys):
    run = _copy(run_x, tmp_path / "x")
    assert cli.main(["evaluate", "--run", str(run), "--probe-epochs", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 1 and "linear top-1" in out and "kNN top-1" in out
    saved = json.loads((run / "eval.json").read_text())
    assert saved["linear_epochs"] == 2 and saved["pretrain_epochs"] == 1


def test_evaluate_unfinished_run_says_so(run_x, tmp_path, capsys):
    run = _copy(run_x, tmp_path / "x")
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "epochs": 40}))  # 1 of 40 trained
    assert cli.main(["evaluate", "--run", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "unfinished: 1 of 40 epochs" in err and "--resume" in err and "Traceback" not in err
    assert not (run / "eval.json").exists()


def test_evaluate_without_a_run_is_a_clean_error(tmp_path, capsys):
    assert cli.main(["evaluate", "--run", str(tmp_path), "--no-progress"]) == 2
    assert "no config.json" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_evaluate_on_cuda_without_cuda_is_a_clean_error(run_x, tmp_path, capsys):
    run = _copy(run_x, tmp_path / "x")
    assert cli.main(["evaluate", "--run", str(run), "--device", "cuda", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cl-analysis evaluate: error:") and "--device cpu" in err
    assert "Traceback" not in err


def test_moved_run_evaluates_with_data_root(tmp_path, capsys):
    """A run folder copied elsewhere, its data moved: --data-root overrides the recorded path."""
    old = write_tree(tmp_path / "old-data")
    assert cli.main(["pretrain", *SMOKE, "--data-root", str(old), "--out",
                     str(tmp_path / "run")]) == 0
    new = tmp_path / "new-data"
    shutil.move(old, new)
    moved = _copy(tmp_path / "run", tmp_path / "elsewhere" / "run")
    capsys.readouterr()
    assert cli.main(["evaluate", "--run", str(moved), "--no-progress"]) == 2  # stale path
    assert "old-data" in capsys.readouterr().err
    assert cli.main(["evaluate", "--run", str(moved), "--data-root", str(new),
                     "--no-linear-probe", "--no-progress"]) == 0
    saved = json.loads((moved / "eval.json").read_text())
    assert saved["n_test"] == 18 and saved["linear_top1"] is None
    assert _config(moved).data_root == str(old)  # location is not rewritten into the config


# --------------------------------------------------------------------------- device, Ctrl-C
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_paper_profile_on_a_cpu_is_refused_naming_the_cost(tree, tmp_path, capsys,
                                                           monkeypatch):
    calls = []
    monkeypatch.setattr("cl_analysis.training.pretrain.pretrain",
                        lambda config, out, **kw: calls.append(config) or {"history": []})
    argv = ["pretrain", "--profile", "paper", "--dataset", "imagefolder", "--data-root",
            str(tree), "--out", str(tmp_path / "run"), "--no-progress"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert f"{PAPER_CPU_DAYS} days" in err and "--device cpu" in err
    assert calls == [] and not (tmp_path / "run").exists()
    assert cli.main([*argv, "--device", "cpu"]) == 0  # explicitly asked for: allowed
    assert calls[0].device == "cpu" and calls[0].model == "resnet18"


def test_ctrl_c_ends_with_the_resume_hint(tree, tmp_path, capsys, monkeypatch):
    def interrupted(config, out, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("cl_analysis.training.pretrain.pretrain", interrupted)
    out = tmp_path / "run"
    assert cli.main(["pretrain", *SMOKE, "--data-root", str(tree), "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert "resume with" in err and f"--out {out} --resume" in err
    assert "Traceback" not in err


# --------------------------------------------------------------------------- review fixes
def test_profiles_lists_only_what_differs_from_the_paper(capsys):
    assert cli.main(["profiles"]) == 0
    out = capsys.readouterr().out
    paper_line = next(line for line in out.splitlines() if line.startswith("  config")
                      and "'device': 'cuda'" in line)
    assert "convnet_widths" not in paper_line and "lr_milestones" not in paper_line
    assert cli.main(["profiles", "--bogus"]) == 2


def test_a_partial_config_file_sits_on_the_chosen_profile(tmp_path):
    (tmp_path / "p.yaml").write_text("loss: hard\ntemperature: 0.3\n")
    args = cli.parse("pretrain", ["--config", str(tmp_path / "p.yaml"), "--profile", "smoke",
                                  "--out", str(tmp_path / "x")])
    smoke = PROFILES["smoke"].run
    assert args.run == smoke.replace(loss="hard", temperature=0.3)
    (tmp_path / "bad.yaml").write_text("los: hard\n")
    with pytest.raises(ValueError, match="unknown config key"):
        cli.parse("pretrain", ["--config", str(tmp_path / "bad.yaml"), "--out", "x"])


def test_resume_with_more_epochs_keeps_the_runs_schedule(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    quick = PROFILES["quick"].run
    (run / "config.json").write_text(json.dumps(quick.to_dict()))
    args = cli.parse("pretrain", ["--out", str(run), "--resume", "--epochs", "100"])
    assert args.run == quick.replace(epochs=100)  # milestones 64/76 kept: the run continues


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_paper_profile_with_device_auto_on_a_cpu_is_refused(tree, tmp_path, capsys):
    argv = ["pretrain", "--profile", "paper", "--dataset", "imagefolder", "--data-root",
            str(tree), "--device", "auto", "--out", str(tmp_path / "run")]
    assert cli.main(argv) == 2
    assert f"{PAPER_CPU_DAYS} days" in capsys.readouterr().err


def test_reproduce_checks_its_notebooks_and_runs_folder_before_training(tree, tmp_path,
                                                                       capsys):
    base = ["reproduce", "--profile", "smoke", "--dataset", "imagefolder", "--data-root",
            str(tree), "--out", str(tmp_path / "reports"), "--no-progress"]
    runs = tmp_path / "runs"
    assert cli.main([*base, "--runs", str(runs), "--notebooks", str(tmp_path / "none")]) == 2
    assert "no NN_*.ipynb notebooks" in capsys.readouterr().err and not runs.exists()
    (tmp_path / "afile").write_text("x")
    assert cli.main([*base, "--runs", str(tmp_path / "afile")]) == 2
    assert "--runs" in capsys.readouterr().err
