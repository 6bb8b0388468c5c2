"""Test data and configs shared by the test modules (importable from every sub-folder)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cl_analysis.training.config import TrainConfig
from cl_analysis.training.data import ImageDataset


def make_data(n: int = 64, size: int = 16, classes: int = 4, seed: int = 0) -> ImageDataset:
    """``n`` random uint8 images (n, 3, size, size), labels cycling over ``classes``."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    return ImageDataset(images, torch.arange(n) % classes, [f"c{k}" for k in range(classes)],
                        "synthetic", "train", "made in the test")


def tiny_config(**overrides) -> TrainConfig:
    """A seconds-long CPU run: 8-16-16-16 ConvNet, 16x16 images, batch 16, 3 epochs, K = 8."""
    cfg = dict(model="convnet", convnet_widths=(8, 16, 16, 16), embedding_dim=32, image_size=16,
               batch_size=16, epochs=3, lr_milestones=(), hard_k=8, device="cpu", num_threads=1)
    return TrainConfig(**{**cfg, **overrides})


def write_tree(root: Path, train_per_class: int = 12, test_per_class: int = 6, classes: int = 3,
               size: int = 16, digits: int = 3) -> Path:
    """root/{train,test}/class<k>/*.png: a class-dependent colour plus noise."""
    rng = np.random.default_rng(0)
    for split, n in (("train", train_per_class), ("test", test_per_class)):
        for k in range(classes):
            folder = root / split / f"class{k}"
            folder.mkdir(parents=True)
            colour = np.roll(np.array([200, 60, 60]), k)
            for i in range(n):
                arr = np.clip(colour + rng.normal(0, 30, (size, size, 3)), 0, 255)
                Image.fromarray(arr.astype(np.uint8)).save(folder / f"{i:0{digits}d}.png")
    return root
