"""Runs and sweeps as objects (cl_analysis.study.runs): load_run, load_sweep, train_sweep, and
where a run ran (environment.json) checked on resume."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from cl_analysis.evaluation.evaluate import evaluate_run
from cl_analysis.study.runs import load_run, load_sweep, train_sweep
from cl_analysis.training import data
from cl_analysis.training.config import TrainConfig
from cl_analysis.training.environment import ENVIRONMENT_FILE, check_resume_environment
from cl_analysis.training.pretrain import pretrain


def _tiny(**overrides) -> TrainConfig:
    return TrainConfig(**{**dict(model="convnet", convnet_widths=(8, 8, 8, 8), embedding_dim=16,
                                 image_size=16, batch_size=20, epochs=1, lr_milestones=(),
                                 hard_k=4, device="cpu", num_threads=1, probe_epochs=2,
                                 seed=1), **overrides})


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    """A trained and evaluated run on class-sorted synthetic images (5 classes)."""
    train = data.synthetic_dataset(12, num_classes=5, split="train")
    test = data.synthetic_dataset(10, num_classes=5, split="test")
    out = tmp_path_factory.mktemp("runs") / "run"
    pretrain(_tiny(), out, train_set=train, test_set=test, progress=False)
    evaluate_run(out, train_set=train, test_set=test, progress=False)
    return out, test


def test_load_run_gives_config_history_evaluation_environment(synthetic_run):
    path, test = synthetic_run
    run = load_run(path)
    assert run.config == _tiny() and run.name == "run" and run.path == path
    assert [row["epoch"] for row in run.history] == [1]
    assert run.evaluation["pretrain_epochs"] == 1 and run.evaluation["linear_epochs"] == 2
    assert run.environment["device_type"] == "cpu" and run.environment["num_threads"] == 1
    assert run.environment["torch"] == torch.__version__
    assert run.class_names == list(test.classes)
    model = run.model()
    assert not model.training
    with torch.no_grad():
        z = model(torch.rand(2, 3, 16, 16))
    assert z.shape == (2, 16)


def test_test_embeddings_are_in_dataset_order_and_subsample_every_class(synthetic_run):
    path, test = synthetic_run
    run = load_run(path)
    z, labels = run.test_embeddings()
    assert z.shape == (50, 16) and z.dtype == torch.float32
    assert labels.equal(test.labels)  # dataset order (class-sorted here)
    assert labels[:10].unique().tolist() == [0]  # so a prefix would hold one class
    z20, y20 = run.test_embeddings(20, seed=0)
    assert z20.shape == (20, 16) and set(y20.tolist()) == set(range(5))  # every class
    assert not y20.equal(labels[:20])  # not a prefix
    again = run.test_embeddings(20, seed=0)
    assert again[0].equal(z20) and again[1].equal(y20)  # seeded
    assert not run.test_embeddings(20, seed=1)[1].equal(y20)
    assert run.test_embeddings(500)[1].equal(labels)  # n >= rows: all rows


def test_load_run_errors(tmp_path, synthetic_run):
    with pytest.raises(ValueError, match="not a run directory"):
        load_run(tmp_path)
    path, _ = synthetic_run
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(path / "config.json", bare / "config.json")
    run = load_run(bare)
    assert run.history == [] and run.evaluation is None and run.environment is None
    with pytest.raises(ValueError, match="evaluate it first"):
        run.test_embeddings()


def _tree(root, per_class=8, classes=3):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for k in range(classes):
            folder = root / split / f"c{k}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                arr = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
                Image.fromarray(arr).save(folder / f"{i}.png")
    return root


def test_a_moved_run_evaluates_with_a_new_data_root(tmp_path):
    old = _tree(tmp_path / "old")
    config = _tiny(dataset="imagefolder", data_root=str(old), batch_size=8)
    pretrain(config, tmp_path / "run", progress=False)
    new = tmp_path / "new"
    shutil.move(old, new)  # the recorded data_root no longer exists
    moved = tmp_path / "elsewhere" / "run"
    shutil.copytree(tmp_path / "run", moved)
    with pytest.raises((ValueError, FileNotFoundError), match="old"):
        evaluate_run(moved, progress=False, linear=False)
    out = evaluate_run(moved, data_root=str(new), progress=False, linear=False)
    assert out["n_train"] == 24 and out["n_test"] == 24 and out["class_names"] == ["c0", "c1", "c2"]
    run = load_run(moved)
    assert run.evaluation["knn_top1"] == out["knn_top1"]
    assert run.config.data_root == str(old)  # location only: the recorded config is unchanged


# --------------------------------------------------------------------------- resume refusals
def test_resume_refuses_another_thread_count_on_cpu(tmp_path):
    train = data.synthetic_dataset(8, num_classes=3, split="train")
    pretrain(_tiny(num_threads=1), tmp_path, train_set=train, progress=False)
    env = json.loads((tmp_path / ENVIRONMENT_FILE).read_text())
    assert (env["device_type"], env["num_threads"]) == ("cpu", 1)
    with pytest.raises(ValueError, match=r"num_threads=1 .* resume with 2.*--num-threads 1"):
        pretrain(_tiny(num_threads=2, epochs=2), tmp_path, train_set=train, resume=True,
                 progress=False)
    assert len(load_run(tmp_path).history) == 1  # nothing trained
    pretrain(_tiny(num_threads=1, epochs=2), tmp_path, train_set=train, resume=True,
             progress=False)
    assert len(load_run(tmp_path).history) == 2


def test_resume_refuses_another_device_type(tmp_path):
    train = data.synthetic_dataset(8, num_classes=3, split="train")
    pretrain(_tiny(), tmp_path, train_set=train, progress=False)
    env_path = tmp_path / ENVIRONMENT_FILE
    env = json.loads(env_path.read_text())
    env_path.write_text(json.dumps({**env, "device": "cuda:0", "device_type": "cuda"}))
    with pytest.raises(ValueError, match=r"ran on cuda and would resume on cpu: device must "
                                         r"match"):
        pretrain(_tiny(epochs=2), tmp_path, train_set=train, resume=True, progress=False)


def test_check_resume_environment_directly(tmp_path):
    check_resume_environment(tmp_path, {"device_type": "cpu", "num_threads": 4})  # no record
    (tmp_path / ENVIRONMENT_FILE).write_text(json.dumps({"device_type": "cuda",
                                                         "num_threads": 8}))
    with pytest.raises(ValueError, match="device"):
        check_resume_environment(tmp_path, {"device_type": "cpu", "num_threads": 8})
    # on CUDA the CPU thread count does not matter
    check_resume_environment(tmp_path, {"device_type": "cuda", "num_threads": 2})
    (tmp_path / ENVIRONMENT_FILE).write_text(json.dumps({"device_type": "cpu",
                                                         "num_threads": 2}))
    with pytest.raises(ValueError, match="num_threads"):
        check_resume_environment(tmp_path, {"device_type": "cpu", "num_threads": 1})


# --------------------------------------------------------------------------- sweeps
def test_load_sweep_never_trains_and_names_what_is_missing(tmp_path):
    with pytest.raises(ValueError, match="no sweep.json"):
        load_sweep(tmp_path)
    with pytest.raises(ValueError, match="needs data"):
        train_sweep(tmp_path, profile="quick")


def test_fast_mode_trains_the_smoke_sweep_on_synthetic_images_then_loads_it(tmp_path):
    sweep = train_sweep(tmp_path / "runs", profile="smoke")
    assert sweep.spec.profile == "smoke" and sweep.config.data_root is None
    assert len(sweep.results) == len(sweep.names) == 6
    assert list(sweep.results["run"]) == sweep.names
    assert sweep.results["uniformity"].notna().all()
    assert "synthetic" in sweep.describe() and "6 of 6 runs" in sweep.describe()
    assert sweep.run(sweep.names[0]).evaluation is not None
    assert (tmp_path / "runs" / "density" / "sweep.json").is_file()
    # second call: every run is finished, so nothing trains and the table is the same
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("checkpoint.pt")}
    again = train_sweep(tmp_path / "runs", profile="smoke")
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert again.results.equals(sweep.results)
    assert load_sweep(tmp_path / "runs").results.equals(sweep.results)
    # a run of the spec missing: load_sweep names it and the way to train it
    shutil.rmtree(tmp_path / "runs" / sweep.names[-1])
    (tmp_path / "runs" / "results.csv").unlink()
    with pytest.raises(ValueError, match=r"1 run\(s\) .* not finished.*TRAIN_IF_MISSING"):
        load_sweep(tmp_path / "runs")


def test_history_table_holds_every_monitored_epoch_and_names_missing_keys(tmp_path):
    import json

    import pandas as pd

    from cl_analysis.study.profiles import SweepGrid, get_profile
    from cl_analysis.study.runs import load_sweep
    from cl_analysis.study.sweep import SweepSpec, run_sweep
    from cl_analysis.training import data

    sets = {"cifar10": (data.synthetic_dataset(10, split="train", seed=0),
                        data.synthetic_dataset(10, split="test", seed=0))}
    base = get_profile("smoke").run.replace(epochs=2, subset=40, linear_probe=False,
                                            eval_test_size=None)
    spec = SweepSpec(base, SweepGrid(losses=("info_nce", "simple"), temperatures=(0.1,),
                                     seeds=(0,)), "smoke")
    run_sweep(spec, tmp_path, data=sets, progress=False)
    sweep = load_sweep(tmp_path)
    table = sweep.history_table(["positive_probability", "penalty_entropy"])
    assert list(table["epoch"]) == [1, 2, 1, 2]  # knn_every=1: every epoch monitored
    assert table["temperature"].iloc[:2].tolist() == [0.1, 0.1]
    assert table["temperature"].iloc[2:].isna().all()  # the simple loss takes no τ
    run = sweep.run(table["run"].iloc[0])
    assert table["positive_probability"].iloc[1] == run.history[1]["positive_probability"]
    assert isinstance(table, pd.DataFrame)
    # a run whose history lacks a key (an older version) is named with the key
    path = tmp_path / table["run"].iloc[0] / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps({k: v for k, v in r.items()
                                        if k != "positive_probability"}) + "\n" for r in rows))
    with pytest.raises(ValueError, match=r"has the key\(s\) \['positive_probability'\]; its "
                                         r"metrics.jsonl has \[.*'penalty_entropy'"):
        sweep.history_table(["positive_probability"])
    with pytest.raises(ValueError, match="a typo"):
        sweep.history_table(["positive_probabilty"])
    with pytest.raises(ValueError, match="non-empty list"):
        sweep.history_table("penalty_entropy")
    # keys that name a run column come out renamed, the run's own columns intact
    logged = sweep.history_table(["loss", "temperature"])
    assert list(logged.columns[-2:]) == ["logged_loss", "logged_temperature"]
    assert set(logged["loss"]) == {"info_nce", "simple"}
    assert logged["logged_loss"].iloc[0] == run.history[0]["loss"]
