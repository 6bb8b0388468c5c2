"""``cl-analysis analyze``: the report of :mod:`cl_analysis.evaluation.report` for any encoder.

Three inputs (issue 11 §4):

* a run directory (``load_run``): its model embeds the data's test images (clean, and two
  seeded ``PaperAugment`` views for the alignment); without the data, the stored
  ``embeddings_test.pt`` projections are used.
* a checkpoint of a ResNet-18/34/50 backbone: ours (``checkpoint.pt``), torchvision-style
  (``conv1.weight, layer1.0..., fc.*``), lightly's (``backbone.0.weight``: the torchvision
  children in an ``nn.Sequential``, or lightly's ``ResNetGenerator`` with ``shortcut``) and
  solo-learn's (``backbone.conv1.weight``, inside a Lightning ``state_dict``). It is loaded with
  ``torch.load(weights_only=True)``: a file that needs arbitrary unpickling is refused, since
  unpickling a file from elsewhere can run any code. Its backbone features of ``--data-root``
  images are analysed.
* a features file ``.npy`` / ``.npz`` / ``.pt`` of shape ``(N, D)`` and a labels file.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from torch import Tensor, nn

from ..evaluation.report import analyze_features

__all__ = ["analyze", "load_array", "load_backbone", "map_resnet_keys"]

FEATURE_KEYS = ("features", "z", "embeddings", "x", "h")
LABEL_KEYS = ("labels", "y", "targets")
_DEPTHS = {((2, 2, 2, 2), False): "resnet18", ((3, 4, 6, 3), False): "resnet34",
           ((3, 4, 6, 3), True): "resnet50"}


def _torch_load(path: Path) -> Any:
    """``torch.load(weights_only=True)``; refuse (ValueError) what needs arbitrary unpickling."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL (\S+)", str(err))
        if found is None:  # not a pickle of objects: a damaged or foreign file
            detail = re.search(r"WeightsUnpickler error: \s*(.+)", str(err))
            raise ValueError(f"cannot read {path} with torch.load: not a valid PyTorch file "
                             f"({detail.group(1).strip() if detail else err})") from None
        raise ValueError(
            f"{path} cannot be loaded as weights only: it holds Python objects beyond tensors "
            f"and plain containers (e.g. {found.group(1)}). Unpickling them could run "
            f"arbitrary code, so cl-analysis refuses. If you trust the file, extract the "
            f"weights once: torch.save(torch.load(f, weights_only=False)['state_dict'], "
            f"'weights.pt'), and pass weights.pt") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as err:
        raise ValueError(f"cannot read {path} with torch.load: {err}; is it a PyTorch "
                         f"file?") from None


def load_array(path: str | os.PathLike, kind: str = "features") -> Tensor:
    """An array from ``.npy`` / ``.npz`` / ``.pt``: ``(N, D)`` features or ``(N,)`` labels.

    ``.npy`` and ``.npz`` are read with ``allow_pickle=False``, ``.pt`` with
    ``weights_only=True``. In an ``.npz`` or a ``.pt`` dict the array is the only one, or the one
    under a key of ``FEATURE_KEYS`` (``LABEL_KEYS`` for labels).

    Raises:
        ValueError: a missing or unreadable file, an unknown extension, no array, an object
            array or a file that needs unpickling (named, with what to do).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{kind} file {path} does not exist")
    keys = FEATURE_KEYS if kind == "features" else LABEL_KEYS
    try:
        with open(path, "rb") as fh:
            head = fh.read(6)
        magic = {".npy": b"\x93NUMPY", ".npz": b"PK"}.get(path.suffix)  # .npz is a zip
        if magic is not None and not head.startswith(magic):
            raise ValueError(f"cannot read {kind} file {path}: not a {path.suffix} file "
                             f"(wrong magic bytes); save it with np.save / np.savez")
        if path.suffix == ".npy":
            obj = np.load(path, allow_pickle=False)
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                obj = {k: npz[k] for k in npz.files}
        elif path.suffix in (".pt", ".pth"):
            obj = _torch_load(path)
        else:
            raise ValueError(f"{kind} file {path}: expected .npy, .npz or .pt, got "
                             f"{path.suffix or 'no extension'!r}")
    except ValueError as err:
        if "Object arrays" in str(err):
            raise ValueError(f"{kind} file {path} holds Python objects (an object array); save "
                             f"a numeric array, e.g. np.save(f, x.astype(np.float32))") from None
        if str(err).startswith(kind) or "cannot" in str(err):
            raise
        raise ValueError(f"cannot read {kind} file {path}: {err}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"cannot read {kind} file {path}: {err}") from None
    if isinstance(obj, dict):
        arrays = {k: v for k, v in obj.items() if isinstance(v, (np.ndarray, Tensor))}
        pick = [k for k in keys if k in arrays] or (list(arrays) if len(arrays) == 1 else [])
        if not pick:
            raise ValueError(f"{kind} file {path} holds {sorted(map(str, obj))}; expected one "
                             f"array or one under {', '.join(keys)}")
        obj = arrays[pick[0]]
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            raise ValueError(f"{kind} file {path} holds an object array; save a numeric one")
        obj = torch.from_numpy(np.ascontiguousarray(obj))
    if not isinstance(obj, Tensor):
        raise ValueError(f"{kind} file {path} holds a {type(obj).__name__}, not an array")
    return obj


# --- checkpoints --------------------------------------------------------------------------------
def _unwrap(obj: Any, path: Path) -> dict[str, Tensor]:
    """The flat ``{key: tensor}`` of a checkpoint: ours (``model``), Lightning (``state_dict``)."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict", "net"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not any(isinstance(v, Tensor) for v in obj.values()):
        what = sorted(map(str, obj))[:10] if isinstance(obj, dict) else type(obj).__name__
        raise ValueError(f"{path} holds no state dict (a mapping of parameter names to "
                         f"tensors); found: {what}")
    return {k: v for k, v in obj.items() if isinstance(v, Tensor)}


def map_resnet_keys(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], str, list[str]]:
    """Map a ResNet backbone's keys to torchvision's names (``conv1``, ``bn1``, ``layer1..4``).

    Known layouts, under any prefix (``module.``, ``backbone.``, ``encoder.``, ...; a prefix
    naming a momentum/target/teacher copy is avoided when another exists):

    * torchvision / ours / solo-learn: ``P.conv1.weight``, ``P.layer1.0.conv1.weight``, ...
    * lightly, torchvision children in ``nn.Sequential``: ``P.0`` conv1, ``P.1`` bn1,
      ``P.4`` .. ``P.7`` layer1..4.
    * lightly's ``ResNetGenerator``: ``P.0`` conv1, ``P.1`` bn1, ``P.2`` .. ``P.5`` layer1..4,
      ``shortcut.0/1`` for ``downsample.0/1`` (as ``nn.Sequential(*children[:-1])`` it has no
      ReLU after the stem; :func:`load_backbone` drops torchvision's to match).

    ``fc.*`` and keys outside the prefix (projection heads, classifiers) are dropped.

    Returns:
        (mapped state dict, layout name, the dropped keys).

    Raises:
        ValueError: no known layout; the message lists some of the keys.
    """
    keys = list(state)
    found = []  # (prefix, layout, {index: name})
    for k in keys:
        if k.endswith("conv1.weight") and "layer" not in k:
            p = k[: -len("conv1.weight")]
            if p + "bn1.weight" in state and p + "layer1.0.conv1.weight" in state:
                found.append((p, "torchvision", {}))
        if k.endswith("0.weight") and state[k].dim() == 4:
            p = k[: -len("0.weight")]
            if p + "1.running_mean" not in state:
                continue
            if p + "2.0.conv1.weight" in state:  # children: index 2 is the ReLU
                found.append((p, "lightly-resnet-generator",
                              {"0": "conv1", "1": "bn1", "2": "layer1", "3": "layer2",
                               "4": "layer3", "5": "layer4"}))
            elif p + "4.0.conv1.weight" in state:
                found.append((p, "lightly-torchvision-children",
                              {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2",
                               "6": "layer3", "7": "layer4"}))
    if not found:
        raise ValueError(f"unknown checkpoint layout: no ResNet backbone keys (conv1.weight with "
                         f"layer1.0.conv1.weight, or lightly's 0.weight/1.running_mean) found; "
                         f"{len(keys)} keys, first: {keys[:12]}; a cl-analysis run of "
                         f"another model (e.g. convnet) is analysed with --run DIR")
    copies = re.compile(r"momentum|target|teacher|ema")
    found.sort(key=lambda f: (bool(copies.search(f[0])), len(f[0])))
    prefix, layout, index = found[0]
    mapped, dropped = {}, []
    for k, v in state.items():
        if not k.startswith(prefix):
            dropped.append(k)
            continue
        rest = k[len(prefix):]
        if index:
            head, _, tail = rest.partition(".")
            if head not in index:
                dropped.append(k)
                continue
            rest = f"{index[head]}.{tail}".replace("shortcut.", "downsample.")
        if rest.startswith("fc."):
            dropped.append(k)  # a classifier, not the backbone
            continue
        mapped[rest] = v
    return mapped, f"{layout} (prefix {prefix!r})" if prefix else layout, dropped


def load_backbone(path: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """A torchvision ResNet-18/34/50 backbone (``fc`` = Identity, eval mode) from a checkpoint.

    The depth comes from the blocks per layer (BasicBlock or Bottleneck), the stem from
    ``conv1``'s kernel: 3x3 is the CIFAR stem (stride 1, no max-pool, as ours, solo-learn's and
    lightly's CIFAR models), 7x7 the ImageNet stem.

    Returns:
        (backbone mapping (B, 3, H, W) images to (B, F) features, info dict for the report).

    Raises:
        ValueError: unreadable, needs unpickling (refused), unknown layout, unknown depth, or
            keys that do not fit (missing and unexpected ones named).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {path} does not exist")
    state, layout, dropped = map_resnet_keys(_unwrap(_torch_load(path), path))
    blocks = tuple(len({k.split(".")[1] for k in state if k.startswith(f"layer{i}.")})
                   for i in range(1, 5))
    bottleneck = "layer1.0.conv3.weight" in state
    arch = _DEPTHS.get((blocks, bottleneck))
    if arch is None:
        raise ValueError(f"{path}: a ResNet with {blocks} blocks per layer "
                         f"({'Bottleneck' if bottleneck else 'BasicBlock'}) is not supported; "
                         f"supported: ResNet-18, 34, 50")
    net = getattr(torchvision.models, arch)(weights=None)
    kernel = int(state["conv1.weight"].shape[-1])
    if kernel == 3:
        net.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    if layout.startswith("lightly-resnet-generator"):
        # lightly's examples wrap ResNetGenerator's children in nn.Sequential, which skips the
        # F.relu of its forward after the stem: the trained backbone has no stem ReLU
        net.relu = nn.Identity()
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"{path} ({layout}, {arch}): keys do not fit torchvision's {arch}: "
                         f"missing {missing[:8]}{' ...' if len(missing) > 8 else ''}, "
                         f"unexpected {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}")
    info = {"layout": layout, "architecture": arch,
            "stem": "cifar (3x3, no max-pool)" if kernel == 3 else "imagenet (7x7, max-pool)",
            "dropped_keys": len(dropped), "dropped_examples": dropped[:6]}
    return net.eval(), info


# --- images -------------------------------------------------------------------------------------
@torch.no_grad()
def _embed(fn, images: Tensor, transform, batch_size: int = 256) -> Tensor:
    return torch.cat([fn(transform(chunk)).float() for chunk in images.split(batch_size)])


def _image_features(fn, images: Tensor, image_size: int, seed: int):
    """Clean features and two seeded ``PaperAugment`` views of uint8 images (N, 3, H, W)."""
    from ..training.augment import EvalTransform, PaperAugment

    clean = _embed(fn, images, EvalTransform(image_size))
    aug = PaperAugment(image_size)
    views = []
    for k in (1, 2):
        g = torch.Generator().manual_seed(seed + k)
        views.append(_embed(fn, images, lambda x, g=g: aug(x, generator=g)))
    return clean, tuple(views)


def _load_images(dataset: str, data_root: str | None, split: str, image_size: int,
                 max_images: int | None, seed: int):
    from ..training import data

    ds = data.load_dataset(dataset, data_root, split, progress=False)
    if max_images is not None and max_images < len(ds):
        ds = data.subset(ds, max_images, seed=seed)
    if ds.images.shape[-1] != image_size:
        ds = data.resize(ds, image_size)
    return ds


def analyze(out: str | os.PathLike, *, run: str | None = None, checkpoint: str | None = None,
            features: str | None = None, labels: str | None = None,
            data_root: str | None = None, dataset: str = "cifar10", split: str = "test",
            image_size: int = 32, max_images: int | None = 2000, temperature: float = 0.2,
            space: str = "projection", tsne_points: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Write ``report.json`` and ``report.html`` into ``out`` for one encoder (issue 11 §4).

    Exactly one of ``run``, ``checkpoint`` (with ``data_root``) or ``features`` (with
    ``labels``). Images (run with data, checkpoint) are a stratified ``max_images`` subset of
    ``split`` (seeded), resized to ``image_size``, normalised with the CIFAR-10 statistics
    (``EvalTransform``), and also seen as two seeded ``PaperAugment`` views (alignment, positive
    histogram, local separation). ``space``: "projection" (z) or "backbone" (h) for a run; a
    checkpoint gives backbone features.

    Returns:
        The report dict (see :func:`cl_analysis.evaluation.report.analyze_features`), with
        ``source`` describing the input and ``seconds`` the time taken.

    Raises:
        ValueError: on a bad combination of inputs or any refusal named in the loaders.
    """
    t0 = time.perf_counter()
    given = [name for name, v in (("--run", run), ("--checkpoint", checkpoint),
                                  ("--features", features)) if v is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one input: --run DIR, --checkpoint FILE (with "
                         f"--data-root) or --features FILE (with --labels); got "
                         f"{given or 'none'}")
    if space not in ("projection", "backbone"):
        raise ValueError(f"space must be projection or backbone, got {space!r}")
    views, names = None, None
    if features is not None:
        z = load_array(features, "features")  # the file's own problems first
        if labels is None:
            raise ValueError("--features needs --labels FILE ((N,) integer labels)")
        y = load_array(labels, "labels")
        n_rows, y_shape = tuple(z.shape)[:1], tuple(y.shape)
        if len(z.shape) == 2 and (len(y_shape) != 1 or y_shape != n_rows):
            raise ValueError(f"--labels {labels} has shape {y_shape}; it must be {n_rows}: one "
                             f"integer label per row of --features {features}")
        source = {"input": "features", "features": str(features), "labels": str(labels)}
    elif checkpoint is not None:
        if data_root is None:
            raise ValueError("--checkpoint needs images to embed: pass --data-root DIR (and "
                             "--dataset if not cifar10)")
        net, info = load_backbone(checkpoint)
        ds = _load_images(dataset, data_root, split, image_size,
                          max_images, seed)
        z, views = _image_features(net, ds.images, image_size, seed)
        y, names = ds.labels, list(ds.classes)
        source = {"input": "checkpoint", "checkpoint": str(checkpoint), **info,
                  "space": "backbone", "dataset": dataset, "split": split, "images": len(y)}
    else:
        from .runs import load_run

        if not Path(run).is_dir():
            raise ValueError(f"--run {run} does not exist; pass a run directory written by "
                             f"`cl-analysis pretrain`")
        r = load_run(run)
        cfg = r.config
        root = data_root or cfg.data_root
        source = {"input": "run", "run": str(run), "loss": cfg.loss,
                  "temperature_trained": cfg.temperature, "space": space}
        if root is not None and Path(root).exists():
            model = r.model()
            fn = model if space == "projection" else model.backbone
            ds = _load_images(cfg.dataset, root, split, cfg.image_size, max_images, seed)
            z, views = _image_features(fn, ds.images, cfg.image_size, seed)
            y, names = ds.labels, list(ds.classes)
            source.update(dataset=cfg.dataset, split=split, images=len(y))
        else:
            if space != "projection":
                raise ValueError(f"space=backbone needs the images: the run's data folder "
                                 f"{root} is not here; pass --data-root")
            z, y = r.test_embeddings()
            names = r.class_names
            source.update(note="data folder not found: the stored test projections "
                               "(embeddings_test.pt) without augmented views")
    report = analyze_features(z, y, out, temperature=temperature, class_names=names,
                              views=views, tsne_points=tsne_points, source=source,
                              feature_name=f"--features {features}" if features else "features")
    report["seconds"] = round(time.perf_counter() - t0, 2)
    (Path(out) / "report.json").write_text(json.dumps(report, indent=2))
    return report
