import math

import numpy as np
import pytest

from cl_analysis.study.noise import measure_noise_floor
from cl_analysis.study.profiles import SweepGrid, get_profile
from cl_analysis.study.runs import density_spec
from cl_analysis.study.sweep import SweepSpec, load_results, run_sweep
from cl_analysis.training import data


@pytest.fixture(scope="module")
def three_seed_sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("noise")
    sets = {"cifar10": (data.synthetic_dataset(20, split="train", seed=0),
                        data.synthetic_dataset(10, split="test", seed=0))}
    base = get_profile("smoke").run.replace(epochs=1, subset=100, eval_test_size=None,
                                            probe_epochs=2)
    spec = SweepSpec(base, SweepGrid(losses=("info_nce", "simple"), temperatures=(0.1, 1.0),
                                     seeds=(0, 1, 2)), "smoke")
    run_sweep(spec, root, data=sets, progress=False)
    run_sweep(density_spec(spec), root / "density", data=sets, progress=False)
    return root


def test_noise_floor_is_the_pooled_seed_std(three_seed_sweep):
    floor = measure_noise_floor(three_seed_sweep)
    df = load_results(three_seed_sweep)
    # independent recomputation for one metric: RMS of the per-configuration stds (ddof = 1)
    key = df["temperature"].fillna(-1)
    var = [g["tolerance"].var(ddof=1) for _, g in df.groupby([df["loss"], key])]
    assert floor["std"]["tolerance"] == pytest.approx(math.sqrt(np.mean(var)), abs=1e-6)
    assert floor["detail"]["tolerance"]["configurations"] == 3  # 2 τ of info_nce + simple
    for metric in ("linear_top1", "uniformity_bank", "separation_gap_bank",
                   "separation_pos_bank", "density_uniformity"):
        assert math.isfinite(floor["std"][metric]) and floor["std"][metric] >= 0, metric
    assert floor["seeds"] == [0, 1, 2]


def test_noise_floor_needs_three_seeds(tmp_path):
    sets = {"cifar10": (data.synthetic_dataset(10, split="train", seed=0),
                        data.synthetic_dataset(10, split="test", seed=0))}
    base = get_profile("smoke").run.replace(epochs=1, subset=50, linear_probe=False,
                                            eval_test_size=None)
    spec = SweepSpec(base, SweepGrid(losses=("simple",), temperatures=(), seeds=(0,)), "smoke")
    run_sweep(spec, tmp_path, data=sets, progress=False)
    with pytest.raises(ValueError, match="at least 3"):
        measure_noise_floor(tmp_path)


def test_noise_floor_covers_the_weighting_lens_at_the_last_monitored_epoch(three_seed_sweep):
    from cl_analysis.study.noise import HISTORY_METRICS
    from cl_analysis.study.runs import load_sweep

    floor = measure_noise_floor(three_seed_sweep)
    table = load_sweep(three_seed_sweep).history_table(HISTORY_METRICS)
    last = table[table["epoch"] == table["epoch"].max()]
    for metric in HISTORY_METRICS:
        var = [g[metric].var(ddof=1) for _, g in
               last.groupby([last["loss"], last["temperature"].fillna(-1)])]
        assert floor["std"][metric] == pytest.approx(math.sqrt(np.mean(var)), abs=1e-6)
    logs = [np.log10(g["anchor_log_weight_std_flat_nce"]).var(ddof=1) for _, g in
            last.groupby([last["loss"], last["temperature"].fillna(-1)])]
    assert floor["std"]["log10_anchor_log_weight_std_flat_nce"] == pytest.approx(
        math.sqrt(np.mean(logs)), abs=1e-6)
