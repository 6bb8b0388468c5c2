import json
import math
import os

import numpy as np
import pandas as pd
import pytest

from cl_analysis.study import sweep as ex
from cl_analysis.study.sweep import RESULT_COLUMNS, SweepSpec, load_results, run_sweep


class FakeTrainer:
    """Records calls, writes a checkpoint, optionally fails on the n-th call (1-based)."""

    def __init__(self, fail_on=None):
        self.calls, self.fail_on = [], fail_on

    def __call__(self, config, out_dir, *, resume=False, progress=True):
        self.calls.append((dict(config), out_dir.name, resume))
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "checkpoint.pt").write_text("ckpt")
        (out_dir / "config.json").write_text(json.dumps(dict(config)))
        if self.fail_on is not None and len(self.calls) == self.fail_on:
            raise RuntimeError("killed mid-run")
        return {"epochs": config.get("epochs", 1)}


class FakeEvaluator:
    def __init__(self):
        self.calls = []

    def __call__(self, run_dir, *, linear=True, probe_epochs=None, progress=True):
        self.calls.append((run_dir.name, linear, probe_epochs))
        t = 0.5 if "-t" not in run_dir.name else float(run_dir.name.rsplit("-t", 1)[1])
        # flat, like evaluate.evaluate_run's eval.json (accuracies as fractions)
        result = {"linear_top1": 0.5 + t / 100 if linear else None, "knn_top1": 0.4 + t / 100,
                  "uniformity": 3.0 - t, "tolerance": 0.1 * t, "alignment": 0.5,
                  "uniformity_bank": 3.1, "tolerance_bank": None, "epochs": 1,
                  "linear_test_curve": [0.1, 0.2], "loss": "ignored", "temperature": 0.07}
        (run_dir / "eval.json").write_text(json.dumps(result))
        return result


def _spec(**kw):
    defaults = dict(losses=("info_nce", "hard", "simple"), temperatures=(0.07, 0.3),
                    datasets=("cifar10",), regimes=("memory_bank",), base={"epochs": 1})
    return SweepSpec(**{**defaults, **kw})


def test_runs_names_order_and_tau_free_once():
    spec = SweepSpec(losses=("info_nce", "hard", "simple", "hard_simple"),
                     temperatures=(0.07, 1.0), datasets=("cifar10", "svhn"),
                     regimes=("memory_bank", "simclr"), base={"epochs": 3})
    runs = spec.runs()
    names = [n for n, _ in runs]
    assert len(runs) == 2 * 2 * (2 + 2 + 1 + 1)
    assert names[:6] == [
        "cifar10-memory_bank-info_nce-t0.07", "cifar10-memory_bank-info_nce-t1.0",
        "cifar10-memory_bank-hard-t0.07", "cifar10-memory_bank-hard-t1.0",
        "cifar10-memory_bank-simple", "cifar10-memory_bank-hard_simple",
    ]
    assert names[6] == "cifar10-simclr-info_nce-t0.07" and names[-1] == "svhn-simclr-hard_simple"
    assert len(set(names)) == len(names)
    overrides = dict(runs)
    assert overrides["cifar10-memory_bank-hard-t0.07"] == {
        "epochs": 3, "dataset": "cifar10", "regime": "memory_bank", "loss": "hard",
        "temperature": 0.07}
    assert "temperature" not in overrides["svhn-simclr-simple"]
    assert ex.run_name("cifar10", "memory_bank", "hard", 0.3) == "cifar10-memory_bank-hard-t0.3"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(losses=()), "losses"),
        (dict(temperatures=(0.1, -1.0)), "temperature"),
        (dict(temperatures=(0.1, 0.1)), "duplicates"),
        (dict(temperatures=()), "temperatures is empty"),
        (dict(base={"loss": "hard"}), "must not set"),
        (dict(probe_epochs=0), "probe_epochs"),
        (dict(datasets=("cifar10", "cifar10")), "duplicates"),
    ],
)
def test_spec_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _spec(**kwargs)


def test_tau_free_only_spec_needs_no_temperatures():
    spec = _spec(losses=("simple", "hard_simple", "tau_zero_limit"), temperatures=())
    assert [n for n, _ in spec.runs()] == ["cifar10-memory_bank-simple",
                                           "cifar10-memory_bank-hard_simple",
                                           "cifar10-memory_bank-tau_zero_limit"]


def test_sweep_writes_results(tmp_path):
    train, evaluate = FakeTrainer(), FakeEvaluator()
    spec = _spec(probe_epochs=2, profile="smoke")
    df = run_sweep(spec, tmp_path, progress=False, train_fn=train, eval_fn=evaluate,
                   config_fn=dict)
    assert list(df.columns) == list(RESULT_COLUMNS)
    assert list(df.run) == [n for n, _ in spec.runs()]
    assert [c[1:] for c in evaluate.calls] == [(True, 2)] * 5
    row = df.set_index("run").loc["cifar10-memory_bank-hard-t0.3"]
    assert row.linear_top1 == pytest.approx(0.503) and row.knn_top1 == pytest.approx(0.403)
    assert row.uniformity == pytest.approx(2.7) and row.tolerance == pytest.approx(0.03)
    assert row.uniformity_bank == 3.1 and row.epochs == 1 and row.profile == "smoke"
    assert (row.dataset, row.regime, row.loss, row.temperature) == (
        "cifar10", "memory_bank", "hard", 0.3)
    assert row.wall_time_s >= 0 and math.isnan(row.tolerance_bank)
    simple = df.set_index("run").loc["cifar10-memory_bank-simple"]
    assert math.isnan(simple.temperature)
    # results.csv / results.json round-trip
    loaded = load_results(tmp_path)
    pd.testing.assert_frame_equal(loaded, df, check_dtype=False)
    records = json.loads((tmp_path / "results.json").read_text())
    assert len(records) == 5 and records[0]["run"] == "cifar10-memory_bank-info_nce-t0.07"
    assert records[-1]["temperature"] is None  # NaN -> null
    meta = json.loads((tmp_path / "cifar10-memory_bank-simple" / "sweep_run.json").read_text())
    assert meta["wall_time_s"] >= meta["train_time_s"] >= 0 and meta["resumed"] is False
    assert json.loads((tmp_path / "sweep.json").read_text())["probe_epochs"] == 2


def test_finished_runs_are_skipped(tmp_path):
    spec = _spec()
    run_sweep(spec, tmp_path, progress=False, train_fn=FakeTrainer(), eval_fn=FakeEvaluator(),
              config_fn=dict)
    train, evaluate = FakeTrainer(), FakeEvaluator()
    df = run_sweep(spec, tmp_path, progress=False, train_fn=train, eval_fn=evaluate,
                   config_fn=dict)
    assert train.calls == [] and evaluate.calls == [] and len(df) == 5
    # A wider sweep in the same folder only trains the new runs.
    wider = _spec(temperatures=(0.07, 0.3, 0.7))
    df = run_sweep(wider, tmp_path, progress=False, train_fn=train, eval_fn=evaluate,
                   config_fn=dict)
    assert [c[1] for c in train.calls] == ["cifar10-memory_bank-info_nce-t0.7",
                                           "cifar10-memory_bank-hard-t0.7"]
    assert list(df.run) == [n for n, _ in wider.runs()]


def test_finished_run_with_changed_config_is_refused(tmp_path):
    run_sweep(_spec(losses=("simple",)), tmp_path, progress=False, train_fn=FakeTrainer(),
              eval_fn=FakeEvaluator(), config_fn=dict)
    with pytest.raises(ValueError, match=r"different config \{epochs: 1 → 5\}"):
        run_sweep(_spec(losses=("simple",), base={"epochs": 5}), tmp_path, progress=False,
                  train_fn=FakeTrainer(), eval_fn=FakeEvaluator(), config_fn=dict)


def test_interrupted_sweep_continues_from_failed_run(tmp_path):
    spec = _spec()
    names = [n for n, _ in spec.runs()]
    train = FakeTrainer(fail_on=3)
    with pytest.raises(RuntimeError, match="killed"):
        run_sweep(spec, tmp_path, progress=False, train_fn=train, eval_fn=FakeEvaluator(),
                  config_fn=dict)
    assert list(load_results(tmp_path).run) == names[:2]  # saved before the failure
    train2, evaluate2 = FakeTrainer(), FakeEvaluator()
    df = run_sweep(spec, tmp_path, progress=False, train_fn=train2, eval_fn=evaluate2,
                   config_fn=dict)
    assert [c[1] for c in train2.calls] == names[2:]
    assert [c[2] for c in train2.calls] == [True, False, False]  # run 3 resumes its checkpoint
    assert [c[0] for c in evaluate2.calls] == names[2:]
    assert list(df.run) == names


def test_eval_result_written_when_eval_fn_does_not(tmp_path):
    def evaluate(run_dir, **kwargs):
        return {"linear_top1": 0.125, "knn_top1": None}

    df = run_sweep(_spec(losses=("simple",)), tmp_path, progress=False, train_fn=FakeTrainer(),
                   eval_fn=evaluate, config_fn=dict)
    assert df.linear_top1.tolist() == [0.125] and math.isnan(df.knn_top1[0])
    assert df.profile.isna().all()


def test_results_written_atomically(tmp_path, monkeypatch):
    run_sweep(_spec(losses=("simple",)), tmp_path, progress=False, train_fn=FakeTrainer(),
              eval_fn=FakeEvaluator(), config_fn=dict)
    before = (tmp_path / "results.csv").read_text()

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(ex.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        run_sweep(_spec(losses=("simple", "hard_simple")), tmp_path, progress=False,
                  train_fn=FakeTrainer(), eval_fn=FakeEvaluator(), config_fn=dict)
    monkeypatch.undo()
    assert (tmp_path / "results.csv").read_text() == before  # old file intact
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]  # no temp litter


def test_load_results_errors_and_rebuild(tmp_path):
    with pytest.raises(ValueError, match="no sweep folder"):
        load_results(tmp_path / "missing")
    run_sweep(_spec(losses=("simple",)), tmp_path, progress=False, train_fn=FakeTrainer(),
              eval_fn=FakeEvaluator(), config_fn=dict)
    (tmp_path / "results.csv").unlink()
    df = load_results(tmp_path)
    assert df.run.tolist() == ["cifar10-memory_bank-simple"] and df.loss[0] == "simple"


def test_run_sweep_rejects_non_spec(tmp_path):
    with pytest.raises(ValueError, match="SweepSpec"):
        run_sweep({"losses": ["hard"]}, tmp_path)


def test_data_passed_to_train_and_eval(tmp_path):
    seen = []

    def train(config, out_dir, *, resume=False, progress=True, train_set=None, test_set=None):
        seen.append(("train", train_set, test_set))
        out_dir.mkdir(parents=True, exist_ok=True)

    def evaluate(run_dir, *, train_set=None, test_set=None, **kwargs):
        seen.append(("eval", train_set, test_set))
        return {"linear_top1": 0.5}

    spec = _spec(losses=("simple",), datasets=("cifar10", "svhn"))
    run_sweep(spec, tmp_path, progress=False, train_fn=train, eval_fn=evaluate, config_fn=dict,
              data=lambda config: (f"{config['dataset']}-train", f"{config['dataset']}-test"))
    assert seen == [("train", "cifar10-train", "cifar10-test"),
                    ("eval", "cifar10-train", "cifar10-test"),
                    ("train", "svhn-train", "svhn-test"), ("eval", "svhn-train", "svhn-test")]

    class Config:  # attribute access, like TrainConfig
        def __init__(self, overrides):
            self.__dict__.update(overrides)

    with pytest.raises(ValueError, match="no entry for dataset 'svhn'"):
        run_sweep(_spec(losses=("hard_simple",), datasets=("cifar10", "svhn")), tmp_path,
                  progress=False, train_fn=train, eval_fn=evaluate, config_fn=Config,
                  data={"cifar10": ("tr", "te")})


def test_real_pretrain_and_evaluate_two_run_sweep(tmp_path):
    pytest.importorskip("cl_analysis.evaluation.evaluate")
    import torch

    from cl_analysis.training.data import ImageDataset

    def make(n, seed):
        g = torch.Generator().manual_seed(seed)
        images = torch.randint(0, 256, (n, 3, 16, 16), generator=g, dtype=torch.uint8)
        labels = torch.arange(n) % 4
        return ImageDataset(images, labels, [f"c{k}" for k in range(4)], "synthetic", "train",
                            "made in the test")

    base = dict(model="convnet", convnet_widths=(8, 16, 16, 16), embedding_dim=32, image_size=16,
                batch_size=16, epochs=1, hard_k=8, device="cpu", num_threads=1)
    spec = SweepSpec(losses=("info_nce", "simple"), temperatures=(0.2,), base=base,
                     probe_epochs=2, profile="test")
    sets = {"cifar10": (make(48, 0), make(24, 1))}
    df = run_sweep(spec, tmp_path, progress=False, data=sets)
    assert list(df.run) == ["cifar10-memory_bank-info_nce-t0.2", "cifar10-memory_bank-simple"]
    for col in ("linear_top1", "knn_top1", "uniformity", "tolerance", "alignment",
                "uniformity_bank", "tolerance_bank", "penalty_entropy", "wall_time_s"):
        assert df[col].notna().all(), col
    assert (df.epochs == 1).all() and (df.profile == "test").all()
    assert df.temperature.iloc[0] == 0.2 and math.isnan(df.temperature.iloc[1])
    assert ((df.linear_top1 >= 0) & (df.linear_top1 <= 1)).all()
    # Finished: a second call trains nothing (a real pretrain would refuse without resume).
    again = run_sweep(spec, tmp_path, progress=False, data=sets)
    pd.testing.assert_frame_equal(again, df)


def test_parallel_workers_match_sequential_sweep(tmp_path):
    """workers=2 trains each run in its own process; the results equal a sequential sweep."""
    pytest.importorskip("cl_analysis.evaluation.evaluate")
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    for split, n in (("train", 12), ("test", 6)):
        for c in range(3):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    base = dict(model="convnet", convnet_widths=(8, 8, 8, 8), embedding_dim=16, image_size=16,
                batch_size=12, epochs=1, hard_k=4, device="cpu", num_threads=1,
                data_root=str(root))
    spec = SweepSpec(losses=("info_nce", "simple"), temperatures=(0.5,), datasets=("imagefolder",),
                     base=base, probe_epochs=2, profile="test")
    with pytest.raises(ValueError, match="workers > 1 needs the default"):
        run_sweep(spec, tmp_path / "x", progress=False, workers=2, data={})
    parallel = run_sweep(spec, tmp_path / "parallel", progress=False, workers=2)
    sequential = run_sweep(spec, tmp_path / "sequential", progress=False)
    assert list(parallel.run) == list(sequential.run)
    for col in ("linear_top1", "knn_top1", "uniformity", "tolerance", "uniformity_bank"):
        np.testing.assert_allclose(parallel[col], sequential[col], rtol=1e-5, err_msg=col)
