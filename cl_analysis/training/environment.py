"""Where and how a run runs: the resolved device, recorded beside the run and checked on resume.

``resolve_device`` turns a config's ``device`` into a ``torch.device`` and says why when ``auto``
falls back to the CPU; ``describe_environment`` is what a run records in ``environment.json``
(device, GPU name, torch / CUDA versions, CPU threads, package version, world size and
process-group backend);
``check_resume_environment`` refuses to continue a run on another device type, or on CPU with
another thread count (CPU results depend on it: float sums are split differently).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import platform
from pathlib import Path
from typing import Any

import torch

__all__ = ["resolve_device", "describe_environment", "check_resume_environment",
           "ENVIRONMENT_FILE", "PAPER_CPU_DAYS"]

logger = logging.getLogger(__name__)
ENVIRONMENT_FILE = "environment.json"
# One paper-profile epoch on this project's 2-core reference CPU: ~19 min (README benchmark).
PAPER_CPU_DAYS = 2.6


@functools.lru_cache(maxsize=1)
def _cuda_unavailable_reason() -> str:
    if torch.version.cuda is None:
        return "this torch build has no CUDA support"
    try:
        torch.cuda.init()
    except Exception as err:  # noqa: BLE001  (the driver's own words are the useful part)
        return f"CUDA build {torch.version.cuda} cannot start: {err}"
    return "no CUDA device is visible"


@functools.lru_cache(maxsize=None)
def _warn_once(message: str) -> None:
    logger.warning(message)


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> cuda if available else cpu (with a warning giving the reason); else checked.

    Raises:
        ValueError: for an unknown name, or a CUDA/MPS device that is not available (the message
            says why and suggests ``--device cpu``).
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.version.cuda is not None:  # a CUDA build that cannot use a GPU: say so, once
            _warn_once(f"device auto: running on the CPU (no usable GPU: "
                       f"{_cuda_unavailable_reason()})")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but {_cuda_unavailable_reason()}; "
                             f"pass --device cpu to run on the CPU")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r} requested but only {torch.cuda.device_count()} "
                             f"CUDA device(s) exist")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r} requested but MPS is not available; use --device cpu")
    return dev


def describe_environment(device: torch.device) -> dict[str, Any]:
    """What ran a run: device, GPU, versions, threads (call inside the run's torch settings)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        package = version("cl-analysis")
    except PackageNotFoundError:  # pragma: no cover  (running from an uninstalled checkout)
        package = None
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    grouped = torch.distributed.is_available() and torch.distributed.is_initialized()
    world = int(torch.distributed.get_world_size()) if grouped else 1
    backend = str(torch.distributed.get_backend()) if grouped else None
    return {"device": str(device), "device_type": device.type, "gpu": gpu,
            "torch": torch.__version__, "cuda": torch.version.cuda,
            "num_threads": torch.get_num_threads(), "cl_analysis": package,
            "python": platform.python_version(), "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "world_size": world,
            "backend": backend}


def check_resume_environment(run_dir: str | os.PathLike, env: dict[str, Any]) -> None:
    """Refuse to resume ``run_dir`` on another device type, or on CPU with other threads.

    Raises:
        ValueError: naming the field (``device`` or ``num_threads``), the recorded and the new
            value, and how to match them.
    """
    path = Path(run_dir) / ENVIRONMENT_FILE
    if not path.is_file():
        return  # a run from before environments were recorded
    old = json.loads(path.read_text(encoding="utf-8"))
    if old.get("device_type") != env["device_type"]:
        raise ValueError(f"{run_dir} ran on {old.get('device_type')} and would resume on "
                         f"{env['device_type']}: device must match (pass --device "
                         f"{old.get('device_type')}), or start a new run")
    if env["device_type"] == "cpu" and old.get("num_threads") != env["num_threads"]:
        raise ValueError(f"{run_dir} ran with num_threads={old.get('num_threads')} and would "
                         f"resume with {env['num_threads']}: CPU results depend on the thread "
                         f"count; pass --num-threads {old.get('num_threads')}")
