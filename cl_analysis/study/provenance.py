"""Where a result comes from: package version and commit, profile, seeds, device, data, date.

Every executed notebook prints :func:`provenance` of the sweep it shows, and the book's
introduction lists the same record, so a reader always knows what produced the numbers.
"""

from __future__ import annotations

import datetime
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["PROVENANCE_KEYS", "git_commit", "data_source", "provenance", "provenance_text"]

PROVENANCE_KEYS = ("package_version", "git_commit", "profile", "seeds", "device", "threads",
                   "torch_version", "data_source", "date")
_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "svhn": "SVHN",
          "imagefolder": "an image folder"}


def git_commit(start: str | Path | None = None) -> str:
    """The short commit of the checkout holding ``start`` (default: this package).

    Marked when the working tree has uncommitted changes; ``"unknown (not a git checkout)"``
    outside a checkout.
    """
    start = Path(start) if start is not None else Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(start), "rev-parse", "--short=12", "HEAD"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
        dirty = subprocess.run(["git", "-C", str(start), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return out.strip() + (" (with uncommitted changes)" if dirty.strip() else "")


def data_source(config) -> str:
    """A ``"CIFAR-10 (JPEG export)"``-style description of a run's data.

    The JPEG export is the class-folder copy of CIFAR-10 the project's committed runs used.
    """
    name = _NAMES.get(config.dataset, config.dataset)
    root = Path(config.data_root) if config.data_root else None
    if root is None:
        return f"{name} (downloaded with torchvision)" if config.dataset != "imagefolder" else name
    if (root / "train").is_dir() and config.dataset != "imagefolder":
        jpeg = any((root / "train").glob("*/*.jpg"))
        return f"{name} ({'JPEG export' if jpeg else 'class folders'})"
    return f"{name} ({root.name}/)" if config.dataset == "imagefolder" else f"{name} (torchvision)"


def provenance(sweep=None, *, date: str | None = None) -> dict[str, Any]:
    """The provenance record of a loaded sweep, or of the package alone.

    Without a sweep (``study.runs.SweepRuns``) it covers notebooks that train nothing.

    Args:
        sweep: the sweep the numbers come from; its first run's ``environment.json`` gives the
            device and thread count.
        date: the execution date (ISO); default today.

    Returns:
        ``{key: value}`` for every key of :data:`PROVENANCE_KEYS` (``None`` where not known).
    """
    import torch

    from .. import __version__

    record: dict[str, Any] = dict.fromkeys(PROVENANCE_KEYS)
    record.update(package_version=__version__, git_commit=git_commit(),
                  torch_version=torch.__version__,
                  date=date or datetime.date.today().isoformat())
    if sweep is not None:
        env = {}
        for name in sweep.names:
            env = sweep.run(name).environment or {}
            if env:
                break
        device = env.get("device")
        if env.get("gpu"):
            device = f"{device} ({env['gpu']})"
        record.update(profile=sweep.spec.profile, seeds=list(sweep.spec.grid.seeds),
                      device=device, threads=env.get("num_threads"),
                      data_source=data_source(sweep.config))
    return record


def provenance_text(record: dict[str, Any]) -> str:
    """One line for a notebook's output."""
    return "; ".join(f"{k.replace('_', ' ')}: {v}" for k, v in record.items() if v is not None)
