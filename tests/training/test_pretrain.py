import json
import math
import os
import subprocess
import sys
import textwrap
import time

import pytest
import torch
import torch.nn.functional as F
from helpers import make_data, tiny_config

from cl_analysis import registry
from cl_analysis.registry import LOSS_NAMES
from cl_analysis.training import checkpoint, schedules
from cl_analysis.training.checkpoint import check_compatible, load_checkpoint, save_atomic
from cl_analysis.training.config import RESUME_FREE_FIELDS, TrainConfig
from cl_analysis.training.pretrain import pretrain
from cl_analysis.training.trainer import Trainer, compute_loss

METRIC_KEYS = {"epoch", "loss", "lr", "time_s", "knn_accuracy", "uniformity", "tolerance",
               "penalty_entropy", "positive_similarity"}


tiny = tiny_config


TRAIN, TEST = make_data(), make_data(32, seed=1)


def weights(run_dir):
    state = load_checkpoint(os.path.join(run_dir, "checkpoint.pt"))
    return state["model"], state["bank"], state["optimizer"]


def assert_identical(a, b):
    (ma, ba, oa), (mb, bb, ob) = weights(a), weights(b)
    assert ma.keys() == mb.keys()
    for key in ma:
        assert torch.equal(ma[key], mb[key]), key
    assert torch.equal(ba["bank"], bb["bank"])
    for key, st in oa["state"].items():
        assert torch.equal(st["momentum_buffer"], ob["state"][key]["momentum_buffer"])


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """An uninterrupted 3-epoch memory-bank run, the reference for the resume tests."""
    out = tmp_path_factory.mktemp("full")
    result = pretrain(tiny(), out, train_set=TRAIN, test_set=TEST, progress=False)
    return out, result


# --- config -----------------------------------------------------------------------------------

def test_config_defaults_are_the_paper():
    c = TrainConfig()
    assert (c.model, c.head, c.regime, c.loss, c.temperature) == (
        "resnet18", "linear", "memory_bank", "info_nce", 0.07)
    assert (c.epochs, c.batch_size, c.lr, c.lr_milestones, c.bank_momentum) == (
        200, 128, 0.03, (160, 190), 0.5)
    # K of Eq. 9 comes from the paper's fraction: 4095 of the 50,000-entry bank
    assert (c.hard_k, c.hard_fraction) == (None, None)
    assert c.hard_k_for(50000) == registry.hard_k(50000) == 4095


def test_config_round_trip(full_run):
    out, _ = full_run
    saved = json.loads((out / "config.json").read_text())
    assert TrainConfig.from_dict(saved) == tiny()
    assert TrainConfig.from_dict(json.loads(json.dumps(tiny().to_dict()))) == tiny()
    with pytest.raises(ValueError, match=r"unknown config key\(s\) \['bogus'\]"):
        TrainConfig.from_dict({"lr": 0.1, "bogus": 1})


@pytest.mark.parametrize("kwargs, match", [
    (dict(loss="triplet"), "loss.*info_nce, hard, simple, hard_simple, tau_zero_limit.*triplet"),
    (dict(regime="moco"), "regime.*memory_bank, simclr.*moco"),
    (dict(model="vgg"), "model.*resnet18, convnet.*vgg"),
    (dict(augment="autoaug"), "augment.*paper, simclr.*autoaug"),
    (dict(schedule="poly"), "schedule.*step, cosine.*poly"),
    (dict(temperature=0.0), "temperature"),
    (dict(loss="nt_xent"), "needs regime='simclr'"),
    (dict(hard_fraction=1.5), "hard_fraction"),
])
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


# --- every loss in every regime ---------------------------------------------------------------

@pytest.mark.parametrize("regime, loss", [(r, loss) for r in ("memory_bank", "simclr")
                                           for loss in LOSS_NAMES] + [("simclr", "nt_xent")])
def test_each_loss_runs_in_each_regime(tmp_path, regime, loss):
    cfg = tiny(regime=regime, loss=loss, epochs=1, temperature=0.2,
               augment="simclr" if regime == "simclr" else "paper")
    hist = pretrain(cfg, tmp_path, train_set=TRAIN, test_set=TEST, progress=False)["history"]
    row = hist[0]
    assert math.isfinite(row["loss"]) and 0 <= row["knn_accuracy"] <= 1
    assert math.isfinite(row["uniformity"]) and math.isfinite(row["tolerance"])


def test_nt_xent_alias_equals_info_nce():
    z1, z2 = F.normalize(torch.randn(8, 16), dim=1), F.normalize(torch.randn(8, 16), dim=1)
    from cl_analysis import losses
    sim, pos = losses.simclr_similarity(z1, z2)
    a = compute_loss(tiny(regime="simclr", loss="nt_xent", temperature=0.5), sim, pos)
    torch.testing.assert_close(a, losses.nt_xent(z1, z2, 0.5))


def test_hard_k_checked_and_fraction(tmp_path):
    with pytest.raises(ValueError, match="hard_k=4095 exceeds the 63 negatives"):
        pretrain(tiny(loss="hard", hard_k=4095, epochs=1), tmp_path, train_set=TRAIN,
                 progress=False)
    hist = pretrain(tiny(loss="hard", hard_k=None, hard_fraction=0.0819, epochs=1),
                    tmp_path / "frac", train_set=TRAIN, progress=False)["history"]
    assert math.isfinite(hist[0]["loss"])


# --- the memory-bank step ---------------------------------------------------------------------

def test_bank_update_follows_the_formula():
    trainer = Trainer(tiny(), TRAIN, torch.device("cpu"))
    idx = torch.tensor([3, 9, 20, 41])
    old = trainer.bank.bank.clone()
    loss, sim, pos, z = trainer.train_step(idx, lr=0.03)
    # the loss saw the bank before the update
    torch.testing.assert_close(sim, z @ old.T)
    assert torch.equal(pos, idx)
    torch.testing.assert_close(trainer.bank.bank[idx], F.normalize(0.5 * old[idx] + 0.5 * z, dim=1))
    untouched = torch.ones(len(TRAIN), dtype=torch.bool)
    untouched[idx] = False
    assert torch.equal(trainer.bank.bank[untouched], old[untouched])


def test_loss_decreases_on_a_fixed_batch():
    trainer = Trainer(tiny(lr=0.05), TRAIN, torch.device("cpu"))
    idx = torch.arange(16)
    found = []
    for _ in range(25):
        trainer.generator.manual_seed(0)  # the same views every step
        found.append(trainer.train_step(idx, lr=0.05)[0].item())
    assert found[-1] < found[0] - 0.5, found


def test_bank_init_from_features():
    trainer = Trainer(tiny(bank_init="features"), TRAIN, torch.device("cpu"))
    trainer.init_bank_from_features()
    torch.testing.assert_close(trainer.bank.bank, trainer.embed(TRAIN.images))
    torch.testing.assert_close(trainer.bank.bank.norm(dim=1), torch.ones(len(TRAIN)))


# --- outputs ----------------------------------------------------------------------------------

def test_metrics_jsonl_one_line_per_epoch(full_run):
    out, result = full_run
    lines = (out / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for r in rows:
        assert METRIC_KEYS <= set(r)
        assert all(r[k] is not None and math.isfinite(r[k]) for k in METRIC_KEYS)
    assert rows == json.loads(json.dumps(result["history"]))
    assert set(result) >= {"history", "checkpoint", "config", "metrics"}


def test_knn_every_skips_monitoring(tmp_path):
    hist = pretrain(tiny(knn_every=2), tmp_path, train_set=TRAIN, test_set=TEST,
                    progress=False)["history"]
    assert [r["knn_accuracy"] is None for r in hist] == [True, False, False]  # 2 and the last


def test_loads_data_from_data_root(tmp_path, monkeypatch):
    from PIL import Image
    monkeypatch.setenv("CL_CACHE_DIR", str(tmp_path / "cache"))
    g = torch.Generator().manual_seed(0)
    for split, n in (("train", 12), ("test", 4)):
        for cls in ("a", "b"):
            folder = tmp_path / "data" / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                px = torch.randint(0, 256, (32, 32, 3), generator=g, dtype=torch.uint8)
                Image.fromarray(px.numpy()).save(folder / f"{i}.png")
    cfg = tiny(dataset="imagefolder", data_root=str(tmp_path / "data"), subset=16,
               batch_size=8, epochs=1, monitor_size=6)
    row = pretrain(cfg, tmp_path / "run", progress=False)["history"][0]
    assert math.isfinite(row["loss"]) and row["knn_accuracy"] is not None
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert state["bank"]["bank"].shape == (16, 32)  # the subset, not the 24 images


# --- resume -----------------------------------------------------------------------------------

def test_resume_is_bit_identical(full_run, tmp_path):
    out, result = full_run
    pretrain(tiny(epochs=1), tmp_path, train_set=TRAIN, test_set=TEST, progress=False)
    resumed = pretrain(tiny(), tmp_path, train_set=TRAIN, test_set=TEST, resume=True,
                       progress=False)
    assert_identical(out, tmp_path)
    assert [r["loss"] for r in resumed["history"]] == [r["loss"] for r in result["history"]]
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 3


CHILD = textwrap.dedent("""
    import os, sys
    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook
    from cl_analysis.training.data import ImageDataset
    from cl_analysis.training.config import TrainConfig
    from cl_analysis.training.pretrain import pretrain

    saved = torch.load(sys.argv[1])
    ds = ImageDataset(saved["images"], saved["labels"], saved["classes"], "synthetic", "train", "")
    steps = [0]

    def die_mid_epoch(optimizer, args, kwargs):
        steps[0] += 1
        if steps[0] == int(sys.argv[3]):
            os._exit(17)  # no cleanup, like a SIGKILL

    register_optimizer_step_post_hook(die_mid_epoch)
    pretrain(TrainConfig.from_dict(saved["config"]), sys.argv[2], train_set=ds, progress=False)
""")


def test_killed_mid_epoch_then_resumed_is_identical(full_run, tmp_path):
    out, _ = full_run
    payload = tmp_path / "data.pt"
    torch.save({"images": TRAIN.images, "labels": TRAIN.labels, "classes": TRAIN.classes,
                "config": tiny().to_dict()}, payload)
    run_dir = tmp_path / "run"
    # 4 steps per epoch: die at the 3rd step of the 2nd epoch
    proc = subprocess.run([sys.executable, "-c", CHILD, str(payload), str(run_dir), "7"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 17, proc.stderr
    assert load_checkpoint(run_dir / "checkpoint.pt")["epoch"] == 1
    pretrain(tiny(), run_dir, train_set=TRAIN, test_set=TEST, resume=True, progress=False)
    assert_identical(out, run_dir)


def test_resume_with_other_lr_is_refused(tmp_path):
    pretrain(tiny(epochs=1), tmp_path, train_set=TRAIN, progress=False)
    msg = (r"refusing to resume run in .*: its config differs in \{lr: 0\.03 → 0\.1\}; "
           r"use a new --out or the same options")
    with pytest.raises(ValueError, match=msg):
        pretrain(tiny(lr=0.1), tmp_path, train_set=TRAIN, resume=True, progress=False)
    with pytest.raises(ValueError, match="already has a checkpoint; pass --resume"):
        pretrain(tiny(epochs=1), tmp_path, train_set=TRAIN, progress=False)


def test_finished_run_returns_immediately(full_run):
    out, result = full_run
    before = os.stat(out / "checkpoint.pt").st_mtime_ns
    t0 = time.perf_counter()
    again = pretrain(tiny(device="auto"), out, train_set=TRAIN, resume=True, progress=False)
    assert time.perf_counter() - t0 < 2.0
    assert again["history"] == result["history"]
    assert os.stat(out / "checkpoint.pt").st_mtime_ns == before


# --- checkpoint -------------------------------------------------------------------------------

def test_save_atomic_failure_keeps_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_atomic({"epoch": 1, "w": torch.ones(3)}, path)

    def broken_save(obj, f):
        f.write(b"partial garbage")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_atomic({"epoch": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    state = load_checkpoint(path)
    assert state["epoch"] == 1 and torch.equal(state["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]  # no temp left


def test_check_compatible():
    old = tiny().to_dict()
    # allowed to differ on resume
    check_compatible(old, tiny(epochs=50, device="auto").to_dict(), ignore=RESUME_FREE_FIELDS)
    check_compatible(old, {**old, "convnet_widths": (8, 16, 16, 16)})  # tuple == list
    with pytest.raises(ValueError, match=r"\{epochs: 3 → 50\}"):
        check_compatible(old, tiny(epochs=50).to_dict())  # nothing ignored unless asked
    with pytest.raises(ValueError, match=r"\{loss: 'info_nce' → 'simple', "
                                         r"temperature: 0\.07 → 0\.2\}"):
        check_compatible(old, tiny(loss="simple", temperature=0.2).to_dict(), run_dir="runs/x")


# --- schedules --------------------------------------------------------------------------------

def test_step_schedule_at_milestones():
    lr = [schedules.step_lr(e) for e in (0, 159, 160, 189, 190, 199)]
    assert lr == pytest.approx([0.03, 0.03, 0.003, 0.003, 0.0003, 0.0003])


def test_warmup_and_cosine():
    kw = dict(base_lr=1.0, total_epochs=10, warmup_epochs=2)
    ramp = [schedules.warmup_cosine_lr(e, s, 5, **kw) for e in range(2) for s in range(5)]
    assert ramp == pytest.approx([k / 10 for k in range(1, 11)])
    assert schedules.warmup_cosine_lr(2, 0, 5, **kw) == pytest.approx(1.0)
    assert schedules.warmup_cosine_lr(6, 0, 5, **kw) == pytest.approx(0.5)  # halfway
    last = schedules.warmup_cosine_lr(9, 4, 5, **kw)
    assert 0 < last < 0.01  # the last step is just above 0; lr reaches 0 at the end
    lrs = [schedules.warmup_cosine_lr(e, s, 5, **kw) for e in range(2, 10) for s in range(5)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))  # monotone decay
    assert schedules.lr_at("step", 170, 3, 10, base_lr=0.03, total_epochs=200) == \
        pytest.approx(0.003)
    with pytest.raises(ValueError, match="schedule.*step, cosine.*poly"):
        schedules.lr_at("poly", 0, 0, 1, base_lr=0.1, total_epochs=1)
