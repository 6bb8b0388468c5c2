"""Time forward + backward of cl_analysis's NT-Xent against lightly and pytorch-metric-learning.

Usage:
    python benchmarks/bench_losses.py --sizes 256 1024 4096 --dim 128 --repeats 5

For each batch size N it draws two (N, D) float32 views and times, round-robin so that load from
other processes hits every method alike: ``nt_xent``; ``info_nce`` on ``simclr_similarity``;
lightly's ``NTXentLoss``; and pytorch-metric-learning's ``NTXentLoss`` while its (2N)^3 pair
tensors fit in ``--pml-max-gib``. Peers that are not installed are skipped. Every loss value must
match ``nt_xent`` (rtol 1e-4); the script prints a markdown table of median times and exits 1 on a
mismatch.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import torch

from cl_analysis import losses

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def peers(temperature: float, n: int, pml_max_gib: float) -> dict[str, Loss | str]:
    """Peer implementations by name; a string instead of a callable says why one is skipped."""
    out: dict[str, Loss | str] = {}
    try:
        from lightly.loss import NTXentLoss as LightlyNTXent

        lightly_loss = LightlyNTXent(temperature=temperature)
        out["lightly"] = lambda z1, z2: lightly_loss(z1, z2)
    except ImportError:
        out["lightly"] = "not installed"
    try:
        from pytorch_metric_learning.losses import NTXentLoss as PMLNTXent

        pml_loss = PMLNTXent(temperature=temperature)
        labels = torch.arange(n).repeat(2)  # (2N,) the two views of an image share a label
        gib = 4 * 4 * (2 * n) ** 3 / 2**30  # ~4 float32 (2N, 2N(2N-2)) pair tensors
        if gib > pml_max_gib:
            out["PML"] = f"needs ~{gib:.0f} GiB"
        else:
            out["PML"] = lambda z1, z2: pml_loss(torch.cat([z1, z2]), labels)
    except ImportError:
        out["PML"] = "not installed"
    return out


def time_once(fn: Loss, z1: torch.Tensor, z2: torch.Tensor) -> tuple[float, float]:
    """Seconds for one forward + backward on fresh leaves, and the loss value."""
    a, b = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    start = time.perf_counter()
    loss = fn(a, b)
    loss.backward()
    return time.perf_counter() - start, loss.item()


def bench(n: int, args: argparse.Namespace) -> dict[str, tuple[float, float] | str]:
    """Median seconds and loss value per method at batch size ``n`` (or a skip reason)."""
    g = torch.Generator().manual_seed(n)
    z1, z2 = torch.randn(2, n, args.dim, generator=g).unbind(0)  # (N, D) each
    tau = args.temperature
    methods: dict[str, Loss | str] = {
        "nt_xent": lambda a, b: losses.nt_xent(a, b, tau),
        "info_nce(simclr_similarity)": lambda a, b: losses.info_nce(
            *losses.simclr_similarity(a, b), tau),
        **peers(tau, n, args.pml_max_gib),
    }
    runnable = {k: f for k, f in methods.items() if callable(f)}
    times: dict[str, list[float]] = {k: [] for k in runnable}
    values: dict[str, float] = {}
    for rep in range(args.warmup + args.repeats):
        for name, fn in runnable.items():
            seconds, values[name] = time_once(fn, z1, z2)
            if rep >= args.warmup:
                times[name].append(seconds)
    return {k: (statistics.median(times[k]), values[k]) if k in runnable else methods[k]
            for k in methods}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--temperature", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--pml-max-gib", type=float, default=4.0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), D={args.dim}, "
          f"tau={args.temperature}, median of {args.repeats} (forward + backward, float32, CPU)\n")
    print("| N | method | median ms | time / lightly | loss | equal |")
    print("|---|---|---|---|---|---|")
    ok = True
    for n in args.sizes:
        results = bench(n, args)
        base_value = results["nt_xent"][1]
        lightly = results["lightly"]
        for name, result in results.items():
            if isinstance(result, str):
                print(f"| {n} | {name} | skipped: {result} | | | |")
                continue
            ms, value = result[0] * 1e3, result[1]
            ratio = f"{ms / (lightly[0] * 1e3):.2f}x" if not isinstance(lightly, str) else "-"
            equal = abs(value - base_value) <= 1e-4 * abs(base_value)
            ok &= equal
            mark = "yes" if equal else "NO"
            print(f"| {n} | {name} | {ms:.1f} | {ratio} | {value:.6f} | {mark} |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
