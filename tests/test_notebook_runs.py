"""The shared setup of notebooks 04–06: resolve settings, train-or-load the sweep, load results."""

from __future__ import annotations

import pytest

from cl_analysis.study.runs import load_sweep_runs


def test_without_data_only_the_fast_mode_runs(tmp_path, monkeypatch):
    monkeypatch.delenv("CL_DATA_ROOT", raising=False)
    with pytest.raises(ValueError, match="CL_FAST=1"):
        load_sweep_runs("quick", runs_dir=tmp_path)


def test_fast_mode_trains_the_smoke_sweep_on_synthetic_images_then_loads_it(tmp_path,
                                                                            monkeypatch):
    monkeypatch.delenv("CL_DATA_ROOT", raising=False)
    sweep = load_sweep_runs("quick", fast=True, repo=tmp_path)
    assert sweep.profile == "smoke" and sweep.data_root is None
    assert sweep.runs_dir == tmp_path / "runs" / "smoke-synthetic"
    assert sweep.sets is not None and len(sweep.results) == len(sweep.names) == 6
    assert sorted(sweep.results["run"]) == sorted(sweep.names)
    assert sweep.results["uniformity"].notna().all()
    assert "synthetic" in sweep.describe() and "6 runs" in sweep.describe()
    # second call: every run is finished, so nothing trains and the table is the same
    stamps = {p: p.stat().st_mtime_ns for p in sweep.runs_dir.glob("*/checkpoint.pt")}
    again = load_sweep_runs("quick", fast=True, repo=tmp_path)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert again.results.equals(sweep.results)
