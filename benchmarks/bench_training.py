"""Time the pieces of one memory-bank training step, per profile, on this machine.

Usage:
    python benchmarks/bench_training.py --profiles quick paper --threads 1 2 --repeats 3

For each profile it builds the profile's model, memory bank (5,000 or 50,000 entries) and
augmentation, and times (median of ``--repeats``) the per-sample batched augmentation of one
batch, torchvision v2 applied image by image to the same batch (the per-image alternative), and a
full SGD step (augment, forward, bank similarity, loss, backward, step, bank update). It prints a
markdown table with images/s and the implied time of one epoch and of the whole run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torchvision.transforms import v2

from cl_analysis import losses
from cl_analysis.training.augment import CIFAR_MEAN, CIFAR_STD, PaperAugment
from cl_analysis.training.memory_bank import MemoryBank
from cl_analysis.training.models import build_model
from cl_analysis.study.profiles import get_profile

DATASET_SIZE = 50_000  # CIFAR-10 train


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_profile(name: str, threads: int, repeats: int) -> dict:
    """Seconds per augmentation / step for profile ``name`` on ``threads`` CPU threads."""
    torch.set_num_threads(threads)
    cfg = get_profile(name)["train"]
    n_bank = cfg.get("subset") or DATASET_SIZE
    size, batch = cfg["image_size"], cfg["batch_size"]
    model = build_model(cfg["model"], cfg["head"], 128, cfg.get("convnet_widths"))
    model = model.to(memory_format=torch.channels_last)
    bank = MemoryBank(n_bank, 128)
    augment = PaperAugment(size)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.03, momentum=0.9, weight_decay=5e-4)
    images = torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8)  # stored CIFAR size
    indices = torch.arange(batch)
    per_image = v2.Compose([
        v2.ToDtype(torch.float32, scale=True), v2.RandomResizedCrop(size, scale=(0.2, 1.0)),
        v2.ColorJitter(0.4, 0.4, 0.4, 0.4), v2.RandomGrayscale(0.2), v2.RandomHorizontalFlip(),
        v2.Normalize(CIFAR_MEAN, CIFAR_STD)])

    def step():
        z = model(augment(images).contiguous(memory_format=torch.channels_last))  # (B, 128)
        similarity = bank.similarity(z)  # (B, N_bank)
        loss = losses.info_nce(similarity, indices, temperature=0.2)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        bank.update(indices, z.detach())

    batched = _median_seconds(lambda: augment(images), repeats)
    looped = _median_seconds(lambda: torch.stack([per_image(x) for x in images]), repeats)
    step_s = _median_seconds(step, repeats)
    steps_per_epoch = -(-n_bank // batch)
    return {"profile": name, "threads": threads, "batch": batch, "augment_batched_ms":
            1e3 * batched, "augment_per_image_ms": 1e3 * looped, "step_s": step_s,
            "img_per_s": batch / step_s, "epoch_min": steps_per_epoch * step_s / 60,
            "run_h": cfg["epochs"] * steps_per_epoch * step_s / 3600}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", nargs="+", default=["quick", "paper"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print("| profile | threads | batch | augment batched (ms) | augment per image (ms) | "
          "step (s) | img/s | epoch (min) | whole run (h) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.profiles:
        for threads in args.threads:
            r = bench_profile(name, threads, args.repeats)
            print(f"| {r['profile']} | {r['threads']} | {r['batch']} | "
                  f"{r['augment_batched_ms']:.0f} | {r['augment_per_image_ms']:.0f} | "
                  f"{r['step_s']:.3f} | {r['img_per_s']:.0f} | {r['epoch_min']:.2f} | "
                  f"{r['run_h']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
