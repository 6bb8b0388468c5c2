"""Datasets as uint8 tensors: where they live, pre-flight checks, a decode cache, subsets.

Every dataset becomes an :class:`ImageDataset`: ``images`` uint8 ``(N, 3, H, W)`` on the CPU plus
int64 ``labels`` ``(N,)``. Augmentation happens later, per batch, on the training device
(:mod:`cl_analysis.training.augment`), so images are decoded once and never per epoch.

Where the data lives (``root``; ``--data-root`` on the command line):

* ``root=None`` is :func:`default_data_root`, ``$XDG_CACHE_HOME/cl-analysis/datasets``
  (``~/.cache/cl-analysis/datasets``). ``cifar10``, ``cifar100`` and ``svhn`` missing there (or in
  an existing ``root``) are downloaded with torchvision (its own progress bar) when
  ``download=True`` and the network allows; otherwise a ``ValueError`` names how to point at a
  local copy, before any other work.
* Two layouts are read, for every name in ``DATASETS``:

  - a torchvision folder: ``root/cifar-10-batches-py/``, ``root/cifar-100-python/`` or
    ``root/{train,test}_32x32.mat`` (as written by ``torchvision.datasets``);
  - a class-folder tree: ``root/train/<class>/*.jpg`` and ``root/test/<class>/*.jpg`` (any of
    ``IMAGE_EXTENSIONS``). Classes are sorted by name, which for the CIFAR-10 JPEG export is the
    CIFAR-10 label order, so ``--dataset cifar10 --data-root ../shared/data/cifar10`` works.
    ``imagefolder`` is this layout for any data set.

Data that cannot be right is refused by :func:`check_dataset` (cheap: it lists files, decodes
nothing; the CLI runs it before any training) and again by :func:`load_dataset`: an unknown name,
a missing root, a root that is one split (``.../cifar10/train``: pass its parent), a class-folder
tree without a test split (the training images are never used as the test split), train and
test splits with different classes, and a tree whose class count does not match the name (a
CIFAR-10 tree read as ``cifar100``).

Decoded image folders are cached with ``torch.save`` in a user cache folder keyed by content,
never inside the data folder: the environment variable ``CL_CACHE_DIR`` overrides the default
``~/.cache/cl-analysis/images`` (see :mod:`cl_analysis.training.data_cache`). The torchvision files
are already arrays and are not cached. docs/data.md has the details.

:func:`synthetic_dataset` makes a small labelled stand-in (coloured stripe patterns) in memory,
for the notebooks' fast mode when no dataset copy exists.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from tqdm.auto import tqdm

from .._checks import check_choice
from .data_cache import (
    cache_entry,
    default_cache_dir,
    fingerprint,
    read_cache,
    user_cache_home,
    write_cache,
)

logger = logging.getLogger(__name__)

DATASETS = ("cifar10", "cifar100", "svhn", "imagefolder")
SPLITS = ("train", "test")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".gif", ".tif", ".tiff",
                    ".webp")
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "svhn": 10}
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                   "truck")
# torchvision's files per split (relative to root) and the published split sizes
_TV_FILES = {
    "cifar10": {"train": [f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)],
                "test": ["cifar-10-batches-py/test_batch"]},
    "cifar100": {"train": ["cifar-100-python/train"], "test": ["cifar-100-python/test"]},
    "svhn": {"train": ["train_32x32.mat"], "test": ["test_32x32.mat"]},
}
_TV_SIZES = {"cifar10": {"train": 50000, "test": 10000},
             "cifar100": {"train": 50000, "test": 10000},
             "svhn": {"train": 73257, "test": 26032}}
_TV_INNER = {"cifar-10-batches-py": "cifar10", "cifar-100-python": "cifar100"}

__all__ = ["DATASETS", "SPLITS", "IMAGE_EXTENSIONS", "NUM_CLASSES", "ImageDataset",
           "default_data_root", "default_cache_dir", "check_dataset", "fetch_dataset",
           "load_dataset", "subset", "long_tailed_subset", "resize", "synthetic_dataset"]


@dataclass
class ImageDataset:
    """Decoded images and labels of one dataset split.

    Attributes:
        images: uint8 ``(N, 3, H, W)`` CPU tensor.
        labels: int64 ``(N,)`` class indices into ``classes``.
        classes: class names; ``classes[k]`` is the name of label ``k``.
        name: dataset name (``"cifar10"``, ...).
        split: ``"train"`` or ``"test"``.
        source: where the data came from (a folder, torchvision files, a subset of either).
    """

    images: Tensor
    labels: Tensor
    classes: list[str]
    name: str
    split: str
    source: str

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.dim() != 4 or self.images.shape[1] != 3:
            raise ValueError(f"images must be uint8 (N, 3, H, W), got {self.images.dtype} "
                             f"{tuple(self.images.shape)}; convert with (x * 255).round().byte()")
        if self.labels.shape != (self.images.shape[0],) or self.labels.dtype != torch.int64:
            raise ValueError(f"labels must be int64 (N,) = ({self.images.shape[0]},), got "
                             f"{self.labels.dtype} {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def default_data_root() -> Path:
    """The data folder used when no root is given: ``$XDG_CACHE_HOME/cl-analysis/datasets``.

    ``~/.cache/cl-analysis/datasets`` when ``XDG_CACHE_HOME`` is unset (the convention of
    ``torch.hub`` and Hugging Face datasets). Downloads of cifar10/cifar100/svhn go here, in
    torchvision's layout.
    """
    return user_cache_home() / "datasets"


def check_dataset(name: str, root: str | os.PathLike | None = None) -> dict:
    """Pre-flight check of a data set, before any training: lists files, decodes nothing.

    Args:
        name: one of ``DATASETS``.
        root: the data root; None means :func:`default_data_root`.

    Returns:
        A description: ``name``; ``root`` (absolute path, str); ``layout`` (``"class-folders"``,
        ``"torchvision"``, or ``"download"`` when the files are missing and
        :func:`load_dataset` would download them); ``splits`` (split -> number of images; the
        published size for torchvision files); ``num_classes``; ``classes`` (list of names, None
        where unknown without reading the data, i.e. CIFAR-100 before its download).

    Raises:
        ValueError: the name is unknown; an explicit root is missing or a file; the root is a
            split folder or torchvision's inner folder; a class-folder tree lacks a split, has
            train and test splits with different classes, or has a class count other than the
            name's (10 for cifar10/svhn, 100 for cifar100); ``imagefolder`` without a root.
    """
    return _inspect(name, root, SPLITS)


def fetch_dataset(name: str, root: str | os.PathLike | None = None, *, download: bool = True
                  ) -> dict:
    """:func:`check_dataset`, then download cifar10/cifar100/svhn if their files are missing.

    Call it once before starting parallel workers, so that they never download concurrently.

    Args:
        name: one of ``DATASETS``.
        root: the data root; None means :func:`default_data_root`.
        download: allow the download (needs the network).

    Returns:
        :func:`check_dataset`'s description after the download (``layout`` is no longer
        ``"download"``).

    Raises:
        ValueError: as :func:`check_dataset`; or the files are missing and cannot be downloaded
            (offline, ``download=False``): the message names ``--data-root`` and the layouts.
    """
    info = _inspect(name, root, SPLITS)
    if info["layout"] == "download":
        for split in SPLITS:
            _download(name, Path(info["root"]), split, download)
        info = _inspect(name, root, SPLITS)
    return info


def load_dataset(name: str, root: str | os.PathLike | None = None, split: str = "train", *,
                 download: bool = True, progress: bool = True,
                 cache_dir: str | os.PathLike | None = None) -> ImageDataset:
    """Load a dataset split as uint8 tensors.

    Args:
        name: one of ``DATASETS``.
        root: data root (``--data-root``): a torchvision folder or a class-folder tree; None means
            :func:`default_data_root`.
        split: ``"train"`` or ``"test"``.
        download: download cifar10/cifar100/svhn with torchvision when their files are missing
            (needs the network; torchvision shows its own progress bar).
        progress: show a tqdm bar while decoding an image folder.
        cache_dir: folder of the decoded-image cache; None means :func:`default_cache_dir`
            (env ``CL_CACHE_DIR``, else ``~/.cache/cl-analysis/images``).

    Returns:
        The split as an :class:`ImageDataset`: images uint8 ``(N, 3, H, W)``, labels int64 ``(N,)``.

    Raises:
        ValueError: everything :func:`check_dataset` refuses (checked for this split, before any
            other work); missing files that cannot be downloaded; unreadable or differently sized
            images; a cache folder inside the data folder.
    """
    listing: dict[str, list[os.DirEntry]] = {}  # class -> image files, listed once
    info = _inspect(name, root, (split,), listing)
    root = Path(info["root"])
    if info["layout"] == "class-folders":
        return _load_image_folder(name, root, split, listing, cache_dir, progress)
    if info["layout"] == "download":
        _download(name, root, split, download)
    return _load_torchvision(name, root, split)


def subset(dataset: ImageDataset, size: int | float, seed: int = 0,
           stratified: bool = True) -> ImageDataset:
    """A seeded random subset, keeping class proportions when ``stratified``.

    Stratified subsets give class k ``floor(n * N_k / N)`` images and hand the remaining ones to
    the classes with the largest fractional parts (ties: lowest label first). For a balanced
    dataset that is ``n // K`` per class plus one more for the first ``n % K`` classes.

    Args:
        dataset: the full split.
        size: number of images, or a fraction of ``len(dataset)`` in (0, 1].
        seed: seed of the random choice within each class.
        stratified: keep class proportions; otherwise draw uniformly from the whole set.

    Returns:
        A new :class:`ImageDataset`; images keep their original order.
    """
    total = len(dataset)
    if isinstance(size, bool) or not isinstance(size, (int, float, np.integer, np.floating)):
        raise ValueError(f"subset size must be an int or a fraction in (0, 1], got {size!r}")
    if isinstance(size, (float, np.floating)):
        if not 0.0 < size <= 1.0:
            raise ValueError(f"a fractional subset size must lie in (0, 1], got {size}; "
                             f"pass an int for a number of images")
        size = max(1, int(round(size * total)))
    size = int(size)
    if not 0 < size <= total:
        raise ValueError(f"subset size {size} must be in [1, {total}] (the size of "
                         f"{dataset.name}/{dataset.split}); pass a smaller size or a fraction")
    g = torch.Generator().manual_seed(int(seed))
    if not stratified:
        idx = torch.randperm(total, generator=g)[:size]
    else:
        counts = torch.bincount(dataset.labels, minlength=len(dataset.classes))  # (K,)
        exact = counts.double() * size / total  # (K,) proportional quota
        quota = exact.floor().long()
        spare = size - int(quota.sum())
        order = sorted(range(len(counts)), key=lambda k: (-(exact[k] - quota[k]).item(), k))
        quota[order[:spare]] += 1
        parts = []
        for k in range(len(counts)):
            members = (dataset.labels == k).nonzero().squeeze(1)  # (N_k,)
            parts.append(members[torch.randperm(len(members), generator=g)[: int(quota[k])]])
        idx = torch.cat(parts)
    idx = idx.sort().values  # (size,)
    return replace(dataset, images=dataset.images[idx], labels=dataset.labels[idx],
                   source=f"{dataset.source} | subset(size={size}, seed={seed}, "
                          f"stratified={stratified})")


def long_tailed_subset(dataset: ImageDataset, ratio: float, seed: int = 0) -> ImageDataset:
    """A long-tailed subset with an exponential class profile (CIFAR-10-LT, issue 11 §3).

    Cao et al., "Learning Imbalanced Datasets with Label-Distribution-Aware Margin Loss"
    (NeurIPS 2019), the profile Kukleva et al. (ICLR 2023) train on: class k (labels 0..K-1 in
    order) keeps n_k = floor(n_max * ratio ** (-k / (K - 1))) images, n_max the smallest class
    count, so class 0 keeps n_max and class K-1 n_max / ratio (at least 1). On CIFAR-10 with
    ratio 100: 5000, 2997, 1796, ..., 50 (12,406 images). The images of each class are a seeded
    random choice; the order of the kept images is the dataset's.

    Args:
        dataset: a split with K >= 2 classes.
        ratio: imbalance ratio n_0 / n_{K-1} >= 1 (1: a balanced subset of n_max per class).
        seed: seed of the choice within each class.

    Returns:
        A new :class:`ImageDataset`.

    Raises:
        ValueError: ratio < 1 or not finite, fewer than 2 classes, or an empty class.
    """
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or \
            not math.isfinite(ratio) or ratio < 1:
        raise ValueError(f"long_tail_ratio must be a number >= 1 (n_first / n_last class; "
                         f"CIFAR-10-LT: 100), got {ratio!r}")
    k = len(dataset.classes)
    counts = torch.bincount(dataset.labels, minlength=k)  # (K,)
    if k < 2 or int(counts.min()) == 0:
        raise ValueError(f"a long-tailed subset needs >= 2 classes, each with images; "
                         f"{dataset.name}/{dataset.split} has counts {counts.tolist()}")
    n_max = int(counts.min())
    quota = [max(1, math.floor(n_max * ratio ** (-c / (k - 1)) + 1e-9)) for c in range(k)]
    g = torch.Generator().manual_seed(int(seed))
    parts = []
    for c in range(k):
        members = (dataset.labels == c).nonzero().squeeze(1)  # (N_c,)
        parts.append(members[torch.randperm(len(members), generator=g)[: quota[c]]])
    idx = torch.cat(parts).sort().values
    return replace(dataset, images=dataset.images[idx], labels=dataset.labels[idx],
                   source=f"{dataset.source} | long_tailed_subset(ratio={ratio}, seed={seed})")


def resize(dataset_or_images: ImageDataset | Tensor, size: int,
           chunk: int = 8192) -> ImageDataset | Tensor:
    """Resize uint8 images to ``size x size`` (bilinear, antialiased), e.g. 32 -> 16 for quick runs.

    Args:
        dataset_or_images: an :class:`ImageDataset` or a uint8 ``(N, 3, H, W)`` tensor.
        size: output side length.
        chunk: images resized at a time (bounds the float workspace).

    Returns:
        The same kind of object, with ``(N, 3, size, size)`` images.
    """
    from torchvision.transforms.v2 import functional as TF

    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"resize size must be a positive int (the output side), got {size!r}")
    if isinstance(dataset_or_images, ImageDataset):
        images = resize(dataset_or_images.images, size, chunk)
        return replace(dataset_or_images, images=images,
                       source=f"{dataset_or_images.source} | resize({size})")
    images = dataset_or_images
    if not isinstance(images, Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError("resize takes an ImageDataset or a uint8 (N, 3, H, W) tensor, got "
                         f"{getattr(images, 'dtype', type(images).__name__)} "
                         f"{tuple(getattr(images, 'shape', ()))}")
    if tuple(images.shape[-2:]) == (size, size):
        return images
    parts = [TF.resize(images[i:i + chunk], [size, size], antialias=True)  # (n, 3, size, size)
             for i in range(0, len(images), chunk)]
    return torch.cat(parts) if parts else images.new_empty((0, 3, size, size))


def synthetic_dataset(n_per_class: int = 100, num_classes: int = 10, size: int = 16,
                      split: str = "train", seed: int = 0) -> ImageDataset:
    """A CIFAR-sized stand-in without any download: class-dependent coloured stripes plus noise.

    Class k has its own stripe orientation (k·180°/K), stripe frequency (1, 1.5 or 2 periods per
    image side) and pair of colours (hue k/K and its complement). Every image gets a random phase,
    brightness and Gaussian pixel noise, so instances differ while a tiny ConvNet can still learn
    the classes (for the notebooks' fast mode when no CIFAR-10 copy is available). ``train`` and
    ``test`` are drawn from different random streams of the same ``seed``.

    Args:
        n_per_class: images per class (>= 1); the split holds ``n_per_class * num_classes``.
        num_classes: number of classes K (>= 2).
        size: image side in pixels (>= 4); 16 matches the quick/smoke profiles.
        split: ``"train"`` or ``"test"``.
        seed: seed of the draw; the same arguments give the same images.

    Returns:
        An :class:`ImageDataset` named ``"synthetic"``, images sorted by class.
    """
    check_choice("split", split, SPLITS)
    for arg, value, low in (("n_per_class", n_per_class, 1), ("num_classes", num_classes, 2),
                            ("size", size, 4)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{arg} must be an int >= {low}, got {value!r}")
    n_per_class, num_classes, size = int(n_per_class), int(num_classes), int(size)
    g = torch.Generator().manual_seed(2 * int(seed) + SPLITS.index(split))
    labels = torch.arange(num_classes).repeat_interleave(n_per_class)  # (N,)
    n = len(labels)
    k = labels.double()
    angle = torch.pi * k / num_classes  # (N,) stripe orientation
    freq = 1.0 + 0.5 * (labels % 3).double()  # (N,) periods per image side
    hue = k / num_classes
    coords = (torch.arange(size, dtype=torch.float64) + 0.5) / size  # (S,)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")  # (S, S)
    proj = xx * angle.cos()[:, None, None] + yy * angle.sin()[:, None, None]  # (N, S, S)
    phase = 2 * torch.pi * torch.rand(n, 1, 1, generator=g, dtype=torch.float64)
    stripes = 0.5 + 0.5 * torch.sin(2 * torch.pi * freq[:, None, None] * proj + phase)  # (N, S, S)
    colour_a, colour_b = _hue_to_rgb(hue), _hue_to_rgb((hue + 0.5) % 1.0)  # (N, 3) each
    images = (stripes[:, None] * colour_a[:, :, None, None]
              + (1 - stripes[:, None]) * 0.35 * colour_b[:, :, None, None])  # (N, 3, S, S)
    images = images * (0.7 + 0.3 * torch.rand(n, 1, 1, 1, generator=g, dtype=torch.float64))
    images = images + 0.08 * torch.randn(images.shape, generator=g, dtype=torch.float64)
    images = (images.clamp(0, 1) * 255).round().to(torch.uint8)
    return ImageDataset(images, labels.to(torch.int64), [f"pattern{c}" for c in range(num_classes)],
                        "synthetic", split, f"synthetic(n_per_class={n_per_class}, num_classes="
                        f"{num_classes}, size={size}, seed={seed})")


def _hue_to_rgb(hue: Tensor) -> Tensor:
    """Colours (N, 3) in [0, 1] on a smooth colour wheel, from hues (N,) in [0, 1)."""
    offsets = torch.tensor([0.0, 2.0 / 3.0, 1.0 / 3.0], dtype=hue.dtype)  # R, G, B
    return (0.5 + 0.5 * torch.cos(2 * torch.pi * (hue[:, None] + offsets))).clamp(0, 1)


# --------------------------------------------------------------------------- layout checks
def _layouts(name: str, root: Path | str = "root") -> str:
    """The layouts accepted for ``name``, for error messages."""
    tv = {"cifar10": f"{root}/cifar-10-batches-py/", "cifar100": f"{root}/cifar-100-python/",
          "svhn": f"{root}/train_32x32.mat and {root}/test_32x32.mat"}.get(name)
    tree = f"a class-folder tree ({root}/train/<class>/*.jpg and {root}/test/<class>/*.jpg)"
    return f"a torchvision folder ({tv}) or {tree}" if tv else tree


def _names(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")


def _inspect(name: str, root: str | os.PathLike | None, splits: tuple[str, ...],
             listing: dict | None = None) -> dict:
    """Check ``root`` for ``name`` and the given splits; see :func:`check_dataset`.

    ``listing``, if given, receives the image files of the first split's classes (class ->
    sorted ``os.DirEntry`` list), so that loading does not list 50,000 files twice.
    """
    check_choice("dataset", name, DATASETS)
    for split in splits:
        check_choice("split", split, SPLITS)
    explicit = root is not None
    root = (Path(root).expanduser() if explicit else default_data_root()).absolute()
    info = {"name": name, "root": str(root), "layout": None, "num_classes": NUM_CLASSES.get(name),
            "classes": None, "splits": {}}
    if name == "imagefolder" and not explicit:
        raise ValueError("--dataset imagefolder needs --data-root: the root of your class-folder "
                         "tree (root/train/<class>/*.jpg and root/test/<class>/*.jpg)")
    if root.exists() and not root.is_dir():
        raise ValueError(f"data root {root} is a file, not a folder; pass --data-root pointing "
                         f"at the folder that holds {_layouts(name)}")
    if not root.exists():
        if explicit:
            fix = (f", or leave --data-root out to download {name} into {default_data_root()}"
                   if name in _TV_FILES else "")
            raise ValueError(f"data root {root} does not exist; pass --data-root pointing at "
                             f"your copy of {name}: {_layouts(name)}{fix}")
        return _torchvision_info(info, name, root, splits, present=False)
    if root.name in _TV_INNER:
        raise ValueError(f"{root} is torchvision's {_TV_INNER[root.name]} folder itself; pass its "
                         f"parent {root.parent} as --data-root")
    flat = _class_dirs(root)
    trees = {s: _class_dirs(root / s) for s in SPLITS}
    if flat:
        found = _names([d.name for d in flat])
        if root.name in SPLITS:
            raise ValueError(f"{root} looks like the {root.name} split itself (it holds class "
                             f"folders: {found}); pass its parent {root.parent} as --data-root")
        if any(trees.values()):
            raise ValueError(f"{root} mixes split folders and class folders ({found}); use "
                             f"{root}/train/<class>/ and {root}/test/<class>/ only")
        raise ValueError(f"{root} holds class folders ({found}) but no train/ and test/ split "
                         f"folders; arrange it as {root}/train/<class>/* and "
                         f"{root}/test/<class>/* (hold out some images of every class as the "
                         f"test split)")
    if name == "imagefolder" or any(trees.values()):
        return _class_folder_info(info, name, root, splits, trees, listing)
    present = all((root / f).is_file() for s in splits for f in _TV_FILES[name][s])
    return _torchvision_info(info, name, root, splits, present)


def _class_folder_info(info: dict, name: str, root: Path, splits: tuple[str, ...],
                       trees: dict[str, list[Path]], listing: dict | None) -> dict:
    classes = {}
    for split in splits:
        if not trees[split]:
            other = [s for s in SPLITS if trees[s]]
            found = f" (found: {', '.join(f'{s}/' for s in other)})" if other else ""
            extra = (" The training images are never used as the test split: hold out some "
                     "images of every class" if split == "test" else "")
            raise ValueError(f"{root} has no {split} split{found}: expected image files in "
                             f"{root}/{split}/<class>/ (extensions {', '.join(IMAGE_EXTENSIONS)})."
                             f"{extra}")
        folder = root / split
        names = [d.name for d in _subdirs(folder)]
        counts = {}
        for cls in names:
            members = _images_in(folder / cls)
            if listing is not None and split == splits[0]:
                listing[cls] = members
            counts[cls] = len(members)
            if not counts[cls]:  # skipping it would shift every later label
                raise ValueError(f"class folder {folder / cls} has no image files "
                                 f"({', '.join(IMAGE_EXTENSIONS)}); add images or remove it")
        classes[split] = names
        info["splits"][split] = sum(counts.values())
    first, *rest = splits
    for split in rest:
        if classes[split] != classes[first]:
            only_a = sorted(set(classes[first]) - set(classes[split]))
            only_b = sorted(set(classes[split]) - set(classes[first]))
            raise ValueError(
                f"the {first} and {split} splits of {root} have different class folders "
                f"({len(classes[first])} vs {len(classes[split])}; only in {first}: "
                f"{_names(only_a) or '-'}; only in {split}: {_names(only_b) or '-'}), so labels "
                f"would not match; give both splits the same class folders")
    n = len(classes[first])
    expected = NUM_CLASSES.get(name)
    if expected is not None and n != expected:
        likely = {10: "cifar10", 100: "cifar100"}.get(n)
        hint = (f"--dataset {likely}" + (" (or imagefolder)" if likely else "")) if likely \
            else "--dataset imagefolder for your own class-folder data"
        raise ValueError(f"{root / first} has {n} class folders but {name} has {expected} "
                         f"classes, so this is not {name}; pass {hint}")
    for other, known in _KNOWN_CLASSES.items():  # same count, but another data set's names
        if other != name and name in _KNOWN_CLASSES and \
                [c.lower() for c in classes[first]] == list(known):
            raise ValueError(f"{root / first} holds {other}'s classes ({_names(known)}), not "
                             f"{name}'s; pass --dataset {other}")
    info.update(layout="class-folders", num_classes=n, classes=classes[first])
    return info


# class-folder names of the data sets a folder may be mistaken for (sorted = label order)
_KNOWN_CLASSES = {
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                "truck"),
    "svhn": tuple(str(d) for d in range(10)),
}


def _torchvision_info(info: dict, name: str, root: Path, splits: tuple[str, ...],
                      present: bool) -> dict:
    info["layout"] = "torchvision" if present else "download"
    info["splits"] = {s: _TV_SIZES[name][s] for s in splits}
    if name == "cifar10":
        info["classes"] = list(CIFAR10_CLASSES)
    elif name == "svhn":
        info["classes"] = [str(k) for k in range(10)]
    elif present and (root / "cifar-100-python" / "meta").is_file():
        with open(root / "cifar-100-python" / "meta", "rb") as f:
            info["classes"] = list(pickle.load(f, encoding="latin1")["fine_label_names"])
    return info


# --------------------------------------------------------------------------- image folders
def _is_image(entry: os.DirEntry) -> bool:
    name = entry.name
    return (not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS
            and entry.is_file())


def _images_in(folder: Path) -> list[os.DirEntry]:
    """Image files directly in ``folder``, sorted by name (``os.scandir``: no stat per file)."""
    with os.scandir(folder) as it:
        return sorted((e for e in it if _is_image(e)), key=lambda e: e.name)


def _subdirs(folder: Path) -> list[Path]:
    """Visible subfolders of ``folder``, sorted by name (hidden ones, like caches, are skipped)."""
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: p.name)


def _class_dirs(folder: Path) -> list[Path]:
    """Subfolders of ``folder`` that hold at least one image file."""
    found = []
    for d in _subdirs(folder):
        with os.scandir(d) as it:
            if any(_is_image(e) for e in it):
                found.append(d)
    return found


def _load_image_folder(name: str, root: Path, split: str, listing: dict[str, list[os.DirEntry]],
                       cache_dir, progress: bool) -> ImageDataset:
    """Decode (or read from the cache) one split; ``listing``: class -> its image files."""
    folder = root / split
    classes = list(listing)
    files, records, labels = [], [], []
    for k, cls in enumerate(classes):
        for e in listing[cls]:
            st = e.stat()
            files.append(e.path)
            records.append((f"{cls}/{e.name}", st.st_size, st.st_mtime_ns))
            labels.append(k)
    key = {"fingerprint": fingerprint(records), "n": len(files), "classes": classes}
    path = cache_entry(cache_dir, root, key["fingerprint"])
    images = read_cache(path, key) if path is not None else None
    if images is None:
        images = _decode(files, progress, desc=f"decoding {name}/{split}")
        if path is not None:
            write_cache(path, key, images, folder)
    return ImageDataset(images, torch.tensor(labels, dtype=torch.int64), classes, name, split,
                        f"imagefolder:{folder}")


def _decode(files: list[str], progress: bool, desc: str) -> Tensor:
    """Decode image files with Pillow into one uint8 ``(N, 3, H, W)`` tensor."""
    out = None
    for i, f in enumerate(tqdm(files, desc=desc, unit="img", disable=not progress)):
        try:
            with Image.open(f) as im:
                arr = np.asarray(im.convert("RGB"))  # (H, W, 3) uint8
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
            raise ValueError(f"cannot read image {f}: {e}; delete or replace the file") from None
        if out is None:
            out = np.empty((len(files), *arr.shape), dtype=np.uint8)  # (N, H, W, 3)
        elif arr.shape != out.shape[1:]:
            raise ValueError(f"image {f} is {arr.shape[1]}x{arr.shape[0]} but {files[0]} is "
                             f"{out.shape[2]}x{out.shape[1]}; all images must have one size "
                             f"(resize the folder beforehand)")
        out[i] = arr
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()  # (N, 3, H, W)


# --------------------------------------------------------------------------- torchvision
def _torchvision_class(name: str):
    import torchvision.datasets as tvd

    return {"cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100, "svhn": tvd.SVHN}[name]


def _make(name: str, root: Path, split: str, download: bool):
    cls = _torchvision_class(name)
    if name == "svhn":
        return cls(str(root), split=split, download=download)
    return cls(str(root), train=split == "train", download=download)


def _download(name: str, root: Path, split: str, download: bool) -> None:
    """Download one split of ``name`` into ``root`` with torchvision, or explain the way out."""
    where = _layouts(name, root)
    if not download:
        raise ValueError(f"{name} ({split}) is not in {root} and downloading is off; allow the "
                         f"download (download=True, needs the network) or pass --data-root "
                         f"pointing at a local copy: {where}")
    try:
        root.mkdir(parents=True, exist_ok=True)
        logger.info("downloading %s (%s) into %s", name, split, root)
        _make(name, root, split, download=True)
    except Exception as e:  # URLError (offline), HTTP errors, corrupt archive, read-only root
        raise ValueError(f"could not download {name} ({split}) into {root}: "
                         f"{type(e).__name__}: {e}. Without network access, pass --data-root "
                         f"pointing at a local copy: {_layouts(name)}") from e


def _load_torchvision(name: str, root: Path, split: str) -> ImageDataset:
    try:
        ds = _make(name, root, split, download=False)
    except Exception as e:  # RuntimeError("Dataset not found or corrupted"), unpickling errors
        raise ValueError(f"cannot read torchvision's {name} ({split}) files in {root}: "
                         f"{type(e).__name__}: {e}; delete them to download them again, or pass "
                         f"--data-root pointing at another copy: {_layouts(name)}") from e
    if name == "svhn":
        images = torch.from_numpy(np.ascontiguousarray(ds.data))  # (N, 3, 32, 32)
        labels = torch.as_tensor(np.asarray(ds.labels), dtype=torch.int64)  # (N,)
        classes = [str(k) for k in range(10)]
    else:
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # (N, 3, 32, 32)
        labels = torch.as_tensor(ds.targets, dtype=torch.int64)  # (N,)
        classes = list(ds.classes)
    return ImageDataset(images, labels, classes, name, split, f"torchvision:{name}:{root}")
