"""Training part of scripts/gpu_check.sh: a short run killed in the middle, resumed, evaluated.

Usage (the shell script calls it): ``python scripts/gpu_check.py --out DIR [--device cuda]``.

On CUDA: the paper profile (ResNet-18, 50,000 images, batch 128, K = 4095) for ``--epochs``
(default 10). On a CPU: the smoke profile for 4 epochs. Data: the real CIFAR-10 from
``CL_DATA_ROOT`` when set, else random 32x32 images of CIFAR-10's size (the timing does not
depend on the pixels; the accuracies then mean nothing). The run is interrupted by an exception
after half its epochs, resumed with ``resume=True``, then evaluated (kNN, metrics and a 5-epoch
linear probe). Writes ``DIR/run/`` and ``DIR/train.json`` (epoch times, the measured paper epoch,
the sweep estimate, evaluation numbers) and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from cl_analysis.evaluation.evaluate import evaluate_run  # noqa: E402
from cl_analysis.study.profiles import get_profile  # noqa: E402
from cl_analysis.study.sweep import SweepSpec  # noqa: E402
from cl_analysis.training.data import ImageDataset, load_dataset  # noqa: E402
from cl_analysis.training.pretrain import pretrain  # noqa: E402
from cl_analysis.training.trainer import Trainer  # noqa: E402


class _Interrupt(Exception):
    """Raised in the middle of the run to simulate a crash."""


def _data(profile_name: str, quick: bool):
    root = os.environ.get("CL_DATA_ROOT")
    if root:
        return load_dataset("cifar10", root, "train"), load_dataset("cifar10", root, "test")
    g = torch.Generator().manual_seed(0)
    n_train = 500 if quick else 50_000
    n_test = 200 if quick else 10_000

    def make(n):
        images = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
        return ImageDataset(images, torch.arange(n) % 10, [str(k) for k in range(10)],
                            "cifar10", "train", "random images (gpu_check)")
    return make(n_train), make(n_test)


def main() -> None:
    """Parse the arguments, train with a crash and a resume, evaluate, write train.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--epochs", type=int, default=None)
    args = parser.parse_args()
    cuda = args.device.startswith("cuda")
    name = "paper" if cuda else "smoke"
    epochs = args.epochs or (10 if cuda else 4)
    profile = get_profile(name)
    overrides = dict(device=args.device, epochs=epochs, probe_epochs=5, checkpoint_every=None)
    if not cuda:
        overrides.update(num_threads=1)
    config = profile.config(**overrides)
    train, test = _data(name, quick=not cuda)
    out = Path(args.out)
    run_dir = out / "run"
    original, half = Trainer.train_epoch, epochs // 2

    def crashing(self, epoch, *a, **k):
        if epoch == half:
            raise _Interrupt(f"simulated crash in epoch {epoch + 1}")
        return original(self, epoch, *a, **k)

    Trainer.train_epoch = crashing
    t0 = time.perf_counter()
    try:
        pretrain(config, run_dir, train_set=train, test_set=test, progress=False)
    except _Interrupt:
        pass
    finally:
        Trainer.train_epoch = original
    saved = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)["epoch"]
    result = pretrain(config, run_dir, train_set=train, test_set=test, resume=True,
                      progress=False)
    train_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    ev = evaluate_run(run_dir, train_set=train, test_set=test, progress=False)
    eval_s = time.perf_counter() - t1
    times = [r["time_s"] for r in result["history"]]
    steady = statistics.median(times[1:]) if len(times) > 1 else times[0]
    used = min(config.subset or len(train), len(train))
    scale = 50_000 / used  # epoch time of the full CIFAR-10 train set
    runs = len(SweepSpec(profile.run, profile.grid, name).runs())
    summary = {
        "profile": name, "device": args.device, "epochs": epochs, "images": used,
        "crashed_in_epoch": half + 1, "resumed_from_epoch": saved,
        "history_epochs": [r["epoch"] for r in result["history"]],
        "epoch_s": times, "epoch_s_median_after_first": steady,
        "cifar10_epoch_s_estimate": steady * scale,
        "profile_sweep_h_estimate": runs * profile.run.epochs * steady * scale / 3600,
        "profile_sweep_runs": runs, "train_wall_s": train_s, "eval_s": eval_s,
        "knn_top1": ev.get("knn_top1"), "linear_top1": ev.get("linear_top1"),
        "real_data": bool(os.environ.get("CL_DATA_ROOT")),
    }
    if summary["history_epochs"] != list(range(1, epochs + 1)):
        raise SystemExit(f"resume broke the history: {summary['history_epochs']}")
    (out / "train.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
