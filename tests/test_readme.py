"""Every code example of the README runs as written: Python blocks are executed, and every
`cl-analysis` command line is parsed by the real CLI (flags, profiles, config files)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from cl_analysis import cli
from cl_analysis.study.profiles import SweepGrid, get_profile
from cl_analysis.study.sweep import SweepSpec, run_sweep
from cl_analysis.training import data

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def _command_lines() -> list[list[str]]:
    lines = []
    for block in _blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("cl-analysis "):
                lines.append(shlex.split(line)[1:])
    return lines


@pytest.fixture()
def workdir(tmp_path, monkeypatch):
    """A folder with what the examples name: a finished quick-named sweep and run (trained on
    synthetic images with the smoke profile), a dataset folder DATA and a run's config.json."""
    sets = {"cifar10": (data.synthetic_dataset(20, split="train", seed=0),
                        data.synthetic_dataset(10, split="test", seed=0))}
    base = get_profile("smoke").run.replace(epochs=1, subset=100, eval_test_size=None,
                                            probe_epochs=2)
    spec = SweepSpec(base, SweepGrid(losses=("hard",), temperatures=(0.3,)), "smoke")
    run_sweep(spec, tmp_path / "runs" / "quick", data=sets, progress=False)
    (tmp_path / "runs" / "h0.3").mkdir()
    (tmp_path / "runs" / "h0.3" / "config.json").write_text(
        json.dumps(get_profile("quick").run.replace(loss="hard", temperature=0.3).to_dict()))
    for split in ("train", "test"):
        (tmp_path / "DATA" / split / "a").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_readme_has_examples():
    assert len(_blocks("python")) >= 2 and len(_command_lines()) >= 5


@pytest.mark.parametrize("argv", _command_lines(), ids=lambda a: " ".join(a[:3]))
def test_readme_command_parses(argv, workdir):
    command = argv[0]
    if argv == ["--version"] or command == "profiles":
        assert cli.main(argv) == 0
        return
    args = cli.parse(command, argv[1:])  # tyro exits 2 on an unknown flag or a bad value
    assert args is not None


@pytest.mark.parametrize("index", range(len(_blocks("python"))))
def test_readme_python_block_runs(index, workdir):
    exec(compile(_blocks("python")[index], f"README.md python block {index}", "exec"), {})
