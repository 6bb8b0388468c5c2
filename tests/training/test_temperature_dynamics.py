"""Temperature dynamics as training options and the per-epoch diagnostics (issue 11 §2-3)."""

import json
import math

import pytest
import torch
from helpers import make_data, tiny_config

from cl_analysis import registry
from cl_analysis.training.checkpoint import load_checkpoint
from cl_analysis.training.config import TrainConfig
from cl_analysis.training.pretrain import pretrain
from cl_analysis.training.schedules import cosine_temperature
from cl_analysis.training.trainer import DIAGNOSTIC_KEYS, Trainer


def tiny(**overrides):
    return tiny_config(**{"temperature": 0.2, **overrides})


TRAIN, TEST = make_data(), make_data(32, seed=1)


def run(tmp_path, **overrides):
    return pretrain(tiny(**overrides), tmp_path, train_set=TRAIN, test_set=TEST,
                    progress=False)["history"]


# --- cosine ----------------------------------------------------------------------------------
def test_cosine_temperature_closed_form():
    kw = dict(tau_min=0.1, tau_max=1.0, period=400)
    assert cosine_temperature(0, **kw) == pytest.approx(1.0)
    assert cosine_temperature(100, **kw) == pytest.approx(0.55)  # quarter period: the middle
    assert cosine_temperature(200, **kw) == pytest.approx(0.1)  # Kukleva's T_max = 200
    assert cosine_temperature(400, **kw) == pytest.approx(1.0)
    for e in (13, 77, 321):
        assert cosine_temperature(e, **kw) == pytest.approx(
            0.1 + 0.45 * (1 + math.cos(2 * math.pi * e / 400)))
    with pytest.raises(ValueError, match="tau_min <= tau_max"):
        cosine_temperature(0, tau_min=1.0, tau_max=0.1, period=4)


def test_cosine_schedule_logs_each_epochs_tau(tmp_path):
    hist = run(tmp_path, temperature_schedule="cosine", temperature_min=0.1,
               temperature_max=0.5, temperature_period=4)
    assert [r["temperature"] for r in hist] == pytest.approx([0.5, 0.3, 0.1])


# --- constant: unchanged arithmetic -----------------------------------------------------------
def test_constant_schedule_passes_the_config_float(tmp_path, monkeypatch):
    seen = []
    original = registry.compute

    def spy(name, similarity, positive, **kw):
        seen.append(kw["temperature"])
        return original(name, similarity, positive, **kw)

    monkeypatch.setattr(registry, "compute", spy)
    hist = run(tmp_path, epochs=1)
    # the very float of the config, as before the schedules: same arithmetic, same bits
    assert seen and all(type(t) is float and t == 0.2 for t in seen)
    assert hist[0]["temperature"] == 0.2


# --- learnable -------------------------------------------------------------------------------
def test_learnable_tau_gets_a_gradient_and_moves():
    cfg = tiny(temperature_schedule="learnable", temperature_min=0.05, temperature_max=1.0,
               lr=0.5)
    trainer = Trainer(cfg, TRAIN, torch.device("cpu"))
    start = float(trainer.log_temperature.detach())
    assert start == pytest.approx(math.log(0.2))
    trainer.train_step(torch.arange(16), lr=0.5)
    grad = trainer.log_temperature.grad
    assert grad is not None and float(grad) != 0.0
    assert float(trainer.log_temperature.detach()) != start  # SGD moved it
    assert any(p is trainer.log_temperature for g in trainer.optimizer.param_groups
               for p in g["params"])


def test_learnable_tau_is_clamped():
    cfg = tiny(temperature_schedule="learnable", temperature_min=0.19, temperature_max=0.21,
               lr=50.0)
    trainer = Trainer(cfg, TRAIN, torch.device("cpu"))
    for _ in range(3):
        trainer.train_step(torch.arange(16), lr=50.0)
        tau = math.exp(float(trainer.log_temperature.detach()))
        assert 0.19 - 1e-6 <= tau <= 0.21 + 1e-6


def test_learnable_tau_survives_resume(tmp_path):
    kw = dict(temperature_schedule="learnable", temperature_min=0.05, lr=0.3)
    full = run(tmp_path / "full", **kw)
    run(tmp_path / "part", **{**kw, "epochs": 1})
    resumed = pretrain(tiny(**kw), tmp_path / "part", train_set=TRAIN, test_set=TEST,
                       resume=True, progress=False)["history"]
    a = load_checkpoint(tmp_path / "full" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "part" / "checkpoint.pt")
    assert a["log_temperature"] is not None
    assert torch.equal(a["log_temperature"], b["log_temperature"])
    assert [r["temperature"] for r in full] == [r["temperature"] for r in resumed]
    temps = [r["temperature"] for r in full]
    assert temps[0] != pytest.approx(0.2) and all(0.05 <= t <= 1.0 for t in temps)  # moved, clamped
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


# --- MACL --------------------------------------------------------------------------------------
def test_macl_tau_follows_its_formula():
    cfg = tiny(temperature_schedule="macl", macl_alpha=0.5, macl_a0=0.2, regime="simclr",
               loss="info_nce")
    trainer = Trainer(cfg, TRAIN, torch.device("cpu"))
    s = torch.tensor([[0.9, 0.1, -0.2], [0.3, 0.5, 0.0], [0.0, -0.1, 0.7]])
    pos = torch.tensor([0, 1, 2])
    a = (0.9 + 0.5 + 0.7) / 3  # mean positive similarity
    assert trainer.step_temperature(s, pos) == pytest.approx(0.2 * (1 + 0.5 * (a - 0.2)))


def test_macl_run_logs_the_mean_tau(tmp_path):
    hist = run(tmp_path, temperature_schedule="macl", macl_alpha=1.0, epochs=1)
    tau = hist[0]["temperature"]
    # tau_A = 0.2 (1 + A) with A the mean positive similarity in [-1, 1]
    assert 0.0 < tau < 0.4 and tau != 0.2
    assert tau == pytest.approx(0.2 * (1 + hist[0]["positive_similarity"]), rel=0.2)


# --- validation --------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, match", [
    (dict(temperature_schedule="warm"), "temperature_schedule"),
    (dict(temperature_min=0.5, temperature_max=0.1), "temperature_min"),
    (dict(temperature_min=-1.0), "temperature_min"),
    (dict(temperature_period=0), "temperature_period"),
    (dict(temperature_schedule="learnable", temperature=0.05), "outside its clamp"),
    (dict(temperature_schedule="cosine", loss="simple"), "needs a loss with a temperature"),
    (dict(macl_alpha=1.5), "macl_alpha"),
    (dict(macl_a0=-0.1), "macl_a0"),
    (dict(long_tail_ratio=0.5), "long_tail_ratio"),
])
def test_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny(**kwargs)


def test_old_config_without_the_new_fields_loads():
    d = tiny().to_dict()
    for key in ("temperature_schedule", "temperature_min", "temperature_max",
                "temperature_period", "macl_alpha", "macl_a0", "long_tail_ratio"):
        d.pop(key)
    assert TrainConfig.from_dict(d).temperature_schedule == "constant"


# --- per-epoch diagnostics -----------------------------------------------------------------
@pytest.mark.parametrize("regime, loss", [("memory_bank", "hard"), ("simclr", "info_nce")])
def test_diagnostics_logged_per_monitored_epoch(tmp_path, regime, loss):
    run(tmp_path, regime=regime, loss=loss, epochs=2, knn_every=2)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert not set(DIAGNOSTIC_KEYS) & set(rows[0])  # not monitored: kept off that epoch
    last = rows[1]
    for key in DIAGNOSTIC_KEYS:
        assert math.isfinite(last[key]), key
    assert 1.0 <= last["projection_rankme"] <= 32 + 1e-6  # at most D = 32
    assert 0.0 <= last["projection_w2_uniformity"] <= math.sqrt(2) + 1e-9
    assert 0.0 < last["backbone_feature_std"] <= 1 / math.sqrt(16) + 1e-9  # F = 16
    assert -1.0 <= last["projection_neg_sim_mean"] <= 1.0


def test_diagnostics_match_the_library_on_the_monitor_set():
    from cl_analysis import diagnostics

    trainer = Trainer(tiny(), TRAIN, torch.device("cpu"))
    h, z = trainer.embed_both(TEST.images)
    assert torch.equal(z, trainer.embed(TEST.images))  # the kNN monitor's z is unchanged
    d = trainer.diagnostics(h, z)  # 32 rows < DIAGNOSTIC_ROWS: all of them
    assert d["projection_rankme"] == pytest.approx(diagnostics.rankme(
        torch.nn.functional.normalize(z.double(), dim=1)))
    assert d["backbone_w2_uniformity"] == pytest.approx(diagnostics.wasserstein_uniformity(h))
    u = torch.nn.functional.normalize(z.double(), dim=1)
    off = (u @ u.T)[~torch.eye(32, dtype=torch.bool)]
    assert d["projection_neg_sim_mean"] == pytest.approx(float(off.mean()))
    assert d["projection_neg_sim_var"] == pytest.approx(float(off.var(correction=0)))


# --- the weighting lens over training (notebook 07) -------------------------------------------
@pytest.mark.parametrize("regime, loss", [("memory_bank", "info_nce"), ("simclr", "hard")])
def test_weighting_lens_logged_equals_a_recomputation_of_every_step(monkeypatch, regime, loss):
    """The epoch's P_ip mean, log10 histogram and log-weight mean/std, recomputed in float64
    from every step's similarities with anchor_weights and numpy."""
    import numpy as np

    from cl_analysis import weighting
    from cl_analysis.training import trainer as trainer_module

    trainer = Trainer(tiny(regime=regime, loss=loss, temperature=0.1), TRAIN,
                      torch.device("cpu"))
    seen = []
    step = Trainer.train_step

    def record(self, idx, lr):
        out = step(self, idx, lr)
        seen.append((out[1].double(), out[2]))
        return out

    monkeypatch.setattr(Trainer, "train_step", record)
    row = trainer.train_epoch(0, progress=False, monitored=True)
    s = torch.cat([torch.softmax(sim / 0.1, 1).gather(1, pos[:, None].long())[:, 0]
                   for sim, pos in seen]).numpy()  # (anchors,) P_ip
    assert row["positive_probability"] == pytest.approx(s.mean(), rel=1e-5)
    lo, hi = trainer_module.POSITIVE_LOG10_RANGE
    edges = np.linspace(lo, hi, trainer_module.POSITIVE_BINS + 1)
    counts, _ = np.histogram(np.clip(np.log10(s), lo, hi - 1e-12), bins=edges)
    np.testing.assert_allclose(row["positive_probability_hist"], counts / len(s), atol=1e-6)
    assert sum(row["positive_probability_hist"]) == pytest.approx(1.0)
    for method in trainer_module.WEIGHT_METHODS:
        # MACL's tau_A uses each step's own batch alignment, as the loss would
        lw = torch.cat([weighting.anchor_weights(sim, pos, 0.1, method, log=True)
                        for sim, pos in seen]).numpy()
        assert row[f"anchor_log_weight_mean_{method}"] == pytest.approx(lw.mean(), rel=1e-4,
                                                                         abs=1e-6)
        assert row[f"anchor_log_weight_std_{method}"] == pytest.approx(lw.std(), rel=1e-3,
                                                                        abs=1e-5)
    quiet = trainer.train_epoch(1, progress=False, monitored=False)
    assert quiet["positive_probability"] is None and quiet["positive_probability_hist"] is None
