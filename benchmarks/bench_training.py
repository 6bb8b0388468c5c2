"""Time the real training step per profile and device; estimate a paper epoch and the sweep.

Usage:
    python benchmarks/bench_training.py --profiles quick paper --threads 1 2
    python benchmarks/bench_training.py --profiles quick --baseline /tmp/base   # before/after
    python benchmarks/bench_training.py --profiles paper --device cuda --busy --json out.json

For each profile it builds the profile's :class:`~cl_analysis.training.trainer.Trainer` on random
uint8 images of the profile's size (the dataset size of the profile: 5,000 / 50,000 bank rows),
and times ``--steps`` calls of ``Trainer.train_step`` after two warm-up steps (median, the device
synchronised around each step). Reported per row: step time (ms), images/s, host syncs per step
(CPU: calls of the Tensor methods that read values back or copy to the host, counted by patching
them; CUDA: ``torch.cuda.set_sync_debug_mode("warn")`` warnings), the implied epoch of the
profile, a paper epoch (50,000 images at the profile's batch) and the profile's whole sweep
(its grid's runs x epochs, one run at a time). ``--busy`` adds, on CUDA, the fraction of wall time
the GPU executes kernels (``torch.profiler``) and an MFU estimate (FLOPs of one step counted by
``torch.utils.flop_counter`` over ``--peak-tflops``).

``--baseline DIR`` runs the same measurement with the package of another checkout (e.g. a
``git worktree`` of the commit before a change) in a subprocess and prints the ratio
before/after in the same table, so both run on the same machine under the same load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

if not os.environ.get("PYTHONPATH"):  # this checkout's package, not an installed one
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATASET_SIZE = 50_000  # CIFAR-10 train
SYNC_METHODS = ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__",
                "nonzero")


def _count_cpu_syncs(step) -> int:
    """Calls of value-reading / host-copying Tensor methods made by one ``step()``."""
    import torch

    count = [0]
    saved = {name: getattr(torch.Tensor, name) for name in SYNC_METHODS}

    def wrap(real):
        def counted(self, *args, **kwargs):
            count[0] += 1
            return real(self, *args, **kwargs)
        return counted

    try:
        for name, real in saved.items():
            setattr(torch.Tensor, name, wrap(real))
        step()
    finally:
        for name, real in saved.items():
            setattr(torch.Tensor, name, real)
    return count[0]


def _count_cuda_syncs(step) -> int:
    """Host syncs of one ``step()`` reported by ``torch.cuda.set_sync_debug_mode("warn")``."""
    import torch

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            step()
        finally:
            torch.cuda.set_sync_debug_mode(0)
    return sum("synchroniz" in str(w.message) for w in caught)


def measure(profile: str, device: str, threads: int, steps: int, busy: bool,
            peak_tflops: float) -> dict:
    """One row of the table: times ``Trainer.train_step`` of ``profile`` on ``device``."""
    import torch

    from cl_analysis.study.profiles import get_profile
    from cl_analysis.training.data import ImageDataset
    from cl_analysis.training.trainer import Trainer

    torch.set_num_threads(threads)
    prof = get_profile(profile)
    cfg = prof.config(device=device, num_threads=threads)
    n = cfg.subset or DATASET_SIZE
    side = 32 if (cfg.crop_from_full or cfg.image_size == 32) else cfg.image_size
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, side, side), generator=g, dtype=torch.uint8)
    data = ImageDataset(images, torch.arange(n) % 10, [str(k) for k in range(10)], "random",
                        "train", "benchmark")
    dev = torch.device(device)
    trainer = Trainer(cfg, data, dev)
    perm = torch.randperm(n, generator=g)
    batches = [perm[i * cfg.batch_size:(i + 1) * cfg.batch_size].to(dev)
               for i in range(steps + 3)]
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    state = {"i": 0}

    def step():
        trainer.train_step(batches[state["i"] % len(batches)], cfg.lr)
        state["i"] += 1

    from cl_analysis import _checks

    step()  # warm-up (the first step validates its inputs)
    step()
    sync()
    # as in Trainer.train_epoch after its first step (code without the switch: checks stay on)
    guard = _checks.value_checks(False) if hasattr(_checks, "value_checks") else _null()
    times = []
    with guard:
        # count on the accelerator's path: masked jitter (the CPU path's index lists are CPU
        # work there, but would be host syncs on a GPU); code before it had one path only
        mode = getattr(trainer.augment, "jitter_mode", None)
        if mode is not None:
            trainer.augment.jitter_mode = "mask"
        syncs = _count_cuda_syncs(step) if dev.type == "cuda" else _count_cpu_syncs(step)
        if mode is not None:
            trainer.augment.jitter_mode = mode
        for _ in range(steps):
            sync()
            t0 = time.perf_counter()
            step()
            sync()
            times.append(time.perf_counter() - t0)
        row = {}
        if busy and dev.type == "cuda":
            row.update(_busy_and_mfu(step, sync, steps, peak_tflops))
    step_s = statistics.median(times)
    per_epoch = -(-n // cfg.batch_size)
    paper_steps = -(-DATASET_SIZE // cfg.batch_size)
    from cl_analysis.study.sweep import SweepSpec

    runs = len(SweepSpec(cfg, prof.grid, profile).runs())
    row.update(profile=profile, device=device, threads=threads, batch=cfg.batch_size,
               step_ms=1e3 * step_s, img_per_s=cfg.batch_size / step_s, syncs_per_step=syncs,
               epoch_s=per_epoch * step_s, paper_epoch_s=paper_steps * step_s,
               sweep_h=runs * cfg.epochs * per_epoch * step_s / 3600, sweep_runs=runs)
    return row


class _null:
    """A do-nothing context manager (``contextlib.nullcontext`` for the baseline's code)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _busy_and_mfu(step, sync, steps: int, peak_tflops: float) -> dict:
    """GPU busy fraction (kernel time / wall time, torch.profiler) and MFU of ``step``."""
    from torch.profiler import ProfilerActivity, profile
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    sync()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
        wall = time.perf_counter() - t0
    kernel_us = sum(e.device_time for e in prof.events() if e.device_type.name == "CUDA")
    step_s = wall / steps
    return {"gpu_busy": min(1.0, kernel_us * 1e-6 / wall), "gflop_per_step": flops / 1e9,
            "mfu": flops / step_s / (peak_tflops * 1e12)}


def _baseline(root: str, args) -> list[dict]:
    """The same rows measured with the package of the checkout ``root`` (a subprocess)."""
    cmd = [sys.executable, __file__, "--rows-json", "--steps", str(args.steps),
           "--profiles", *args.profiles, "--threads", *map(str, args.threads),
           "--device", args.device]
    env = {**os.environ, "PYTHONPATH": str(Path(root).resolve())}
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", nargs="+", default=["quick", "paper"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per row (median)")
    parser.add_argument("--busy", action="store_true", help="CUDA: GPU busy fraction and MFU")
    parser.add_argument("--peak-tflops", type=float, default=989.0,
                        help="peak dense bf16 TFLOP/s for the MFU (H100 SXM: 989)")
    parser.add_argument("--baseline", help="checkout of the code before (before/after ratio)")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--rows-json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    rows = [measure(p, args.device, t, args.steps, args.busy, args.peak_tflops)
            for p in args.profiles for t in args.threads]
    if args.rows_json:
        print(json.dumps(rows))
        return
    before = _baseline(args.baseline, args) if args.baseline else None
    head = ("| profile | device | threads | batch | step (ms) | img/s | syncs/step | epoch (s) | "
            "paper epoch (s) | sweep (h) |")
    if before:
        head += " before (ms) | syncs before | after / before |"
    if args.busy:
        head += " GPU busy | GFLOP/step | MFU |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for i, r in enumerate(rows):
        line = (f"| {r['profile']} | {r['device']} | {r['threads']} | {r['batch']} | "
                f"{r['step_ms']:.1f} | {r['img_per_s']:.0f} | {r['syncs_per_step']} | "
                f"{r['epoch_s']:.1f} | {r['paper_epoch_s']:.1f} | {r['sweep_h']:.2f} |")
        if before:
            b = before[i]
            line += (f" {b['step_ms']:.1f} | {b['syncs_per_step']} | "
                     f"{r['step_ms'] / b['step_ms']:.3f} |")
        if args.busy:
            line += (f" {r.get('gpu_busy', float('nan')):.2f} | "
                     f"{r.get('gflop_per_step', float('nan')):.0f} | "
                     f"{r.get('mfu', float('nan')):.3f} |")
        print(line, flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "before": before}, indent=2))


if __name__ == "__main__":
    main()
