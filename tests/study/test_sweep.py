"""Tests of cl_analysis.study.sweep: SweepSpec, run_sweep, results, sweep.json."""

import json
import math
import os

import numpy as np
import pandas as pd
import pytest

from cl_analysis.study import sweep as ex
from cl_analysis.study.profiles import SweepGrid
from cl_analysis.study.sweep import RESULT_COLUMNS, SweepSpec, load_results, load_spec, run_sweep
from cl_analysis.training.config import TrainConfig


class FakeTrainer:
    """Records calls, writes a checkpoint, optionally fails on the n-th call (1-based)."""

    def __init__(self, fail_on=None):
        self.calls, self.fail_on = [], fail_on

    def __call__(self, config, out_dir, *, resume=False, progress=True):
        assert isinstance(config, TrainConfig)
        self.calls.append((config, out_dir.name, resume))
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "checkpoint.pt").write_text("ckpt")
        (out_dir / "config.json").write_text(json.dumps(config.to_dict()))
        if self.fail_on is not None and len(self.calls) == self.fail_on:
            raise RuntimeError("killed mid-run")
        return {"epochs": config.epochs}


class FakeEvaluator:
    def __init__(self):
        self.calls = []

    def __call__(self, run_dir, *, progress=True):
        config = TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
        linear, probe_epochs = config.linear_probe, config.probe_epochs  # from the run's config
        self.calls.append((run_dir.name, linear, probe_epochs))
        name = run_dir.name
        t = 0.5 if "-t" not in name else float(name.split("-t", 1)[1].split("-s")[0])
        # flat, like evaluate.evaluate_run's eval.json (accuracies as fractions)
        result = {"linear_top1": 0.5 + t / 100 if linear else None, "knn_top1": 0.4 + t / 100,
                  "uniformity": 3.0 - t, "tolerance": 0.1 * t, "alignment": 0.5,
                  "uniformity_bank": 3.1, "tolerance_bank": None, "epochs": 1,
                  "linear_test_curve": [0.1, 0.2], "loss": "ignored", "temperature": 0.07}
        (run_dir / "eval.json").write_text(json.dumps(result))
        return result


def _base(**kw):
    return TrainConfig(**{"epochs": 1, "lr_milestones": (), **kw})


def _spec(losses=("info_nce", "hard", "simple"), temperatures=(0.07, 0.3), seeds=(0,),
          profile=None, **base):
    return SweepSpec(_base(**base), SweepGrid(losses=losses, temperatures=temperatures,
                                              seeds=seeds), profile)


def test_runs_names_order_and_tau_free_once():
    losses = ("info_nce", "hard", "simple", "hard_simple")
    spec = SweepSpec(_base(epochs=3), SweepGrid(losses=losses,
                                                temperatures=(0.07, 1.0), seeds=(0, 1)))
    runs = spec.runs()
    names = [n for n, _ in runs]
    assert len(runs) == 2 * (2 + 2 + 1 + 1)  # seeds x (τ-losses x τ + τ-free losses)
    assert names[:6] == [
        "cifar10-memory_bank-info_nce-t0.07-s0", "cifar10-memory_bank-info_nce-t0.07-s1",
        "cifar10-memory_bank-info_nce-t1.0-s0", "cifar10-memory_bank-info_nce-t1.0-s1",
        "cifar10-memory_bank-hard-t0.07-s0", "cifar10-memory_bank-hard-t0.07-s1",
    ]
    assert names[-1] == "cifar10-memory_bank-hard_simple-s1"
    assert len(set(names)) == len(names)
    configs = dict(runs)
    # every run is the base config with the grid's loss, τ and seed
    assert configs["cifar10-memory_bank-hard-t0.07-s1"] == _base(epochs=3).replace(
        loss="hard", temperature=0.07, seed=1)
    assert configs["cifar10-memory_bank-simple-s0"].temperature == spec.base.temperature
    assert all(ex.run_name(c) == n for n, c in runs)
    assert ex.run_name(TrainConfig(loss="hard", temperature=0.3, seed=2)) == \
        "cifar10-memory_bank-hard-t0.3-s2"
    simclr = SweepSpec(_base(regime="simclr", dataset="svhn"),
                       SweepGrid(losses=("info_nce",), temperatures=(0.5,), seeds=(3,)))
    assert [n for n, _ in simclr.runs()] == ["svhn-simclr-info_nce-t0.5-s3"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(losses=()), "losses"),
        (dict(losses=("triplet",)), "triplet"),
        (dict(temperatures=(0.1, -1.0)), "temperature"),
        (dict(temperatures=(0.1, 0.1)), "duplicates"),
        (dict(temperatures=()), "temperatures is empty"),
        (dict(seeds=(1, 1)), "duplicates"),
        (dict(seeds=(-1,)), "seeds"),
        (dict(probe_epochs=0), "probe_epochs"),
    ],
)
def test_spec_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _spec(**kwargs)


def test_spec_needs_typed_parts():
    with pytest.raises(ValueError, match="base must be a TrainConfig"):
        SweepSpec(base={"epochs": 1})
    with pytest.raises(ValueError, match="grid must be a SweepGrid"):
        SweepSpec(_base(), grid={"losses": ["hard"]})


def test_tau_free_only_spec_needs_no_temperatures():
    spec = _spec(losses=("simple", "hard_simple", "tau_zero_limit"), temperatures=())
    assert [n for n, _ in spec.runs()] == ["cifar10-memory_bank-simple-s0",
                                           "cifar10-memory_bank-hard_simple-s0",
                                           "cifar10-memory_bank-tau_zero_limit-s0"]


def test_sweep_writes_results(tmp_path):
    train, evaluate = FakeTrainer(), FakeEvaluator()
    spec = _spec(probe_epochs=2, profile="smoke")
    df = run_sweep(spec, tmp_path, progress=False, train_fn=train, eval_fn=evaluate)
    assert list(df.columns) == list(RESULT_COLUMNS)
    assert list(df.run) == [n for n, _ in spec.runs()]
    assert [c[1:] for c in evaluate.calls] == [(True, 2)] * 5
    assert [c[0] for c in train.calls] == [c for _, c in spec.runs()]  # the full configs
    row = df.set_index("run").loc["cifar10-memory_bank-hard-t0.3-s0"]
    assert row.linear_top1 == pytest.approx(0.503) and row.knn_top1 == pytest.approx(0.403)
    assert row.uniformity == pytest.approx(2.7) and row.tolerance == pytest.approx(0.03)
    assert row.uniformity_bank == 3.1 and row.epochs == 1 and row.profile == "smoke"
    assert (row.dataset, row.regime, row.loss, row.temperature, row.seed) == (
        "cifar10", "memory_bank", "hard", 0.3, 0)
    assert row.wall_time_s >= 0 and math.isnan(row.tolerance_bank)
    simple = df.set_index("run").loc["cifar10-memory_bank-simple-s0"]
    assert math.isnan(simple.temperature)
    # results.csv / results.json round-trip
    loaded = load_results(tmp_path)
    pd.testing.assert_frame_equal(loaded, df, check_dtype=False)
    records = json.loads((tmp_path / "results.json").read_text())
    assert len(records) == 5 and records[0]["run"] == "cifar10-memory_bank-info_nce-t0.07-s0"
    assert records[-1]["temperature"] is None  # NaN -> null
    meta = json.loads((tmp_path / "cifar10-memory_bank-simple-s0" / "sweep_run.json").read_text())
    assert meta["wall_time_s"] >= meta["train_time_s"] >= 0 and meta["resumed"] is False
    # sweep.json: the whole resolved spec, every run's full config
    recorded = json.loads((tmp_path / "sweep.json").read_text())
    assert recorded["base"]["probe_epochs"] == 2 and recorded["profile"] == "smoke"
    assert [r["name"] for r in recorded["runs"]] == list(df.run)
    assert [TrainConfig.from_dict(r["config"]) for r in recorded["runs"]] == \
        [c for _, c in spec.runs()]
    assert load_spec(tmp_path) == spec


def test_load_spec_refuses_a_missing_or_edited_sweep(tmp_path):
    with pytest.raises(ValueError, match="no sweep.json"):
        load_spec(tmp_path)
    spec = _spec(losses=("simple",))
    d = spec.to_dict()
    d["runs"][0]["name"] = "renamed"
    (tmp_path / "sweep.json").write_text(json.dumps(d))
    with pytest.raises(ValueError, match="other runs than its grid"):
        load_spec(tmp_path)


def test_results_advance_as_each_run_finishes(tmp_path):
    """workers=1: results.csv holds k rows when run k + 1 starts (not only at the end)."""
    spec = _spec()
    seen = []
    fake = FakeTrainer()

    def train(config, out_dir, **kwargs):
        path = tmp_path / "results.csv"
        seen.append(len(pd.read_csv(path)) if path.is_file() else 0)
        return fake(config, out_dir, **kwargs)

    run_sweep(spec, tmp_path, progress=False, workers=1, train_fn=train, eval_fn=FakeEvaluator())
    assert seen == list(range(len(spec.runs())))
    assert len(pd.read_csv(tmp_path / "results.csv")) == len(spec.runs())


def test_finished_runs_are_skipped(tmp_path):
    spec = _spec()
    run_sweep(spec, tmp_path, progress=False, train_fn=FakeTrainer(), eval_fn=FakeEvaluator())
    train, evaluate = FakeTrainer(), FakeEvaluator()
    df = run_sweep(spec, tmp_path, progress=False, train_fn=train, eval_fn=evaluate)
    assert train.calls == [] and evaluate.calls == [] and len(df) == 5
    # A wider sweep in the same folder only trains the new runs.
    wider = _spec(temperatures=(0.07, 0.3, 0.7))
    df = run_sweep(wider, tmp_path, progress=False, train_fn=train, eval_fn=evaluate)
    assert [c[1] for c in train.calls] == ["cifar10-memory_bank-info_nce-t0.7-s0",
                                           "cifar10-memory_bank-hard-t0.7-s0"]
    assert list(df.run) == [n for n, _ in wider.runs()]


def test_finished_run_with_changed_config_is_refused(tmp_path):
    run_sweep(_spec(losses=("simple",)), tmp_path, progress=False, train_fn=FakeTrainer(),
              eval_fn=FakeEvaluator())
    with pytest.raises(ValueError, match=r"different config \{epochs: 1 → 5\}"):
        run_sweep(_spec(losses=("simple",), epochs=5), tmp_path, progress=False,
                  train_fn=FakeTrainer(), eval_fn=FakeEvaluator())
    # location fields (data_root, device, threads) are not part of the result
    train = FakeTrainer()
    run_sweep(_spec(losses=("simple",), device="cpu", num_threads=1, data_root="/elsewhere"),
              tmp_path, progress=False, train_fn=train, eval_fn=FakeEvaluator())
    assert train.calls == []


def test_interrupted_sweep_continues_from_failed_run(tmp_path):
    spec = _spec()
    names = [n for n, _ in spec.runs()]
    train = FakeTrainer(fail_on=3)
    with pytest.raises(RuntimeError, match="killed"):
        run_sweep(spec, tmp_path, progress=False, train_fn=train, eval_fn=FakeEvaluator())
    assert list(load_results(tmp_path).run) == names[:2]  # saved before the failure
    train2, evaluate2 = FakeTrainer(), FakeEvaluator()
    df = run_sweep(spec, tmp_path, progress=False, train_fn=train2, eval_fn=evaluate2)
    assert [c[1] for c in train2.calls] == names[2:]
    assert [c[2] for c in train2.calls] == [True, False, False]  # run 3 resumes its checkpoint
    assert [c[0] for c in evaluate2.calls] == names[2:]
    assert list(df.run) == names


def test_eval_result_written_when_eval_fn_does_not(tmp_path):
    def evaluate(run_dir, **kwargs):
        return {"linear_top1": 0.125, "knn_top1": None}

    df = run_sweep(_spec(losses=("simple",)), tmp_path, progress=False, train_fn=FakeTrainer(),
                   eval_fn=evaluate)
    assert df.linear_top1.tolist() == [0.125] and math.isnan(df.knn_top1[0])
    assert df.profile.isna().all()


def test_results_written_atomically(tmp_path, monkeypatch):
    run_sweep(_spec(losses=("simple",)), tmp_path, progress=False, train_fn=FakeTrainer(),
              eval_fn=FakeEvaluator())
    before = (tmp_path / "results.csv").read_text()

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        run_sweep(_spec(losses=("simple", "hard_simple")), tmp_path, progress=False,
                  train_fn=FakeTrainer(), eval_fn=FakeEvaluator())
    monkeypatch.undo()
    assert (tmp_path / "results.csv").read_text() == before  # old file intact
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]  # no temp litter


def test_load_results_errors_and_rebuild(tmp_path):
    with pytest.raises(ValueError, match="no sweep folder"):
        load_results(tmp_path / "missing")
    run_sweep(_spec(losses=("simple",)), tmp_path, progress=False, train_fn=FakeTrainer(),
              eval_fn=FakeEvaluator())
    (tmp_path / "results.csv").unlink()
    df = load_results(tmp_path)
    assert df.run.tolist() == ["cifar10-memory_bank-simple-s0"] and df.loss[0] == "simple"


def test_run_sweep_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="SweepSpec"):
        run_sweep({"losses": ["hard"]}, tmp_path)
    with pytest.raises(ValueError, match="workers"):
        run_sweep(_spec(), tmp_path, workers=0)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        run_sweep(_spec(), tmp_path / "file", progress=False, train_fn=FakeTrainer())


def test_data_passed_to_train_and_eval(tmp_path):
    seen = []

    def train(config, out_dir, *, resume=False, progress=True, train_set=None, test_set=None):
        seen.append(("train", config.loss, train_set, test_set))
        out_dir.mkdir(parents=True, exist_ok=True)

    def evaluate(run_dir, *, train_set=None, test_set=None, **kwargs):
        seen.append(("eval", run_dir.name, train_set, test_set))
        return {"linear_top1": 0.5}

    spec = _spec(losses=("simple", "hard_simple"))
    run_sweep(spec, tmp_path, progress=False, train_fn=train, eval_fn=evaluate,
              data={"cifar10": ("tr", "te")})
    assert seen == [("train", "simple", "tr", "te"),
                    ("eval", "cifar10-memory_bank-simple-s0", "tr", "te"),
                    ("train", "hard_simple", "tr", "te"),
                    ("eval", "cifar10-memory_bank-hard_simple-s0", "tr", "te")]
    with pytest.raises(ValueError, match="no entry for dataset 'svhn'"):
        run_sweep(_spec(losses=("hard_simple",), dataset="svhn"), tmp_path / "svhn",
                  progress=False, train_fn=train, eval_fn=evaluate,
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

    base = _base(model="convnet", convnet_widths=(8, 16, 16, 16), embedding_dim=32,
                 image_size=16, batch_size=16, hard_k=8, device="cpu", num_threads=1,
                 probe_epochs=2)
    spec = SweepSpec(base, SweepGrid(losses=("info_nce", "simple"), temperatures=(0.2,)), "test")
    sets = {"cifar10": (make(48, 0), make(24, 1))}
    df = run_sweep(spec, tmp_path, progress=False, data=sets)
    assert list(df.run) == ["cifar10-memory_bank-info_nce-t0.2-s0",
                            "cifar10-memory_bank-simple-s0"]
    for col in ("linear_top1", "knn_top1", "uniformity", "tolerance", "alignment",
                "uniformity_bank", "tolerance_bank", "penalty_entropy", "wall_time_s"):
        assert df[col].notna().all(), col
    assert (df.epochs == 1).all() and (df.profile == "test").all() and (df.seed == 0).all()
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
    base = _base(model="convnet", convnet_widths=(8, 8, 8, 8), embedding_dim=16, image_size=16,
                 batch_size=12, hard_k=4, device="cpu", num_threads=1, data_root=str(root),
                 dataset="imagefolder", probe_epochs=2)
    spec = SweepSpec(base, SweepGrid(losses=("info_nce", "simple"), temperatures=(0.5,)), "test")
    with pytest.raises(ValueError, match="workers > 1 needs the default"):
        run_sweep(spec, tmp_path / "x", progress=False, workers=2, data={})
    parallel = run_sweep(spec, tmp_path / "parallel", progress=False, workers=2)
    sequential = run_sweep(spec, tmp_path / "sequential", progress=False)
    assert list(parallel.run) == list(sequential.run)
    for col in ("linear_top1", "knn_top1", "uniformity", "tolerance", "uniformity_bank"):
        np.testing.assert_allclose(parallel[col], sequential[col], rtol=1e-5, err_msg=col)


def test_a_run_finished_before_new_config_fields_is_still_recognised(tmp_path):
    spec = SweepSpec(_base(epochs=1), SweepGrid(losses=("simple",), temperatures=(),
                                                seeds=(0,)), "smoke")
    name, config = spec.runs()[0]
    run_dir = tmp_path / name
    run_dir.mkdir()
    old = config.to_dict()
    for key in ("temperature_schedule", "compile", "checkpoint_every"):  # fields added later
        old.pop(key, None)
    (run_dir / "config.json").write_text(json.dumps(old))
    ex._check_finished(run_dir, config)  # missing fields count as their defaults
    old["lr"] = 0.5
    (run_dir / "config.json").write_text(json.dumps(old))
    with pytest.raises(ValueError, match="lr"):
        ex._check_finished(run_dir, config)
