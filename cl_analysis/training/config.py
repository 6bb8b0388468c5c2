"""The run configuration: one typed, validated dataclass from the command line to the notebooks.

:class:`TrainConfig` is a whole run: data, model, loss, optimisation, evaluation and where it runs.
Its defaults are the paper's CIFAR-10 setup (Wang & Liu, CVPR 2021, §5.1); a profile
(:mod:`cl_analysis.study.profiles`) is a ``TrainConfig`` with some fields replaced. Every value is
validated once, when the object is built: a bad value raises ``ValueError`` naming the field, the
allowed range and what was given. The comment after each field is its ``--help`` text.

``LOCATION_FIELDS`` say where a run's data lives and what runs it; they do not change what a run
computes (with one exception checked on resume: the CPU thread count, see
:mod:`cl_analysis.training.environment`).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from .. import registry
from .._checks import check_choice, check_temperature
from .data import DATASETS
from .models import HEAD_KINDS, MODEL_NAMES
from .schedules import SCHEDULES, TEMPERATURE_SCHEDULES

__all__ = ["TrainConfig", "REGIMES", "AUGMENTS", "BANK_INITS", "LOCATION_FIELDS",
           "RESUME_FREE_FIELDS",
           "load_config", "scale_milestones"]

REGIMES = ("memory_bank", "simclr")
AUGMENTS = ("paper", "simclr")
BANK_INITS = ("random", "features")
# Where the data lives and what hardware runs a run: recorded, overridable, not part of the result.
LOCATION_FIELDS = ("data_root", "device", "num_threads")
# May change between an interrupted run and its resumption: how long to train, where, what to
# monitor and how to evaluate. Everything else changes the trajectory and must match. (The device
# type and, on CPU, the thread count are checked separately against the run's environment.json.)
RESUME_FREE_FIELDS = (*LOCATION_FIELDS, "epochs", "knn_every", "log_metrics", "monitor_size",
                      "linear_probe", "probe_epochs", "eval_test_size", "checkpoint_every",
                      "compile")
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


@dataclass
class TrainConfig:
    """One pre-training run plus its evaluation; defaults are Wang & Liu §5.1 (CIFAR-10).

    Raises:
        ValueError: on construction, for any value outside its documented range (the message
            names the field, the allowed values and what was given).
    """

    # --- data
    dataset: str = "cifar10"  # cifar10 | cifar100 | svhn | imagefolder (your own class folders)
    data_root: str | None = None  # dataset folder; None: the default data folder (downloads)
    subset: int | None = None  # stratified training subset size (seeded); None: all images
    long_tail_ratio: float | None = None  # long tail: class k keeps n·ratio^(-k/(K-1)); None: off
    image_size: int = 32  # training resolution; larger stored images are downsized to it
    crop_from_full: bool = False  # crop the stored image, then resize to image_size
    augment: str = "paper"  # paper (InstDisc crops/jitter/grey/flip) | simclr (s = 0.5, blur off)
    # --- model
    model: str = "resnet18"  # resnet18 (CIFAR stem, the paper) | convnet (small, for CPUs)
    head: str = "linear"  # linear 512->128 (the paper) | mlp (SimCLR) | bn_linear (BN, linear)
    embedding_dim: int = 128  # dimension D of the unit-norm embedding z
    convnet_widths: tuple[int, ...] = (32, 64, 128, 256)  # block widths of model=convnet
    # --- loss
    regime: str = "memory_bank"  # memory_bank (InstDisc bank, the paper) | simclr (in-batch)
    loss: str = "info_nce"  # info_nce (Eq.1) | hard (Eq.9) | simple (Eq.3) | hard_simple | ...
    temperature: float = 0.07  # temperature τ > 0 (the paper: 0.05 to 1.0)
    hard_k: int | None = None  # K hardest negatives kept by hard/hard_simple; None: hard_fraction
    hard_fraction: float | None = None  # K = fraction x candidates; both None: 4095/50000
    simple_lam: float | None = None  # λ of the simple losses; None: losses.simple's default
    bank_momentum: float = 0.5  # memory-bank EMA momentum m in [0, 1) (InstDisc: 0.5)
    bank_init: str = "random"  # random U(-1/sqrt(D/3), ...) as the authors | features f(x)
    temperature_schedule: str = "constant"  # constant | cosine | learnable | macl (docs/beyond.md)
    temperature_min: float = 0.1  # τ_min of the cosine schedule and lower clamp of a learnable τ
    temperature_max: float = 1.0  # τ_max of the cosine schedule and upper clamp of a learnable τ
    temperature_period: int = 400  # cosine τ period in epochs (Kukleva: 400, i.e. T_max = 200)
    macl_alpha: float = 0.5  # MACL sensitivity α of τ to the alignment, in [0, 1]
    macl_a0: float = 0.0  # MACL alignment threshold A0, in [0, 1]
    # --- optimisation
    epochs: int = 200  # training epochs (the paper: 200)
    batch_size: int = 128  # images per step (the paper: 128; SimCLR's CIFAR setup: 512)
    lr: float = 0.03  # initial SGD learning rate > 0 (the paper: 0.03)
    momentum: float = 0.9  # SGD momentum in [0, 1)
    weight_decay: float = 5e-4  # SGD weight decay >= 0 (CIFAR/SVHN: 5e-4; ImageNet-100: 1e-4)
    schedule: str = "step"  # step (x lr_gamma at lr_milestones) | cosine (per step, after warm-up)
    lr_milestones: tuple[int, ...] = (160, 190)  # increasing epochs in [1, epochs): step decays
    lr_gamma: float = 0.1  # step-schedule decay factor in (0, 1]
    warmup_epochs: int = 0  # linear warm-up epochs, 0 <= warmup_epochs < epochs
    seed: int = 0  # seeds weights, bank, subset, data order and augmentation
    # --- where and how it runs
    device: str = "auto"  # auto (cuda if available) | cpu | cuda | cuda:N | mps
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    channels_last: bool = True  # channels_last memory format (faster convs)
    num_threads: int | None = None  # torch CPU threads; None: torch's default (recorded)
    checkpoint_every: int | None = None  # save every k epochs + the last; None: adaptive (<= 5%)
    compile: bool = False  # torch.compile the model on CUDA (ignored on CPU)
    sync_batchnorm: bool = True  # torchrun: BatchNorm over the global batch (= one process)
    # --- monitoring and evaluation
    knn_every: int = 1  # kNN / uniformity / tolerance monitor every k epochs and at the end
    log_metrics: bool = True  # per-epoch monitor; False: loss, lr and time only
    monitor_size: int | None = None  # test images of the per-epoch kNN monitor; None: all
    linear_probe: bool = True  # evaluation trains the paper's linear probe on frozen features
    probe_epochs: int = 100  # linear-probe epochs (the paper: 100, lr x0.2 at 40/60/80, scaled)
    eval_test_size: int | None = None  # test images used by evaluation (stratified); None: all

    def __post_init__(self):
        self.convnet_widths = _int_tuple("convnet_widths", self.convnet_widths)
        self.lr_milestones = _int_tuple("lr_milestones", self.lr_milestones)
        check_choice("dataset", self.dataset, DATASETS)
        check_choice("regime", self.regime, REGIMES)
        self.loss = _loss_name(self.loss, self.regime)
        check_choice("model", self.model, MODEL_NAMES)
        check_choice("head", self.head, HEAD_KINDS)
        check_choice("augment", self.augment, AUGMENTS)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("bank_init", self.bank_init, BANK_INITS)
        self.temperature = check_temperature(self.temperature)
        for name in ("epochs", "batch_size", "image_size", "embedding_dim", "knn_every",
                     "probe_epochs"):
            _int_at_least(self, name, 1)
        _int_at_least(self, "seed", 0)
        _int_at_least(self, "warmup_epochs", 0)
        for name in ("subset", "num_threads", "monitor_size", "eval_test_size", "hard_k",
                     "checkpoint_every"):
            if getattr(self, name) is not None:
                _int_at_least(self, name, 1)
        if any(w < 1 for w in self.convnet_widths) or not self.convnet_widths:
            raise ValueError(f"convnet_widths must be positive ints, got {self.convnet_widths}")
        if self.regime == "simclr" and self.batch_size < 2:
            raise ValueError("batch_size must be >= 2 in the simclr regime (in-batch negatives), "
                             f"got {self.batch_size}")
        _in_range("lr", self.lr, 0, math.inf, low_open=True, high_open=True)
        _in_range("momentum", self.momentum, 0, 1, high_open=True)
        _in_range("weight_decay", self.weight_decay, 0, math.inf, high_open=True)
        _in_range("lr_gamma", self.lr_gamma, 0, 1, low_open=True)
        _in_range("bank_momentum", self.bank_momentum, 0, 1, high_open=True)
        if self.hard_fraction is not None:
            _in_range("hard_fraction", self.hard_fraction, 0, 1, low_open=True)
        if self.hard_k is not None and self.hard_fraction is not None:
            raise ValueError(f"hard_k ({self.hard_k}) and hard_fraction ({self.hard_fraction}) "
                             f"both set; K comes from one of them: set the other to None")
        if self.simple_lam is not None:
            _in_range("simple_lam", self.simple_lam, 0, math.inf, low_open=True, high_open=True)
        ms = self.lr_milestones
        if any(b <= a for a, b in zip(ms, ms[1:])):
            raise ValueError(f"lr_milestones must be strictly increasing, got {list(ms)}")
        if ms and (ms[0] < 1 or ms[-1] >= self.epochs):
            raise ValueError(f"lr_milestones must lie in [1, epochs - 1] = [1, {self.epochs - 1}],"
                             f" got {list(ms)}; give --lr-milestones for this many epochs")
        if self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs must be < epochs ({self.epochs}), "
                             f"got {self.warmup_epochs}")
        if not _DEVICE.match(str(self.device)):
            raise ValueError(f"device must be auto, cpu, mps, cuda or cuda:N, got {self.device!r}")
        if self.data_root is not None:
            self.data_root = str(self.data_root)
        _check_temperature_dynamics(self)

    @property
    def hard_k_for(self):
        """``columns -> K`` of this run's hard loss (:func:`cl_analysis.registry.hard_k`)."""
        return lambda columns: registry.hard_k(columns, k=self.hard_k,
                                               fraction=self.hard_fraction)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples as lists); ``from_dict`` inverts it."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build from a dict such as a run's ``config.json``.

        Raises:
            ValueError: on unknown keys (named, with the valid ones) or invalid values.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown config key(s) {unknown}; valid keys: "
                             f"{', '.join(sorted(known))}")
        return cls(**d)

    def replace(self, **changes: Any) -> TrainConfig:
        """A validated copy with ``changes``; see :func:`scale_milestones` for ``epochs``."""
        return replace(self, **changes)


def scale_milestones(config: TrainConfig, epochs: int) -> TrainConfig:
    """``config`` with ``epochs`` and its step milestones (and warm-up) scaled to that length.

    Milestones m become round(m · epochs / config.epochs); those outside [1, epochs − 1] or
    repeated are dropped (e.g. the quick profile's 64/76 of 80 -> 2 of 3 epochs). Used when
    the number of epochs is overridden without new milestones.
    """
    old = config.epochs
    scaled = sorted({round(m * epochs / old) for m in config.lr_milestones})
    scaled = tuple(m for m in scaled if 1 <= m < epochs)
    warm = min(round(config.warmup_epochs * epochs / old), max(epochs - 1, 0))
    return replace(config, epochs=epochs, lr_milestones=scaled, warmup_epochs=warm)


def load_config(path: str | Path) -> dict[str, Any]:
    """The dict of a JSON or YAML configuration file (e.g. a run's ``config.json``).

    Raises:
        ValueError: if the file is missing, unreadable, or not a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file {path} does not exist; pass a JSON or YAML file, e.g. a "
                         f"run's config.json")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            d = yaml.safe_load(text)
        else:
            d = json.loads(text)
    except Exception as err:  # noqa: BLE001  (any parse error is the user's file)
        raise ValueError(f"cannot read config file {path}: {err}") from None
    if not isinstance(d, dict):
        raise ValueError(f"config file {path} must hold a mapping of field: value, "
                         f"got {type(d).__name__}")
    return d


def _loss_name(loss: str, regime: str) -> str:
    if loss == "nt_xent" and regime != "simclr":
        raise ValueError("loss 'nt_xent' is SimCLR's name of info_nce and needs regime='simclr';"
                         " use loss='info_nce' in the memory_bank regime")
    try:
        name = registry.canonical(loss)
    except ValueError:
        raise ValueError(f"loss must be one of {', '.join(registry.LOSS_NAMES)}, "
                         f"got {loss!r}") from None
    return "nt_xent" if loss == "nt_xent" else name


def _check_temperature_dynamics(config: TrainConfig) -> None:
    """Validate ``temperature_schedule`` and its fields, and ``long_tail_ratio`` (issue 11 §3)."""
    check_choice("temperature_schedule", config.temperature_schedule, TEMPERATURE_SCHEDULES)
    lo = check_temperature(config.temperature_min, "temperature_min")
    hi = check_temperature(config.temperature_max, "temperature_max")
    config.temperature_min, config.temperature_max = lo, hi
    if lo > hi:
        raise ValueError(f"temperature_min ({lo}) must be <= temperature_max ({hi}); swap them")
    _int_at_least(config, "temperature_period", 1)
    _in_range("macl_alpha", config.macl_alpha, 0, 1)
    _in_range("macl_a0", config.macl_a0, 0, 1)
    schedule = config.temperature_schedule
    if schedule != "constant" and not registry.get(config.loss).takes_temperature:
        raise ValueError(f"temperature_schedule={schedule!r} needs a loss with a temperature; "
                         f"loss {config.loss!r} has none: use temperature_schedule='constant'")
    if schedule == "learnable" and not lo <= config.temperature <= hi:
        raise ValueError(f"temperature_schedule='learnable' starts at temperature "
                         f"{config.temperature}, outside its clamp [temperature_min, "
                         f"temperature_max] = [{lo}, {hi}]; widen the range or change τ")
    if config.long_tail_ratio is not None:
        _in_range("long_tail_ratio", config.long_tail_ratio, 1, math.inf, high_open=True)


def _int_tuple(name: str, value) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ValueError(f"{name} must be a list of integers, got {value!r}")
    out = []
    for v in value:
        if isinstance(v, bool) or not float(v).is_integer():
            raise ValueError(f"{name} must hold integers, got {v!r} in {list(value)}")
        out.append(int(v))
    return tuple(out)


def _int_at_least(config: TrainConfig, name: str, low: int) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value) or not float(value).is_integer():
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    setattr(config, name, int(value))


def _in_range(name: str, value, low: float, high: float, *, low_open: bool = False,
              high_open: bool = False) -> None:
    lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and \
        not math.isnan(value)
    if ok:
        ok = (value > low if low_open else value >= low) and \
             (value < high if high_open else value <= high)
    if not ok:
        raise ValueError(f"{name} must lie in {lo}{low}, {high}{hi}, got {value!r}")
