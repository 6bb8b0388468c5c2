"""cl_analysis.training.config: the one typed run configuration, validated when it is built."""

from __future__ import annotations

import json
import math
from dataclasses import fields

import pytest

from cl_analysis.training.config import (
    LOCATION_FIELDS,
    RESUME_FREE_FIELDS,
    TrainConfig,
    load_config,
    scale_milestones,
)

FIELDS = {f.name for f in fields(TrainConfig)}


# Every bad value of issue 7, refused with a message naming the field (and what was given).
@pytest.mark.parametrize("kwargs, field", [
    (dict(momentum=1.5), "momentum"),
    (dict(momentum=-0.1), "momentum"),
    (dict(lr_gamma=0.0), "lr_gamma"),
    (dict(lr_gamma=-0.5), "lr_gamma"),
    (dict(lr_gamma=1.5), "lr_gamma"),
    (dict(lr=math.nan), "lr"),
    (dict(lr=math.inf), "lr"),
    (dict(lr=0.0), "lr"),
    (dict(lr_milestones=(190, 160)), "lr_milestones"),
    (dict(lr_milestones=(160, 160)), "lr_milestones"),
    (dict(lr_milestones=(160, 200)), "lr_milestones"),  # past the last epoch (200)
    (dict(epochs=10), "lr_milestones"),  # the default 160/190 lie past epoch 10
    (dict(lr_milestones=(0, 5)), "lr_milestones"),
    (dict(warmup_epochs=-1), "warmup_epochs"),
    (dict(warmup_epochs=200), "warmup_epochs"),
    (dict(hard_k=8.9), "hard_k"),
    (dict(hard_k=0), "hard_k"),
    (dict(hard_fraction=1.5), "hard_fraction"),
    (dict(hard_k=8, hard_fraction=0.1), "hard_k"),
    (dict(dataset="imagenet9000"), "dataset"),
    (dict(device="gpu"), "device"),
    (dict(bank_momentum=1.0), "bank_momentum"),
    (dict(weight_decay=-1e-4), "weight_decay"),
    (dict(temperature=0.0), "temperature"),
    (dict(epochs=0), "epochs"),
    (dict(batch_size=1, regime="simclr"), "batch_size"),
    (dict(seed=-1), "seed"),
    (dict(subset=2.5), "subset"),
    (dict(loss="triplet"), "loss"),
    (dict(loss="nt_xent"), "nt_xent"),  # SimCLR's name needs the simclr regime
    (dict(convnet_widths=(8, 0, 8, 8)), "convnet_widths"),
])
def test_bad_values_are_refused_naming_the_field(kwargs, field):
    with pytest.raises(ValueError) as err:
        TrainConfig(**kwargs)
    assert field in str(err.value), str(err.value)


def test_bad_value_messages_say_what_was_given_and_the_range():
    with pytest.raises(ValueError, match=r"momentum must lie in \[0, 1\), got 1\.5"):
        TrainConfig(momentum=1.5)
    with pytest.raises(ValueError, match=r"lr_gamma must lie in \(0, 1\], got 0"):
        TrainConfig(lr_gamma=0)
    with pytest.raises(ValueError, match=r"hard_k must be an integer >= 1, got 8\.9"):
        TrainConfig(hard_k=8.9)  # not silently truncated to 8
    with pytest.raises(ValueError, match=r"hard_k \(8\) and hard_fraction \(0\.1\) both set"):
        TrainConfig(hard_k=8, hard_fraction=0.1)  # the fraction does not silently win
    with pytest.raises(ValueError, match=r"dataset.*cifar10, cifar100, svhn, imagefolder.*"
                                         r"imagenet9000"):
        TrainConfig(dataset="imagenet9000")  # the name is checked, not the data root
    with pytest.raises(ValueError, match=r"device must be auto, cpu, mps, cuda or cuda:N, "
                                         r"got 'gpu'"):
        TrainConfig(device="gpu")
    with pytest.raises(ValueError, match=r"lr_milestones must be strictly increasing"):
        TrainConfig(lr_milestones=(190, 160))
    with pytest.raises(ValueError, match=r"lr_milestones must lie in \[1, epochs - 1\] = "
                                         r"\[1, 199\], got \[160, 200\]"):
        TrainConfig(lr_milestones=(160, 200))


def test_good_values_are_accepted_and_normalised():
    c = TrainConfig(hard_k=8.0, lr_milestones=[3, 5], epochs=6, device="cuda:1",
                    convnet_widths=[8, 16], data_root=None)
    assert c.hard_k == 8 and isinstance(c.hard_k, int)
    assert c.lr_milestones == (3, 5) and c.convnet_widths == (8, 16)  # lists -> tuples
    assert TrainConfig(hard_fraction=0.1).hard_k_for(1000) == 100
    assert TrainConfig(hard_k=8).hard_k_for(1000) == 8
    assert TrainConfig(loss="hard_info_nce").loss == "hard"  # the library's name is accepted
    assert TrainConfig(regime="simclr", loss="nt_xent").loss == "nt_xent"
    for device in ("auto", "cpu", "cuda", "cuda:0", "mps"):
        assert TrainConfig(device=device).device == device
    assert TrainConfig(lr_gamma=1.0, warmup_epochs=199).warmup_epochs == 199


def test_replace_validates():
    c = TrainConfig(epochs=10, lr_milestones=(5,))
    assert c.replace(lr=0.1).lr == 0.1
    with pytest.raises(ValueError, match="momentum"):
        c.replace(momentum=2.0)
    with pytest.raises(ValueError, match="lr_milestones"):
        c.replace(epochs=3)  # 5 lies past the new last epoch: scale_milestones does that


def test_scale_milestones():
    quick = TrainConfig(epochs=80, lr_milestones=(64, 76))
    # 64/76 of 80 -> 2.4, 2.85 -> 2, 3 (dropped)
    assert scale_milestones(quick, 3).lr_milestones == (2,)
    assert scale_milestones(quick, 3).epochs == 3
    assert scale_milestones(TrainConfig(), 100).lr_milestones == (80, 95)
    assert scale_milestones(TrainConfig(), 1).lr_milestones == ()  # nothing fits in 1 epoch
    assert scale_milestones(TrainConfig(), 200) == TrainConfig()
    warm = TrainConfig(schedule="cosine", lr_milestones=(), warmup_epochs=10, epochs=500)
    assert scale_milestones(warm, 50).warmup_epochs == 1
    assert scale_milestones(warm, 1).warmup_epochs == 0  # < epochs, always valid
    for epochs in range(1, 30):  # always a valid config
        scaled = scale_milestones(quick, epochs)
        assert all(1 <= m < epochs for m in scaled.lr_milestones)


def test_to_dict_from_dict_round_trip():
    c = TrainConfig(dataset="imagefolder", data_root="/data/x", hard_k=16, lr_milestones=(3, 4),
                    epochs=5, convnet_widths=(8, 8, 8, 8), num_threads=2)
    d = c.to_dict()
    assert set(d) == FIELDS
    assert d["lr_milestones"] == [3, 4] and d["convnet_widths"] == [8, 8, 8, 8]  # JSON-ready
    assert TrainConfig.from_dict(json.loads(json.dumps(d))) == c
    assert TrainConfig.from_dict({}) == TrainConfig()


def test_from_dict_refuses_unknown_keys_naming_them():
    with pytest.raises(ValueError, match=r"unknown config key\(s\) \['bogus', 'lr_rate'\]"):
        TrainConfig.from_dict({"lr": 0.1, "bogus": 1, "lr_rate": 2})
    with pytest.raises(ValueError, match="momentum"):
        TrainConfig.from_dict({"momentum": 1.5})


def test_location_and_resume_free_fields_are_fields():
    assert set(LOCATION_FIELDS) <= set(RESUME_FREE_FIELDS) <= FIELDS
    assert set(LOCATION_FIELDS) == {"data_root", "device", "num_threads"}
    # what changes a trajectory must match on resume
    assert not {"lr", "seed", "loss", "temperature", "batch_size"} & set(RESUME_FREE_FIELDS)


def test_load_config_json_and_yaml(tmp_path):
    c = TrainConfig(epochs=3, lr_milestones=(2,), loss="hard", hard_k=4, temperature=0.3)
    (tmp_path / "config.json").write_text(json.dumps(c.to_dict()))
    assert TrainConfig.from_dict(load_config(tmp_path / "config.json")) == c
    (tmp_path / "c.yaml").write_text("epochs: 3\nlr_milestones: [2]\nloss: hard\nhard_k: 4\n"
                                     "temperature: 0.3\n")
    assert TrainConfig.from_dict(load_config(tmp_path / "c.yaml")) == c
    (tmp_path / "c.yml").write_text("lr: 0.5\n")
    assert load_config(str(tmp_path / "c.yml")) == {"lr": 0.5}


def test_load_config_bad_files(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_config(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="does not exist"):
        load_config(tmp_path)  # a folder is not a config file
    (tmp_path / "broken.json").write_text("{epochs: 3")
    with pytest.raises(ValueError, match="cannot read config file .*broken.json"):
        load_config(tmp_path / "broken.json")
    (tmp_path / "broken.yaml").write_text("epochs: [3\n")
    with pytest.raises(ValueError, match="cannot read config file .*broken.yaml"):
        load_config(tmp_path / "broken.yaml")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="must hold a mapping.*got list"):
        load_config(tmp_path / "list.json")
