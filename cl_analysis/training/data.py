"""Datasets as uint8 tensors, with an on-disk cache of decoded images and stratified subsets.

Every dataset becomes an :class:`ImageDataset`: ``images`` uint8 ``(N, 3, H, W)`` on the CPU plus
int64 ``labels`` ``(N,)``. Augmentation happens later, per batch, on the training device
(:mod:`cl_analysis.augment`), so images are decoded once and never per epoch.

Sources (``DATASETS``):

* ``cifar10``, ``cifar100``, ``svhn``: the torchvision files under ``root`` (downloaded only when
  ``download=True``). If ``root/<split>/<class>/`` holds image files instead, ``root`` is read as an
  image folder, so ``--dataset cifar10 --data-root ../shared/data/cifar10`` works with the JPEG
  export of CIFAR-10.
* ``imagefolder``: any class-folder tree, ``root/<split>/<class>/*.jpg`` (or ``root/<class>/...``
  when there is no split folder). Classes are sorted by name, which for the CIFAR-10 JPEG export
  is the CIFAR-10 label order.

:func:`synthetic_dataset` makes a small labelled stand-in (coloured stripe patterns) in memory,
for the notebooks' fast mode when no dataset copy exists.

Image folders are decoded once with Pillow and cached with ``torch.save`` (see
:mod:`cl_analysis._data_cache`); the torchvision files are already arrays and are not cached.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from tqdm.auto import tqdm

from .._checks import check_choice
from .data_cache import cache_path, fingerprint, read_cache, write_cache

logger = logging.getLogger(__name__)

DATASETS = ("cifar10", "cifar100", "svhn", "imagefolder")
SPLITS = ("train", "test")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".gif", ".tif", ".tiff",
                    ".webp")


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


def load_dataset(name: str, root: str | os.PathLike, split: str = "train", download: bool = False,
                 cache_dir: str | os.PathLike | None = None, progress: bool = True) -> ImageDataset:
    """Load a dataset split as uint8 tensors.

    Args:
        name: one of ``DATASETS``.
        root: data root (``--data-root``): the torchvision folder, or an image-folder tree.
        split: ``"train"`` or ``"test"``.
        download: let torchvision download the files (needs internet access).
        cache_dir: where decoded image folders are cached. Default: env ``CL_CACHE_DIR``, else
            ``<root>/.cl_analysis_cache`` if writable, else ``~/.cache/cl_analysis``.
        progress: show a tqdm bar while decoding.

    Returns:
        The split as an :class:`ImageDataset`.

    Raises:
        ValueError: unknown name/split, empty folder, unreadable or differently sized images.
        FileNotFoundError: ``root`` or the files in it are missing (and could not be downloaded).
    """
    check_choice("dataset", name, DATASETS)
    check_choice("split", split, SPLITS)
    root = Path(root).expanduser().absolute()
    if not root.is_dir() and not (download and name != "imagefolder"):
        problem = "is a file, not a folder" if root.exists() else "does not exist"
        raise FileNotFoundError(f"data root {root} {problem}; pass --data-root pointing at your "
                                f"copy of {name} (e.g. an image-folder export "
                                f"root/train/<class>/*.jpg)")
    if name == "imagefolder" or (root.is_dir() and _class_dirs(root / split)):
        return _load_image_folder(name, root, split, cache_dir, progress)
    return _load_torchvision(name, root, split, download)


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


def _resolve_split_dir(root: Path, split: str) -> Path:
    if _class_dirs(root / split):
        return root / split
    if _class_dirs(root):
        if any((root / s).is_dir() for s in SPLITS):
            raise ValueError(f"{root} mixes split folders and class folders; use either "
                             f"root/{split}/<class>/ or root/<class>/")
        logger.info("no %r folder under %s; reading its class folders as split %r",
                    split, root, split)
        return root
    present = [s for s in SPLITS if (root / s).is_dir()]
    hint = f" (found split folders: {', '.join(present)})" if present else ""
    raise ValueError(f"no images found for split {split!r} under {root}{hint}; expected "
                     f"root/{split}/<class>/*.jpg (or root/<class>/*.jpg) with extensions "
                     f"{', '.join(IMAGE_EXTENSIONS)}")


def _load_image_folder(name: str, root: Path, split: str, cache_dir, progress: bool
                       ) -> ImageDataset:
    folder = _resolve_split_dir(root, split)
    classes = [d.name for d in _subdirs(folder)]
    files, records, labels = [], [], []
    for k, cls in enumerate(classes):
        members = _images_in(folder / cls)
        if not members:  # skipping it would shift every later label
            raise ValueError(f"class folder {folder / cls} has no image files "
                             f"({', '.join(IMAGE_EXTENSIONS)}); add images or remove the folder")
        for e in members:
            st = e.stat()
            files.append(e.path)
            records.append((f"{cls}/{e.name}", st.st_size, st.st_mtime_ns))
        labels += [k] * len(members)
    key = {"name": name, "split": split, "root": str(folder), "n": len(files),
           "classes": classes, "fingerprint": fingerprint(records)}
    source = f"imagefolder:{folder}"
    path = cache_path(root, cache_dir, name, split, folder)
    cached = read_cache(path, key) if path is not None else None
    if cached is not None:
        images = cached
    else:
        images = _decode(files, progress, desc=f"decoding {name}/{split}")
        if path is not None:
            write_cache(path, key, images)
    expected = {"cifar10": 10, "cifar100": 100, "svhn": 10}.get(name)
    if expected is not None and len(classes) != expected:
        logger.warning("%s is read as %s but has %d class folders (expected %d)",
                       folder, name, len(classes), expected)
    return ImageDataset(images, torch.tensor(labels, dtype=torch.int64), classes, name, split,
                        source)


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
def _load_torchvision(name: str, root: Path, split: str, download: bool) -> ImageDataset:
    import torchvision.datasets as tvd

    train = split == "train"
    makers = {"cifar10": lambda: tvd.CIFAR10(str(root), train=train, download=download),
              "cifar100": lambda: tvd.CIFAR100(str(root), train=train, download=download),
              "svhn": lambda: tvd.SVHN(str(root), split=split, download=download)}
    layout = {"cifar10": "cifar-10-batches-py/", "cifar100": "cifar-100-python/",
              "svhn": f"{split}_32x32.mat"}[name]
    try:
        ds = makers[name]()
    except Exception as e:  # URLError, RuntimeError("Dataset not found"), corrupt archive, ...
        action = "could not download" if download else "found no usable copy of"
        if root.is_dir() and _class_dirs(root):
            action += (f" (hint: {root} holds class folders, i.e. one split: pass its parent, "
                       f"which has train/ and test/, or use --dataset imagefolder)")
        raise FileNotFoundError(
            f"{action} {name} ({split}) in {root}: {type(e).__name__}: {e}. Point --data-root at "
            f"a local copy: the torchvision files ({root}/{layout}) or an image-folder export "
            f"(root/{split}/<class>/*.jpg, read with --dataset {name} or imagefolder)"
            + ("" if download else "; or pass --download when online")) from e
    if name == "svhn":
        images = torch.from_numpy(np.ascontiguousarray(ds.data))  # (N, 3, 32, 32)
        labels = torch.as_tensor(np.asarray(ds.labels), dtype=torch.int64)  # (N,)
        classes = [str(k) for k in range(10)]
    else:
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # (N, 3, 32, 32)
        labels = torch.as_tensor(ds.targets, dtype=torch.int64)  # (N,)
        classes = list(ds.classes)
    return ImageDataset(images, labels, classes, name, split, f"torchvision:{name}:{root}")
