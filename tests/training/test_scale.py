"""Paper scale (issue 10): unchanged results, checkpoint_every, a sync-free step, DDP equivalence.

The DDP tests start 2 gloo processes on the CPU (``torch.multiprocessing.spawn``, workers in
``tests/ddp_workers.py``) and compare with one process computing the whole global batch.
"""

from __future__ import annotations

import json
import socket

import ddp_workers
import helpers
import pytest
import torch
import torch.multiprocessing as mp
from helpers import tiny_config
from smoke_digest import smoke_digest

from cl_analysis import registry
from cl_analysis.training import augment, checkpoint
from cl_analysis.training import pretrain as pretrain_module
from cl_analysis.training.checkpoint import load_checkpoint
from cl_analysis.training.config import TrainConfig
from cl_analysis.training.pretrain import pretrain
from cl_analysis.training.trainer import Trainer, simclr_rows

# tests/smoke_digest.py's fingerprints, computed with the code as of commit 4a2fb26 (before this
# change; the command that regenerates them is in that file's docstring).
_MB, _SIM = "memory_bank", "simclr"
REFERENCE = {
    (_MB, "info_nce"): ("0fe6a3d7bc2c4edc8555904e569eec5c069b4313e911830167ab1361292b3517",
                        [11.608431134905134, 8.74525887625558]),
    (_SIM, "info_nce"): ("92a9a40a92770d22a27593679395b709bd0119491972604e586407f5ee64c218",
                         [4.352367401123047, 4.13462511698405]),
    (_MB, "hard"): ("fc696f27b9c693d8558ee276504752a6d312a5097f8aba5d8da66016e453ad50", None),
    (_SIM, "hard"): ("fdd6b16e0daa9f9f7d52b03b77e46879f54674bfade754b6a5f43d80abedcff8", None),
}


@pytest.mark.parametrize("regime,loss", list(REFERENCE))
def test_single_process_results_are_bit_identical_to_before(regime, loss, tmp_path):
    digest, history = smoke_digest(regime, loss, str(tmp_path))
    want, want_history = REFERENCE[(regime, loss)]
    assert digest == want
    if want_history is not None:
        assert history == want_history  # the logged loss too, to the last bit


# ---------------------------------------------------------------- checkpoint_every


def make_data(n=48, **kwargs):
    return helpers.make_data(n, **kwargs)


def tiny(**overrides):
    return tiny_config(**{"epochs": 5, **overrides})


def state_tensors(run_dir):
    state = load_checkpoint(f"{run_dir}/checkpoint.pt")
    out = dict(state["model"])
    if state["bank"] is not None:
        out["bank"] = state["bank"]["bank"]
    return state, out


def test_checkpoint_every_saves_every_k_and_the_last(tmp_path, monkeypatch):
    saved = []
    real = pretrain_module.save_atomic
    monkeypatch.setattr(pretrain_module, "save_atomic",
                        lambda obj, path: (saved.append(obj["epoch"]), real(obj, path))[1])
    pretrain(tiny(checkpoint_every=2), tmp_path / "r", train_set=make_data(), progress=False)
    assert saved == [2, 4, 5]


@pytest.mark.parametrize("regime", ["memory_bank", "simclr"])
def test_killed_run_resumed_equals_uninterrupted_with_same_k(regime, tmp_path, monkeypatch):
    cfg, data = tiny(regime=regime, checkpoint_every=2), make_data()
    pretrain(cfg, tmp_path / "full", train_set=data, progress=False)
    original = Trainer.train_epoch

    def killed(self, epoch, *args, **kwargs):
        if epoch == 3:  # the 4th epoch: epoch 3 was trained but not saved (k = 2)
            raise KeyboardInterrupt
        return original(self, epoch, *args, **kwargs)

    monkeypatch.setattr(Trainer, "train_epoch", killed)
    with pytest.raises(KeyboardInterrupt):
        pretrain(cfg, tmp_path / "resumed", train_set=data, progress=False)
    assert load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")["epoch"] == 2
    lines = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3  # epoch 3 was logged before the kill; the resume rewrites it
    monkeypatch.setattr(Trainer, "train_epoch", original)
    pretrain(cfg, tmp_path / "resumed", train_set=data, resume=True, progress=False)
    (sa, a), (sb, b) = state_tensors(tmp_path / "full"), state_tensors(tmp_path / "resumed")
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert [r["loss"] for r in sa["history"]] == [r["loss"] for r in sb["history"]]
    rows = checkpoint.read_jsonl(tmp_path / "resumed" / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5]


def test_adaptive_checkpoints_keep_saving_under_five_percent():
    clock = pretrain_module._SaveClock(None)
    assert clock.due(1, False, 1.0)  # the first epoch measures the save
    clock.saved(2.0)  # a save takes 2 s: wait for >= 38 s of training (10 s epochs)
    due = []
    for epoch in range(2, 11):
        due.append(clock.due(epoch, False, 10.0))
        if due[-1]:
            clock.saved(2.0)
    assert [e for e, d in zip(range(2, 11), due) if d] == [5, 9]
    assert clock.due(7, True, 0.1)  # the last epoch always saves


def test_resume_of_a_run_saved_before_the_new_fields(tmp_path):
    cfg, data = tiny(epochs=2), make_data()
    pretrain(cfg.replace(epochs=1), tmp_path, train_set=data, progress=False)
    path = tmp_path / "checkpoint.pt"
    state = load_checkpoint(path)
    for key in ("checkpoint_every", "compile", "sync_batchnorm"):
        del state["config"][key]  # as written by the code of 4a2fb26
    checkpoint.save_atomic(state, path)
    out = pretrain(cfg, tmp_path, train_set=data, resume=True, progress=False)
    assert len(out["history"]) == 2
    with pytest.raises(ValueError, match="sync_batchnorm"):
        pretrain(cfg.replace(epochs=3, sync_batchnorm=False), tmp_path, train_set=data,
                 resume=True, progress=False)


# ---------------------------------------------------------------- no host sync in the step

SYNCS = ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__",
         "nonzero")


@pytest.mark.parametrize("regime,loss", [("memory_bank", "info_nce"), ("memory_bank", "hard"),
                                         ("simclr", "info_nce"), ("simclr", "hard")])
def test_the_training_step_makes_no_host_sync(regime, loss, monkeypatch):
    """After the first (validated) step, a step and its monitor read no tensor value back.

    Patches every Tensor method that makes the host wait for a GPU (value reads, ``bool``,
    device-to-host copies, ``nonzero``) to count its calls; the augmentation runs its device
    path (per-sample masks) as on a GPU. On CUDA the same is measured with
    ``torch.cuda.set_sync_debug_mode`` by scripts/gpu_check.sh.
    """
    trainer = Trainer(tiny(regime=regime, loss=loss), make_data(), torch.device("cpu"))
    trainer.augment.jitter_mode = "mask"
    trainer.train_epoch(0, progress=False)  # the first step validates its inputs
    counts = {name: 0 for name in SYNCS}
    for name in SYNCS:
        real = getattr(torch.Tensor, name)

        def counted(self, *args, _real=real, _name=name, **kwargs):
            counts[_name] += 1
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    batches = trainer._batches(torch.randperm(48, generator=trainer.generator))
    monkeypatch.setattr(Trainer, "_batches", lambda self, perm: batches)
    original_step = Trainer.train_step
    in_step = {name: 0 for name in SYNCS}

    def step(self, idx, lr):
        before = dict(counts)
        out = original_step(self, idx, lr)
        for name in SYNCS:
            in_step[name] += counts[name] - before[name]
        return out

    monkeypatch.setattr(Trainer, "train_step", step)
    counts_before = dict(counts)
    trainer.train_epoch(1, progress=False)
    assert in_step == {name: 0 for name in SYNCS}
    per_epoch = {k: counts[k] - counts_before[k] for k in SYNCS if counts[k] > counts_before[k]}
    assert per_epoch == {"tolist": 1}  # the epoch's single read-back of its sums


def test_value_checks_still_run_on_the_first_step():
    trainer = Trainer(tiny(), make_data(), torch.device("cpu"))
    trainer.bank.bank.fill_(float("nan"))
    with pytest.raises(ValueError, match="finite"):
        trainer.train_epoch(0, progress=False)


def test_a_nan_loss_later_in_the_epoch_is_reported(monkeypatch):
    trainer = Trainer(tiny(), make_data(), torch.device("cpu"))
    trainer.train_epoch(0, progress=False)
    trainer.bank.bank.fill_(float("nan"))
    with pytest.raises(ValueError, match="NaN or inf in epoch 2"):
        trainer.train_epoch(1, progress=False)


def test_masked_jitter_equals_index_jitter():
    aug = augment.SimCLRAugment(16)
    x = torch.randint(0, 256, (64, 3, 20, 20), dtype=torch.uint8)
    params = aug.sample_params(64, 20, 20, torch.Generator().manual_seed(3))
    aug.jitter_mode = "index"
    a = aug.apply(x, params)
    aug.jitter_mode = "mask"
    b = aug.apply(x, params)
    assert torch.allclose(a, b, atol=1e-6, rtol=0)
    aug.jitter_mode = "bogus"
    with pytest.raises(ValueError, match="jitter_mode"):
        aug.apply(x, params)


def test_params_to_is_one_copy_that_round_trips():
    aug = augment.PaperAugment(16)
    params = aug.sample_params(8, 20, 20, torch.Generator().manual_seed(0))
    moved = augment.params_to(params, torch.device("meta"))  # one packed copy to a device
    assert {k: (v.dtype, v.shape) for k, v in moved.items()} == \
        {k: (v.dtype, v.shape) for k, v in params.items()}
    packed = torch.cat([v.reshape(8, -1).double() for v in params.values()], dim=1)
    for k, v in params.items():  # every value is exact in float64
        assert torch.equal(v.double().to(v.dtype), v)
    assert packed.shape[0] == 8


# ---------------------------------------------------------------- DDP (2 gloo processes)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(task: str, out, **kwargs) -> list[dict]:
    mp.spawn(ddp_workers.run, args=(2, _port(), task, str(out), kwargs), nprocs=2, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)
            if (out / f"rank{r}.pt").exists()]


@pytest.mark.parametrize("batch,loss", [(6, "info_nce"), (5, "hard")])
def test_ddp_simclr_loss_and_embedding_gradients_equal_one_process(batch, loss, tmp_path):
    """Float64, rank-asymmetric inputs (B = 6: equal slices; B = 5: 3 + 2 images)."""
    ranks = spawn("simclr_loss_grad", tmp_path, batch=batch, dim=5, loss=loss)
    u = ddp_workers._embeddings(batch, 5).requires_grad_(True)
    kw = dict(temperature=0.2, k=3 if loss == "hard" else None)
    reference = registry.compute(loss, *simclr_rows(u, batch), **kw)
    reference.backward()
    sizes = [batch - batch // 2, batch // 2]
    starts = [0, sizes[0]]
    for r, res in enumerate(ranks):
        mine = torch.cat([u.grad[:batch][starts[r]:starts[r] + sizes[r]],
                          u.grad[batch:][starts[r]:starts[r] + sizes[r]]])  # (2 n_r, D)
        assert res["rows"] == (2 * sizes[r], 2 * batch - 1)
        assert abs(float(res["loss_mean"]) - float(reference.detach())) < 1e-10
        assert (res["grad"] - mine).abs().max() < 1e-10
        if sizes[0] != sizes[1]:
            continue
        # the peers' bugs are far off on the same inputs: the test tells them apart
        assert (res["grad_local_backward_bug"] - mine).abs().max() > 1e-3
        assert abs(float(res["loss_offset_bug"]) - float(reference.detach())) > 1e-3


def _train_config(regime: str, batch: int) -> TrainConfig:
    return tiny(regime=regime, batch_size=batch, epochs=1, hard_k=None,
                loss="hard" if regime == "memory_bank" else "info_nce", hard_fraction=0.25)


@pytest.mark.parametrize("regime,batch", [("memory_bank", 16), ("memory_bank", 15),
                                          ("simclr", 16)])
def test_ddp_three_steps_equal_one_process(regime, batch, tmp_path):
    """2 processes with global batch B == 1 process with batch B: weights, BN stats, bank."""
    cfg = _train_config(regime, batch)
    data = make_data(n=3 * batch)
    ranks = spawn("train_steps", tmp_path, config=cfg.to_dict(),
                  data={"images": data.images, "labels": data.labels})
    single = Trainer(cfg, data, torch.device("cpu"))
    row = single.train_epoch(0, progress=False)
    want = single.model.state_dict()
    for res in ranks:
        for key, value in want.items():
            diff = (res["model"][key].double() - value.double()).abs().max()
            assert diff < 1e-5, (key, float(diff))
        if regime == "memory_bank":
            assert (res["bank"] - single.bank.bank).abs().max() < 1e-5
        assert abs(res["row"]["loss"] - row["loss"]) < 1e-5
        assert abs(res["row"]["penalty_entropy"] - row["penalty_entropy"]) < 1e-4
        # the weighting lens: sums over every rank's anchors, as one process
        assert abs(res["row"]["positive_probability"] - row["positive_probability"]) < 1e-6
        assert res["row"]["positive_probability_hist"] == pytest.approx(
            row["positive_probability_hist"], abs=1e-9)
        assert abs(res["row"]["anchor_log_weight_std_flat_nce"]
                   - row["anchor_log_weight_std_flat_nce"]) < 1e-5
    start = Trainer(cfg, data, torch.device("cpu")).model.state_dict()
    assert max((want[k].double() - start[k].double()).abs().max() for k in want) > 1e-3


def test_ddp_killed_and_resumed_equals_uninterrupted(tmp_path):
    cfg = tiny(regime="simclr", epochs=4, checkpoint_every=2, knn_every=2)
    data = make_data(n=32)
    spawn("pretrain_resume", tmp_path, config=cfg.to_dict(),
          data={"images": data.images, "labels": data.labels}, kill_epoch=3)
    (sa, a), (_, b) = state_tensors(tmp_path / "full"), state_tensors(tmp_path / "resumed")
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert sa["world_size"] == 2 and len(sa["rng_ranks"]) == 2
    env = json.loads((tmp_path / "full" / "environment.json").read_text())
    assert env["world_size"] == 2 and env["backend"] == "gloo"
    rows = checkpoint.read_jsonl(tmp_path / "resumed" / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]  # rank 0 alone wrote them
    assert rows[0]["penalty_entropy"] is None and rows[1]["penalty_entropy"] is not None


# ---------------------------------------------------------------- sweep --workers --devices


def test_assign_devices_round_robin():
    from cl_analysis.study.sweep import assign_devices

    assert assign_devices(4, ["0,1"]) == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    assert assign_devices(3, [0, "cuda:2"]) == ["cuda:0", "cuda:2", "cuda:0"]
    assert assign_devices(2, ["cpu"]) == ["cpu", "cpu"]  # two runs share one device
    assert assign_devices(2, None) == [None, None]
    with pytest.raises(ValueError, match="devices"):
        assign_devices(2, ["gpu0"])


def test_each_worker_trains_on_its_device_and_records_it(monkeypatch):
    import queue

    from cl_analysis.study import sweep

    seen = []
    monkeypatch.setattr(sweep, "_train_and_evaluate",
                        lambda name, config, *a: seen.append((name, config.device)))
    slots = queue.Queue()
    for slot in sweep.assign_devices(2, ["cpu"]):
        slots.put(slot)
    monkeypatch.setattr(sweep, "_WORKER_DEVICE", None)
    sweep._init_worker(slots)  # as the pool's initializer does in each worker process
    spec = sweep.SweepSpec(tiny(device="auto"), sweep.SweepGrid(losses=("info_nce",),
                                                                temperatures=(0.2,)), "smoke")
    sweep._run_one_in_worker("r", tiny(device="auto").to_dict(), "/tmp/unused", spec.to_dict())
    assert seen == [("r", "cpu")] and slots.qsize() == 1


def test_sweep_records_the_device_of_each_run(tmp_path):
    from cl_analysis.study import sweep

    spec = sweep.SweepSpec(tiny(epochs=1, linear_probe=False),
                           sweep.SweepGrid(losses=("info_nce",), temperatures=(0.2,)), "smoke")
    data = {"cifar10": (make_data(), make_data(16, seed=1))}
    sweep.run_sweep(spec, tmp_path, progress=False, data=data, devices=["cpu"])
    (meta,) = [json.loads(p.read_text()) for p in tmp_path.glob("*/sweep_run.json")]
    assert meta["device"] == "cpu"


def test_sweep_cli_takes_devices():
    from cl_analysis.cli import parse

    args = parse("sweep", ["--profile", "smoke", "--out", "x", "--devices", "0,1"])
    assert args.devices == ("0,1",)


# ---------------------------------------------------------------- CUDA (scripts/gpu_check.sh)


@pytest.mark.cuda
@pytest.mark.parametrize("regime,loss", [("memory_bank", "info_nce"), ("memory_bank", "hard"),
                                         ("simclr", "info_nce")])
def test_cuda_step_makes_no_host_sync(regime, loss):
    """After the first (validated) step, an epoch's steps raise under sync_debug_mode 'error'."""
    from cl_analysis._checks import value_checks

    device = torch.device("cuda")
    trainer = Trainer(tiny(regime=regime, loss=loss, device="cuda"), make_data(), device)
    trainer.train_epoch(0, progress=False)
    batches = trainer._batches(torch.randperm(48, generator=trainer.generator))
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        with value_checks(False):
            for idx in batches:
                trainer.train_step(idx, 0.03)
    finally:
        torch.cuda.set_sync_debug_mode(0)


@pytest.mark.cuda
def test_cuda_views_equal_cpu_views():
    """Same parameters (CPU generator), same images on CUDA (masked jitter, one packed copy)."""
    aug = augment.SimCLRAugment(16)
    x = torch.randint(0, 256, (64, 3, 20, 20), dtype=torch.uint8)
    params = aug.sample_params(64, 20, 20, torch.Generator().manual_seed(3))
    cpu = aug.apply(x, params)
    gpu = aug.to("cuda").apply(x.cuda(), params)
    assert (gpu.cpu() - cpu).abs().max() < 2e-3  # TF32 resampling on CUDA


@pytest.mark.cuda
def test_cuda_run_resumes_and_matches_the_cpu_loss_scale(tmp_path):
    cfg = tiny(device="cuda", epochs=2, checkpoint_every=1)
    out = pretrain(cfg, tmp_path, train_set=make_data(), progress=False)
    assert [r["epoch"] for r in out["history"]] == [1, 2]
    env = json.loads((tmp_path / "environment.json").read_text())
    assert env["device_type"] == "cuda" and env["world_size"] == 1


def test_gpu_check_script_runs_on_cpu(tmp_path):
    """scripts/gpu_check.sh in CPU mode (smoke profile): kept alive by the CPU test suite."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    if torch.cuda.is_available():
        pytest.skip("on a GPU machine the script runs the paper profile: run it directly")
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "OUT": str(tmp_path), "PY": sys.executable}
    env.pop("CL_DATA_ROOT", None)
    done = subprocess.run(["bash", str(root / "scripts" / "gpu_check.sh")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    summary = json.loads((tmp_path / "train.json").read_text())
    assert summary["history_epochs"] == [1, 2, 3, 4] and summary["crashed_in_epoch"] == 3
    bench = json.loads((tmp_path / "bench.json").read_text())
    assert bench["rows"][0]["syncs_per_step"] == 0
