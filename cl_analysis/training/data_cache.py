"""On-disk cache of decoded image folders, used by :func:`cl_analysis.training.data.load_dataset`.

Where: :func:`default_cache_dir` -- the environment variable ``CL_CACHE_DIR`` if set, else
``$XDG_CACHE_HOME/cl-analysis/images`` (``~/.cache/cl-analysis/images`` when ``XDG_CACHE_HOME`` is
unset). ``CL_CACHE_DIR`` is read there and nowhere else. The cache is never written inside the
data folder it describes: a cache folder that lies inside it is refused.

Keyed by content: an entry is named after a fingerprint (SHA-256) of the split's file list -- the
sorted relative paths ``<class>/<file>``, sizes in bytes and modification times in ns -- not after
the dataset name or the folder. One folder read as ``cifar10`` and as ``imagefolder`` therefore
shares one entry (CIFAR-10's training split: ~150 MB), and a copy that keeps the modification
times (``cp -a``, ``rsync -a``) reuses it.

Each entry is two files, written atomically (temp file + ``os.replace``):

* ``images-<fingerprint[:24]>.pt`` (``torch.save``): the version, the key (fingerprint, image
  count, class names) and the uint8 images ``(N, 3, H, W)``;
* ``images-<fingerprint[:24]>.json``: the folder that wrote it (for people, and to find stale
  entries: when a folder's files change, its previous entry is deleted on the next write).

A file that cannot be read (truncated, corrupt bytes) or whose key differs from the request is
reported with a warning and rebuilt by the caller.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from pathlib import Path

import torch
from torch import Tensor

logger = logging.getLogger("cl_analysis.training.data")

CACHE_VERSION = 2  # 2: content-keyed entries in a user cache folder (1: per name and folder)
CACHE_ENV = "CL_CACHE_DIR"
APP_NAME = "cl-analysis"


def user_cache_home() -> Path:
    """The package's folder in the user cache: ``$XDG_CACHE_HOME/cl-analysis`` or ``~/.cache/...``.

    The same convention as ``torch.hub`` (``~/.cache/torch``) and Hugging Face
    (``~/.cache/huggingface``). Holds ``datasets/`` (downloads) and ``images/`` (decoded images).
    """
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / APP_NAME


def default_cache_dir() -> Path:
    """Folder of the decoded-image cache: env ``CL_CACHE_DIR``, else ``user_cache_home()/images``.

    The only place that reads ``CL_CACHE_DIR``.
    """
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser().absolute()
    return user_cache_home() / "images"


def fingerprint(records: list[tuple[str, int, int]]) -> str:
    """SHA-256 (hex) of a file list given as (relative path, size in bytes, mtime in ns) records.

    The records are sorted first, so the order in which files were listed does not matter.
    """
    h = hashlib.sha256()
    for rel, size, mtime_ns in sorted(records):
        h.update(f"{rel}\t{size}\t{mtime_ns}\n".encode())
    return h.hexdigest()


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def cache_entry(cache_dir: str | os.PathLike | None, data_root: Path, digest: str) -> Path | None:
    """The ``.pt`` file of the entry with fingerprint ``digest``, creating the cache folder.

    Args:
        cache_dir: the cache folder; None means :func:`default_cache_dir`.
        data_root: the data folder being read; the cache must not lie inside it.
        digest: :func:`fingerprint` of the split's files.

    Returns:
        The entry's path, or None (decode without caching) if the folder cannot be created.

    Raises:
        ValueError: the cache folder lies inside ``data_root``.
    """
    directory = Path(cache_dir).expanduser().absolute() if cache_dir is not None \
        else default_cache_dir()
    if _inside(directory, data_root):
        raise ValueError(f"the image cache folder {directory} lies inside the data folder "
                         f"{data_root}; the cache is never written into your data. Set "
                         f"{CACHE_ENV} (or cache_dir) to a folder outside it, or unset it for "
                         f"the default {user_cache_home() / 'images'}")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        logger.warning("cannot create cache folder %s (%s); decoding without a cache. Set %s or "
                       "pass cache_dir to a writable folder", directory, e, CACHE_ENV)
        return None
    return directory / f"images-{digest[:24]}.pt"


def read_cache(path: Path, key: dict) -> Tensor | None:
    """The cached uint8 images ``(N, 3, H, W)`` if ``path`` holds a valid entry for ``key``.

    ``key`` holds ``fingerprint``, ``n`` (image count) and ``classes``; any other outcome (no
    file, unreadable file, other layout, other key, wrong shape) returns None, with a warning
    for everything but a missing file.
    """
    if not path.exists():
        logger.info("no cache at %s; decoding", path)
        return None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, bad pickle, EOF, ...
        logger.warning("cache %s is unreadable (%s: %s); rebuilding it", path, type(e).__name__, e)
        return None
    stored = obj.get("key") if isinstance(obj, dict) else None
    if not isinstance(stored, dict) or obj.get("version") != CACHE_VERSION:
        logger.warning("cache %s has an unknown layout; rebuilding it", path)
        return None
    changed = sorted(k for k in key if stored.get(k) != key[k])
    if changed:
        logger.warning("cache %s is stale (%s differ: the files were added, removed or "
                       "modified); rebuilding it", path, ", ".join(changed))
        return None
    images = obj.get("images")
    if (not isinstance(images, Tensor) or images.dtype != torch.uint8 or images.dim() != 4
            or images.shape[0] != key["n"] or images.shape[1] != 3):
        logger.warning("cache %s holds images of the wrong shape/dtype (%s); rebuilding it", path,
                       getattr(images, "shape", type(images).__name__))
        return None
    logger.info("loaded %d decoded images from cache %s", images.shape[0], path)
    return images


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_cache(path: Path, key: dict, images: Tensor, folder: Path) -> None:
    """Save ``images`` under ``key`` atomically and drop ``folder``'s previous (stale) entries.

    A failure to write only logs a warning: the run goes on without a cache.
    """
    sidecar = path.with_suffix(".json")
    meta = {"version": CACHE_VERSION, "folder": str(folder), "n": key["n"],
            "fingerprint": key["fingerprint"], "classes": key["classes"]}
    try:
        _atomic_write(path, lambda tmp: torch.save(
            {"version": CACHE_VERSION, "key": key, "images": images}, tmp))
        _atomic_write(sidecar, lambda tmp: tmp.write_text(json.dumps(meta, indent=1)))
        logger.info("cached %d decoded images at %s", images.shape[0], path)
    except OSError as e:
        logger.warning("could not write cache %s (%s); continuing without it. Set %s to a "
                       "writable folder", path, e, CACHE_ENV)
        return
    for other in path.parent.glob("images-*.json"):
        if other == sidecar:
            continue
        try:
            old = json.loads(other.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(old, dict) and old.get("folder") == str(folder):
            logger.warning("removing stale cache entry %s: the files of %s changed since it was "
                           "written", other.with_suffix(".pt"), folder)
            other.with_suffix(".pt").unlink(missing_ok=True)
            other.unlink(missing_ok=True)
