"""On-disk cache of decoded image folders, used by :func:`cl_analysis.data.load_dataset`.

One file per (dataset name, split, absolute folder), written with ``torch.save`` atomically (temp
file + ``os.replace``). It stores a key: the name, split, folder, class list, image count and a
fingerprint of the file list (relative paths, sizes, mtimes, hashed). A file that cannot be read
(truncated, corrupt bytes) or whose key differs (files added, removed or touched) is reported with
a warning and rebuilt by the caller.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from pathlib import Path

import torch
from torch import Tensor

logger = logging.getLogger("cl_analysis.data")

CACHE_VERSION = 1
CACHE_ENV = "CL_CACHE_DIR"


def fingerprint(records: list[tuple[str, int, int]]) -> str:
    """SHA-256 of a file list given as (relative path, size, mtime in ns) records."""
    h = hashlib.sha256()
    for rel, size, mtime_ns in records:
        h.update(f"{rel}\t{size}\t{mtime_ns}\n".encode())
    return h.hexdigest()


def _writable(folder: Path) -> bool:
    """True if we may create files in ``folder``.

    Besides ``os.access``, the mode bits must allow writing: root passes ``os.access`` everywhere,
    and a folder marked read-only (``r-x``) should stay untouched even then.
    """
    try:
        return os.access(folder, os.W_OK) and bool(folder.stat().st_mode & 0o222)
    except OSError:
        return False


def default_cache_dir(root: Path) -> Path:
    """Env ``CL_CACHE_DIR``, else ``<root>/.cl_analysis_cache`` if writable, else ~/.cache."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    local = root / ".cl_analysis_cache"
    if _writable(local if local.is_dir() else root):
        return local
    return Path.home() / ".cache" / "cl_analysis"


def cache_path(root: Path, cache_dir, name: str, split: str, folder: Path) -> Path | None:
    """The cache file of one split, creating its folder; ``None`` (no caching) if impossible."""
    directory = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir(root)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        logger.warning("cannot create cache folder %s (%s); decoding without a cache. Set %s or "
                       "pass cache_dir to a writable folder", directory, e, CACHE_ENV)
        return None
    digest = hashlib.sha256(str(folder.absolute()).encode()).hexdigest()[:12]
    return directory / f"{name}-{split}-{digest}.pt"


def read_cache(path: Path, key: dict) -> Tensor | None:
    """The cached uint8 images ``(N, 3, H, W)`` if ``path`` holds a valid entry for ``key``."""
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
        why = ("files were added, removed or modified" if "fingerprint" in changed
               else "the dataset description changed")
        logger.warning("cache %s is stale (%s differ: %s); rebuilding it",
                       path, ", ".join(changed), why)
        return None
    images = obj.get("images")
    if (not isinstance(images, Tensor) or images.dtype != torch.uint8 or images.dim() != 4
            or images.shape[0] != key["n"] or images.shape[1] != 3):
        logger.warning("cache %s holds images of the wrong shape/dtype (%s); rebuilding it", path,
                       getattr(images, "shape", type(images).__name__))
        return None
    logger.info("loaded %d decoded images from cache %s", images.shape[0], path)
    return images


def write_cache(path: Path, key: dict, images: Tensor) -> None:
    """Save ``images`` under ``key`` atomically; a failure only logs a warning."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        torch.save({"version": CACHE_VERSION, "key": key, "images": images}, tmp)
        os.replace(tmp, path)
        logger.info("cached %d decoded images at %s", images.shape[0], path)
    except OSError as e:
        logger.warning("could not write cache %s (%s); continuing without it. Set %s to a "
                       "writable folder", path, e, CACHE_ENV)
        tmp.unlink(missing_ok=True)
