"""Contrastive pre-training: the paper's memory-bank regime and SimCLR's in-batch regime.

**memory_bank** (Wang & Liu §5.1, InstDisc): per step, one augmented view per image,
z = f(view) (B, D); the similarity s = z @ bank^T (B, N) to all N bank entries with the images'
dataset indices as positives goes into a loss of the family (Eq. 1, 3, 6, 9); backward; SGD step;
*then* the bank entries of the batch move towards z (v <- normalize(m v + (1 - m) z), m = 0.5).
As in the authors' code the loss sees the bank *before* this step's update.

**simclr** (Chen et al. 2020): two views per image, in-batch negatives: ``losses.simclr_similarity``
gives the (2B, 2B - 1) matrix of every view against the 2B - 1 others; ``info_nce`` on it equals
NT-Xent (``loss="nt_xent"`` is accepted as an alias). The last partial batch is dropped.

Runs are deterministic and resumable: all randomness (weights, data order, augmentation) comes
from ``config.seed``; the checkpoint written at the end of every epoch holds the model, optimiser,
bank, history and RNG states, so ``resume=True`` ends with the same weights as an uninterrupted
run (bit-identical on CPU, where deterministic algorithms are enforced).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.utils.deterministic
from tqdm.auto import tqdm

from . import data
from ._checks import check_choice, check_temperature
from ._trainer import MONITOR_QUERIES, Trainer, compute_loss
from .checkpoint import (
    append_jsonl,
    check_compatible,
    load_checkpoint,
    save_atomic,
    write_json_atomic,
    write_jsonl_atomic,
)
from .models import HEAD_KINDS, MODEL_NAMES, ContrastiveModel, build_model
from .schedules import SCHEDULES

logger = logging.getLogger(__name__)

__all__ = ["TrainConfig", "pretrain", "LOSS_NAMES", "REGIMES", "AUGMENTS", "BANK_INITS",
           "MONITOR_QUERIES", "Trainer", "compute_loss", "resolve_device", "prepare_data",
           "load_trained_model"]

LOSS_NAMES = ("info_nce", "simple", "hard", "hard_simple", "tau_zero_limit")
REGIMES = ("memory_bank", "simclr")
AUGMENTS = ("paper", "simclr")
BANK_INITS = ("random", "features")


@dataclass
class TrainConfig:
    """One pre-training run; the defaults are the paper's CIFAR-10 setup (Wang & Liu §5.1)."""

    dataset: str = "cifar10"  # a name of data.DATASETS
    data_root: str | None = None  # None: env CL_DATA_ROOT (only read when no train_set is passed)
    subset: int | None = None  # stratified training subset size (seed = `seed`); None: all
    image_size: int = 32  # training resolution; stored images are downsized to it if larger
    crop_from_full: bool = False  # True: crop the stored images, then resize to image_size
    model: str = "resnet18"  # "resnet18" (CIFAR stem, the paper) | "convnet" (small, for CPUs)
    head: str = "linear"  # "linear" 512->128 (the paper) | "mlp" (SimCLR)
    embedding_dim: int = 128  # D of z on the unit sphere
    convnet_widths: tuple[int, ...] = (32, 64, 128, 256)  # ConvNet block widths (model="convnet")
    regime: str = "memory_bank"  # "memory_bank" (InstDisc, the paper) | "simclr" (in-batch)
    loss: str = "info_nce"  # a name of LOSS_NAMES ("nt_xent" = info_nce in the simclr regime)
    temperature: float = 0.07  # tau of info_nce / hard (also used for the penalty entropy monitor)
    hard_k: int | None = 4095  # hardest negatives kept by hard / hard_simple (the paper: 4095)
    hard_fraction: float | None = None  # K = round(fraction * columns) instead; paper 4095/50000
    simple_lam: float | None = None  # lambda of the simple loss; None: losses.simple's default
    bank_momentum: float = 0.5  # m of the memory bank EMA (InstDisc / the authors' code)
    bank_init: str = "random"  # "random": U(-stdv, stdv) as the authors | "features": f(x) at start
    epochs: int = 200  # the paper trains 200 epochs
    batch_size: int = 128  # the paper's batch size
    lr: float = 0.03  # initial SGD lr (the paper)
    momentum: float = 0.9  # SGD momentum
    weight_decay: float = 5e-4  # CIFAR/SVHN value of the paper (1e-4 on ImageNet-100)
    schedule: str = "step"  # "step" (x lr_gamma at milestones) | "cosine" (SimCLR, per iteration)
    lr_milestones: tuple[int, ...] = (160, 190)  # 0-based epochs where the step schedule decays
    lr_gamma: float = 0.1  # decay factor of the step schedule
    warmup_epochs: int = 0  # linear warm-up length (SimCLR uses 10 on ImageNet)
    augment: str = "paper"  # "paper" (PaperAugment) | "simclr" (SimCLRAugment, s = 0.5)
    seed: int = 0  # seeds weights, bank init, data order and augmentation
    device: str = "auto"  # "auto" (cuda if available) | "cpu" | "cuda" | "cuda:1" ...
    amp: bool = True  # bf16 autocast, on CUDA only
    channels_last: bool = True  # channels_last memory format (faster convs on CUDA and CPU)
    num_threads: int | None = None  # torch CPU threads during training; None: leave as is
    knn_every: int = 1  # kNN / uniformity / tolerance every k epochs (and at the last one)
    log_metrics: bool = True  # per-epoch monitoring; False: loss, lr and time only
    monitor_size: int | None = None  # test images (kNN) / embedded train images (simclr); None: all

    def __post_init__(self):
        self.convnet_widths = tuple(int(w) for w in self.convnet_widths)
        self.lr_milestones = tuple(int(m) for m in self.lr_milestones)
        check_choice("regime", self.regime, REGIMES)
        if self.loss == "nt_xent" and self.regime != "simclr":
            raise ValueError("loss 'nt_xent' is the SimCLR name of info_nce and needs "
                             "regime='simclr'; use loss='info_nce' in the memory_bank regime")
        if self.loss != "nt_xent":
            check_choice("loss", self.loss, LOSS_NAMES)
        check_choice("model", self.model, MODEL_NAMES)
        check_choice("head", self.head, HEAD_KINDS)
        check_choice("augment", self.augment, AUGMENTS)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("bank_init", self.bank_init, BANK_INITS)
        self.temperature = check_temperature(self.temperature)
        for name in ("epochs", "batch_size", "image_size", "embedding_dim", "knn_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.regime == "simclr" and self.batch_size < 2:
            raise ValueError("the simclr regime needs batch_size >= 2 (in-batch negatives)")
        if self.hard_fraction is not None and not 0 < self.hard_fraction <= 1:
            raise ValueError(f"hard_fraction must lie in (0, 1] (the paper: 4095/50000 = 0.0819), "
                             f"got {self.hard_fraction}")
        if self.hard_k is not None and int(self.hard_k) < 1:
            raise ValueError(f"hard_k must be >= 1 (the paper: 4095), got {self.hard_k}")
        hard = self.loss in ("hard", "hard_simple")
        if hard and self.hard_k is None and self.hard_fraction is None:
            raise ValueError(f"loss {self.loss!r} needs hard_k or hard_fraction")
        if not 0 <= self.bank_momentum < 1:
            raise ValueError(f"bank_momentum must lie in [0, 1) (the paper: 0.5), "
                             f"got {self.bank_momentum}")
        for name in ("subset", "num_threads", "monitor_size"):
            if getattr(self, name) is not None and int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be None or >= 1, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of ``to_dict``; unknown keys raise ``ValueError``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig key(s) {unknown}; "
                             f"valid: {', '.join(sorted(known))}")
        return cls(**d)


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> cuda if available else cpu; otherwise ``torch.device(name)``, checked."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"unknown device {name!r}; use 'auto', 'cpu' or 'cuda[:i]'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available; use device='cpu'")
    return dev


def prepare_data(config: TrainConfig, train_set: data.ImageDataset | None = None,
                 test_set: data.ImageDataset | None = None, progress: bool = True):
    """The (train, test) sets of a run, exactly as ``pretrain`` sees them.

    Loads both splits from ``data_root`` / CL_DATA_ROOT when ``train_set`` is None, takes the
    stratified ``subset`` of the train set (seed = ``config.seed``), downsizes images larger than
    ``image_size`` (unless ``crop_from_full``) and caps the test set at ``monitor_size``
    (stratified, same seed).

    Returns:
        ``[train_set, test_set]``; test_set is None if none was given or loaded.
    """
    if train_set is None:
        root = config.data_root or os.environ.get("CL_DATA_ROOT")
        if not root:
            raise ValueError("no training data: pass train_set=, or set data_root (--data-root) "
                             "or the CL_DATA_ROOT environment variable")
        train_set = data.load_dataset(config.dataset, root, "train", progress=progress)
        if test_set is None:
            test_set = data.load_dataset(config.dataset, root, "test", progress=progress)
    if config.subset is not None and config.subset != len(train_set):
        train_set = data.subset(train_set, config.subset, seed=config.seed)
    sets = []
    for ds in (train_set, test_set):
        # crop_from_full keeps the stored resolution: the augmentation's random crop is cut from
        # the full image and resized to image_size, and the test transforms resize on the fly.
        larger = ds is not None and ds.images.shape[-1] > config.image_size
        if larger and not config.crop_from_full:
            ds = data.resize(ds, config.image_size)
        sets.append(ds)
    cap = config.monitor_size
    if cap is not None and sets[1] is not None and cap < len(sets[1]):
        sets[1] = data.subset(sets[1], cap, seed=config.seed)  # a fixed stratified kNN test set
    return sets




@contextlib.contextmanager
def _torch_settings(config: TrainConfig, device: torch.device):
    """Thread count and determinism for the run; the previous global settings are restored."""
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    bench = torch.backends.cudnn.benchmark
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    fill = torch.utils.deterministic.fill_uninitialized_memory
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.utils.deterministic.fill_uninitialized_memory = False  # NaN-filling costs time
    else:
        torch.backends.cudnn.benchmark = True  # CUDA runs are reproducible only up to kernel choice
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det, warn_only=warn_only)
        torch.backends.cudnn.benchmark = bench
        torch.utils.deterministic.fill_uninitialized_memory = fill


def _result(out: Path, history: list[dict]) -> dict[str, Any]:
    return {"history": history, "out_dir": str(out), "config": str(out / "config.json"),
            "checkpoint": str(out / "checkpoint.pt"), "metrics": str(out / "metrics.jsonl")}


def pretrain(config: TrainConfig, out_dir: str | os.PathLike, *,
             train_set: data.ImageDataset | None = None, test_set: data.ImageDataset | None = None,
             resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Pre-train a contrastive model and write config.json, checkpoint.pt and metrics.jsonl.

    Args:
        config: the run's settings.
        out_dir: run directory.
        train_set: training images; None loads ``config.dataset`` from ``data_root``.
        test_set: test images for the kNN monitor; loaded with the train set when that is None,
            else no kNN is computed unless given.
        resume: continue from ``out_dir/checkpoint.pt`` (refused if the config differs in
            anything but epochs/device/progress/monitoring); a finished run returns at once.
        progress: tqdm bars over epochs and batches.

    Returns:
        ``{"history": [one dict per epoch], "out_dir", "config", "checkpoint", "metrics"}``.
    """
    out = Path(out_dir)
    ckpt_path, metrics_path = out / "checkpoint.pt", out / "metrics.jsonl"
    state = None
    if ckpt_path.exists():
        if not resume:
            raise ValueError(f"{out} already has a checkpoint; pass --resume to continue or "
                             f"choose a new --out")
        state = load_checkpoint(ckpt_path)
        check_compatible(state["config"], config.to_dict(), run_dir=out)
        if state["epoch"] >= config.epochs:
            return _result(out, state["history"])
        old_epochs = state["config"]["epochs"]
        if config.schedule == "cosine" and old_epochs != config.epochs:
            logger.warning("resuming a cosine-schedule run with epochs %s -> %s: the lr curve is "
                           "recomputed for the new length", old_epochs, config.epochs)
    train_set, test_set = prepare_data(config, train_set, test_set, progress)
    device = resolve_device(config.device)
    with _torch_settings(config, device):
        trainer = Trainer(config, train_set, device)
        write_json_atomic(config.to_dict(), out / "config.json")
        if state is not None:
            trainer.load_state(state)
            history, start = list(state["history"]), int(state["epoch"])
        else:
            history, start = [], 0
            if config.bank_init == "features" and trainer.bank is not None:
                trainer.init_bank_from_features()
        write_jsonl_atomic(history, metrics_path)  # the checkpoint's history is the truth
        bar = tqdm(range(start, config.epochs), desc="pretrain", disable=not progress,
                   initial=start, total=config.epochs)
        for epoch in bar:
            t0 = time.perf_counter()
            row = trainer.train_epoch(epoch, progress)
            row["time_s"] = time.perf_counter() - t0
            last = epoch + 1 == config.epochs
            row.update(knn_accuracy=None, uniformity=None, tolerance=None, monitor_time_s=None)
            if config.log_metrics and ((epoch + 1) % config.knn_every == 0 or last):
                t1 = time.perf_counter()
                row.update(trainer.monitor(test_set))
                row["monitor_time_s"] = time.perf_counter() - t1
            history.append(row)
            save_atomic(trainer.state(epoch + 1, history), ckpt_path)
            append_jsonl(row, metrics_path)
            bar.set_postfix(loss=f"{row['loss']:.4f}", knn=row["knn_accuracy"])
            logger.info("epoch %d: %s", epoch + 1, row)
    return _result(out, history)


def load_trained_model(run_dir: str | os.PathLike,
                       map_location: Any = "cpu") -> tuple[ContrastiveModel, TrainConfig]:
    """The model (eval mode) and config of a run directory's last checkpoint."""
    state = load_checkpoint(Path(run_dir) / "checkpoint.pt", map_location=map_location)
    config = TrainConfig.from_dict(state["config"])
    model = build_model(config.model, config.head, config.embedding_dim, config.convnet_widths)
    model.load_state_dict(state["model"])
    return model.to(map_location).eval(), config
