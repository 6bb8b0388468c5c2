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
from ``config.seed``; the checkpoint, written every ``checkpoint_every`` epochs and after the last
one, holds the model, optimiser, bank, history and RNG states (every rank's under DDP), so
``resume=True`` ends with the same weights as an uninterrupted run (bit-identical on CPU, where
deterministic algorithms are enforced); epochs after the last checkpoint are trained again.

Under ``torchrun`` (WORLD_SIZE > 1) every rank trains its slice of each global batch
(:mod:`.distributed`) and rank 0 alone writes the run directory and runs the monitor.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.utils.deterministic
from tqdm.auto import tqdm

from . import data, distributed
from .checkpoint import (
    append_jsonl,
    check_compatible,
    load_checkpoint,
    save_atomic,
    write_json_atomic,
    write_jsonl_atomic,
)
from .config import RESUME_FREE_FIELDS, TrainConfig
from .environment import (
    ENVIRONMENT_FILE,
    check_resume_environment,
    describe_environment,
    resolve_device,
)
from .trainer import Trainer

logger = logging.getLogger(__name__)

__all__ = ["TrainConfig", "pretrain", "resolve_device", "prepare_data"]

SAVE_SHARE = 0.05  # checkpoint_every=None: saving may take at most this share of the run's time

def prepare_data(config: TrainConfig, train_set: data.ImageDataset | None = None,
                 test_set: data.ImageDataset | None = None, progress: bool = True):
    """The (train, test) sets of a run, exactly as ``pretrain`` sees them.

    Loads both splits from ``data_root`` (None: the default folder) when ``train_set`` is None,
    keeps the ``long_tail_ratio`` class profile (``data.long_tailed_subset``), takes the
    stratified ``subset`` of the train set (seed = ``config.seed``), downsizes images larger than
    ``image_size`` (unless ``crop_from_full``) and caps the test set at ``monitor_size``
    (stratified, same seed).

    Returns:
        ``[train_set, test_set]``; test_set is None if none was given or loaded.
    """
    if train_set is None:
        root = config.data_root
        train_set = data.load_dataset(config.dataset, root, "train", progress=progress)
        if test_set is None:
            test_set = data.load_dataset(config.dataset, root, "test", progress=progress)
    if config.long_tail_ratio is not None:  # the class profile first, then any subset of it
        train_set = data.long_tailed_subset(train_set, config.long_tail_ratio, seed=config.seed)
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
        resume: continue from ``out_dir/checkpoint.pt`` (refused if the config differs in a
            field outside ``RESUME_FREE_FIELDS``, or the device type / CPU thread count differs
            from the run's ``environment.json``); a finished run returns at once.
        progress: tqdm bars over epochs and batches.

    Returns:
        ``{"history": [one dict per epoch], "out_dir", "config", "checkpoint", "metrics"}``.

    Raises:
        ValueError: an existing checkpoint without ``resume``, an incompatible resume, a device
            that is not available, or bad data (before any training step).
    """
    started, device_name = distributed.init_from_env(config.device)
    try:
        return _pretrain(config, Path(out_dir), device_name, train_set, test_set, resume, progress)
    finally:
        if started:
            torch.distributed.destroy_process_group()


def _saved_config(state: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's config with the fields it predates at their defaults (they did not exist)."""
    return {**TrainConfig().to_dict(), **state["config"]}


class _SaveClock:
    """When to write the checkpoint: every ``k`` epochs and after the last one.

    ``k=None`` (adaptive): after an epoch, save if the training time since the last save is at
    least ``(1 - SAVE_SHARE) / SAVE_SHARE`` times the last save's duration, so saving costs at
    most ``SAVE_SHARE`` of the run (the first epoch always saves, measuring it). Measured: the
    paper profile's 116 MB checkpoint takes 0.12-0.34 s (median 0.13 s) on this project's local
    disk, 1-3 s on a network filesystem (issue 10). So a CPU run (epochs of seconds to 19 min)
    saves every epoch, as before; a GPU paper run at ~1.5-4 s/epoch saves every ~2 epochs on a
    local disk and every ~15-40 s of training on a network filesystem, instead of paying up to
    the epoch time again for each save. An integer ``k`` fixes the cadence instead.
    Under DDP rank 0 decides for every rank.
    """

    def __init__(self, every: int | None):
        self.every, self.save_s, self.since = every, None, 0.0

    def due(self, epoch: int, last: bool, epoch_s: float) -> bool:
        self.since += epoch_s
        if last:
            save = True
        elif self.every is not None:
            save = epoch % self.every == 0
        else:
            save = self.save_s is None or self.save_s * (1 - SAVE_SHARE) <= SAVE_SHARE * self.since
        if distributed.is_distributed():
            flag = [save]
            torch.distributed.broadcast_object_list(flag, src=0)
            save = flag[0]
        return save

    def saved(self, seconds: float) -> None:
        self.save_s, self.since = seconds, 0.0


def _pretrain(config: TrainConfig, out: Path, device_name: str, train_set, test_set,
              resume: bool, progress: bool) -> dict[str, Any]:
    ckpt_path, metrics_path = out / "checkpoint.pt", out / "metrics.jsonl"
    main = distributed.is_main()
    progress = progress and main
    state = None
    if ckpt_path.exists():
        if not resume:
            raise ValueError(f"{out} already has a checkpoint; pass --resume to continue or "
                             f"choose a new --out")
        state = load_checkpoint(ckpt_path)
        check_compatible(_saved_config(state), config.to_dict(), ignore=RESUME_FREE_FIELDS,
                         run_dir=out)
        if state["epoch"] >= config.epochs:
            return _result(out, state["history"])
        old_epochs = state["config"]["epochs"]
        if config.schedule == "cosine" and old_epochs != config.epochs:
            logger.warning("resuming a cosine-schedule run with epochs %s -> %s: the lr curve is "
                           "recomputed for the new length", old_epochs, config.epochs)
    train_set, test_set = prepare_data(config, train_set, test_set, progress)
    device = resolve_device(device_name)
    with _torch_settings(config, device):
        env = describe_environment(device)
        if state is not None:
            check_resume_environment(out, env)
        trainer = Trainer(config, train_set, device)
        if main:
            write_json_atomic(config.to_dict(), out / "config.json")
            write_json_atomic(env, out / ENVIRONMENT_FILE)
        if state is not None:
            trainer.load_state(state)
            history, start = list(state["history"]), int(state["epoch"])
        else:
            history, start = [], 0
            if config.bank_init == "features" and trainer.bank is not None:
                trainer.init_bank_from_features()
        if main:
            write_jsonl_atomic(history, metrics_path)  # the checkpoint's history is the truth
        clock = _SaveClock(config.checkpoint_every)
        bar = tqdm(range(start, config.epochs), desc="pretrain", disable=not progress,
                   initial=start, total=config.epochs)
        for epoch in bar:
            last = epoch + 1 == config.epochs
            monitored = config.log_metrics and ((epoch + 1) % config.knn_every == 0 or last)
            t0 = time.perf_counter()
            row = trainer.train_epoch(epoch, progress, monitored=monitored)
            row["time_s"] = time.perf_counter() - t0
            row.update(knn_accuracy=None, uniformity=None, tolerance=None, monitor_time_s=None)
            if monitored and main:
                t1 = time.perf_counter()
                row.update(trainer.monitor(test_set))
                row["monitor_time_s"] = time.perf_counter() - t1
            history.append(row)
            if clock.due(epoch + 1, last, row["time_s"]):
                t2 = time.perf_counter()
                ckpt = trainer.state(epoch + 1, history)  # a collective under DDP
                if main:
                    save_atomic(ckpt, ckpt_path)
                clock.saved(time.perf_counter() - t2)
            if main:
                append_jsonl(row, metrics_path)
            bar.set_postfix(loss=f"{row['loss']:.4f}", knn=row["knn_accuracy"])
            logger.info("epoch %d: %s", epoch + 1, row)
        distributed.barrier()  # no rank returns before rank 0 has written the last checkpoint
    return _result(out, history)
